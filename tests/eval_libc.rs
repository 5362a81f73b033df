//! Evaluation of recipes that link C code, strip, or are `[prebuilt]`
//! (issue #14): the C library derivation made from the lock and
//! `$DRV_LIBC`, the `debug` output and strip phase of a toolchain with
//! binutils, `[prebuilt]` derivations and their `runpath`, and the errors.
//! The lock is written by hand with made-up hashes: evaluation downloads
//! nothing, so nothing checks them. Offline and fast.

mod common;

use std::fs;
use std::path::Path;

use common::TestStore;
use drv_eval::Evaluation;
use drv_formats::{Derivation, StoreDir, StorePath};
use drv_store::LocalStore;

/// The C library's version in the lock: an epoch and a `~`, which a
/// store name cannot hold.
const LIBC_VERSION: &str = "1:2.36-9+deb12u10~test1";
const GLIBC_NAME: &str = "glibc-1_2.36-9+deb12u10_test1";

/// `(name, version, depends)` of every package of the test lock.
const PACKAGES: &[(&str, &str, &[&str])] = &[
    ("binutils", "2.40-2", &["libc6"]),
    ("coreutils", "9.1-1", &["libc6"]),
    ("dash", "0.5.12-2", &["libc6"]),
    ("dpkg", "1.21.22", &["libc6", "tar"]),
    ("findutils", "4.9.0-4", &["libc6"]),
    ("g++", "4:12.2.0-3", &["libc6", "libstdc++6"]),
    ("libbar1", "2.0-1", &["libc6"]),
    ("libc6", LIBC_VERSION, &["libgcc-s1"]),
    ("libc6-dev", LIBC_VERSION, &["libc6"]),
    ("libfoo-dev", "1.0-1", &["libc6-dev", "libfoo1"]),
    ("libfoo1", "1.0-1", &["libbar1", "libc6"]),
    ("libgcc-s1", "12.2.0-14", &["libc6"]),
    ("libstdc++6", "12.2.0-14", &["libc6", "libgcc-s1"]),
    ("patchelf", "0.14.3-1", &["libc6"]),
    ("sed", "4.9-1", &["libc6"]),
    ("tar", "1.34+dfsg-1.2", &["libc6"]),
];

/// A lock of `packages`, in the format `drv lock` writes.
fn lock_text(packages: &[(&str, &str, &[&str])]) -> String {
    let mut s = String::from(
        "version = 1\n\n[debian]\narchitecture = \"amd64\"\nsuite = \"bookworm\"\n\n\
         [[debian.repository]]\nsuite = \"bookworm\"\nmirror = \"debian\"\ndate = \"Sat, 01 Nov 2025 00:00:00 UTC\"\n",
    );
    for (i, (name, version, depends)) in packages.iter().enumerate() {
        let file_version = version.split_once(':').map_or(*version, |(_, v)| v);
        let depends: Vec<String> = depends.iter().map(|d| format!("{d:?}")).collect();
        s.push_str(&format!(
            "\n[[debian.package]]\nname = {name:?}\nversion = {version:?}\narchitecture = \"amd64\"\nrepository = \"bookworm\"\n\
             path = \"pool/main/x/{name}/{name}_{file_version}_amd64.deb\"\nsize = {}\nsha256 = \"{:064x}\"\ndepends = [{}]\n",
            1000 + i,
            i + 1,
            depends.join(", ")
        ));
    }
    s
}

/// A folder with the test lock and the given recipes.
fn recipes(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("drv.lock"), lock_text(PACKAGES)).unwrap();
    for (name, text) in files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

struct Evaluated {
    store: LocalStore,
    eval: Evaluation,
    _root: tempfile::TempDir,
}

fn evaluate(recipe: &Path) -> Evaluated {
    let root = tempfile::tempdir().unwrap();
    let mut store = LocalStore::open(root.path(), StoreDir::default()).unwrap();
    let eval = drv_eval::evaluate(recipe, &mut store).unwrap_or_else(|e| panic!("{}: {e}", recipe.display()));
    Evaluated { store, eval, _root: root }
}

