//! The one door to validity: a staged object becomes a valid store path
//! only through [`LocalStore::add_valid`], under the locks of
//! [`LocalStore::lock_paths`].
//!
//! What the door does, in order (Nix's `LocalStore::registerValidPaths`
//! and `addToStore` split the same work, src/libstore/local-store.cc):
//! each path is a temporary root before its lock is taken (so a
//! collection either kept it or is done); a path valid already is left
//! alone and its staged copy discarded; each staged object is made
//! canonical once (permissions, timestamps, owner) and renamed into place;
//! then the paths, their references and the derivation outputs they
//! realise are registered in one SQLite transaction, so that outputs that
//! refer to each other appear together and a crash leaves either all of
//! them valid with their `DerivationOutputs` rows, or none.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::{SystemTime, UNIX_EPOCH};

use drv_formats::{nar, ContentAddress, NarHash, NarInfo, StorePath};

use crate::db::PathInfo;
use crate::error::StoreError;
use crate::local::{LocalStore, Staging};
use crate::lock::FileLock;

/// A staged object on its way to validity, and what it is registered
/// with. The registration time is the door's.
#[derive(Debug)]
pub struct NewPath {
    pub path: StorePath,
    /// The object (see [`Staging::path`]).
    pub staging: Staging,
    /// The NAR hash and size of the object as it will be once canonical.
    pub nar_hash: NarHash,
    pub references: BTreeSet<StorePath>,
    pub deriver: Option<StorePath>,
    pub ca: Option<ContentAddress>,
    /// `key-name:base64` signatures.
    pub signatures: Vec<String>,
}

impl NewPath {
    /// `path` from `staging`, with no references, deriver, content
    /// address or signatures yet.
    pub fn new(path: StorePath, staging: Staging, nar_hash: NarHash) -> Self {
        Self { path, staging, nar_hash, references: BTreeSet::new(), deriver: None, ca: None, signatures: Vec::new() }
    }

    /// The path a binary cache's `info` describes, unpacked into `staging`
    /// (and checked against `info` by the caller).
    pub fn from_narinfo(staging: Staging, info: &NarInfo) -> Self {
        Self {
            path: info.store_path.clone(),
            staging,
            nar_hash: NarHash { sha256: info.nar_hash, size: info.nar_size },
            references: info.references.clone(),
            deriver: info.deriver.clone(),
            ca: info.ca,
            signatures: info.signatures.clone(),
        }
    }

    fn info(&self, registration_time: i64) -> PathInfo {
        PathInfo {
            path: self.path.clone(),
            nar_hash: self.nar_hash.sha256,
            nar_size: self.nar_hash.size,
            references: self.references.clone(),
            deriver: self.deriver.clone(),
            registration_time,
            ca: self.ca,
            signatures: self.signatures.clone(),
        }
    }
}

/// The locks of store paths about to be made valid (or built), each path
/// a temporary root of this process from before its lock was taken.
/// Dropping it releases the locks and deletes their files (lock files
/// would otherwise pile up for every path ever added).
#[derive(Debug)]
pub struct PathLocks {
    paths: BTreeSet<StorePath>,
    locks: Vec<FileLock>,
}

impl PathLocks {
    /// The locked paths.
    pub fn paths(&self) -> &BTreeSet<StorePath> {
        &self.paths
    }
}

impl Drop for PathLocks {
    fn drop(&mut self) {
        for lock in self.locks.drain(..) {
            lock.remove();
        }
    }
}

/// The derivation whose outputs a set of [`NewPath`]s are: recorded in
/// `DerivationOutputs` in the same transaction.
#[derive(Clone, Copy, Debug)]
pub struct OutputsOf<'a> {
    pub drv_path: &'a StorePath,
    /// Output name → path, every one valid once the door is through.
    pub outputs: &'a BTreeMap<String, StorePath>,
}

impl LocalStore {
    /// Make `paths` temporary roots, then lock them, in sorted order (so
    /// two processes never wait for each other in a cycle). Blocks while
    /// another process holds one: it is creating that path.
    ///
    /// # Errors
    /// [`StoreError::Io`] if a roots or lock file cannot be written.
    pub fn lock_paths(&self, paths: impl IntoIterator<Item = StorePath>) -> Result<PathLocks, StoreError> {
        let paths: BTreeSet<StorePath> = paths.into_iter().collect();
        let mut locks = Vec::with_capacity(paths.len());
        for path in &paths {
            self.add_temp_root(path)?;
            locks.push(FileLock::exclusive(&self.layout().path_lock_file(path))?);
        }
        Ok(PathLocks { paths, locks })
    }

