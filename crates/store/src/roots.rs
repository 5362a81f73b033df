//! Garbage-collector roots: what keeps store paths alive.
//!
//! - **Explicit roots**: `ROOT/var/drv/gcroots/<NAME>`, a symlink to a store
//!   path ([`LocalStore::add_root`], `drv root add NAME PATH`).
//! - **Indirect roots**: `ROOT/var/drv/gcroots/auto/<hash>`, a symlink to a
//!   link somewhere else (a `result` link) that points into the store
//!   ([`LocalStore::add_indirect_root`]). Alive while that link exists and
//!   points into the store; the collector removes the entries of links that
//!   are gone or point elsewhere.
//! - **Temporary roots**: `ROOT/var/drv/temproots/<pid>`, the store paths a
//!   running process uses, one per line ([`LocalStore::add_temp_root`]).
//!   Alive while that process holds its lock on the file, that is until it
//!   exits.
//!
//! # The locking protocol
//! `ROOT/var/drv/gc.lock` orders temporary roots against collections:
//! - a process appends to its temporary-roots file only while it holds a
//!   *shared* lock on `gc.lock`, and holds an exclusive lock on its own file
//!   for as long as it lives;
//! - the collector holds `gc.lock` *exclusively* from before it reads the
//!   roots until it has deleted the last path.
//!
//! So a temporary root is either written before the collector reads the
//! roots (and is seen), or its writer waits until the collection is over.
//! A process that calls `add_temp_root(p)` *before* it checks that `p` is
//! valid can therefore rely on `p` staying valid until it exits.
//!
//! A short command can instead hold `gc.lock` shared for its whole run
//! ([`LocalStore::pause_collections`]): no collection starts meanwhile, so
//! its temporary roots need no file until it lets collections run again
//! ([`LocalStore::resume_collections`] writes them first). `drv build`
//! checks validity this way and writes a file only when it has something
//! to download or build.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use drv_formats::{Sha256, StorePath};

use crate::local::LocalStore;
use crate::layout::AUTO_ROOTS;
use crate::lock::FileLock;
use crate::error::StoreError;

/// What can go wrong managing named roots.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("{name:?} is not a valid root name (a file name: no '/', not starting with '.', not \"auto\")")]
    InvalidName { name: String },
    #[error("there is no root named {name:?}")]
    NoSuchRoot { name: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a path is a root.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RootKind {
    /// `gcroots/<name>` (a name relative to `gcroots`).
    Explicit(String),
    /// A link elsewhere registered under `gcroots/auto/`.
    Indirect(PathBuf),
    /// In use by the running process with this id.
    Temporary(u32),
    /// Seen in `/proc/<pid>` of a running process (its working directory,
    /// executable, open files, memory maps or environment).
    Runtime(u32),
}

impl std::fmt::Display for RootKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RootKind::Explicit(name) => write!(f, "{name}"),
            RootKind::Indirect(link) => write!(f, "{}", link.display()),
            RootKind::Temporary(pid) => write!(f, "{{temp:{pid}}}"),
            RootKind::Runtime(pid) => write!(f, "{{runtime:{pid}}}"),
        }
    }
}

/// One root and the store path it keeps alive.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GcRoot {
    pub kind: RootKind,
    pub path: StorePath,
}

/// This process's temporary roots in one store (state directory).
#[derive(Default)]
struct TempRoots {
    /// The file (with our exclusive lock on it), once something is written.
    file: Option<FileLock>,
    /// Every path rooted, written or not.
    rooted: BTreeSet<StorePath>,
    /// While collections are paused: our shared lock on `gc.lock`, and the
    /// paths rooted meanwhile, which are not in the file yet.
    pause: Option<FileLock>,
    unwritten: Vec<StorePath>,
}

static TEMP_ROOTS: Mutex<Vec<(PathBuf, TempRoots)>> = Mutex::new(Vec::new());

/// This process's roots in the store whose state directory is `key`.
fn temp_roots_of<'a>(all: &'a mut Vec<(PathBuf, TempRoots)>, key: &Path) -> &'a mut TempRoots {
    let index = match all.iter().position(|(k, _)| k == key) {
        Some(i) => i,
        None => {
            all.push((key.to_owned(), TempRoots::default()));
            all.len() - 1
        }
    };
    &mut all[index].1
}

