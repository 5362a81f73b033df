//! `drv run --isolated` and `drv shell --isolated`: the program's root
//! holds its closure and nothing else of the store or the host.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::Output;

use common::TestStore;

/// A program that needs nothing outside its own output: the toolchain's
/// dash with its loader and C library copied into `$out`. dash asks for the
/// host's loader (`/lib64/ld-linux-x86-64.so.2`, which an isolated root
/// lacks), so nothing execs it directly; `lib/:` is a script for the loader
/// instead: a shebang `#!$out/lib/: DASH` makes the kernel run
/// `LOADER --library-path $out/lib/: DASH SCRIPT ARGS…`, and the loader
/// splits that library path at the colon, finding `$out/lib/`. `bin/probe`
/// evaluates its first argument with the rest as `$@`; `bin/sh` is that
/// dash as a shell. It depends on `dep` at run time.
const PROBE: &str = r#"name = "probe"
version = "1"
main = "bin/probe"

[dependencies]
run = ["dep.toml"]

[toolchain]
debian = ["dash", "coreutils"]

[build]
script = '''
mkdir -p $out/bin $out/lib $out/libexec $out/share
ld=$out/lib/ld-linux-x86-64.so.2
cp -L /lib64/ld-linux-x86-64.so.2 /usr/lib/x86_64-linux-gnu/libc.so.6 $out/lib/
cp -L /bin/dash $out/libexec/dash
printf '#!%s --library-path\n' $ld > $out/lib/:
printf '#!%s %s\nexec %s --library-path %s %s "$@"\n' $out/lib/: $out/libexec/dash $ld $out/lib $out/libexec/dash > $out/bin/sh
printf '#!%s %s\ncmd=$1; shift; eval "$cmd"\n' $out/lib/: $out/libexec/dash > $out/bin/probe
chmod +x $out/lib/: $out/bin/sh $out/bin/probe
echo inside > $out/share/data.txt
echo $dep > $out/share/dep
'''
"#;

const DEP: &str = "name = \"dep\"\nversion = \"1\"\n[toolchain]\ndebian = [\"dash\", \"coreutils\"]\n[build]\nscript = 'mkdir $out; echo from-dep > $out/data.txt'\n";

/// Valid in the same store, in no closure of `probe`.
const OTHER: &str = "name = \"other\"\nversion = \"1\"\n[toolchain]\ndebian = [\"dash\", \"coreutils\"]\n[build]\nscript = 'echo other > $out'\n";

/// For each argument, whether the program sees it; and the files of its
/// own output and of its run-time dependency.
const LOOK: &str = r#"out=${0%/bin/probe}
read own < $out/share/data.txt && echo "own=$own"
read dep < $out/share/dep && read d < $dep/data.txt && echo "dep=$d"
for p; do if [ -e "$p" ]; then echo "present $p"; else echo "absent $p"; fi; done"#;

struct Setup {
    s: TestStore,
    probe: PathBuf,
    other: PathBuf,
}

fn setup() -> Setup {
    let s = TestStore::new();
    let dir = s.scratch("recipes");
    common::write_lock(&dir);
    for (name, text) in [("probe", PROBE), ("dep", DEP), ("other", OTHER)] {
        fs::write(dir.join(format!("{name}.toml")), text).unwrap();
    }
    Setup { probe: dir.join("probe.toml"), other: dir.join("other.toml"), s }
}

