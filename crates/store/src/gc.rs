//! The garbage collector: deletes every store path no root needs.
//!
//! [`collect_garbage`] computes the *live set*, the closure of all roots
//! ([`crate::roots`]) over references, plus with `keep-derivations` the
//! derivers of live paths and with `keep-outputs` the outputs of live
//! derivations, and deletes everything else in the store directory: every
//! other valid path, and every invalid leftover (interrupted builds,
//! `.check` copies, dead staging directories, trash of a killed collection).
//!
//! Fast on big stores: the whole graph comes from three queries and the live
//! set is computed in memory; paths are unregistered in batches, one
//! transaction each.
//!
//! Safe:
//! - the collector holds `gc.lock` exclusively from reading the roots to the
//!   last deletion, so a temporary root is either seen or waits (see
//!   [`crate::roots`] for the protocol);
//! - a path in use is a temporary root of its user (taken before it is
//!   locked, installed or used), hence live; an invalid path that is a
//!   temporary root (being created) is left alone too;
//! - a path is unregistered before its files are touched, referrers before
//!   their references (the database refuses to unregister a path that a valid
//!   path refers to), then deleted. A collection
//!   killed at any point leaves no valid path with missing files; what it
//!   leaves behind is an invalid leftover the next collection deletes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};

use drv_formats::{nar, StorePath};

use crate::local::LocalStore;
use crate::lock::FileLock;
use crate::roots::{GcRoot, RootKind};
use crate::error::StoreError;

/// What can go wrong collecting garbage.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot delete {}: {error}", path.display())]
    Delete { path: PathBuf, error: std::io::Error },
}

pub type Result<T, E = GcError> = std::result::Result<T, E>;

/// How to collect.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcOptions {
    /// Compute and report what would be deleted; change nothing.
    pub dry_run: bool,
    /// Stop once this many bytes are freed (see [`GcReport::bytes_freed`]);
    /// invalid leftovers go first, then valid paths least recently
    /// registered first among those no remaining path refers to.
    pub max_freed: Option<u64>,
    /// Keep the outputs of live derivations (`keep-outputs`).
    pub keep_outputs: bool,
    /// Keep the derivations of live paths (`keep-derivations`).
    pub keep_derivations: bool,
}

/// What a collection found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub dry_run: bool,
    /// Every root, sorted.
    pub roots: Vec<GcRoot>,
    /// The live valid paths, sorted, as logical paths (`/store/<name>`).
    pub live: Vec<String>,
    /// What was (with `dry_run`: would be) deleted, in order, as logical
    /// paths (`/store/<name>`); invalid leftovers included.
    pub deleted: Vec<String>,
    /// How many of `deleted` were valid paths.
    pub deleted_valid: usize,
    /// Bytes freed: the registered NAR size of each valid path (its
    /// apparent size, not blocks on disk) plus the apparent size of each
    /// leftover (file lengths).
    pub bytes_freed: u64,
    /// Dead paths left alone because another process had them locked or a
    /// new path refers to them.
    pub in_use: usize,
}

/// Paths unregistered per transaction. The first batch is small so that
/// deletions start at once; later ones grow, since each transaction
/// rewrites most pages of the path index (paths are spread over it by
/// hash), up to a size whose transaction still takes well under a second,
/// so that other writers never wait long.
const FIRST_BATCH: usize = 256;
const MAX_BATCH: usize = 8192;

