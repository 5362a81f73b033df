//! `drv eval` and friends on malformed recipes: one clear error with file,
//! line and column, a non-zero exit, and nothing written.

mod common;

use std::fs;

use common::TestStore;

const BAD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/recipes/bad");

/// The error of `drv eval RECIPE`, read back as one line
/// ([`common::diagnostic_line`]); it must show the offending line.
fn eval_error(s: &TestStore, recipe: &str) -> String {
    let err = s.fails(&["eval", recipe]);
    assert!(err.lines().any(|l| l.contains("| ") && l.contains('^')), "no marked span: {err}");
    assert!(!err.contains('\x1b'), "colored in a pipe: {err:?}");
    common::diagnostic_line(&err)
}

#[test]
fn malformed_recipes_give_one_located_error() {
    let s = TestStore::new();
    let cases = [
        ("bad-toml.toml", "bad-toml.toml:3:7:", "expected `]`"),
        ("unknown-key.toml", "unknown-key.toml:6:1:", "unknown key `sha265` (help: did you mean `sha256`?)"),
        ("bad-hash.toml", "bad-hash.toml:6:10:", "only sha256 is supported"),
        ("missing-sha.toml", "missing-sha.toml:4:1:", "has no sha256 (help: run `drv prefetch https://127.0.0.1:9/a.tar.gz`"),
        ("missing-dep.toml", "missing-dep.toml:5:26:", "nowhere.toml"),
    ];
    for (file, location, message) in cases {
        let err = eval_error(&s, &format!("{BAD}/{file}"));
        assert!(err.contains(location), "{file}: {err}");
        assert!(err.contains(message), "{file}: {err}");
    }
    let err = eval_error(&s, &format!("{BAD}/cycle-a.toml"));
    // shown at the entry that closes the cycle, naming the recipes around it
    assert!(err.contains("cycle-b.toml:5:8: dependency cycle:"), "{err}");
    assert!(err.contains("cycle-a.toml -> ") && err.contains("cycle-b.toml -> ") && err.contains("cycle-a.toml (help: "), "{err}");
    // nothing of any of them reached the store
    let store = s.root().join("store");
    assert_eq!(fs::read_dir(&store).map(|d| d.count()).unwrap_or(0), 0);
}

/// Every recipe under `tests/recipes/bad/` fails to evaluate with the
/// diagnostic in the `.stderr` file beside it (uncolored, as in a pipe;
/// the path of this checkout filtered out). `DRV_BLESS=1` rewrites them.
#[test]
fn bad_recipes_render_as_their_golden_diagnostics() {
    let s = TestStore::new();
    let bad = fs::canonicalize(BAD).unwrap();
    let checkout = bad.parent().unwrap().parent().unwrap().parent().unwrap().to_str().unwrap().to_owned();
    let bless = std::env::var_os("DRV_BLESS").is_some();
    let mut recipes = Vec::new();
    for entry in fs::read_dir(&bad).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            recipes.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "toml")));
        } else if path.extension().is_some_and(|e| e == "toml") {
            recipes.push(path);
        }
    }
    recipes.sort();
    assert!(recipes.len() >= 10, "{recipes:?}");
    let mut wrong = Vec::new();
    for recipe in &recipes {
        let relative = recipe.strip_prefix(&bad).unwrap();
        let out = s.cmd().current_dir(&bad).arg("eval").arg(relative).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", relative.display());
        let shown = String::from_utf8(out.stderr).unwrap().replace(&checkout, "[CHECKOUT]");
        let golden = recipe.with_extension("stderr");
        if bless {
            fs::write(&golden, &shown).unwrap();
        } else if fs::read_to_string(&golden).ok().as_deref() != Some(shown.as_str()) {
            wrong.push(format!("{}:\n{shown}", golden.display()));
        }
    }
    assert!(wrong.is_empty(), "diagnostics differ from their golden files (DRV_BLESS=1 rewrites them):\n{}", wrong.join("\n"));
}

#[test]
fn missing_sha256_of_a_local_file_suggests_the_hash() {
    let s = TestStore::new();
    let data = s.scratch("data.bin");
    fs::write(&data, b"hello").unwrap();
    let recipe = s.scratch("r.toml");
    fs::write(&recipe, format!("name = \"r\"\nversion = \"1\"\n[[source]]\nurl = \"file://{}\"\n", data.display())).unwrap();
    let err = eval_error(&s, recipe.to_str().unwrap());
    assert!(err.contains("add sha256 = \"sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=\""), "{err}");
}

