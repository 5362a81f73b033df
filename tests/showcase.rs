//! The showcase, end to end: CPython from source, pytest and flask from
//! pinned wheels, the interpreter test and the flask app, built from
//! nothing in a temporary root. It downloads (through the machine's apt and
//! pip configuration) and compiles for several minutes, so it is ignored by
//! the fast suite; `.ci/run` runs it with `--ignored`.
//!
//! `DRV_SHOWCASE_ROOT=DIR` keeps (and reuses) the store; `DRV_SHOWCASE_QUICK=1`
//! skips the second build in another root.

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

    // 3. The app serves a page naming a /store python 3.11.2.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = root
        .drv()
        .args(["run", &recipe("flask_app.toml"), "--", "--port", &port.to_string()])
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

    // 4. The interpreter and its extension modules link only store paths
    //    and the C library.
    let ldd = root.ok(&[
        "shell",
        &recipe("cpython.toml"),
        "--command",
        "py=$(command -v python3); ldd \"$py\" $(dirname \"$py\")/../lib/python3.11/lib-dynload/*.so",
    ]);
    for line in ldd.lines().filter(|l| l.contains("=>")) {
        let target = line.split("=>").nth(1).unwrap().trim();
        let lib = line.split("=>").next().unwrap().trim();
        let libc = ["libc.so", "libm.so", "libpthread.so", "libdl.so", "librt.so", "libutil.so", "ld-linux", "linux-vdso"];
        assert!(
            target.starts_with("/store/") || libc.iter().any(|c| lib.starts_with(c)),
            "a host library is linked: {line}"
        );
    }
    assert!(ldd.contains("/store/") && ldd.contains("libz.so"), "{ldd}");

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
