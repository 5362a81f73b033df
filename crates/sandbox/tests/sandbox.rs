//! The build sandbox, in real namespaces.
//!
//! The builders here are `/bin/sh` (dash) and this test binary itself: run
//! with `DRV_PROBE` set, its `probe_entry_point` test executes a small
//! script of checks (read, write, connect, print the environment…) and
//! exits. The toolchain is a temporary tree holding `/bin/sh` and the
//! shared libraries of dash and of this binary, copied from the host with
//! the host's `bin -> usr/bin`-style symlinks mirrored: it needs nothing
//! but `ldd`, which every glibc system has, and works unprivileged.
//! Everything lives in temporary directories; the one file created
//! outside them (under `/usr/local/include`) is removed by a guard.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::symlink;
use std::os::unix::process::ExitStatusExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use drv_sandbox::{
    BuildDirFs, Conditions, Input, Isolation, LimitHit, Limits, SandboxError, SandboxSpec, BUILD_GID, BUILD_UID,
};

const STORE: &str = "/store";
const PROBE: &str = "/store/0a1b2c3d4e5f6g7h8i9jkalbmcndpfqr-probe";
const INPUT: &str = "/store/1a1b2c3d4e5f6g7h8i9jkalbmcndpfqr-input";
const OUT: &str = "/store/2a1b2c3d4e5f6g7h8i9jkalbmcndpfqr-out";
const DEV: &str = "/store/3a1b2c3d4e5f6g7h8i9jkalbmcndpfqr-out-dev";

// ---------------------------------------------------------------------------
// The probe: this binary as a builder.

#[test]
fn probe_entry_point() {
    if let Ok(script) = std::env::var("DRV_PROBE") {
        std::process::exit(probe(&script));
    }
}

fn say(command: &str, result: impl std::fmt::Display) {
    println!("probe: {command} => {result}");
}

fn outcome<T, E: std::borrow::Borrow<std::io::Error>>(result: Result<T, E>) -> String {
    match result.map_err(|e| e.borrow().kind()) {
        Ok(_) => "ok".to_owned(),
        Err(kind) => format!("err {kind:?}"),
    }
}

/// Run `;`-separated commands, print one `probe: CMD => RESULT` line each.
fn probe(script: &str) -> i32 {
    for command in script.split(';').map(str::trim).filter(|c| !c.is_empty()) {
        let (verb, arg) = command.split_once(' ').unwrap_or((command, ""));
        match verb {
            "read" => match fs::read_to_string(arg) {
                Ok(text) => say(command, format!("ok {}", text.trim().replace('\n', "|"))),
                Err(e) => say(command, format!("err {:?}", e.kind())),
            },
            "exists" => say(command, if fs::symlink_metadata(arg).is_ok() { "yes" } else { "no" }),
            "ls" => {
                let mut names: Vec<String> = fs::read_dir(arg)
                    .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
                    .unwrap_or_default();
                names.sort();
                say(command, names.join(","));
            }
            "write" => say(command, outcome(fs::write(arg, "x"))),
            "mkdir" => say(command, outcome(fs::create_dir(arg))),
            "connect" => say(command, outcome(TcpStream::connect_timeout(&arg.parse().unwrap(), Duration::from_secs(2)))),
            "loopback" => {
                let result = TcpListener::bind("127.0.0.1:0").and_then(|listener| {
                    let addr = listener.local_addr()?;
                    TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                });
                say(command, outcome(result));
            }
            "env" => {
                for (k, v) in std::env::vars_os() {
                    say(command, format!("{}={}", k.to_string_lossy(), v.to_string_lossy()));
                }
            }
            "status" => {
                let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
                for line in status.lines() {
                    if ["Uid:", "Gid:", "CapEff:", "Umask:", "Cpus_allowed_list:"].iter().any(|p| line.starts_with(p)) {
                        say(command, line.split_whitespace().collect::<Vec<_>>().join(" "));
                    }
                }
            }
            "cwd" => say(command, std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default()),
            "pid" => say(command, std::process::id()),
            "sleep" => std::thread::sleep(Duration::from_secs(arg.parse().unwrap())),
            "spawn-sleeper" => {
                // A daemon that outlives the builder: same binary, sleeping.
                let child = Command::new("/proc/self/exe")
                    .args(["probe_entry_point", "--exact", "--nocapture", "-q", arg])
                    .env("DRV_PROBE", "sleep 120")
                    .spawn();
                say(command, outcome(child));
            }
            "fill" => {
                // `fill PATH MIB`: write MIB MiB to PATH; a failure fails
                // the build.
                let (path, mib) = arg.split_once(' ').unwrap();
                let chunk = vec![b'x'; 1 << 20];
                let result = fs::File::create(path).and_then(|mut f| {
                    (0..mib.parse::<usize>().unwrap()).try_for_each(|_| std::io::Write::write_all(&mut f, &chunk))
                });
                say(command, outcome(result.as_ref()));
                if result.is_err() {
                    return 1;
                }
            }
            "alloc" => {
                // `alloc MIB`: allocate and touch MIB MiB.
                let mut memory = vec![0u8; arg.parse::<usize>().unwrap() << 20];
                for i in (0..memory.len()).step_by(4096) {
                    memory[i] = 1;
                }
                say(command, std::hint::black_box(&memory).iter().filter(|b| **b == 1).count());
            }
            "exit" => return arg.parse().unwrap(),
            other => say(command, format!("unknown command {other}")),
        }
    }
    0
}

