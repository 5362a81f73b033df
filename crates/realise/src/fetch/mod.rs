//! Downloads pinned by sha256: the I/O edge through which sources enter
//! drv.
//!
//! [`Fetcher::fetch_to`] writes a file only if its sha256 is the expected
//! one; [`Fetcher::prefetch`] downloads something whose hash is not known
//! yet (`drv prefetch`). Sources are `https://`, `http://`, `file://` and
//! `mirror://NAME/path` URLs ([`crate::mirrors`]), and files of a Python
//! package index found through its simple API ([`simple_index`]).
//!
//! HTTP goes through `reqwest` with rustls, verifying certificates against
//! the platform's store (`/etc/ssl/certs`), never a bundled root list.
//! Bodies stream to disk while being hashed; connection errors, 5xx and 429
//! are retried with exponential backoff, resuming with `Range` when the
//! server supports it.

pub mod simple_index;

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use drv_formats::{Sha256, Sha256Writer};
use reqwest::{StatusCode, Url};
use reqwest::blocking::{Client, Response};
use reqwest::header::{ACCEPT, CONTENT_RANGE, CONTENT_TYPE, RANGE};

use crate::config::Config;
use crate::mirrors::{join_url, MirrorError, Mirrors, SystemSources};
use crate::reporter::Reporter;

/// Where a file comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchSource {
    /// `https://`, `http://`, `file://` (a local path, read directly) or
    /// `mirror://NAME/path`.
    Url(String),
    /// A file of a project on the Python package index (the `pypi`
    /// mirror), located through the index's simple API.
    PythonIndexFile { project: String, filename: String },
}

impl FetchSource {
    /// A name for the fetched file: the URL's last path segment (query and
    /// fragment dropped), or the index file's name. `None` when the URL
    /// ends in `/`.
    pub fn file_name(&self) -> Option<String> {
        match self {
            FetchSource::Url(url) => {
                let path = url.split(['?', '#']).next().unwrap_or(url);
                let after_scheme = path.split_once("://").map(|(_, rest)| rest).unwrap_or(path);
                let (_, segments) = after_scheme.split_once('/')?;
                let last = segments.rsplit('/').next()?;
                (!last.is_empty()).then(|| last.to_owned())
            }
            FetchSource::PythonIndexFile { filename, .. } => Some(filename.clone()),
        }
    }
}

impl fmt::Display for FetchSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchSource::Url(url) => f.write_str(url),
            FetchSource::PythonIndexFile { project, filename } => write!(f, "{filename} of Python project {project}"),
        }
    }
}

/// How hard and how long the fetcher tries.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Attempts per URL, the first included (connection errors, dropped
    /// bodies, 5xx and 429 answers are retried; 404 and other 4xx not).
    pub attempts: u32,
    /// Wait before the first retry; doubled before each further one.
    pub first_retry_delay: Duration,
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
    /// Limit on waiting for the response headers, and on each wait for
    /// more body bytes. There is no limit on a whole download: a big file
    /// on a slow link is fine as long as bytes keep coming.
    pub stall_timeout: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            attempts: 4,
            first_retry_delay: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(15),
            stall_timeout: Duration::from_secs(60),
        }
    }
}

/// What can go wrong fetching.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    #[error("{url:?}: unsupported URL (use https://, http://, file:// or mirror://NAME/path)")]
    UnsupportedUrl { url: String },
    #[error("{url}: not found (HTTP {status})")]
    NotFound { url: String, status: u16 },
    /// A `file://` URL naming no file: the local counterpart of a 404.
    #[error("{url}: no such file")]
    NoSuchFile { url: String },
    #[error("{url}: HTTP {status}")]
    HttpStatus { url: String, status: u16 },
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url}: giving up after {attempts} attempts: {last}")]
    GaveUp { url: String, attempts: u32, last: Box<FetchError> },
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("{}: already exists", path.display())]
    DestinationExists { path: PathBuf },
    #[error(
        "hash mismatch for {url}:\n  specified: {expected} ({})\n  got:       {got} ({})",
        expected.to_sri(),
        got.to_sri()
    )]
    HashMismatch { url: String, expected: Sha256, got: Sha256 },
    // Hex, as index pages and lock files write hashes.
    #[error("the index lists {filename} of {project} with sha256 {}, but {} was expected", listed.to_hex(), expected.to_hex())]
    IndexHashMismatch { project: String, filename: String, listed: Sha256, expected: Sha256 },
    #[error("{page}: the index lists no file {filename:?} for project {project:?}")]
    NotInIndex { project: String, filename: String, page: String },
    #[error("{page}: cannot read the index page: {message}")]
    IndexPage { page: String, message: String },
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

