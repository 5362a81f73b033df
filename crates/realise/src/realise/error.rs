//! What can go wrong with one derivation's realisation.

use drv_store::StoreError;

/// What went wrong with one derivation.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("builder failed with {status}; last log lines:\n{tail}\nfull log: {log}")]
    Failed { drv: String, status: String, tail: String, log: String },
    #[error("the build {hit}; last log lines:\n{tail}\nfull log: {log}")]
    LimitExceeded { drv: String, hit: drv_sandbox::LimitHit, tail: String, log: String },
    #[error("builder succeeded but did not create output {output} ({path})")]
    MissingOutput { drv: String, output: String, path: String },
    #[error("not deterministic: output {output} differs from the registered one (second result kept at {kept}):\n{differences}")]
    NotDeterministic { drv: String, output: String, kept: String, differences: String },
    #[error("{summary}")]
    NotReproducible { drv: String, summary: String },
    #[error("{reason}")]
    Unsupported { drv: String, reason: String },
    #[error("dependency {dependency} failed")]
    DependencyFailed { drv: String, dependency: String },
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    #[error(transparent)]
    Sandbox(#[from] drv_sandbox::SandboxError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    #[error(transparent)]
    Rootfs(#[from] drv_debian::rootfs::RootfsError),
    #[error(
        "{package} {version} ({url}) is no longer on mirror {mirror:?}: Debian's archive keeps only current versions. \
         Ways out: substitute it from a binary cache that holds it (--substituters), point mirror {mirror:?} at an \
         archive that still has it (a snapshot; see `[mirrors]` in docs/recipes.md), or re-resolve the lock with \
         `drv lock --update {package}`"
    )]
    DebianFileGone { drv: String, package: String, version: String, mirror: String, url: String },
    #[error(
        "mirror {:?} serves other bytes for {} {} than the lock pins ({}):\n  \
         pinned: sha256 {}\n  got:    sha256 {}\n\
         A changed or damaged mirror, or an edited lock: `drv lock --update {}` pins it again from the signed index",
        .0.mirror, .0.package, .0.version, .0.url, .0.expected, .0.got, .0.package
    )]
    DebianHashMismatch(Box<DebianMismatch>),
}

impl From<drv_formats::FormatError> for BuildError {
    fn from(e: drv_formats::FormatError) -> Self {
        BuildError::Store(e.into())
    }
}

/// A pinned `.deb` whose mirror serves other bytes: what
/// [`BuildError::DebianHashMismatch`] reports, in the lock's terms.
#[derive(Debug)]
pub struct DebianMismatch {
    pub package: String,
    pub version: String,
    pub mirror: String,
    pub url: String,
    /// Hex sha256s, as `drv.lock` spells them.
    pub expected: String,
    pub got: String,
}