// ---------------------------------------------------------------------------
// Fixture: a toolchain, a physical store with one input, scratch and build
// directories, a log file.

struct Fixture {
    _tmp: Option<tempfile::TempDir>,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        for dir in ["toolchain", "store", "scratch", "build"] {
            fs::create_dir(root.join(dir)).unwrap();
        }
        make_toolchain(&root.join("toolchain"));
        let input = root.join("store").join(Path::new(INPUT).file_name().unwrap());
        fs::create_dir(&input).unwrap();
        fs::write(input.join("data"), "input data\n").unwrap();
        Fixture { _tmp: Some(tmp), root }
    }

    /// A fixture made by another process (which owns its removal).
    fn at(root: &Path) -> Self {
        Fixture { _tmp: None, root: root.to_owned() }
    }

    fn scratch(&self) -> PathBuf {
        self.root.join("scratch")
    }

    fn physical_input(&self) -> PathBuf {
        self.root.join("store").join(Path::new(INPUT).file_name().unwrap())
    }

    fn spec(&self, builder: &str) -> SandboxSpec {
        let mut spec = SandboxSpec::new(builder, STORE, self.scratch(), self.root.join("build"));
        spec.toolchain = Some(self.root.join("toolchain"));
        spec.inputs = vec![
            Input { physical: std::env::current_exe().unwrap(), logical: PROBE.into() },
            Input { physical: self.physical_input(), logical: INPUT.into() },
        ];
        spec
    }

    /// The probe running `script`; `extra` is one more (ignored) argument.
    fn probe_spec(&self, script: &str, extra: &str) -> SandboxSpec {
        let mut spec = self.spec(PROBE);
        spec.args = ["probe_entry_point", "--exact", "--nocapture", "-q", extra].map(Into::into).to_vec();
        spec.env = vec![("DRV_PROBE".into(), script.into())];
        spec
    }

    fn shell_spec(&self, script: &str) -> SandboxSpec {
        let mut spec = self.spec("/bin/sh");
        spec.args = vec!["-c".into(), script.into()];
        spec
    }

    /// Run `spec` with a fresh log file; the log's text.
    fn run(&self, spec: &SandboxSpec) -> (Result<ExitStatus, SandboxError>, String) {
        // Each build gets an empty scratch store.
        let _ = fs::remove_dir_all(self.scratch());
        fs::create_dir(self.scratch()).unwrap();
        let log_path = self.root.join("log");
        let log = fs::File::create(&log_path).unwrap();
        let result = drv_sandbox::run(spec, log.into());
        (result, fs::read_to_string(&log_path).unwrap())
    }

    /// Run a probe script that must succeed; its results by command.
    fn probe(&self, script: &str) -> BTreeMap<String, Vec<String>> {
        let (result, log) = self.run(&self.probe_spec(script, "-"));
        let status = result.unwrap_or_else(|e| panic!("{e}\nlog:\n{log}"));
        assert!(status.success(), "{status:?}\nlog:\n{log}");
        results(&log)
    }
}

fn results(log: &str) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in log.lines() {
        if let Some((_, rest)) = line.split_once("probe: ") {
            let (command, result) = rest.split_once(" => ").unwrap();
            map.entry(command.to_owned()).or_default().push(result.to_owned());
        }
    }
    map
}

fn one(results: &BTreeMap<String, Vec<String>>, command: &str) -> String {
    results.get(command).unwrap_or_else(|| panic!("no result for {command}: {results:?}"))[0].clone()
}

/// `/bin/sh` and the libraries dash and this binary load, mirrored with the
/// host's symlinks.
fn make_toolchain(tree: &Path) {
    let exe = std::env::current_exe().unwrap();
    let mut needed = vec![PathBuf::from("/bin/sh")];
    for binary in [Path::new("/bin/sh"), exe.as_path()] {
        let out = Command::new("ldd").arg(binary).output().expect("ldd");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let path = match line.split_once("=> ") {
                Some((_, rest)) => rest.split(" (").next().unwrap_or(""),
                None => line.trim().split(" (").next().unwrap_or(""),
            };
            if path.starts_with('/') {
                needed.push(PathBuf::from(path));
            }
        }
    }
    for path in needed {
        mirror(tree, &path);
    }
}

