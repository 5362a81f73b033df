//! The local store: files under a physical root, metadata in SQLite.
//! Where each file is: [`StoreLayout`](crate::layout::StoreLayout).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use drv_formats::{nar, ContentAddress, NarHash, Sha256, Sha256Writer, StoreDir, StorePath};

use crate::db::{Db, PathInfo};
use crate::layout::StoreLayout;
use crate::lock::FileLock;
use crate::valid::NewPath;
use crate::error::StoreError;

/// How a file system object is hashed when it is added by content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingestion {
    /// sha256 of a regular file's bytes.
    Flat,
    /// sha256 of the NAR serialisation (any file, directory or symlink).
    Recursive,
}

/// Something wrong with a valid path, found by [`LocalStore::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyProblem {
    /// Registered as valid but absent from disk.
    Missing(StorePath),
    /// Contents no longer match the registered NAR hash or size.
    Modified { path: StorePath, expected: NarHash, actual: NarHash },
    /// Refers to a path that is not in the store.
    DanglingReference { path: StorePath, reference: StorePath },
}

impl std::fmt::Display for VerifyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(p) => write!(f, "{p}: registered but missing from disk"),
            Self::Modified { path, expected, actual } => write!(
                f,
                "{path}: contents modified (NAR hash {} size {}, expected {} size {})",
                actual.sha256, actual.size, expected.sha256, expected.size
            ),
            Self::DanglingReference { path, reference } => {
                write!(f, "{path}: refers to {reference}, which is missing")
            }
        }
    }
}

/// Identifies one registration of a valid path: the database row (a new
/// one each time the path becomes valid again) and the NAR hash recorded.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PathVersion {
    id: i64,
    nar_hash: String,
}

/// A store on local disk: its [`StoreLayout`] and one SQLite connection.
/// Not shared between threads: clone the layout into a worker and open a
/// connection there.
pub struct LocalStore {
    layout: StoreLayout,
    db: Db,
}

/// The mtime Nix gives every store file (1 second after the epoch).
pub const CANONICAL_MTIME: i64 = 1;

impl LocalStore {
    /// Open (creating if needed) the store under physical root `root` for
    /// the logical store directory `store_dir`: [`StoreLayout::open`].
    pub fn open(root: &Path, store_dir: StoreDir) -> Result<Self, StoreError> {
        StoreLayout::new(root, store_dir).open()
    }

    /// A connection to the store at `layout`, whose directories exist.
    pub(crate) fn with_layout(layout: StoreLayout) -> Result<Self, StoreError> {
        let db = Db::open(&layout.database(), layout.store_dir().clone())?;
        Ok(Self { layout, db })
    }

    /// Where this store's files are.
    pub fn layout(&self) -> &StoreLayout {
        &self.layout
    }

    pub fn store_dir(&self) -> &StoreDir {
        self.layout.store_dir()
    }

    /// The physical root (`/` for the system store).
    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    /// Where `/store` physically is.
    pub fn real_store_dir(&self) -> &Path {
        self.layout.real_store_dir()
    }

    /// The file system location of a store path's files.
    pub fn real_path(&self, path: &StorePath) -> PathBuf {
        self.layout.real_path(path)
    }

    /// Parse a store path given as an absolute logical path (`/store/…`),
    /// a physical path under this root, or a base name; a trailing
    /// subpath is not allowed. Symlinks outside the store (a `result` link)
    /// are followed once.
    pub fn parse_path_arg(&self, arg: &str) -> Result<StorePath, StoreError> {
        if let Ok(p) = self.store_dir().parse_path(arg.trim_end_matches('/')) {
            return Ok(p);
        }
        let as_path = Path::new(arg);
        if let Ok(target) = fs::read_link(as_path) {
            // Relative link targets are relative to the link's directory.
            let target = as_path.parent().unwrap_or(Path::new("")).join(target);
            if let Some(t) = target.to_str() {
                if t != arg {
                    return self.parse_path_arg(t);
                }
            }
        }
        if let (Ok(abs), Ok(real_store)) = (fs::canonicalize(as_path), fs::canonicalize(self.real_store_dir())) {
            if let Ok(rest) = abs.strip_prefix(&real_store) {
                if let Some(first) = rest.components().next().and_then(|c| c.as_os_str().to_str()) {
                    return Ok(StorePath::from_basename(first)?);
                }
            }
        }
        StorePath::from_basename(arg).map_err(|_| StoreError::NotAStorePath {
            arg: arg.to_owned(),
            store_dir: self.store_dir().to_string(),
        })
    }

