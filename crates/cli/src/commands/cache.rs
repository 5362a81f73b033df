//! `drv cache`: push closures to binary caches, serve the store as one,
//! and fetch paths from them.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand, ValueEnum};
use drv_formats::{PublicKey, StoreDir, StorePath};
use drv_store::LocalStore;
use drv_realise::{Config, Substituter};
use drv_realise::{CacheUrl, PushOptions};
use drv_realise::{ServeCompression, ServerOptions};

use super::key::read_secret_key;
use crate::printer::Printer;
use crate::reporter::transfer_reporter;
use crate::Cli;

#[derive(Subcommand)]
#[command(defer = true)]
pub enum CacheCommand {
    /// Upload the closures of store paths to a binary cache
    ///
    /// Uploads each path's NAR and narinfo, with those of every path in its closure, skipping
    /// what the cache has already. Given a recipe, pushes the closures of its outputs that are
    /// valid in the store.
    #[command(after_help = "\
Examples:
  # Make a signing key, then push a build's closure to a cache directory
  drv key generate --name cache-1 --secret-file sk --public-file pk
  drv cache push --to file:///srv/cache --key sk result

  # Push the built outputs of a recipe to a writable HTTP cache
  drv cache push --to http://127.0.0.1:5000 --key sk recipes/flask_app.toml

  # Push to a team's S3 bucket (credentials from AWS_* or ~/.aws), xz-compressed
  drv cache push --to 's3://team?endpoint=http://127.0.0.1:8333&compression=xz' --key sk result")]
    Push(PushArgs),
    /// Serve the store as a binary cache over HTTP
    ///
    /// Answers Nix's binary-cache protocol (nix-cache-info, narinfo, NAR), so Nix and other drv
    /// stores can substitute from it. With --writable it also accepts uploads from `drv cache
    /// push`, checked before they are registered.
    #[command(after_help = "\
Examples:
  # Serve the store on the loopback interface, signing the narinfos
  drv cache serve --key sk

  # Accept pushes signed by a trusted key, on all interfaces
  drv cache serve --listen 0.0.0.0:5000 --writable --trusted-public-key \"$(cat pk)\"")]
    Serve(ServeArgs),
    /// Substitute store paths and their closures from binary caches
    ///
    /// Downloads each path and every path in its closure that is not valid yet, checking
    /// signatures and NAR hashes before registering them.
    #[command(after_help = "\
Examples:
  # From the configured substituters
  drv cache fetch /store/…-zlib-1.2.13

  # From one cache, trusting its key
  drv cache fetch --substituters http://127.0.0.1:5000 --trusted-public-key \"$(cat pk)\" /store/…-zlib-1.2.13")]
    Fetch(FetchArgs),
}

#[derive(Args)]
pub struct PushArgs {
    /// The binary cache: file:///DIR, an http(s):// cache that accepts uploads (PUT), or
    /// s3://BUCKET[/PREFIX]?endpoint=…&region=… (docs/caches.md). Parameters shared by all:
    /// compression=zstd|xz|bzip2|gzip|none, compression-level=N, secret-key=FILE.
    #[arg(long, value_name = "URL")]
    to: String,
    /// Sign the narinfos with this secret key file (see `drv key generate`); overrides the
    /// URL's secret-key.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// How many NARs to compress and upload at once [default: 2].
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Store paths (or `result` links), or one recipe (FILE.toml).
    #[arg(required = true)]
    paths: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    Zstd,
    None,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5000")]
    listen: SocketAddr,
    /// Sign narinfos with this secret key file as they are served.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Accept uploads (PUT), verified before they are registered.
    #[arg(long)]
    writable: bool,
    /// With --writable: accept only uploads signed by this key (`name:base64`) or by one of the
    /// configuration's trusted-public-keys. May be given more than once.
    #[arg(long = "trusted-public-key", value_name = "KEY")]
    trusted_public_keys: Vec<String>,
    /// How NARs are compressed as they are served.
    #[arg(long, value_enum, value_name = "METHOD", default_value = "zstd")]
    compression: CompressionArg,
    /// Priority advertised in nix-cache-info; clients prefer caches with lower values.
    #[arg(long, value_name = "N", default_value_t = 30)]
    priority: u32,
}

// Where substitutes come from; flattened into every command that realises.
// (No doc comment: clap would show it as that command's description.)
#[derive(Args, Clone, Default)]
pub struct SubstituteArgs {
    /// Binary caches to ask for substitutes, in order, instead of the configuration's
    /// `substituters` (space-separated). A URL ending in `?trusted=1` is trusted without
    /// checking signatures.
    #[arg(long, value_name = "URL", value_delimiter = ' ')]
    pub substituters: Option<Vec<String>>,
    /// Also trust narinfos signed by this key (`name:base64`), besides the configuration's
    /// `trusted-public-keys`. May be given more than once.
    #[arg(long = "trusted-public-key", value_name = "KEY")]
    pub trusted_public_keys: Vec<String>,
    /// Accept substitutes from every cache without checking signatures.
    #[arg(long)]
    pub no_check_sigs: bool,
    /// Ask no binary cache: build what is not valid in the store.
    #[arg(long)]
    pub no_substitute: bool,
    /// How many NARs to download and unpack at once.
    #[arg(long, value_name = "N", default_value_t = drv_realise::SubstituterOptions::default().downloads)]
    pub max_downloads: usize,
}

