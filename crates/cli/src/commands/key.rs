//! `drv key`: ed25519 signing keys for binary caches, in Nix's
//! `name:base64` format (interchangeable with `nix-store
//! --generate-binary-cache-key`).

use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use drv_formats::SecretKey;

use crate::printer::Printer;

#[derive(Subcommand)]
#[command(defer = true)]
pub enum KeyCommand {
    /// Generate an ed25519 key pair for signing narinfos
    ///
    /// Writes the secret key (mode 0600) and its public key, both as `NAME:base64`, the format of
    /// `nix-store --generate-binary-cache-key`. The secret key signs with `drv cache push --key`
    /// and `drv cache serve --key`; the public key goes into the clients' trusted-public-keys.
    #[command(after_help = "\
Examples:
  drv key generate --name cache-1 --secret-file cache-1.sec --public-file cache-1.pub")]
    Generate {
        /// The key's name, recorded in every signature; by convention HOST-N (e.g. `mycache-1`).
        #[arg(long)]
        name: String,
        /// Where to write the secret key.
        #[arg(long, value_name = "FILE")]
        secret_file: PathBuf,
        /// Where to write the public key.
        #[arg(long, value_name = "FILE")]
        public_file: PathBuf,
    },
    /// Print the public key of a secret key read from stdin
    #[command(after_help = "\
Examples:
  drv key public < cache-1.sec")]
    Public,
}

pub fn run(cmd: &KeyCommand, printer: Printer) -> anyhow::Result<ExitCode> {
    match cmd {
        KeyCommand::Generate { name, secret_file, public_file } => {
            let key = SecretKey::generate(name)?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(secret_file)
                .with_context(|| format!("cannot create {}", secret_file.display()))?;
            f.write_all(key.to_string().as_bytes())?;
            std::fs::write(public_file, key.public().to_string())
                .with_context(|| format!("cannot write {}", public_file.display()))?;
        }
        KeyCommand::Public => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            let key: SecretKey = text.parse()?;
            printer.result(key.public())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Read a secret key file.
pub fn read_secret_key(file: &std::path::Path) -> anyhow::Result<SecretKey> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    text.parse().with_context(|| format!("{} holds no secret key", file.display()))
}
