//! `drv why-depends PATH DEPENDENCY`: the chain of references from PATH to
//! DEPENDENCY, with the files that hold each reference, like
//! `nix why-depends`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Args;
use drv_formats::StorePath;
use drv_store::LocalStore;
use drv_realise::read_derivation;
use serde_json::json;

use crate::printer::Printer;
use crate::Cli;

#[derive(Args)]
#[command(after_help = "Examples:\n  drv why-depends ./result /store/…-zlib-1.3\n  drv why-depends app.toml lib.toml --all\n  drv why-depends app.toml lib.toml --json")]
pub struct WhyDependsArgs {
    /// The path that depends: a store path, a `result` link, or a recipe
    /// (`FILE.toml`, meaning its built `out` output).
    path: String,
    /// The path depended on, given the same ways.
    dependency: String,
    /// Show every path through which PATH depends on DEPENDENCY, as a
    /// tree, instead of one shortest chain.
    #[arg(short, long)]
    all: bool,
    /// Print JSON: `{"path", "dependency", "steps": [{"from", "to",
    /// "files": [{"file", "context"}]}]}`; the steps in the order they
    /// are shown.
    #[arg(long)]
    json: bool,
}

/// A valid store path named by `arg`: a store path in any of the forms
/// [`LocalStore::parse_path_arg`] takes, or a recipe (`.toml`), meaning
/// its `out` output (else its only output), which must be built.
pub fn resolve_path_arg(store: &mut LocalStore, arg: &str) -> anyhow::Result<StorePath> {
    let p = if arg.ends_with(".toml") {
        let drv_path = super::eval::evaluate_summary(store, Path::new(arg))?.root;
        let drv = read_derivation(store, &drv_path)?;
        let outputs = drv.outputs();
        let out = match outputs.get("out") {
            Some(o) => o,
            None => outputs.values().next().with_context(|| format!("{arg} has no outputs"))?,
        };
        if !store.is_valid(&out.path)? {
            bail!("{} (of {arg}) is not built; run `drv build {arg}` first", store.display(&out.path));
        }
        out.path.clone()
    } else {
        store.parse_path_arg(arg)?
    };
    store.require_path_info(&p)?;
    Ok(p)
}

/// A file of a referring path that holds a reference, and the bytes
/// around it.
struct Hit {
    file: String,
    context: String,
}

/// Characters of context shown on each side of a hash, as Nix shows them.
const MARGIN: usize = 32;

/// The text around each occurrence of `needle` in `bytes`, unprintable
/// bytes as `.`, cut with `…` where it goes on; one per occurrence (the
/// first few), as `nix why-depends` shows them.
fn contexts(bytes: &[u8], needle: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = find(&bytes[from..], needle).map(|i| i + from) {
        let start = i.saturating_sub(MARGIN);
        let end = (i + needle.len() + MARGIN).min(bytes.len());
        let mut text = String::new();
        if start > 0 {
            text.push('…');
        }
        text.extend(bytes[start..end].iter().map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '.' }));
        if end < bytes.len() {
            text.push('…');
        }
        out.push(text);
        from = i + needle.len();
        if out.len() == 3 {
            break;
        }
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Every file (or symlink, by its target) under `root` that holds
/// `needle`, by path relative to `root` (`.` for `root` itself), sorted.
fn scan(root: &Path, rel: &str, needle: &[u8], hits: &mut Vec<Hit>) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(root)?;
    let bytes = if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(root)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let child = if rel == "." { name } else { format!("{rel}/{name}") };
            scan(&e.path(), &child, needle, hits)?;
        }
        return Ok(());
    } else if meta.is_symlink() {
        use std::os::unix::ffi::OsStrExt as _;
        std::fs::read_link(root)?.as_os_str().as_bytes().to_vec()
    } else {
        std::fs::read(root)?
    };
    for context in contexts(&bytes, needle) {
        hits.push(Hit { file: rel.to_owned(), context });
    }
    Ok(())
}