impl LocalStore {
    /// Hold garbage collection off until the returned guard (`gc.lock`,
    /// shared) is dropped: a collection waits for it, and paths found valid
    /// meanwhile stay. What [`Self::pause_collections`] holds for this
    /// process; taken alone by a reader that cannot take temporary roots
    /// (a long-running server, whose roots would only go when it exits).
    ///
    /// # Errors
    /// [`StoreError::Io`] if the lock file cannot be opened.
    pub fn collection_guard(&self) -> Result<FileLock, StoreError> {
        FileLock::shared(&self.layout().gc_lock_file())
    }

    /// Protect `path` from garbage collection until this process exits
    /// (or calls [`Self::clear_temp_roots`]). `path` need not be valid yet:
    /// a path being created is protected too, so the collector leaves its
    /// files alone.
    ///
    /// Contract: call this *before* checking that a path you are about to
    /// use is valid; from then on a collection either has seen the root or
    /// has finished. Blocks while a collection is running. Cheap when the
    /// path is a temporary root already. Never call it while holding
    /// `gc.lock` (the collector does not).
    pub fn add_temp_root(&self, path: &StorePath) -> Result<(), StoreError> {
        let mut all = TEMP_ROOTS.lock().unwrap_or_else(|e| e.into_inner());
        let roots = temp_roots_of(&mut all, self.layout().state_dir());
        if roots.rooted.contains(path) {
            return Ok(());
        }
        if roots.pause.is_some() {
            // No collection can start before we write it or exit.
            roots.unwritten.push(path.clone());
        } else {
            let _gc = self.collection_guard()?;
            self.write_temp_roots(roots, std::slice::from_ref(path))?;
        }
        roots.rooted.insert(path.clone());
        Ok(())
    }

    /// Keep collections from starting until [`Self::resume_collections`]
    /// (or [`Self::end_pause_dropping_temp_roots`]), waiting for one that
    /// runs. Meanwhile [`Self::add_temp_root`] writes no file: a command
    /// that finds everything valid finishes without ever creating one.
    /// Call it only before short work: a collection waits for it.
    pub fn pause_collections(&self) -> Result<(), StoreError> {
        let mut all = TEMP_ROOTS.lock().unwrap_or_else(|e| e.into_inner());
        let roots = temp_roots_of(&mut all, self.layout().state_dir());
        if roots.pause.is_none() {
            roots.pause = Some(self.collection_guard()?);
        }
        Ok(())
    }

    /// Let collections run again; the temporary roots taken during the
    /// pause are written first, so they stay protected. Does nothing
    /// unless collections are paused. Call it before long work.
    pub fn resume_collections(&self) -> Result<(), StoreError> {
        let mut all = TEMP_ROOTS.lock().unwrap_or_else(|e| e.into_inner());
        let roots = temp_roots_of(&mut all, self.layout().state_dir());
        if roots.pause.is_none() {
            return Ok(());
        }
        let unwritten = std::mem::take(&mut roots.unwritten);
        if !unwritten.is_empty() {
            // Still under the pause's shared lock.
            if let Err(e) = self.write_temp_roots(roots, &unwritten) {
                roots.unwritten = unwritten;
                return Err(e);
            }
        }
        roots.pause = None;
        Ok(())
    }

    /// Let collections run again and drop the temporary roots taken during
    /// the pause, for a command that is done with those paths (what it
    /// made is kept by its result links, if any).
    pub fn end_pause_dropping_temp_roots(&self) {
        let mut all = TEMP_ROOTS.lock().unwrap_or_else(|e| e.into_inner());
        let roots = temp_roots_of(&mut all, self.layout().state_dir());
        for path in std::mem::take(&mut roots.unwritten) {
            roots.rooted.remove(&path);
        }
        roots.pause = None;
    }

    /// Append `paths` to this process's temporary-roots file, creating it.
    /// The caller holds `gc.lock` shared.
    fn write_temp_roots(&self, roots: &mut TempRoots, paths: &[StorePath]) -> Result<(), StoreError> {
        if roots.file.is_none() {
            // Created under the shared gc.lock: the collector, which
            // deletes the files of dead processes under the exclusive
            // one, cannot delete it between our open and our lock.
            let dir = self.layout().temp_roots_dir();
            fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
            let file = dir.join(std::process::id().to_string());
            let lock = FileLock::exclusive(&file)?;
            // Left by a dead process that had our pid.
            lock.file().set_len(0).map_err(|e| StoreError::io(&file, e))?;
            roots.file = Some(lock);
        }
        let lock = roots.file.as_ref().expect("created above");
        let mut lines = String::new();
        for path in paths {
            lines.push_str(&self.display(path));
            lines.push('\n');
        }
        let mut file = lock.file();
        file.seek(SeekFrom::End(0))
            .and_then(|_| file.write_all(lines.as_bytes()))
            .map_err(|e| StoreError::io(lock.path(), e))
    }

