//! `drv key`, `drv cache push|serve|fetch`, run as a user runs them:
//! temporary roots, caches in temporary directories or served by the real
//! `drv cache serve` on 127.0.0.1 (port 0), and real Nix where installed.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};

use common::{closure_infos, keys, open, populate, Keys, Nix, TestStore, FIXTURES};
use drv_formats::{NarInfo, SecretKey, StoreDir, StorePath};

/// `drv cache serve` on 127.0.0.1:0, killed when dropped.
struct Serve {
    child: Child,
    url: String,
}

impl Serve {
    fn start(s: &TestStore, extra: &[&str]) -> Self {
        let mut child = s
            .cmd()
            .args(["cache", "serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{line:?}")).to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        Self { child, url }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first path of `top`'s closure (the added tree, on which the rest
/// depends): refusing it must leave nothing of the closure registered.
fn leaf(s: &TestStore, top: &str) -> String {
    closure_infos(s, top).into_iter().map(|(p, ..)| p).find(|p| p.ends_with("-tree")).unwrap()
}

fn signatures(s: &TestStore, path: &str) -> Vec<String> {
    let store = open(s);
    let p = store.parse_path_arg(path).unwrap();
    store.require_path_info(&p).unwrap().signatures
}

#[test]
fn push_to_file_then_fetch_into_an_empty_root() {
    let (src, top, url, k, dir) = signed_cache();
    assert_eq!(fs::read_to_string(dir.join("nix-cache-info")).unwrap().lines().next(), Some("StoreDir: /store"));
    assert_eq!(fs::read_dir(dir.join("nar")).unwrap().count(), 4);
    assert!(fs::read_dir(dir.join("nar")).unwrap().all(|e| e.unwrap().file_name().to_str().unwrap().ends_with(".nar.zst")));

    let dst = TestStore::new();
    let out = dst.ok(&["cache", "fetch", "--substituters", &url, "--trusted-public-key", &k.public, &top]);
    assert_eq!(out.lines().count(), 4, "{out}");
    assert_eq!(closure_infos(&dst, &top), closure_infos(&src, &top));
    assert!(signatures(&dst, &top).iter().any(|s| s.starts_with("test-cache-1:")));
    dst.ok(&["store", "verify", "--check-contents"]);
    // fetched again: nothing to do
    assert_eq!(dst.ok(&["cache", "fetch", "--substituters", &url, "--trusted-public-key", &k.public, &top]), "");
}

#[test]
fn push_skips_what_the_cache_has() {
    let src = TestStore::new();
    let top = populate(&src);
    let dir = src.scratch("cache");
    let url = format!("file://{}", dir.display());
    let first = src.cmd().args(["cache", "push", "--to", &url, &top]).output().unwrap();
    assert!(String::from_utf8_lossy(&first.stderr).contains("pushed 4 path(s)"));
    let before: Vec<_> = fs::read_dir(dir.join("nar")).unwrap().map(|e| e.unwrap().metadata().unwrap().modified().unwrap()).collect();
    let again = src.cmd().args(["cache", "push", "--to", &url, &top]).output().unwrap();
    assert!(String::from_utf8_lossy(&again.stderr).contains("pushed 0 path(s)"), "{}", String::from_utf8_lossy(&again.stderr));
    let after: Vec<_> = fs::read_dir(dir.join("nar")).unwrap().map(|e| e.unwrap().metadata().unwrap().modified().unwrap()).collect();
    assert_eq!(before, after);
}

#[test]
fn serve_and_fetch_over_http_and_push_to_a_writable_server() {
    let src = TestStore::new();
    let top = populate(&src);
    let k = keys(&src, "serve-1");
    let server = Serve::start(&src, &["--key", &k.secret]);
    let dst = TestStore::new();
    dst.ok(&["cache", "fetch", "--substituters", &server.url, "--trusted-public-key", &k.public, &top]);
    assert_eq!(closure_infos(&dst, &top), closure_infos(&src, &top));
    assert!(signatures(&dst, &top).iter().any(|s| s.starts_with("serve-1:")));

    // Compression: none
    let plain = Serve::start(&src, &["--key", &k.secret, "--compression", "none"]);
    let dst2 = TestStore::new();
    dst2.ok(&["cache", "fetch", "--substituters", &plain.url, "--trusted-public-key", &k.public, &top]);
    assert_eq!(closure_infos(&dst2, &top), closure_infos(&src, &top));

    // PUT into a writable server that requires the pusher's signature.
    let sink = TestStore::new();
    sink.ok(&["store", "verify"]);
    let writable = Serve::start(&sink, &["--writable", "--trusted-public-key", &k.public]);
    let stranger = keys(&src, "stranger-1");
    let refused = src.fails(&["cache", "push", "--to", &writable.url, "--key", &stranger.secret, &top]);
    assert!(refused.contains("403"), "{refused}");
    src.ok(&["cache", "push", "--to", &writable.url, "--key", &k.secret, &top]);
    assert_eq!(closure_infos(&sink, &top), closure_infos(&src, &top));
    sink.ok(&["store", "verify", "--check-contents"]);
}

/// The source store, a signed file:// cache of its closure, and the key.
fn signed_cache() -> (TestStore, String, String, Keys, std::path::PathBuf) {
    let src = TestStore::new();
    let top = populate(&src);
    let k = keys(&src, "test-cache-1");
    let dir = src.scratch("cache");
    let url = format!("file://{}", dir.display());
    src.ok(&["cache", "push", "--to", &url, "--key", &k.secret, &top]);
    (src, top, url, k, dir)
}

fn narinfo_file(dir: &std::path::Path, path: &str) -> std::path::PathBuf {
    let base = path.trim_start_matches("/store/");
    dir.join(format!("{}.narinfo", &base[..32]))
}

/// Fetching `top` fails with a message containing `expect`, and the target
/// root is as it was.
fn refused(url: &str, public: &str, top: &str, expect: &str) {
    let dst = TestStore::new();
    dst.ok(&["store", "verify"]);
    let before = dst.snapshot();
    let err = dst.fails(&["cache", "fetch", "--substituters", url, "--trusted-public-key", public, top]);
    assert!(err.contains(expect), "expected {expect:?} in:\n{err}");
    assert_eq!(dst.snapshot(), before, "{expect}: the target root changed");
    assert!(open(&dst).all_valid_paths().unwrap().is_empty());
}

fn resign(file: &std::path::Path, secret: &str, edit: impl FnOnce(&mut NarInfo)) {
    let dir = StoreDir::default();
    let mut info = NarInfo::parse(&dir, &fs::read(file).unwrap()).unwrap();
    edit(&mut info);
    info.signatures.clear();
    let key: SecretKey = fs::read_to_string(secret).unwrap().parse().unwrap();
    info.sign(&dir, &key);
    fs::write(file, info.to_text(&dir).unwrap()).unwrap();
}

#[test]
fn tampered_nar_is_refused() {
    let (src, top, url, k, dir) = signed_cache();
    let info = NarInfo::parse(&StoreDir::default(), &fs::read(narinfo_file(&dir, &leaf(&src, &top))).unwrap()).unwrap();
    let nar_file = dir.join(&info.url);
    let mut nar = zstd::decode_all(&fs::read(&nar_file).unwrap()[..]).unwrap();
    let at = nar.windows(10).position(|w| w == b"echo hello").unwrap();
    nar[at] = b'E';
    fs::write(&nar_file, zstd::encode_all(&nar[..], 3).unwrap()).unwrap();
    refused(&url, &k.public, &top, "NAR hash mismatch");
}

#[test]
fn wrong_nar_size_is_refused() {
    let (src, top, url, k, dir) = signed_cache();
    resign(&narinfo_file(&dir, &leaf(&src, &top)), &k.secret, |i| i.nar_size += 8);
    refused(&url, &k.public, &top, "NAR size mismatch");
}

#[test]
fn missing_and_untrusted_signatures_are_refused() {
    let src = TestStore::new();
    let top = populate(&src);
    let k = keys(&src, "test-cache-1");
    let stranger = keys(&src, "stranger-1");
    let unsigned = src.scratch("unsigned");
    src.ok(&["cache", "push", "--to", &format!("file://{}", unsigned.display()), &top]);
    refused(&format!("file://{}", unsigned.display()), &k.public, &top, "no signature by a trusted key");
    let signed = src.scratch("signed");
    src.ok(&["cache", "push", "--to", &format!("file://{}", signed.display()), "--key", &stranger.secret, &top]);
    refused(&format!("file://{}", signed.display()), &k.public, &top, "no signature by a trusted key");
    // explicitly disabled checks: accepted
    let dst = TestStore::new();
    dst.ok(&["cache", "fetch", "--substituters", &format!("file://{}?trusted=1", unsigned.display()), &top]);
    let dst = TestStore::new();
    dst.ok(&["cache", "fetch", "--no-check-sigs", "--substituters", &format!("file://{}", signed.display()), &top]);
}

#[test]
fn narinfo_of_another_store_dir_is_refused() {
    let (src, top, url, k, dir) = signed_cache();
    let file = narinfo_file(&dir, &leaf(&src, &top));
    let text = fs::read_to_string(&file).unwrap().replace("StorePath: /store/", "StorePath: /nix/store/");
    fs::write(&file, text).unwrap();
    refused(&url, &k.public, &top, "not in store directory /store");
}

#[test]
fn nar_escaping_its_root_is_refused() {
    let (src, top, url, k, dir) = signed_cache();
    let good = fs::read(format!("{FIXTURES}/nix-vectors/v3-fod-recursive.out.nar")).unwrap();
    let mut evil = good.clone();
    let pos = evil.windows(8).position(|w| w == b"link\0\0\0\0").unwrap();
    evil[pos - 8..pos].copy_from_slice(&2u64.to_le_bytes());
    evil[pos..pos + 8].copy_from_slice(b"..\0\0\0\0\0\0");
    fs::write(dir.join("nar/evil.nar"), &evil).unwrap();
    resign(&narinfo_file(&dir, &leaf(&src, &top)), &k.secret, |i| {
        i.url = "nar/evil.nar".into();
        i.compression = "none".into();
        i.file_hash = None;
        i.file_size = None;
        i.nar_hash = drv_formats::Sha256::digest(&evil);
        i.nar_size = evil.len() as u64;
    });
    refused(&url, &k.public, &top, "refused NAR");
}

/// Answers every request with 500.
struct Broken {
    addr: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Broken {
    fn start() -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(|| async { axum::http::StatusCode::INTERNAL_SERVER_ERROR });
                tokio::select! { _ = axum::serve(listener, app) => {} _ = stopped => {} }
            });
        });
        Self { addr: rx.recv().unwrap(), _stop: stop }
    }
}

