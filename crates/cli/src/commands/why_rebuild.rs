//! `drv why-rebuild`: why a recipe evaluates to another derivation than an
//! earlier build, down to the recipe line, lock entry or source that
//! changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Args;
use drv_eval::NodeKind;
use drv_store::why_rebuild::{self, Change, DrvDiff};
use drv_store::{LocalStore, StorePath};
use serde_json::{json, Value};

use crate::Cli;

#[derive(Args)]
pub struct WhyRebuildArgs {
    /// What is built now: a recipe file (.toml) or a derivation (.drv store path).
    target: String,
    /// The earlier build: one of its output paths (or a `result` link to it) or its derivation
    /// (.drv store path).
    #[arg(long, value_name = "PATH|DRV")]
    since: String,
    /// Print the differences as JSON.
    #[arg(long)]
    json: bool,
}

/// Where each derivation of today's evaluation comes from: its recipe or
/// lock file, and whether it is a toolchain (whose file is the lock).
type Origins = BTreeMap<StorePath, (PathBuf, NodeKind)>;

pub fn run(cli: &Cli, args: &WhyRebuildArgs) -> anyhow::Result<ExitCode> {
    let mut store = cli.open_store()?;
    let (new, origins) = if args.target.ends_with(".toml") {
        let eval = super::eval::evaluate(&mut store, Path::new(&args.target))?;
        let origins = eval.derivations.iter().map(|(p, (_, node))| (p.clone(), (node.recipe.clone(), node.kind.clone()))).collect();
        (eval.root, origins)
    } else {
        let p = store.parse_path_arg(&args.target)?;
        if !p.is_derivation() {
            bail!("{} is not a derivation (.drv) or a recipe (.toml)", store.display(&p));
        }
        (p, Origins::new())
    };
    let old = earlier_derivation(&store, &args.since)?;
    let diff = why_rebuild::compare(&store, &old, &new)
        .with_context(|| format!("cannot compare {} with {}", store.display(&old), store.display(&new)))?;
    let paths: BTreeMap<String, StorePath> = origins.keys().map(|p| (store.display(p), p.clone())).collect();
    let locate = |d: &DrvDiff, c: &Change| paths.get(&d.new).and_then(|p| origins.get(p)).and_then(|(file, kind)| locate(file, kind, c));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&diff, &locate))?);
    } else if old == new {
        println!("{} is the same derivation as then: nothing to rebuild", store.display(&new));
    } else {
        let mut out = String::new();
        render(&diff, 0, &locate, &mut out);
        print!("{out}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The derivation of an earlier build: `since` itself, or the deriver of
/// the output it names.
fn earlier_derivation(store: &LocalStore, since: &str) -> anyhow::Result<StorePath> {
    let p = store.parse_path_arg(since)?;
    if p.is_derivation() {
        store.require_path_info(&p).with_context(|| {
            format!("{} is not in the store (collected?): an earlier derivation is needed to compare with", store.display(&p))
        })?;
        return Ok(p);
    }
    let info = store.require_path_info(&p)?;
    let drv = info.deriver.with_context(|| format!("{} has no known derivation (was it substituted or added?)", store.display(&p)))?;
    if store.path_info(&drv)?.is_none() {
        bail!(
            "the derivation {} of {} is no longer in the store (the collector removed it): nothing to compare with",
            store.display(&drv),
            store.display(&p)
        );
    }
    Ok(drv)
}

/// The line of `file` that a change comes from, when it can be told.
fn locate(file: &Path, kind: &NodeKind, change: &Change) -> Option<(PathBuf, usize)> {
    let text = std::fs::read_to_string(file).ok()?;
    let find = |needle: &str| -> Option<usize> {
        let needle = needle.trim();
        if needle.is_empty() {
            return None;
        }
        text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
    };
    let line = match change {
        Change::Script { new, old, .. } => new.as_deref().and_then(find).or_else(|| old.as_deref().and_then(find)),
        Change::Env { key, .. } => {
            text.lines().position(|l| l.trim_start().trim_start_matches('"').starts_with(&format!("{key} ")) || l.trim_start().starts_with(&format!("{key}="))).map(|i| i + 1)
        }
        Change::Source { name, .. } => find(&format!("\"{name}\"")).or_else(|| find(name)),
        Change::DebianPackage { package, .. } if *kind == NodeKind::Toolchain => find(&format!("name = \"{package}\"")),
        Change::DebianPackage { package, .. } => find(&format!("\"{package}\"")),
        Change::FixedHash { new, .. } => find(new),
        Change::Input { name, .. } => {
            // `b-1` comes from `b.toml` (or names a package in the recipe).
            let base = name.rsplit_once('-').map_or(name.as_str(), |(b, _)| b);
            find(&format!("{base}.toml")).or_else(|| find(base))
        }
        Change::Builder { .. } | Change::Outputs { .. } => None,
    }?;
    Some((file.to_owned(), line))
}

fn describe(change: &Change) -> (String, Vec<String>) {
    let side = |o: &Option<String>| o.clone().unwrap_or_else(|| "(none)".into());
    match change {
        Change::Script { line, old, new } => (
            format!("build script, line {line}"),
            vec![format!("- {}", old.as_deref().unwrap_or("")), format!("+ {}", new.as_deref().unwrap_or(""))],
        ),
        Change::Builder { old, new } => ("builder".into(), vec![format!("- {old}"), format!("+ {new}")]),
        Change::Env { key, old, new } => (format!("variable {key}"), vec![format!("- {}", side(old)), format!("+ {}", side(new))]),
        Change::Source { name, old, new } => (format!("source {name}"), vec![format!("- {}", side(old)), format!("+ {}", side(new))]),
        Change::DebianPackage { package, old, new } => {
            (format!("Debian package {package}: {} → {}", side(old), side(new)), Vec::new())
        }
        Change::Input { name, old: None, .. } => (format!("input {name} added"), Vec::new()),
        Change::Input { name, .. } => (format!("input {name} removed"), Vec::new()),
        Change::FixedHash { old, new } => ("pinned sha256".into(), vec![format!("- {old}"), format!("+ {new}")]),
        Change::Outputs { old, new } => ("outputs".into(), vec![format!("- {}", old.join(" ")), format!("+ {}", new.join(" "))]),
    }
}

fn render(diff: &DrvDiff, depth: usize, locate: &impl Fn(&DrvDiff, &Change) -> Option<(PathBuf, usize)>, out: &mut String) {
    use std::fmt::Write as _;
    let pad = "  ".repeat(depth);
    if diff.seen {
        let _ = writeln!(out, "{pad}{}: changed (see above)", diff.name);
        return;
    }
    let _ = writeln!(out, "{pad}{} changed: {} → {}", diff.name, diff.old, diff.new);
    for change in &diff.changes {
        let (what, detail) = describe(change);
        let at = locate(diff, change).map(|(f, l)| format!(" ({}:{l})", f.display())).unwrap_or_default();
        let _ = writeln!(out, "{pad}  {what}{at}");
        for line in detail {
            let _ = writeln!(out, "{pad}      {line}");
        }
    }
    for input in &diff.inputs {
        let _ = writeln!(out, "{pad}  because input {} changed:", input.name);
        render(input, depth + 2, locate, out);
    }
}

fn to_json(diff: &DrvDiff, locate: &impl Fn(&DrvDiff, &Change) -> Option<(PathBuf, usize)>) -> Value {
    let changes: Vec<Value> = diff
        .changes
        .iter()
        .map(|c| {
            let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
            if let (Some((file, line)), Some(map)) = (locate(diff, c), v.as_object_mut()) {
                map.insert("file".into(), json!(file));
                map.insert("line".into(), json!(line));
            }
            v
        })
        .collect();
    json!({
        "name": diff.name,
        "old": diff.old,
        "new": diff.new,
        "seen": diff.seen,
        "changes": changes,
        "inputs": diff.inputs.iter().map(|i| to_json(i, locate)).collect::<Vec<_>>(),
    })
}