/// Copy host `path` into `tree` at the same place, recreating each symlink
/// met on the way.
fn mirror(tree: &Path, path: &Path) {
    let mut at = PathBuf::from("/");
    let components: Vec<_> = path.components().filter(|c| matches!(c, Component::Normal(_))).collect();
    for (i, component) in components.iter().enumerate() {
        at.push(component);
        let inside = tree.join(at.strip_prefix("/").unwrap());
        let meta = fs::symlink_metadata(&at).unwrap();
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&at).unwrap();
            if fs::symlink_metadata(&inside).is_err() {
                symlink(&target, &inside).unwrap();
            }
            let mut resolved = at.parent().unwrap().join(&target);
            for rest in &components[i + 1..] {
                resolved.push(rest);
            }
            return mirror(tree, &resolved);
        } else if meta.is_dir() {
            fs::create_dir_all(&inside).unwrap();
        } else if fs::symlink_metadata(&inside).is_err() {
            fs::copy(&at, &inside).unwrap();
        }
    }
}

fn unique(tag: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("drv-sandbox-{tag}-{}-{nanos}", std::process::id())
}

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline")) {
            if cmdline.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                found.push(pid);
            }
        }
    }
    found
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes a file created outside the temporary directories.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------------------
// The tests.

#[test]
fn namespaces_are_available_here() {
    drv_sandbox::check_namespaces().unwrap();
}

/// Build a file output with the toolchain's shell; it must succeed and
/// the caller must find the file.
fn build_file_output(fx: &Fixture) -> SandboxSpec {
    let mut spec = fx.shell_spec("echo built > $out");
    spec.env = vec![("out".into(), OUT.into())];
    spec.outputs = vec![OUT.into()];
    let (result, log) = fx.run(&spec);
    assert!(result.unwrap().success(), "{log}");
    assert_eq!(fs::read_to_string(spec.host_path(Path::new(OUT))).unwrap(), "built\n");
    spec
}

#[test]
fn builder_creates_its_outputs_and_the_caller_finds_them() {
    let fx = Fixture::new();
    let spec = build_file_output(&fx);
    assert_eq!(spec.host_path(Path::new(OUT)), fx.scratch().join(Path::new(OUT).file_name().unwrap()));

    // A file and a directory output (dash has no mkdir: the probe).
    let mut spec = fx.probe_spec(&format!("write {OUT}; mkdir {DEV}; write {DEV}/file"), "-");
    spec.outputs = vec![OUT.into(), DEV.into()];
    let (result, log) = fx.run(&spec);
    assert!(result.unwrap().success(), "{log}");
    assert_eq!(fs::read_to_string(spec.host_path(Path::new(OUT))).unwrap(), "x");
    assert_eq!(fs::read_to_string(spec.host_path(&Path::new(DEV).join("file"))).unwrap(), "x");
    // Only the outputs remain in the scratch store: the input mount points
    // are gone.
    let mut left: Vec<_> = fs::read_dir(fx.scratch()).unwrap().map(|e| e.unwrap().file_name()).collect();
    left.sort();
    assert_eq!(left, [Path::new(OUT).file_name().unwrap(), Path::new(DEV).file_name().unwrap()]);
}

#[test]
fn reads_a_declared_input() {
    let fx = Fixture::new();
    let r = fx.probe(&format!("read {INPUT}/data"));
    assert_eq!(one(&r, &format!("read {INPUT}/data")), "ok input data");
}

#[test]
fn host_files_outside_the_inputs_are_invisible() {
    let fx = Fixture::new();
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("secret");
    fs::write(&secret, "secret").unwrap();
    let header = Path::new("/usr/local/include").join(format!("{}.h", unique("header")));
    let _guard = fs::write(&header, "int x;").ok().map(|()| RemoveOnDrop(header.clone()));
    let physical_input = fx.physical_input().join("data");
    let script = format!(
        "read {}; read {}; read {}; exists /usr/local; exists /home; ls /; ls /dev; ls {STORE}",
        secret.display(),
        header.display(),
        physical_input.display()
    );
    let r = fx.probe(&script);
    assert_eq!(one(&r, &format!("read {}", secret.display())), "err NotFound");
    assert_eq!(one(&r, &format!("read {}", header.display())), "err NotFound");
    assert_eq!(one(&r, &format!("read {}", physical_input.display())), "err NotFound");
    assert_eq!(one(&r, "exists /usr/local"), "no");
    assert_eq!(one(&r, "exists /home"), "no");
    // The required directories plus the toolchain's entries (bin, lib,
    // lib64, usr on a merged-/usr host).
    let root = one(&r, "ls /");
    for required in ["build", "dev", "etc", "proc", "store", "tmp", "usr"] {
        assert!(root.split(',').any(|e| e == required), "{root}");
    }
    assert!(!root.split(',').any(|e| ["home", "root", "var", "work", "sys"].contains(&e)), "{root}");
    let dev = one(&r, "ls /dev");
    for entry in ["fd", "full", "null", "random", "shm", "stderr", "stdin", "stdout", "urandom", "zero"] {
        assert!(dev.split(',').any(|e| e == entry), "{dev}");
    }
    let store = one(&r, &format!("ls {STORE}"));
    assert_eq!(store.split(',').count(), 2, "only the inputs: {store}");
}

