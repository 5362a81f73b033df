//! The local store's error type.

use std::path::{Path, PathBuf};

use drv_formats::FormatError;

/// What can go wrong in the local store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error("store database: {0}")]
    Database(String),
    #[error("{0} is not a valid store path in this store")]
    NotValid(String),
    #[error("{arg:?} is not a store path (store directory {store_dir})")]
    NotAStorePath { arg: String, store_dir: String },
    #[error("cannot register {path}: its reference {reference} is not valid")]
    InvalidReference { path: String, reference: String },
    /// A path was handed to [`LocalStore::add_valid`](crate::LocalStore::add_valid)
    /// without its lock (see [`LocalStore::lock_paths`](crate::LocalStore::lock_paths)).
    #[error("{0} cannot be made valid: its lock is not held")]
    NotLocked(String),
    /// A symlink was asked for at a path that names no file (`""`, `dir/..`).
    #[error("{link:?} cannot be a link: it names no file in a directory")]
    LinkName { link: PathBuf },
}

impl StoreError {
    /// An I/O error at `path`: with the path, as every store error says.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io { path: path.to_owned(), error: source }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