pub type Result<T, E = FetchError> = std::result::Result<T, E>;

/// A download whose hash was not known in advance.
#[derive(Debug)]
pub struct Prefetched {
    /// The URL the bytes came from (after mirror and index resolution).
    pub url: String,
    pub sha256: Sha256,
    pub size: u64,
    /// The downloaded file; removed when this is dropped unless persisted.
    pub file: tempfile::TempPath,
}

/// A source resolved to one URL, with the hash an index listed for it.
struct Resolved {
    url: String,
    listed: Option<Sha256>,
}

/// Downloads files and checks their sha256. Cheap to share between threads
/// (`&self` methods); the HTTP connection pool and the mirror cache are
/// shared by every call.
pub struct Fetcher {
    client: Client,
    /// Why HTTPS cannot be verified on this host (no CA certificates), if
    /// so: plain `http://` and `file://` still work.
    tls_problem: Option<String>,
    mirrors: Mirrors,
    reporter: Arc<dyn Reporter>,
    options: FetchOptions,
}

impl Fetcher {
    /// A fetcher with the configured mirrors (falling back to the system's
    /// apt and pip settings) and default options.
    pub fn new(config: &Config, reporter: Arc<dyn Reporter>) -> Result<Self> {
        Self::with_mirrors(Mirrors::new(config.mirrors.clone(), SystemSources::from_env()), reporter, FetchOptions::default())
    }

    pub fn with_mirrors(mirrors: Mirrors, reporter: Arc<dyn Reporter>, options: FetchOptions) -> Result<Self> {
        let (client, tls_problem) = http_client_for_plain_http_too(&options).map_err(FetchError::Client)?;
        Ok(Self { client, tls_problem, mirrors, reporter, options })
    }

    pub fn mirrors(&self) -> &Mirrors {
        &self.mirrors
    }

    /// Fetch `source` into `dest`, which must not exist, if and only if its
    /// sha256 is `expected`.
    ///
    /// The bytes go to a temporary sibling of `dest` that is renamed into
    /// place after the hash matched; on any error (a mismatch included)
    /// neither `dest` nor the temporary file is left. An index that lists a
    /// different sha256 for the file is an error before any download.
    pub fn fetch_to(&self, source: &FetchSource, expected: Sha256, dest: &Path) -> Result<()> {
        if fs::symlink_metadata(dest).is_ok() {
            return Err(FetchError::DestinationExists { path: dest.to_owned() });
        }
        let resolved = self.resolve(source)?;
        if let (Some(listed), FetchSource::PythonIndexFile { project, filename }) = (resolved.listed, source) {
            if listed != expected {
                return Err(FetchError::IndexHashMismatch {
                    project: project.clone(),
                    filename: filename.clone(),
                    listed,
                    expected,
                });
            }
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".drv-fetch-")
            .tempfile_in(parent)
            .map_err(|error| FetchError::Io { path: parent.to_owned(), error })?;
        let what = source.file_name().unwrap_or_else(|| resolved.url.clone());
        let (got, _size) = self.download(&resolved.url, &what, tmp.as_file_mut())?;
        if got != expected {
            return Err(FetchError::HashMismatch { url: resolved.url, expected, got });
        }
        tmp.as_file().sync_all().map_err(|error| FetchError::Io { path: tmp.path().to_owned(), error })?;
        tmp.persist_noclobber(dest).map_err(|e| {
            if e.error.kind() == io::ErrorKind::AlreadyExists {
                FetchError::DestinationExists { path: dest.to_owned() }
            } else {
                FetchError::Io { path: dest.to_owned(), error: e.error }
            }
        })?;
        Ok(())
    }