#[test]
fn semantic_errors_point_at_the_value() {
    let s = TestStore::new();
    let cases = [
        ("name = \"a b\"\nversion = \"1\"\n", "r.toml:1:8:", "invalid name"),
        ("name = \"a\"\nversion = \"1\"\n[build]\nenv = { PATH = \"/x\" }\n", "r.toml:4:9:", "PATH is set by drv itself"),
        ("name = \"a\"\nversion = \"1\"\noutputs = [\"dev\"]\n", "r.toml:3:11:", "outputs must include \"out\""),
        ("name = \"a\"\nversion = \"1\"\n[[source]]\nurl = \"ftp://x/y\"\nsha256 = \"sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=\"\n", "r.toml:4:7:", "unsupported URL"),
        ("name = \"a\"\nversion = \"1\"\n[dependencies]\nbiuld = [\"x.toml\"]\n", "r.toml:4:1:", "did you mean `build`?"),
        ("name = \"a\"\nversion = \"1\"\n[toolchain]\ndebian = [\"GCC!\"]\n", "r.toml:4:10:", "not a Debian package name"),
    ];
    for (text, location, message) in cases {
        let recipe = s.scratch("r.toml");
        fs::write(&recipe, text).unwrap();
        let err = eval_error(&s, recipe.to_str().unwrap());
        assert!(err.contains(location) && err.contains(message), "{text:?}: {err}");
    }
}

const RECIPES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/recipes");

/// The toolchain of dash and coreutils from `tests/recipes/drv.lock`: 18
/// pinned `.deb` downloads and the derivation that assembles them.
const TOOLCHAIN_DERIVATIONS: usize = 18 + 1;

#[test]
fn eval_show_derivation_and_graph() {
    let s = TestStore::new();
    let top = format!("{RECIPES}/top.toml");
    let drv = s.ok(&["eval", &top]);
    let drv = drv.trim();
    assert!(drv.starts_with("/store/") && drv.ends_with("-top-0.3.drv"), "{drv}");
    // evaluating again gives the same path and writes nothing new
    let before = s.snapshot();
    assert_eq!(s.ok(&["eval", &top]).trim(), drv);
    assert_eq!(s.snapshot(), before);

    let json: serde_json::Value = serde_json::from_str(&s.ok(&["eval", "--json", &top])).unwrap();
    assert_eq!(json["drvPath"], drv);
    assert_eq!(json["derivations"].as_object().unwrap().len(), 6 + TOOLCHAIN_DERIVATIONS);
    assert_eq!(json["tests"].as_array().unwrap().len(), 1);

    let show: serde_json::Value = serde_json::from_str(&s.ok(&["show-derivation", drv])).unwrap();
    let me = &show[drv];
    assert_eq!(me["builder"], "/bin/sh");
    assert!(me["env"]["drvToolchain"].as_str().unwrap().ends_with("-bookworm-toolchain"));
    assert_eq!(me["inputDrvs"].as_object().unwrap().len(), 4, "middle, the download, the toolchain and its test's inputs");
    let from_recipe: serde_json::Value = serde_json::from_str(&s.ok(&["show-derivation", &top])).unwrap();
    assert_eq!(from_recipe, show);
    let all: serde_json::Value = serde_json::from_str(&s.ok(&["show-derivation", "-r", drv])).unwrap();
    assert_eq!(all.as_object().unwrap().len(), 5 + TOOLCHAIN_DERIVATIONS, "top, middle, base, two downloads and the toolchain");

    let graph: serde_json::Value = serde_json::from_str(&s.ok(&["graph", "--format", "json", &top])).unwrap();
    assert_eq!(graph["nodes"].as_array().unwrap().len(), 6 + TOOLCHAIN_DERIVATIONS);
    let dot = s.ok(&["graph", &top]);
    assert!(dot.starts_with("digraph") && dot.contains("->"), "{dot}");
    // the toolchain is a derivation of drv's own builder over the pinned
    // .debs; built, it holds a manifest of what is inside
    let toolchain = me["env"]["drvToolchain"].as_str().unwrap();
    let (toolchain_drv, t) = all.as_object().unwrap().iter().find(|(_, d)| d["outputs"]["out"]["path"] == toolchain).unwrap();
    assert_eq!(t["builder"], "builtin:debian-rootfs");
    assert_eq!(t["inputDrvs"].as_object().unwrap().len(), 18);
    assert_eq!(t["env"]["debs"].as_str().unwrap().split(' ').count(), 18);
    assert_eq!(s.ok(&["build", "--no-link", toolchain_drv]).trim(), toolchain);
    let manifest = s.root().join(toolchain.trim_start_matches('/')).join(".drv-toolchain.json");
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    let names: Vec<&str> = m["packages"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"dash") && names.contains(&"coreutils") && names.len() == 18, "{names:?}");
}

