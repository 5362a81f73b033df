//! The showcase, end to end: CPython from source, pytest and flask from
//! pinned wheels, the interpreter test and the flask app, built from
//! nothing in a temporary root. It downloads (through the machine's apt and
//! pip configuration) and compiles for several minutes, so it is ignored by
//! the fast suite; `.ci/run` runs it with `--ignored`.
//!
//! `DRV_SHOWCASE_ROOT=DIR` keeps (and reuses) the store; `DRV_SHOWCASE_QUICK=1`
//! skips the second build in another root.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RECIPES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../recipes");

struct Root {
    path: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Root {
    fn new(var: &str) -> Self {
        match std::env::var_os(var) {
            Some(p) => Self { path: PathBuf::from(p), _tmp: None },
            None => {
                let t = tempfile::Builder::new().prefix("drv-showcase-").tempdir().unwrap();
                Self { path: t.path().to_owned(), _tmp: Some(t) }
            }
        }
    }

    fn drv(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_drv"));
        c.arg("--root").arg(&self.path);
        c
    }

    /// Run, stream stderr through, require success, return stdout.
    fn ok(&self, args: &[&str]) -> String {
        let started = Instant::now();
        eprintln!("$ drv {}", args.join(" "));
        let out = self.drv().args(args).stderr(Stdio::inherit()).output().unwrap();
        eprintln!("  ({:.1}s)", started.elapsed().as_secs_f64());
        assert!(out.status.success(), "drv {args:?} failed");
        String::from_utf8(out.stdout).unwrap()
    }

    /// NAR hash of every path in the closure of `path`.
    fn closure_hashes(&self, path: &str) -> BTreeMap<String, String> {
        let json: serde_json::Value = serde_json::from_str(&self.ok(&["path-info", "-r", "--json", path])).unwrap();
        json.as_array()
            .unwrap()
            .iter()
            .map(|i| (i["path"].as_str().unwrap().to_owned(), i["narHash"].as_str().unwrap().to_owned()))
            .collect()
    }
}

fn recipe(name: &str) -> String {
    format!("{RECIPES}/{name}")
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

#[test]
#[ignore = "downloads and compiles CPython (minutes): run with --ignored"]
fn showcase_builds_runs_tests_and_is_reproducible() {
    let root = Root::new("DRV_SHOWCASE_ROOT");
    let phase = Instant::now();

    // 1. The main job.
    let app = root.ok(&["build", "-L", "--no-link", &recipe("flask_app.toml")]);
    let app = app.trim().to_owned();
    assert!(app.starts_with("/store/") && app.ends_with("-flask_app-1.0"), "{app}");
    eprintln!("showcase built in {:.0}s", phase.elapsed().as_secs_f64());

    // 2. The interpreter test passes, and is cached the second time.
    let first = root.drv().args(["test", &recipe("compiler_version_test.toml")]).output().unwrap();
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{err}");
    assert!(err.contains(": passed") || err.contains(": cached"), "{err}");
    let report_path = String::from_utf8_lossy(&first.stdout).trim().to_owned();
    let report = std::fs::read_to_string(root.path.join(report_path.trim_start_matches('/')).join("report.txt")).unwrap();
    assert_eq!(report.matches("PASSED").count(), 3, "{report}");
    let again = root.drv().args(["test", &recipe("compiler_version_test.toml")]).output().unwrap();
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success() && err.contains(": cached") && !err.contains("building"), "{err}");

    // 3. The app serves a page naming a /store python 3.11.2, run in a
    //    root that holds only its closure.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = root
        .drv()
        .args(["run", "--isolated", &recipe("flask_app.toml"), "--", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut json = None;
    while Instant::now() < deadline {
        if let Some(r) = http_get(port, "/interpreter.json") {
            if r.starts_with("HTTP/1.") && r.contains("200") {
                json = Some(r);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let page = http_get(port, "/");
    let _ = server.kill();
    let _ = server.wait();
    let json = json.expect("the app did not answer");
    let body = &json[json.find("\r\n\r\n").unwrap() + 4..];
    let data: serde_json::Value = serde_json::from_str(body).unwrap();
    let serving = &data["serving"];
    assert_eq!(serving["version"], "3.11.2", "{data}");
    assert!(serving["path"].as_str().unwrap().starts_with("/store/"), "{data}");
    let page = page.unwrap();
    assert!(page.contains("3.11.2") && page.contains("/store/"), "{page}");

    // 4. The closure is complete: every ELF file's loader and libraries
    //    are in it, the C library included; the interpreter's modules
    //    import with nothing of the host but /dev, /proc and the resolver
    //    and certificate files; its pip reaches the index over HTTPS.
    check_elf_closure(&root, &app, 50);
    let imports = "ssl, _hashlib, sqlite3, readline, curses, _uuid, dbm.gnu, zlib, bz2, lzma, ctypes, decimal";
    let probe = format!(
        "import sys, {imports}; assert sys.executable.startswith('/store/'), sys.executable; \
         print(ssl.OPENSSL_VERSION, sqlite3.sqlite_version, readline._READLINE_LIBRARY_VERSION)"
    );
    let out = root.ok(&["run", "--isolated", &recipe("cpython.toml"), "--", "-c", &probe]);
    assert!(out.contains("OpenSSL 3."), "{out}");
    // Daemon threads still running at exit end in pthread_exit, for which
    // glibc loads libgcc_s itself: from the store, not the host.
    let daemons = "import threading, time\n\
        def spin():\n    while True: time.sleep(0.0001)\n\
        for _ in range(4): threading.Thread(target=spin, daemon=True).start()\n\
        time.sleep(0.05)\nprint('exiting')\n";
    let out = root.drv().args(["run", "--isolated", &recipe("cpython.toml"), "--", "-c", daemons]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Without the host's PIP_CERT: the interpreter's own pip.conf trusts
    // the host's certificate store.
    let download = root
        .drv()
        .args(["run", "--isolated", &recipe("cpython.toml"), "--"])
        .args(["-m", "pip", "download", "--no-deps", "--no-cache-dir", "--only-binary=:all:", "-d", "/tmp/wheels", "six==1.16.0"])
        .env_remove("PIP_CERT")
        .env_remove("PIP_FIND_LINKS")
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("SSL_CERT_FILE")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&download.stdout);
    assert!(download.status.success() && said.contains("Saved") && said.contains("six-1.16.0-py2.py3-none-any.whl"), "{said}\n{}", String::from_utf8_lossy(&download.stderr));

    // A C++ program: the C++ standard library is in its closure too, and
    //    it throws and catches (libgcc_s's unwinder) with nothing of the host.
    let cxx = root.ok(&["build", "--no-link", &recipe("hello_cxx.toml")]);
    let cxx = cxx.lines().find(|l| l.ends_with("-hello_cxx-1.0")).unwrap_or_else(|| panic!("{cxx}")).to_owned();
    check_elf_closure(&root, &cxx, 3);
    assert!(root.ok(&["path-info", "-r", &cxx]).contains("-libstdc++-"), "no C++ library in the closure of {cxx}");
    let said = root.ok(&["run", "--isolated", &recipe("hello_cxx.toml")]);
    assert_eq!(said, "hello from C++ (caught)\n");

    // 5. Building the whole closure again gives bit-identical outputs.
    let phase = Instant::now();
    root.ok(&["build", "--check", "--no-link", &recipe("flask_app.toml")]);
    eprintln!("--check of the closure in {:.0}s", phase.elapsed().as_secs_f64());

    // 6. Substituting the closure from a loopback `drv cache serve` into an
    //    empty root: nothing is built, the NAR hashes are the build's.
    {
        let keys = tempfile::tempdir().unwrap();
        let (sk, pk) = (keys.path().join("sk"), keys.path().join("pk"));
        root.ok(&["key", "generate", "--name", "showcase-1", "--secret-file", sk.to_str().unwrap(), "--public-file", pk.to_str().unwrap()]);
        let mut serve = root
            .drv()
            .args(["cache", "serve", "--listen", "127.0.0.1:0", "--key", sk.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(serve.stdout.take().unwrap()), &mut line).unwrap();
        let url = line.trim().rsplit(' ').next().unwrap().to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "{line}");
        let empty = Root::new("DRV_SHOWCASE_ROOT3");
        let out = empty
            .drv()
            .args(["build", "--no-link", "--substituters", &url, "--trusted-public-key"])
            .arg(std::fs::read_to_string(&pk).unwrap().trim())
            .arg(recipe("flask_app.toml"))
            .output()
            .unwrap();
        let _ = serve.kill();
        let _ = serve.wait();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), app);
        assert!(!err.contains("building cpython"), "built instead of substituting:\n{err}");
        assert_eq!(empty.closure_hashes(&app), root.closure_hashes(&app));
    }

    // 6b. The same closure pushed to an S3 bucket (SeaweedFS on loopback)
    //     and substituted from it into another empty root.
    if let Some(weed) = common::s3::weed() {
        let fs = common::s3::SeaweedFs::start(&weed, 0, "000");
        fs.create_bucket("showcase");
        let keys = tempfile::tempdir().unwrap();
        let (sk, pk) = (keys.path().join("sk"), keys.path().join("pk"));
        root.ok(&["key", "generate", "--name", "showcase-s3-1", "--secret-file", sk.to_str().unwrap(), "--public-file", pk.to_str().unwrap()]);
        let url = fs.url("showcase/cache", "multipart-upload=true&multipart-threshold=16777216&multipart-chunk-size=8388608");
        let phase = Instant::now();
        let out = root.drv().envs(fs.env()).args(["cache", "push", "--to", &url, "--key", sk.to_str().unwrap(), &app]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        eprintln!("pushed the app's closure to S3 in {:.1}s", phase.elapsed().as_secs_f64());
        let empty = Root::new("DRV_SHOWCASE_ROOT4");
        let phase = Instant::now();
        let out = empty
            .drv()
            .envs(fs.env())
            .args(["build", "--no-link", "--substituters", &url, "--trusted-public-key"])
            .arg(std::fs::read_to_string(&pk).unwrap().trim())
            .arg(recipe("flask_app.toml"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        eprintln!("substituted it from S3 in {:.1}s", phase.elapsed().as_secs_f64());
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), app);
        assert!(!err.contains("building cpython"), "built instead of substituting:\n{err}");
        assert_eq!(empty.closure_hashes(&app), root.closure_hashes(&app));
    }

    // 7. Another root and another core count give the same NAR hashes.
    if std::env::var_os("DRV_SHOWCASE_QUICK").is_none() {
        let other = Root::new("DRV_SHOWCASE_ROOT2");
        let app2 = other.ok(&["build", "--cores", "1", "--no-link", &recipe("flask_app.toml")]);
        assert_eq!(app2.trim(), app);
        let (a, b) = (root.closure_hashes(&app), other.closure_hashes(&app));
        assert_eq!(a, b);
        assert!(a.keys().any(|p| p.ends_with("-cpython-3.11.2")) && a.keys().any(|p| p.ends_with("-flask-3.1.3")), "{a:?}");
    }
}

/// Every ELF file in the closure of `app` (walked in `root`'s store, by
/// `object` through drv_debian's reader) has its `PT_INTERP` in the
/// closure and finds each `DT_NEEDED` library through its own `RUNPATH`
/// in the closure, as the loader would with no default directory to fall
/// back on. The C library's own files (the path the loaders are in) find
/// each other in their directory, as the loader does by soname, and
/// `libc.so.6`'s own `PT_INTERP` (used only when it runs as a program) is
/// not checked.
fn check_elf_closure(root: &Root, app: &str, at_least: usize) {
    let closure: Vec<String> = root.ok(&["path-info", "-r", app]).lines().map(|l| l.trim().to_owned()).collect();
    let libc = closure.iter().find(|p| p.contains("-glibc-")).unwrap_or_else(|| panic!("no C library in the closure: {closure:?}"));
    let in_closure = |p: &str| closure.iter().any(|c| p == c || p.starts_with(&format!("{c}/")));
    let real = |p: &str| root.path.join(p.trim_start_matches('/'));
    let mut elves = 0;
    let mut stack: Vec<PathBuf> = closure.iter().map(|p| real(p)).collect();
    while let Some(file) = stack.pop() {
        let meta = std::fs::symlink_metadata(&file).unwrap();
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&file).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if !meta.is_file() {
            continue;
        }
        let bytes = std::fs::read(&file).unwrap();
        let Some(elf) = drv_debian::rootfs::parse_elf(&bytes).unwrap_or_else(|e| panic!("{}: {e}", file.display())) else { continue };
        elves += 1;
        let logical = format!("/{}", file.strip_prefix(&root.path).unwrap().display());
        let dir = logical.rsplit_once('/').unwrap().0.to_owned();
        let in_libc = logical.starts_with(&format!("{libc}/"));
        // libc.so.6 names the standard loader for when it is run as a
        // program (it prints its version); loaded as a library it is not.
        if let Some(interp) = elf.interpreter.as_ref().filter(|_| !in_libc) {
            assert!(interp.starts_with(&format!("{libc}/")) && real(interp).is_file(), "{logical}: loader {interp} is not the closure's C library");
        }
        assert!(elf.rpath.is_empty() || !elf.runpath.is_empty(), "{logical}: DT_RPATH without DT_RUNPATH: {:?}", elf.rpath);
        let search: Vec<String> = elf
            .runpath
            .iter()
            .flat_map(|r| r.split(':'))
            .map(|d| d.replace("$ORIGIN", &dir))
            .chain(in_libc.then(|| dir.clone()))
            .collect();
        for d in &search {
            assert!(in_closure(d), "{logical}: RUNPATH entry {d} is outside the closure");
        }
        for needed in &elf.needed {
            assert!(
                search.iter().any(|d| real(&format!("{d}/{needed}")).exists()),
                "{logical} needs {needed}, found in none of {search:?}"
            );
        }
    }
    assert!(elves >= at_least, "only {elves} ELF files in the closure of {app}");
    eprintln!("{elves} ELF files in the closure: loaders and libraries all inside it");
}
