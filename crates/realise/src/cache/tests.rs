//! One suite over every [`BinaryCache`] backend: `file://` directly, and
//! `http://` through a writable [`server`](super::server) on 127.0.0.1.

use std::collections::BTreeSet;
use std::fs;

use drv_formats::SecretKey;

use super::server::{RunningServer, ServeCompression, ServerOptions};
use super::*;
use crate::reporter::SilentReporter;
use drv_store::{Ingestion, LocalStore};

#[derive(Clone, Copy, Debug)]
enum Backend {
    File,
    Http,
}

/// A cache of one backend kind; keeps its directory or server alive.
struct TestCache {
    url: String,
    _dir: tempfile::TempDir,
    _server: Option<RunningServer>,
}

impl TestCache {
    fn new(kind: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        match kind {
            Backend::File => Self { url: format!("file://{}", dir.path().display()), _dir: dir, _server: None },
            Backend::Http => {
                let options = ServerOptions {
                    root: dir.path().to_owned(),
                    store_dir: StoreDir::default(),
                    key: None,
                    writable: true,
                    trusted_keys: vec![],
                    compression: ServeCompression::Zstd,
                    priority: 40,
                };
                let server = RunningServer::start("127.0.0.1:0".parse().unwrap(), options).unwrap();
                Self { url: server.url(), _dir: dir, _server: Some(server) }
            }
        }
    }

    fn open(&self) -> Box<dyn BinaryCache> {
        open_cache(&self.url).unwrap()
    }
}

fn empty_store() -> (tempfile::TempDir, LocalStore) {
    let t = tempfile::tempdir().unwrap();
    let s = LocalStore::open(t.path(), StoreDir::default()).unwrap();
    (t, s)
}