    /// Download `source` to a temporary file and hash it, for when the hash
    /// is not known yet. If an index lists a sha256 for the file, the
    /// download must match it.
    pub fn prefetch(&self, source: &FetchSource) -> Result<Prefetched> {
        let resolved = self.resolve(source)?;
        let dir = std::env::temp_dir();
        let mut tmp = tempfile::Builder::new()
            .prefix(".drv-prefetch-")
            .tempfile_in(&dir)
            .map_err(|error| FetchError::Io { path: dir.clone(), error })?;
        let what = source.file_name().unwrap_or_else(|| resolved.url.clone());
        let (sha256, size) = self.download(&resolved.url, &what, tmp.as_file_mut())?;
        if let Some(listed) = resolved.listed {
            if listed != sha256 {
                return Err(FetchError::HashMismatch { url: resolved.url, expected: listed, got: sha256 });
            }
        }
        Ok(Prefetched { url: resolved.url, sha256, size, file: tmp.into_temp_path() })
    }

    /// The URL `source` is downloaded from: mirrors resolved, index pages
    /// read.
    pub fn resolve_url(&self, source: &FetchSource) -> Result<String> {
        Ok(self.resolve(source)?.url)
    }

    fn resolve(&self, source: &FetchSource) -> Result<Resolved> {
        match source {
            FetchSource::Url(url) if url.starts_with("mirror://") => {
                Ok(Resolved { url: self.mirrors.resolve_url(url)?, listed: None })
            }
            FetchSource::Url(url) => Ok(Resolved { url: url.clone(), listed: None }),
            FetchSource::PythonIndexFile { project, filename } => self.resolve_index_file(project, filename),
        }
    }

    /// The files `project`'s simple-API page on the `pypi` mirror lists,
    /// their URLs made absolute.
    ///
    /// Errors: the mirror cannot be resolved, the page cannot be fetched
    /// (after retries) or read (too large, not UTF-8, bad JSON, a bad URL).
    pub fn index_files(&self, project: &str) -> Result<Vec<simple_index::IndexFile>> {
        let base = self.mirrors.resolve("pypi")?;
        let page = join_url(&base, &format!("{}/", simple_index::normalize_project_name(project)));
        let page_url = parse_http_url(&page)?;
        let (final_url, content_type, body) = self.with_retries(&page, |_| {
            let resp = self.send(self.client.get(page_url.clone()).header(ACCEPT, simple_index::ACCEPT), &page)?;
            let final_url = resp.url().clone();
            let content_type = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase();
            // Read up to the limit while it streams: an index cannot make drv
            // hold more than that, however long its answer.
            let body = match crate::bounded::read_bounded(resp, simple_index::PAGE_LIMIT) {
                Ok(crate::bounded::Bounded::Complete(bytes)) => bytes,
                Ok(crate::bounded::Bounded::TooLarge) => {
                    return Err(Attempt::Fatal(FetchError::IndexPage {
                        page: page.clone(),
                        message: format!("the page is larger than {} bytes", simple_index::PAGE_LIMIT),
                    }))
                }
                Err(e) => {
                    return Err(Attempt::Retry(FetchError::Transport { url: page.clone(), message: e.to_string() }))
                }
            };
            let body = String::from_utf8(body).map_err(|_| {
                Attempt::Fatal(FetchError::IndexPage { page: page.clone(), message: "the page is not UTF-8".into() })
            })?;
            Ok((final_url, content_type, body))
        })?;
        let bad_page = |message: String| FetchError::IndexPage { page: page.clone(), message };
        let files = if content_type.starts_with(simple_index::JSON_MEDIA_TYPE) {
            simple_index::parse_json_page(&body).map_err(|e| bad_page(e.to_string()))?
        } else {
            simple_index::parse_html_page(&body)
        };
        files
            .into_iter()
            .map(|f| {
                let url = final_url.join(&f.url).map_err(|e| bad_page(format!("bad URL {:?}: {e}", f.url)))?;
                Ok(simple_index::IndexFile { url: url.to_string(), ..f })
            })
            .collect()
    }

