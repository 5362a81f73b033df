//! Binary caches in Nix's format: the I/O layer through which store paths
//! travel between machines.
//!
//! A cache is a tree of files: `nix-cache-info` (`StoreDir: /store`),
//! `<hashpart>.narinfo` ([`NarInfo`], signed with ed25519 keys in Nix's
//! `name:base64` format) and the NARs the narinfos point at (`nar/...`,
//! or an absolute URL; compressed as [`decompress`] reads). Backends implement [`BinaryCache`] and are
//! chosen by URL ([`open_cache`]): `file:///dir` ([`FileCache`]),
//! `http(s)://host/prefix` ([`HttpCache`]) and `s3://bucket/prefix`
//! ([`S3Cache`]).
//!
//! On top of the trait:
//! - [`Substituter`]: asks caches for paths and installs verified closures
//!   into a [`LocalStore`] (what `drv build` does before building);
//! - [`push`]: uploads a closure (what `drv cache push` does);
//! - [`server`]: serves a local store as a cache over HTTP (`drv cache serve`).

mod file;
mod http;
mod push;
pub mod s3;
pub mod server;
mod substitute;
#[cfg(test)]
mod tests;

use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub use file::FileCache;
pub use http::HttpCache;
pub use push::{push, Compression, PushOptions, PushReport};
pub use s3::S3Cache;
pub use substitute::{Substitutable, SubstituteReport, Substituter, SubstituterOptions};

use drv_formats::{nar, FormatError, NarInfo, Sha256, Sha256Writer, StoreDir, StorePath};

use drv_store::Staging;
use drv_store::StoreError;

/// The file every cache has at its root.
pub const CACHE_INFO_FILE: &str = "nix-cache-info";

/// The largest narinfo drv reads: [`drv_formats::MAX_NARINFO_SIZE`].
pub const NARINFO_LIMIT: u64 = drv_formats::MAX_NARINFO_SIZE as u64;
/// The largest `nix-cache-info` drv reads: three short lines in practice.
pub const CACHE_INFO_LIMIT: u64 = 64 * 1024;

/// Read a whole small document (narinfo, `nix-cache-info`) from a cache,
/// stopping one byte past `limit`: a cache cannot make drv hold more.
pub(crate) fn read_document(reader: impl Read, url: &str, what: &'static str, limit: u64) -> Result<Vec<u8>> {
    match crate::bounded::read_bounded(reader, limit) {
        Ok(crate::bounded::Bounded::Complete(bytes)) => Ok(bytes),
        Ok(crate::bounded::Bounded::TooLarge) => Err(CacheError::TooLarge { url: url.to_owned(), what, limit }),
        Err(e) => Err(CacheError::Transport { url: url.to_owned(), message: e.to_string() }),
    }
}

/// A small document in an HTTP answer (an HTTP or S3 cache's): refused at
/// once when its `Content-Length` is over `limit`, else read up to it.
pub(crate) fn response_document(resp: reqwest::blocking::Response, url: String, what: &'static str, limit: u64) -> Result<Vec<u8>> {
    if resp.content_length().is_some_and(|len| len > limit) {
        return Err(CacheError::TooLarge { url, what, limit });
    }
    read_document(resp, &url, what, limit)
}