pub fn run(cli: &Cli, args: &WhyDependsArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let printer = printer.with_json(args.json);
    let mut store = cli.open_store()?;
    store.pause_collections()?;
    let from = resolve_path_arg(&mut store, &args.path)?;
    let to = resolve_path_arg(&mut store, &args.dependency)?;

    // The reference graph of PATH's closure, self-references left out.
    let mut refs: BTreeMap<StorePath, Vec<StorePath>> = BTreeMap::new();
    let mut queue = VecDeque::from([from.clone()]);
    while let Some(p) = queue.pop_front() {
        if refs.contains_key(&p) {
            continue;
        }
        let info = store.require_path_info(&p)?;
        let children: Vec<StorePath> = info.references.into_iter().filter(|r| *r != p).collect();
        queue.extend(children.iter().cloned());
        refs.insert(p, children);
    }
    if !refs.contains_key(&to) {
        bail!("{} does not depend on {}", store.display(&from), store.display(&to));
    }

    // The paths that reach DEPENDENCY, and each one's distance to it.
    let mut distance: BTreeMap<&StorePath, usize> = BTreeMap::from([(&to, 0)]);
    loop {
        let mut changed = false;
        for (p, children) in &refs {
            if let Some(d) = children.iter().filter_map(|c| distance.get(c)).min().map(|d| d + 1) {
                if distance.get(p).is_none_or(|&old| d < old) {
                    distance.insert(p, d);
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }

    // The edges to show, in the order shown, with their depth: the
    // shortest chain, or with --all the tree of every path that leads
    // there (each path expanded once).
    let mut edges: Vec<(usize, StorePath, StorePath)> = Vec::new();
    if args.all {
        let mut expanded = BTreeSet::new();
        walk_all(&refs, &distance, &from, 0, &mut expanded, &mut edges);
    } else {
        let mut p = from.clone();
        let mut depth = 0;
        while p != to {
            // A reference one step closer; the first by name on a tie, so
            // the answer is the same each time.
            let next = refs[&p]
                .iter()
                .filter(|c| distance.get(c).is_some_and(|&d| d + 1 == distance[&p]))
                .min()
                .expect("a path at distance d > 0 has a reference at d - 1")
                .clone();
            edges.push((depth, p, next.clone()));
            p = next;
            depth += 1;
        }
    }

    let mut steps = Vec::new();
    for (depth, a, b) in &edges {
        let mut hits = Vec::new();
        scan(&store.real_path(a), ".", b.hash_part().as_bytes(), &mut hits)
            .with_context(|| format!("cannot read {}", store.display(a)))?;
        steps.push((*depth, a, b, hits));
    }

    if args.json {
        let steps: Vec<_> = steps
            .iter()
            .map(|(_, a, b, hits)| {
                json!({
                    "from": store.display(a),
                    "to": store.display(b),
                    "files": hits.iter().map(|h| json!({"file": h.file, "context": h.context})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let v = json!({"path": store.display(&from), "dependency": store.display(&to), "steps": steps});
        printer.json_pretty(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    printer.result(store.display(&from))?;
    // Per depth, whether a later sibling follows (draws the `│` rails).
    let mut rails: Vec<bool> = Vec::new();
    for (i, (depth, a, b, hits)) in steps.iter().enumerate() {
        let last_sibling = !steps[i + 1..].iter().take_while(|s| s.0 >= *depth).any(|s| s.0 == *depth && s.1 == *a);
        rails.truncate(*depth);
        let indent: String = rails.iter().map(|&more| if more { "│   " } else { "    " }).collect();
        let branch = if last_sibling { "└───" } else { "├───" };
        let cont = if last_sibling { "    " } else { "│   " };
        if hits.is_empty() {
            // Registered, yet not in its files (e.g. found in a file
            // since changed by hand); still the reason it is in the closure.
            printer.result(format_args!("{indent}{branch}(reference not found in the files)"))?;
        }
        for (j, h) in hits.iter().enumerate() {
            let lead = if j == 0 { branch } else { cont };
            printer.result(format_args!("{indent}{lead}{}: {}", h.file, h.context))?;
        }
        printer.result(format_args!("{indent}{cont}→ {}", store.display(b)))?;
        rails.push(!last_sibling);
    }
    Ok(ExitCode::SUCCESS)
}

fn walk_all(
    refs: &BTreeMap<StorePath, Vec<StorePath>>,
    distance: &BTreeMap<&StorePath, usize>,
    p: &StorePath,
    depth: usize,
    expanded: &mut BTreeSet<StorePath>,
    edges: &mut Vec<(usize, StorePath, StorePath)>,
) {
    if !expanded.insert(p.clone()) {
        return;
    }
    let mut children: Vec<&StorePath> = refs[p].iter().filter(|c| distance.contains_key(c)).collect();
    children.sort_by_key(|c| (distance[c], (*c).clone()));
    for c in children {
        edges.push((depth, p.clone(), c.clone()));
        walk_all(refs, distance, c, depth + 1, expanded, edges);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_cut_around_the_hash_and_hide_unprintable_bytes() {
        let hash = b"0123456789abcdfghijklmnpqrsvwxyz";
        let mut text = b"\x7fELF".to_vec();
        text.extend(std::iter::repeat_n(b'x', 40));
        text.extend(b"/store/");
        text.extend(hash);
        text.extend(b"-b/bin\0rest");
        let c = contexts(&text, hash);
        assert_eq!(c.len(), 1);
        let want = format!("…{}/store/{}-b/bin.rest", "x".repeat(25), std::str::from_utf8(hash).unwrap());
        assert_eq!(c[0], want);
        assert!(contexts(b"nothing here", hash).is_empty());
        assert_eq!(contexts(b"ab", b"ab"), ["ab"]);
    }
}