#[test]
fn inputs_and_the_root_are_read_only() {
    let fx = Fixture::new();
    let script = format!(
        "write {INPUT}/data; write {INPUT}/new; mkdir {INPUT}/dir; write /usr/new; write /new; write /etc/passwd; \
         write /build/ok; write /tmp/ok; read {INPUT}/data"
    );
    let r = fx.probe(&script);
    for denied in [
        format!("write {INPUT}/data"),
        format!("write {INPUT}/new"),
        format!("mkdir {INPUT}/dir"),
        "write /usr/new".into(),
        "write /new".into(),
        "write /etc/passwd".into(),
    ] {
        assert!(one(&r, &denied).starts_with("err"), "{denied}: {r:?}");
    }
    assert_eq!(one(&r, "write /build/ok"), "ok");
    assert_eq!(one(&r, "write /tmp/ok"), "ok");
    assert_eq!(one(&r, &format!("read {INPUT}/data")), "ok input data");
    assert_eq!(fs::read_to_string(fx.physical_input().join("data")).unwrap(), "input data\n");
    assert!(!fx.physical_input().join("new").exists());
    // /build is the sandbox's own tmpfs: nothing reaches the caller's
    // directory, whose file system is then no part of the build.
    assert!(!fx.root.join("build/ok").exists());
}

/// With `BuildDirFs::Host` (`--keep-failed`), /build is the caller's
/// directory, and what the build leaves there survives it.
#[test]
fn a_host_build_directory_keeps_what_the_build_wrote() {
    let fx = Fixture::new();
    let mut spec = fx.probe_spec("write /build/ok", "-");
    spec.conditions.build_dir_fs = BuildDirFs::Host;
    let (result, log) = fx.run(&spec);
    assert!(result.unwrap().success(), "{log}");
    assert_eq!(one(&results(&log), "write /build/ok"), "ok");
    assert_eq!(fs::read_to_string(fx.root.join("build/ok")).unwrap(), "x");
}

/// Every condition of `Conditions` reaches the builder as set: what
/// `drv build --check --vary` relies on.
#[test]
fn the_builds_conditions_are_what_the_spec_says() {
    let fx = Fixture::new();
    let mut spec = fx.probe_spec(
        "status; read /proc/sys/kernel/hostname; read /proc/sys/kernel/domainname; cwd; read /etc/passwd; read /etc/group",
        "-",
    );
    spec.conditions = Conditions {
        build_dir: "/varied/build-dir".into(),
        build_dir_fs: BuildDirFs::Tmpfs,
        uid: 2345,
        gid: 234,
        user: "someone".into(),
        hostname: "elsewhere".into(),
        domainname: "example.invalid".into(),
        umask: 0o077,
        cpus: Some(1),
    };
    let (result, log) = fx.run(&spec);
    assert!(result.unwrap().success(), "{log}");
    let r = results(&log);
    let status = &r["status"];
    assert!(status.contains(&"Uid: 2345 2345 2345 2345".to_owned()), "{status:?}");
    assert!(status.contains(&"Gid: 234 234 234 234".to_owned()), "{status:?}");
    assert!(status.contains(&"Umask: 0077".to_owned()), "{status:?}");
    assert!(status.iter().any(|l| l.starts_with("Cpus_allowed_list:") && !l.contains(',') && !l.contains('-')), "{status:?}");
    assert_eq!(one(&r, "read /proc/sys/kernel/hostname"), "ok elsewhere");
    assert_eq!(one(&r, "read /proc/sys/kernel/domainname"), "ok example.invalid");
    assert_eq!(one(&r, "cwd"), "/varied/build-dir");
    assert!(one(&r, "read /etc/passwd").contains("someone:x:2345:234:drv build user:/varied/build-dir:"), "{r:?}");
    assert!(one(&r, "read /etc/group").contains("someone:!:234:"), "{r:?}");

    let mut spec = fx.probe_spec("cwd", "-");
    spec.conditions.cpus = Some(0);
    assert!(matches!(fx.run(&spec).0, Err(SandboxError::InvalidSpec { .. })));

    // A build directory in the store or over /proc is refused.
    for bad in ["/store/x", "/proc", "/", "/build/../etc"] {
        let mut spec = fx.probe_spec("cwd", "-");
        spec.conditions.build_dir = bad.into();
        assert!(matches!(fx.run(&spec).0, Err(SandboxError::InvalidSpec { .. })), "{bad}");
    }
}

#[test]
fn undeclared_store_entries_fail_the_build() {
    let fx = Fixture::new();
    let mut spec = fx.probe_spec(&format!("write {STORE}/evil; write {OUT}"), "-");
    spec.outputs = vec![OUT.into()];
    let (result, log) = fx.run(&spec);
    match result {
        Err(SandboxError::StrayStoreEntries { names, .. }) => assert_eq!(names, ["evil"], "{log}"),
        other => panic!("expected StrayStoreEntries, got {other:?}\n{log}"),
    }
    assert!(!fx.root.join("store/evil").exists());
}

#[test]
fn network_is_loopback_only() {
    let fx = Fixture::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let r = fx.probe(&format!("connect {addr}; loopback"));
    assert!(one(&r, &format!("connect {addr}")).starts_with("err"), "{r:?}");
    assert_eq!(one(&r, "loopback"), "ok");
}