    /// Find `filename` on `project`'s simple-API page of the `pypi` mirror:
    /// by its name as given, else by its name as PEP 427 escapes it (lock
    /// files write `pyyaml-6.0.2-….whl` for the index's
    /// `PyYAML-6.0.2-….whl`). The hash is checked after.
    fn resolve_index_file(&self, project: &str, filename: &str) -> Result<Resolved> {
        let page = join_url(&self.mirrors.resolve("pypi")?, &format!("{}/", simple_index::normalize_project_name(project)));
        let bad_page = |message: String| FetchError::IndexPage { page: page.clone(), message };
        let files = self.index_files(project)?;
        let wanted = simple_index::normalize_file_name(filename);
        let found = files
            .iter()
            .position(|f| f.filename == filename)
            .or_else(|| files.iter().position(|f| simple_index::normalize_file_name(&f.filename) == wanted));
        let file = found
            .map(|i| files[i].clone())
            .ok_or_else(|| FetchError::NotInIndex {
                project: project.to_owned(),
                filename: filename.to_owned(),
                page: page.clone(),
            })?;
        let url = file.url;
        let listed = file
            .sha256
            .map(|hex| Sha256::parse(&hex).map_err(|e| bad_page(format!("bad sha256 for {filename}: {e}"))))
            .transpose()?;
        Ok(Resolved { url, listed })
    }

    /// Write the bytes at `url` (http, https or file) to `file`, returning
    /// their sha256 and size.
    fn download(&self, url: &str, what: &str, file: &mut File) -> Result<(Sha256, u64)> {
        if url.starts_with("file://") {
            return self.copy_local(url, what, file);
        }
        let parsed = parse_http_url(url)?;
        let _finished = FinishedGuard { reporter: &*self.reporter, what };
        let mut state = Transfer { hash: Sha256Writer::new(), have: 0, announced: false };
        self.with_retries(url, |_| self.transfer_once(&parsed, url, what, file, &mut state))?;
        Ok((state.hash.finish(), state.have))
    }

