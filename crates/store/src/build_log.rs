//! Build logs: where they are kept and how they are read, finished or
//! while the build runs.
//!
//! A finished build's log is `ROOT/var/drv/log/<2>/<rest>.zst` (zstd). While
//! a build runs, its output also goes, uncompressed and line by line, to
//! the same name without `.zst` (the "live" log), whose writer holds an
//! exclusive `flock` on it for as long as it writes. The realiser finishes
//! the `.zst` *before* it deletes the live log, so a reader that finds no
//! live log finds the finished one, and a reader of the live log that can
//! take the lock knows nothing more will be written (the build ended, or
//! its process died: the kernel releases the lock either way).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use drv_formats::StorePath;
use rustix::fs::{flock, FlockOperation};

use crate::local::LocalStore;
use crate::error::StoreError;

/// How often a follower looks for more of a live log.
const POLL: Duration = Duration::from_millis(100);

/// Where the finished log of `drv_path` is kept: `ROOT/var/drv/log/<2>/<rest>.zst`.
pub fn log_file(store: &LocalStore, drv_path: &StorePath) -> PathBuf {
    store.layout().log_file(drv_path)
}

/// Where the uncompressed log of a build of `drv_path` in progress is
/// written: [`log_file`] without `.zst`. It is left behind only by a
/// build whose process died.
pub fn live_log_file(store: &LocalStore, drv_path: &StorePath) -> PathBuf {
    live_of(&log_file(store, drv_path))
}

/// The live log that goes with the finished log `finished`.
pub fn live_of(finished: &Path) -> PathBuf {
    finished.with_extension("")
}

/// The writer of a live log: the file, locked, at [`live_log_file`] from
/// the moment it appears there. [`LiveLog::finish`] deletes it.
#[derive(Debug)]
pub struct LiveLog {
    file: File,
    path: PathBuf,
}

impl LiveLog {
    /// Create the live log at `path` (replacing a leftover one): made and
    /// locked under a temporary name, then renamed into place, so no
    /// reader ever sees it unlocked while the build runs.
    pub fn create(path: &Path) -> Result<Self, StoreError> {
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let file = File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        flock(&file, FlockOperation::LockExclusive).map_err(|e| StoreError::io(&tmp, e.into()))?;
        fs::rename(&tmp, path).map_err(|e| StoreError::io(path, e))?;
        Ok(Self { file, path: path.to_owned() })
    }

    /// Append (unbuffered: a follower sees each line when it is written).
    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    /// Delete the live log (call once the finished log is in place), then
    /// release the lock.
    pub fn finish(self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Copy the log of `drv_path` to `out`: the live log of a build in
/// progress (what it has written so far; with `follow`, everything it
/// writes until it ends), else the finished log. `Ok(false)`: there is no
/// log of `drv_path`.
pub fn copy_log(store: &LocalStore, drv_path: &StorePath, follow: bool, out: &mut dyn Write) -> Result<bool, StoreError> {
    let live = live_log_file(store, drv_path);
    match File::open(&live) {
        Ok(mut f) => {
            copy_live(&mut f, follow, out).map_err(|e| StoreError::io(&live, e))?;
            return Ok(true);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io(&live, e)),
    }
    let finished = log_file(store, drv_path);
    let f = match File::open(&finished) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(StoreError::io(&finished, e)),
    };
    zstd::stream::copy_decode(f, &mut *out).map_err(|e| StoreError::io(&finished, e))?;
    out.flush().map_err(|e| StoreError::io(&finished, e))?;
    Ok(true)
}

/// Copy what `f` holds; with `follow`, go on until its writer is gone.
fn copy_live(f: &mut File, follow: bool, out: &mut dyn Write) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n > 0 {
            out.write_all(&buf[..n])?;
            continue;
        }
        out.flush()?;
        if !follow {
            return Ok(());
        }
        // At the end of what is written: if the lock is free, the writer
        // is gone and wrote everything before letting go of it.
        if flock(&*f, FlockOperation::NonBlockingLockShared).is_ok() {
            io::copy(f, out)?;
            return out.flush();
        }
        std::thread::sleep(POLL);
    }
}