impl Evaluated {
    fn drv(&self, path: &StorePath) -> &Derivation {
        &self.eval.derivations[path].0
    }

    fn root(&self) -> &Derivation {
        self.drv(&self.eval.root)
    }

    /// The one derivation named `name` (without `.drv`).
    fn named(&self, name: &str) -> (&StorePath, &Derivation) {
        let found: Vec<_> = self.eval.derivations.iter().filter(|(_, (d, _))| d.name() == name).map(|(p, (d, _))| (p, d)).collect();
        assert_eq!(found.len(), 1, "{name}: {:?}", self.eval.derivations.keys().collect::<Vec<_>>());
        found[0]
    }

    fn out(&self, drv: &Derivation) -> String {
        self.store.display(&drv.outputs()["out"].path)
    }

    /// The derivations whose names start with `glibc-`.
    fn glibcs(&self) -> Vec<&StorePath> {
        self.eval.derivations.iter().filter(|(_, (d, _))| d.name().starts_with("glibc-")).map(|(p, _)| p).collect()
    }
}

fn env<'a>(drv: &'a Derivation, key: &str) -> Option<&'a str> {
    drv.env().get(key).map(|v| std::str::from_utf8(v).unwrap())
}

fn outputs(drv: &Derivation) -> Vec<String> {
    drv.outputs().keys().cloned().collect()
}

/// The script the builder runs (`/bin/sh -e -c SCRIPT`).
fn script(drv: &Derivation) -> &str {
    assert_eq!(&drv.args()[..2], ["-e", "-c"], "{:?}", drv.args());
    &drv.args()[2]
}

fn recipe(name: &str, toolchain: &[&str], rest: &str) -> String {
    let names: Vec<String> = toolchain.iter().map(|n| format!("{n:?}")).collect();
    format!("name = {name:?}\nversion = \"1.0\"\n\n[toolchain]\ndebian = [{}]\n{rest}", names.join(", "))
}

const INSTALL: &str = "\n[build]\ninstall = 'mkdir -p \"$out\"'\n";

#[test]
fn a_toolchain_with_libc6_dev_links_against_the_c_library_derivation() {
    let dir = recipes(&[
        ("c.toml", &recipe("c", &["dash", "coreutils", "libc6-dev"], &format!("{INSTALL}\n[[test]]\nname = \"t\"\nscript = 'true'\n"))),
        ("plain.toml", &recipe("plain", &["dash", "coreutils"], INSTALL)),
        ("patch.toml", &recipe("patch", &["dash", "patchelf"], INSTALL)),
    ]);
    let e = evaluate(&dir.path().join("c.toml"));
    let (glibc_drv, glibc) = e.named(GLIBC_NAME);
    let glibc_out = e.out(glibc);
    assert_eq!(env(e.root(), "DRV_LIBC"), Some(glibc_out.as_str()));
    assert!(e.root().input_derivations().contains_key(glibc_drv), "the C library is an input");
    // the test runs what was linked, so it gets the C library too
    let test = e.drv(&e.eval.tests[0]);
    assert_eq!(env(test, "DRV_LIBC"), Some(glibc_out.as_str()));
    assert!(test.input_derivations().contains_key(glibc_drv));

    // the C library: exactly libc6 and libgcc-s1, with no runpath of its own
    assert_eq!(env(glibc, "name"), Some(GLIBC_NAME));
    assert!(env(glibc, "runpath").is_none(), "{:?}", env(glibc, "runpath"));
    let debs: Vec<&str> = env(glibc, "debs").unwrap().split(' ').collect();
    assert_eq!(debs.len(), 2, "{debs:?}");
    assert!(debs[0].ends_with("-libc6_2.36-9+deb12u10_test1_amd64.deb"), "{debs:?}");
    assert!(debs[1].ends_with("-libgcc-s1_12.2.0-14_amd64.deb"), "{debs:?}");
    assert_eq!(outputs(glibc), ["out"]);
    assert_eq!(env(glibc, "multiarch"), Some("x86_64-linux-gnu"));
    assert!(script(glibc).contains("dpkg-deb -x"));
    // made by the prebuilt toolchain: the two .debs and that toolchain
    let toolchain = env(glibc, "drvToolchain").unwrap();
    let (_, tc) = e.eval.derivations.iter().map(|(p, (d, _))| (p, d)).find(|(_, d)| e.out(d) == toolchain).unwrap();
    let tc_debs = env(tc, "debs").unwrap();
    for name in drv_eval::PREBUILT_TOOLCHAIN.iter().chain(["libc6", "libgcc-s1"].iter()) {
        assert!(tc_debs.contains(&format!("-{name}_")), "{name} not in the prebuilt toolchain: {tc_debs}");
    }
    assert_eq!(glibc.input_derivations().len(), 3);
    assert!(!tc_debs.contains("libc6-dev"), "{tc_debs}");

    // patchelf sets RUNPATH to the C library's lib, so it gets it too
    let e = evaluate(&dir.path().join("patch.toml"));
    let (glibc_drv, glibc) = e.named(GLIBC_NAME);
    assert_eq!(env(e.root(), "DRV_LIBC"), Some(e.out(glibc).as_str()));
    assert!(e.root().input_derivations().contains_key(glibc_drv));

    let e = evaluate(&dir.path().join("plain.toml"));
    assert!(env(e.root(), "DRV_LIBC").is_none());
    assert!(e.glibcs().is_empty(), "no C library derivation without libc6-dev");
    assert!(!e.root().input_derivations().keys().any(|p| p.name().starts_with("glibc-")));
}

