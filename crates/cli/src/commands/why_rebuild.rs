//! `drv why-rebuild`: why a recipe evaluates to another derivation than an
//! earlier build, down to the recipe line, lock entry or source that
//! changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Args;
use drv_eval::NodeKind;
use drv_formats::StorePath;
use drv_store::LocalStore;
use drv_realise::{diff_derivations, Change, DrvDiff};
use serde_json::{json, Value};

use crate::printer::Printer;
use crate::Cli;

#[derive(Args)]
pub struct WhyRebuildArgs {
    /// What is built now: a recipe file (.toml) or a derivation (.drv store path).
    target: String,
    /// The earlier build: one of its output paths (or a `result` link to it) or its derivation
    /// (.drv store path).
    #[arg(long, value_name = "PATH|DRV", required_unless_present = "substituters", conflicts_with = "substituters")]
    since: Option<String>,
    /// Instead of --since: say which derivations' outputs these binary caches lack (the first
    /// ones to build, whose inputs they have) and, for each, why it differs from the nearest
    /// derivation of the same name known here whose outputs they have.
    #[arg(long, value_name = "URL", value_delimiter = ' ', num_args = 1..)]
    substituters: Vec<String>,
    /// Print the differences as JSON.
    #[arg(long)]
    json: bool,
}

/// Where each derivation of today's evaluation comes from: its recipe or
/// lock file, and whether it is a toolchain (whose file is the lock).
type Origins = BTreeMap<StorePath, (PathBuf, NodeKind)>;

pub fn run(cli: &Cli, args: &WhyRebuildArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let printer = printer.with_json(args.json);
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
    let paths: BTreeMap<String, StorePath> = origins.keys().map(|p| (store.display(p), p.clone())).collect();
    let locate = |d: &DrvDiff, c: &Change| paths.get(&d.new).and_then(|p| origins.get(p)).and_then(|(file, kind)| locate(file, kind, c));
    let Some(since) = &args.since else {
        return cache_miss(&store, &new, &args.substituters, printer, &locate);
    };
    let old = earlier_derivation(&store, since)?;
    let diff = diff_derivations(&store, &old, &new)
        .with_context(|| format!("cannot compare {} with {}", store.display(&old), store.display(&new)))?;
    if args.json {
        printer.json_pretty(&to_json(&diff, &locate))?;
    } else if old == new {
        printer.result(format_args!("{} is the same derivation as then: nothing to rebuild", store.display(&new)))?;
    } else {
        let mut out = String::new();
        render(&diff, 0, &locate, &mut out);
        printer.result_text(&out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// How many derivations the cache lacks are explained, at most.
const EXPLAINED: usize = 10;

/// `--substituters`: the derivations whose outputs the caches lack,
/// the first ones to build (whose inputs they have), and why each differs
/// from the nearest derivation of its name whose outputs they have.
fn cache_miss(
    store: &LocalStore,
    root: &StorePath,
    urls: &[String],
    printer: Printer,
    locate: &impl Fn(&DrvDiff, &Change) -> Option<(PathBuf, usize)>,
) -> anyhow::Result<ExitCode> {
    let caches = urls.iter().map(|u| drv_realise::open_cache(u).with_context(|| format!("cannot open cache {u}"))).collect::<anyhow::Result<Vec<_>>>()?;
    // Presence of a narinfo; signatures are the substituter's business.
    let mut known: BTreeMap<StorePath, bool> = BTreeMap::new();
    let mut has = |p: &StorePath| -> anyhow::Result<bool> {
        if let Some(&h) = known.get(p) {
            return Ok(h);
        }
        let mut found = false;
        for c in &caches {
            if c.narinfo_text(p).with_context(|| format!("cannot ask {}", c.url()))?.is_some() {
                found = true;
                break;
            }
        }
        known.insert(p.clone(), found);
        Ok(found)
    };
    let has_outputs = |drv: &drv_formats::Derivation, has: &mut dyn FnMut(&StorePath) -> anyhow::Result<bool>| -> anyhow::Result<bool> {
        for o in drv.outputs().values() {
            if !has(&o.path)? {
                return Ok(false);
            }
        }
        Ok(true)
    };
    // Top down: only below a derivation the caches lack do its inputs matter.
    let mut missing: BTreeMap<StorePath, bool> = BTreeMap::new(); // drv → lacks an input too
    let mut queue = vec![root.clone()];
    let mut visited = std::collections::BTreeSet::new();
    while let Some(p) = queue.pop() {
        if !visited.insert(p.clone()) {
            continue;
        }
        let drv = drv_realise::read_derivation(store, &p)?;
        if has_outputs(&drv, &mut has)? {
            continue;
        }
        let mut lacks_input = false;
        for input in drv.input_derivations().into_keys() {
            let d = drv_realise::read_derivation(store, &input)?;
            if !has_outputs(&d, &mut has)? {
                lacks_input = true;
                queue.push(input);
            }
        }
        missing.insert(p, lacks_input);
    }
    let first: Vec<&StorePath> = missing.iter().filter(|(_, lacks)| !**lacks).map(|(p, _)| p).collect();
    // The same names among the derivations known here.
    let all_drvs: Vec<StorePath> = store.all_valid_paths()?.into_iter().filter(|p| p.is_derivation()).collect();
    let mut explained = Vec::new();
    for p in first.iter().take(EXPLAINED) {
        let mut candidates = Vec::new();
        for q in all_drvs.iter().filter(|q| q.name() == p.name() && q != p) {
            let Ok(d) = drv_realise::read_derivation(store, q) else { continue };
            if has_outputs(&d, &mut has)? {
                let time = store.path_info(q)?.map_or(0, |i| i.registration_time);
                candidates.push((time, q.clone()));
            }
        }
        // The latest registered: most likely the build the cache was filled from.
        candidates.sort();
        let nearest = candidates.pop().map(|(_, q)| q);
        let diff = nearest.as_ref().map(|q| diff_derivations(store, q, p)).transpose()?;
        explained.push(((*p).clone(), nearest, diff));
    }
    if printer.is_json() {
        let value = json!({
            "drv": store.display(root),
            "cached": missing.is_empty(),
            "missing": missing.keys().map(|p| store.display(p)).collect::<Vec<_>>(),
            "first": explained.iter().map(|(p, nearest, diff)| json!({
                "drv": store.display(p),
                "nearest": nearest.as_ref().map(|q| store.display(q)),
                "why": diff.as_ref().map(|d| to_json(d, locate)),
            })).collect::<Vec<_>>(),
        });
        printer.json_pretty(&value)?;
        return Ok(ExitCode::SUCCESS);
    }
    if missing.is_empty() {
        printer.result(format_args!("the caches have every output of {}: nothing to build", store.display(root)))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(out, "the caches lack the outputs of {} derivation(s); the first to build (the caches have their inputs):", missing.len());
    for (p, nearest, diff) in &explained {
        match (nearest, diff) {
            (Some(q), Some(d)) => {
                let _ = writeln!(out, "  {}: the caches have the outputs of {} instead:", store.display(p), store.display(q));
                render(d, 2, locate, &mut out);
            }
            _ => {
                let _ = writeln!(out, "  {}: no derivation of that name known here has its outputs in the caches", store.display(p));
            }
        }
    }
    if first.len() > EXPLAINED {
        let _ = writeln!(out, "  … and {} more", first.len() - EXPLAINED);
    }
    printer.result_text(&out)?;
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
