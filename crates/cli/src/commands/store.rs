//! `drv store`: add, dump, restore and verify.

use std::io::{self, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use drv_store::{formats::nar, Ingestion, Sha256};

use crate::Cli;

#[derive(Subcommand)]
#[command(defer = true)]
pub enum StoreCommand {
    /// Add a file or directory to the store by content and print its store path (`nix-store --add`)
    #[command(after_help = "\
Examples:
  drv store add ./patches
  drv store add --name fix.patch ./0001-fix.patch")]
    Add {
        /// The file or directory to add.
        path: PathBuf,
        /// Name of the store path (default: the file name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Add a file under a fixed-output store path (`nix-store --add-fixed`)
    ///
    /// A fixed-output derivation with the same hash (a recipe's pinned source) then finds it in
    /// the store and never downloads it.
    #[command(after_help = "\
Examples:
  drv store add-fixed sha256 zlib_1.2.13.dfsg.orig.tar.bz2
  drv store add-fixed sha256 --expect sha256-… zlib_1.2.13.dfsg.orig.tar.bz2")]
    AddFixed {
        /// The hash algorithm; only sha256 is supported.
        algo: String,
        /// The file (or, with --recursive, the directory) to add.
        path: PathBuf,
        /// Hash the NAR serialisation instead of the file's bytes.
        #[arg(long)]
        recursive: bool,
        /// Name of the store path (default: the file name).
        #[arg(long)]
        name: Option<String>,
        /// Refuse unless the content has this hash (any of Nix's spellings).
        #[arg(long, value_name = "HASH")]
        expect: Option<String>,
    },
    /// Write the NAR serialisation of a file or directory to stdout (`nix-store --dump`)
    #[command(after_help = "\
Examples:
  drv store dump ./src > src.nar")]
    Dump {
        /// The file or directory to serialise.
        path: PathBuf,
    },
    /// Unpack a NAR read from stdin into a new directory (`nix-store --restore`)
    #[command(after_help = "\
Examples:
  drv store restore ./src-copy < src.nar")]
    Restore {
        /// The directory to create; it must not exist.
        dir: PathBuf,
    },
    /// Check the store's consistency; exit 1 if something is wrong
    ///
    /// Every valid path must be present and so must its references; with --check-contents,
    /// each path's NAR hash must also be the one registered.
    #[command(after_help = "\
Examples:
  drv store verify
  drv store verify --check-contents")]
    Verify {
        /// Also hash every valid path and compare it with its registered NAR hash (reads the
        /// whole store).
        #[arg(long)]
        check_contents: bool,
    },
}

fn default_name(path: &std::path::Path, name: &Option<String>) -> anyhow::Result<String> {
    if let Some(n) = name {
        return Ok(n.clone());
    }
    let abs = std::path::absolute(path)?;
    match abs.file_name().and_then(|n| n.to_str()) {
        Some(n) => Ok(n.to_owned()),
        None => bail!("{} has no usable file name; pass --name", path.display()),
    }
}

pub fn run(cli: &Cli, cmd: &StoreCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StoreCommand::Add { path, name } => {
            let name = default_name(path, name)?;
            let mut store = cli.open_store()?;
            let p = store
                .add_path(path, &name, Ingestion::Recursive)
                .with_context(|| format!("cannot add {} to the store", path.display()))?;
            println!("{}", store.display(&p));
        }
        StoreCommand::AddFixed { algo, path, recursive, name, expect } => {
            if algo != "sha256" {
                bail!("unsupported hash algorithm {algo:?}: drv uses sha256");
            }
            let name = default_name(path, name)?;
            let ingestion = if *recursive { Ingestion::Recursive } else { Ingestion::Flat };
            let expected = expect.as_deref().map(Sha256::parse).transpose()?;
            let mut store = cli.open_store()?;
            if let Some(want) = expected {
                // Check before copying anything in.
                let got = match ingestion {
                    Ingestion::Flat => drv_store::hash_file(path)?,
                    Ingestion::Recursive => nar::hash_path(path)?.sha256,
                };
                if got != want {
                    bail!("hash mismatch for {}: expected {want}, got {got}", path.display());
                }
            }
            let p = store
                .add_path(path, &name, ingestion)
                .with_context(|| format!("cannot add {} to the store", path.display()))?;
            println!("{}", store.display(&p));
        }
        StoreCommand::Dump { path } => {
            let stdout = io::stdout().lock();
            // The size of a pipe's buffer: larger writes only make the reader wait.
            let mut out = io::BufWriter::with_capacity(1 << 16, stdout);
            nar::dump_path(path, &mut out).with_context(|| format!("cannot dump {}", path.display()))?;
            out.flush()?;
        }
        StoreCommand::Restore { dir } => {
            let mut stdin = io::stdin().lock();
            nar::restore(&mut stdin, dir).with_context(|| format!("cannot restore into {}", dir.display()))?;
        }
        StoreCommand::Verify { check_contents } => {
            let store = cli.open_store()?;
            let problems = store.verify(*check_contents)?;
            for p in &problems {
                println!("{p}");
            }
            if !problems.is_empty() {
                eprintln!("error: {} problem(s) found in the store", problems.len());
                return Ok(ExitCode::FAILURE);
            }
            eprintln!("store is consistent");
        }
    }
    Ok(ExitCode::SUCCESS)
}

