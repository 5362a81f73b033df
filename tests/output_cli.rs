//! What each command prints, as a user sees it: exit code, stdout and
//! stderr of a success and of a typical failure, as insta snapshots
//! (tests/snapshots/output_cli__*.snap). What varies from run to run is
//! redacted before comparing: store-path hashes (`[HASH]`), the test's
//! temporary directory (`[TMP]`), the repository (`[REPO]`), durations
//! (`[TIME]`) and registration times.
//!
//! Offline and small: the tiny test recipes, the fixture Debian archive,
//! and one store per test whose toolchain is built once.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestStore;

const TOOLS: &str = "[toolchain]\ndebian = [\"dash\", \"coreutils\"]\n";

/// Runs `drv` in a test store and renders what it printed, redacted.
struct Session {
    s: TestStore,
    /// Spellings of the temporary directory (as created, and canonical).
    tmp: Vec<String>,
    repo: String,
}

impl Session {
    fn new() -> Self {
        let s = TestStore::new();
        let made = s.dir.path().display().to_string();
        let canonical = fs::canonicalize(s.dir.path()).unwrap().display().to_string();
        let repo = fs::canonicalize(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).unwrap().display().to_string();
        // The longer spelling first, so that it is not left half replaced.
        let mut tmp = vec![made, canonical];
        tmp.sort_by_key(|t| std::cmp::Reverse(t.len()));
        tmp.dedup();
        Self { s, tmp, repo }
    }

    fn cmd(&self) -> Command {
        let mut c = self.s.cmd();
        c.current_dir(self.s.dir.path())
            .env("DRV_LOG_FORMAT", "lines")
            // No configuration of the machine or the user (substituters).
            .env("XDG_CONFIG_HOME", self.s.scratch("config"))
            .env_remove("DRV_CONFIG")
            .env("NO_COLOR", "1")
            .env_remove("CLICOLOR_FORCE")
            .env("COLUMNS", "100");
        c
    }

    /// `drv ARGS`: the exit code, stdout and stderr, redacted.
    fn run(&self, args: &[&str]) -> String {
        self.run_with(args, |_| {})
    }

    fn run_with(&self, args: &[&str], setup: impl FnOnce(&mut Command)) -> String {
        self.render(args, setup, false)
    }

    /// As [`Session::run`], with stdout's lines sorted (after redaction):
    /// for listings whose order depends on when parallel builds ended.
    fn run_sorted(&self, args: &[&str]) -> String {
        self.render(args, |_| {}, true)
    }

    fn render(&self, args: &[&str], setup: impl FnOnce(&mut Command), sort: bool) -> String {
        let mut c = self.cmd();
        c.args(args);
        setup(&mut c);
        let out = c.output().unwrap();
        let shown: Vec<String> = args.iter().map(|a| self.redact(a)).collect();
        let mut stdout = self.redact(&String::from_utf8_lossy(&out.stdout));
        if sort {
            let mut lines: Vec<&str> = stdout.lines().collect();
            lines.sort();
            stdout = lines.iter().map(|l| format!("{l}\n")).collect();
        }
        format!(
            "$ drv {}\nexit code: {}\n----- stdout -----\n{stdout}----- stderr -----\n{}",
            shown.join(" "),
            out.status.code().map_or("signal".to_owned(), |c| c.to_string()),
            self.redact(&String::from_utf8_lossy(&out.stderr))
        )
    }

    /// `drv ARGS`, which must succeed; its stdout, unredacted.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        common::assert_success(&out, args);
        String::from_utf8(out.stdout).unwrap()
    }

    fn redact(&self, text: &str) -> String {
        let mut t = text.to_owned();
        for tmp in &self.tmp {
            t = t.replace(tmp.as_str(), "[TMP]");
        }
        t = t.replace(&self.repo, "[REPO]");
        let t = redact_hashes(&t);
        let t = redact_durations(&t);
        redact_number_after(&t, "\"registrationTime\":")
    }

    /// A recipe folder in the scratch space, with the tests' lock file.
    fn recipes(&self) -> PathBuf {
        let dir = self.s.scratch("recipes");
        common::write_lock(&dir);
        dir
    }

    fn recipe(&self, name: &str, text: &str) -> String {
        let p = self.recipes().join(format!("{name}.toml"));
        fs::write(&p, text).unwrap();
        format!("recipes/{name}.toml")
    }
}

