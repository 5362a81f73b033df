//! What can go wrong running a build: [`SandboxError`].

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use nix::errno::Errno;

use crate::limits::LimitHit;
use crate::run::MAX_ARG_STRLEN;

/// Why a builder that does not exist is most often missing: the recipe's
/// toolchain has no shell.
fn exec_hint(builder: &Path, error: &io::Error) -> &'static str {
    if error.kind() == io::ErrorKind::NotFound && builder.starts_with("/bin") {
        " (the build's root file system is its toolchain: add a shell, `dash`, to the recipe's [toolchain] debian)"
    } else {
        ""
    }
}

/// What can go wrong running a build.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "Linux namespaces for the build sandbox are unavailable: {reason}. Enable unprivileged user \
         namespaces (`sysctl kernel.unprivileged_userns_clone=1`, a non-zero `user.max_user_namespaces`) \
         or pass --no-sandbox to build without isolation"
    )]
    NamespacesUnavailable { reason: String },
    #[error("invalid sandbox spec: {value:?}: {reason}")]
    InvalidSpec { value: String, reason: String },
    #[error("scratch store directory {} is not empty", path.display())]
    ScratchNotEmpty { path: PathBuf },
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("cannot start the sandbox: {what}: {error}")]
    Spawn { what: &'static str, error: io::Error },
    #[error("sandbox setup failed: cannot {step}: {error}")]
    Setup { step: String, error: io::Error },
    #[error("cannot execute builder {}: {error}{}", builder.display(), exec_hint(builder, error))]
    Exec { builder: PathBuf, error: io::Error },
    #[error("the build failed ({status}): it {hit}")]
    LimitExceeded { hit: LimitHit, status: ExitStatus },
    /// One argument or environment string is over Linux's per-string limit.
    #[error(
        "cannot execute builder: {what} is {len} bytes, over Linux's limit of {limit} bytes for one argument or \
         environment string (MAX_ARG_STRLEN)",
        limit = MAX_ARG_STRLEN
    )]
    ArgumentTooLong { what: String, len: usize },
    /// All of them together are over what `execve` accepts.
    #[error(
        "cannot execute builder {}: its arguments and environment ({total} bytes) are over the kernel's \
         limit for execve (ARG_MAX, a quarter of the stack limit): {error}",
        builder.display()
    )]
    ArgumentsTooLong { builder: PathBuf, total: usize, error: io::Error },
    #[error("build timed out after {timeout:?} and was killed")]
    TimedOut { timeout: Duration },
    #[error("the builder left undeclared entries {names:?} in the store directory (scratch {})", scratch.display())]
    StrayStoreEntries { scratch: PathBuf, names: Vec<String> },
    #[error("the sandbox exited without reporting the builder's status ({detail})")]
    Lost { detail: String },
}

impl SandboxError {
    pub(crate) fn io(path: &Path, error: io::Error) -> Self {
        SandboxError::Io { path: path.to_owned(), error }
    }

    pub(crate) fn spawn(what: &'static str, errno: Errno) -> Self {
        SandboxError::Spawn { what, error: io::Error::from(errno) }
    }
}

pub type Result<T, E = SandboxError> = std::result::Result<T, E>;