#[test]
fn network_true_reaches_a_host_listener() {
    let fx = Fixture::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut spec = fx.probe_spec(&format!("connect {addr}"), "-");
    spec.network = true;
    let (result, log) = fx.run(&spec);
    assert!(result.unwrap().success(), "{log}");
    assert_eq!(one(&results(&log), &format!("connect {addr}")), "ok", "{log}");
}

#[test]
fn identity_names_and_working_directory_are_fixed() {
    let fx = Fixture::new();
    let r = fx.probe(
        "status; read /proc/sys/kernel/hostname; read /proc/sys/kernel/domainname; cwd; read /etc/passwd; \
         read /etc/group; exists /homeless-shelter; pid",
    );
    let status = &r["status"];
    assert!(status.contains(&format!("Uid: {BUILD_UID} {BUILD_UID} {BUILD_UID} {BUILD_UID}")), "{status:?}");
    assert!(status.contains(&format!("Gid: {BUILD_GID} {BUILD_GID} {BUILD_GID} {BUILD_GID}")), "{status:?}");
    assert!(status.contains(&"CapEff: 0000000000000000".to_owned()), "{status:?}");
    assert_eq!(one(&r, "read /proc/sys/kernel/hostname"), "ok localhost");
    assert_eq!(one(&r, "read /proc/sys/kernel/domainname"), "ok (none)");
    assert_eq!(one(&r, "cwd"), "/build");
    assert!(one(&r, "read /etc/passwd").contains("drvbld:x:1000:100:"), "{r:?}");
    assert!(one(&r, "read /etc/passwd").contains("|nobody:x:65534:65534:"), "{r:?}");
    assert!(one(&r, "read /etc/group").contains("|nogroup:x:65534:"), "{r:?}");
    assert_eq!(one(&r, "exists /homeless-shelter"), "no");
    // The builder is PID 2: PID 1 is the sandbox's init.
    assert_eq!(one(&r, "pid"), "2");
}

#[test]
fn environment_is_exactly_what_was_passed() {
    let fx = Fixture::new();
    // The test process has a host environment (PATH at least, and cargo's
    // variables under cargo test); none of it may reach the builder.
    assert!(std::env::var_os("PATH").is_some());
    let mut spec = fx.probe_spec("env", "-");
    spec.env.push(("HOME".into(), "/homeless-shelter".into()));
    spec.env.push(("TZ".into(), "UTC".into()));
    let (result, log) = fx.run(&spec);
    assert!(result.unwrap().success(), "{log}");
    let mut env = results(&log).remove("env").unwrap();
    env.sort();
    assert_eq!(env, ["DRV_PROBE=env", "HOME=/homeless-shelter", "TZ=UTC"]);
}

#[test]
fn exit_status_is_propagated() {
    let fx = Fixture::new();
    let (result, _) = fx.run(&fx.probe_spec("exit 7", "-"));
    assert_eq!(result.unwrap().code(), Some(7));
    let (result, _) = fx.run(&fx.shell_spec("kill -TERM $$"));
    assert_eq!(result.unwrap().signal(), Some(15));
}

#[test]
fn a_missing_builder_is_a_readable_error() {
    let fx = Fixture::new();
    let (result, _) = fx.run(&fx.spec("/no/such/builder"));
    match result {
        Err(e @ SandboxError::Exec { .. }) => assert!(e.to_string().contains("/no/such/builder"), "{e}"),
        other => panic!("expected Exec, got {other:?}"),
    }
}

#[test]
fn timeout_kills_the_build() {
    let fx = Fixture::new();
    let marker = unique("timeout");
    let mut spec = fx.probe_spec("sleep 60", &marker);
    spec.timeout = Some(Duration::from_secs(1));
    let start = Instant::now();
    let (result, log) = fx.run(&spec);
    assert!(matches!(result, Err(SandboxError::TimedOut { .. })), "{result:?}\n{log}");
    assert!(start.elapsed() < Duration::from_secs(15));
    wait_until("the build to be gone", Duration::from_secs(10), || processes_with(&marker).is_empty());
}

#[test]
fn daemons_left_behind_are_killed_when_the_builder_exits() {
    let fx = Fixture::new();
    let marker = unique("daemon");
    let start = Instant::now();
    let (result, log) = fx.run(&fx.probe_spec(&format!("spawn-sleeper {marker}"), "-"));
    assert!(result.unwrap().success(), "{log}");
    assert_eq!(one(&results(&log), &format!("spawn-sleeper {marker}")), "ok");
    assert!(start.elapsed() < Duration::from_secs(30));
    wait_until("the daemon to be gone", Duration::from_secs(10), || processes_with(&marker).is_empty());
}

/// Runs a sleeping build for `sigkill_of_the_drv_process_kills_the_build`.
#[test]
fn sigkill_driver() {
    let (Ok(root), Ok(marker)) = (std::env::var("DRV_SANDBOX_DRIVER_ROOT"), std::env::var("DRV_SANDBOX_MARKER"))
    else {
        return;
    };
    let fx = Fixture::at(Path::new(&root));
    let _ = fx.run(&fx.probe_spec("sleep 120", &marker));
}