/// What can go wrong talking to a binary cache or checking what it sent.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{url:?}: unsupported binary cache URL (use file:///DIR, http://, https:// or s3://BUCKET)")]
    UnsupportedUrl { url: String },
    #[error("{url}: {problem}")]
    BadUrl { url: String, problem: String },
    #[error("no S3 credentials for profile {profile:?} in {files}")]
    NoCredentials { profile: String, files: String },
    #[error("{url}: HTTP {status}{}{}", if code.is_empty() { String::new() } else { format!(" {code}") }, if message.is_empty() { String::new() } else { format!(": {message}") })]
    S3Refused { url: String, status: u16, code: String, message: String },
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url}: HTTP {status}")]
    HttpStatus { url: String, status: u16 },
    #[error("{url}: not found")]
    NotFound { url: String },
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("{cache}: the cache is for store directory {theirs}, not {ours}")]
    ForeignCache { cache: String, theirs: String, ours: String },
    #[error("{url}: narinfo names {store_path}, which is not in store directory {ours}")]
    ForeignStorePath { url: String, store_path: String, ours: String },
    #[error("{url}: {error}")]
    BadNarInfo { url: String, error: FormatError },
    #[error("{url}: narinfo is for {got}, not {expected}")]
    WrongPath { url: String, expected: String, got: String },
    #[error("{cache}: {path} has no signature by a trusted key (signatures: {signatures:?}; trusted: {trusted:?})")]
    Untrusted { cache: String, path: String, signatures: Vec<String>, trusted: Vec<String> },
    #[error("{path}: unsupported NAR compression {compression:?} (drv reads xz, zstd, bzip2, gzip, lzma, br and none)")]
    UnsupportedCompression { path: String, compression: String },
    #[error("{url}: more than {limit} bytes, the limit for a {what}")]
    TooLarge { url: String, what: &'static str, limit: u64 },
    #[error("{path}: NAR hash mismatch: the narinfo says {expected}, the NAR is {got}")]
    NarHashMismatch { path: String, expected: Sha256, got: Sha256 },
    #[error("{path}: NAR size mismatch: the narinfo says {expected} bytes, the NAR has {got}")]
    NarSizeMismatch { path: String, expected: u64, got: u64 },
    #[error("{path}: refused NAR: {error}")]
    BadNar { path: String, error: FormatError },
    #[error("{path}: the store holds a NAR hash {registered}, but its files hash to {actual}")]
    CorruptLocalPath { path: String, registered: Sha256, actual: Sha256 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CacheError {
    pub(crate) fn io(path: &Path, error: io::Error) -> Self {
        CacheError::Io { path: path.to_owned(), error }
    }
}

pub type Result<T, E = CacheError> = std::result::Result<T, E>;

/// A cache's `nix-cache-info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheInfo {
    pub store_dir: String,
    pub want_mass_query: bool,
    pub priority: Option<u32>,
}

impl CacheInfo {
    pub fn new(store_dir: &StoreDir) -> Self {
        Self { store_dir: store_dir.as_str().to_owned(), want_mass_query: true, priority: Some(40) }
    }

    /// Parse `Key: value` lines; unknown keys are ignored, as Nix does.
    pub fn parse(text: &str) -> Self {
        let mut info = CacheInfo { store_dir: String::new(), want_mass_query: false, priority: None };
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            match key.trim() {
                "StoreDir" => info.store_dir = value.to_owned(),
                "WantMassQuery" => info.want_mass_query = value == "1",
                "Priority" => info.priority = value.parse().ok(),
                _ => {}
            }
        }
        info
    }

    pub fn to_text(&self) -> String {
        let mut out = format!("StoreDir: {}\n", self.store_dir);
        if self.want_mass_query {
            out.push_str("WantMassQuery: 1\n");
        }
        if let Some(p) = self.priority {
            out.push_str(&format!("Priority: {p}\n"));
        }
        out
    }
}

/// One binary cache. Implementations are cheap to share between threads:
/// lookups and downloads run in parallel through `&self`.
pub trait BinaryCache: Send + Sync {
    /// The URL the cache was opened with (without drv's own parameters).
    fn url(&self) -> &str;

