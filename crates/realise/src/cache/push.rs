//! Uploading closures to a binary cache (`drv cache push`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use drv_formats::{nar, NarInfo, SecretKey, StoreDir, StorePath};

use super::{nar_extension, parallel_map, BinaryCache, CacheError, CacheInfo, Result, CACHE_INFO_FILE};
use drv_store::LocalStore;
use crate::reporter::Reporter;
use drv_store::PathInfo;

/// zstd level of pushed NARs: 3 is zstd's default, most of the ratio of
/// the high levels at a fraction of their time.
pub const PUSH_ZSTD_LEVEL: i32 = 3;

/// How pushed NARs are compressed: a narinfo's `Compression`, as Nix names
/// it (`compression=` of a cache URL).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    #[default]
    Zstd,
    Xz,
    Bzip2,
    Gzip,
    None,
}

impl Compression {
    /// The narinfo's name of it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
            Compression::Bzip2 => "bzip2",
            Compression::Gzip => "gzip",
            Compression::None => "none",
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "zstd" => Compression::Zstd,
            "xz" => Compression::Xz,
            "bzip2" => Compression::Bzip2,
            "gzip" => Compression::Gzip,
            "none" => Compression::None,
            other => return Err(format!("compression={other:?}: drv writes zstd, xz, bzip2, gzip or none")),
        })
    }
}

/// How [`push`] writes: the compression of NARs (and its level, else each
/// method's default) and how many NARs are compressed and uploaded at once.
#[derive(Clone, Debug)]
pub struct PushOptions {
    pub compression: Compression,
    pub level: Option<i32>,
    pub uploads: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        // Compressing is the bottleneck of a push to a near cache, and CI
        // machines have two cores; a far cache gains from more transfers
        // at once than cores, which `--jobs` gives.
        Self { compression: Compression::Zstd, level: None, uploads: 2 }
    }
}

/// A writer that compresses as `Compression` says, finished explicitly.
enum Compressor<W: Write> {
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Xz(liblzma::write::XzEncoder<W>),
    Bzip2(bzip2::write::BzEncoder<W>),
    Gzip(flate2::write::GzEncoder<W>),
    None(W),
}