    /// One request of a download: resumes at `state.have` with `Range`.
    fn transfer_once(
        &self,
        parsed: &Url,
        url: &str,
        what: &str,
        file: &mut File,
        state: &mut Transfer,
    ) -> std::result::Result<(), Attempt> {
        let mut request = self.client.get(parsed.clone());
        if state.have > 0 {
            request = request.header(RANGE, format!("bytes={}-", state.have));
        }
        let mut resp = self.send(request, url)?;
        let io_err = |error| Attempt::Fatal(FetchError::Io { path: PathBuf::from(what), error });
        let resumed = resp.status() == StatusCode::PARTIAL_CONTENT
            && content_range_start(&resp) == Some(state.have);
        if !resumed && state.have > 0 {
            // The server sent the whole file again (or a range we did not
            // ask for): start over.
            self.reporter.message(&format!("{url}: server did not resume; restarting from the beginning"));
            file.set_len(0).and_then(|()| file.rewind()).map_err(io_err)?;
            *state = Transfer { hash: Sha256Writer::new(), have: 0, announced: state.announced };
            if resp.status() == StatusCode::PARTIAL_CONTENT {
                return Err(Attempt::Retry(FetchError::Transport {
                    url: url.to_owned(),
                    message: "server answered a different range than requested".to_owned(),
                }));
            }
        }
        let total = resp.content_length().map(|len| state.have + len);
        if !state.announced {
            self.reporter.download_started(what, url, total);
            state.announced = true;
        }
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match resp.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Attempt::Retry(FetchError::Transport {
                        url: url.to_owned(),
                        message: format!("connection lost after {} bytes: {}", state.have, io_error_chain(&e)),
                    }))
                }
            };
            file.write_all(&buf[..n]).map_err(io_err)?;
            state.hash.update(&buf[..n]);
            state.have += n as u64;
            self.reporter.download_progress(what, n as u64);
        }
        if let Some(total) = total.filter(|&t| state.have < t) {
            return Err(Attempt::Retry(FetchError::Transport {
                url: url.to_owned(),
                message: format!("body ended after {} of {total} bytes", state.have),
            }));
        }
        Ok(())
    }

    /// Send a request; classify failures as retryable or not.
    fn send(&self, request: reqwest::blocking::RequestBuilder, url: &str) -> std::result::Result<Response, Attempt> {
        if let Some(problem) = self.tls_problem.as_ref().filter(|_| url.starts_with("https://")) {
            return Err(Attempt::Fatal(FetchError::Client(format!("{url}: cannot verify HTTPS: {problem}"))));
        }
        let resp = request.send().map_err(|e| {
            if e.is_builder() || e.is_redirect() {
                Attempt::Fatal(transport(url, &e))
            } else {
                Attempt::Retry(transport(url, &e))
            }
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let code = status.as_u16();
        let url = resp.url().to_string();
        Err(match status {
            StatusCode::NOT_FOUND | StatusCode::GONE => Attempt::Fatal(FetchError::NotFound { url, status: code }),
            StatusCode::TOO_MANY_REQUESTS => Attempt::Retry(FetchError::HttpStatus { url, status: code }),
            s if s.is_server_error() => Attempt::Retry(FetchError::HttpStatus { url, status: code }),
            _ => Attempt::Fatal(FetchError::HttpStatus { url, status: code }),
        })
    }

    /// Run `attempt` until it succeeds, fails for good, or the attempts are
    /// used up; waits `first_retry_delay`, doubled each time, in between.
    fn with_retries<T>(&self, url: &str, mut attempt: impl FnMut(u32) -> std::result::Result<T, Attempt>) -> Result<T> {
        let mut delay = self.options.first_retry_delay;
        let attempts = self.options.attempts.max(1);
        for n in 1..=attempts {
            match attempt(n) {
                Ok(value) => return Ok(value),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(e)) if n == attempts => {
                    return Err(FetchError::GaveUp { url: url.to_owned(), attempts, last: Box::new(e) })
                }
                Err(Attempt::Retry(e)) => {
                    self.reporter.message(&format!("{e}; retrying in {} ms ({n}/{attempts})", delay.as_millis()));
                    std::thread::sleep(delay);
                    delay = delay.saturating_mul(2);
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    /// `file://` URLs: read the local file directly.
    fn copy_local(&self, url: &str, what: &str, file: &mut File) -> Result<(Sha256, u64)> {
        let path = Url::parse(url)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .ok_or_else(|| FetchError::UnsupportedUrl { url: url.to_owned() })?;
        let io_err = |p: &Path| { let p = p.to_owned(); move |error| FetchError::Io { path: p, error } };
        let mut src = match File::open(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(FetchError::NoSuchFile { url: url.to_owned() }),
            other => other.map_err(io_err(&path))?,
        };
        let total = src.metadata().ok().map(|m| m.len());
        let _finished = FinishedGuard { reporter: &*self.reporter, what };
        self.reporter.download_started(what, url, total);
        let mut hash = Sha256Writer::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = src.read(&mut buf).map_err(io_err(&path))?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n]).map_err(io_err(Path::new(what)))?;
            hash.update(&buf[..n]);
            size += n as u64;
            self.reporter.download_progress(what, n as u64);
        }
        Ok((hash.finish(), size))
    }
}

/// The state a download keeps across attempts.
struct Transfer {
    hash: Sha256Writer,
    have: u64,
    announced: bool,
}

/// How one attempt failed.
enum Attempt {
    /// Worth trying again (connection trouble, 5xx, 429).
    Retry(FetchError),
    /// Trying again would give the same answer.
    Fatal(FetchError),
}

impl From<FetchError> for Attempt {
    fn from(e: FetchError) -> Self {
        Attempt::Fatal(e)
    }
}

/// Reports `download_finished` however the download ends.
struct FinishedGuard<'a> {
    reporter: &'a dyn Reporter,
    what: &'a str,
}