    /// Drop this process's temporary roots (for long-running processes
    /// between jobs, and for tests that build a store and then collect it).
    pub fn clear_temp_roots(&self) -> Result<(), StoreError> {
        let mut all = TEMP_ROOTS.lock().unwrap_or_else(|e| e.into_inner());
        let roots = temp_roots_of(&mut all, self.layout().state_dir());
        if let Some(lock) = &roots.file {
            let _gc = self.collection_guard()?;
            lock.file().set_len(0).map_err(|e| StoreError::io(lock.path(), e))?;
        }
        roots.rooted.clear();
        roots.unwritten.clear();
        Ok(())
    }

    /// Make `path` an explicit root named `name` (replacing a root of that
    /// name). `path` must be valid.
    pub fn add_root(&self, name: &str, path: &StorePath) -> Result<PathBuf, RootError> {
        validate_root_name(name)?;
        // Rooted temporarily first, so it cannot go between the check and
        // the link.
        self.add_temp_root(path)?;
        if !self.is_valid(path)? {
            return Err(StoreError::NotValid(self.display(path)).into());
        }
        let link = self.layout().gc_roots_dir().join(name);
        replace_symlink(Path::new(&self.display(path)), &link)?;
        Ok(link)
    }

    /// Remove the explicit root `name`.
    pub fn remove_root(&self, name: &str) -> Result<(), RootError> {
        validate_root_name(name)?;
        let link = self.layout().gc_roots_dir().join(name);
        match fs::remove_file(&link) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(RootError::NoSuchRoot { name: name.to_owned() }),
            Err(e) => Err(StoreError::io(&link, e).into()),
        }
    }

    /// Register `link` (a symlink into the store outside the state
    /// directory, such as `result`) as an indirect root: its target stays
    /// alive while `link` exists and points into the store. Idempotent;
    /// repointing or removing `link` needs no further call.
    pub fn add_indirect_root(&self, link: &Path) -> Result<(), StoreError> {
        let link = std::path::absolute(link).map_err(|e| StoreError::io(link, e))?;
        let digest = Sha256::digest(link.as_os_str().as_encoded_bytes());
        let name = drv_formats::nixbase32::encode(&digest.0[..20]);
        let entry = self.layout().auto_roots_dir().join(name);
        if fs::read_link(&entry).is_ok_and(|t| t == link) {
            return Ok(());
        }
        replace_symlink(&link, &entry)
    }

    /// The explicit and indirect roots, and the temporary roots of running
    /// processes. Reads only: dangling indirect entries are skipped, not
    /// removed.
    pub fn roots(&self) -> Result<Vec<GcRoot>, StoreError> {
        let mut roots = self.find_roots(false)?;
        roots.extend(self.read_temp_roots(false)?);
        roots.sort();
        Ok(roots)
    }

    /// Explicit and indirect roots; with `prune`, removes `auto/` entries
    /// whose link is gone or no longer points into the store.
    pub(crate) fn find_roots(&self, prune: bool) -> Result<Vec<GcRoot>, StoreError> {
        let mut roots = Vec::new();
        let dir = self.layout().gc_roots_dir();
        self.find_roots_in(&dir, "", &mut roots)?;
        let auto = dir.join(AUTO_ROOTS);
        for entry in fs::read_dir(&auto).map_err(|e| StoreError::io(&auto, e))? {
            let entry = entry.map_err(|e| StoreError::io(&auto, e))?;
            let Ok(link) = fs::read_link(entry.path()) else { continue };
            match self.link_target(&link) {
                Some(path) => roots.push(GcRoot { kind: RootKind::Indirect(link), path }),
                None if prune => {
                    let _ = fs::remove_file(entry.path());
                }
                None => {}
            }
        }
        Ok(roots)
    }

    fn find_roots_in(&self, dir: &Path, prefix: &str, roots: &mut Vec<GcRoot>) -> Result<(), StoreError> {
        for entry in fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
            let entry = entry.map_err(|e| StoreError::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if prefix.is_empty() && name == AUTO_ROOTS || name.starts_with('.') {
                continue;
            }
            let full_name = format!("{prefix}{name}");
            let ft = entry.file_type().map_err(|e| StoreError::io(&entry.path(), e))?;
            if ft.is_dir() {
                self.find_roots_in(&entry.path(), &format!("{full_name}/"), roots)?;
            } else if ft.is_symlink() {
                let target = fs::read_link(entry.path()).map_err(|e| StoreError::io(&entry.path(), e))?;
                let target = entry.path().parent().unwrap_or(dir).join(target);
                let path = self.store_path_of(&target).or_else(|| self.link_target(&target));
                if let Some(path) = path {
                    roots.push(GcRoot { kind: RootKind::Explicit(full_name), path });
                }
            }
        }
        Ok(())
    }

    /// The store path the symlink `link` points to, if it is one and points
    /// into the store (logically or physically).
    fn link_target(&self, link: &Path) -> Option<StorePath> {
        let target = fs::read_link(link).ok()?;
        // Relative targets are relative to the link's directory.
        self.store_path_of(&link.parent().unwrap_or(Path::new("/")).join(target))
    }

    /// The store path `p` is or is inside of, by its name alone.
    fn store_path_of(&self, p: &Path) -> Option<StorePath> {
        let s = p.to_str()?;
        if let Ok((path, _)) = self.store_dir().split_path(s) {
            return Some(path);
        }
        let rest = p.strip_prefix(self.real_store_dir()).ok()?;
        let first = rest.components().next()?.as_os_str().to_str()?;
        StorePath::from_basename(first).ok()
    }

    /// Delete the temporary-roots files of processes that have exited (no
    /// lock on them), as a collection does; returns how many went. Their
    /// files are named by pid, but a pid alone says nothing (it may be
    /// reused): the lock a live process holds on its file does.
    ///
    /// Only done while `gc.lock` is free and then held exclusively, as by
    /// the collector: a process creates its file under the shared lock, so
    /// no file can be deleted between its creator's `open` and `flock`.
    /// When `gc.lock` is busy (a collection, which prunes them itself, or
    /// paused collections, including this process's own) nothing is done.
    pub fn remove_dead_temp_roots(&self) -> Result<usize, StoreError> {
        let Some(_gc) = FileLock::try_exclusive(&self.layout().gc_lock_file())? else { return Ok(0) };
        let dir = self.layout().temp_roots_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(StoreError::io(&dir, e)),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
            if entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()).is_none() {
                continue;
            }
            if let Some(_dead) = FileLock::try_exclusive(&entry.path())? {
                let _ = fs::remove_file(entry.path());
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The temporary roots of running processes. With `prune`, deletes the
    /// files of processes that are gone. The collector calls this holding
    /// `gc.lock` exclusively, so no file is being written or created.
    pub(crate) fn read_temp_roots(&self, prune: bool) -> Result<Vec<GcRoot>, StoreError> {
        let dir = self.layout().temp_roots_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(StoreError::io(&dir, e)),
        };
        let mut roots = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
            let file = entry.path();
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if let Some(lock) = FileLock::try_exclusive(&file)? {
                // Nobody holds it: its process is gone.
                if prune {
                    let _ = fs::remove_file(&file);
                }
                drop(lock);
                continue;
            }
            let text = match fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io(&file, e)),
            };
            for line in text.lines() {
                if let Ok(path) = self.store_dir().parse_path(line) {
                    roots.push(GcRoot { kind: RootKind::Temporary(pid), path });
                }
            }
        }
        Ok(roots)
    }
}

