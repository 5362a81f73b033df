//! `drv store`: add, dump, restore, verify, and compare closures.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use drv_formats::{nar, Sha256};
use drv_store::Ingestion;

use crate::printer::Printer;
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
        /// Print JSON: `{"consistent": bool, "problems": [text, …]}`
        /// (exit status 1 when not consistent, as without it).
        #[arg(long)]
        json: bool,
    },
    /// Show what changed between two closures
    ///
    /// As `nix store diff-closures`: per package name, the versions removed and added and the
    /// change in size. Paths are grouped by package name, the store name up to the first
    /// `-` that is followed by something other than a letter (Nix's
    /// rule: `zlib-1.3` is zlib 1.3); an output name at the end (`-dev`,
    /// `-lib`) is left out first. A name is shown when a version was
    /// added or removed, or its size changed by 8 KiB or more.
    #[command(after_help = "Examples:\n  drv store diff-closures ./result-old ./result\n  drv store diff-closures /store/…-app-1 app.toml --json")]
    DiffClosures {
        /// The closure before: a store path, a `result` link, or a recipe (its built `out`).
        before: String,
        /// The closure after, given the same ways.
        after: String,
        /// Print JSON: `{"packages": {NAME: {"versionsBefore": [..],
        /// "versionsAfter": [..], "sizeDelta": BYTES}}}` (Nix's shape),
        /// only the names that changed.
        #[arg(long)]
        json: bool,
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

pub fn run(cli: &Cli, cmd: &StoreCommand, printer: Printer) -> anyhow::Result<ExitCode> {
    match cmd {
        StoreCommand::Add { path, name } => {
            let name = default_name(path, name)?;
            let mut store = cli.open_store()?;
            let p = store
                .add_path(path, &name, Ingestion::Recursive)
                .with_context(|| format!("cannot add {} to the store", path.display()))?;
            printer.result(store.display(&p))?;
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
            printer.result(store.display(&p))?;
        }
        StoreCommand::Dump { path } => {
            let stdout = printer.stdout();
            // The size of a pipe's buffer: larger writes only make the reader wait.
            let mut out = io::BufWriter::with_capacity(1 << 16, stdout);
            if let Err(e) = nar::dump_path(path, &mut out) {
                // A NAR cut short is no NAR: what is still buffered (all of
                // it, for a missing path or a small tree) is dropped, so
                // the reader gets nothing rather than a truncated archive.
                let _ = out.into_parts();
                return Err(anyhow::Error::new(e).context(format!("cannot dump {}", path.display())));
            }
            out.flush()?;
        }
        StoreCommand::Restore { dir } => {
            let mut stdin = io::stdin().lock();
            nar::restore(&mut stdin, dir).with_context(|| format!("cannot restore into {}", dir.display()))?;
        }
        StoreCommand::Verify { check_contents, json } => {
            let store = cli.open_store()?;
            let problems = store.verify(*check_contents)?;
            if *json {
                let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
                let v = serde_json::json!({"consistent": problems.is_empty(), "problems": problems});
                printer.with_json(true).json(&v)?;
                return Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
            }
            for p in &problems {
                printer.result(p)?;
            }
            if !problems.is_empty() {
                printer.error(format_args!("{} problem(s) found in the store", problems.len()));
                return Ok(ExitCode::FAILURE);
            }
            printer.info("store is consistent");
        }
        StoreCommand::DiffClosures { before, after, json } => return diff_closures(cli, before, after, printer.with_json(*json)),
    }
    Ok(ExitCode::SUCCESS)
}

/// A package name and version of a store path's name, by Nix's rules:
/// an output name at the end (`-dev`, `-lib32`) is dropped, then the
/// version starts at the first `-` not followed by a letter.
pub fn package_version(store_name: &str) -> (&str, &str) {
    let mut name = store_name;
    if let Some((rest, output)) = store_name.rsplit_once('-') {
        let is_output = output == "lib32" || output == "lib64" || (!output.is_empty() && output.bytes().all(|b| b.is_ascii_lowercase()));
        if is_output && !rest.is_empty() {
            name = rest;
        }
    }
    let bytes = name.as_bytes();
    for i in 0..bytes.len() {
        if bytes[i] == b'-' && bytes.get(i + 1).is_some_and(|b| !b.is_ascii_alphabetic()) {
            return (&name[..i], &name[i + 1..]);
        }
    }
    (name, "")
}

/// Per package name, per version, the total NAR size of its paths.
type Grouped = BTreeMap<String, BTreeMap<String, u64>>;

fn group_closure(store: &drv_store::LocalStore, top: &drv_formats::StorePath) -> anyhow::Result<Grouped> {
    let mut out = Grouped::new();
    for p in store.closure(&BTreeSet::from([top.clone()]))? {
        let size = store.require_path_info(&p)?.nar_size;
        let (name, version) = package_version(p.name());
        *out.entry(name.to_owned()).or_default().entry(version.to_owned()).or_default() += size;
    }
    Ok(out)
}

/// Versions as Nix shows them: `∅` for none, `ε` for the empty version.
fn show_versions(versions: &[&str]) -> String {
    if versions.is_empty() {
        return "∅".to_owned();
    }
    versions.iter().map(|v| if v.is_empty() { "ε" } else { v }).collect::<Vec<_>>().join(", ")
}

/// Size changes smaller than this are not worth a line (Nix's threshold).
const SIZE_THRESHOLD: u64 = 8 * 1024;

fn diff_closures(cli: &Cli, before: &str, after: &str, printer: Printer) -> anyhow::Result<ExitCode> {
    let json = printer.is_json();
    let mut store = cli.open_store()?;
    store.pause_collections()?;
    let a = super::why_depends::resolve_path_arg(&mut store, before)?;
    let b = super::why_depends::resolve_path_arg(&mut store, after)?;
    let (ga, gb) = (group_closure(&store, &a)?, group_closure(&store, &b)?);
    let names: BTreeSet<&String> = ga.keys().chain(gb.keys()).collect();
    let empty = BTreeMap::new();
    let mut packages = serde_json::Map::new();
    for name in names {
        let (va, vb) = (ga.get(name).unwrap_or(&empty), gb.get(name).unwrap_or(&empty));
        let size = |v: &BTreeMap<String, u64>| v.values().sum::<u64>() as i64;
        let delta = size(vb) - size(va);
        let removed: Vec<&str> = va.keys().filter(|v| !vb.contains_key(*v)).map(String::as_str).collect();
        let added: Vec<&str> = vb.keys().filter(|v| !va.contains_key(*v)).map(String::as_str).collect();
        let show_delta = delta.unsigned_abs() >= SIZE_THRESHOLD;
        if !show_delta && removed.is_empty() && added.is_empty() {
            continue;
        }
        if json {
            packages.insert(
                name.clone(),
                serde_json::json!({"versionsBefore": removed, "versionsAfter": added, "sizeDelta": delta}),
            );
            continue;
        }
        let mut items = Vec::new();
        if !removed.is_empty() || !added.is_empty() {
            items.push(format!("{} → {}", show_versions(&removed), show_versions(&added)));
        }
        if show_delta {
            let sign = if delta > 0 { "+" } else { "-" };
            items.push(format!("{sign}{}", super::gc::human(delta.unsigned_abs())));
        }
        printer.result(format_args!("{name}: {}", items.join(", ")))?;
    }
    if json {
        printer.json(&serde_json::json!({"packages": packages}))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::package_version;

    #[test]
    fn package_names_and_versions_split_as_nix_splits_them() {
        assert_eq!(package_version("zlib-1.3"), ("zlib", "1.3"));
        assert_eq!(package_version("zlib-1.3-dev"), ("zlib", "1.3"));
        assert_eq!(package_version("python3-requests-2.31.0"), ("python3-requests", "2.31.0"));
        assert_eq!(package_version("hello"), ("hello", ""));
        assert_eq!(package_version("source"), ("source", ""));
        assert_eq!(package_version("foo-bar"), ("foo", ""));
        assert_eq!(package_version("gcc-lib64"), ("gcc", ""));
        assert_eq!(package_version("a-1"), ("a", "1"));
        assert_eq!(package_version("app-1.0-toolchain"), ("app", "1.0"));
    }
}

