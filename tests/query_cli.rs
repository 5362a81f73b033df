//! The queries Nix users reach for, run as a user runs them on small
//! graphs of tiny recipes: `drv why-depends`, `drv store diff-closures`,
//! `drv log -f`.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::TestStore;

const TOOLS: &str = "[toolchain]\ndebian = [\"dash\", \"coreutils\"]\n";

/// Write `dir/name.toml` (with the tests' lock next to it).
fn recipe(s: &TestStore, dir: &str, name: &str, body: &str) -> PathBuf {
    let dir = s.scratch(dir);
    common::write_lock(&dir);
    let p = dir.join(format!("{name}.toml"));
    fs::write(&p, format!("{body}\n{TOOLS}")).unwrap();
    p
}

fn package(name: &str, version: &str, run: &[&str], script: &str) -> String {
    let deps = run.iter().map(|d| format!("\"{d}.toml\"")).collect::<Vec<_>>().join(", ");
    format!("name = \"{name}\"\nversion = \"{version}\"\n[dependencies]\nrun = [{deps}]\n[build]\nscript = '{script}'\n")
}

fn build(s: &TestStore, recipe: &Path) -> String {
    s.ok(&["build", "--no-link", "--quiet", recipe.to_str().unwrap()]).trim().to_owned()
}

/// c → b → a, each naming the next in one file: `share/c` holds b's
/// path, `bin/b` holds a's.
fn chain(s: &TestStore) -> [PathBuf; 3] {
    let a = recipe(s, "recipes", "a", &package("a", "1", &[], "mkdir -p $out/lib; echo a > $out/lib/a"));
    let b = recipe(s, "recipes", "b", &package("b", "1", &["a"], "mkdir -p $out/bin; echo \"exec $a/lib/a\" > $out/bin/b; echo plain > $out/bin/other"));
    let c = recipe(s, "recipes", "c", &package("c", "1", &["b"], "mkdir -p $out/share; echo \"uses $b/bin/b\" > $out/share/c"));
    [a, b, c]
}