    /// The one door to validity: make the staged `paths` valid, and record
    /// them as the outputs of `outputs_of`'s derivation, all at once (see
    /// the module's documentation). Paths valid already are skipped, their
    /// staged copies discarded; the derivation outputs are recorded still.
    ///
    /// # Errors
    /// - [`StoreError::NotLocked`] if `locks` lacks one of `paths` (a
    ///   caller's mistake, refused before anything changes);
    /// - [`StoreError::InvalidReference`] if a reference is neither valid
    ///   nor among `paths`;
    /// - [`StoreError::Io`], [`StoreError::Database`]. On any error nothing
    ///   is registered and every object renamed into place is removed.
    pub fn add_valid(&mut self, locks: &PathLocks, paths: Vec<NewPath>, outputs_of: Option<OutputsOf>) -> Result<(), StoreError> {
        if let Some(p) = paths.iter().find(|p| !locks.paths.contains(&p.path)) {
            return Err(StoreError::NotLocked(self.display(&p.path)));
        }
        let mut todo = Vec::with_capacity(paths.len());
        for new in paths {
            if !self.is_valid(&new.path)? {
                todo.push(new);
            }
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let mut placed = Vec::new();
        let result = (|| {
            for new in &mut todo {
                new.staging.canonicalise()?;
                let staged = new.staging.path();
                let dest = self.real_path(&new.path);
                // A leftover of an interrupted build or of a collection: not
                // valid, so nobody's.
                nar::remove_tree(&dest).map_err(|e| StoreError::io(&dest, e))?;
                fs::rename(&staged, &dest).map_err(|e| StoreError::io(&dest, e))?;
                placed.push(dest);
            }
            let infos: Vec<PathInfo> = todo.iter().map(|n| n.info(now)).collect();
            let outputs = outputs_of.map(|o| (o.drv_path, o.outputs));
            self.db_mut().register(&infos, outputs)
        })();
        if result.is_err() {
            for dest in placed {
                let _ = nar::remove_tree(&dest);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// An output-like path (input-addressed: any name hash will do) with
    /// `contents`, staged, and its NAR hash.
    fn staged(s: &LocalStore, name: &str, contents: &str) -> (StorePath, Staging, NarHash) {
        let digest = drv_formats::Sha256::digest(name.as_bytes());
        let path = StorePath::from_basename(&format!("{}-{name}", drv_formats::nixbase32::encode(&digest.0[..20]))).unwrap();
        let staging = s.staging().unwrap();
        fs::write(staging.path(), contents).unwrap();
        fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o664)).unwrap();
        let hash = nar::hash_path(&staging.path()).unwrap();
        (path, staging, hash)
    }

    #[test]
    fn outputs_and_their_derivation_are_registered_together_and_canonical() {
        let (_t, mut s) = LocalStore::temporary();
        let drv = s.add_text("x.drv", b"Derive()", &BTreeSet::new()).unwrap();
        let (out, staging, hash) = staged(&s, "x", "made");
        let (dev, dev_staging, dev_hash) = staged(&s, "x-dev", "headers");
        let locks = s.lock_paths([out.clone(), dev.clone()]).unwrap();
        let mut a = NewPath::new(out.clone(), staging, hash);
        a.references = BTreeSet::from([dev.clone()]);
        a.deriver = Some(drv.clone());
        let b = NewPath::new(dev.clone(), dev_staging, dev_hash);
        let outputs = BTreeMap::from([("out".to_owned(), out.clone()), ("dev".to_owned(), dev.clone())]);
        s.add_valid(&locks, vec![a, b], Some(OutputsOf { drv_path: &drv, outputs: &outputs })).unwrap();
        assert_eq!(s.derivation_outputs(&drv).unwrap(), outputs);
        let info = s.require_path_info(&out).unwrap();
        assert_eq!(info.references, BTreeSet::from([dev.clone()]));
        assert_eq!(info.deriver, Some(drv));
        assert!(info.registration_time > 0, "the door sets the registration time");
        let mode = fs::symlink_metadata(s.real_path(&out)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o444, "made canonical on the way in");
        assert!(s.verify(true).unwrap().is_empty());
    }

    #[test]
    fn a_refused_registration_leaves_no_path_and_no_derivation_output() {
        let (_t, mut s) = LocalStore::temporary();
        let drv = s.add_text("y.drv", b"Derive()", &BTreeSet::new()).unwrap();
        let (out, staging, hash) = staged(&s, "y", "made");
        let (missing, ..) = staged(&s, "not-there", "");
        let locks = s.lock_paths([out.clone()]).unwrap();
        let mut a = NewPath::new(out.clone(), staging, hash);
        a.references = BTreeSet::from([missing]);
        let outputs = BTreeMap::from([("out".to_owned(), out.clone())]);
        let err = s.add_valid(&locks, vec![a], Some(OutputsOf { drv_path: &drv, outputs: &outputs })).unwrap_err();
        assert!(matches!(err, StoreError::InvalidReference { .. }), "{err}");
        assert!(!s.is_valid(&out).unwrap());
        assert!(s.derivation_outputs(&drv).unwrap().is_empty());
        assert!(fs::symlink_metadata(s.real_path(&out)).is_err(), "the renamed object is removed again");
    }

    #[test]
    fn a_path_needs_its_lock() {
        let (_t, mut s) = LocalStore::temporary();
        let (out, staging, hash) = staged(&s, "z", "made");
        let (other, ..) = staged(&s, "w", "");
        let locks = s.lock_paths([other]).unwrap();
        let err = s.add_valid(&locks, vec![NewPath::new(out.clone(), staging, hash)], None).unwrap_err();
        assert!(matches!(err, StoreError::NotLocked(_)), "{err}");
        assert!(!s.is_valid(&out).unwrap());
    }

    #[test]
    fn a_valid_path_is_left_alone() {
        let (_t, mut s) = LocalStore::temporary();
        let (out, staging, hash) = staged(&s, "v", "first");
        let locks = s.lock_paths([out.clone()]).unwrap();
        s.add_valid(&locks, vec![NewPath::new(out.clone(), staging, hash)], None).unwrap();
        let (_, again, other_hash) = staged(&s, "v", "second");
        s.add_valid(&locks, vec![NewPath::new(out.clone(), again, other_hash)], None).unwrap();
        assert_eq!(fs::read_to_string(s.real_path(&out)).unwrap(), "first");
        assert_eq!(s.require_path_info(&out).unwrap().nar_hash, hash.sha256);
    }
}