impl LocalStore {
    /// Store paths that running processes use without having rooted them:
    /// a shell whose working directory is inside a path, a program run from
    /// the store, a file or library it has open or mapped, a path named in
    /// its environment. As Nix's `findRuntimeRoots` (src/libstore/gc.cc),
    /// from one pass over `/proc` (proc(5): `/proc/PID/{cwd,exe,root,fd/*}`
    /// links, `maps`, `environ`): every string that looks like a path in
    /// this store, logical (`/store/<hash>-<name>`) or physical, yields the
    /// store path it names, valid or not (the caller keeps the valid ones).
    ///
    /// Conservative, as Nix's: a logical path names a path of every store
    /// with this store directory, so a process using `/store/<x>` of
    /// another root keeps `<x>` here too.
    ///
    /// Best effort by nature: processes of other users are unreadable
    /// (skipped), and a process may start using a path after the pass. For
    /// the collector only; ordinary commands hold what they use with
    /// temporary roots.
    pub(crate) fn runtime_roots(&self) -> Vec<GcRoot> {
        let mut prefixes = vec![format!("{}/", self.store_dir().as_str().trim_end_matches('/'))];
        if let Some(real) = self.real_store_dir().to_str() {
            let real = format!("{}/", real.trim_end_matches('/'));
            if real != prefixes[0] {
                prefixes.push(real);
            }
        }
        let mut roots = Vec::new();
        let Ok(procs) = fs::read_dir("/proc") else { return roots };
        for entry in procs.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let dir = entry.path();
            let mut found = BTreeSet::new();
            let mut scan = |text: &[u8]| scan_store_paths(text, &prefixes, &mut found);
            for link in ["cwd", "exe", "root"] {
                if let Ok(target) = fs::read_link(dir.join(link)) {
                    scan(target.as_os_str().as_encoded_bytes());
                }
            }
            if let Ok(fds) = fs::read_dir(dir.join("fd")) {
                for fd in fds.flatten() {
                    if let Ok(target) = fs::read_link(fd.path()) {
                        scan(target.as_os_str().as_encoded_bytes());
                    }
                }
            }
            for file in ["maps", "environ"] {
                if let Ok(text) = fs::read(dir.join(file)) {
                    scan(&text);
                }
            }
            roots.extend(found.into_iter().map(|path| GcRoot { kind: RootKind::Runtime(pid), path }));
        }
        roots
    }
}

