//! `drv prefetch`: download something once to learn its sha256 (the hash a
//! recipe pins), and keep it in the store as a flat fixed-output path, as
//! `nix-prefetch-url` does, so a later build need not download it again.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::Args;
use drv_formats::{Sha256, StorePath};
use drv_store::{hash_file, Ingestion};
use drv_realise::{Config, FetchSource, Fetcher};

use crate::printer::Printer;
use crate::reporter::LineReporter;
use crate::Cli;

#[derive(Args)]
pub struct PrefetchArgs {
    /// What to fetch: an https://, http://, file:// or mirror://NAME/PATH URL, or a local file.
    source: String,
    /// Name of the store path (default: the URL's last path segment).
    #[arg(long)]
    name: Option<String>,
    /// Print JSON (url, sha256, nix32, base16, size, path) instead of the SRI hash.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, args: &PrefetchArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let printer = printer.with_json(args.json);
    let is_url = args.source.contains("://");
    let source = FetchSource::Url(args.source.clone());
    let name = match (&args.name, is_url) {
        (Some(n), _) => n.clone(),
        (None, true) => source.file_name().with_context(|| format!("{} has no file name; pass --name", args.source))?,
        (None, false) => local_name(Path::new(&args.source))?,
    };
    // Before downloading: a name the store refuses would waste the download.
    StorePath::validate_name(&name).with_context(|| format!("{name:?} cannot name a store path; pass --name"))?;

    let (url, sha256, size, path) = if is_url {
        let config = Config::load()?;
        // Retries and fallbacks go to stderr; stdout carries only the result.
        let fetcher = Fetcher::new(&config, Arc::new(LineReporter::messages(printer)))?;
        let fetched = fetcher.prefetch(&source).with_context(|| format!("cannot fetch {}", args.source))?;
        let mut store = cli.open_store()?;
        let path = store
            .add_path(&fetched.file, &name, Ingestion::Flat)
            .with_context(|| format!("cannot add {} to the store", fetched.url))?;
        (fetched.url, fetched.sha256, fetched.size, store.display(&path))
    } else {
        let file = PathBuf::from(&args.source);
        let sha256: Sha256 = hash_file(&file).with_context(|| format!("cannot hash {}", file.display()))?;
        let size = std::fs::metadata(&file).with_context(|| format!("cannot read {}", file.display()))?.len();
        let mut store = cli.open_store()?;
        let path = store
            .add_path(&file, &name, Ingestion::Flat)
            .with_context(|| format!("cannot add {} to the store", file.display()))?;
        let abs = std::path::absolute(&file)?;
        (format!("file://{}", abs.display()), sha256, size, store.display(&path))
    };

    printer.info(format_args!("path is '{path}'"));
    if args.json {
        let out = serde_json::json!({
            "url": url,
            "sha256": sha256.to_sri(),
            "nix32": sha256.to_nix32(),
            "base16": sha256.to_hex(),
            "size": size,
            "path": path,
        });
        printer.json(&out)?;
    } else {
        printer.result(sha256.to_sri())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn local_name(path: &Path) -> anyhow::Result<String> {
    let abs = std::path::absolute(path)?;
    match abs.file_name().and_then(|n| n.to_str()) {
        Some(n) => Ok(n.to_owned()),
        None => bail!("{} has no usable file name; pass --name", path.display()),
    }
}
