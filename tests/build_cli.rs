//! `drv build`, run as a user runs it: tiny recipes with local sources, a
//! loopback HTTP server for downloads, temporary roots, the real sandbox.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{FileServer, TestStore};

const TOOLS: &str = "[toolchain]\ndebian = [\"dash\", \"coreutils\"]\n";

/// Write `name.toml` (and any extra files) into a fresh recipe folder.
fn recipe(s: &TestStore, name: &str, text: &str) -> PathBuf {
    let dir = s.scratch("recipes");
    common::write_lock(&dir);
    let p = dir.join(format!("{name}.toml"));
    fs::write(&p, text).unwrap();
    p
}

fn build(s: &TestStore, args: &[&str]) -> std::process::Output {
    s.cmd().current_dir(s.dir.path()).arg("build").args(args).output().unwrap()
}

/// The progress lines about the recipes' own derivations: the toolchain's
/// `.deb` downloads and its assembly left out.
fn recipe_lines(err: &str) -> Vec<&str> {
    err.lines().filter(|l| !l.ends_with(".deb") && !l.contains(".deb in ") && !l.contains("-toolchain")).collect()
}

fn ok(out: &std::process::Output) -> (String, String) {
    let (o, e) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "drv build failed:\n{e}");
    (o, e)
}

/// The physical location of a `/store/...` path printed by drv.
fn real(s: &TestStore, logical: &str) -> PathBuf {
    s.root().join(logical.trim().trim_start_matches('/'))
}

fn chain(s: &TestStore) -> PathBuf {
    fs::create_dir_all(s.scratch("recipes")).unwrap();
    fs::write(s.scratch("recipes/a.txt"), "a\n").unwrap();
    recipe(s, "a", &format!("name = \"a\"\nversion = \"1\"\n[[source]]\npath = \"a.txt\"\n{TOOLS}[build]\nscript = 'mkdir $out; cat $src > $out/a'\n"));
    recipe(s, "b", &format!("name = \"b\"\nversion = \"1\"\n[dependencies]\nbuild = [\"a.toml\"]\n{TOOLS}[build]\nscript = 'mkdir $out; cat $a/a > $out/b; echo b >> $out/b'\n"));
    recipe(s, "c", &format!("name = \"c\"\nversion = \"1\"\n[dependencies]\nrun = [\"b.toml\"]\n{TOOLS}[build]\nscript = 'mkdir $out; cat $b/b > $out/c; echo c >> $out/c; echo $b > $out/uses'\n"))
}

#[test]
fn a_chain_builds_in_order_and_a_second_build_is_a_no_op() {
    let s = TestStore::new();
    let c = chain(&s);
    let (out, err) = ok(&build(&s, &[c.to_str().unwrap()]));
    let order: Vec<&str> = recipe_lines(&err).into_iter().filter(|l| l.starts_with("building ")).collect();
    assert_eq!(order, ["building a-1", "building b-1", "building c-1"], "{err}");
    let out_path = out.trim();
    assert_eq!(fs::read_to_string(real(&s, out_path).join("c")).unwrap(), "a\nb\nc\n");
    // result link, pointing at the output
    let link = s.dir.path().join("result");
    assert_eq!(fs::read_link(&link).unwrap(), Path::new(out_path));
    // c refers to b (its output names it), so b is in c's closure
    let closure = s.ok(&["path-info", "-r", out_path]);
    assert!(closure.lines().any(|l| l.ends_with("-b-1")), "{closure}");
    // files are canonical
    let m = fs::metadata(real(&s, out_path).join("c")).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!((m.permissions().mode() & 0o777, m.mtime()), (0o444, 1));

    // again: nothing is built, same output, and no temporary-roots file
    // is left behind (the check ran with collections held off)
    let temproots = s.root().join("var/drv/temproots");
    let files = || fs::read_dir(&temproots).map(|d| d.count()).unwrap_or(0);
    let before = files();
    let (again, err) = ok(&build(&s, &[c.to_str().unwrap()]));
    assert_eq!(again, out);
    assert!(!err.contains("building"), "{err}");
    assert_eq!(files(), before);
    // the log is kept and readable
    let log = s.ok(&["log", out_path]);
    assert!(log.is_empty() || !log.contains("error"), "{log}");
    s.ok(&["store", "verify", "--check-contents"]);
}