/// Add to `found` every store path named in `text` by one of `prefixes`
/// (each ending in `/`) that starts a path there (not `/store/` inside
/// `/elsewhere/store/`): the longest run of store-path name characters
/// after the prefix, if it parses as a store path base name.
fn scan_store_paths(text: &[u8], prefixes: &[String], found: &mut BTreeSet<StorePath>) {
    // Nix's store-path name characters (src/libstore/path.cc).
    let name_char = |b: &u8| b.is_ascii_alphanumeric() || b"+-._?=".contains(b);
    // What may precede an absolute path: anything but a path character
    // ('=' too, as in `VAR=/store/...`).
    let starts_path = |before: Option<&u8>| before.is_none_or(|b| !(b.is_ascii_alphanumeric() || b"+-._?/".contains(b)));
    for prefix in prefixes {
        let prefix = prefix.as_bytes();
        let mut from = 0;
        while let Some(at) = text[from..].windows(prefix.len()).position(|w| w == prefix) {
            let start = from + at;
            let tail = &text[start + prefix.len()..];
            let len = tail.iter().take_while(|b| name_char(b)).count();
            if starts_path(start.checked_sub(1).map(|i| &text[i])) {
                if let Ok(path) = std::str::from_utf8(&tail[..len]).map(StorePath::from_basename) {
                    found.extend(path.ok());
                }
            }
            from = start + prefix.len() + len;
        }
    }
}

fn validate_root_name(name: &str) -> Result<(), RootError> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') || name == AUTO_ROOTS || name.contains('\0') {
        return Err(RootError::InvalidName { name: name.to_owned() });
    }
    Ok(())
}