fn run(s: &TestStore, args: &[&str]) -> Output {
    s.cmd().args(args).output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "drv failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A file of the closure is readable; a store path outside the closure
/// (built, or added), a file the test made under the host's temporary
/// directory and the host's /usr/bin are not there. Without `--isolated`
/// all of them are, so the first half proves something.
#[test]
fn isolated_run_sees_the_closure_and_nothing_else() {
    let Setup { s, probe, other } = setup();
    let other_path = s.ok(&["build", "--no-link", other.to_str().unwrap()]).trim().to_owned();
    let added_file = s.scratch("added.txt");
    fs::write(&added_file, "added\n").unwrap();
    let added_path = s.ok(&["store", "add", added_file.to_str().unwrap()]).trim().to_owned();
    let outside = s.scratch("outside.txt");
    fs::write(&outside, "host\n").unwrap();
    let outside = outside.to_str().unwrap();
    let probe = probe.to_str().unwrap();
    let paths = [other_path.as_str(), added_path.as_str(), outside, "/usr/bin"];

    let mut args = vec!["run", "--isolated", probe, "--", LOOK];
    args.extend(paths);
    let seen = stdout(&run(&s, &args));
    assert!(seen.contains("own=inside\n") && seen.contains("dep=from-dep\n"), "{seen}");
    for p in paths {
        assert!(seen.contains(&format!("absent {p}\n")), "{p} is visible in the isolated root:\n{seen}");
    }

    let mut args = vec!["run", probe, "--", LOOK];
    args.extend(paths);
    let seen = stdout(&run(&s, &args));
    assert!(seen.contains("own=inside\n") && seen.contains("dep=from-dep\n"), "{seen}");
    for p in paths {
        assert!(seen.contains(&format!("present {p}\n")), "{p} is not visible without --isolated:\n{seen}");
    }
}

/// `/tmp` is empty, writable and the working directory, `TMPDIR` names
/// it, the rest of the root is read-only, the host's resolv.conf is there
/// when the host has one; arguments and the exit code pass through.
#[test]
fn isolated_run_has_a_fresh_tmp_and_the_hosts_resolver() {
    let Setup { s, probe, .. } = setup();
    let script = r#"echo "args=$*"
echo tmp=/tmp/* /tmp/.[!.]*
echo x > /tmp/w && read w < /tmp/w && echo "wrote=$w"
echo "pwd=$PWD tmpdir=$TMPDIR"
(echo x > /new) 2>/dev/null || echo read-only-root
[ -f /etc/resolv.conf ] && echo resolv
echo "top=" /*
exit 3"#;
    let out = run(&s, &["run", "--isolated", probe.to_str().unwrap(), "--", script, "a", "b c"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let seen = String::from_utf8_lossy(&out.stdout);
    for line in ["args=a b c", "tmp=/tmp/* /tmp/.[!.]*", "wrote=x", "pwd=/tmp tmpdir=/tmp", "read-only-root"] {
        assert!(seen.lines().any(|l| l == line), "no {line:?} in:\n{seen}");
    }
    let host_resolv = std::path::Path::new("/etc/resolv.conf").is_file();
    assert_eq!(seen.lines().any(|l| l == "resolv"), host_resolv, "{seen}");
    let top = seen.lines().find_map(|l| l.strip_prefix("top= ")).unwrap();
    for name in top.split(' ') {
        assert!(["/dev", "/etc", "/proc", "/store", "/tmp", "/usr"].contains(&name), "{name} in the isolated root: {top}");
    }
}

/// `drv shell --isolated` runs the closure's own `sh` (nothing of the
/// host's exists inside); a closure without a shell is a clear error.
#[test]
fn isolated_shell_needs_a_shell_in_the_closure() {
    let Setup { s, probe, other } = setup();
    let out = run(&s, &["shell", "--isolated", probe.to_str().unwrap(), "--command", "echo \"$PATH\"; echo /usr/bin/*; exit 4"]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    let seen = String::from_utf8_lossy(&out.stdout);
    let mut lines = seen.lines();
    let path = lines.next().unwrap();
    assert!(path.split(':').all(|d| d.starts_with("/store/") && d.ends_with("/bin")), "{path}");
    assert_eq!(lines.next(), Some("/usr/bin/*"), "{seen}");

    for command in [None, Some("true")] {
        let mut args = vec!["shell", "--isolated", other.to_str().unwrap()];
        args.extend(command.iter().flat_map(|c| ["--command", c]));
        let out = run(&s, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("holds no shell") && err.contains("pass a recipe that provides one"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
