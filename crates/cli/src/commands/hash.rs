//! `drv hash`: the hashes `nix-hash --type sha256` computes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use drv_formats::{nar, HashEncoding};
use drv_store::hash_file;

use crate::printer::Printer;

#[derive(Subcommand)]
#[command(defer = true)]
pub enum HashCommand {
    /// Print the sha256 of a path's NAR serialisation (`nix-hash --type sha256`)
    ///
    /// This is the hash Nix records as a store path's NAR hash, and the one a fixed-output
    /// derivation with recursive hashing pins.
    #[command(after_help = "\
Examples:
  drv hash path ./src
  drv hash path --sri ./src")]
    Path {
        /// The file or directory to hash.
        path: PathBuf,
        #[command(flatten)]
        encoding: EncodingArgs,
    },
    /// Print the sha256 of a file's bytes (`nix-hash --type sha256 --flat`)
    #[command(after_help = "\
Examples:
  drv hash file zlib-1.2.13.tar.gz
  drv hash file --base32 zlib-1.2.13.tar.gz")]
    File {
        /// The file to hash.
        path: PathBuf,
        #[command(flatten)]
        encoding: EncodingArgs,
    },
}

#[derive(Args)]
#[group(multiple = false)]
pub struct EncodingArgs {
    /// Print hexadecimal (the default).
    #[arg(long)]
    base16: bool,
    /// Print Nix's base-32.
    #[arg(long, alias = "nix32")]
    base32: bool,
    /// Print SRI (`sha256-<base64>`).
    #[arg(long)]
    sri: bool,
}

impl EncodingArgs {
    fn encoding(&self) -> HashEncoding {
        if self.base32 {
            HashEncoding::Nix32
        } else if self.sri {
            HashEncoding::Sri
        } else {
            HashEncoding::Base16
        }
    }
}

pub fn run(cmd: &HashCommand, printer: Printer) -> anyhow::Result<ExitCode> {
    let (hash, encoding) = match cmd {
        HashCommand::Path { path, encoding } => (
            nar::hash_path(path).with_context(|| format!("cannot hash {}", path.display()))?.sha256,
            encoding,
        ),
        HashCommand::File { path, encoding } => (
            hash_file(path).with_context(|| format!("cannot hash {}", path.display()))?,
            encoding,
        ),
    };
    printer.result(hash.encode(encoding.encoding()))?;
    Ok(ExitCode::SUCCESS)
}