#[test]
fn binutils_in_the_toolchain_closure_adds_a_debug_output_and_the_strip_phase() {
    let dir = recipes(&[
        ("strip.toml", &recipe("strip", &["dash", "binutils"], INSTALL)),
        ("nostrip.toml", &recipe("nostrip", &["dash", "coreutils"], INSTALL)),
        ("declared.toml", &format!("outputs = [\"out\", \"debug\"]\n{}", recipe("declared", &["binutils"], INSTALL))),
        ("dev.toml", &format!("outputs = [\"out\", \"dev\"]\n{}", recipe("dev", &["binutils"], INSTALL))),
        ("script.toml", &recipe("script", &["binutils"], "\n[build]\nscript = 'mkdir -p \"$out\"'\n")),
        ("plainscript.toml", &recipe("plainscript", &["dash"], "\n[build]\nscript = 'mkdir -p \"$out\"'\n")),
    ]);
    let strip_phase = "echo 'drv: strip phase'";

    let e = evaluate(&dir.path().join("strip.toml"));
    assert_eq!(outputs(e.root()), ["debug", "out"]);
    assert_eq!(env(e.root(), "outputs"), Some("out debug"));
    let s = script(e.root());
    assert!(s.contains("drv: install phase") && s.contains(strip_phase), "{s}");
    assert!(s.find("drv: install phase").unwrap() < s.find(strip_phase).unwrap(), "strip after install: {s}");
    assert!(s.contains("objcopy --only-keep-debug") && s.contains("strip --strip-debug"), "{s}");
    assert!(env(e.root(), "debug").is_some_and(|d| d.ends_with("-strip-1.0-debug")));

    let e = evaluate(&dir.path().join("nostrip.toml"));
    assert_eq!(outputs(e.root()), ["out"]);
    assert_eq!(env(e.root(), "outputs"), Some("out"));
    assert!(!script(e.root()).contains("strip phase"), "{}", script(e.root()));

    // declared already: once, where the recipe put it
    let e = evaluate(&dir.path().join("declared.toml"));
    assert_eq!(outputs(e.root()), ["debug", "out"]);
    assert_eq!(env(e.root(), "outputs"), Some("out debug"));
    assert_eq!(script(e.root()).matches(strip_phase).count(), 1);

    let e = evaluate(&dir.path().join("dev.toml"));
    assert_eq!(outputs(e.root()), ["debug", "dev", "out"]);
    assert_eq!(env(e.root(), "outputs"), Some("out dev debug"));

    // a whole script, then the strip phase
    let e = evaluate(&dir.path().join("script.toml"));
    assert_eq!(outputs(e.root()), ["debug", "out"]);
    let s = script(e.root());
    assert!(s.starts_with("mkdir -p \"$out\"\n") && s.contains(strip_phase), "{s}");
    // without binutils the script is the recipe's, byte for byte
    let e = evaluate(&dir.path().join("plainscript.toml"));
    assert_eq!(script(e.root()), "mkdir -p \"$out\"");
}