#[test]
fn sigkill_of_the_drv_process_kills_the_build() {
    let fx = Fixture::new();
    let marker = unique("sigkill");
    let mut driver = Command::new(std::env::current_exe().unwrap())
        .args(["sigkill_driver", "--exact", "--nocapture", "-q"])
        .env("DRV_SANDBOX_DRIVER_ROOT", &fx.root)
        .env("DRV_SANDBOX_MARKER", &marker)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The builder carries the marker in its arguments.
    wait_until("the build to start", Duration::from_secs(30), || !processes_with(&marker).is_empty());
    driver.kill().unwrap();
    driver.wait().unwrap();
    wait_until("the build to be gone", Duration::from_secs(10), || processes_with(&marker).is_empty());
}

#[test]
fn no_sandbox_mode_runs_on_the_host_with_the_clean_environment() {
    let fx = Fixture::new();
    let mut spec = fx.shell_spec("echo $PWD > $out; export -p >> $out");
    spec.builder = "/bin/sh".into();
    spec.isolation = Isolation::None;
    spec.outputs = vec![OUT.into()];
    let host_out = spec.host_path(Path::new(OUT));
    spec.env = vec![("out".into(), host_out.clone().into())];
    let (result, log) = fx.run(&spec);
    assert!(result.unwrap().success(), "{log}");
    let written = fs::read_to_string(&host_out).unwrap();
    let mut lines = written.lines();
    assert_eq!(Path::new(lines.next().unwrap()), fx.root.join("build"));
    // dash exports PWD itself; nothing of the host's environment.
    let exported: Vec<_> = lines.filter(|l| !l.contains(" PWD=")).collect();
    assert_eq!(exported, [format!("export out='{}'", host_out.display())]);
}

#[test]
fn no_sandbox_mode_timeout_kills_the_build() {
    let fx = Fixture::new();
    let mut spec = fx.shell_spec("read x < /dev/zero; while :; do :; done");
    spec.isolation = Isolation::None;
    spec.timeout = Some(Duration::from_millis(500));
    let (result, _) = fx.run(&spec);
    assert!(matches!(result, Err(SandboxError::TimedOut { .. })), "{result:?}");
}

#[test]
fn a_log_pipe_reaches_end_of_file_when_the_build_ends() {
    let fx = Fixture::new();
    let (reader, writer) = nix::unistd::pipe().unwrap();
    let mut reader = fs::File::from(reader);
    let spec = fx.shell_spec("echo one; echo two >&2");
    let reading = std::thread::spawn(move || {
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        text
    });
    assert!(drv_sandbox::run(&spec, writer).unwrap().success());
    assert_eq!(reading.join().unwrap(), "one\ntwo\n");
}

/// Re-runs checks as uid 65534 when run as root (the CI case).
#[test]
fn works_for_an_unprivileged_user() {
    if std::env::var_os("DRV_SANDBOX_UNPRIVILEGED").is_some() {
        return unprivileged_checks();
    }
    if !nix_is_root() {
        eprintln!("not root: every other test already ran unprivileged");
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: setpriv(1) is not installed");
        return;
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args(["works_for_an_unprivileged_user", "--exact", "--nocapture", "-q"])
        .env("DRV_SANDBOX_UNPRIVILEGED", "1")
        .env("TMPDIR", "/tmp")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("unprivileged checks passed"), "{text}");
}

fn nix_is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

fn unprivileged_checks() {
    assert!(!nix_is_root());
    drv_sandbox::check_namespaces().unwrap();
    let fx = Fixture::new();
    build_file_output(&fx);
    let r = fx.probe(&format!("status; read /proc/sys/kernel/hostname; write {INPUT}/data; read {INPUT}/data"));
    assert!(r["status"].contains(&format!("Uid: {BUILD_UID} {BUILD_UID} {BUILD_UID} {BUILD_UID}")), "{r:?}");
    assert_eq!(one(&r, "read /proc/sys/kernel/hostname"), "ok localhost");
    assert!(one(&r, &format!("write {INPUT}/data")).starts_with("err"));
    assert_eq!(one(&r, &format!("read {INPUT}/data")), "ok input data");
    // Without a cgroup, RLIMIT_NPROC stops a fork bomb: it counts the
    // processes of the build's user namespace only.
    let limits = small_limits(Some(32), None, Some(4));
    let notes = drv_sandbox::limit_notes(&limits);
    if notes.iter().any(|n| n.contains("RLIMIT_NPROC")) {
        let mut spec = fx.shell_spec("while :; do sleep 30 & done");
        spec.limits = limits;
        spec.timeout = Some(Duration::from_secs(60));
        let (result, log) = fx.run(&spec);
        assert_eq!(result.unwrap().code(), Some(2), "{log}");
        assert!(log.contains("fork"), "{log}");
        println!("RLIMIT_NPROC stopped the fork bomb");
    }
    println!("unprivileged checks passed");
}