#[test]
fn two_builds_run_at_once_with_j2() {
    let s = TestStore::new();
    let slow = |n: &str| format!("name = \"{n}\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'sleep 1; echo {n} > $out'\n");
    recipe(&s, "x", &slow("x"));
    recipe(&s, "y", &slow("y"));
    let top = recipe(&s, "top", &format!("name = \"top\"\nversion = \"1\"\n[dependencies]\nbuild = [\"x.toml\", \"y.toml\"]\n{TOOLS}[build]\nscript = 'cat $x $y > $out'\n"));
    let (_, err) = ok(&build(&s, &["-j2", "--no-link", top.to_str().unwrap()]));
    // both started before either finished
    let lines = recipe_lines(&err);
    let first_done = lines.iter().position(|l| l.starts_with("built ")).unwrap();
    let started = lines[..first_done].iter().filter(|l| l.starts_with("building ")).count();
    assert_eq!(started, 2, "{err}");

    let s1 = TestStore::new();
    recipe(&s1, "x", &slow("x"));
    recipe(&s1, "y", &slow("y"));
    let top = recipe(&s1, "top", &format!("name = \"top\"\nversion = \"1\"\n[dependencies]\nbuild = [\"x.toml\", \"y.toml\"]\n{TOOLS}[build]\nscript = 'cat $x $y > $out'\n"));
    let (_, err) = ok(&build(&s1, &["-j1", "--no-link", top.to_str().unwrap()]));
    let lines = recipe_lines(&err);
    let first_done = lines.iter().position(|l| l.starts_with("built ")).unwrap();
    assert_eq!(lines[..first_done].iter().filter(|l| l.starts_with("building ")).count(), 1, "{err}");
}