/// Point `link` at `target`, atomically replacing whatever `link` was
/// (a symlink beside it, renamed over it). A `link` without a file name
/// (`""`, `/`, `dir/..`, as a user may pass to `-o`) is
/// [`StoreError::LinkName`].
pub fn replace_symlink(target: &Path, link: &Path) -> Result<(), StoreError> {
    let (Some(dir), Some(file)) = (link.parent(), link.file_name()) else {
        return Err(StoreError::LinkName { link: link.to_owned() });
    };
    fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), file.to_string_lossy()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(|e| StoreError::io(&tmp, e))?;
    fs::rename(&tmp, link).map_err(|e| StoreError::io(link, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_path_without_a_file_name_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        for link in ["", "/", "missing/.."] {
            assert!(matches!(replace_symlink(t.path(), Path::new(link)), Err(StoreError::LinkName { .. })), "{link:?}");
        }
        let link = t.path().join("sub/result");
        replace_symlink(Path::new("/store/x"), &link).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("/store/x"));
    }

    #[test]
    fn explicit_and_indirect_roots_are_found_and_dangling_ones_pruned() {
        let (t, mut s) = LocalStore::temporary();
        let a = s.add_text("a", b"a", &BTreeSet::new()).unwrap();
        let b = s.add_text("b", b"b", &BTreeSet::new()).unwrap();
        s.add_root("keep-a", &a).unwrap();
        assert!(matches!(s.add_root("../x", &a), Err(RootError::InvalidName { .. })));
        let result = t.path().join("result");
        std::os::unix::fs::symlink(s.real_path(&b), &result).unwrap();
        s.add_indirect_root(&result).unwrap();
        s.add_indirect_root(&result).unwrap();
        let found = s.find_roots(false).unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.contains(&GcRoot { kind: RootKind::Explicit("keep-a".into()), path: a.clone() }));
        assert!(found.contains(&GcRoot { kind: RootKind::Indirect(result.clone()), path: b.clone() }));
        fs::remove_file(&result).unwrap();
        assert_eq!(s.find_roots(true).unwrap().len(), 1);
        assert_eq!(fs::read_dir(s.layout().auto_roots_dir()).unwrap().count(), 0);
        s.remove_root("keep-a").unwrap();
        assert!(matches!(s.remove_root("keep-a"), Err(RootError::NoSuchRoot { .. })));
    }

    #[test]
    fn temp_roots_files_of_exited_processes_are_removed_outside_collections() {
        let (_t, mut s) = LocalStore::temporary();
        let a = s.add_text("a", b"a", &BTreeSet::new()).unwrap();
        let dir = s.layout().temp_roots_dir();
        let ours = dir.join(std::process::id().to_string());
        let dead = dir.join("999999998");
        fs::write(&dead, format!("{}\n", s.display(&a))).unwrap();
        // while collections are paused (gc.lock shared), nothing goes
        s.pause_collections().unwrap();
        assert_eq!(s.remove_dead_temp_roots().unwrap(), 0);
        assert!(dead.exists());
        s.resume_collections().unwrap();
        assert_eq!(s.remove_dead_temp_roots().unwrap(), 1);
        assert!(!dead.exists());
        // ours is locked by this live process: kept
        assert!(ours.exists());
        assert_eq!(s.read_temp_roots(false).unwrap().len(), 1);
    }

    #[test]
    fn store_paths_are_found_where_a_path_starts() {
        let a = "0c9lsc8rwan9ll1f5v5cy3clbdw1xvcf-a";
        let b = "1b9p07z77phvv2hf6gm9f28syrgqmb8i-b.so.1";
        let text = format!(
            "HOLD=/store/{a}/sub\0PATH=/usr/bin:/r/store/{b}/bin\n7f00-7f01 r-xp 0 08:01 12 /r/store/{b} (deleted)\0\
             X=/elsewhere/store/{a}x\0/store/not-a-store-path\0/store/{a}"
        );
        let mut found = BTreeSet::new();
        scan_store_paths(text.as_bytes(), &["/store/".into(), "/r/store/".into()], &mut found);
        let want: BTreeSet<StorePath> =
            [a, b].into_iter().map(|n| StorePath::from_basename(n).unwrap()).collect();
        assert_eq!(found, want);
        // `/store/` inside another path names nothing of this store
        let mut found = BTreeSet::new();
        scan_store_paths(format!("/elsewhere/store/{a}").as_bytes(), &["/store/".into()], &mut found);
        assert!(found.is_empty());
    }

    #[test]
    fn temp_roots_of_this_process_are_read_and_cleared() {
        let (_t, mut s) = LocalStore::temporary();
        let a = s.add_text("a", b"a", &BTreeSet::new()).unwrap();
        // add_text roots what it adds
        let temp = s.read_temp_roots(true).unwrap();
        assert_eq!(temp, vec![GcRoot { kind: RootKind::Temporary(std::process::id()), path: a.clone() }]);
        s.clear_temp_roots().unwrap();
        assert!(s.read_temp_roots(true).unwrap().is_empty());
        s.add_temp_root(&a).unwrap();
        assert_eq!(s.read_temp_roots(true).unwrap().len(), 1);
        // a dead process's file is ignored and pruned
        let stale = s.layout().temp_roots_dir().join("999999999");
        fs::write(&stale, format!("{}\n", s.display(&a))).unwrap();
        assert_eq!(s.read_temp_roots(true).unwrap().len(), 1);
        assert!(!stale.exists());
    }
}
