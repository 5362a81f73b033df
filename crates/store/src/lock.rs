//! Advisory file locks (`flock`), held until dropped. The kernel releases
//! them when a process dies, so a killed drv never leaves a stale lock.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use crate::StoreError;

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
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| StoreError::io(path, e))?;
        match flock(&file, op) {
            Ok(()) => Ok(Some(Self { _file: file, path: path.to_owned() })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(StoreError::io(path, e.into())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
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
}