    /// A small document at `relative` (a narinfo, `nix-cache-info`), read
    /// up to `limit` bytes while it streams (a body without end costs
    /// `limit` bytes, not memory); `None` when the cache does not have it.
    fn document(&self, relative: &str, what: &'static str, limit: u64) -> Result<Option<Vec<u8>>>;

    /// The cache's `nix-cache-info`, `None` when it has none (an empty
    /// cache not pushed to yet).
    fn cache_info(&self) -> Result<Option<CacheInfo>> {
        Ok(self
            .document(CACHE_INFO_FILE, "nix-cache-info", CACHE_INFO_LIMIT)?
            .map(|b| CacheInfo::parse(&String::from_utf8_lossy(&b))))
    }

    /// The raw text of `<hash part of path>.narinfo`, `None` when the cache
    /// does not have it.
    fn narinfo_text(&self, path: &StorePath) -> Result<Option<Vec<u8>>> {
        self.document(&format!("{}.narinfo", path.hash_part()), "narinfo", NARINFO_LIMIT)
    }

    /// A stream of the file at `relative` (a narinfo's `URL`: relative to
    /// the cache root, or an absolute `http(s)://` or `file://` URL, which
    /// Nix's `HttpBinaryCacheStore::makeRequest` fetches as given) as
    /// stored: still compressed.
    fn open_file(&self, relative: &str) -> Result<Box<dyn Read + Send>>;

    /// Store `file` at `relative`, replacing what is there. Readers see
    /// either the old or the new file, never a partial one.
    fn upload(&self, relative: &str, file: &Path, content_type: &str) -> Result<()>;

    /// Where `relative` is, for messages; an absolute URL is itself.
    fn location(&self, relative: &str) -> String {
        if is_absolute_url(relative) {
            return relative.to_owned();
        }
        format!("{}/{relative}", self.url().trim_end_matches('/'))
    }

    /// The narinfo of `path`, checked: it must name `path` itself, in
    /// `store_dir`. Signatures are the caller's business.
    fn narinfo(&self, store_dir: &StoreDir, path: &StorePath) -> Result<Option<NarInfo>> {
        let Some(text) = self.narinfo_text(path)? else { return Ok(None) };
        let url = self.location(&format!("{}.narinfo", path.hash_part()));
        let info = parse_narinfo(store_dir, &url, &text)?;
        if info.store_path != *path {
            return Err(CacheError::WrongPath { url, expected: store_dir.display(path), got: store_dir.display(&info.store_path) });
        }
        Ok(Some(info))
    }
}

/// Parse a narinfo fetched from `url`, telling a narinfo of another store
/// directory (a cache built for `/nix/store`) apart from a malformed one.
pub fn parse_narinfo(store_dir: &StoreDir, url: &str, text: &[u8]) -> Result<NarInfo> {
    NarInfo::parse(store_dir, text).map_err(|error| {
        let named = String::from_utf8_lossy(text)
            .lines()
            .find_map(|l| l.strip_prefix("StorePath:").map(|p| p.trim().to_owned()));
        match named {
            Some(p) if store_dir.parse_path(&p).is_err() && p.starts_with('/') => {
                CacheError::ForeignStorePath { url: url.to_owned(), store_path: p, ours: store_dir.to_string() }
            }
            _ => CacheError::BadNarInfo { url: url.to_owned(), error },
        }
    })
}

/// Open the cache a URL names: `file:///dir` or `http(s)://...`. drv's own
/// query parameter `trusted=1` (see [`CacheUrl`]) must be stripped first.
pub fn open_cache(url: &str) -> Result<Box<dyn BinaryCache>> {
    if url.starts_with("s3://") {
        return Ok(Box::new(S3Cache::new(url)?));
    }
    // Only the S3 backend takes parameters of its own.
    if let Some((_, query)) = url.split_once('?') {
        let first = query.split('&').next().unwrap_or_default();
        return Err(CacheError::BadUrl { url: url.to_owned(), problem: format!("unknown parameter {first:?}") });
    }
    if let Some(dir) = url.strip_prefix("file://") {
        if !dir.starts_with('/') {
            return Err(CacheError::UnsupportedUrl { url: url.to_owned() });
        }
        return Ok(Box::new(FileCache::new(Path::new(dir))));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(Box::new(HttpCache::new(url)?));
    }
    Err(CacheError::UnsupportedUrl { url: url.to_owned() })
}

/// A cache URL as written in the configuration or on the command line:
/// the backend's URL (with the parameters only it reads, such as S3's), and
/// the binary-cache parameters every backend shares, as Nix spells them:
/// `trusted=1` (drv's: take its paths without checking signatures),
/// `compression` and `compression-level` of pushed NARs, and `secret-key`
/// (a key file that signs pushed narinfos).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheUrl {
    pub url: String,
    pub trusted: bool,
    pub compression: Option<Compression>,
    pub compression_level: Option<i32>,
    pub secret_key: Option<PathBuf>,
}

