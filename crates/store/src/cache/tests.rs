//! One suite over every [`BinaryCache`] backend: `file://` directly, and
//! `http://` through a writable [`server`](super::server) on 127.0.0.1.

use std::collections::BTreeSet;
use std::fs;

use super::server::{RunningServer, ServeCompression, ServerOptions};
use super::*;
use crate::formats::narinfo::SecretKey;
use crate::{Ingestion, LocalStore, SilentReporter};

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

use crate::formats::narinfo::PublicKey;

fn round_trip(kind: Backend) {
    let (_t, src, top) = source_store();
    let key = SecretKey::generate("test-cache-1").unwrap();
    let cache = TestCache::new(kind);
    let pushed = push(&src, cache.open().as_ref(), &BTreeSet::from([top.clone()]), Some(&key), &SilentReporter).unwrap();
    assert_eq!(pushed.uploaded.len(), 3, "{kind:?}");
    // again: the cache has everything
    let again = push(&src, cache.open().as_ref(), &BTreeSet::from([top.clone()]), Some(&key), &SilentReporter).unwrap();
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
    push(&src, cache.open().as_ref(), &BTreeSet::from([top.clone()]), Some(&key), &SilentReporter).unwrap();
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
    push(&src, cache.open().as_ref(), &BTreeSet::from([top.clone()]), None, &SilentReporter).unwrap();
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
    push(&src, c.as_ref(), &BTreeSet::from([top.clone()]), None, &SilentReporter).unwrap();
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
    assert_eq!(CacheUrl::parse("file:///c?trusted=1"), CacheUrl { url: "file:///c".into(), trusted: true });
    assert_eq!(CacheUrl::parse("http://h/x?a=b&trusted=true"), CacheUrl { url: "http://h/x?a=b".into(), trusted: true });
    assert_eq!(CacheUrl::parse("http://h"), CacheUrl { url: "http://h".into(), trusted: false });
    assert!(open_cache("s3://bucket").is_err());
    assert!(open_cache("file://relative").is_err());
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
    fn cache_info(&self) -> Result<Option<CacheInfo>> {
        self.cache.cache_info()
    }
    fn narinfo_text(&self, path: &StorePath) -> Result<Option<Vec<u8>>> {
        self.cache.narinfo_text(path)
    }
    fn open_file(&self, relative: &str) -> Result<Box<dyn std::io::Read + Send>> {
        // Another connection, as a `drv gc` in another process would have.
        let mut store = LocalStore::open(&self.client_root, StoreDir::default()).unwrap();
        crate::collect_garbage(&mut store, &crate::GcOptions::default()).unwrap();
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
    push(&src, cache.open().as_ref(), &BTreeSet::from([top.clone()]), None, &SilentReporter).unwrap();
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
    push(&src, cache.open().as_ref(), &BTreeSet::from([top.clone()]), None, &SilentReporter).unwrap();
    let (_d, mut dst) = empty_store();
    // What a `drv cache fetch` killed mid-download leaves: a staging
    // directory with a partial NAR unpacked (its lock free), and its
    // temporary-roots file.
    let dead_staging = dst.real_store_dir().join(".tmp-999999-0000000000000");
    fs::create_dir_all(dead_staging.join("object/part")).unwrap();
    fs::write(dead_staging.join("object/part/blob"), vec![1u8; 1000]).unwrap();
    let dead_roots = dst.state_dir().join("temproots/999999");
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