#[test]
fn downloads_are_verified_and_a_wrong_hash_registers_nothing() {
    let s = TestStore::new();
    let server = FileServer::start(b"payload bytes\n");
    let url = server.url("/files/payload.txt");
    let good = "sha256-GsMP1ncWjf+o5ppMgyVryVH9nVCrbYd09g0nn4TuZAY=";
    let r = recipe(&s, "dl", &format!(
        "name = \"dl\"\nversion = \"1\"\n[[source]]\nurl = \"{url}\"\nsha256 = \"{good}\"\n{TOOLS}[build]\nscript = 'cp $src $out'\n"
    ));
    let actual = s.ok(&["prefetch", &url]);
    assert_eq!(actual.trim(), good, "the fixture hash");
    // prefetch put it in the store already; a fresh store downloads it
    let s2 = TestStore::new();
    let r2 = s2.scratch("dl.toml");
    fs::copy(&r, &r2).unwrap();
    common::write_lock(s2.dir.path());
    let (out, _) = ok(&build(&s2, &["--no-link", r2.to_str().unwrap()]));
    assert_eq!(fs::read(real(&s2, &out)).unwrap(), b"payload bytes\n");

    let bad = format!("sha256:{}", "0".repeat(64));
    let s3 = TestStore::new();
    let r3 = recipe(&s3, "dl", &format!(
        "name = \"dl\"\nversion = \"1\"\n[[source]]\nurl = \"{url}\"\nsha256 = \"{bad}\"\n{TOOLS}[build]\nscript = 'cp $src $out'\n"
    ));
    let out = build(&s3, &["--no-link", r3.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hash mismatch") && err.contains(good), "{err}");
    // only the evaluation's .drv files and the toolchain are valid: no download
    let valid = s3.ok(&["path-info", "-r", s3.ok(&["eval", r3.to_str().unwrap()]).trim()]);
    assert!(!valid.lines().any(|l| l.ends_with("-payload.txt")), "{valid}");
    let leftovers: Vec<String> = fs::read_dir(s3.root().join("store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp") || n.ends_with("payload.txt"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn the_sandbox_hides_the_host_and_the_network() {
    let s = TestStore::new();
    let secret = tempfile::NamedTempFile::new_in("/tmp").unwrap();
    fs::write(secret.path(), "host secret").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    fs::create_dir_all(s.scratch("recipes")).unwrap();
    fs::write(s.scratch("recipes/input.txt"), "declared\n").unwrap();
    let r = recipe(&s, "probe", &format!(
        r#"name = "probe"
version = "1"
[[source]]
path = "input.txt"
[toolchain]
debian = ["dash", "coreutils", "bash"]
[build]
script = '''
mkdir $out
if cat {secret} 2>/dev/null; then echo visible; else echo hidden; fi > $out/secret
if bash -c 'echo x > /dev/tcp/127.0.0.1/{port}' 2>/dev/null; then echo open; else echo closed; fi > $out/network
if echo x > $src 2>/dev/null; then echo writable; else echo read-only; fi > $out/input
ls /store > $out/store-listing
cat $src > $out/read
hostname > $out/hostname 2>/dev/null || cat /proc/sys/kernel/hostname > $out/hostname
ls /usr/local 2>/dev/null | wc -l > $out/usr-local
'''
"#,
        secret = secret.path().display()
    ));
    let (out, _) = ok(&build(&s, &["--no-link", r.to_str().unwrap()]));
    let o = real(&s, &out);
    let read = |f: &str| fs::read_to_string(o.join(f)).unwrap().trim().to_owned();
    assert_eq!(read("secret"), "hidden");
    assert_eq!(read("network"), "closed");
    assert!(listener.accept().is_err(), "the builder reached the host's listener");
    assert_eq!(read("input"), "read-only");
    assert_eq!(read("read"), "declared");
    assert_eq!(read("hostname"), "localhost");
    assert_eq!(read("usr-local"), "0");
    // only the inputs' closure and the output itself
    let listing = read("store-listing");
    let names: Vec<&str> = listing.lines().map(|l| l.split_once('-').unwrap().1).collect();
    assert!(names.iter().any(|n| n.ends_with("-toolchain")), "{listing}");
    assert!(names.contains(&"input.txt") && names.contains(&"probe-1"), "{listing}");
    assert_eq!(names.len(), 3, "{listing}");
}

#[test]
fn a_build_that_writes_into_the_store_fails_and_nothing_reaches_it() {
    let s = TestStore::new();
    let r = recipe(&s, "intruder", &format!("name = \"intruder\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'echo x > /store/intruder; echo ok > $out'\n"));
    let out = build(&s, &["--no-link", r.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("intruder"), "{err}");
    assert!(!s.root().join("store/intruder").exists());
    let names: Vec<String> = fs::read_dir(s.root().join("store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("-intruder-1") || n.starts_with(".tmp"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn a_failed_build_shows_the_log_tail_and_registers_nothing() {
    let s = TestStore::new();
    let r = recipe(&s, "bad", &format!("name = \"bad\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'for i in $(seq 1 40); do echo line $i; done; mkdir $out; exit 3'\n"));
    let out = build(&s, &["--no-link", "--keep-failed", r.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 40") && err.contains("line 16") && !err.contains("line 15\n"), "{err}");
    assert!(err.contains("exit status: 3") && err.contains("full log:"), "{err}");
    assert!(err.contains("build directory kept at"), "{err}");
    let drv = s.ok(&["eval", r.to_str().unwrap()]);
    let outputs: serde_json::Value = serde_json::from_str(&s.ok(&["show-derivation", drv.trim()])).unwrap();
    let path = outputs[drv.trim()]["outputs"]["out"]["path"].as_str().unwrap().to_owned();
    assert!(!real(&s, &path).exists());
    assert!(s.cmd().args(["path-info", &path]).output().unwrap().status.code() != Some(0));
    // the log of the failed build is readable
    let log = s.ok(&["log", drv.trim()]);
    assert!(log.contains("line 1\n") && log.contains("line 40"), "{log}");
}

#[test]
fn sigkill_during_a_build_leaves_a_clean_store_and_the_next_run_rebuilds() {
    let s = TestStore::new();
    let r = recipe(&s, "long", &format!("name = \"long\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'mkdir $out; echo started; echo partial > $out/half; sleep 30; echo done > $out/full'\n"));
    let mut child = s
        .cmd()
        .args(["build", "-L", "--no-link", r.to_str().unwrap()])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        if err.read_line(&mut line).unwrap() == 0 || line.contains("started") {
            break;
        }
    }
    assert!(line.contains("started"), "the build did not start: {line}");
    child.kill().unwrap();
    child.wait().unwrap();
    let mut rest = String::new();
    let _ = err.read_to_string(&mut rest);
    // no builder survives its drv
    std::thread::sleep(Duration::from_millis(300));
    let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&ps.stdout).lines().any(|l| l.contains("sleep 30") && l.contains("partial")));

    s.ok(&["store", "verify", "--check-contents"]);
    let r2 = fs::read_to_string(&r).unwrap().replace("sleep 30; ", "");
    fs::write(&r, r2).unwrap();
    let (out, _) = ok(&build(&s, &["--no-link", r.to_str().unwrap()]));
    assert!(real(&s, &out).join("full").exists());
    let leftovers: Vec<String> = fs::read_dir(s.root().join("store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn check_passes_when_deterministic_and_names_the_differing_file_otherwise() {
    let s = TestStore::new();
    let r = recipe(&s, "det", &format!("name = \"det\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'mkdir $out; echo same > $out/same'\n"));
    ok(&build(&s, &["--no-link", r.to_str().unwrap()]));
    let (_, err) = ok(&build(&s, &["--no-link", "--check", r.to_str().unwrap()]));
    assert!(err.contains("building det-1"), "--check rebuilt nothing: {err}");

    let t = recipe(&s, "clock", &format!("name = \"clock\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'mkdir $out; echo same > $out/same; date +%s%N > $out/time'\n"));
    ok(&build(&s, &["--no-link", t.to_str().unwrap()]));
    let out = build(&s, &["--no-link", "--check", t.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not deterministic") && err.contains("time: sizes") && err.contains("first difference at byte"), "{err}");
    assert!(!err.contains("same:"), "{err}");
    assert!(err.contains(".check"), "{err}");
}

#[test]
fn two_processes_building_the_same_derivation_build_it_once() {
    let s = TestStore::new();
    let r = recipe(&s, "shared", &format!("name = \"shared\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'sleep 2; echo once > $out'\n"));
    // evaluate first so both processes race for the build, not the .drv
    s.ok(&["eval", r.to_str().unwrap()]);
    let spawn = || {
        s.cmd()
            .args(["build", "--no-link", r.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success());
    assert_eq!(a.stdout, b.stdout);
    let builds = [&a, &b].iter().filter(|o| String::from_utf8_lossy(&o.stderr).contains("building shared-1")).count();
    assert_eq!(builds, 1, "{}\n{}", String::from_utf8_lossy(&a.stderr), String::from_utf8_lossy(&b.stderr));
}

/// The evaluation cache never hides a change: editing a local source or a
/// recipe is seen by the next build.
#[test]
fn edits_are_seen_through_the_evaluation_cache() {
    let s = TestStore::new();
    let c = chain(&s);
    let (first, _) = ok(&build(&s, &["--no-link", c.to_str().unwrap()]));
    fs::write(s.scratch("recipes/a.txt"), "A\n").unwrap();
    let (second, err) = ok(&build(&s, &["--no-link", c.to_str().unwrap()]));
    assert_ne!(first, second);
    assert!(err.contains("building a-1"), "{err}");
    assert_eq!(fs::read_to_string(real(&s, &second).join("c")).unwrap(), "A\nb\nc\n");
    let b = s.scratch("recipes/b.toml");
    let text = fs::read_to_string(&b).unwrap().replace("echo b >>", "echo B >>");
    fs::write(&b, text).unwrap();
    let (third, err) = ok(&build(&s, &["--no-link", c.to_str().unwrap()]));
    assert_ne!(third, second);
    assert!(err.contains("building b-1") && !err.contains("building a-1"), "{err}");
    // and the same recipes again: nothing to do, same output
    let (fourth, err) = ok(&build(&s, &["--no-link", c.to_str().unwrap()]));
    assert_eq!(fourth, third);
    assert!(!err.contains("building"), "{err}");
    // the lock file is an input too: another pinned dash is another
    // toolchain (here one whose hash no file has)
    let lock = s.scratch("recipes/drv.lock");
    let pinned = fs::read_to_string(&lock).unwrap();
    let dash = pinned.find("name = \"dash\"").unwrap();
    let sha = dash + pinned[dash..].find("sha256 = \"").unwrap() + "sha256 = \"".len();
    let mut edited = pinned.clone();
    edited.replace_range(sha..sha + 64, &"0".repeat(64));
    fs::write(&lock, edited).unwrap();
    let out = build(&s, &["--no-link", c.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("other bytes for dash"));
    fs::write(&lock, pinned).unwrap();
    let (fifth, err) = ok(&build(&s, &["--no-link", c.to_str().unwrap()]));
    assert_eq!(fifth, third);
    assert!(!err.contains("building"), "{err}");
}

/// With a binary cache holding the outputs, `drv build` substitutes them
/// (verified, with their references) instead of building; a cache without
/// them (or failing) makes it build.
#[test]
fn build_substitutes_from_a_binary_cache_before_building() {
    let s = TestStore::new();
    let c = chain(&s);
    let (out, _) = ok(&build(&s, &["--no-link", c.to_str().unwrap()]));
    let key = s.scratch("key.sec");
    let public = s.scratch("key.pub");
    s.ok(&["key", "generate", "--name", "test-1", "--secret-file", key.to_str().unwrap(), "--public-file", public.to_str().unwrap()]);
    let cache = s.scratch("cache");
    let url = format!("file://{}", cache.display());
    s.ok(&["cache", "push", "--to", &url, "--key", key.to_str().unwrap(), out.trim()]);
    let pk = fs::read_to_string(&public).unwrap();

    // another machine: same recipes, empty store
    let s2 = TestStore::new();
    fs::create_dir_all(s2.scratch("recipes")).unwrap();
    for f in ["a.txt", "a.toml", "b.toml", "c.toml", "drv.lock"] {
        fs::copy(s.scratch("recipes").join(f), s2.scratch("recipes").join(f)).unwrap();
    }
    let c2 = s2.scratch("recipes/c.toml");
    let (out2, err) = ok(&build(&s2, &["--no-link", "--substituters", &url, "--trusted-public-key", pk.trim(), c2.to_str().unwrap()]));
    assert_eq!(out2, out);
    assert!(!err.contains("building c-1"), "built although the cache had it:\n{err}");
    let hashes = |t: &TestStore| t.ok(&["path-info", "-r", "--json", out.trim()]);
    let (a, b): (serde_json::Value, serde_json::Value) = (serde_json::from_str(&hashes(&s)).unwrap(), serde_json::from_str(&hashes(&s2)).unwrap());
    let nar = |v: &serde_json::Value| v.as_array().unwrap().iter().map(|i| (i["path"].to_string(), i["narHash"].to_string())).collect::<std::collections::BTreeMap<_, _>>();
    assert_eq!(nar(&a), nar(&b));
    s2.ok(&["store", "verify", "--check-contents"]);

    // a key the cache did not sign with: refused, so built instead
    let s3 = TestStore::new();
    fs::create_dir_all(s3.scratch("recipes")).unwrap();
    for f in ["a.txt", "a.toml", "b.toml", "c.toml", "drv.lock"] {
        fs::copy(s.scratch("recipes").join(f), s3.scratch("recipes").join(f)).unwrap();
    }
    let other = "other-1:X1hEAglN/no8TEFzFpLRfotDo9qPEUvS9soEINtWHXU=";
    let (out3, err) = ok(&build(&s3, &["--no-link", "--substituters", &url, "--trusted-public-key", other, s3.scratch("recipes/c.toml").to_str().unwrap()]));
    assert_eq!(out3, out);
    assert!(err.contains("building c-1"), "{err}");
}

/// `drv run` starts the recipe's `main` with arguments, and `drv shell`
/// puts the closure on PATH, both against a store under `--root` (shown at
/// /store in a mount namespace).
#[test]
fn run_and_shell_use_a_store_under_root() {
    let s = TestStore::new();
    let r = recipe(&s, "hello", &format!(
        "name = \"hello\"\nversion = \"1\"\nmain = \"bin/hello\"\n{TOOLS}[build]\nscript = '''\nmkdir -p $out/bin\nprintf '#!/bin/sh\\necho \"hello $*\"\\n' > $out/bin/hello\nchmod +x $out/bin/hello\n'''\n"
    ));
    let out = s.cmd().args(["run", r.to_str().unwrap(), "--", "a", "b"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello a b\n");
    let out = s.cmd().args(["shell", r.to_str().unwrap(), "--command", "hello from-shell; exit 7"]).output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from-shell\n");
    // a recipe without `main` cannot be run
    let plain = recipe(&s, "plain", &format!("name = \"plain\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'echo > $out'\n"));
    let err = s.fails(&["run", plain.to_str().unwrap()]);
    assert!(err.contains("no `main`"), "{err}");
}

/// `--keep-going` builds what does not depend on a failure; without it the
/// first failure stops what has not started.
#[test]
fn keep_going_builds_the_independent_rest() {
    let s = TestStore::new();
    recipe(&s, "bad", &format!("name = \"bad\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'exit 1'\n"));
    recipe(&s, "good", &format!("name = \"good\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'sleep 1; echo ok > $out'\n"));
    let top = recipe(&s, "top", &format!("name = \"top\"\nversion = \"1\"\n[dependencies]\nbuild = [\"bad.toml\", \"good.toml\"]\n{TOOLS}[build]\nscript = 'echo > $out'\n"));
    let out = build(&s, &["-j1", "--keep-going", "--no-link", top.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("built good-1") && err.contains("dependency") && !err.contains("building top-1"), "{err}");

    // the same graph in a fresh store without --keep-going: once bad has
    // failed, nothing starts (good may have been built before it: the
    // order among ready derivations follows their hashes)
    let s2 = TestStore::new();
    for f in ["bad", "good", "top"] {
        recipe(&s2, f, &fs::read_to_string(s.scratch("recipes").join(format!("{f}.toml"))).unwrap());
    }
    let out = build(&s2, &["-j1", "--no-link", s2.scratch("recipes/top.toml").to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let failed = err.find("failed to build bad-1").unwrap_or_else(|| panic!("{err}"));
    assert!(err.find("building good-1").is_none_or(|started| started < failed), "{err}");
    assert!(!err.contains("building top-1"), "{err}");
}

#[test]
fn builds_see_all_cores_unless_told_otherwise() {
    let text = format!("name = \"cores\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'echo $NIX_BUILD_CORES > $out'\n");
    let cores_seen = |args: &[&str]| {
        let s = TestStore::new();
        let r = recipe(&s, "cores", &text);
        let mut all = args.to_vec();
        all.extend(["--no-link", r.to_str().unwrap()]);
        let (out, _) = ok(&build(&s, &all));
        fs::read_to_string(real(&s, out.trim())).unwrap().trim().to_owned()
    };
    let available = std::thread::available_parallelism().unwrap().get().to_string();
    assert_eq!(cores_seen(&[]), available);
    assert_eq!(cores_seen(&["--cores", "0"]), available);
    assert_eq!(cores_seen(&["--cores", "3"]), "3");
}

/// Without the sandbox the host's tools would stand in for the pinned
/// toolchain under the same output path: refused, nothing registered.
#[test]
fn no_sandbox_is_refused_for_a_pinned_toolchain() {
    let s = TestStore::new();
    let r = recipe(&s, "host", &format!("name = \"host\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'cat /etc/os-release > $out'\n"));
    let out = build(&s, &["--no-sandbox", "--no-link", r.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pinned toolchain") && err.contains("--no-sandbox"), "{err}");
    assert_not_built(&s, &r);
}

/// The physical path of `recipe`'s output, which must not be valid.
fn assert_not_built(s: &TestStore, recipe: &Path) {
    let drv = s.ok(&["eval", recipe.to_str().unwrap()]);
    let shown: serde_json::Value = serde_json::from_str(&s.ok(&["show-derivation", drv.trim()])).unwrap();
    let path = shown[drv.trim()]["outputs"]["out"]["path"].as_str().unwrap().to_owned();
    assert!(!real(s, &path).exists(), "{path}");
    assert!(s.cmd().args(["path-info", &path]).output().unwrap().status.code() != Some(0));
}

#[test]
fn a_build_over_its_limits_fails_clearly_and_the_others_go_on() {
    let s = TestStore::new();
    let fill = recipe(&s, "fill", &format!("name = \"fill\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'head -c 4194304 /dev/zero > /tmp/big; echo ok > $out'\n"));
    let bomb = recipe(&s, "bomb", &format!("name = \"bomb\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'while :; do sleep 30 & done'\n"));
    let fine = recipe(&s, "fine", &format!("name = \"fine\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'head -c 65536 /dev/zero > /tmp/small; echo ok > $out'\n"));

    // The /tmp size from the configuration; the other build goes on (-k).
    let config = s.scratch("config.toml");
    fs::write(&config, "tmp-size = \"1M\"\n").unwrap();
    let out = s
        .cmd()
        .current_dir(s.dir.path())
        .env("DRV_CONFIG", &config)
        .args(["build", "-k", "--no-link", fill.to_str().unwrap(), fine.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("filled /tmp") && err.contains("1M") && err.contains("--tmp-size"), "{err}");
    assert!(err.contains("No space left on device") && err.contains("full log:"), "{err}");
    assert!(err.contains("1 derivation(s) failed"), "{err}");
    assert_not_built(&s, &fill);
    let fine_out = s.ok(&["build", "--no-link", fine.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(real(&s, &fine_out)).unwrap(), "ok\n");

    // The process limit from the flag, when this host can apply it.
    let out = build(&s, &["--no-link", "--max-processes", "32", bomb.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    if !err.contains("cannot be applied") {
        assert!(err.contains("limit of 32 processes") && err.contains("--max-processes"), "{err}");
    }
    assert_not_built(&s, &bomb);
    let staging: Vec<String> = fs::read_dir(s.root().join("store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(staging.is_empty(), "{staging:?}");
}

/// A toolchain without a shell cannot run the build script: the error
/// says what to add.
#[test]
fn a_toolchain_without_a_shell_says_to_add_one() {
    let s = TestStore::new();
    let r = recipe(&s, "noshell", "name = \"noshell\"\nversion = \"1\"\n[toolchain]\ndebian = [\"libc6\"]\n[build]\nscript = 'echo > $out'\n");
    let out = build(&s, &["--no-link", r.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/bin/sh") && err.contains("add a shell, `dash`"), "{err}");
    assert_not_built(&s, &r);
}

/// `-o` values that name no file are refused before anything is built,
/// as an error (exit 1), not a panic.
#[test]
fn out_links_that_name_no_file_are_an_error_not_a_panic() {
    let s = TestStore::new();
    let r = recipe(&s, "tiny", &format!("name = \"tiny\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'echo hi > $out'\n"));
    // An empty value is a usage error of the argument parser (exit 2).
    let out = build(&s, &["-o", "", r.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "-o '': {err}");
    assert!(!err.contains("panicked"), "{err}");
    for link in ["missing/..", "/", "."] {
        let out = build(&s, &["-o", link, r.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "-o {link:?}: {err}");
        assert!(err.contains("names no file") && !err.contains("panicked"), "-o {link:?}: {err}");
    }
    assert!(!s.root().join("store").exists() || fs::read_dir(s.root().join("store")).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with("-tiny-1")));
}

/// A script over 128 KiB (one `execve` argument's limit) builds: it is
/// passed as a file in the store.
#[test]
fn a_build_script_over_128_kib_builds() {
    let s = TestStore::new();
    let mut script = String::from("mkdir -p \"$out\"\n");
    for i in 1..=6000 {
        script.push_str(&format!("echo line {i} >> \"$out/f\"\n"));
    }
    assert!(script.len() > 128 * 1024);
    let r = recipe(&s, "big", &format!("name = \"big\"\nversion = \"1\"\n{TOOLS}[build]\nscript = '''\n{script}'''\n"));
    let (out, _) = ok(&build(&s, &["--no-link", r.to_str().unwrap()]));
    let f = fs::read_to_string(real(&s, &out).join("f")).unwrap();
    assert_eq!(f.lines().count(), 6000);
    assert_eq!(f.lines().last(), Some("line 6000"));
}

/// `--check` of a single-file output describes the difference as it
/// does for a file inside a directory output.
#[test]
fn check_describes_a_differing_single_file_output() {
    let s = TestStore::new();
    let r = recipe(&s, "nondet", &format!("name = \"nondet\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'date +%s%N > $out'\n"));
    ok(&build(&s, &["--no-link", r.to_str().unwrap()]));
    let out = build(&s, &["--no-link", "--check", r.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("not deterministic") && err.contains(".: sizes") && err.contains("first difference at byte"), "{err}");
    assert!(!err.contains("cannot compare"), "{err}");
}

/// The caller's umask reaches neither the build nor its output: the same
/// recipe built under umask 022 and 000 gives the same NAR hash.
#[test]
fn the_callers_umask_does_not_reach_the_build() {
    let text = format!(
        "name = \"umask\"\nversion = \"1\"\n{TOOLS}[build]\nscript = '''\necho hello > greeting.txt\nmkdir -p d/e\nls -ld . greeting.txt d d/e /build /tmp $NIX_STORE | cut -c1-10 > listing\nmkdir $out\ncp listing $out/\nls -ld $out | cut -c1-10 >> $out/listing\n'''\n"
    );
    let mut listings = Vec::new();
    for umask in ["022", "000", "077"] {
        let s = TestStore::new();
        let r = recipe(&s, "umask", &text);
        let mut c = std::process::Command::new("/bin/sh");
        c.arg("-c").arg(format!("umask {umask}; exec \"$0\" \"$@\"")).arg(env!("CARGO_BIN_EXE_drv"));
        c.arg("--root").arg(s.root()).args(["build", "--no-link", r.to_str().unwrap()]);
        c.env_remove("DRV_ROOT").envs(common::fixture_mirrors());
        let (out, _) = ok(&c.output().unwrap());
        listings.push(fs::read_to_string(real(&s, &out).join("listing")).unwrap());
    }
    assert_eq!(listings[0], listings[1], "umask 000");
    assert_eq!(listings[0], listings[2], "umask 077");
}

/// A dependent needs only the outputs of an input it names (Nix's wanted
/// outputs): a `debug` output nothing uses is not substituted, and its
/// absence is no reason to build the input again.
#[test]
fn an_output_nothing_uses_is_neither_substituted_nor_rebuilt() {
    let s = TestStore::new();
    recipe(&s, "lib", &format!("name = \"lib\"\nversion = \"1\"\noutputs = [\"out\", \"debug\"]\n{TOOLS}[build]\nscript = 'echo lib > $out; echo symbols > $debug'\n"));
    recipe(&s, "app", &format!("name = \"app\"\nversion = \"1\"\n[dependencies]\nbuild = [\"lib.toml\"]\n{TOOLS}[build]\nscript = 'cat $lib > $out'\n"));
    let (lib_outs, _) = ok(&build(&s, &["--no-link", s.scratch("recipes/lib.toml").to_str().unwrap()]));
    let lib_out = lib_outs.lines().find(|l| l.ends_with("-lib-1")).unwrap_or_else(|| panic!("{lib_outs}")).to_owned();
    let lib_debug = lib_outs.lines().find(|l| l.ends_with("-lib-1-debug")).unwrap_or_else(|| panic!("{lib_outs}")).to_owned();
    let key = s.scratch("key.sec");
    let public = s.scratch("key.pub");
    s.ok(&["key", "generate", "--name", "test-1", "--secret-file", key.to_str().unwrap(), "--public-file", public.to_str().unwrap()]);
    let cache = s.scratch("cache");
    let url = format!("file://{}", cache.display());
    // The cache gets lib's `out` and its debug output, but not app.
    s.ok(&["cache", "push", "--to", &url, "--key", key.to_str().unwrap(), &lib_out, &lib_debug]);
    let pk = fs::read_to_string(&public).unwrap();

    let s2 = TestStore::new();
    fs::create_dir_all(s2.scratch("recipes")).unwrap();
    for f in ["lib.toml", "app.toml", "drv.lock"] {
        fs::copy(s.scratch("recipes").join(f), s2.scratch("recipes").join(f)).unwrap();
    }
    let app = s2.scratch("recipes/app.toml");
    let (_, err) = ok(&build(&s2, &["--no-link", "--substituters", &url, "--trusted-public-key", pk.trim(), app.to_str().unwrap()]));
    assert!(err.contains("building app-1") && !err.contains("building lib-1"), "{err}");
    s2.ok(&["path-info", &lib_out]);
    let missing = s2.fails(&["path-info", &lib_debug]);
    assert!(!missing.is_empty());

    // A cache without the debug output: lib is still not built.
    let s3 = TestStore::new();
    fs::create_dir_all(s3.scratch("recipes")).unwrap();
    for f in ["lib.toml", "app.toml", "drv.lock"] {
        fs::copy(s.scratch("recipes").join(f), s3.scratch("recipes").join(f)).unwrap();
    }
    let only_out = s.scratch("cache2");
    let url2 = format!("file://{}", only_out.display());
    s.ok(&["cache", "push", "--to", &url2, "--key", key.to_str().unwrap(), &lib_out]);
    let app3 = s3.scratch("recipes/app.toml");
    let (_, err) = ok(&build(&s3, &["--no-link", "--substituters", &url2, "--trusted-public-key", pk.trim(), app3.to_str().unwrap()]));
    assert!(err.contains("building app-1") && !err.contains("building lib-1"), "{err}");
}

/// The build directory is the sandbox's own tmpfs: a recipe that lists a
/// directory it made (in the order the file system gives) has the same
/// output in a root on the disk and in one on a tmpfs.
#[test]
fn the_roots_file_system_does_not_reach_the_build() {
    let shm = Path::new("/dev/shm");
    let on_tmpfs = nix::sys::statfs::statfs(shm).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
    let s = TestStore::new();
    let on_disk = nix::sys::statfs::statfs(s.dir.path()).is_ok_and(|st| st.filesystem_type() != nix::sys::statfs::TMPFS_MAGIC);
    if !on_tmpfs || !on_disk {
        eprintln!("skipped: needs a temporary directory on disk and /dev/shm on tmpfs");
        return;
    }
    let text = format!(
        "name = \"listing\"\nversion = \"1\"\n{TOOLS}[build]\nscript = '''\nmkdir d\nfor f in one two three four five six seven eight nine ten; do echo $f > d/$f; done\nls -f d > $out\n'''\n"
    );
    let r = recipe(&s, "listing", &text);
    let (a, _) = ok(&build(&s, &["--no-link", r.to_str().unwrap()]));
    let listing = fs::read_to_string(real(&s, &a)).unwrap();
    let hash_a = s.ok(&["path-info", "--json", a.trim()]);

    let t = tempfile::tempdir_in(shm).unwrap();
    let root = t.path().join("root");
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_drv"));
    c.arg("--root").arg(&root).args(["build", "--no-link", r.to_str().unwrap()]);
    c.env_remove("DRV_ROOT").envs(common::fixture_mirrors());
    let (b, _) = ok(&c.output().unwrap());
    assert_eq!(a, b);
    assert_eq!(listing, fs::read_to_string(root.join(b.trim().trim_start_matches('/'))).unwrap());
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_drv"));
    c.arg("--root").arg(&root).args(["path-info", "--json", b.trim()]);
    let hash_b = String::from_utf8(c.output().unwrap().stdout).unwrap();
    let nar = |json: &str| serde_json::from_str::<serde_json::Value>(json).unwrap()[0]["narHash"].clone();
    assert_eq!(nar(&hash_a), nar(&hash_b));
}

/// The status of each derivation in `drv build --json`'s report, by name.
fn statuses(out: &std::process::Output) -> std::collections::BTreeMap<String, String> {
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    report
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let drv = r["drvPath"].as_str().unwrap();
            let name = drv.rsplit('/').next().unwrap().split_once('-').unwrap().1.trim_end_matches(".drv").to_owned();
            (name, r["status"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// `drv build --json` reports each derivation with Nix's build status:
/// built, already valid, substituted from a cache, failed, not started
/// because a dependency failed, and not deterministic under `--check`.
#[test]
fn build_results_carry_nixs_statuses() {
    let s = TestStore::new();
    recipe(&s, "bad", &format!("name = \"bad\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'exit 1'\n"));
    recipe(&s, "good", &format!("name = \"good\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'echo ok > $out'\n"));
    let top = recipe(&s, "top", &format!("name = \"top\"\nversion = \"1\"\n[dependencies]\nbuild = [\"bad.toml\", \"good.toml\"]\n{TOOLS}[build]\nscript = 'echo > $out'\n"));
    let out = build(&s, &["--json", "--keep-going", "--no-link", top.to_str().unwrap()]);
    assert!(!out.status.success());
    let got = statuses(&out);
    assert_eq!(got["bad-1"], "Failed", "{got:?}");
    assert_eq!(got["good-1"], "Built", "{got:?}");
    assert_eq!(got["top-1"], "DependencyFailed", "{got:?}");

    let good = s.scratch("recipes/good.toml");
    let again = build(&s, &["--json", "--no-link", good.to_str().unwrap()]);
    assert!(again.status.success());
    assert_eq!(statuses(&again)["good-1"], "AlreadyValid");

    let clock = recipe(&s, "clock", &format!("name = \"clock\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'date +%s%N > $out'\n"));
    ok(&build(&s, &["--no-link", clock.to_str().unwrap()]));
    let checked = build(&s, &["--json", "--check", "--no-link", clock.to_str().unwrap()]);
    assert!(!checked.status.success());
    assert_eq!(statuses(&checked)["clock-1"], "NotDeterministic");

    // Another store takes good from a cache the first one filled.
    let (path, _) = ok(&build(&s, &["--no-link", good.to_str().unwrap()]));
    let cache = s.scratch("cache");
    let url = format!("file://{}", cache.display());
    s.ok(&["cache", "push", "--to", &url, path.trim()]);
    let s2 = TestStore::new();
    let good2 = recipe(&s2, "good", &fs::read_to_string(&good).unwrap());
    let fetched = build(&s2, &["--json", "--no-link", "--substituters", &url, "--no-check-sigs", good2.to_str().unwrap()]);
    assert!(fetched.status.success(), "{}", String::from_utf8_lossy(&fetched.stderr));
    assert_eq!(statuses(&fetched)["good-1"], "Substituted");
}