/// a (a directory with an executable and a symlink) ← b (text) ← c (text):
/// c's closure is all three.
fn source_store() -> (tempfile::TempDir, LocalStore, StorePath) {
    let (t, mut s) = empty_store();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::write(src.join("bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    std::os::unix::fs::symlink("bin/tool", src.join("link")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(src.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(src.join("data"), vec![7u8; 300_000]).unwrap();
    let a = s.add_path(&src, "a", Ingestion::Recursive).unwrap();
    let b = s.add_text("b", s.display(&a).as_bytes(), &BTreeSet::from([a.clone()])).unwrap();
    let c = s.add_text("c", s.display(&b).as_bytes(), &BTreeSet::from([b.clone()])).unwrap();
    (t, s, c)
}

fn substituter(urls: &[&str], keys: Vec<PublicKey>) -> Substituter {
    let urls: Vec<String> = urls.iter().map(|u| u.to_string()).collect();
    Substituter::from_urls(&urls, keys, true, StoreDir::default()).unwrap()
}

use drv_formats::PublicKey;

fn round_trip(kind: Backend) {
    let (_t, src, top) = source_store();
    let key = SecretKey::generate("test-cache-1").unwrap();
    let cache = TestCache::new(kind);
    let pushed = push(&src, cache.open().as_ref(), &BTreeSet::from([top.clone()]), Some(&key), &PushOptions::default(), &SilentReporter).unwrap();
    assert_eq!(pushed.uploaded.len(), 3, "{kind:?}");
    // again: the cache has everything
    let again = push(&src, cache.open().as_ref(), &BTreeSet::from([top.clone()]), Some(&key), &PushOptions::default(), &SilentReporter).unwrap();
    assert!(again.uploaded.is_empty() && again.skipped.len() == 3, "{kind:?}");

    let (_d, mut dst) = empty_store();
    let sub = substituter(&[&cache.url], vec![key.public()]);
    let report = sub.substitute(&mut dst, &BTreeSet::from([top.clone()]), &SilentReporter).unwrap();
    assert_eq!(report.substituted.len(), 3, "{kind:?}: {report:?}");
    assert!(report.missing.is_empty());
    for p in src.closure(&BTreeSet::from([top.clone()])).unwrap() {
        let (want, got) = (src.require_path_info(&p).unwrap(), dst.require_path_info(&p).unwrap());
        assert_eq!((want.nar_hash, want.nar_size, &want.references, want.ca), (got.nar_hash, got.nar_size, &got.references, got.ca));
        assert!(got.signatures.iter().any(|s| s.starts_with("test-cache-1:")), "{kind:?}: {:?}", got.signatures);
    }
    assert!(dst.verify(true).unwrap().is_empty());
    // valid now: nothing to do
    let again = sub.substitute(&mut dst, &BTreeSet::from([top]), &SilentReporter).unwrap();
    assert!(again.substituted.is_empty() && again.already_valid.len() == 1);
}

fn untrusted_key_is_refused(kind: Backend) {
    let (_t, src, top) = source_store();
    let key = SecretKey::generate("test-cache-1").unwrap();
    let stranger = SecretKey::generate("stranger-1").unwrap();
    let cache = TestCache::new(kind);
    push(&src, cache.open().as_ref(), &BTreeSet::from([top.clone()]), Some(&key), &PushOptions::default(), &SilentReporter).unwrap();
    let (_d, mut dst) = empty_store();
    let sub = substituter(&[&cache.url], vec![stranger.public()]);
    let report = sub.substitute(&mut dst, &BTreeSet::from([top.clone()]), &SilentReporter).unwrap();
    assert!(report.substituted.is_empty());
    assert!(report.missing.contains(&top));
    assert!(report.problems.iter().any(|e| matches!(e, CacheError::Untrusted { .. })), "{:?}", report.problems);
    assert!(dst.all_valid_paths().unwrap().is_empty());
    // ...unless the cache is marked trusted
    let sub = substituter(&[&format!("{}?trusted=1", cache.url)], vec![]);
    let report = sub.substitute(&mut dst, &BTreeSet::from([top]), &SilentReporter).unwrap();
    assert_eq!(report.substituted.len(), 3);
}

fn a_failing_cache_falls_back_to_the_next(kind: Backend) {
    let (_t, src, top) = source_store();
    let cache = TestCache::new(kind);
    push(&src, cache.open().as_ref(), &BTreeSet::from([top.clone()]), None, &PushOptions::default(), &SilentReporter).unwrap();
    // A port nobody listens on: bound, then closed.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (_d, mut dst) = empty_store();
    let sub = Substituter::from_urls(&[format!("http://{dead}"), cache.url.clone()], vec![], false, StoreDir::default()).unwrap();
    let report = sub.substitute(&mut dst, &BTreeSet::from([top]), &SilentReporter).unwrap();
    assert_eq!(report.substituted.len(), 3, "{:?}", report.problems);
    assert!(report.problems.iter().any(|e| matches!(e, CacheError::Transport { .. })));
}

fn partial_closures_are_not_installed(kind: Backend) {
    let (_t, src, top) = source_store();
    let cache = TestCache::new(kind);
    // Only c itself (not its references) reaches this cache.
    let c = cache.open();
    push(&src, c.as_ref(), &BTreeSet::from([top.clone()]), None, &PushOptions::default(), &SilentReporter).unwrap();
    let (_d, mut dst) = empty_store();
    let sub = substituter(&[&format!("{}?trusted=1", cache.url)], vec![]);
    let missing_ref = src.require_path_info(&top).unwrap().references.into_iter().next().unwrap();
    // make b unobtainable by asking a substituter whose only cache lacks it
    let lone = TestCache::new(Backend::File);
    let lone_cache = lone.open();
    lone_cache.upload(CACHE_INFO_FILE, &write_tmp(b"StoreDir: /store\n"), "text/plain").unwrap();
    let text = c.narinfo_text(&top).unwrap().unwrap();
    let info = parse_narinfo(&StoreDir::default(), "x", &text).unwrap();
    let mut nar = Vec::new();
    c.open_file(&info.url).unwrap().read_to_end(&mut nar).unwrap();
    lone_cache.upload(&info.url, &write_tmp(&nar), "").unwrap();
    lone_cache.upload(&format!("{}.narinfo", top.hash_part()), &write_tmp(&text), "").unwrap();
    let sub_lone = substituter(&[&format!("{}?trusted=1", lone.url)], vec![]);
    let report = sub_lone.substitute(&mut dst, &BTreeSet::from([top.clone()]), &SilentReporter).unwrap();
    assert!(report.substituted.is_empty());
    assert!(report.missing.contains(&top) && report.missing.contains(&missing_ref));
    assert!(dst.all_valid_paths().unwrap().is_empty());
    assert_eq!(fs::read_dir(dst.real_store_dir()).unwrap().count(), 0, "no staging left");
    let _ = sub;
}

fn write_tmp(bytes: &[u8]) -> std::path::PathBuf {
    let f = tempfile::NamedTempFile::new().unwrap();
    fs::write(f.path(), bytes).unwrap();
    f.into_temp_path().keep().unwrap()
}

macro_rules! over_backends {
    ($($name:ident),*) => {
        mod file_backend { $( #[test] fn $name() { super::$name(super::Backend::File) } )* }
        mod http_backend { $( #[test] fn $name() { super::$name(super::Backend::Http) } )* }
    };
}

over_backends!(round_trip, untrusted_key_is_refused, a_failing_cache_falls_back_to_the_next, partial_closures_are_not_installed);

#[test]
fn cache_urls_split_off_trusted() {
    assert_eq!(CacheUrl::parse("file:///c?trusted=1").unwrap(), CacheUrl { url: "file:///c".into(), trusted: true, ..CacheUrl::default() });
    assert_eq!(CacheUrl::parse("http://h/x?a=b&trusted=true").unwrap(), CacheUrl { url: "http://h/x?a=b".into(), trusted: true, ..CacheUrl::default() });
    assert_eq!(CacheUrl::parse("http://h").unwrap(), CacheUrl { url: "http://h".into(), trusted: false, ..CacheUrl::default() });
    assert!(open_cache("gs://bucket").is_err());
    assert!(open_cache("file://relative").is_err());
    // The shared parameters, as Nix writes them; Nix's write-tuning
    // settings are accepted; what only a backend knows stays in its URL.
    let u = CacheUrl::parse("s3://b/p?endpoint=http://h:1&compression=xz&compression-level=9&secret-key=/k/sk&parallel-compression=true").unwrap();
    assert_eq!(u.url, "s3://b/p?endpoint=http://h:1");
    assert_eq!((u.compression, u.compression_level, u.secret_key.as_deref()), (Some(Compression::Xz), Some(9), Some(Path::new("/k/sk"))));
    assert!(CacheUrl::parse("file:///c?compression=lz4").unwrap_err().to_string().contains("lz4"));
    // A parameter no backend reads is an error, not silently dropped.
    assert!(open_cache("file:///c?a=b").err().unwrap().to_string().contains("\"a=b\""));
    assert!(open_cache("http://h/x?a=b").is_err());
}

#[test]
fn nix_written_caches_substitute() {
    // The fixture caches of real Nix 2.8 (zstd, signed).
    let fx = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/nix-vectors");
    let v: serde_json::Value = serde_json::from_slice(&fs::read(format!("{fx}/narinfo-signatures.json")).unwrap()).unwrap();
    let pk: PublicKey = v["public_key"].as_str().unwrap().parse().unwrap();
    let url = format!("file://{fx}/cache-zstd-all");
    let cache = open_cache(&url).unwrap();
    let mut wanted = BTreeSet::new();
    for e in fs::read_dir(format!("{fx}/cache-zstd-all")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if let Some(hash) = name.strip_suffix(".narinfo") {
            let text = fs::read(format!("{fx}/cache-zstd-all/{name}")).unwrap();
            let info = parse_narinfo(&StoreDir::default(), &name, &text).unwrap();
            assert_eq!(info.store_path.hash_part(), hash);
            wanted.insert(info.store_path);
        }
    }
    assert!(cache.cache_info().unwrap().unwrap().store_dir == "/store");
    let (_d, mut dst) = empty_store();
    let report = substituter(&[&url], vec![pk]).substitute(&mut dst, &wanted, &SilentReporter).unwrap();
    assert_eq!(report.substituted, wanted, "{:?}", report.problems);
    assert!(dst.verify(true).unwrap().is_empty());
}

use std::io::Read as _;

#[test]
fn a_read_only_server_refuses_uploads_and_serves_signed_narinfos() {
    let (t, src, top) = source_store();
    let key = SecretKey::generate("serve-1").unwrap();
    let options = ServerOptions {
        root: t.path().to_owned(),
        store_dir: StoreDir::default(),
        key: Some(key.clone()),
        writable: false,
        trusted_keys: vec![],
        compression: ServeCompression::None,
        priority: 40,
    };
    let server = RunningServer::start("127.0.0.1:0".parse().unwrap(), options).unwrap();
    let cache = open_cache(&server.url()).unwrap();
    let refused = cache.upload("nar/x.nar", &write_tmp(b"x"), "application/x-nix-nar");
    assert!(matches!(refused, Err(CacheError::HttpStatus { status: 405, .. })), "{refused:?}");
    let dir = StoreDir::default();
    let info = cache.narinfo(&dir, &top).unwrap().unwrap();
    assert_eq!(info.compression, "none");
    assert_eq!(info.file_hash, Some(info.nar_hash));
    assert!(info.has_valid_signature(&dir, &[key.public()]));
    // asked twice (the second answer comes from the server's cache): same text
    assert_eq!(cache.narinfo_text(&top).unwrap(), cache.narinfo_text(&top).unwrap());
    assert_eq!(info.nar_hash, src.require_path_info(&top).unwrap().nar_hash);
    let missing = StorePath::from_basename("00000000000000000000000000000000-nothing").unwrap();
    assert!(cache.narinfo(&dir, &missing).unwrap().is_none());
}

/// A real `file://` cache that runs a whole collection of the client's
/// store when the NAR of one path is opened: the worst moment for a
/// substitution that checked its references' validity without holding them.
struct CollectingWhenOpened {
    cache: Box<dyn BinaryCache>,
    client_root: std::path::PathBuf,
    collections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl BinaryCache for CollectingWhenOpened {
    fn url(&self) -> &str {
        self.cache.url()
    }
    fn document(&self, relative: &str, what: &'static str, limit: u64) -> Result<Option<Vec<u8>>> {
        self.cache.document(relative, what, limit)
    }
    fn open_file(&self, relative: &str) -> Result<Box<dyn std::io::Read + Send>> {
        // Another connection, as a `drv gc` in another process would have.
        let mut store = LocalStore::open(&self.client_root, StoreDir::default()).unwrap();
        drv_store::collect_garbage(&mut store, &drv_store::GcOptions::default()).unwrap();
        self.collections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.cache.open_file(relative)
    }
    fn upload(&self, relative: &str, file: &std::path::Path, content_type: &str) -> Result<()> {
        self.cache.upload(relative, file, content_type)
    }
}

#[test]
fn a_collection_during_substitution_keeps_the_references_found_valid() {
    let (_t, src, top) = source_store();
    let cache = TestCache::new(Backend::File);
    push(&src, cache.open().as_ref(), &BTreeSet::from([top.clone()]), None, &PushOptions::default(), &SilentReporter).unwrap();
    let dep = src.require_path_info(&top).unwrap().references.into_iter().next().unwrap();
    // The client has `dep` (and its closure), valid and unrooted.
    let (d, mut dst) = empty_store();
    let plain = Substituter::new(vec![(cache.open(), true)], vec![], StoreDir::default());
    plain.substitute(&mut dst, &BTreeSet::from([dep.clone()]), &SilentReporter).unwrap();
    dst.clear_temp_roots().unwrap();
    let collections = std::sync::Arc::default();
    let collecting =
        CollectingWhenOpened { cache: cache.open(), client_root: d.path().to_owned(), collections: std::sync::Arc::clone(&collections) };
    let sub = Substituter::new(vec![(Box::new(collecting) as Box<dyn BinaryCache>, true)], vec![], StoreDir::default());
    let report = sub.substitute(&mut dst, &BTreeSet::from([top.clone()]), &SilentReporter).unwrap();
    assert_eq!(report.substituted, BTreeSet::from([top.clone()]), "{report:?}");
    assert_eq!(collections.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(report.already_valid.contains(&dep));
    assert!(dst.is_valid(&top).unwrap() && dst.is_valid(&dep).unwrap());
    assert!(dst.verify(true).unwrap().is_empty());
}

#[test]
fn a_substitution_removes_what_killed_processes_left() {
    let (_t, src, top) = source_store();
    let cache = TestCache::new(Backend::File);
    push(&src, cache.open().as_ref(), &BTreeSet::from([top.clone()]), None, &PushOptions::default(), &SilentReporter).unwrap();
    let (_d, mut dst) = empty_store();
    // What a `drv cache fetch` killed mid-download leaves: a staging
    // directory with a partial NAR unpacked (its lock free), and its
    // temporary-roots file.
    let dead_staging = dst.real_store_dir().join(".tmp-999999-0000000000000");
    fs::create_dir_all(dead_staging.join("object/part")).unwrap();
    fs::write(dead_staging.join("object/part/blob"), vec![1u8; 1000]).unwrap();
    let dead_roots = dst.layout().temp_roots_dir().join("999999");
    fs::write(&dead_roots, format!("{}\n", dst.display(&top))).unwrap();
    let sub = Substituter::new(vec![(cache.open(), true)], vec![], StoreDir::default());
    let report = sub.substitute(&mut dst, &BTreeSet::from([top.clone()]), &SilentReporter).unwrap();
    assert_eq!(report.substituted.len(), 3, "{report:?}");
    assert!(!dead_staging.exists());
    assert!(!dead_roots.exists());
    let left: Vec<_> =
        fs::read_dir(dst.real_store_dir()).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n.to_string_lossy().starts_with('.')).collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A minimal HTTP/1.0 file server on 127.0.0.1 for caches that drv's own
/// server does not write (other compressions, absolute URLs, endless
/// bodies): `GET /x` answers the file `root/x`; a `.narinfo` is an endless
/// body when `endless` is set. Counts the body bytes it wrote.
struct StaticServer {
    url: String,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl StaticServer {
    fn start(root: std::path::PathBuf, endless: bool) -> Self {
        use std::io::{BufRead, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = sent.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (root, counter) = (root.clone(), counter.clone());
                std::thread::spawn(move || {
                    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                    let mut request = String::new();
                    reader.read_line(&mut request).unwrap();
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                        line.clear();
                    }
                    let path = request.split(' ').nth(1).unwrap_or("/").trim_start_matches('/').to_owned();
                    if endless && path.ends_with(".narinfo") {
                        let _ = stream.write_all(b"HTTP/1.0 200 OK\r\n\r\n");
                        let chunk = [b'j'; 64 * 1024];
                        while stream.write_all(&chunk).is_ok() {
                            counter.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        }
                        return;
                    }
                    match fs::read(root.join(&path)) {
                        Ok(body) => {
                            let _ = write!(stream, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                            let _ = stream.write_all(&body);
                        }
                        Err(_) => {
                            let _ = stream.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                        }
                    }
                });
            }
        });
        Self { url, sent }
    }
}

/// A cache directory holding one path as NAR compressed by `compress`,
/// its narinfo unsigned with `url` as the NAR's URL (`{file}` replaced by
/// the NAR's file name), `Compression` as given or left out.
fn hand_made_cache(
    src: &LocalStore,
    path: &StorePath,
    compression: Option<&str>,
    compress: impl Fn(&[u8]) -> Vec<u8>,
    url: &str,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("nar")).unwrap();
    fs::write(dir.path().join(CACHE_INFO_FILE), b"StoreDir: /store\n").unwrap();
    let mut nar = Vec::new();
    drv_formats::nar::dump_path(&src.real_path(path), &mut nar).unwrap();
    let file = compress(&nar);
    let name = format!("x{}", nar_extension(compression.unwrap_or("bzip2")));
    fs::write(dir.path().join("nar").join(&name), &file).unwrap();
    let pi = src.require_path_info(path).unwrap();
    let info = NarInfo {
        store_path: path.clone(),
        url: url.replace("{file}", &name),
        compression: compression.unwrap_or("none").to_owned(),
        file_hash: Some(drv_formats::Sha256::digest(&file)),
        file_size: Some(file.len() as u64),
        nar_hash: pi.nar_hash,
        nar_size: pi.nar_size,
        references: pi.references,
        deriver: None,
        signatures: vec![],
        ca: pi.ca,
    };
    let mut text = info.to_text(&StoreDir::default()).unwrap();
    if compression.is_none() {
        text = text.lines().filter(|l| !l.starts_with("Compression:")).map(|l| format!("{l}\n")).collect();
    }
    fs::write(dir.path().join(format!("{}.narinfo", path.hash_part())), text).unwrap();
    dir
}

fn leaf_store() -> (tempfile::TempDir, LocalStore, StorePath) {
    let (t, mut s) = empty_store();
    let src = t.path().join("obj");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), "hello\n".repeat(1000)).unwrap();
    let p = s.add_path(&src, "obj", Ingestion::Recursive).unwrap();
    (t, s, p)
}

fn substitutes(url: &str, path: &StorePath) -> Result<(), Vec<CacheError>> {
    let (_d, mut dst) = empty_store();
    let sub = substituter(&[&format!("{url}?trusted=1")], vec![]);
    let report = sub.substitute(&mut dst, &BTreeSet::from([path.clone()]), &SilentReporter).unwrap();
    if report.substituted.contains(path) {
        assert!(dst.verify(true).unwrap().is_empty());
        Ok(())
    } else {
        Err(report.problems)
    }
}

/// The `nar-bzip2-compression` report, and every other compression Nix
/// 2.x reads: a narinfo without `Compression` means bzip2, and the data's
/// magic number decides the decoder, as libarchive does for Nix.
#[test]
fn every_compression_nix_reads_substitutes() {
    use std::io::Write;
    let (_t, src, p) = leaf_store();
    let bzip2 = |n: &[u8]| {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        e.write_all(n).unwrap();
        e.finish().unwrap()
    };
    let gzip = |n: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(n).unwrap();
        e.finish().unwrap()
    };
    let xz = |n: &[u8]| {
        let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
        e.write_all(n).unwrap();
        e.finish().unwrap()
    };
    let lzma = |n: &[u8]| {
        let stream = liblzma::stream::Stream::new_lzma_encoder(&liblzma::stream::LzmaOptions::new_preset(6).unwrap()).unwrap();
        let mut e = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
        e.write_all(n).unwrap();
        e.finish().unwrap()
    };
    let zstd = |n: &[u8]| zstd::encode_all(n, 3).unwrap();
    type Compressor = Box<dyn Fn(&[u8]) -> Vec<u8>>;
    let cases: Vec<(Option<&str>, Compressor)> = vec![
        (None, Box::new(bzip2)),
        (Some("bzip2"), Box::new(bzip2)),
        (Some("gzip"), Box::new(gzip)),
        (Some("xz"), Box::new(xz)),
        (Some("lzma"), Box::new(lzma)),
        (Some("zstd"), Box::new(zstd)),
        (Some("none"), Box::new(|n: &[u8]| n.to_vec())),
        // libarchive goes by the data, not the name.
        (Some("xz"), Box::new(zstd)),
    ];
    for (compression, compress) in cases {
        let cache = hand_made_cache(&src, &p, compression, compress, "nar/{file}");
        let url = format!("file://{}", cache.path().display());
        substitutes(&url, &p).unwrap_or_else(|e| panic!("{compression:?}: {e:?}"));
    }
    // Data no decoder knows is refused, with the name the narinfo gave.
    let cache = hand_made_cache(&src, &p, Some("lz4"), |n: &[u8]| n.to_vec(), "nar/{file}");
    let problems = substitutes(&format!("file://{}", cache.path().display()), &p).unwrap_err();
    assert!(problems.iter().any(|e| matches!(e, CacheError::UnsupportedCompression { compression, .. } if compression == "lz4")), "{problems:?}");
}

/// The `narinfo-absolute-url` report: a narinfo may name its NAR by an
/// absolute URL, which is fetched as given (Nix's
/// `HttpBinaryCacheStore::makeRequest`). An HTTP cache may not make drv
/// read a local file.
#[test]
fn absolute_nar_urls_are_fetched_as_given() {
    let (_t, src, p) = leaf_store();
    // Served over HTTP, the narinfo pointing at the server by full URL.
    let cache = hand_made_cache(&src, &p, Some("none"), |n: &[u8]| n.to_vec(), "nar/{file}");
    let server = StaticServer::start(cache.path().to_owned(), false);
    let ni = cache.path().join(format!("{}.narinfo", p.hash_part()));
    let text = fs::read_to_string(&ni).unwrap().replace("URL: nar/", &format!("URL: {}/nar/", server.url));
    fs::write(&ni, text).unwrap();
    substitutes(&server.url, &p).unwrap();
    // A file:// cache may point at a file:// URL or an http:// one.
    substitutes(&format!("file://{}", cache.path().display()), &p).unwrap();
    let elsewhere = hand_made_cache(&src, &p, Some("none"), |n: &[u8]| n.to_vec(), "nar/{file}");
    let text = fs::read_to_string(&ni).unwrap().replace(&format!("URL: {}/nar/", server.url), &format!("URL: file://{}/nar/", elsewhere.path().display()));
    fs::write(&ni, text).unwrap();
    fs::remove_dir_all(cache.path().join("nar")).unwrap();
    substitutes(&format!("file://{}", cache.path().display()), &p).unwrap();
    let problems = substitutes(&server.url, &p).unwrap_err();
    assert!(problems.iter().any(|e| matches!(e, CacheError::UnsupportedUrl { .. })), "{problems:?}");
}

/// The `narinfo-unbounded-read` report: a narinfo answered with an endless
/// body is refused after NARINFO_LIMIT bytes, not read into memory.
#[test]
fn endless_narinfos_are_cut_off_at_the_limit() {
    let (_t, _src, p) = leaf_store();
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join(CACHE_INFO_FILE), b"StoreDir: /store\n").unwrap();
    let server = StaticServer::start(root.path().to_owned(), true);
    let cache = open_cache(&server.url).unwrap();
    let got = cache.narinfo_text(&p);
    assert!(matches!(got, Err(CacheError::TooLarge { limit: NARINFO_LIMIT, .. })), "{got:?}");
    // Socket buffers let the server get ahead, but not by much.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let sent = server.sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(sent < 64 << 20, "the server could send {sent} bytes");

    // The same for a file cache, and for nix-cache-info.
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(format!("{}.narinfo", p.hash_part())), vec![b'j'; NARINFO_LIMIT as usize + 1]).unwrap();
    fs::write(dir.path().join(CACHE_INFO_FILE), vec![b'j'; CACHE_INFO_LIMIT as usize + 1]).unwrap();
    let cache = open_cache(&format!("file://{}", dir.path().display())).unwrap();
    assert!(matches!(cache.narinfo_text(&p), Err(CacheError::TooLarge { .. })));
    assert!(matches!(cache.cache_info(), Err(CacheError::TooLarge { .. })));
}

/// A compressed NAR longer than the narinfo's FileSize is cut off while
/// it streams.
#[test]
fn a_nar_longer_than_its_file_size_is_refused() {
    let (_t, src, p) = leaf_store();
    let cache = hand_made_cache(&src, &p, Some("none"), |n: &[u8]| n.to_vec(), "nar/{file}");
    let ni = cache.path().join(format!("{}.narinfo", p.hash_part()));
    let text = fs::read_to_string(&ni).unwrap();
    let size: u64 = text.lines().find_map(|l| l.strip_prefix("FileSize: ")).unwrap().parse().unwrap();
    fs::write(&ni, text.replace(&format!("FileSize: {size}"), &format!("FileSize: {}", size - 8))).unwrap();
    let problems = substitutes(&format!("file://{}", cache.path().display()), &p).unwrap_err();
    assert!(problems.iter().any(|e| e.to_string().contains("longer than its declared")), "{problems:?}");
}

/// A store written before malformed signatures were dropped may hold
/// some (the `sig-junk-poisons-path` report): they are left out when the
/// path is read, so it can still be pushed and served.
#[test]
fn stored_junk_signatures_do_not_poison_a_path() {
    let (t, src, p) = leaf_store();
    let key = SecretKey::generate("k-1").unwrap();
    let cache = TestCache::new(Backend::File);
    push(&src, cache.open().as_ref(), &BTreeSet::from([p.clone()]), Some(&key), &PushOptions::default(), &SilentReporter).unwrap();
    let good = cache.open().narinfo(&StoreDir::default(), &p).unwrap().unwrap().signatures;
    drop(src);
    let db = rusqlite::Connection::open(drv_store::StoreLayout::new(t.path(), StoreDir::default()).database()).unwrap();
    let junk = format!("{} :junk-no-key-name other-1:not base64!!", good.join(" "));
    db.execute("UPDATE ValidPaths SET sigs = ?1", [&junk]).unwrap();
    drop(db);
    let src = LocalStore::open(t.path(), StoreDir::default()).unwrap();
    assert_eq!(src.require_path_info(&p).unwrap().signatures, good);
    let other = TestCache::new(Backend::File);
    push(&src, other.open().as_ref(), &BTreeSet::from([p.clone()]), None, &PushOptions::default(), &SilentReporter).unwrap();
    let pushed = other.open().narinfo(&StoreDir::default(), &p).unwrap().unwrap();
    assert_eq!(pushed.signatures, good);
    assert!(pushed.has_valid_signature(&StoreDir::default(), &[key.public()]));
}

/// `drv cache serve` holds what it serves: a collection started while a
/// NAR is being sent waits for the transfer, which arrives whole.
#[test]
fn a_nar_being_served_is_not_collected_under_the_client() {
    use std::io::Write as _;
    let (t, mut store) = empty_store();
    // Larger than the server's channel of chunks, so the dump is still
    // running while the client does not read.
    let bytes: Vec<u8> = (0..48u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let path = store.add_path(&write_tmp(&bytes), "big", Ingestion::Flat).unwrap();
    let info = store.require_path_info(&path).unwrap();
    let options = ServerOptions {
        root: t.path().to_owned(),
        store_dir: StoreDir::default(),
        key: None,
        writable: false,
        trusted_keys: vec![],
        compression: ServeCompression::None,
        priority: 40,
    };
    let server = RunningServer::start("127.0.0.1:0".parse().unwrap(), options).unwrap();
    let addr = server.url().trim_start_matches("http://").trim_end_matches('/').to_owned();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    write!(conn, "GET /nar/{}-{}.nar HTTP/1.0\r\nHost: x\r\n\r\n", path.hash_part(), info.nar_hash.to_nix32()).unwrap();
    let mut first = vec![0u8; 4096];
    conn.read_exact(&mut first).unwrap();

    let root = t.path().to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut s = LocalStore::open(&root, StoreDir::default()).unwrap();
        let _ = tx.send(drv_store::collect_garbage(&mut s, &drv_store::GcOptions::default()).map(|r| r.deleted.len()));
    });
    assert!(rx.recv_timeout(std::time::Duration::from_millis(700)).is_err(), "the collection did not wait for the transfer");

    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).unwrap();
    first.extend(rest);
    let body_at = first.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let nar = &first[body_at..];
    assert_eq!(drv_formats::Sha256::digest(nar), info.nar_hash, "the NAR arrived whole");
    // Then the collection runs (this process's own temporary root keeps
    // the path; what matters is that it waited).
    rx.recv_timeout(std::time::Duration::from_secs(60)).unwrap().unwrap();
}