/// Collect garbage in `store` (see the module documentation). Blocks while
/// another collection runs.
pub fn collect_garbage(store: &mut LocalStore, options: &GcOptions) -> Result<GcReport> {
    let _gc = FileLock::exclusive(&store.layout().gc_lock_file())?;
    let prune = !options.dry_run;
    let mut roots = store.find_roots(prune)?;
    roots.extend(store.read_temp_roots(prune)?);
    let mut runtime = store.runtime_roots();
    roots.sort();
    roots.dedup();

    // Listing a big store directory takes as long as loading the graph:
    // do both at once.
    let real_store_dir = store.real_store_dir().to_owned();
    let listing = {
        let dir = real_store_dir.clone();
        std::thread::spawn(move || list_dir(&dir))
    };
    let graph = store.db().gc_graph()?;
    let nodes = &graph.nodes;
    let index: HashMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.path.as_str(), i)).collect();
    // Only the valid ones: the strings found in processes name paths of
    // any store with our store directory, or none at all.
    runtime.retain(|r| index.contains_key(store.display(&r.path).as_str()));
    roots.append(&mut runtime);
    roots.sort();

    let mut live = vec![false; nodes.len()];
    let mut stack: Vec<usize> = roots.iter().filter_map(|r| index.get(store.display(&r.path).as_str()).copied()).collect();
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut live[i], true) {
            continue;
        }
        let node = &nodes[i];
        stack.extend(node.references.iter().filter(|&&r| !live[r]));
        if options.keep_derivations {
            stack.extend(node.deriver.filter(|&d| !live[d]));
        }
        if options.keep_outputs && node.path.ends_with(".drv") {
            stack.extend(node.outputs.iter().filter(|&&o| !live[o]));
        }
    }

    let mut report = GcReport { dry_run: options.dry_run, ..Default::default() };
    let mut live_paths: Vec<String> = (0..nodes.len()).filter(|&i| live[i]).map(|i| nodes[i].path.clone()).collect();
    live_paths.sort();
    report.live = live_paths;

    let temp_roots: HashSet<&StorePath> =
        roots.iter().filter(|r| matches!(r.kind, RootKind::Temporary(_))).map(|r| &r.path).collect();
    let valid_names: HashSet<&str> = nodes.iter().map(|n| basename(&n.path)).collect();
    let entries = listing.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
    let leftovers = find_leftovers(store, entries, &valid_names, &temp_roots)?;
    let order = deletion_order(nodes, &live);
    report.roots = roots;

    let max = options.max_freed.unwrap_or(u64::MAX);
    let store_dir = store.store_dir().as_str().trim_end_matches('/').to_owned();

    for leftover in leftovers {
        if report.bytes_freed >= max {
            break;
        }
        let real = store.real_store_dir().join(&leftover.name);
        let size = apparent_size(&real);
        if !options.dry_run {
            let lock = match &leftover.lock_file {
                Some(file) => match FileLock::try_exclusive(file)? {
                    Some(lock) => Some(lock),
                    None => {
                        report.in_use += 1;
                        continue;
                    }
                },
                None => None,
            };
            nar::remove_tree(&real).map_err(|error| GcError::Delete { path: real.clone(), error })?;
            if let Some(lock) = lock {
                let _ = fs::remove_file(lock.path());
            }
        }
        report.deleted.push(format!("{store_dir}/{}", leftover.name));
        report.bytes_freed += size;
    }

    // Unregister batch by batch on this thread; delete the files of each
    // unregistered batch on the deleter threads meanwhile.
    let real_store_dir = &real_store_dir;
    let store_dir_fd = if options.dry_run || order.is_empty() {
        None
    } else {
        let flags = rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC;
        let dir = rustix::fs::open(real_store_dir, flags, rustix::fs::Mode::empty());
        Some(dir.map_err(|e| StoreError::io(real_store_dir, e.into()))?)
    };
    let (to_delete, queue) = mpsc::channel::<String>();
    let queue = Mutex::new(queue);
    let delete_error: Mutex<Option<GcError>> = Mutex::new(None);
    std::thread::scope(|scope| -> Result<()> {
        if let Some(dir) = &store_dir_fd {
            for _ in 0..DELETER_THREADS {
                scope.spawn(|| delete_queued(&queue, dir, real_store_dir, &delete_error));
            }
        }
        // Dropped on every way out, which lets the deleters finish.
        let to_delete = to_delete;
        let mut pending = order.into_iter().peekable();
        let mut batch_size = FIRST_BATCH;
        while report.bytes_freed < max && pending.peek().is_some() {
            let mut batch: Vec<usize> = Vec::new();
            let mut projected = report.bytes_freed;
            while batch.len() < batch_size && projected < max {
                let Some(i) = pending.next() else { break };
                // A path that a process is creating or using is one of its
                // temporary roots (added before the path is locked, installed
                // or used), hence live: dead paths need no per-path lock.
                projected += nodes[i].nar_size;
                batch.push(i);
            }
            let unregistered = if options.dry_run {
                vec![true; batch.len()]
            } else {
                let ids: Vec<i64> = batch.iter().map(|&i| nodes[i].id).collect();
                store.db_mut().unregister(&ids)?
            };
            batch_size = (batch_size * 4).min(MAX_BATCH);
            for (i, done) in batch.into_iter().zip(unregistered) {
                let node = &nodes[i];
                if !done {
                    // A path registered after we read the graph refers to it
                    // (its references then fail the same way).
                    report.in_use += 1;
                    continue;
                }
                if !options.dry_run {
                    // Nobody can install this path meanwhile: that takes a
                    // temporary root, which waits for our exclusive gc.lock.
                    // The deleters outlive this loop: a send cannot fail.
                    let _ = to_delete.send(basename(&node.path).to_owned());
                }
                report.deleted.push(node.path.clone());
                report.deleted_valid += 1;
                report.bytes_freed += node.nar_size;
            }
        }
        Ok(())
    })?;
    match delete_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(error) => Err(error),
        None => Ok(report),
    }
}

