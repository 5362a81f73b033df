//! Python's packaging formats, as drv reads them: the layer between a
//! project's lock file and the derivations that install its packages.
//!
//! Layer 1 of 6 (docs/architecture.md, "Layers"), with drv-formats and
//! drv-sandbox beside it; it uses no drv crate.
//!
//! Pure: it reads text handed to it and does no I/O. It may use only
//! `pep440_rs`/`pep508_rs` (versions, requirements and markers, as uv
//! parses them), `serde` and `toml`.
//!
//! - [`name`]: project names, normalized (PEP 503);
//! - [`wheel`]: wheel file names (PEP 427, PEP 491) and their tags (PEP 425);
//! - [`target`]: the interpreter and platform a wheel must fit (the tags
//!   it accepts, best first: PEP 425, PEP 600's `manylinux_2_X` against the
//!   pinned C library, PEP 384's `abi3`);
//! - [`lock`]: one model of a locked set of distributions, read from a
//!   requirements file in pip's hash-checking mode, a `pylock.toml`
//!   (PEP 751) or a `uv.lock`; the choice of the one file of each package
//!   that fits a target, and a package's dependency closure.

pub mod lock;
pub mod metadata;
pub mod name;
pub mod pins;
pub mod target;
pub mod wheel;

mod error;
mod pylock;
mod requirements;
mod uvlock;

pub use error::LockFileError;
pub use lock::{select, Choice, DistFile, LockFormat, LockedPackage, PythonLock, Refusal, SelectError, Unfit};
pub use metadata::{build_system, dependency_edges, parse_metadata, BuildSystemTable, CoreMetadata};
pub use name::normalize;
pub use pins::{BuildSystem, Pin, PinError, PinnedLock, PinsFile, PythonPins};
pub use target::Target;
pub use wheel::{Tag, WheelName};