const NIXBASE32: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Each store-path hash (32 characters of Nix's base-32 followed by `-`,
/// not inside a longer word) as `[HASH]`; also as a build log's file name
/// splits it (`log/ab/<30 characters>-NAME.drv.zst`).
fn redact_hashes(text: &str) -> String {
    let b = text.as_bytes();
    let base32 = |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(|c| NIXBASE32.contains(c)));
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let starts_word = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        let whole = starts_word && b.get(i + 32) == Some(&b'-') && base32(i..i + 32);
        let split = starts_word
            && b.get(i + 2) == Some(&b'/')
            && b.get(i + 33) == Some(&b'-')
            && base32(i..i + 2)
            && base32(i + 3..i + 33);
        if whole {
            out.push_str("[HASH]");
            i += 32;
        } else if split {
            out.push_str("[HASH]");
            i += 33;
        } else {
            // Copy one character (never split a multi-byte one).
            let len = text[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&text[i..i + len]);
            i += len;
        }
    }
    out
}

/// Durations (`0.3s`, `12.0 s`) as `[TIME]`.
fn redact_durations(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let starts_word = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'.');
        if starts_word && b[i].is_ascii_digit() {
            let mut j = i;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j + 1 < b.len() && b[j] == b'.' && b[j + 1].is_ascii_digit() {
                let mut k = j + 1;
                while k < b.len() && b[k].is_ascii_digit() {
                    k += 1;
                }
                let unit = if b[k..].starts_with(b"s") {
                    Some(1)
                } else if b[k..].starts_with(b" s") {
                    Some(2)
                } else {
                    None
                };
                if let Some(unit) = unit {
                    let end = k + unit;
                    if end == b.len() || !b[end].is_ascii_alphanumeric() {
                        out.push_str("[TIME]");
                        i = end;
                        continue;
                    }
                }
            }
            out.push_str(&text[i..j]);
            i = j;
            continue;
        }
        let len = text[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[i..i + len]);
        i += len;
    }
    out
}

/// The number after each `key` (a JSON field) as `[N]`.
fn redact_number_after(text: &str, key: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(key) {
        let after = at + key.len();
        out.push_str(&rest[..after]);
        let digits = rest[after..].bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            out.push_str("[N]");
        }
        rest = &rest[after + digits..];
    }
    out.push_str(rest);
    out
}

