//! drv's local store layer.
//!
//! Layer 3 of 6 (docs/architecture.md, "Layers"): above [`drv_formats`]
//! (Nix's pure data formats), below `drv-realise` (building, fetching,
//! binary caches) and evaluation. It owns one store on this machine and
//! nothing else: no HTTP, no sandbox, no derivation is built here. It may
//! use drv-formats, SQLite, file locks and the file system; never a crate
//! above it (`tests/layers.rs` checks). Its public API speaks the formats'
//! types, re-exported below.
//!
//! - [`StoreLayout`]: where every file of a store is (store directory,
//!   physical root, database, locks, roots, logs, build directories),
//!   and from which connections are opened; the one place that spells it.
//! - [`LocalStore`]: the local store — files under a physical root, SQLite
//!   metadata, atomic and idempotent adds, canonical permissions and
//!   timestamps, verification.
//! - The one door to validity: [`LocalStore::add_valid`] makes staged
//!   [`NewPath`]s valid under the [`PathLocks`] of
//!   [`LocalStore::lock_paths`], with the derivation outputs they are
//!   ([`OutputsOf`]), in one transaction.
//! - The garbage collector ([`collect_garbage`]) and what keeps paths
//!   alive ([`GcRoot`]): explicit, indirect (`result` links) and temporary
//!   roots ([`LocalStore::add_temp_root`]).
//! - Build logs: where they are kept ([`log_file`]), reading them, or
//!   following one while it is written ([`copy_log`], [`LiveLog`]).

mod build_log;
mod db;
mod error;
mod gc;
mod layout;
mod local;
mod lock;
mod roots;
mod valid;

// The formats' types drv-store's own API takes and returns, so that a
// user of the store names them without depending on drv-formats (as a
// crate re-exports the types of its public API); and `Derivation`, what
// the store's `.drv` files hold. Everything else of the formats is
// drv_formats' alone.
pub use drv_formats::{ContentAddress, Derivation, FormatError, NarHash, NarInfo, Sha256, StoreDir, StorePath};

pub use build_log::{copy_log, live_log_file, live_of, log_file, LiveLog};
pub use db::{PathInfo, SCHEMA_VERSION};
pub use error::{Result, StoreError};
pub use layout::StoreLayout;
pub use gc::{collect_garbage, parse_size, GcError, GcOptions, GcReport};
pub use local::{copy_as_nar, hash_file, Ingestion, LocalStore, PathVersion, Staging, VerifyProblem, CANONICAL_MTIME};
pub use lock::FileLock;
pub use valid::{NewPath, OutputsOf, PathLocks};
pub use roots::{replace_symlink, GcRoot, RootError, RootKind};