#[test]
fn failing_caches_fall_back_to_the_next() {
    let (src, top, url, k, _dir) = signed_cache();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let broken = Broken::start();
    let dst = TestStore::new();
    let list = format!("http://{dead} http://{} {url}", broken.addr);
    let out = dst.cmd().args(["cache", "fetch", "--substituters", &list, "--trusted-public-key", &k.public, &top]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("disabling binary cache") && err.contains("HTTP 500"), "{err}");
    assert_eq!(closure_infos(&dst, &top), closure_infos(&src, &top));
}

#[test]
fn fixture_caches_written_by_nix_substitute() {
    let v: serde_json::Value =
        serde_json::from_slice(&fs::read(format!("{FIXTURES}/nix-vectors/narinfo-signatures.json")).unwrap()).unwrap();
    let pk = v["public_key"].as_str().unwrap();
    for cache in ["cache-zstd-signed", "cache-zstd-all"] {
        let dir = format!("{FIXTURES}/nix-vectors/{cache}");
        let paths: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| {
                let text = fs::read(e.unwrap().path()).ok()?;
                let info = NarInfo::parse(&StoreDir::default(), &text).ok()?;
                Some(StoreDir::default().display(&info.store_path))
            })
            .collect();
        assert!(!paths.is_empty());
        let dst = TestStore::new();
        let mut args = vec!["cache", "fetch", "--substituters"];
        let url = format!("file://{dir}");
        args.push(&url);
        args.extend(["--trusted-public-key", pk]);
        args.extend(paths.iter().map(String::as_str));
        dst.ok(&args);
        dst.ok(&["store", "verify", "--check-contents"]);
        let store = open(&dst);
        for p in &paths {
            let p: StorePath = store.parse_path_arg(p).unwrap();
            assert!(!store.require_path_info(&p).unwrap().signatures.is_empty());
        }
    }
}