impl<W: Write> Compressor<W> {
    fn new(inner: W, compression: Compression, level: Option<i32>) -> io::Result<Self> {
        let clamp = |lo: i32, hi: i32, default: i32| level.unwrap_or(default).clamp(lo, hi) as u32;
        Ok(match compression {
            Compression::Zstd => Compressor::Zstd(zstd::stream::write::Encoder::new(inner, level.unwrap_or(PUSH_ZSTD_LEVEL))?),
            Compression::Xz => Compressor::Xz(liblzma::write::XzEncoder::new(inner, clamp(0, 9, 6))),
            Compression::Bzip2 => Compressor::Bzip2(bzip2::write::BzEncoder::new(inner, bzip2::Compression::new(clamp(1, 9, 9)))),
            Compression::Gzip => Compressor::Gzip(flate2::write::GzEncoder::new(inner, flate2::Compression::new(clamp(0, 9, 6)))),
            Compression::None => Compressor::None(inner),
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Zstd(e) => e.finish(),
            Compressor::Xz(e) => e.finish(),
            Compressor::Bzip2(e) => e.finish(),
            Compressor::Gzip(e) => e.finish(),
            Compressor::None(w) => Ok(w),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Zstd(e) => e.write(buf),
            Compressor::Xz(e) => e.write(buf),
            Compressor::Bzip2(e) => e.write(buf),
            Compressor::Gzip(e) => e.write(buf),
            Compressor::None(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Zstd(e) => e.flush(),
            Compressor::Xz(e) => e.flush(),
            Compressor::Bzip2(e) => e.flush(),
            Compressor::Gzip(e) => e.flush(),
            Compressor::None(w) => w.flush(),
        }
    }
}

/// What [`push`] did.
#[derive(Debug, Default)]
pub struct PushReport {
    /// Paths uploaded.
    pub uploaded: BTreeSet<StorePath>,
    /// Paths of the closure the cache had already.
    pub skipped: BTreeSet<StorePath>,
}

/// Upload the closure of `paths` to `cache`: each missing path's NAR
/// (compressed as `options` say, zstd by default, at
/// `nar/<filehash>.nar.zst`), then its narinfo, signed with `key` when
/// given.
///
/// Contract: what the cache has (its narinfo exists; checked in parallel)
/// is skipped. Narinfos are written after every NAR, in dependency order
/// (references first), so a reader never sees a narinfo whose NAR or
/// whose references are missing, and a cache that registers as it
/// receives (`drv cache serve --writable`) can accept each in turn. A path
/// whose files no longer match its registered NAR hash is an error before
/// anything of it is uploaded.
pub fn push(
    store: &LocalStore,
    cache: &dyn BinaryCache,
    paths: &BTreeSet<StorePath>,
    key: Option<&SecretKey>,
    options: &PushOptions,
    reporter: &dyn Reporter,
) -> Result<PushReport> {
    let store_dir = store.store_dir().clone();
    // Rooted before they are read: their closures then stay valid, files
    // included, until this process exits.
    for p in paths {
        store.add_temp_root(p)?;
    }
    let closure = store.closure(paths)?;
    let infos: BTreeMap<StorePath, PathInfo> =
        closure.iter().map(|p| Ok((p.clone(), store.require_path_info(p)?))).collect::<Result<_>>()?;
    if cache.cache_info()?.is_none() {
        let tmp = temp_file_with(CacheInfo::new(&store_dir).to_text().as_bytes())?;
        cache.upload(CACHE_INFO_FILE, tmp.path(), "text/x-nix-cache-info")?;
    }
    let all: Vec<StorePath> = closure.into_iter().collect();
    let present = parallel_map(&all, 16, |p| cache.narinfo_text(p).map(|t| t.is_some()));
    let mut report = PushReport::default();
    let mut todo = Vec::new();
    for (p, has) in all.into_iter().zip(present) {
        if has? {
            report.skipped.insert(p);
        } else {
            todo.push((p.clone(), store.real_path(&p)));
        }
    }
    let uploaded =
        parallel_map(&todo, options.uploads, |(path, real)| upload_nar(cache, &store_dir, path, real, &infos[path], options, reporter));
    let mut narinfos = BTreeMap::new();
    for ((path, _), result) in todo.iter().zip(uploaded) {
        let mut info = result?;
        if let Some(k) = key {
            info.sign(&store_dir, k);
        }
        narinfos.insert(path.clone(), info);
    }
    for path in dependency_order(&narinfos) {
        let info = &narinfos[&path];
        let tmp = temp_file_with(info.to_text(&store_dir).map_err(|error| CacheError::BadNarInfo { url: cache.url().into(), error })?.as_bytes())?;
        cache.upload(&format!("{}.narinfo", path.hash_part()), tmp.path(), "text/x-nix-narinfo")?;
        report.uploaded.insert(path);
    }
    Ok(report)
}

/// Compress one path's NAR to a temporary file, checking its NAR hash
/// against the store's record on the way, and upload it.
fn upload_nar(
    cache: &dyn BinaryCache,
    store_dir: &StoreDir,
    path: &StorePath,
    real: &std::path::Path,
    info: &PathInfo,
    options: &PushOptions,
    reporter: &dyn Reporter,
) -> Result<NarInfo> {
    let what = path.to_basename();
    let tmp = tempfile::NamedTempFile::new().map_err(|e| CacheError::io(&std::env::temp_dir(), e))?;
    let file = tmp.reopen().map_err(|e| CacheError::io(tmp.path(), e))?;
    let compressed = nar::HashingWriter::new(io::BufWriter::with_capacity(1 << 18, file));
    let encoder = Compressor::new(compressed, options.compression, options.level).map_err(|e| CacheError::io(tmp.path(), e))?;
    let mut nar_stream = nar::HashingWriter::new(encoder);
    nar::dump_path(real, &mut nar_stream).map_err(|error| CacheError::BadNar { path: store_dir.display(path), error })?;
    let (encoder, nar) = nar_stream.into_parts();
    let (nar_hash, nar_size) = (nar.sha256, nar.size);
    let mut compressed = encoder.finish().map_err(|e| CacheError::io(tmp.path(), e))?;
    compressed.flush().map_err(|e| CacheError::io(tmp.path(), e))?;
    let (_, file) = compressed.into_parts();
    let (file_hash, file_size) = (file.sha256, file.size);
    if nar_hash != info.nar_hash || nar_size != info.nar_size {
        return Err(CacheError::CorruptLocalPath { path: store_dir.display(path), registered: info.nar_hash, actual: nar_hash });
    }
    let url = format!("nar/{}{}", file_hash.to_nix32(), nar_extension(options.compression.name()));
    reporter.upload_started(&what, &cache.location(&url), Some(file_size));
    let uploaded = cache.upload(&url, tmp.path(), "application/x-nix-nar");
    reporter.upload_finished(&what);
    uploaded?;
    Ok(NarInfo {
        store_path: path.clone(),
        url,
        compression: options.compression.name().into(),
        file_hash: Some(file_hash),
        file_size: Some(file_size),
        nar_hash,
        nar_size,
        references: info.references.clone(),
        deriver: info.deriver.clone(),
        signatures: info.signatures.clone(),
        ca: info.ca,
    })
}

/// References before referrers (self-references ignored).
pub(crate) fn dependency_order(infos: &BTreeMap<StorePath, NarInfo>) -> Vec<StorePath> {
    let mut done = BTreeSet::new();
    let mut order = Vec::new();
    fn visit(p: &StorePath, infos: &BTreeMap<StorePath, NarInfo>, done: &mut BTreeSet<StorePath>, order: &mut Vec<StorePath>) {
        if !done.insert(p.clone()) {
            return;
        }
        if let Some(info) = infos.get(p) {
            for r in &info.references {
                visit(r, infos, done, order);
            }
            order.push(p.clone());
        }
    }
    for p in infos.keys() {
        visit(p, infos, &mut done, &mut order);
    }
    order
}

fn temp_file_with(bytes: &[u8]) -> Result<tempfile::NamedTempFile> {
    let mut tmp = tempfile::NamedTempFile::new().map_err(|e| CacheError::io(&std::env::temp_dir(), e))?;
    tmp.write_all(bytes).map_err(|e| CacheError::io(tmp.path(), e))?;
    Ok(tmp)
}