#[test]
fn a_prebuilt_recipe_is_its_named_packages_with_a_runpath() {
    let dir = recipes(&[
        ("bar.toml", "name = \"bar\"\nversion = \"2.0\"\n[prebuilt]\ndebian = [\"libbar1\"]\n"),
        ("foo.toml", "name = \"foo\"\nversion = \"1.0\"\n[prebuilt]\ndebian = [\"libfoo1\", \"libfoo-dev\"]\n[dependencies]\nrun = [\"bar.toml\"]\n"),
        ("app.toml", &recipe("app", &["dash", "libc6-dev"], &format!("[dependencies]\nbuild = [\"foo.toml\"]\n{INSTALL}"))),
    ]);
    let e = evaluate(&dir.path().join("foo.toml"));
    let foo = e.root();
    assert_eq!(foo.name(), "foo-1.0");
    assert_eq!(outputs(foo), ["out"]);
    assert!(script(foo).contains("patchelf --set-rpath"));
    // exactly the named packages' .debs, in the order named; not libbar1 or libc6
    let debs: Vec<&str> = env(foo, "debs").unwrap().split(' ').collect();
    assert_eq!(debs.len(), 2, "{debs:?}");
    assert!(debs[0].ends_with("-libfoo1_1.0-1_amd64.deb") && debs[1].ends_with("-libfoo-dev_1.0-1_amd64.deb"), "{debs:?}");
    for deb in &debs {
        let (_, fetch) = e.eval.derivations.iter().map(|(p, (d, _))| (p, d)).find(|(_, d)| e.out(d) == *deb).unwrap();
        assert!(fetch.is_fixed_output(), "{deb}");
    }
    // runpath: the run dependencies' lib, then the C library's
    let (bar_drv, bar) = e.named("bar-2.0");
    let (glibc_drv, glibc) = e.named(GLIBC_NAME);
    let expected = format!("{}/lib:{}/lib", e.out(bar), e.out(glibc));
    assert_eq!(env(foo, "runpath"), Some(expected.as_str()));
    assert!(foo.input_derivations().contains_key(bar_drv) && foo.input_derivations().contains_key(glibc_drv));
    // bar has only the C library in its runpath; glibc none
    assert_eq!(env(bar, "runpath"), Some(format!("{}/lib", e.out(glibc)).as_str()));
    assert_eq!(env(bar, "debs").unwrap().split(' ').count(), 1);
    assert!(env(glibc, "runpath").is_none());
    // one C library for all of them
    assert_eq!(e.glibcs().len(), 1);
    // no recipe toolchain, no DRV_LIBC: the prebuilt builder does not compile
    assert!(env(foo, "DRV_LIBC").is_none());

    // a recipe building against it gets its paths and the same C library
    let e = evaluate(&dir.path().join("app.toml"));
    let (foo_drv, foo) = e.named("foo-1.0");
    let foo_out = e.out(foo);
    assert!(e.root().input_derivations().contains_key(foo_drv));
    assert!(env(e.root(), "LDFLAGS").unwrap().contains(&format!("-Wl,-rpath,{foo_out}/lib")));
    let (_, glibc) = e.named(GLIBC_NAME);
    assert_eq!(env(e.root(), "DRV_LIBC"), Some(e.out(glibc).as_str()));
    assert_eq!(e.glibcs().len(), 1);
}

#[test]
fn evaluation_of_a_prebuilt_recipe_is_deterministic() {
    let dir = recipes(&[("foo.toml", "name = \"foo\"\nversion = \"1.0\"\n[prebuilt]\ndebian = [\"libfoo1\"]\n")]);
    let a = evaluate(&dir.path().join("foo.toml"));
    let b = evaluate(&dir.path().join("foo.toml"));
    assert_eq!(a.eval.root, b.eval.root);
    assert_eq!(a.eval.derivations.keys().collect::<Vec<_>>(), b.eval.derivations.keys().collect::<Vec<_>>());
}