impl SubstituteArgs {
    /// The substituter these arguments and `config` describe; `None` when
    /// there is no cache to ask.
    pub fn substituter(&self, config: &Config, store_dir: &StoreDir) -> anyhow::Result<Option<Substituter>> {
        if self.no_substitute {
            return Ok(None);
        }
        let urls = self.substituters.clone().unwrap_or_else(|| config.substituters.clone());
        if urls.is_empty() {
            return Ok(None);
        }
        let keys = parse_keys(config.trusted_public_keys.iter().chain(&self.trusted_public_keys))?;
        let options = drv_realise::SubstituterOptions { downloads: self.max_downloads.max(1), ..Default::default() };
        Ok(Some(Substituter::from_urls(&urls, keys, !self.no_check_sigs, store_dir.clone())?.with_options(options)))
    }
}

fn parse_keys<'a>(keys: impl Iterator<Item = &'a String>) -> anyhow::Result<Vec<PublicKey>> {
    keys.map(|k| k.parse::<PublicKey>().with_context(|| format!("trusted public key {k:?}"))).collect()
}

#[derive(Args)]
pub struct FetchArgs {
    #[command(flatten)]
    substitute: SubstituteArgs,
    /// Store paths to substitute (with their closures).
    #[arg(required = true)]
    paths: Vec<String>,
}

pub fn run(cli: &Cli, cmd: &CacheCommand, printer: Printer) -> anyhow::Result<ExitCode> {
    match cmd {
        CacheCommand::Push(a) => push(cli, a, printer),
        CacheCommand::Serve(a) => serve(cli, a, printer),
        CacheCommand::Fetch(a) => fetch(cli, a, printer),
    }
}

/// The valid outputs of a recipe's derivations, or the paths named.
fn paths_to_push(store: &mut LocalStore, args: &[String]) -> anyhow::Result<BTreeSet<StorePath>> {
    if let [recipe] = args {
        if recipe.ends_with(".toml") {
            let eval = super::eval::evaluate(store, Path::new(recipe))?;
            let mut out = BTreeSet::new();
            for (drv, _) in eval.derivations.values() {
                for o in drv.outputs().values() {
                    // Held before it is found valid (see drv_store::roots).
                    store.add_temp_root(&o.path)?;
                    if store.is_valid(&o.path)? {
                        out.insert(o.path.clone());
                    }
                }
            }
            if out.is_empty() {
                bail!("no output of {recipe} is valid: build it first");
            }
            return Ok(out);
        }
    }
    args.iter().map(|a| Ok(store.parse_path_arg(a)?)).collect()
}

fn push(cli: &Cli, args: &PushArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let mut store = cli.open_store()?;
    let to = CacheUrl::parse(&args.to)?;
    let key = args.key.as_deref().or(to.secret_key.as_deref()).map(read_secret_key).transpose()?;
    let paths = paths_to_push(&mut store, &args.paths)?;
    let cache = drv_realise::open_cache(&to.url)?;
    let reporter = transfer_reporter(printer);
    let mut options = PushOptions { compression: to.compression.unwrap_or_default(), level: to.compression_level, ..PushOptions::default() };
    if let Some(jobs) = args.jobs {
        options.uploads = jobs.max(1);
    }
    let report = drv_realise::push(&store, cache.as_ref(), &paths, key.as_ref(), &options, reporter.as_ref())
        .with_context(|| format!("cannot push to {}", cache.url()))?;
    drop(reporter);
    printer.info(format_args!("pushed {} path(s) to {}, {} already there", report.uploaded.len(), cache.url(), report.skipped.len()));
    Ok(ExitCode::SUCCESS)
}

fn serve(cli: &Cli, args: &ServeArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let store = cli.open_store()?;
    let config = Config::load()?;
    let key = args.key.as_deref().map(read_secret_key).transpose()?;
    let options = ServerOptions {
        root: store.root().to_owned(),
        store_dir: store.store_dir().clone(),
        key,
        writable: args.writable,
        trusted_keys: parse_keys(config.trusted_public_keys.iter().chain(&args.trusted_public_keys))?,
        compression: match args.compression {
            CompressionArg::Zstd => ServeCompression::Zstd,
            CompressionArg::None => ServeCompression::None,
        },
        priority: args.priority,
    };
    drop(store);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        // Tests and scripts start the server on port 0 and read this line.
        printer.result(format_args!("listening on http://{}", listener.local_addr()?))?;
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        drv_realise::serve(listener, options, shutdown).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn fetch(cli: &Cli, args: &FetchArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let mut store = cli.open_store()?;
    let config = Config::load()?;
    let paths: BTreeSet<StorePath> =
        args.paths.iter().map(|a| store.parse_path_arg(a)).collect::<Result<_, _>>()?;
    let Some(substituter) = args.substitute.substituter(&config, store.store_dir())? else {
        bail!("no binary cache to ask: pass --substituters URL or set `substituters` in the configuration");
    };
    let reporter = transfer_reporter(printer);
    let report = substituter.substitute(&mut store, &paths, reporter.as_ref())?;
    drop(reporter);
    for p in &report.substituted {
        printer.result(store.display(p))?;
    }
    if !report.missing.is_empty() {
        for p in &report.missing {
            printer.error(format_args!("cannot substitute {}", store.display(p)));
        }
        return Ok(ExitCode::FAILURE);
    }
    printer.info(format_args!("{} path(s) substituted, {} already valid", report.substituted.len(), report.already_valid.len()));
    Ok(ExitCode::SUCCESS)
}