impl CacheUrl {
    /// Split off the shared parameters; a bad value is an error naming it.
    /// Nix's settings that only tune how Nix writes (`parallel-compression`,
    /// `write-nar-listing`, …) are accepted and ignored, so a URL written
    /// for Nix works unchanged.
    pub fn parse(text: &str) -> Result<Self> {
        let Some((base, query)) = text.split_once('?') else {
            return Ok(Self { url: text.to_owned(), ..Self::default() });
        };
        let bad = |problem: String| CacheError::BadUrl { url: base.to_owned(), problem };
        let mut parsed = Self::default();
        let mut rest = Vec::new();
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
            match key {
                "trusted" => parsed.trusted = matches!(value, "1" | "true"),
                "compression" => parsed.compression = Some(value.parse().map_err(bad)?),
                "compression-level" => {
                    parsed.compression_level =
                        Some(value.parse().map_err(|_| bad(format!("compression-level={value:?} is not a number")))?)
                }
                "secret-key" => parsed.secret_key = Some(PathBuf::from(value)),
                "parallel-compression" | "write-nar-listing" | "index-debug-info" | "want-mass-query" | "priority"
                | "write-debug-info" | "path-info-cache-size" => {}
                _ => rest.push(kv),
            }
        }
        parsed.url = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
        Ok(parsed)
    }
}

/// Whether a narinfo's `URL` names its NAR absolutely rather than relative
/// to the cache: Nix 2.x (`HttpBinaryCacheStore::makeRequest`) fetches
/// `http://`, `https://` and `file://` URLs as they are.
pub fn is_absolute_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://") || url.starts_with("file://")
}

/// A remote cache (HTTP, S3) must not make drv read local files: a
/// narinfo's `file://` URL from one is refused.
pub(crate) fn refuse_local_file(relative: &str) -> Result<()> {
    if relative.starts_with("file://") {
        return Err(CacheError::UnsupportedUrl { url: relative.to_owned() });
    }
    Ok(())
}

/// Open an absolute NAR URL (see [`is_absolute_url`]) with the backend
/// its scheme calls for.
pub(crate) fn open_absolute(url: &str) -> Result<Box<dyn Read + Send>> {
    if let Some(path) = url.strip_prefix("file://") {
        let path = Path::new(path);
        return match std::fs::File::open(path) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(CacheError::NotFound { url: url.to_owned() }),
            Err(e) => Err(CacheError::io(path, e)),
        };
    }
    HttpCache::get_absolute(url)
}

/// The name of a NAR compressed as `compression` ends with this.
pub fn nar_extension(compression: &str) -> &'static str {
    match compression {
        "zstd" => ".nar.zst",
        "xz" => ".nar.xz",
        "bzip2" => ".nar.bz2",
        "gzip" => ".nar.gz",
        "br" => ".nar.br",
        _ => ".nar",
    }
}

/// Undo a narinfo's `Compression`, as Nix 2.x reads it
/// (`src/libutil/compression.cc`, `makeDecompressionSink`): `none` (and the
/// empty name) is the NAR itself; `br` is brotli, which has no magic
/// number; every other name is handed to libarchive, which goes by the
/// data's magic number, not the name. drv does the same for the formats
/// libarchive detects that binary caches use: xz, zstd, bzip2, gzip and
/// lzma. A narinfo without `Compression` means bzip2 (Nix's `NarInfo`
/// default), which [`NarInfo::parse`] fills in.
pub fn decompress<'a>(path: &str, compression: &str, raw: Box<dyn Read + Send + 'a>) -> Result<Box<dyn Read + Send + 'a>> {
    let io_error = |error| CacheError::Io { path: path.into(), error };
    match compression {
        "none" | "" => return Ok(raw),
        "br" => return Ok(Box::new(brotli_decompressor::Decompressor::new(raw, 64 * 1024))),
        _ => {}
    }
    let (magic, raw) = peek(raw, 6).map_err(io_error)?;
    Ok(match magic.as_slice() {
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(zstd::stream::read::Decoder::new(raw).map_err(io_error)?),
        // Multi-stream: some writers (pixz, parallel xz) split the NAR.
        [0xfd, b'7', b'z', b'X', b'Z', 0x00] => Box::new(liblzma::read::XzDecoder::new_multi_decoder(raw)),
        // Multi-stream too: pbzip2 and lbzip2 write one stream per block.
        [b'B', b'Z', b'h', ..] => Box::new(bzip2::read::MultiBzDecoder::new(raw)),
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        // The .lzma (LZMA_Alone) header: properties byte 0x5d, then a
        // dictionary size; what `xz --format=lzma` writes.
        [0x5d, 0x00, 0x00, ..] => {
            let stream = liblzma::stream::Stream::new_lzma_decoder(u64::MAX).map_err(|e| io_error(e.into()))?;
            Box::new(liblzma::read::XzDecoder::new_stream(raw, stream))
        }
        _ => return Err(CacheError::UnsupportedCompression { path: path.to_owned(), compression: compression.to_owned() }),
    })
}

