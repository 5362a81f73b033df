//! Remembering evaluations, so a build with nothing to do does not parse
//! and lower every recipe again.
//!
//! An entry records the `.drv` paths an evaluation produced and the
//! identity (size, inode, modification and change times) of everything it
//! read: the recipe files, the local sources (every entry of a source
//! directory), the drv executable itself, and — where a recipe has a
//! toolchain — the lock file, which decides the toolchain's path. The entry is used only while all of these are
//! unchanged and the `.drv` files are still valid; otherwise the recipe is
//! evaluated again and the entry rewritten. A changed input is never
//! missed: editors and dpkg replace or modify files, which changes their
//! change time or inode.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use drv_formats::{Derivation, Sha256, StorePath};
use drv_store::LocalStore;
use serde::{Deserialize, Serialize};

use crate::graph::NodeKind;
use crate::error::EvalError;

/// What `drv build`, `drv test` and `drv run` need of an evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluationSummary {
    pub root: StorePath,
    pub tests: Vec<StorePath>,
    /// The recipe's `main` program.
    pub main: Option<String>,
    /// The derivations this evaluation made, for realisation to use
    /// instead of reading them back (empty when the evaluation was
    /// remembered: realisation then reads each `.drv` once).
    pub derivations: Vec<(StorePath, Derivation)>,
}

const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Entry {
    format: u32,
    root: String,
    tests: Vec<String>,
    main: Option<String>,
    stamps: Vec<(PathBuf, Option<Stamp>)>,
}

#[derive(Serialize, Deserialize, PartialEq, Eq, Debug, Clone, Copy)]
struct Stamp {
    size: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = fs::symlink_metadata(path).ok()?;
    Some(Stamp { size: m.size(), ino: m.ino(), mtime: (m.mtime(), m.mtime_nsec()), ctime: (m.ctime(), m.ctime_nsec()) })
}

/// Every entry below `path` (itself included), for local sources.
fn stamp_tree(path: &Path, out: &mut Vec<(PathBuf, Option<Stamp>)>) {
    out.push((path.to_owned(), stamp(path)));
    if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        if let Ok(entries) = fs::read_dir(path) {
            let mut children: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            children.sort();
            for c in children {
                stamp_tree(&c, out);
            }
        }
    }
}

fn entry_file(store: &LocalStore, recipe: &Path) -> PathBuf {
    let key = format!("{FORMAT}\n{}\n{}", store.store_dir(), recipe.display());
    let digest = Sha256::digest(key.as_bytes()).to_nix32();
    store.layout().eval_cache_dir().join(&digest[..32])
}

fn exe_stamp() -> (PathBuf, Option<Stamp>) {
    let exe = std::env::current_exe().unwrap_or_default();
    let s = stamp(&exe);
    (exe, s)
}

fn lookup(store: &LocalStore, file: &Path) -> Option<EvaluationSummary> {
    let entry: Entry = serde_json::from_slice(&fs::read(file).ok()?).ok()?;
    if entry.format != FORMAT || entry.stamps.iter().any(|(p, s)| stamp(p) != *s) {
        return None;
    }
    let parse = |p: &str| store.store_dir().parse_path(p).ok();
    let root = parse(&entry.root)?;
    let tests = entry.tests.iter().map(|t| parse(t)).collect::<Option<Vec<_>>>()?;
    for p in std::iter::once(&root).chain(&tests) {
        // Kept from the collector before it is checked.
        store.add_temp_root(p).ok()?;
        if !store.is_valid(p).ok()? {
            return None;
        }
    }
    Some(EvaluationSummary { root, tests, main: entry.main, derivations: Vec::new() })
}

/// Evaluate `recipe` unless an unchanged evaluation of it is remembered.
pub fn evaluate_cached(
    recipe: &Path,
    store: &mut LocalStore,
) -> Result<EvaluationSummary, EvalError> {
    let abs = std::path::absolute(recipe).map_err(|error| EvalError::Read { path: recipe.to_owned(), error })?;
    let abs = crate::recipe::normalize(&abs);
    let file = entry_file(store, &abs);
    if let Some(hit) = lookup(store, &file) {
        return Ok(hit);
    }
    // Stamps first: a file changed while we evaluate gives a stale stamp,
    // hence a miss next time, never a stale hit.
    let set = crate::load(&abs)?;
    let mut stamps = vec![exe_stamp()];
    for (path, r) in &set.recipes {
        stamps.push((path.clone(), stamp(path)));
        for s in &r.sources {
            if let crate::recipe::Source::Local { path, .. } = s {
                stamp_tree(path, &mut stamps);
            }
        }
    }
    // The lock that was read, and where a nearer one would be found: a
    // lock created closer to the recipe takes over.
    if let Some((lock, _)) = &set.lock {
        stamps.push((lock.clone(), stamp(lock)));
        let dir = abs.parent().unwrap_or(Path::new("/"));
        for d in dir.ancestors().take_while(|d| Some(*d) != lock.parent()) {
            let candidate = d.join(drv_debian::lock::LOCK_FILE_NAME);
            stamps.push((candidate.clone(), stamp(&candidate)));
        }
    }
    let eval = crate::lower(&set, store)?;
    let main = eval.get(&eval.root).and_then(|(_, n)| (n.kind == NodeKind::Package).then(|| n.main.clone()).flatten());
    let derivations = eval.derivations.into_iter().map(|(p, (d, _))| (p, d)).collect();
    let summary = EvaluationSummary { root: eval.root, tests: eval.tests, main, derivations };
    let entry = Entry {
        format: FORMAT,
        root: store.display(&summary.root),
        tests: summary.tests.iter().map(|t| store.display(t)).collect(),
        main: summary.main.clone(),
        stamps,
    };
    // A cache that cannot be written only costs the next run time.
    if let Some(dir) = file.parent() {
        if fs::create_dir_all(dir).is_ok() {
            let tmp = file.with_extension(format!("tmp-{}", std::process::id()));
            if fs::write(&tmp, serde_json::to_vec(&entry).unwrap_or_default()).is_ok() {
                let _ = fs::rename(&tmp, &file);
            }
        }
    }
    Ok(summary)
}