#[test]
fn why_depends_shows_the_chain_and_the_files_that_hold_each_reference() {
    let s = TestStore::new();
    let [a, b, c] = chain(&s);
    let c_out = build(&s, &c);
    let (a_out, b_out) = (build(&s, &a), build(&s, &b));
    let hash = |p: &str| p.rsplit('/').next().unwrap().split('-').next().unwrap().to_owned();

    // Store paths and recipes name the same paths.
    let text = s.ok(&["why-depends", &c_out, &a_out]);
    assert_eq!(text, s.ok(&["why-depends", c.to_str().unwrap(), a.to_str().unwrap()]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(lines[0], c_out);
    assert!(lines[1].starts_with("└───share/c: uses /store/") && lines[1].contains(&hash(&b_out)), "{text}");
    assert_eq!(lines[2], format!("    → {b_out}"));
    assert!(lines[3].starts_with("    └───bin/b: exec /store/") && lines[3].contains(&hash(&a_out)), "{text}");
    assert_eq!(lines[4], format!("        → {a_out}"));
    // The only way there: --all shows the same tree.
    assert_eq!(s.ok(&["why-depends", "--all", &c_out, &a_out]), text);

    let v: serde_json::Value = serde_json::from_str(&s.ok(&["why-depends", "--json", &c_out, &a_out])).unwrap();
    assert_eq!(v["path"], c_out.as_str());
    assert_eq!(v["dependency"], a_out.as_str());
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{v}");
    assert_eq!((steps[0]["from"].as_str(), steps[0]["to"].as_str()), (Some(c_out.as_str()), Some(b_out.as_str())));
    assert_eq!(steps[0]["files"][0]["file"], "share/c");
    assert!(steps[0]["files"][0]["context"].as_str().unwrap().contains(&hash(&b_out)));
    assert_eq!(steps[1]["files"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(steps[1]["files"][0]["file"], "bin/b");

    // A second way from d to a, through e (one file, no directory): one
    // shortest chain without --all, both branches as a tree with it.
    recipe(&s, "recipes", "e", &package("e", "1", &["a"], "echo $a > $out"));
    let d = recipe(&s, "recipes", "d", &package("d", "1", &["b", "e"], "mkdir $out; echo $b > $out/x; echo $e > $out/y"));
    let d_out = build(&s, &d);
    assert_eq!(s.ok(&["why-depends", &d_out, &a_out]).lines().count(), 5);
    let tree = s.ok(&["why-depends", "--all", &d_out, &a_out]);
    let lines: Vec<&str> = tree.lines().collect();
    assert_eq!(lines.len(), 9, "{tree}");
    let shapes = ["/store/", "├───", "│   → /store/", "│   └───", "│       → /store/", "└───", "    → /store/", "    └───", "        → /store/"];
    for (line, shape) in lines.iter().zip(shapes) {
        assert!(line.starts_with(shape), "{line:?} is not {shape:?}:\n{tree}");
    }
    assert!(lines.iter().filter(|l| l.ends_with(&format!("→ {a_out}"))).count() == 2, "{tree}");
    assert!(tree.contains("───.: /store/") && tree.contains("───bin/b: exec /store/"), "{tree}");

    // The other way round: a does not depend on c.
    let err = s.fails(&["why-depends", &a_out, &c_out]);
    assert!(err.contains(&format!("{a_out} does not depend on {c_out}")), "{err}");
}

#[test]
fn diff_closures_shows_versions_and_sizes_that_changed() {
    let s = TestStore::new();
    recipe(&s, "v1", "zlib", &package("zlib", "1.2.13", &[], "echo small > $out"));
    recipe(&s, "v1", "old", &package("old", "0.5", &[], "echo old > $out"));
    recipe(&s, "v1", "same", &package("same", "2", &[], "echo same > $out"));
    let app1 = recipe(&s, "v1", "app", &package("app", "1", &["zlib", "old", "same"], "echo $zlib $old $same > $out"));
    // zlib grows by ~23 KiB; old goes, extra comes; same stays.
    recipe(&s, "v2", "zlib", &package("zlib", "1.3", &[], "seq 1 5000 > $out"));
    recipe(&s, "v2", "extra", &package("extra", "1.0", &[], "echo extra > $out"));
    recipe(&s, "v2", "same", &package("same", "2", &[], "echo same > $out"));
    let app2 = recipe(&s, "v2", "app", &package("app", "2", &["zlib", "extra", "same"], "echo $zlib $extra $same > $out"));
    let (out1, out2) = (build(&s, &app1), build(&s, &app2));

    let text = s.ok(&["store", "diff-closures", &out1, &out2]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0], "app: 1 → 2");
    assert_eq!(lines[1], "extra: ∅ → 1.0");
    assert_eq!(lines[2], "old: 0.5 → ∅");
    assert!(lines[3].starts_with("zlib: 1.2.13 → 1.3, +23.") && lines[3].ends_with(" KiB"), "{text}");
    // Recipes name their outputs.
    assert_eq!(s.ok(&["store", "diff-closures", app1.to_str().unwrap(), app2.to_str().unwrap()]), text);
    // Backwards, the other way round.
    let back = s.ok(&["store", "diff-closures", &out2, &out1]);
    assert!(back.contains("extra: 1.0 → ∅\n") && back.contains("zlib: 1.3 → 1.2.13, -23."), "{back}");
    // Nothing changed: nothing to say.
    assert_eq!(s.ok(&["store", "diff-closures", &out1, &out1]), "");

    let v: serde_json::Value = serde_json::from_str(&s.ok(&["store", "diff-closures", "--json", &out1, &out2])).unwrap();
    let packages = v["packages"].as_object().unwrap();
    assert_eq!(packages.keys().collect::<Vec<_>>(), ["app", "extra", "old", "zlib"], "{v}");
    assert_eq!(packages["zlib"]["versionsBefore"], serde_json::json!(["1.2.13"]));
    assert_eq!(packages["zlib"]["versionsAfter"], serde_json::json!(["1.3"]));
    assert!(packages["zlib"]["sizeDelta"].as_i64().unwrap() > 20_000, "{v}");
    assert_eq!(packages["old"]["versionsAfter"], serde_json::json!([]));
}

#[test]
fn log_follow_prints_a_running_builds_lines_as_they_come_and_ends_with_it() {
    let s = TestStore::new();
    let slow = recipe(
        &s,
        "recipes",
        "slow",
        &package("slow", "1", &[], "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.4; done; echo done > $out"),
    );
    let drv = s.ok(&["eval", slow.to_str().unwrap()]).trim().to_owned();
    // Before anything is built there is no log to follow.
    let err = s.fails(&["log", "-f", &drv]);
    assert!(err.contains("no build log"), "{err}");

    let mut builder = s.cmd().args(["build", "--no-link", "--quiet", slow.to_str().unwrap()]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // Wait for the build to start writing (the toolchain comes first).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = s.cmd().args(["log", &drv]).output().unwrap();
        if String::from_utf8_lossy(&out.stdout).contains("line 1") {
            break;
        }
        assert!(Instant::now() < deadline, "the build never started");
        assert!(builder.try_wait().unwrap().is_none(), "the build ended before it was followed");
        std::thread::sleep(Duration::from_millis(50));
    }

    let started = Instant::now();
    let mut follower = s.cmd().args(["log", "--follow", &drv]).stdout(Stdio::piped()).spawn().unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(follower.stdout.take().unwrap()).lines() {
        seen.push((line.unwrap(), started.elapsed()));
    }
    assert!(follower.wait().unwrap().success());
    let lines: Vec<&str> = seen.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(lines, ["line 1", "line 2", "line 3", "line 4", "line 5", "line 6"]);
    // The first lines came at once, the last ones as they were written.
    assert!(seen[5].1 - seen[0].1 >= Duration::from_millis(800), "{seen:?}");
    // It ended with the build.
    assert!(builder.wait().unwrap().success());

    // A finished build's log: printed whole, at once, with or without -f.
    let t = Instant::now();
    let whole = s.ok(&["log", "-f", &drv]);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(whole, "line 1\nline 2\nline 3\nline 4\nline 5\nline 6\n");
    assert_eq!(s.ok(&["log", &drv]), whole);
}