#[test]
fn the_redactions_replace_only_what_varies() {
    assert_eq!(
        redact_hashes("/store/0c0yb0rsj4vy2ij5cxhbm8i8a4a2d9qk-zlib-1.3 and g0c0yb0rsj4vy2ij5cxhbm8i8a4a2d9qk-x"),
        "/store/[HASH]-zlib-1.3 and g0c0yb0rsj4vy2ij5cxhbm8i8a4a2d9qk-x"
    );
    assert_eq!(redact_hashes("log/0c/0yb0rsj4vy2ij5cxhbm8i8a4a2d9qk-a.drv.zst"), "log/[HASH]-a.drv.zst");
    // Not base-32 (`e` is not in its alphabet): left alone.
    assert_eq!(redact_hashes("eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x"), "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x");
    assert_eq!(
        redact_durations("built a-1 in 0.1s\nfinished in 12.3s: built 1\n(0.4 s) version 1.2 and 1.2.3s"),
        "built a-1 in [TIME]\nfinished in [TIME]: built 1\n([TIME]) version 1.2 and 1.2.3s"
    );
    assert_eq!(redact_number_after(r#"{"registrationTime":1700000000,"x":1}"#, "\"registrationTime\":"), r#"{"registrationTime":[N],"x":1}"#);
}

/// No command prints on its own: everything goes through the Printer
/// (crates/cli/src/printer.rs), which owns quiet, verbose and JSON mode.
#[test]
fn commands_print_only_through_the_printer() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/commands");
    let mut offenders = Vec::new();
    for e in fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let prints = ["println!", "eprintln!", "print!", "eprint!", "io::stdout()", "io::stderr()", "dbg!"]
                .iter()
                .any(|m| code.contains(m));
            if prints {
                offenders.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(offenders.is_empty(), "commands printing around the Printer:\n{}", offenders.join("\n"));
}

/// The commands that need built paths, on one store: the toolchain and a
/// small chain of recipes are built once.
#[test]
fn commands_on_a_built_store() {
    let t = Session::new();
    fs::create_dir_all(t.recipes()).unwrap();
    fs::write(t.recipes().join("a.txt"), "a\n").unwrap();
    let a = t.recipe("a", &format!("name = \"a\"\nversion = \"1\"\n[[source]]\npath = \"a.txt\"\n{TOOLS}[build]\nscript = 'mkdir $out; cat $src > $out/a'\n"));
    let b = t.recipe(
        "b",
        &format!("name = \"b\"\nversion = \"1\"\n[dependencies]\nrun = [\"a.toml\"]\n{TOOLS}[build]\nscript = 'mkdir $out; echo $a > $out/uses-a'\n"),
    );
    let bad = t.recipe("bad", &format!("name = \"bad\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'echo about to fail; exit 3'\n"));
    // The toolchain and `a`, quietly: their progress lines come in an
    // order that depends on the scheduler.
    let a_out = t.ok(&["build", "-q", "--no-link", &a]).trim().to_owned();

    // build: one new derivation (its inputs valid), then a no-op, quiet, and a failure.
    insta::assert_snapshot!("build", t.run(&["build", &b]));
    insta::assert_snapshot!("build-again", t.run(&["build", &b]));
    let c = t.recipe("c", &format!("name = \"c\"\nversion = \"1\"\n[dependencies]\nbuild = [\"a.toml\"]\n{TOOLS}[build]\nscript = 'mkdir $out; cat $a/a > $out/c'\n"));
    insta::assert_snapshot!("build-verbose", t.run(&["build", "-v", "--no-link", &c, &b]));
    insta::assert_snapshot!("build-quiet", t.run(&["build", "-q", "--no-link", &b]));
    insta::assert_snapshot!("build-failure", t.run(&["build", "--no-link", &bad]));
    insta::assert_snapshot!("build-quiet-failure", t.run(&["build", "-q", "--no-link", &bad]));
    insta::assert_snapshot!("build-json", t.run(&["build", "--json", "--no-link", &b, &a]));
    insta::assert_snapshot!("build-json-failure", t.run(&["build", "--json", "--no-link", &bad]));
    let b_out = fs::read_link(t.s.dir.path().join("result")).unwrap().display().to_string();

    // log (the failure: a derivation never built, further down)
    insta::assert_snapshot!("log", t.run(&["log", &bad]));

    // test, run, shell
    let hello = t.recipe(
        "hello",
        &format!(
            r#"name = "hello"
version = "1"
main = "bin/hello"
{TOOLS}[build]
script = '''
mkdir -p $out/bin
printf '#!/bin/sh\necho hello "$@"\nexit 7\n' > $out/bin/hello
chmod +x $out/bin/hello
'''
[[test]]
name = "runs"
script = '$hello/bin/hello || true'
"#
        ),
    );
    insta::assert_snapshot!("test", t.run(&["test", &hello]));
    insta::assert_snapshot!("test-failure", t.run(&["test", &a]));
    insta::assert_snapshot!("run", t.run(&["run", &hello, "--", "world"]));
    insta::assert_snapshot!("run-failure", t.run(&["run", &a]));
    insta::assert_snapshot!("shell", t.run(&["shell", &hello, "-c", "hello from the shell"]));
    insta::assert_snapshot!("shell-failure", t.run(&["shell", "--isolated", &a, "-c", "true"]));

    // eval, show-derivation, graph
    insta::assert_snapshot!("eval", t.run(&["eval", &b]));
    insta::assert_snapshot!("eval-json", t.run(&["eval", "--json", &b]));
    insta::assert_snapshot!("show-derivation", t.run(&["show-derivation", &a]));
    insta::assert_snapshot!("show-derivation-failure", t.run(&["show-derivation", &a_out]));
    insta::assert_snapshot!("graph", t.run(&["graph", &b]));
    insta::assert_snapshot!("graph-json", t.run(&["graph", "--format", "json", &b]));
    insta::assert_snapshot!("graph-failure", t.run(&["graph", "recipes/missing.toml"]));

    // path-info
    insta::assert_snapshot!("path-info", t.run(&["path-info", "-r", "-s", "-S", "result"]));
    insta::assert_snapshot!("path-info-json", t.run(&["path-info", "--json", &a_out]));
    insta::assert_snapshot!("path-info-failure", t.run(&["path-info", "/store/00000000000000000000000000000000-gone"]));

    // why-depends
    insta::assert_snapshot!("why-depends", t.run(&["why-depends", &b_out, &a_out]));
    insta::assert_snapshot!("why-depends-json", t.run(&["why-depends", "--json", &b_out, &a_out]));
    insta::assert_snapshot!("why-depends-failure", t.run(&["why-depends", &a_out, &b_out]));

    // why-rebuild: the same derivation, then a changed one, then an unknown one
    insta::assert_snapshot!("why-rebuild-same", t.run(&["why-rebuild", &b, "--since", "result"]));
    fs::write(t.recipes().join("a.txt"), "a, changed\n").unwrap();
    insta::assert_snapshot!("why-rebuild", t.run(&["why-rebuild", &b, "--since", "result"]));
    insta::assert_snapshot!("log-failure", t.run(&["log", &a]));
    insta::assert_snapshot!("why-rebuild-failure", t.run(&["why-rebuild", &b, "--since", "/store/00000000000000000000000000000000-gone"]));

    // store verify, diff-closures
    insta::assert_snapshot!("store-verify", t.run(&["store", "verify"]));
    insta::assert_snapshot!("store-diff-closures", t.run(&["store", "diff-closures", &a_out, "result"]));

    // cache push, fetch
    let keys = common::keys(&t.s, "cache-1");
    let cache = format!("file://{}", t.s.scratch("cache").display());
    insta::assert_snapshot!("cache-push", t.run(&["cache", "push", "-j", "1", "--to", &cache, "--key", &keys.secret, "result"]));
    insta::assert_snapshot!("cache-push-again", t.run(&["cache", "push", "-q", "--to", &cache, "--key", &keys.secret, "result"]));
    insta::assert_snapshot!("cache-push-failure", t.run(&["cache", "push", "--to", &cache, "--key", "missing.sec", "result"]));
    insta::assert_snapshot!("cache-fetch-failure", t.run(&["cache", "fetch", &a_out]));
    insta::assert_snapshot!("cache-serve-failure", t.run(&["cache", "serve", "--listen", "127.0.0.1:0", "--key", "missing.sec"]));

    // root, gc
    insta::assert_snapshot!("root-list", t.run(&["root", "list"]));
    insta::assert_snapshot!("root-add-failure", t.run(&["root", "add", "app", "/store/00000000000000000000000000000000-gone"]));
    insta::assert_snapshot!("gc-print-roots", t.run(&["gc", "--print-roots"]));
    insta::assert_snapshot!("gc-failure", t.run(&["gc", "--max-freed", "lots"]));
    fs::remove_file(t.s.dir.path().join("result")).unwrap();
    insta::assert_snapshot!("gc-dry-run", t.run_sorted(&["gc", "--dry-run"]));
    insta::assert_snapshot!("gc", t.run(&["gc"]));
    insta::assert_snapshot!("gc-json", t.run(&["gc", "--json"]));
}

/// The commands that need no build: hashing, keys, adding files, locks,
/// recipe errors, a damaged store.
#[test]
fn commands_without_a_build() {
    let t = Session::new();
    let file = t.s.scratch("hello.txt");
    fs::write(&file, "hello\n").unwrap();
    let file = file.to_str().unwrap();
    let missing = t.s.scratch("missing.txt");
    let missing = missing.to_str().unwrap();

    // hash
    insta::assert_snapshot!("hash-file", t.run(&["hash", "file", "--sri", file]));
    insta::assert_snapshot!("hash-path", t.run(&["hash", "path", "--base32", file]));
    insta::assert_snapshot!("hash-failure", t.run(&["hash", "file", missing]));

    // key
    let keys = common::keys(&t.s, "cache-1");
    let public = t.run_with(&["key", "public"], |c| {
        c.stdin(fs::File::open(&keys.secret).unwrap());
    });
    // The key is random: the one written must be the one printed.
    assert!(public.contains(&format!("----- stdout -----\n{}\n", keys.public.trim())), "{public}");
    insta::assert_snapshot!("key-public", public.replace(keys.public.trim(), "cache-1:[PUBLIC KEY]"));
    insta::assert_snapshot!("key-public-failure", t.run_with(&["key", "public"], |c| {
        c.stdin(std::process::Stdio::null());
    }));

    // prefetch of a local file
    insta::assert_snapshot!("prefetch", t.run(&["prefetch", file]));
    insta::assert_snapshot!("prefetch-json", t.run(&["prefetch", "--json", file]));
    insta::assert_snapshot!("prefetch-quiet", t.run(&["prefetch", "-q", file]));
    insta::assert_snapshot!("prefetch-failure", t.run(&["prefetch", missing]));

    // store add, add-fixed
    insta::assert_snapshot!("store-add", t.run(&["store", "add", file]));
    insta::assert_snapshot!("store-add-fixed-failure", t.run(&["store", "add-fixed", "sha256", "--expect", "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=", file]));

    // store dump, restore
    let out = t.cmd().args(["store", "dump", file]).output().unwrap();
    assert!(out.status.success() && out.stdout.starts_with(b"\x0d\0\0\0\0\0\0\0nix-archive-1"), "{out:?}");
    insta::assert_snapshot!("store-dump-failure", t.run(&["store", "dump", missing]));
    insta::assert_snapshot!("store-restore-failure", t.run_with(&["store", "restore", t.s.dir.path().to_str().unwrap()], |c| {
        c.stdin(std::process::Stdio::null());
    }));

    // lock: everything is in the lock already (so offline); no recipe at all
    let dir = t.recipes();
    fs::write(dir.join("tools.toml"), format!("name = \"tools\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'true'\n")).unwrap();
    insta::assert_snapshot!("lock", t.run(&["lock", "recipes"]));
    insta::assert_snapshot!("lock-failure", t.run(&["lock", "recipes/none.toml"]));

    // lock --check: covered, then a recipe naming a package the lock lacks
    insta::assert_snapshot!("lock-check", t.run(&["lock", "--check", "recipes"]));
    fs::write(dir.join("more.toml"), "name = \"more\"\nversion = \"1\"\n[toolchain]\ndebian = [\"no-such-package\"]\n[build]\nscript = 'true'\n").unwrap();
    insta::assert_snapshot!("lock-check-failure", t.run(&["lock", "--check", "recipes"]));

    // eval of a recipe with an error: the line, as cargo shows it
    insta::assert_snapshot!("eval-failure", t.run(&["eval", "recipes/more.toml"]));

    // store verify of a damaged store: a registered path deleted behind drv's back
    let added = t.ok(&["store", "add", file]);
    let real = t.s.root().join(added.trim().trim_start_matches('/'));
    make_writable(&real);
    fs::remove_file(&real).unwrap();
    insta::assert_snapshot!("store-verify-failure", t.run(&["store", "verify"]));
    insta::assert_snapshot!("store-verify-json-failure", t.run(&["store", "verify", "--json"]));
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(parent) = path.parent() {
        fs::set_permissions(parent, fs::Permissions::from_mode(0o755)).unwrap();
    }
}