// ---- errors, as `drv eval` shows them -------------------------------------

fn eval_error(s: &TestStore, recipe: &Path) -> String {
    let err = s.fails(&["eval", recipe.to_str().unwrap()]);
    assert!(!err.contains("panicked"), "{err}");
    common::diagnostic_line(&err)
}

#[test]
fn prebuilt_cannot_be_combined_with_a_build() {
    let s = TestStore::new();
    let head = "name = \"p\"\nversion = \"1\"\n[prebuilt]\ndebian = [\"libfoo1\"]\n";
    let cases = [
        ("[build]\ninstall = 'true'\n", "[build]"),
        ("[build]\nscript = 'true'\n", "[build]"),
        ("[build]\nenv = { A = \"1\" }\n", "[build]"),
        ("[[source]]\nurl = \"https://127.0.0.1:9/a.tar.gz\"\nsha256 = \"sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=\"\n", "[[source]]"),
        ("[toolchain]\ndebian = [\"dash\"]\n", "[toolchain]"),
        ("[[test]]\nname = \"t\"\nscript = 'true'\n", "[[test]]"),
    ];
    for (rest, what) in cases {
        let dir = recipes(&[("p.toml", &format!("{head}{rest}"))]);
        let err = eval_error(&s, &dir.path().join("p.toml"));
        assert!(err.contains("p.toml:4:10:"), "{rest:?}: {err}");
        assert!(err.contains(&format!("a [prebuilt] recipe is made from its Debian packages alone; it cannot also have {what}")), "{rest:?}: {err}");
    }
    let dir = recipes(&[("p.toml", "name = \"p\"\nversion = \"1\"\noutputs = [\"out\", \"dev\"]\n[prebuilt]\ndebian = [\"libfoo1\"]\n")]);
    let err = eval_error(&s, &dir.path().join("p.toml"));
    assert!(err.contains("p.toml:5:10:") && err.contains("cannot also have outputs"), "{err}");
}

#[test]
fn prebuilt_names_are_checked() {
    let s = TestStore::new();
    let dir = recipes(&[
        ("empty.toml", "name = \"p\"\nversion = \"1\"\n[prebuilt]\ndebian = []\n"),
        ("bad.toml", "name = \"p\"\nversion = \"1\"\n[prebuilt]\ndebian = [\"Foo!\"]\n"),
        ("missing.toml", "name = \"p\"\nversion = \"1\"\n[prebuilt]\ndebian = [\"libfoo1\", \"libnothere3\"]\n"),
        ("typo.toml", "name = \"p\"\nversion = \"1\"\n[prebuilt]\ndebian = [\"libfoo2\"]\n"),
    ]);
    let err = eval_error(&s, &dir.path().join("empty.toml"));
    assert!(err.contains("empty.toml:4:10:") && err.contains("prebuilt.debian is empty"), "{err}");
    let err = eval_error(&s, &dir.path().join("bad.toml"));
    assert!(err.contains("bad.toml:4:10:") && err.contains("\"Foo!\" is not a Debian package name"), "{err}");
    let err = eval_error(&s, &dir.path().join("missing.toml"));
    assert!(err.contains("missing.toml:4:22:") && err.contains("\"libnothere3\"") && err.contains("run `drv lock`"), "{err}");
    let err = eval_error(&s, &dir.path().join("typo.toml"));
    assert!(err.contains("typo.toml:4:11:") && err.contains("did you mean \"libfoo1\"?"), "{err}");
    assert_eq!(fs::read_dir(s.root().join("store")).map(|d| d.count()).unwrap_or(0), 0, "nothing written");
}

/// A lock without `without`; a dependency edge to it is dropped so that
/// the lock stays closed.
fn lock_without(without: &str) -> String {
    let packages: Vec<(&str, &str, Vec<&str>)> = PACKAGES
        .iter()
        .filter(|(n, _, _)| *n != without)
        .map(|(n, v, d)| (*n, *v, d.iter().copied().filter(|d| *d != without).collect()))
        .collect();
    let borrowed: Vec<(&str, &str, &[&str])> = packages.iter().map(|(n, v, d)| (*n, *v, d.as_slice())).collect();
    lock_text(&borrowed)
}

