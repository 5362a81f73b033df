//! Where everything of one store is on disk: the one place that spells it.
//!
//! A store has a *logical* store directory (`/store`), which every hash
//! depends on, and a *physical root* under which its files live. With
//! root `/` the two coincide (Nix's `local?root=` store has the same
//! split):
//!
//! | path | what |
//! |---|---|
//! | `ROOT/store/<hash>-<name>` | the store paths; `ROOT/store/.tmp-*` staging |
//! | `ROOT/var/drv/db/db.sqlite` | metadata (Nix 2.8's schema) |
//! | `ROOT/var/drv/locks/<hash>.lock` | a path's lock while it is created |
//! | `ROOT/var/drv/gc.lock` | collections (exclusive) against adders (shared) |
//! | `ROOT/var/drv/gcroots/` | explicit roots; `auto/` indirect ones |
//! | `ROOT/var/drv/temproots/<pid>` | each live process's temporary roots |
//! | `ROOT/var/drv/log/<2>/<rest>.zst` | finished build logs |
//! | `ROOT/var/drv/builds/` | build directories of running builds |
//! | `ROOT/var/drv/check/` | `--check`'s diffoscope reports |
//! | `ROOT/var/drv/eval-cache/` | evaluation results by recipe digest |
//! | `ROOT/var/drv/cache-uploads/` | `drv cache serve`'s uploads in progress |

use std::fs;
use std::path::{Path, PathBuf};

use drv_formats::{StoreDir, StorePath};

use crate::error::StoreError;
use crate::local::LocalStore;

const STATE_DIR: &str = "var/drv";

/// Every path of one store, from its physical root and logical store
/// directory. Cheap to clone: hand one to each worker thread and open a
/// connection there ([`StoreLayout::open`]); a [`LocalStore`] is one
/// SQLite connection and is not shared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreLayout {
    store_dir: StoreDir,
    root: PathBuf,
    real_store: PathBuf,
    state_dir: PathBuf,
}

impl StoreLayout {
    /// The layout of the store under physical root `root` (`""` means
    /// `/`) for the logical store directory `store_dir`. Touches nothing.
    pub fn new(root: &Path, store_dir: StoreDir) -> Self {
        let root = if root.as_os_str().is_empty() { Path::new("/") } else { root };
        let real_store = root.join(store_dir.as_str().trim_start_matches('/'));
        let state_dir = root.join(STATE_DIR);
        Self { store_dir, root: root.to_owned(), real_store, state_dir }
    }

    /// Open a connection to this store, creating its directories and
    /// database if needed.
    ///
    /// # Errors
    /// [`StoreError::Io`] if a directory cannot be made,
    /// [`StoreError::Database`] if the database cannot be opened or
    /// migrated.
    pub fn open(&self) -> Result<LocalStore, StoreError> {
        for dir in [&self.real_store, &self.database_dir(), &self.locks_dir(), &self.auto_roots_dir(), &self.temp_roots_dir()] {
            fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        }
        LocalStore::with_layout(self.clone())
    }

    pub fn store_dir(&self) -> &StoreDir {
        &self.store_dir
    }

    /// The physical root (`/` for the system store).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the logical store directory physically is: `ROOT/store`.
    pub fn real_store_dir(&self) -> &Path {
        &self.real_store
    }

    /// The file system location of a store path's files.
    pub fn real_path(&self, path: &StorePath) -> PathBuf {
        self.real_store.join(path.to_basename())
    }

    /// `ROOT/var/drv`: the database, locks, roots, logs and the rest of
    /// the table above.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    fn database_dir(&self) -> PathBuf {
        self.state_dir.join("db")
    }

    /// The SQLite database: `ROOT/var/drv/db/db.sqlite`.
    pub fn database(&self) -> PathBuf {
        self.database_dir().join("db.sqlite")
    }

    fn locks_dir(&self) -> PathBuf {
        self.state_dir.join("locks")
    }

    /// The lock held while `path` is created.
    pub fn path_lock_file(&self, path: &StorePath) -> PathBuf {
        self.locks_dir().join(format!("{}.lock", path.hash_part()))
    }

    /// The lock a live staging directory `name` (`.tmp-*`) is held under.
    pub fn staging_lock_file(&self, name: &str) -> PathBuf {
        self.locks_dir().join(format!("{name}.lock"))
    }

    /// `gc.lock`: exclusive while a collection runs, shared by whoever
    /// must not be collected under.
    pub fn gc_lock_file(&self) -> PathBuf {
        self.state_dir.join("gc.lock")
    }

    /// `ROOT/var/drv/gcroots`: explicit roots (symlinks to store paths).
    pub fn gc_roots_dir(&self) -> PathBuf {
        self.state_dir.join("gcroots")
    }

    /// `ROOT/var/drv/gcroots/auto`: indirect roots (links to `result`
    /// links elsewhere).
    pub fn auto_roots_dir(&self) -> PathBuf {
        self.gc_roots_dir().join(AUTO_ROOTS)
    }

    /// `ROOT/var/drv/temproots`: one file per live process.
    pub fn temp_roots_dir(&self) -> PathBuf {
        self.state_dir.join("temproots")
    }

    /// Where the finished log of `drv_path` is kept:
    /// `ROOT/var/drv/log/<2>/<rest>.zst`.
    pub fn log_file(&self, drv_path: &StorePath) -> PathBuf {
        let base = drv_path.to_basename();
        self.log_dir().join(&base[..2]).join(format!("{}.zst", &base[2..]))
    }

    /// `ROOT/var/drv/log`.
    pub fn log_dir(&self) -> PathBuf {
        self.state_dir.join("log")
    }

    /// The logs of `drv build --check --vary`'s builds of `drv_path`.
    pub fn vary_log_dir(&self, drv_path: &StorePath) -> PathBuf {
        self.log_dir().join("vary").join(drv_path.to_basename())
    }

    /// Build directories of running builds, on the store's file system.
    pub fn builds_dir(&self) -> PathBuf {
        self.state_dir.join("builds")
    }

    /// `--check`'s diffoscope report on `path`.
    pub fn check_report(&self, path: &StorePath) -> PathBuf {
        self.state_dir.join("check").join(format!("{}.diffoscope.txt", path.to_basename()))
    }

    /// Cached evaluations, by the digest of what they read.
    pub fn eval_cache_dir(&self) -> PathBuf {
        self.state_dir.join("eval-cache")
    }

    /// Uploads to `drv cache serve` in progress.
    pub fn cache_uploads_dir(&self) -> PathBuf {
        self.state_dir.join("cache-uploads")
    }
}

/// The name of the indirect roots' directory in [`StoreLayout::gc_roots_dir`],
/// which an explicit root may therefore not have.
pub(crate) const AUTO_ROOTS: &str = "auto";
