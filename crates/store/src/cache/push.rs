//! Uploading closures to a binary cache (`drv cache push`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use super::{nar_extension, parallel_map, BinaryCache, CacheError, CacheInfo, Result, CACHE_INFO_FILE};
use crate::formats::nar;
use crate::formats::narinfo::{NarInfo, SecretKey};
use crate::formats::path::{StoreDir, StorePath};
use crate::local::LocalStore;
use crate::reporter::Reporter;
use crate::PathInfo;

/// zstd level of pushed NARs: 3 is zstd's default, most of the ratio of
/// the high levels at a fraction of their time.
pub const PUSH_ZSTD_LEVEL: i32 = 3;

/// What [`push`] did.
#[derive(Debug, Default)]
pub struct PushReport {
    /// Paths uploaded.
    pub uploaded: BTreeSet<StorePath>,
    /// Paths of the closure the cache had already.
    pub skipped: BTreeSet<StorePath>,
}

/// Upload the closure of `paths` to `cache`: each missing path's NAR
/// (zstd, at `nar/<filehash>.nar.zst`), then its narinfo, signed with `key`
/// when given.
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
    // Two at once: compressing is the bottleneck, and there are two cores.
    let uploaded = parallel_map(&todo, 2, |(path, real)| upload_nar(cache, &store_dir, path, real, &infos[path], reporter));
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
    reporter: &dyn Reporter,
) -> Result<NarInfo> {
    let what = path.to_basename();
    let tmp = tempfile::NamedTempFile::new().map_err(|e| CacheError::io(&std::env::temp_dir(), e))?;
    let file = tmp.reopen().map_err(|e| CacheError::io(tmp.path(), e))?;
    let compressed = nar::HashingWriter::new(io::BufWriter::with_capacity(1 << 18, file));
    let encoder = zstd::stream::write::Encoder::new(compressed, PUSH_ZSTD_LEVEL).map_err(|e| CacheError::io(tmp.path(), e))?;
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
    let url = format!("nar/{}{}", file_hash.to_nix32(), nar_extension("zstd"));
    reporter.upload_started(&what, &cache.location(&url), Some(file_size));
    let uploaded = cache.upload(&url, tmp.path(), "application/x-nix-nar");
    reporter.upload_finished(&what);
    uploaded?;
    Ok(NarInfo {
        store_path: path.clone(),
        url,
        compression: "zstd".into(),
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

