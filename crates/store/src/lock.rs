//! Advisory file locks (`flock`), held until dropped. The kernel releases
//! them when a process dies, so a killed drv never leaves a stale lock.
//!
//! A lock file may be deleted by whoever holds its lock (the garbage
//! collector removes the lock files of the paths it deletes): taking a lock
//! checks afterwards that the file it locked is still the one at the path,
//! and starts over if not, so two processes never both "hold" a lock
//! through different inodes.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use crate::error::StoreError;

/// An exclusive lock on a lock file.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
    path: PathBuf,
}

impl FileLock {
    /// Block until the lock on `path` is ours.
    pub fn exclusive(path: &Path) -> Result<Self, StoreError> {
        Self::take(path, FlockOperation::LockExclusive).map(|l| l.expect("blocking lock"))
    }

    /// Take the lock if nobody holds it.
    pub fn try_exclusive(path: &Path) -> Result<Option<Self>, StoreError> {
        Self::take(path, FlockOperation::NonBlockingLockExclusive)
    }

    /// Block until a shared lock on `path` is ours.
    pub fn shared(path: &Path) -> Result<Self, StoreError> {
        Self::take(path, FlockOperation::LockShared).map(|l| l.expect("blocking lock"))
    }

    fn take(path: &Path, op: FlockOperation) -> Result<Option<Self>, StoreError> {
        loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .map_err(|e| StoreError::io(path, e))?;
            match flock(&file, op) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
                Err(e) => return Err(StoreError::io(path, e.into())),
            }
            // The previous holder may have deleted the file while we waited:
            // our lock would then be on an inode nobody else can find.
            let locked = file.metadata().map_err(|e| StoreError::io(path, e))?;
            match std::fs::metadata(path) {
                Ok(now) if now.dev() == locked.dev() && now.ino() == locked.ino() => {
                    return Ok(Some(Self { _file: file, path: path.to_owned() }))
                }
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io(path, e)),
            }
        }
    }

    /// Delete the lock file, then release the lock. Safe because a waiter
    /// that wins the lock of a deleted file notices and locks the new one.
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The locked file, for lock files that also hold data (temporary
    /// roots).
    pub fn file(&self) -> &File {
        &self._file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_until_dropped() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.lock");
        let held = FileLock::exclusive(&p).unwrap();
        assert!(FileLock::try_exclusive(&p).unwrap().is_none());
        drop(held);
        assert!(FileLock::try_exclusive(&p).unwrap().is_some());
    }

    #[test]
    fn a_lock_file_deleted_by_its_holder_is_not_shared() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.lock");
        let held = FileLock::exclusive(&p).unwrap();
        let waiter = {
            let p = p.clone();
            std::thread::spawn(move || FileLock::exclusive(&p).unwrap())
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::fs::remove_file(&p).unwrap();
        drop(held);
        let got = waiter.join().unwrap();
        // the waiter locked the file that now exists, so a third party is excluded
        assert!(std::fs::metadata(&p).is_ok());
        assert!(FileLock::try_exclusive(&p).unwrap().is_none());
        drop(got);
    }
}