#[test]
fn an_unknown_debian_package_is_a_clear_error() {
    let s = TestStore::new();
    let recipe = s.scratch("r.toml");
    fs::write(&recipe, "name = \"a\"\nversion = \"1\"\n[toolchain]\ndebian = [\"dash\", \"no-such-package-drv-test\"]\n").unwrap();
    // without a lock file, drv's built-in lock: say so, and which file
    // `drv lock` would make
    let err = eval_error(&s, recipe.to_str().unwrap());
    assert!(err.contains("built-in lock") && err.contains("drv lock` makes") && err.contains("drv.lock"), "{err}");
    // with one that does not cover the name: point at the name in the list
    common::write_lock(&s.scratch(""));
    let err = eval_error(&s, recipe.to_str().unwrap());
    assert!(err.contains("r.toml:4:19") && err.contains("\"no-such-package-drv-test\"") && err.contains("drv lock"), "{err}");
}

const SHOWCASE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../recipes/flask_app.toml");
/// Every derivation of the showcase, with its outputs: the paths any host
/// must compute. A change of any of them is a visible diff in review.
const SHOWCASE_GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/showcase.derivations");

/// `drv eval --json` as sorted lines `DRV OUTPUT=PATH…`, without the
/// recipes' file paths (which depend on where the checkout is).
fn derivation_lines(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut lines: Vec<String> = v["derivations"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(drv, d)| {
            let outs: Vec<String> =
                d["outputs"].as_object().unwrap().iter().map(|(o, p)| format!("{o}={}", p.as_str().unwrap())).collect();
            format!("{drv} {}", outs.join(" "))
        })
        .collect();
    lines.sort();
    lines.join("\n") + "\n"
}

/// The showcase evaluates to the committed derivations, and exactly the
/// same with the host's package database, alternatives and apt settings
/// hidden (empty directories over them in a mount namespace): nothing of
/// the host's packages decides a path.
#[test]
fn the_showcase_evaluates_the_same_without_the_hosts_package_database() {
    let s = TestStore::new();
    let here = derivation_lines(&s.ok(&["eval", "--json", SHOWCASE]));
    if std::env::var_os("DRV_UPDATE_GOLDEN").is_some() {
        fs::write(SHOWCASE_GOLDEN, &here).unwrap();
    }
    let golden = fs::read_to_string(SHOWCASE_GOLDEN).unwrap();
    assert!(
        here == golden,
        "the showcase's derivations differ from {SHOWCASE_GOLDEN}; rerun with DRV_UPDATE_GOLDEN=1 if intended:\n{here}"
    );

    let hidden = tempfile::tempdir().unwrap();
    let script = "set -e; for d in /var/lib/dpkg /etc/alternatives /etc/apt; do \
                  [ -d $d ] && mount -t tmpfs none $d; done; \
                  [ -z \"$(ls /var/lib/dpkg)\" ]; exec \"$0\" --root \"$1\" eval --json \"$2\"";
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--map-root-user", "sh", "-c", script, env!("CARGO_BIN_EXE_drv")])
        .arg(hidden.path())
        .arg(SHOWCASE)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(derivation_lines(&String::from_utf8(out.stdout).unwrap()), golden);
}

/// A recipe with no `drv.lock` at or above its directory (tried out
/// anywhere) gets drv's built-in lock, the one of drv's own recipes: the
/// same toolchain as the showcase, and still no host package involved.
#[test]
fn a_recipe_without_a_lock_uses_the_built_in_one() {
    let s = TestStore::new();
    let zlib = concat!(env!("CARGO_MANIFEST_DIR"), "/../../recipes/zlib.toml");
    let toolchain_of = |recipe: &str| {
        let v: serde_json::Value = serde_json::from_str(&s.ok(&["show-derivation", recipe])).unwrap();
        v.as_object().unwrap().values().next().unwrap()["env"]["drvToolchain"].as_str().unwrap().to_owned()
    };
    let adhoc = s.scratch("adhoc.toml");
    let packages = r#"["gcc", "binutils", "make", "libc6-dev", "coreutils", "dash", "sed", "grep", "mawk", "diffutils", "findutils", "tar", "bzip2", "gzip", "xz-utils"]"#;
    fs::write(&adhoc, format!("name = \"adhoc\"\nversion = \"1\"\n[toolchain]\ndebian = {packages}\n[build]\nscript = 'true'\n")).unwrap();
    assert_eq!(toolchain_of(adhoc.to_str().unwrap()), toolchain_of(zlib));
    let graph: serde_json::Value = serde_json::from_str(&s.ok(&["graph", "--format", "json", adhoc.to_str().unwrap()])).unwrap();
    assert!(graph.to_string().contains("built-in lock"), "{graph}");
}