#[test]
fn the_packages_the_c_library_needs_must_be_locked() {
    let s = TestStore::new();
    for missing in ["libc6", "libgcc-s1", "patchelf"] {
        let dir = recipes(&[
            ("c.toml", &recipe("c", &["dash", "libc6-dev"], INSTALL)),
            ("p.toml", "name = \"p\"\nversion = \"1\"\n[prebuilt]\ndebian = [\"libbar1\"]\n"),
            ("plain.toml", &recipe("plain", &["dash"], INSTALL)),
        ]);
        fs::write(dir.path().join("drv.lock"), lock_without(missing)).unwrap();
        let err = eval_error(&s, &dir.path().join("c.toml"));
        assert!(err.contains("c.toml:5:10:") && err.contains(&format!("{missing:?}")) && err.contains("run `drv lock`"), "{missing}: {err}");
        let err = eval_error(&s, &dir.path().join("p.toml"));
        assert!(err.contains("p.toml:4:10:") && err.contains(&format!("{missing:?}")), "{missing}: {err}");
        // a recipe that links nothing does not need them
        s.ok(&["eval", dir.path().join("plain.toml").to_str().unwrap()]);
    }
}

// ---- drv lock --check -------------------------------------------------------

#[test]
fn lock_check_reports_what_a_prebuilt_recipe_needs() {
    let s = TestStore::new();
    let dir = recipes(&[("p.toml", "name = \"p\"\nversion = \"1\"\n[prebuilt]\ndebian = [\"libfoo1\", \"libqux0\"]\n")]);
    let check = |dir: &Path| s.cmd().current_dir(dir).args(["lock", "--check"]).output().unwrap();
    let out = check(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("p.toml: Debian package \"libqux0\" is not in drv.lock"), "{stderr}");
    assert!(!stderr.contains("\"libfoo1\""), "{stderr}");

    // what the C library needs, though the recipe does not name it
    fs::write(dir.path().join("p.toml"), "name = \"p\"\nversion = \"1\"\n[prebuilt]\ndebian = [\"libfoo1\"]\n").unwrap();
    assert!(check(dir.path()).status.success());
    fs::write(dir.path().join("drv.lock"), lock_without("patchelf")).unwrap();
    let out = check(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("p.toml: Debian package \"patchelf\" is not in drv.lock"), "{stderr}");
}


#[test]
fn a_toolchain_with_gxx_gets_the_cxx_library_too() {
    let dir = recipes(&[
        ("cxx.toml", &recipe("cxx", &["dash", "coreutils", "g++", "libc6-dev"], INSTALL)),
        ("c.toml", &recipe("c", &["dash", "coreutils", "libc6-dev"], INSTALL)),
    ]);
    let e = evaluate(&dir.path().join("cxx.toml"));
    let (glibc_drv, glibc) = e.named(GLIBC_NAME);
    let (cxx_drv, cxx) = e.named("libstdc++-12.2.0-14");
    assert_eq!(env(e.root(), "DRV_LIBC"), Some(e.out(glibc).as_str()));
    assert_eq!(env(e.root(), "DRV_LIBCXX"), Some(e.out(cxx).as_str()));
    assert!(e.root().input_derivations().contains_key(cxx_drv));
    // libstdc++ alone, its RUNPATH over the C library, which it depends on
    let debs: Vec<&str> = env(cxx, "debs").unwrap().split(' ').collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    assert!(debs[0].ends_with("-libstdc++6_12.2.0-14_amd64.deb"), "{debs:?}");
    assert_eq!(env(cxx, "runpath"), Some(format!("{}/lib", e.out(glibc)).as_str()));
    assert!(cxx.input_derivations().contains_key(glibc_drv));

    let e = evaluate(&dir.path().join("c.toml"));
    assert!(env(e.root(), "DRV_LIBCXX").is_none());
    assert!(!e.eval.derivations.values().any(|(d, _)| d.name().starts_with("libstdc++-")));
}