/// In a user namespace whose `user.max_user_namespaces` is 0, the sandbox
/// must refuse with the specific error.
#[test]
fn refused_namespaces_give_a_specific_error() {
    if std::env::var_os("DRV_SANDBOX_NO_USERNS").is_some() {
        let err = drv_sandbox::check_namespaces().unwrap_err();
        assert!(matches!(err, SandboxError::NamespacesUnavailable { .. }), "{err:?}");
        let message = err.to_string();
        for expected in ["--no-sandbox", "user.max_user_namespaces", "kernel.unprivileged_userns_clone"] {
            assert!(message.contains(expected), "{message}");
        }
        let fx = Fixture::new();
        let (result, _) = fx.run(&fx.shell_spec("true"));
        assert!(matches!(result, Err(SandboxError::NamespacesUnavailable { .. })), "{result:?}");
        println!("refusal checks passed");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let script = "echo 0 > /proc/sys/user/max_user_namespaces && exec \"$0\" refused_namespaces_give_a_specific_error --exact --nocapture -q";
    let out = match Command::new("unshare")
        .args(["--user", "--map-root-user", "sh", "-c", script])
        .arg(&exe)
        .env("DRV_SANDBOX_NO_USERNS", "1")
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped: cannot run unshare(1): {e}");
            return;
        }
    };
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("refusal checks passed"), "{text}");
}

#[test]
fn log_file_receives_stdout_and_stderr() {
    let fx = Fixture::new();
    let (result, log) = fx.run(&fx.shell_spec("echo to-stdout; echo to-stderr >&2"));
    assert!(result.unwrap().success());
    assert_eq!(log, "to-stdout\nto-stderr\n");
}

/// The sandbox's helper processes must not keep another build's log pipe
/// open: its reader would wait for the slower build.
#[test]
fn concurrent_builds_do_not_hold_each_others_logs() {
    let fx = Fixture::new();
    let other = Fixture::new();
    let (reader, writer) = nix::unistd::pipe().unwrap();
    let marker = unique("concurrent");
    let slow_marker = marker.clone();
    // Started while `writer` is open in this process.
    let slow = std::thread::spawn(move || other.run(&other.probe_spec("sleep 5", &slow_marker)).0.map(|s| s.success()));
    wait_until("the slow build to start", Duration::from_secs(30), || !processes_with(&marker).is_empty());
    let start = Instant::now();
    assert!(drv_sandbox::run(&fx.shell_spec("echo quick"), writer).unwrap().success());
    let mut text = String::new();
    fs::File::from(reader).read_to_string(&mut text).unwrap();
    assert_eq!(text, "quick\n");
    assert!(start.elapsed() < Duration::from_secs(4), "the log stayed open for {:?}", start.elapsed());
    assert!(slow.join().unwrap().unwrap());
}

// ---------------------------------------------------------------------------
// Limits: small ones per test, so a runaway build ends fast.

/// Limits with only `processes`, `memory` and `tmp_size` (MiB) set.
fn small_limits(processes: Option<u64>, memory_mib: Option<u64>, tmp_mib: Option<u64>) -> Limits {
    Limits { processes, memory: memory_mib.map(|m| m << 20), tmp_size: tmp_mib.map(|m| m << 20), use_cgroups: true }
}

/// Whether `limits` hold through a cgroup here (root with a writable
/// cgroup tree, or a delegated one); the notes say otherwise.
fn enforced_by_cgroup(limits: &Limits, what: &str) -> bool {
    let notes = drv_sandbox::limit_notes(limits);
    if notes.iter().any(|n| n.contains(what)) {
        eprintln!("skipped: {notes:?}");
        return false;
    }
    true
}

/// This process's build cgroups still on the host. Other tests of this
/// process make their own meanwhile, so this looks only when the test runs
/// alone (see `build_cgroups_are_removed`).
fn leftover_cgroups() -> Vec<PathBuf> {
    if std::env::var_os("DRV_SANDBOX_LEFTOVERS").is_none() {
        return Vec::new();
    }
    let prefix = format!("drv-build-{}-", std::process::id());
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::from("/sys/fs/cgroup")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    found.push(entry.path());
                }
                // drv's cgroups are at most a few levels below a hierarchy.
                if entry.path().components().count() < 9 {
                    stack.push(entry.path());
                }
            }
        }
    }
    found
}

#[test]
fn a_fork_bomb_is_stopped_and_reported() {
    let limits = small_limits(Some(64), None, None);
    if !enforced_by_cgroup(&limits, "process") {
        return;
    }
    let fx = Fixture::new();
    let mut spec = fx.shell_spec("bomb() { bomb | bomb; }; bomb");
    spec.limits = limits;
    // Only a safety net: the limit must end it long before.
    spec.timeout = Some(Duration::from_secs(60));
    let start = Instant::now();
    let (result, log) = fx.run(&spec);
    match &result {
        Err(e @ SandboxError::LimitExceeded { hit: LimitHit::Processes { max: 64 }, .. }) => {
            let message = e.to_string();
            assert!(message.contains("64 processes") && message.contains("--max-processes"), "{message}");
        }
        other => panic!("expected the process limit, got {other:?}\n{}", &log[..log.len().min(2000)]),
    }
    assert!(start.elapsed() < Duration::from_secs(60));
    // The host can still fork, and nothing of the build is left.
    assert!(Command::new("true").status().unwrap().success());
    assert_eq!(leftover_cgroups(), Vec::<PathBuf>::new());
}

