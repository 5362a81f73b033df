//! Shared test support: run the built `drv` against a temporary root, and
//! real Nix (Debian's `nix-bin`) as a reference where it is installed.
#![allow(dead_code)]

pub mod python;
pub mod s3;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use drv_formats::{StoreDir, StorePath};
use drv_store::LocalStore;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");

/// The tests' lock file: the test toolchain (dash, coreutils, grep, sed,
/// bash and their dependencies), pinned to the `.deb`s of the miniature
/// archive in `tests/fixtures/debian`.
pub const TEST_LOCK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/recipes/drv.lock");

/// Put the tests' lock file next to recipes written into `dir`.
pub fn write_lock(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(TEST_LOCK, dir.join("drv.lock")).unwrap();
}

/// The miniature archive's mirrors, as `file://` URLs: every download of a
/// test `.deb` is a local copy, so the tests stay offline.
pub fn fixture_mirrors() -> [(&'static str, String); 2] {
    let base = std::fs::canonicalize(Path::new(FIXTURES).join("debian")).unwrap();
    [
        ("DRV_MIRROR_DEBIAN", format!("file://{}/debian", base.display())),
        ("DRV_MIRROR_DEBIAN_SECURITY", format!("file://{}/debian-security", base.display())),
    ]
}

/// A temporary drv root; `drv` commands run against it.
pub struct TestStore {
    pub dir: tempfile::TempDir,
}

impl TestStore {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A scratch path next to the store.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_drv"));
        c.arg("--root").arg(self.root());
        c.env_remove("DRV_ROOT");
        c.envs(fixture_mirrors());
        c
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert_success(&out, args);
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run and require failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(!out.status.success(), "drv {args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8(out.stderr).unwrap()
    }

    /// Everything under the root, for "nothing changed" checks; the
    /// database and each process's temporary-roots file (which every run
    /// that touches the store writes) left out.
    pub fn snapshot(&self) -> Vec<(PathBuf, u64)> {
        let mut out = Vec::new();
        walk(&self.root(), &mut out);
        out.retain(|(p, _)| {
            let p = p.to_string_lossy();
            !p.contains("/var/drv/db/") && !p.contains("/var/drv/temproots/")
        });
        out.sort();
        out
    }
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd {
        let e = e.unwrap();
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        out.push((e.path(), m.len()));
        if m.is_dir() {
            walk(&e.path(), out);
        }
    }
}

pub fn assert_success(out: &Output, args: &[&str]) {
    assert!(
        out.status.success(),
        "drv {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Real Nix with store dir /store whose files live in a scratch folder, as
/// `tests/fixtures/nix-vectors/README.md` describes. `None` when nix is not
/// installed (`.ci/run` installs it, so CI always compares).
pub struct Nix {
    pub dir: tempfile::TempDir,
}

impl Nix {
    pub fn find() -> Option<Self> {
        let found = Command::new("nix-store").arg("--version").output().is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("nix-store not on PATH: skipping the comparison with real Nix");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("conf")).unwrap();
        std::fs::copy(format!("{FIXTURES}/nix-vectors/nix.conf"), dir.path().join("conf/nix.conf")).unwrap();
        Some(Self { dir })
    }

    pub fn cmd(&self, program: &str) -> Command {
        let r = self.dir.path();
        let mut c = Command::new(program);
        c.env("NIX_CONF_DIR", r.join("conf"))
            .env("NIX_STORE_DIR", "/store")
            .env("NIX_STATE_DIR", r.join("state"))
            .env("NIX_LOG_DIR", r.join("log"))
            .env("NIX_REMOTE", "")
            .env("NIX_PATH", "")
            .env("XDG_CACHE_HOME", r.join("xdgcache"));
        c
    }

    /// `--store` argument for a store whose files are in the scratch dir.
    pub fn store_arg(&self) -> String {
        let r = self.dir.path().display();
        format!("local?store=/store&state={r}/state&log={r}/log&real={r}/real")
    }

    pub fn output(&self, program: &str, args: &[&str]) -> Vec<u8> {
        let out = self.cmd(program).args(args).output().unwrap();
        assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }
}

/// Serves `/files/<anything>` with fixed bytes and 404 elsewhere; stopped
/// when dropped.
pub struct FileServer {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FileServer {
    pub fn start(body: &'static [u8]) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().route("/files/{name}", axum::routing::get(move || async move { body }));
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = stopped => {}
                }
            });
        });
        let addr = ready_rx.recv().unwrap();
        Self { addr, stop: Some(stop), thread: Some(thread) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}