/// The first `n` bytes of `reader` (fewer if it is shorter), and a reader
/// that still yields every byte.
fn peek<'a>(mut reader: Box<dyn Read + Send + 'a>, n: usize) -> io::Result<(Vec<u8>, Box<dyn Read + Send + 'a>)> {
    let mut head = Vec::with_capacity(n);
    (&mut reader).take(n as u64).read_to_end(&mut head)?;
    let again = Box::new(io::Cursor::new(head.clone()).chain(reader));
    Ok((head, again))
}

/// Unpack the NAR `raw` (compressed as `info` says) into `staging`,
/// checking it against `info`'s NarHash and NarSize while it streams.
///
/// Contract: `Ok` means the tree at `staging.path()` is exactly the NAR the
/// narinfo describes. On `Err` nothing is left at `staging.path()`: a NAR
/// that is malformed or tries to leave its root is refused by
/// [`nar::restore`], which removes what it unpacked; a hash or size
/// mismatch removes the complete tree.
pub fn restore_verified(raw: Box<dyn Read + Send + '_>, info: &NarInfo, store_dir: &StoreDir, staging: &Staging) -> Result<()> {
    let path = store_dir.display(&info.store_path);
    // A cache that sends more than the narinfo's FileSize is cut off while
    // it streams; NarSize bounds the decompressed side below.
    let raw: Box<dyn Read + Send + '_> = match info.file_size {
        Some(size) => Box::new(crate::bounded::LimitedReader::new(raw, size, "compressed NAR")),
        None => raw,
    };
    let decompressed = decompress(&path, &info.compression, raw)?;
    let mut hashing = VerifyingReader { inner: decompressed, hash: Sha256Writer::new(), size: 0, limit: info.nar_size };
    let dest = staging.path();
    let restored = nar::restore(&mut hashing, &dest);
    if hashing.size > info.nar_size {
        let _ = nar::remove_tree(&dest);
        return Err(CacheError::NarSizeMismatch { path, expected: info.nar_size, got: hashing.size });
    }
    if let Err(error) = restored {
        return Err(CacheError::BadNar { path, error });
    }
    let (got_hash, got_size) = (hashing.hash.finish(), hashing.size);
    if got_size != info.nar_size {
        let _ = nar::remove_tree(&dest);
        return Err(CacheError::NarSizeMismatch { path, expected: info.nar_size, got: got_size });
    }
    if got_hash != info.nar_hash {
        let _ = nar::remove_tree(&dest);
        return Err(CacheError::NarHashMismatch { path, expected: info.nar_hash, got: got_hash });
    }
    Ok(())
}

/// Hashes what passes through, and stops a stream that runs past the size
/// the narinfo promised (so a hostile cache cannot fill the disk).
struct VerifyingReader<R> {
    inner: R,
    hash: Sha256Writer,
    size: u64,
    limit: u64,
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        if self.size > self.limit {
            return Err(io::Error::other(format!("NAR longer than its NarSize {}", self.limit)));
        }
        Ok(n)
    }
}

/// Run `work` over `items` on up to `threads` threads, results in the
/// items' order. The std-only worker pool of lookups and transfers.
pub(crate) fn parallel_map<T: Sync, R: Send>(items: &[T], threads: usize, work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<R>>> = items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = work(item);
                *results[i].lock().unwrap() = Some(r);
            });
        }
    });
    results.into_iter().map(|m| m.into_inner().unwrap().expect("every item was processed")).collect()
}