    pub fn display(&self, path: &StorePath) -> String {
        self.store_dir().display(path)
    }

    pub fn is_valid(&self, path: &StorePath) -> Result<bool, StoreError> {
        self.db.is_valid(path)
    }

    pub fn path_info(&self, path: &StorePath) -> Result<Option<PathInfo>, StoreError> {
        self.db.path_info(path)
    }

    /// The valid path whose hash part (the 32 characters before the `-`)
    /// is `hash_part`: how binary caches look paths up.
    pub fn path_from_hash_part(&self, hash_part: &str) -> Result<Option<StorePath>, StoreError> {
        Ok(self.db.path_from_hash_part(hash_part)?.map(|(p, ..)| p))
    }

    /// Like [`Self::path_from_hash_part`], with a [`PathVersion`] that
    /// changes whenever the path is registered anew (deleted and added
    /// again, possibly with other contents): what a cache of data derived
    /// from the path's metadata is keyed by.
    pub fn path_version_from_hash_part(&self, hash_part: &str) -> Result<Option<(StorePath, PathVersion)>, StoreError> {
        Ok(self.db.path_from_hash_part(hash_part)?.map(|(p, id, nar_hash)| (p, PathVersion { id, nar_hash })))
    }

    /// Like [`Self::path_info`], but a path that is not valid is an error.
    pub fn require_path_info(&self, path: &StorePath) -> Result<PathInfo, StoreError> {
        self.db
            .path_info(path)?
            .ok_or_else(|| StoreError::NotValid(self.display(path)))
    }

    pub fn all_valid_paths(&self) -> Result<Vec<StorePath>, StoreError> {
        self.db.all_valid_paths()
    }

    pub fn referrers(&self, path: &StorePath) -> Result<BTreeSet<StorePath>, StoreError> {
        self.db.referrers(path)
    }

    /// Every valid path and its references, from one query.
    pub fn reference_graph(&self) -> Result<BTreeMap<StorePath, BTreeSet<StorePath>>, StoreError> {
        self.db.reference_graph()
    }

    pub fn derivation_outputs(&self, drv: &StorePath) -> Result<BTreeMap<String, StorePath>, StoreError> {
        self.db.derivation_outputs(drv)
    }

    /// The closure of `paths` over references (the paths included); every
    /// path must be valid.
    pub fn closure(&self, paths: &BTreeSet<StorePath>) -> Result<BTreeSet<StorePath>, StoreError> {
        let mut seen = BTreeSet::new();
        let mut queue: VecDeque<StorePath> = paths.iter().cloned().collect();
        while let Some(p) = queue.pop_front() {
            if !seen.insert(p.clone()) {
                continue;
            }
            let info = self.require_path_info(&p)?;
            queue.extend(info.references.into_iter().filter(|r| !seen.contains(r)));
        }
        Ok(seen)
    }

    /// Register paths whose files are complete and canonical, in one
    /// transaction (tests set up stores with it; everything else goes
    /// through [`Self::add_valid`]).
    #[cfg(test)]
    pub(crate) fn register(&mut self, infos: &[PathInfo]) -> Result<(), StoreError> {
        self.db.register(infos, None)
    }