/// Unlinks in flight at once. Removing a small file from an ext4 directory
/// spends most of its time waiting, not computing (here: for the disk to
/// discard the freed blocks): with 32 deletions in flight 10,000 files go
/// 3-4x sooner than one at a time, even on 2 cores.
const DELETER_THREADS: usize = 32;

/// A deleter thread: delete the entries named on `queue` until it closes;
/// the first failure is kept in `error`.
fn delete_queued(
    queue: &Mutex<mpsc::Receiver<String>>,
    dir: &std::os::fd::OwnedFd,
    real_dir: &Path,
    error: &Mutex<Option<GcError>>,
) {
    loop {
        // Not in the loop's head, whose temporaries (the guard) would live
        // through the deletion.
        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(name) = next else { return };
        if let Err(e) = delete_entry(dir, real_dir, &name) {
            let failure = GcError::Delete { path: real_dir.join(name), error: e };
            error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(failure);
        }
    }
}

/// Delete the entry `name` of the store directory (open as `dir`, at
/// `real_dir`): a file or symlink in one `unlinkat`, a directory tree
/// otherwise.
fn delete_entry(dir: &impl std::os::fd::AsFd, real_dir: &Path, name: &str) -> std::io::Result<()> {
    match rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::NOENT) => Ok(()),
        // A directory (EISDIR), or an entry of a read-only one.
        Err(_) => nar::remove_tree(&real_dir.join(name)),
    }
}

/// An entry of the store directory that is not a valid path.
struct Leftover {
    name: String,
    /// The lock that its creator would hold, if it has one.
    lock_file: Option<PathBuf>,
}

/// Invalid entries of the store directory that nobody is creating: staging
/// directories whose lock is free, store-path-named entries that are
/// neither temporary roots nor locked (checked again at deletion), and
/// anything else. Sorted by name.
fn find_leftovers(
    store: &LocalStore,
    entries: Vec<std::ffi::OsString>,
    valid_names: &HashSet<&str>,
    temp_roots: &HashSet<&StorePath>,
) -> Result<Vec<Leftover>> {
    let mut found = Vec::new();
    for entry in entries {
        let Some(name) = entry.to_str().map(str::to_owned) else {
            // Not UTF-8: no name drv makes; nothing can be using it.
            found.push(Leftover { name: entry.to_string_lossy().into_owned(), lock_file: None });
            continue;
        };
        if valid_names.contains(name.as_str()) {
            continue;
        }
        let lock_file = if name.starts_with(".tmp-") {
            let file = store.layout().staging_lock_file(&name);
            if FileLock::try_exclusive(&file)?.is_none() {
                continue;
            }
            Some(file)
        } else if let Ok(path) = StorePath::from_basename(&name) {
            // Also `<path>.check` and the like: locked by the same lock.
            if temp_roots.contains(&path) {
                continue;
            }
            Some(store.layout().path_lock_file(&path))
        } else {
            None
        };
        found.push(Leftover { name, lock_file });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// The file name of a logical store path (`/store/<name>`).
fn basename(logical: &str) -> &str {
    logical.rsplit_once('/').map_or(logical, |(_, name)| name)
}

/// The names in a directory.
fn list_dir(dir: &Path) -> Result<Vec<std::ffi::OsString>, StoreError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        names.push(entry.map_err(|e| StoreError::io(dir, e))?.file_name());
    }
    Ok(names)
}

/// The dead paths in an order that deletes referrers before their
/// references, and among the paths no remaining dead path refers to, the
/// least recently registered first.
fn deletion_order(nodes: &[crate::db::GcNode], live: &[bool]) -> Vec<usize> {
    let mut referrers = vec![0u32; nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        if !live[i] {
            for &r in &node.references {
                if r != i {
                    referrers[r] += 1;
                }
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<(i64, usize)>> = (0..nodes.len())
        .filter(|&i| !live[i] && referrers[i] == 0)
        .map(|i| Reverse((nodes[i].registration_time, i)))
        .collect();
    let mut order = Vec::new();
    let mut emitted = vec![false; nodes.len()];
    while let Some(Reverse((_, i))) = ready.pop() {
        order.push(i);
        emitted[i] = true;
        for &r in &nodes[i].references {
            if r != i && !live[r] {
                referrers[r] -= 1;
                if referrers[r] == 0 {
                    ready.push(Reverse((nodes[r].registration_time, r)));
                }
            }
        }
    }
    // Only a reference cycle (which content addressing rules out) is left;
    // the database refuses those paths, which are then kept.
    order.extend((0..nodes.len()).filter(|&i| !live[i] && !emitted[i]));
    order
}

/// Sum of the lengths of the files (and symlinks) under `path`.
fn apparent_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| apparent_size(&e.path())).sum())
        .unwrap_or(0)
}

