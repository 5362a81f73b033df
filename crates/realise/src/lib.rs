//! drv's realisation layer: making store paths valid by building,
//! fetching or substituting them, and the services around that.
//!
//! Layer 4 of 6 (docs/architecture.md, "Layers"): above the local store
//! ([`drv_store`]), the sandbox ([`drv_sandbox`]) and the formats
//! ([`drv_formats`]); below evaluation and the CLI. It may use HTTP,
//! the sandbox and the store's public API; never evaluation or the CLI,
//! and never the store's database directly (`tests/layers.rs` checks).
//!
//! - [`realise`]: [`Realiser`] builds a closure of derivations, in
//!   parallel, each in the sandbox, and reports a [`BuildResult`] for each.
//! - [`builtins`]: the builders drv runs itself (downloads, toolchain
//!   root file systems) and what their derivations say.
//! - [`config`]: drv's configuration ([`Config`]), layered TOML files and
//!   environment variables.
//! - [`mirrors`]: `mirror://NAME/path` resolution ([`Mirrors`]): configured
//!   names first, then the system's apt and pip settings.
//! - [`fetch`]: downloads pinned by sha256 ([`Fetcher`], [`FetchSource`]).
//! - [`cache`]: binary caches in Nix's format: the [`BinaryCache`]
//!   backends (`file://`, `http(s)://`, `s3://`), [`Substituter`] (fetch
//!   verified closures before building), [`push`](cache::push), and the
//!   HTTP [`server`](cache::server).
//! - [`archive`]: Debian archive indices for `drv lock`: `InRelease`
//!   (signature checked with the archive keyring) and `Packages.xz`
//!   (checked against the sha256 the release lists).
//! - [`output_diff`]: how two results of a build differ, file by file
//!   and in the files' formats (ELF, `.pyc`, tar, text; diffoscope).
//! - [`why_rebuild`]: why a derivation differs from an earlier one, down
//!   through its inputs to the first differences.
//! - [`vary`]: the circumstances `drv build --check --vary` changes, and
//!   how it narrows a difference down to them.
//! - [`reporter`]: the events a realisation reports ([`Reporter`]), which
//!   the CLI shows as progress.

pub mod archive;
pub mod builtins;
pub mod cache;
pub mod config;
pub mod fetch;
pub mod mirrors;
pub mod output_diff;
pub mod realise;
pub mod reporter;
pub mod vary;
pub mod why_rebuild;

mod bounded;

pub use cache::{open_cache, BinaryCache, CacheError, CacheUrl, SubstituteReport, Substitutable, Substituter, SubstituterOptions};
pub use config::{Config, ConfigError};
pub use fetch::{FetchError, FetchOptions, FetchSource, Fetcher, Prefetched};
pub use mirrors::{MirrorError, Mirrors, SystemSources};
pub use realise::{BuildError, BuildSettings, BuildResults, Realiser};
pub use reporter::{Reporter, SilentReporter};