    /// Record which output paths the valid derivation `drv` has (for
    /// outputs valid already, e.g. substituted; [`Self::add_valid`]
    /// records those it makes valid itself).
    pub fn register_derivation_outputs(
        &mut self,
        drv: &StorePath,
        outputs: &BTreeMap<String, StorePath>,
    ) -> Result<(), StoreError> {
        self.db.register_derivation_outputs(drv, outputs)
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    pub(crate) fn db_mut(&mut self) -> &mut Db {
        &mut self.db
    }

    /// A fresh staging directory inside the store's file system (so the
    /// final `rename` is atomic), removed again unless committed.
    ///
    /// The directory's lock is taken before the directory exists, so
    /// [`Self::remove_stale_staging`] never removes a live one.
    /// The first staging of a process in a store first removes what dead
    /// processes left ([`Self::remove_dead_leftovers`]), so every command
    /// that stages cleans up after the killed ones, whatever it is.
    pub fn staging(&self) -> Result<Staging, StoreError> {
        self.remove_dead_leftovers_once();
        let mut random = [0u8; 8];
        getrandom::getrandom(&mut random).map_err(|e| StoreError::io(self.real_store_dir(), io::Error::other(e.to_string())))?;
        let name = format!(".tmp-{}-{}", std::process::id(), drv_formats::nixbase32::encode(&random));
        let lock = FileLock::exclusive(&self.layout.staging_lock_file(&name))?;
        let dir = self.real_store_dir().join(&name);
        fs::create_dir(&dir).map_err(|e| StoreError::io(&dir, e))?;
        Ok(Staging { dir: Some(dir), _lock: Some(lock), canonical: false })
    }

    /// Add a file system object by content, as `nix-store --add` (recursive)
    /// or `nix-store --add-fixed` (flat) do: copy it in, make it canonical,
    /// and register it with no references. Adding existing content again
    /// changes nothing and returns the same path.
    pub fn add_path(&mut self, src: &Path, name: &str, ingestion: Ingestion) -> Result<StorePath, StoreError> {
        StorePath::validate_name(name)?;
        let meta = fs::symlink_metadata(src).map_err(|e| StoreError::io(src, e))?;
        if ingestion == Ingestion::Flat && !meta.is_file() {
            return Err(StoreError::Io {
                path: src.to_owned(),
                error: io::Error::other("flat ingestion needs a regular file"),
            });
        }
        let staging = self.staging()?;
        let staged = staging.path();
        let nar_hash = copy_as_nar(src, &staged)?;
        let ca = match ingestion {
            Ingestion::Recursive => ContentAddress::Recursive(nar_hash.sha256),
            Ingestion::Flat => ContentAddress::Flat(hash_file(&staged)?),
        };
        let path = self.store_dir().fixed_output_path(name, &ca)?;
        let locks = self.lock_paths([path.clone()])?;
        let mut new = NewPath::new(path.clone(), staging, nar_hash);
        new.ca = Some(ca);
        self.add_valid(&locks, vec![new], None)?;
        Ok(path)
    }

    /// Add a text file with references (how `.drv` files are stored).
    /// The path is a temporary root of this process from before it is
    /// checked for validity.
    pub fn add_text(
        &mut self,
        name: &str,
        contents: &[u8],
        references: &BTreeSet<StorePath>,
    ) -> Result<StorePath, StoreError> {
        let path = self.store_dir().text_path(name, contents, references)?;
        self.add_temp_root(&path)?;
        if self.is_valid(&path)? {
            return Ok(path);
        }
        let staging = self.staging()?;
        let staged = staging.path();
        fs::write(&staged, contents).map_err(|e| StoreError::io(&staged, e))?;
        let nar_hash = nar::hash_regular(contents, false);
        let locks = self.lock_paths([path.clone()])?;
        let mut new = NewPath::new(path.clone(), staging, nar_hash);
        new.references = references.clone();
        new.ca = Some(ContentAddress::Text(Sha256::digest(contents)));
        self.add_valid(&locks, vec![new], None)?;
        Ok(path)
    }

    /// Remove what dead processes left: their staging directories
    /// ([`Self::remove_stale_staging`]) and their temporary-roots files
    /// ([`Self::remove_dead_temp_roots`]). Returns how many entries went.
    pub fn remove_dead_leftovers(&self) -> Result<usize, StoreError> {
        Ok(self.remove_stale_staging()? + self.remove_dead_temp_roots()?)
    }

    /// [`Self::remove_dead_leftovers`] once per process and store, best
    /// effort: a failure to clean up after others must not fail the
    /// command that noticed (a collection may be deleting the same
    /// entries), and the next command tries again.
    fn remove_dead_leftovers_once(&self) {
        static CLEANED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
        {
            let mut cleaned = CLEANED.lock().unwrap_or_else(|e| e.into_inner());
            if cleaned.iter().any(|d| d == self.layout.state_dir()) {
                return;
            }
            cleaned.push(self.layout.state_dir().to_owned());
        }
        let _ = self.remove_dead_leftovers();
    }

    /// Remove staging directories left by killed processes (their lock is
    /// free), so an interrupted add, fetch or build leaves no partial files
    /// behind for long. Safe against live stagers: a staging directory's
    /// lock is taken before it is created and held until it is gone.
    pub fn remove_stale_staging(&self) -> Result<usize, StoreError> {
        let mut removed = 0;
        let real_store = self.real_store_dir();
        let entries = fs::read_dir(real_store).map_err(|e| StoreError::io(real_store, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(real_store, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with(".tmp-") {
                continue;
            }
            let lock_file = self.layout.staging_lock_file(name);
            if let Some(_lock) = FileLock::try_exclusive(&lock_file)? {
                nar::remove_tree(&entry.path()).map_err(|e| StoreError::io(&entry.path(), e))?;
                let _ = fs::remove_file(&lock_file);
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Write the NAR of a valid path.
    pub fn dump(&self, path: &StorePath, out: &mut (impl Write + ?Sized)) -> Result<(), StoreError> {
        self.require_path_info(path)?;
        Ok(nar::dump_path(&self.real_path(path), out)?)
    }

    /// Check every valid path: present on disk, references present, and
    /// with `check_contents` the NAR hash and size as registered.
    ///
    /// Collections wait until it is done (it holds `gc.lock` shared, as
    /// Nix's `LocalStore::verifyStore` in src/libstore/local-store.cc
    /// does): a path deleted by a collection between reading the database
    /// and looking at the files would otherwise be reported missing.
    pub fn verify(&self, check_contents: bool) -> Result<Vec<VerifyProblem>, StoreError> {
        let _no_collection = self.collection_guard()?;
        let mut problems = Vec::new();
        let graph = self.db.reference_graph()?;
        let mut missing = BTreeSet::new();
        for path in graph.keys() {
            if fs::symlink_metadata(self.real_path(path)).is_err() {
                missing.insert(path.clone());
                problems.push(VerifyProblem::Missing(path.clone()));
            }
        }
        for (path, refs) in &graph {
            for r in refs {
                if missing.contains(r) || !graph.contains_key(r) {
                    problems.push(VerifyProblem::DanglingReference { path: path.clone(), reference: r.clone() });
                }
            }
            if check_contents && !missing.contains(path) {
                let info = self.require_path_info(path)?;
                let expected = NarHash { sha256: info.nar_hash, size: info.nar_size };
                let actual = nar::hash_path(&self.real_path(path))?;
                if actual != expected {
                    problems.push(VerifyProblem::Modified { path: path.clone(), expected, actual });
                }
            }
        }
        Ok(problems)
    }
}

/// A staging location in the store's file system. Dropping it removes
/// whatever is there (read-only or not).
#[derive(Debug)]
pub struct Staging {
    dir: Option<PathBuf>,
    _lock: Option<FileLock>,
    /// Made canonical by [`Staging::canonicalise`], so the door to
    /// validity does not walk it again.
    canonical: bool,
}

impl Staging {
    /// Where to put the object (does not exist until the caller creates it).
    pub fn path(&self) -> PathBuf {
        self.dir.as_ref().expect("staging is live").join("object")
    }

    /// Make the object what a store path must be ([`canonicalise`]); done
    /// once, whoever asks first (a builder's outputs are canonicalised
    /// before their NAR hash is taken, then pass the door).
    pub fn canonicalise(&mut self) -> Result<(), StoreError> {
        if !self.canonical {
            canonicalise(&self.path())?;
            self.canonical = true;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = nar::remove_tree(&dir);
        }
        if let Some(lock) = self._lock.take() {
            let _ = fs::remove_file(lock.path());
        }
    }
}


/// Copy `src` to `dest` through the NAR format (so exactly what a NAR can
/// hold is kept: contents, the executable bit, symlinks) and return the
/// NAR's hash. Reads `src` once: one thread serialises, the other unpacks.
pub fn copy_as_nar(src: &Path, dest: &Path) -> Result<NarHash, StoreError> {
    let (mut reader, writer) = io::pipe().map_err(|e| StoreError::io(src, e))?;
    std::thread::scope(|s| {
        let dumper = s.spawn(move || -> Result<NarHash, StoreError> {
            let mut counted = nar::HashingWriter::new(io::BufWriter::with_capacity(256 * 1024, writer));
            nar::dump_path(src, &mut counted)?;
            counted.flush().map_err(|e| StoreError::io(src, e))?;
            Ok(counted.into_parts().1)
        });
        let restored = nar::restore(&mut reader, dest);
        drop(reader);
        let dumped = dumper.join().expect("NAR dump thread panicked");
        match (dumped, restored) {
            (Ok(hash), Ok(())) => Ok(hash),
            // The dump's error is the cause; the restore only saw the pipe break.
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e.into()),
        }
    })
}

/// sha256 of a file's bytes (`nix-hash --flat`).
pub fn hash_file(path: &Path) -> Result<Sha256, StoreError> {
    let mut f = fs::File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut h = Sha256Writer::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(|e| StoreError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}

/// Make a tree what a store path must be: no write bits, no setuid/setgid
/// or sticky bits, files 0444 or 0555 (executable if the owner could execute it),
/// directories 0555, every mtime 1, owned by us.
pub(crate) fn canonicalise(path: &Path) -> Result<(), StoreError> {
    let meta = fs::symlink_metadata(path).map_err(|e| StoreError::io(path, e))?;
    let uid = rustix::process::geteuid().as_raw();
    if meta.uid() != uid {
        let gid = rustix::process::getegid().as_raw();
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| StoreError::io(path, e))?;
    }
    let ft = meta.file_type();
    if ft.is_dir() {
        for entry in fs::read_dir(path).map_err(|e| StoreError::io(path, e))? {
            let entry = entry.map_err(|e| StoreError::io(path, e))?;
            canonicalise(&entry.path())?;
        }
        set_mode(path, 0o555)?;
    } else if ft.is_file() {
        // The owner's execute bit decides, as in NAR serialisation: anything
        // else would change the NAR hash computed before canonicalising.
        let mode = if meta.permissions().mode() & 0o100 != 0 { 0o555 } else { 0o444 };
        set_mode(path, mode)?;
    } else if !ft.is_symlink() {
        return Err(StoreError::Io {
            path: path.to_owned(),
            error: io::Error::other("only regular files, directories and symlinks can be in the store"),
        });
    }
    let t = filetime::FileTime::from_unix_time(CANONICAL_MTIME, 0);
    filetime::set_symlink_file_times(path, t, t).map_err(|e| StoreError::io(path, e))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), StoreError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| StoreError::io(path, e))
}

#[cfg(test)]
impl LocalStore {
    /// A store rooted at `root` in a new temporary directory, for unit
    /// tests (the directory is theirs for scratch files too).
    pub(crate) fn temporary() -> (tempfile::TempDir, Self) {
        let t = tempfile::tempdir().unwrap();
        let s = LocalStore::open(&t.path().join("root"), StoreDir::default()).unwrap();
        (t, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn added_paths_are_canonical_valid_and_idempotent() {
        let (t, mut s) = LocalStore::temporary();
        let src = t.path().join("src");
        fs::create_dir_all(src.join("d")).unwrap();
        fs::write(src.join("d/f"), "x").unwrap();
        fs::set_permissions(src.join("d/f"), fs::Permissions::from_mode(0o6775)).unwrap();
        fs::write(src.join("d/g"), "y").unwrap();
        fs::set_permissions(src.join("d/g"), fs::Permissions::from_mode(0o671)).unwrap();
        symlink("d/f", src.join("l")).unwrap();
        let p = s.add_path(&src, "src", Ingestion::Recursive).unwrap();
        let real = s.real_path(&p);
        for (rel, mode) in [("", 0o555), ("d", 0o555), ("d/f", 0o555), ("d/g", 0o444)] {
            let m = fs::symlink_metadata(real.join(rel)).unwrap();
            assert_eq!(m.permissions().mode() & 0o7777, mode, "{rel}");
            assert_eq!(m.mtime(), 1, "{rel}");
        }
        assert_eq!(fs::symlink_metadata(real.join("l")).unwrap().mtime(), 1);
        let info = s.require_path_info(&p).unwrap();
        assert_eq!(info.nar_hash, nar::hash_path(&src).unwrap().sha256);
        assert_eq!(info.ca, Some(ContentAddress::Recursive(info.nar_hash)));
        // again: same path, nothing new, no staging left behind
        assert_eq!(s.add_path(&src, "src", Ingestion::Recursive).unwrap(), p);
        assert_eq!(s.all_valid_paths().unwrap(), vec![p.clone()]);
        let leftovers: Vec<_> = fs::read_dir(s.real_store_dir()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from(p.to_basename())]);
        assert!(s.verify(true).unwrap().is_empty());
    }

    #[test]
    fn flat_add_of_a_directory_fails_and_changes_nothing() {
        let (t, mut s) = LocalStore::temporary();
        assert!(s.add_path(t.path(), "x", Ingestion::Flat).is_err());
        assert!(s.add_path(&t.path().join("missing"), "x", Ingestion::Recursive).is_err());
        assert!(s.add_path(t.path(), "bad name", Ingestion::Recursive).is_err());
        assert!(s.all_valid_paths().unwrap().is_empty());
        assert_eq!(fs::read_dir(s.real_store_dir()).unwrap().count(), 0);
    }

    #[test]
    fn verify_finds_modified_and_missing_paths() {
        let (t, mut s) = LocalStore::temporary();
        let f = t.path().join("f");
        fs::write(&f, "one").unwrap();
        let a = s.add_path(&f, "a", Ingestion::Recursive).unwrap();
        fs::write(&f, "two").unwrap();
        let b = s.add_path(&f, "b", Ingestion::Recursive).unwrap();
        let real_a = s.real_path(&a);
        fs::set_permissions(&real_a, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&real_a, "tampered").unwrap();
        nar::remove_tree(&s.real_path(&b)).unwrap();
        let problems = s.verify(true).unwrap();
        assert!(problems.iter().any(|p| matches!(p, VerifyProblem::Modified { path, .. } if *path == a)), "{problems:?}");
        assert!(problems.contains(&VerifyProblem::Missing(b)), "{problems:?}");
        assert!(s.verify(false).unwrap().iter().all(|p| !matches!(p, VerifyProblem::Modified { .. })));
    }

    #[test]
    fn text_paths_match_nix() {
        // v2-dependent's script: builtins.toFile with a reference to the source
        let fx = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/nix-vectors");
        let (t, mut s) = LocalStore::temporary();
        let src_file = t.path().join("v2-src.txt");
        fs::copy(format!("{fx}/v2-src.txt"), &src_file).unwrap();
        let src = s.add_path(&src_file, "v2-src.txt", Ingestion::Recursive).unwrap();
        assert_eq!(s.display(&src), "/store/bm6aj076fszq7syzar1a74n1nkjwpjwv-v2-src.txt");
        let script = fs::read(format!("{fx}/v2-script.sh.storecopy")).unwrap();
        let p = s.add_text("v2-script.sh", &script, &BTreeSet::from([src.clone()])).unwrap();
        assert_eq!(s.display(&p), "/store/19xw62ral316k1y03gj3xy31m6jmik0h-v2-script.sh");
        let info = s.require_path_info(&p).unwrap();
        assert_eq!(info.nar_hash.to_string(), "sha256:1gv28xp6i8f64s9lwixlx751jvhbcj8ds7bjbc0i8y8pc87vrpmv");
        assert_eq!(info.nar_size, 248);
        assert_eq!(s.closure(&BTreeSet::from([p])).unwrap().len(), 2);
    }
}

#[cfg(test)]
mod staging_tests {
    use super::*;

    #[test]
    fn stale_staging_is_removed_but_live_staging_is_not() {
        let t = tempfile::tempdir().unwrap();
        let s = LocalStore::open(t.path(), StoreDir::default()).unwrap();
        let live = s.staging().unwrap();
        fs::write(live.path(), "partial").unwrap();
        // what a killed process leaves: a directory whose lock nobody holds
        let dead = s.real_store_dir().join(".tmp-999999-deadbeef");
        fs::create_dir_all(dead.join("object/sub")).unwrap();
        fs::set_permissions(dead.join("object/sub"), fs::Permissions::from_mode(0o555)).unwrap();
        assert_eq!(s.remove_stale_staging().unwrap(), 1);
        assert!(!dead.exists());
        assert!(live.path().exists());
        let dir = live.path().parent().unwrap().to_owned();
        drop(live);
        assert!(!dir.exists());
        assert_eq!(fs::read_dir(s.real_store_dir()).unwrap().count(), 0);
    }
}