/// Recipes Nix refuses at instantiation (prim_derivationStrict in
/// src/libexpr/primops.cc, src/libstore/derivations.cc) or that no
/// `execve` can pass are refused by `drv eval`, at their line, and
/// nothing reaches the store.
#[test]
fn recipes_nix_would_refuse_are_refused_at_their_line() {
    let s = TestStore::new();
    let big = "x".repeat(128 * 1024);
    let a200 = "a".repeat(200);
    let b190 = "b".repeat(190);
    let c200 = "c".repeat(200);
    let cases: Vec<(String, &str, &str)> = vec![
        ("name = \"a\"\nversion = \"1\"\noutputs = [\"out\", \"dev\", \"dev\"]\n".into(), "r.toml:3:26:", "duplicate output \"dev\""),
        ("name = \"a\"\nversion = \"1\"\noutputs = [\"out\", \"drv\"]\n".into(), "r.toml:3:19:", "invalid output name \"drv\""),
        ("name = \"a\"\nversion = \"1\"\n[build]\nenv = { Z = \"a\\u0000b\" }\nscript = \"true\"\n".into(), "r.toml:4:13:", "the value of Z contains a NUL byte"),
        ("name = \"a\"\nversion = \"1\"\n[build]\nscript = \"a\\u0000b\"\n".into(), "r.toml:4:10:", "build.script contains a NUL byte"),
        ("name = \"a\"\nversion = \"1\"\n[[test]]\nname = \"t\"\nscript = \"a\\u0000b\"\n".into(), "r.toml:5:10:", "test's script contains a NUL byte"),
        (format!("name = \"a\"\nversion = \"1\"\n[build]\nenv = {{ BIG = \"{big}\" }}\n"), "r.toml:4:15:", "the value of BIG is 131072 bytes: over Linux's limit of 131072 bytes"),
        (format!("name = \"{a200}\"\nversion = \"1.0.0.00\"\n"), "r.toml:1:8:", "is too long: it is 213 characters long; Nix allows at most 211"),
        (format!("name = \"{b190}\"\nversion = \"1\"\n[[test]]\nname = \"smoke-test-long\"\nscript = \"true\"\n"), "r.toml:4:8:", "the .drv file of this test"),
        (format!("name = \"{c200}\"\nversion = \"1\"\noutputs = [\"out\", \"documentation\"]\n"), "r.toml:3:19:", "output documentation"),
        ("name = \"a\"\nversion = \"1\"\n[[test]]\nname = \"a b\"\nscript = \"true\"\n".into(), "r.toml:4:8:", "contains ' '"),
    ];
    for (text, location, message) in cases {
        let recipe = s.scratch("r.toml");
        fs::write(&recipe, &text).unwrap();
        let err = eval_error(&s, recipe.to_str().unwrap());
        assert!(err.contains(location) && err.contains(message), "{}: {err}", &text[..text.len().min(80)]);
    }
    assert_eq!(fs::read_dir(s.root().join("store")).map(|d| d.count()).unwrap_or(0), 0);
}

/// A `path` source is in or below the recipe's directory once symlinks
/// are resolved: nothing else of the host reaches the store.
#[test]
fn path_sources_outside_the_recipe_directory_are_refused() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let s = TestStore::new();
    let secret = s.scratch("secret");
    fs::create_dir_all(&secret).unwrap();
    fs::write(secret.join("key"), "private key material\n").unwrap();
    fs::set_permissions(secret.join("key"), fs::Permissions::from_mode(0o600)).unwrap();
    let proj = s.scratch("proj");
    fs::create_dir_all(proj.join("sub")).unwrap();
    symlink(secret.join("key"), proj.join("sneaky")).unwrap();
    symlink(&secret, proj.join("sub/outside")).unwrap();
    fs::write(proj.join("sub/data.txt"), "mine\n").unwrap();
    let absolute = secret.join("key");
    let refused = [
        ("../secret/key", "outside the recipe's directory"),
        ("sub/../../secret/key", "outside the recipe's directory"),
        (absolute.to_str().unwrap(), "is absolute"),
        ("sneaky", "outside the recipe's directory"),
        ("sub/outside/key", "outside the recipe's directory"),
        ("missing.txt", "No such file"),
    ];
    for (spec, message) in refused {
        let recipe = proj.join("r.toml");
        fs::write(&recipe, format!("name = \"leak\"\nversion = \"1\"\n[[source]]\npath = \"{spec}\"\n")).unwrap();
        let err = eval_error(&s, recipe.to_str().unwrap());
        assert!(err.contains("r.toml:4:8:") && err.contains(message), "{spec}: {err}");
    }
    assert_eq!(fs::read_dir(s.root().join("store")).map(|d| d.count()).unwrap_or(0), 0, "a refused source reached the store");

    // In and below the directory, `..` that stays inside included.
    for spec in ["sub/data.txt", "sub/../sub/data.txt", "."] {
        let recipe = proj.join("r.toml");
        fs::write(&recipe, format!("name = \"mine\"\nversion = \"1\"\n[[source]]\npath = \"{spec}\"\n")).unwrap();
        s.ok(&["eval", recipe.to_str().unwrap()]);
    }
}