fn nix_query_hash(nix: &Nix, path: &str) -> String {
    let out = nix.output("nix-store", &["--store", &nix.store_arg(), "--query", "--hash", path]);
    String::from_utf8(out).unwrap().trim().to_owned()
}

#[test]
fn nix_substitutes_from_drv_caches() {
    let Some(_) = Nix::find() else { return };
    let src = TestStore::new();
    let top = populate(&src);
    let k = keys(&src, "drv-cache-1");
    let dir = src.scratch("cache");
    let file_url = format!("file://{}", dir.display());
    src.ok(&["cache", "push", "--to", &file_url, "--key", &k.secret, &top]);
    let server = Serve::start(&src, &["--key", &k.secret]);
    let want = closure_infos(&src, &top);
    for url in [&file_url, &server.url] {
        let nix = Nix::find().unwrap();
        let store = nix.store_arg();
        let args = ["--store", &store, "--realise", &top, "--option", "substituters", url, "--option", "trusted-public-keys", &k.public];
        nix.output("nix-store", &args);
        for (path, nar_hash, _, _) in &want {
            let got = nix_query_hash(&nix, path);
            assert_eq!(drv_formats::Sha256::parse(&got).unwrap().to_string(), *nar_hash, "{url} {path}");
        }
        // signatures are checked by Nix: a cache signed by another key is refused
        let nix2 = Nix::find().unwrap();
        let store2 = nix2.store_arg();
        let other = SecretKey::generate("other-1").unwrap().public().to_string();
        let out = nix2
            .cmd("nix-store")
            .args(["--store", &store2, "--realise", &top, "--option", "substituters", url, "--option", "trusted-public-keys", &other])
            .output()
            .unwrap();
        assert!(!out.status.success(), "Nix accepted a path without a trusted signature from {url}");
    }
}