/// A recipe or lock-file error as drv renders it (`error: MESSAGE`,
/// ` --> FILE:LINE:COLUMN`, the line with the span marked, `= help: HELP`)
/// read back as one line, `FILE:LINE:COLUMN: MESSAGE (help: HELP)`, for
/// assertions on where and what; panics when `stderr` is not of that shape.
pub fn diagnostic_line(stderr: &str) -> String {
    let mut lines = stderr.lines();
    let message = lines.next().and_then(|l| l.strip_prefix("error: ")).unwrap_or_else(|| panic!("no `error: ` line: {stderr}"));
    let location = lines.next().and_then(|l| l.trim_start().strip_prefix("--> ")).unwrap_or_else(|| panic!("no ` --> ` line: {stderr}"));
    let help = stderr.lines().find_map(|l| l.trim_start().strip_prefix("= help: "));
    let help = help.map(|h| format!(" (help: {h})")).unwrap_or_default();
    format!("{location}: {message}{help}")
}

/// A key pair in files under the test's scratch folder.
pub struct Keys {
    pub secret: String,
    pub public: String,
}

pub fn keys(s: &TestStore, name: &str) -> Keys {
    let (sf, pf) = (s.scratch(&format!("{name}.sec")), s.scratch(&format!("{name}.pub")));
    s.ok(&["key", "generate", "--name", name, "--secret-file", sf.to_str().unwrap(), "--public-file", pf.to_str().unwrap()]);
    Keys { secret: sf.to_str().unwrap().to_owned(), public: fs::read_to_string(pf).unwrap() }
}

/// A closure of three: `drv store add` of a tree, and two text files
/// (through the library) referring to it in a chain. Returns the top.
pub fn populate(s: &TestStore) -> String {
    let tree = s.scratch("tree");
    fs::create_dir_all(tree.join("bin")).unwrap();
    fs::write(tree.join("bin/hello"), "#!/bin/sh\necho hello\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(tree.join("bin/hello"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(tree.join("big"), (0..400_000u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>()).unwrap();
    std::os::unix::fs::symlink("bin/hello", tree.join("link")).unwrap();
    let a = s.ok(&["store", "add", tree.to_str().unwrap()]).trim().to_owned();
    let mut store = LocalStore::open(&s.root(), StoreDir::default()).unwrap();
    let a = store.parse_path_arg(&a).unwrap();
    let b = store.add_text("b.txt", format!("uses {}", store.display(&a)).as_bytes(), &BTreeSet::from([a])).unwrap();
    let c = store.add_text("c.txt", format!("uses {}", store.display(&b)).as_bytes(), &BTreeSet::from([b])).unwrap();
    // An input-addressed path (no content address), like a build output:
    // Nix takes such a path from a cache only with a trusted signature.
    let contents = format!("built from {}", store.display(&c));
    let name = drv_formats::nixbase32::encode(&drv_formats::Sha256::digest(contents.as_bytes()).0[..20]);
    let d = StorePath::from_basename(&format!("{name}-output")).unwrap();
    let staging = store.staging().unwrap();
    fs::write(staging.path(), &contents).unwrap();
    let nar_hash = drv_formats::nar::hash_path(&staging.path()).unwrap();
    let locks = store.lock_paths([d.clone()]).unwrap();
    let mut new = drv_store::NewPath::new(d.clone(), staging, nar_hash);
    new.references = BTreeSet::from([c]);
    store.add_valid(&locks, vec![new], None).unwrap();
    store.display(&d)
}

pub fn open(s: &TestStore) -> LocalStore {
    LocalStore::open(&s.root(), StoreDir::default()).unwrap()
}

/// The closure of `top` in `s`: NAR hash, size and references of each.
pub fn closure_infos(s: &TestStore, top: &str) -> Vec<(String, String, u64, Vec<String>)> {
    let store = open(s);
    let top = store.parse_path_arg(top).unwrap();
    store
        .closure(&BTreeSet::from([top]))
        .unwrap()
        .into_iter()
        .map(|p| {
            let i = store.require_path_info(&p).unwrap();
            (store.display(&p), i.nar_hash.to_string(), i.nar_size, i.references.iter().map(|r| store.display(r)).collect())
        })
        .collect()
}