impl Drop for FinishedGuard<'_> {
    fn drop(&mut self) {
        self.reporter.download_finished(self.what);
    }
}

fn parse_http_url(url: &str) -> Result<Url> {
    match Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(u),
        _ => Err(FetchError::UnsupportedUrl { url: url.to_owned() }),
    }
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL` header.
fn content_range_start(resp: &Response) -> Option<u64> {
    let value = resp.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let range = value.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

fn transport(url: &str, e: &reqwest::Error) -> FetchError {
    FetchError::Transport { url: url.to_owned(), message: error_chain(e) }
}

/// An error and its causes on one line (reqwest's own message alone says
/// little: "error sending request").
/// drv's HTTP client: rustls with ring, certificates checked against the
/// platform's store; `options` give the connect and stall timeouts. Every
/// HTTP user in drv (fetcher, binary caches) builds its client here.
pub(crate) fn http_client(options: &FetchOptions) -> std::result::Result<Client, String> {
    http_client_builder(options).build().map_err(|e| error_chain(&e))
}

/// [`http_client`]'s settings, for a user that adds its own (the S3
/// cache's name resolution of `*.localhost`).
pub(crate) fn http_client_builder(options: &FetchOptions) -> reqwest::blocking::ClientBuilder {
    // reqwest is built without a rustls crypto provider; ring is ours.
    // `Err` means a provider is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .connect_timeout(options.connect_timeout)
        // For the blocking client this bounds the wait for headers and
        // each read, not the whole transfer.
        .timeout(options.stall_timeout)
        .user_agent(concat!("drv/", env!("CARGO_PKG_VERSION")))
}

/// [`http_client`], or, on a host without CA certificates (a minimal
/// container), a client that trusts no certificate, with the reason: such
/// a host can still fetch from `http://` mirrors, whose files are checked
/// by sha256 anyway.
fn http_client_for_plain_http_too(options: &FetchOptions) -> std::result::Result<(Client, Option<String>), String> {
    match http_client(options) {
        Ok(c) => Ok((c, None)),
        Err(problem) => {
            let client = Client::builder()
                .connect_timeout(options.connect_timeout)
                .timeout(options.stall_timeout)
                .user_agent(concat!("drv/", env!("CARGO_PKG_VERSION")))
                .tls_certs_only([])
                .build()
                .map_err(|e| format!("{problem}; {}", error_chain(&e)))?;
            Ok((client, Some(format!("{problem} (install the platform's CA certificates, ca-certificates on Debian)"))))
        }
    }
}

pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

fn io_error_chain(e: &io::Error) -> String {
    match e.get_ref() {
        Some(inner) => error_chain(inner),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_come_from_the_last_segment() {
        let name = |u: &str| FetchSource::Url(u.to_owned()).file_name();
        assert_eq!(name("https://x.example/a/b/c-1.0.tar.gz?sig=1#frag").as_deref(), Some("c-1.0.tar.gz"));
        assert_eq!(name("mirror://debian/pool/main/h/hello/hello_2.10.orig.tar.gz").as_deref(), Some("hello_2.10.orig.tar.gz"));
        assert_eq!(name("file:///tmp/x.txt").as_deref(), Some("x.txt"));
        assert_eq!(name("https://x.example/dir/"), None);
        assert_eq!(name("https://x.example"), None);
        let py = FetchSource::PythonIndexFile { project: "Demo".into(), filename: "demo-1.0.tar.gz".into() };
        assert_eq!(py.file_name().as_deref(), Some("demo-1.0.tar.gz"));
    }

    #[test]
    fn hash_mismatch_shows_both_hashes_in_both_forms() {
        let expected = Sha256::digest(b"a");
        let got = Sha256::digest(b"b");
        let text = FetchError::HashMismatch { url: "https://x.example/f".into(), expected, got }.to_string();
        for h in [expected, got] {
            assert!(text.contains(&h.to_string()) && text.contains(&h.to_sri()), "{text}");
        }
    }
}