#[test]
fn drv_substitutes_from_caches_nix_wrote() {
    let Some(nix) = Nix::find() else { return };
    let store = nix.store_arg();
    // A closure with references: a .drv and its inputs.
    let drv = String::from_utf8(nix.output(
        "nix-instantiate",
        &["--store", &store, &format!("{FIXTURES}/nix-vectors/v2-dependent.nix")],
    ))
    .unwrap()
    .trim()
    .to_owned();
    let s = TestStore::new();
    let k = keys(&s, "nix-cache-1");
    for compression in ["zstd", "xz"] {
        let dir = s.scratch(&format!("nix-{compression}"));
        let to = format!("file://{}?compression={compression}&secret-key={}", dir.display(), k.secret);
        nix.output("nix", &["--store", &store, "copy", "--derivation", "--to", &to, &drv]);
        let dst = TestStore::new();
        let url = format!("file://{}", dir.display());
        dst.ok(&["cache", "fetch", "--substituters", &url, "--trusted-public-key", &k.public, &drv]);
        dst.ok(&["store", "verify", "--check-contents"]);
        let d = open(&dst);
        let closure = d.closure(&BTreeSet::from([d.parse_path_arg(&drv).unwrap()])).unwrap();
        assert!(closure.len() >= 3, "{compression}: {closure:?}");
        for p in closure {
            let ours = d.require_path_info(&p).unwrap();
            assert_eq!(nix_query_hash(&nix, &d.display(&p)), format!("sha256:{}", ours.nar_hash.to_nix32()), "{compression}");
            assert!(ours.signatures.iter().any(|s| s.starts_with("nix-cache-1:")));
        }
    }
}

#[test]
fn push_of_a_recipe_uploads_its_valid_outputs() {
    let s = TestStore::new();
    let recipe = format!("{FIXTURES}/../recipes/base.toml");
    let dir = s.scratch("cache");
    let url = format!("file://{}", dir.display());
    let err = s.fails(&["cache", "push", "--to", &url, &recipe]);
    assert!(err.contains("build it first"), "{err}");
    // Stand in for a build: register the output with some contents.
    let eval: serde_json::Value = serde_json::from_str(&s.ok(&["eval", "--json", &recipe])).unwrap();
    let drv = eval["drvPath"].as_str().unwrap();
    let out = eval["derivations"][drv]["outputs"]["out"].as_str().unwrap().to_owned();
    let mut store = open(&s);
    let out_path = store.parse_path_arg(&out).unwrap();
    let staging = store.staging().unwrap();
    fs::write(staging.path(), "built").unwrap();
    let nar_hash = drv_formats::nar::hash_path(&staging.path()).unwrap();
    let locks = store.lock_paths([out_path.clone()]).unwrap();
    store.add_valid(&locks, vec![drv_store::NewPath::new(out_path.clone(), staging, nar_hash)], None).unwrap();
    drop(store);
    s.ok(&["cache", "push", "--to", &url, &recipe]);
    assert!(narinfo_file(&dir, &out).exists());
}

/// A rerun of `drv cache fetch` after one was killed mid-download removes
/// what the killed one left (its staging directories, partial NARs, and
/// its temporary-roots file), as a rerun of `drv build` does.
#[test]
fn fetch_removes_what_a_killed_fetch_left() {
    let (_src, top, url, k, _dir) = signed_cache();
    let dst = TestStore::new();
    dst.ok(&["store", "verify"]);
    let store_dir = dst.root().join("store");
    let dead = store_dir.join(".tmp-4194000-0a1b2c3d4f5g6");
    fs::create_dir_all(dead.join("object/lib")).unwrap();
    fs::write(dead.join("object/lib/partial"), vec![0u8; 100_000]).unwrap();
    let dead_roots = dst.root().join("var/drv/temproots/4194000");
    fs::write(&dead_roots, format!("{top}\n")).unwrap();
    dst.ok(&["cache", "fetch", "--substituters", &url, "--trusted-public-key", &k.public, &top]);
    let hidden: Vec<_> = fs::read_dir(&store_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
    assert!(!dead_roots.exists());
    dst.ok(&["store", "verify", "--check-contents"]);
}