#[test]
fn filling_tmp_fails_with_no_space_left() {
    let fx = Fixture::new();
    for mount in ["/tmp", "/dev/shm"] {
        let mut spec = fx.probe_spec(&format!("fill {mount}/big 16"), "-");
        spec.limits = small_limits(None, None, Some(4));
        let (result, log) = fx.run(&spec);
        assert_eq!(one(&results(&log), &format!("fill {mount}/big 16")), "err StorageFull", "{log}");
        match &result {
            Err(e @ SandboxError::LimitExceeded { hit: LimitHit::TmpSpace { mount: m, size }, status }) => {
                assert_eq!((m.as_str(), *size, status.code()), (mount, 4 << 20, Some(1)));
                let message = e.to_string();
                assert!(message.contains(mount) && message.contains("4M") && message.contains("--tmp-size"), "{message}");
            }
            other => panic!("expected a full {mount}, got {other:?}\n{log}"),
        }
    }
    // Under the limit, the same build passes.
    let mut spec = fx.probe_spec("fill /tmp/small 2; fill /dev/shm/small 2", "-");
    spec.limits = small_limits(None, None, Some(4));
    let (result, log) = fx.run(&spec);
    assert!(result.unwrap().success(), "{log}");
}

#[test]
fn allocating_over_the_memory_limit_is_killed_as_out_of_memory() {
    let limits = small_limits(None, Some(64), None);
    if !enforced_by_cgroup(&limits, "memory") {
        return;
    }
    let fx = Fixture::new();
    let mut spec = fx.probe_spec("alloc 512", "-");
    spec.limits = limits;
    spec.timeout = Some(Duration::from_secs(60));
    let (result, log) = fx.run(&spec);
    match &result {
        Err(e @ SandboxError::LimitExceeded { hit: LimitHit::Memory { max }, status }) => {
            assert_eq!(*max, 64 << 20);
            assert_eq!(status.signal(), Some(9), "{status:?}");
            let message = e.to_string();
            assert!(message.contains("out of memory") && message.contains("64M") && message.contains("--max-memory"), "{message}");
        }
        other => panic!("expected an out-of-memory kill, got {other:?}\n{log}"),
    }
    assert_eq!(leftover_cgroups(), Vec::<PathBuf>::new());
}

#[test]
fn a_normal_build_is_unaffected_by_small_limits() {
    let fx = Fixture::new();
    let mut spec = fx.probe_spec("alloc 8; fill /tmp/f 1; spawn-sleeper -; exit 0", "-");
    spec.limits = small_limits(Some(64), Some(256), Some(4));
    let (result, log) = fx.run(&spec);
    assert!(result.unwrap().success(), "{log}");
    // A failing build that reached no limit is an ordinary failure.
    let (result, log) = fx.run(&fx.probe_spec("exit 3", "-"));
    assert_eq!(result.unwrap().code(), Some(3), "{log}");
    assert_eq!(leftover_cgroups(), Vec::<PathBuf>::new());
}

#[test]
fn no_sandbox_mode_has_the_process_limit_too() {
    let limits = small_limits(Some(32), None, None);
    if !enforced_by_cgroup(&limits, "process") {
        return;
    }
    let fx = Fixture::new();
    let mut spec = SandboxSpec::new("/bin/sh", STORE, fx.scratch(), fx.root.join("build"));
    spec.isolation = Isolation::None;
    spec.args = vec!["-c".into(), "while :; do sleep 30 & done".into()];
    spec.limits = limits;
    spec.timeout = Some(Duration::from_secs(60));
    let (result, log) = fx.run(&spec);
    assert!(
        matches!(result, Err(SandboxError::LimitExceeded { hit: LimitHit::Processes { max: 32 }, .. })),
        "{result:?}\n{log}"
    );
    // The sleepers it left were in its cgroup, which is gone.
    assert_eq!(leftover_cgroups(), Vec::<PathBuf>::new());
}

/// Re-runs the limit tests one at a time in a process of their own, where
/// any build cgroup left over is theirs.
#[test]
fn build_cgroups_are_removed() {
    if std::env::var_os("DRV_SANDBOX_LEFTOVERS").is_some() {
        return;
    }
    for test in [
        "a_fork_bomb_is_stopped_and_reported",
        "allocating_over_the_memory_limit_is_killed_as_out_of_memory",
        "a_normal_build_is_unaffected_by_small_limits",
        "no_sandbox_mode_has_the_process_limit_too",
    ] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture", "-q"])
            .env("DRV_SANDBOX_LEFTOVERS", "1")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("1 passed"), "{test}:\n{text}");
    }
}
