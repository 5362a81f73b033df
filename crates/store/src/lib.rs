//! drv's store layer.
//!
//! It stands on the two layers below it: [`drv_formats`] (Nix's data
//! formats, pure: store paths, sha256 spellings, NAR, derivations, narinfo
//! and signing keys) and [`drv_sandbox`] (the build sandbox). Its public
//! API speaks their types; import them from those crates.
//!
//! - [`LocalStore`]: the local store — files under a physical root, SQLite
//!   metadata, atomic and idempotent adds, canonical permissions and
//!   timestamps, verification.
//! - [`config`]: drv's configuration ([`Config`]), layered TOML files and
//!   environment variables.
//! - [`mirrors`]: `mirror://NAME/path` resolution ([`Mirrors`]): configured
//!   names first, then the system's apt and pip settings.
//! - [`fetch`]: downloads pinned by sha256 ([`Fetcher`], [`FetchSource`]).
//! - [`gc`]: the garbage collector ([`collect_garbage`]) and, in
//!   [`roots`], what keeps paths alive: explicit, indirect (`result` links)
//!   and temporary roots ([`LocalStore::add_temp_root`]).
//! - [`cache`]: binary caches in Nix's format: the [`BinaryCache`]
//!   backends (`file://`, `http(s)://`), [`Substituter`] (fetch verified
//!   closures before building), [`push`](cache::push), and the HTTP
//!   [`server`](cache::server).
//! - [`archive`]: Debian archive indices for `drv lock`: `InRelease`
//!   (signature checked with the archive keyring) and `Packages.xz`
//!   (checked against the sha256 the release lists).
//! - [`build_log`]: where build logs are kept, and reading them, or
//!   following a build's log while it is written.
//! - [`output_diff`]: how two results of a build differ, file by file
//!   and in the files' formats (ELF, `.pyc`, tar, text; diffoscope).
//! - [`why_rebuild`]: why a derivation differs from an earlier one, down
//!   through its inputs to the first differences.
//! - [`vary`]: the circumstances `drv build --check --vary` changes, and
//!   how it narrows a difference down to them.
//!
//! Everything above (evaluation, the CLI) speaks these types only.

pub mod archive;
pub mod cache;
pub mod config;
pub mod fetch;
pub mod gc;
pub mod mirrors;
pub mod roots;

mod bounded;
pub mod build_log;
mod db;
mod local;
mod lock;
pub mod output_diff;
pub mod reporter;
pub mod realise;
pub mod vary;
pub mod why_rebuild;

use std::path::{Path, PathBuf};

// The formats' types that drv-store's own API takes and returns, so that
// a user of the store names them without depending on drv-formats (as a
// crate re-exports the types of its public API). Everything else of the
// formats is drv_formats' alone.
pub use drv_formats::{
    nixbase32, ContentAddress, Derivation, DerivationBuilder, DerivationHash, DerivationOutput, FormatError, HashEncoding, NameProblem,
    NarHash, NarInfo, PublicKey, SecretKey, Sha256, StoreDir, StorePath, DEFAULT_STORE_DIR,
};

pub use cache::{open_cache, BinaryCache, CacheError, CacheUrl, SubstituteReport, Substitutable, Substituter, SubstituterOptions};
pub use config::{Config, ConfigError};
pub use fetch::{FetchError, FetchOptions, FetchSource, Fetcher, Prefetched};
pub use mirrors::{MirrorError, Mirrors, SystemSources};
pub use db::{PathInfo, SCHEMA_VERSION};
pub use gc::{collect_garbage, parse_size, GcError, GcOptions, GcReport};
pub use roots::{replace_symlink, GcRoot, RootError, RootKind};
pub use local::{canonicalise, copy_as_nar, hash_file, Ingestion, LocalStore, PathVersion, Staging, VerifyProblem, CANONICAL_MTIME};
pub use lock::FileLock;
pub use reporter::{Reporter, SilentReporter};

/// What can go wrong in the store layer.
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
    /// A symlink was asked for at a path that names no file (`""`, `dir/..`).
    #[error("{link:?} cannot be a link: it names no file in a directory")]
    LinkName { link: PathBuf },
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io { path: path.to_owned(), error: source }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
