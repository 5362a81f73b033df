//! Progress reporting. Libraries report events through [`Reporter`]; only
//! the CLI decides how to show them (bars on a terminal, plain lines
//! otherwise). Every method has a no-op default, so a reporter implements
//! only what it shows.

use drv_formats::StorePath;

/// Receives progress events. Implementations must be cheap and must not
/// block: they are called from download and build threads.
pub trait Reporter: Send + Sync {
    /// A download of `url` for `what` (a store path name) began; `total`
    /// is its size when the server said.
    fn download_started(&self, _what: &str, _url: &str, _total: Option<u64>) {}
    /// `bytes` more bytes of `what` arrived.
    fn download_progress(&self, _what: &str, _bytes: u64) {}
    /// The download of `what` ended (successfully or not).
    fn download_finished(&self, _what: &str) {}
    /// A realisation found `builds` derivations to build or fetch (each
    /// gets a `build_started` and a `build_finished`) and `already_valid`
    /// whose outputs were there. Called once per realisation, before its
    /// first build starts.
    fn builds_planned(&self, _builds: usize, _already_valid: usize) {}
    /// `count` more store paths are to be downloaded from binary caches
    /// (each ends in a `substitution_finished`); may be called again for
    /// the inputs of what no cache had.
    fn substitutions_planned(&self, _count: usize) {}
    /// The substitution of `path` ended; `ok` is false when it failed.
    fn substitution_finished(&self, _path: &StorePath, _ok: bool) {}
    /// An upload of `what` (a store path name) to `dest` began; `size` is
    /// its size in bytes when known.
    fn upload_started(&self, _what: &str, _dest: &str, _size: Option<u64>) {}
    /// The upload of `what` ended (successfully or not).
    fn upload_finished(&self, _what: &str) {}
    /// Building the derivation `drv` began.
    fn build_started(&self, _drv: &StorePath) {}
    /// One line of `drv`'s build log.
    fn build_log_line(&self, _drv: &StorePath, _line: &str) {}
    /// Building `drv` ended.
    fn build_finished(&self, _drv: &StorePath, _success: bool) {}
    /// Anything else worth telling the user (a retry, a fallback).
    fn message(&self, _text: &str) {}
}

/// Shows nothing.
pub struct SilentReporter;

impl Reporter for SilentReporter {}
