//! Running a [`BuildRequest`]: the [`Executor`] trait, and the local
//! sandbox that implements it. A remote builder plugs in here (snix's
//! build services are chosen the same way, by URL).

use std::os::fd::OwnedFd;
use std::process::ExitStatus;
use std::sync::Arc;

use drv_sandbox::SandboxError;

use super::request::BuildRequest;
use super::BuildSettings;

/// Runs builds. Implementations are shared by the realiser's threads.
pub trait Executor: Send + Sync {
    /// Whether builds under `settings` can run here, checked once before
    /// the first; what of the settings cannot hold, as notes to show
    /// (rather than drop silently).
    ///
    /// # Errors
    /// What keeps every build from running ([`SandboxError`]).
    fn prepare(&self, settings: &BuildSettings) -> Result<Vec<String>, SandboxError>;

    /// Run `request`'s builder to its end, its standard output and error
    /// going to `log`; the builder's exit status.
    ///
    /// # Errors
    /// Whatever kept the builder from running or finishing
    /// ([`SandboxError`]: namespaces refused, a limit hit, …).
    fn execute(&self, request: &BuildRequest, log: OwnedFd) -> Result<ExitStatus, SandboxError>;
}

/// Builds on this machine, in drv's sandbox ([`drv_sandbox::run`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalSandbox;

impl Executor for LocalSandbox {
    /// The kernel must allow the namespaces (unless `--no-sandbox`); limits
    /// this host cannot enforce are noted.
    fn prepare(&self, settings: &BuildSettings) -> Result<Vec<String>, SandboxError> {
        if settings.sandbox {
            drv_sandbox::check_namespaces()?;
        }
        Ok(drv_sandbox::limit_notes(&settings.limits))
    }

    fn execute(&self, request: &BuildRequest, log: OwnedFd) -> Result<ExitStatus, SandboxError> {
        drv_sandbox::run(&request.spec, log)
    }
}

/// A builder URL names no executor drv has.
#[derive(Debug, thiserror::Error)]
#[error("no builder for {url:?}: drv builds on this machine only (`local`)")]
pub struct UnknownExecutor {
    pub url: String,
}

/// The executor a builder URL names: `local` (or `local://`, or empty)
/// is this machine's sandbox.
///
/// # Errors
/// [`UnknownExecutor`] for any other URL.
pub fn executor_for(url: &str) -> Result<Arc<dyn Executor>, UnknownExecutor> {
    match url {
        "" | "local" | "local://" => Ok(Arc::new(LocalSandbox)),
        _ => Err(UnknownExecutor { url: url.to_owned() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_are_chosen_by_url() {
        assert!(executor_for("local").is_ok());
        assert!(executor_for("").is_ok());
        let err = executor_for("ssh://builder").err().unwrap();
        assert_eq!(err.url, "ssh://builder");
        assert!(err.to_string().contains("local"), "{err}");
    }
}
