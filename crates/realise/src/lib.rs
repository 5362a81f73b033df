//! drv's realisation layer: making store paths valid by building,
//! fetching or substituting them, and the services around that.
//!
//! Layer 4 of 6 (docs/architecture.md, "Layers"): above the local store
//! ([`drv_store`]), the sandbox ([`drv_sandbox`]) and the formats
//! ([`drv_formats`]); below evaluation and the CLI. It may use HTTP,
//! the sandbox and the store's public API; never evaluation or the CLI,
//! and never the store's database directly (`tests/layers.rs` checks).
//!
//! - realisation: [`Realiser`] builds a closure of derivations, in
//!   parallel, each in the sandbox, and reports a [`BuildResult`] for each.
//! - builtins: the builders drv runs itself (downloads, toolchain
//!   root file systems) and what their derivations say.
//! - configuration ([`Config`]), layered TOML files and
//!   environment variables.
//! - mirrors: `mirror://NAME/path` resolution ([`Mirrors`]): configured
//!   names first, then the system's apt and pip settings.
//! - fetching: downloads pinned by sha256 ([`Fetcher`], [`FetchSource`]).
//! - binary caches in Nix's format: the [`BinaryCache`] backends
//!   (`file://`, `http(s)://`, `s3://`), [`Substituter`] (fetch verified
//!   closures before building), [`push`], and the HTTP server ([`serve`]).
//! - Debian archive indices for `drv lock`: `InRelease`
//!   (signature checked with the archive keyring) and `Packages.xz`
//!   (checked against the sha256 the release lists).
//! - how two results of a build differ, file by file
//!   and in the files' formats (ELF, `.pyc`, tar, text; diffoscope).
//! - [`diff_derivations`]: why a derivation differs from an earlier one, down
//!   through its inputs to the first differences.
//! - the circumstances `drv build --check --vary` changes, and
//!   how it narrows a difference down to them.
//! - the events a realisation reports ([`Reporter`]), which
//!   the CLI shows as progress.

mod archive;
mod bounded;
mod builtins;
mod cache;
mod config;
mod fetch;
mod mirrors;
mod output_diff;
mod realise;
mod reporter;
mod vary;
mod why_rebuild;

pub use archive::{fetch_suite_index, ArchiveError, SuiteIndex, Verification, DEBIAN_ARCHIVE_KEYRING};
pub use builtins::{fetch_source, Download, FETCH_BUILDER, ROOTFS_BUILDER, TOOLCHAIN_ENV};
pub use cache::server::{router, serve, RunningServer, ServeCompression, ServerOptions, SERVE_ZSTD_LEVEL};
pub use cache::{
    open_cache, push, BinaryCache, CacheError, CacheUrl, Compression, PushOptions, PushReport, SubstituteReport, Substitutable,
    Substituter, SubstituterOptions,
};
pub use config::{Config, ConfigError};
pub use fetch::{FetchError, FetchOptions, FetchSource, Fetcher, Prefetched};
pub use mirrors::{debian_from_apt, MirrorError, Mirrors, SystemSources};
pub use realise::{
    build_request, executor_for, read_derivation, BuildDirs, BuildError, BuildRequest, BuildResult, BuildResults, BuildSettings,
    BuildStatus, DebianMismatch, Derivations, Executor, LocalSandbox, Realiser, UnknownExecutor,
};
pub use reporter::{Reporter, SilentReporter};
pub use vary::{parse_variations, Cause, NotVaried, OutputDifference, UnknownVariation, VaryReport, Variation};
pub use why_rebuild::{diff_derivations, Change, DrvDiff};