/// Parse a size as `drv gc --max-freed` takes it: bytes, or a number with
/// a binary suffix `K`, `M`, `G`, `T` (optionally followed by `iB` or `B`).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let (digits, shift) = match t.char_indices().last()? {
        (i, 'K' | 'k') => (&t[..i], 10),
        (i, 'M' | 'm') => (&t[..i], 20),
        (i, 'G' | 'g') => (&t[..i], 30),
        (i, 'T' | 't') => (&t[..i], 40),
        _ => (t, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use drv_formats::StoreDir;
    use std::collections::BTreeSet;

    fn chain(s: &mut LocalStore, prefix: &str, len: usize) -> Vec<StorePath> {
        let mut out: Vec<StorePath> = Vec::new();
        for i in 0..len {
            let refs: BTreeSet<StorePath> = out.last().cloned().into_iter().collect();
            let text = format!("{prefix}{i} {}", out.last().map(|p| s.display(p)).unwrap_or_default());
            out.push(s.add_text(&format!("{prefix}{i}"), text.as_bytes(), &refs).unwrap());
        }
        out
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("10M"), Some(10 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("2KiB"), Some(2048));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn roots_keep_their_closure_and_nothing_else() {
        let (_t, mut s) = LocalStore::temporary();
        let live = chain(&mut s, "live", 5);
        let dead = chain(&mut s, "dead", 5);
        s.add_root("r", live.last().unwrap()).unwrap();
        s.clear_temp_roots().unwrap();
        let leftover = s.real_store_dir().join("00000000000000000000000000000000-partial");
        fs::create_dir_all(leftover.join("d")).unwrap();
        let dry = collect_garbage(&mut s, &GcOptions { dry_run: true, ..Default::default() }).unwrap();
        assert_eq!(dry.deleted.len(), 6);
        assert_eq!(s.all_valid_paths().unwrap().len(), 10);
        let real = collect_garbage(&mut s, &GcOptions::default()).unwrap();
        assert_eq!(real.deleted, dry.deleted);
        assert_eq!(real.bytes_freed, dry.bytes_freed);
        // referrers first
        assert_eq!(real.deleted[1], s.display(&dead[4]));
        let mut valid = s.all_valid_paths().unwrap();
        valid.sort();
        let mut want = live.clone();
        want.sort();
        assert_eq!(valid, want);
        assert_eq!(fs::read_dir(s.real_store_dir()).unwrap().count(), 5);
        assert!(s.verify(false).unwrap().is_empty());
    }

    #[test]
    fn temp_roots_protect_paths_and_their_closures() {
        let (_t, mut s) = LocalStore::temporary();
        let a = chain(&mut s, "a", 3);
        let b = chain(&mut s, "b", 1);
        s.clear_temp_roots().unwrap();
        s.add_temp_root(&a[2]).unwrap();
        s.add_temp_root(&b[0]).unwrap();
        let r = collect_garbage(&mut s, &GcOptions::default()).unwrap();
        assert!(r.deleted.is_empty(), "{:?}", r.deleted);
        s.clear_temp_roots().unwrap();
        let r = collect_garbage(&mut s, &GcOptions::default()).unwrap();
        assert_eq!(r.deleted_valid, 4);
        assert_eq!(fs::read_dir(s.real_store_dir()).unwrap().count(), 0);
    }

    #[test]
    fn a_pause_holds_collections_off_and_its_roots_count_once_resumed() {
        let (t, mut s) = LocalStore::temporary();
        let a = chain(&mut s, "a", 2);
        let b = chain(&mut s, "b", 1);
        s.clear_temp_roots().unwrap();
        s.pause_collections().unwrap();
        s.add_temp_root(&a[1]).unwrap();
        s.add_temp_root(&b[0]).unwrap();
        let temproots = s.layout().temp_roots_dir();
        let written = || -> u64 { fs::read_dir(&temproots).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum() };
        assert_eq!(written(), 0, "a pause writes no temporary roots");
        let root = t.path().join("root");
        let collector = std::thread::spawn(move || {
            let mut other = LocalStore::open(&root, StoreDir::default()).unwrap();
            collect_garbage(&mut other, &GcOptions::default()).unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!collector.is_finished(), "the collection waits for the pause");
        s.resume_collections().unwrap();
        assert!(written() > 0);
        let report = collector.join().unwrap();
        assert!(report.deleted.is_empty(), "{:?}", report.deleted);

        // Dropped roots protect nothing once the pause ends.
        s.clear_temp_roots().unwrap();
        s.pause_collections().unwrap();
        s.add_temp_root(&a[1]).unwrap();
        s.end_pause_dropping_temp_roots();
        s.add_temp_root(&b[0]).unwrap();
        let report = collect_garbage(&mut s, &GcOptions::default()).unwrap();
        assert_eq!(report.deleted, vec![s.display(&a[1]), s.display(&a[0])]);
    }

    #[test]
    fn dead_paths_of_every_kind_are_deleted() {
        let (t, mut s) = LocalStore::temporary();
        let src = t.path().join("tree");
        fs::create_dir_all(src.join("sub/deeper")).unwrap();
        fs::write(src.join("sub/deeper/file"), b"x").unwrap();
        std::os::unix::fs::symlink("sub", src.join("link")).unwrap();
        let tree = s.add_path(&src, "tree", crate::local::Ingestion::Recursive).unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink("/nowhere", &link).unwrap();
        let symlink = s.add_path(&link, "symlink", crate::local::Ingestion::Recursive).unwrap();
        let file = chain(&mut s, "file", 1);
        // Canonical store paths are read-only, directories too.
        assert!(fs::metadata(s.real_path(&tree)).unwrap().permissions().readonly());
        s.clear_temp_roots().unwrap();
        let report = collect_garbage(&mut s, &GcOptions::default()).unwrap();
        assert_eq!(report.deleted_valid, 3);
        for p in [&tree, &symlink, &file[0]] {
            assert!(fs::symlink_metadata(s.real_path(p)).is_err(), "{} is left", s.display(p));
        }
        assert_eq!(fs::read_dir(s.real_store_dir()).unwrap().count(), 0);
    }

    #[test]
    fn keep_derivations_and_keep_outputs() {
        let (_t, mut s) = LocalStore::temporary();
        let drv = s.add_text("x.drv", b"derivation", &BTreeSet::new()).unwrap();
        let out = s.add_text("x", b"output", &BTreeSet::new()).unwrap();
        let mut info = s.require_path_info(&out).unwrap();
        info.deriver = Some(drv.clone());
        s.register(&[info]).unwrap();
        s.register_derivation_outputs(&drv, &[("out".to_owned(), out.clone())].into()).unwrap();
        s.clear_temp_roots().unwrap();
        s.add_root("out", &out).unwrap();
        s.clear_temp_roots().unwrap();
        let keep = GcOptions { dry_run: true, keep_derivations: true, ..Default::default() };
        assert!(collect_garbage(&mut s, &keep).unwrap().deleted.is_empty());
        let plain = GcOptions { dry_run: true, ..Default::default() };
        assert_eq!(collect_garbage(&mut s, &plain).unwrap().deleted, vec![s.display(&drv)]);
        s.remove_root("out").unwrap();
        s.add_root("drv", &drv).unwrap();
        s.clear_temp_roots().unwrap();
        let keep = GcOptions { dry_run: true, keep_outputs: true, ..Default::default() };
        assert!(collect_garbage(&mut s, &keep).unwrap().deleted.is_empty());
        assert_eq!(collect_garbage(&mut s, &plain).unwrap().deleted, vec![s.display(&out)]);
    }

    #[test]
    fn max_freed_deletes_oldest_first_and_stops() {
        let (_t, mut s) = LocalStore::temporary();
        let newer = chain(&mut s, "q", 1);
        // registered later, but with an older registration time
        let old = s.store_dir().text_path("old", b"old", &BTreeSet::new()).unwrap();
        fs::write(s.real_path(&old), b"old").unwrap();
        crate::local::canonicalise(&s.real_path(&old)).unwrap();
        let hash = nar::hash_regular(b"old", false);
        let info = crate::db::PathInfo {
            path: old.clone(),
            nar_hash: hash.sha256,
            nar_size: hash.size,
            references: BTreeSet::new(),
            deriver: None,
            registration_time: 1,
            ca: None,
            signatures: vec![],
        };
        s.register(&[info]).unwrap();
        s.clear_temp_roots().unwrap();
        let r = collect_garbage(&mut s, &GcOptions { max_freed: Some(1), ..Default::default() }).unwrap();
        assert_eq!(r.deleted, vec![s.display(&old)]);
        assert!(s.is_valid(&newer[0]).unwrap());
    }
}
