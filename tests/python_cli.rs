//! `[python]` recipes, run as a user runs them: distributions made here
//! (wheels, an sdist, a PEP 517 backend) on a simple index on 127.0.0.1,
//! `drv lock` choosing each package's file for the test interpreter
//! (Debian's CPython 3.11 on glibc 2.36), `drv build` and `drv run`.
//! Requirements files, pylock.toml and uv.lock; the refusals of each step.
//! Offline.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

use common::python::{requirement, sdist, Dist, SimpleIndex, Wheel};
use common::{TestStore, FIXTURES};

/// The test interpreter's recipe (it builds in about a second).
fn interpreter() -> String {
    format!("{FIXTURES}/python/interpreter/python.toml")
}

/// The distributions the tests' index serves.
struct Dists {
    /// A console script `alpha` whose module imports beta.
    alpha: Dist,
    beta: Dist,
    /// gamma 1.0 as three wheels: only the first fits glibc 2.36 on x86_64.
    gamma_2_17: Dist,
    gamma_2_39: Dist,
    gamma_linux: Dist,
    /// A PEP 517 backend (`tests/fixtures/python/tinybackend.py`).
    tinybackend: Dist,
    /// An sdist built with tinybackend.
    delta: Dist,
}

fn gamma(tag: &str) -> Dist {
    // each wheel says which it is, so the environment shows the one installed
    let which = tag.rsplit('-').next().unwrap();
    Wheel::new("gamma", "1.0").tag(tag).file("gamma/__init__.py", format!("G = {which:?}\n").as_bytes()).build()
}

fn beta(version: &str) -> Dist {
    Wheel::new("beta", version).file("beta/__init__.py", format!("B = 'beta {version}'\n").as_bytes()).build()
}

fn dists() -> Dists {
    let backend = fs::read(format!("{FIXTURES}/python/tinybackend.py")).unwrap();
    Dists {
        alpha: Wheel::new("alpha", "1.0")
            .file("alpha/__init__.py", b"import sys\nfrom beta import B\n\ndef main():\n    print('alpha imports', B, 'in', sys.prefix)\n")
            .requires("beta>=2")
            .script("alpha", "alpha:main")
            .build(),
        beta: beta("2.0"),
        gamma_2_17: gamma("cp311-abi3-manylinux_2_17_x86_64"),
        gamma_2_39: gamma("cp311-abi3-manylinux_2_39_x86_64"),
        gamma_linux: gamma("cp311-cp311-linux_x86_64"),
        tinybackend: Wheel::new("tinybackend", "1.0").file("tinybackend.py", &backend).build(),
        delta: sdist(
            "delta",
            "1.0",
            &[
                ("pyproject.toml", b"[build-system]\nrequires = [\"tinybackend\"]\nbuild-backend = \"tinybackend\"\n"),
                ("delta.py", b"D = 'delta built from its sdist'\n"),
            ],
        ),
    }
}

impl Dists {
    fn all(&self) -> [&Dist; 7] {
        [&self.alpha, &self.beta, &self.gamma_2_17, &self.gamma_2_39, &self.gamma_linux, &self.tinybackend, &self.delta]
    }

    /// A requirements file in hash-checking mode pinning all of them.
    fn requirements(&self) -> String {
        let lines = [
            requirement(&[&self.alpha]),
            requirement(&[&self.beta]),
            requirement(&[&self.gamma_2_17, &self.gamma_2_39, &self.gamma_linux]),
            requirement(&[&self.tinybackend]),
            requirement(&[&self.delta]),
        ];
        lines.join("\n") + "\n"
    }
}

/// A recipe folder (with the tests' drv.lock), a store, and an index
/// serving [`dists`].
struct Project {
    s: TestStore,
    index: SimpleIndex,
    d: Dists,
    dir: PathBuf,
}

impl Project {
    fn new() -> Self {
        let s = TestStore::new();
        let index = SimpleIndex::start();
        let d = dists();
        for dist in d.all() {
            index.publish(dist);
        }
        let dir = s.scratch("recipes");
        common::write_lock(&dir);
        Self { s, index, d, dir }
    }

    fn write(&self, name: &str, text: &str) {
        fs::write(self.dir.join(name), text).unwrap();
    }

    /// `NAME.toml`: an environment of `lock`'s `packages` (all when `None`)
    /// whose main program is `main`.
    fn env(&self, name: &str, lock: &str, packages: Option<&[&str]>, main: &str) {
        let packages = packages.map(|p| format!("packages = {p:?}\n")).unwrap_or_default();
        let text = format!(
            "name = \"{name}\"\nversion = \"1\"\nmain = \"{main}\"\n\n[python]\ninterpreter = \"{}\"\nlock = \"{lock}\"\n{packages}",
            interpreter()
        );
        self.write(&format!("{name}.toml"), &text);
    }

    /// `drv` in the recipe folder, with the index as the `pypi` mirror.
    fn drv(&self) -> Command {
        let mut c = self.s.cmd();
        c.current_dir(&self.dir).env("DRV_MIRROR_PYPI", self.index.url());
        c
    }

    fn lock(&self, recipes: &[&str]) -> Output {
        let keyring = format!("{FIXTURES}/debian/keyring.gpg");
        self.drv().args(["lock", "--keyring", &keyring]).args(recipes).output().unwrap()
    }

    fn lock_ok(&self, recipes: &[&str]) -> String {
        let out = self.lock(recipes);
        assert!(out.status.success(), "drv lock failed:\n{}", text(&out.stderr));
        text(&out.stdout)
    }

    /// The error `drv lock` fails with.
    fn lock_fails(&self, recipes: &[&str]) -> String {
        let out = self.lock(recipes);
        assert!(!out.status.success(), "drv lock succeeded:\n{}", text(&out.stdout));
        text(&out.stderr)
    }

    /// `drv build --no-link RECIPE`: its output path and the progress lines.
    fn build(&self, recipe: &str) -> (String, String) {
        let out = self.drv().args(["build", "--no-link", recipe]).output().unwrap();
        assert!(out.status.success(), "drv build {recipe} failed:\n{}", text(&out.stderr));
        (text(&out.stdout).trim().to_owned(), text(&out.stderr))
    }

    fn run(&self, recipe: &str, args: &[&str]) -> String {
        let out = self.drv().args(["run", recipe, "--"]).args(args).output().unwrap();
        assert!(out.status.success(), "drv run {recipe} failed:\n{}", text(&out.stderr));
        text(&out.stdout)
    }

    /// The Python packages of `recipe` (`python3.11-NAME-VERSION`) with
    /// their .drv and output paths, from `drv eval --json`.
    fn packages(&self, recipe: &str) -> BTreeMap<String, (String, String)> {
        let out = self.drv().args(["eval", "--json", recipe]).output().unwrap();
        assert!(out.status.success(), "drv eval {recipe} failed:\n{}", text(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json["derivations"]
            .as_object()
            .unwrap()
            .iter()
            .filter_map(|(drv, d)| {
                let name = d["name"].as_str()?.strip_prefix("python3.11-")?;
                Some((name.to_owned(), (drv.clone(), d["outputs"]["out"].as_str()?.to_owned())))
            })
            .collect()
    }

    /// The physical location of a `/store/...` path.
    fn real(&self, logical: &str) -> PathBuf {
        self.s.root().join(logical.trim_start_matches('/'))
    }

    fn is_valid(&self, path: &str) -> bool {
        self.s.cmd().args(["path-info", path]).output().unwrap().status.success()
    }

    /// The pins `drv lock` recorded for `lock` (a Python lock file's name):
    /// package name to the file chosen.
    fn pinned_files(&self, lock: &str) -> BTreeMap<String, String> {
        let l = drv_debian::lock::Lock::read(&self.dir.join("drv.lock")).unwrap();
        l.python.packages.iter().filter(|p| p.lock == lock).map(|p| (p.name.clone(), p.file.clone())).collect()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What a build built: the `building NAME` lines.
fn built(progress: &str) -> BTreeSet<String> {
    progress.lines().filter_map(|l| l.strip_prefix("building ")).map(str::to_owned).collect()
}

/// A pylock.toml (PEP 751) of the same files, as uv would export it (URLs
/// on the index's file host; no `dependencies`, so drv reads them from the
/// wheels' METADATA).
fn pylock(p: &Project) -> String {
    let file = |d: &Dist| format!("{{ url = \"{}\", hashes = {{ sha256 = \"{}\" }} }}", p.index.file_url(&d.filename), d.sha256());
    let mut out = String::from("lock-version = \"1.0\"\ncreated-by = \"drv-tests\"\nrequires-python = \">=3.11\"\n");
    let d = &p.d;
    for (name, version, wheels, sdist) in [
        ("alpha", "1.0", vec![&d.alpha], None),
        ("beta", "2.0", vec![&d.beta], None),
        ("delta", "1.0", vec![], Some(&d.delta)),
        ("gamma", "1.0", vec![&d.gamma_2_17, &d.gamma_2_39, &d.gamma_linux], None),
        ("tinybackend", "1.0", vec![&d.tinybackend], None),
    ] {
        out.push_str(&format!("\n[[packages]]\nname = \"{name}\"\nversion = \"{version}\"\nindex = \"{}\"\n", p.index.url()));
        if let Some(s) = sdist {
            out.push_str(&format!("sdist = {}\n", file(s)));
        }
        if !wheels.is_empty() {
            out.push_str(&format!("wheels = [{}]\n", wheels.iter().map(|w| file(w)).collect::<Vec<_>>().join(", ")));
        }
    }
    out
}

/// A uv.lock (version 1) of the same files: a virtual project depending
/// on alpha, gamma and delta, and the dependency edges uv records.
fn uv_lock(p: &Project) -> String {
    let file = |d: &Dist| format!("{{ url = \"{}\", hash = \"sha256:{}\", size = {} }}", p.index.file_url(&d.filename), d.sha256(), d.bytes.len());
    let mut out = String::from(
        "version = 1\nrequires-python = \">=3.11\"\n\n[[package]]\nname = \"demo\"\nversion = \"0.1.0\"\nsource = { virtual = \".\" }\n\
         dependencies = [{ name = \"alpha\" }, { name = \"delta\" }, { name = \"gamma\" }]\n",
    );
    let d = &p.d;
    for (name, version, deps, wheels, sdist) in [
        ("alpha", "1.0", "[{ name = \"beta\" }]", vec![&d.alpha], None),
        ("beta", "2.0", "[]", vec![&d.beta], None),
        ("delta", "1.0", "[]", vec![], Some(&d.delta)),
        ("gamma", "1.0", "[]", vec![&d.gamma_2_17, &d.gamma_2_39, &d.gamma_linux], None),
        ("tinybackend", "1.0", "[]", vec![&d.tinybackend], None),
    ] {
        out.push_str(&format!(
            "\n[[package]]\nname = \"{name}\"\nversion = \"{version}\"\nsource = {{ registry = \"{}\" }}\ndependencies = {deps}\n",
            p.index.url()
        ));
        if let Some(s) = sdist {
            out.push_str(&format!("sdist = {}\n", file(s)));
        }
        out.push_str(&format!("wheels = [{}]\n", wheels.iter().map(|w| file(w)).collect::<Vec<_>>().join(", ")));
    }
    out
}

/// One store for the steps that build (the interpreter and its toolchain
/// are built once): a requirements file's environment, pylock.toml and
/// uv.lock of the same files, then one pin changed.
#[test]
fn environments_build_run_and_rebuild_only_what_a_pin_changes() {
    let p = Project::new();
    let packages = requirements_environment_builds_and_runs(&p);
    pylock_and_uv_lock_give_the_same_packages(&p, &packages);
    changing_one_pin_rebuilds_that_package_and_the_environment_only(&p);
    an_sdist_with_its_backend_in_its_tree_builds_with_nothing_else(&p);
}

/// The files `drv lock` should choose from [`dists`]: the pure wheels;
/// for gamma the manylinux_2_17 wheel (the 2_39 one needs a newer glibc,
/// a linux_ one fits no other machine); the sdist of delta.
fn expected_files(d: &Dists) -> BTreeMap<String, String> {
    [&d.alpha, &d.beta, &d.gamma_2_17, &d.tinybackend, &d.delta].iter().map(|d| (d.project.clone(), d.filename.clone())).collect()
}

/// The whole way of a requirements file: `drv lock` chooses the file of
/// each package that fits, `drv build` installs each into its own store
/// path (the sdist through its pinned backend) and joins them, and the
/// console script runs in the environment with its dependency. Returns
/// the packages of env.toml.
fn requirements_environment_builds_and_runs(p: &Project) -> BTreeMap<String, (String, String)> {
    p.write("requirements.txt", &p.d.requirements());
    p.env("env", "requirements.txt", Some(&["alpha", "gamma", "delta"]), "bin/alpha");
    // the same environment, with the interpreter as its main program
    p.env("py", "requirements.txt", Some(&["alpha", "gamma", "delta"]), "bin/python3");
    let out = p.lock_ok(&["env.toml", "py.toml"]);
    assert!(out.contains("requirements.txt: 5 packages for Python 3.11 on glibc 2.36"), "{out}");
    assert_eq!(p.pinned_files("requirements.txt"), expected_files(&p.d));
    let lock = fs::read_to_string(p.dir.join("drv.lock")).unwrap();
    assert!(lock.contains("build-requires = [\"tinybackend\"]") && lock.contains("build-backend = \"tinybackend\""), "{lock}");

    let (env, progress) = p.build("env.toml");
    assert!(env.ends_with("-env-1"), "{env}");
    let packages = p.packages("env.toml");
    let names: BTreeSet<&str> = packages.keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(["alpha-1.0", "beta-2.0", "delta-1.0", "gamma-1.0", "tinybackend-1.0"]));
    for (name, (_, out)) in &packages {
        assert!(progress.contains(&format!("built python3.11-{name} in ")), "{name}: {progress}");
        assert!(p.is_valid(out), "{name}: {out} is not valid");
    }
    // each package in its own store path; the environment links them
    let site = "lib/python3.11/site-packages";
    let alpha = &packages["alpha-1.0"].1;
    assert!(p.real(alpha).join(site).join("alpha/__init__.py").is_file());
    assert!(p.real(alpha).join("bin/alpha").is_file());
    assert!(!p.real(alpha).join(site).join("beta").exists(), "alpha's output holds beta");
    let beta_link = fs::read_link(p.real(&env).join(site).join("beta")).unwrap();
    assert!(beta_link.starts_with(&packages["beta-2.0"].1), "{}", beta_link.display());

    // the console script, in the environment, imports its dependency
    let said = p.run("env.toml", &[]);
    assert_eq!(said.trim(), format!("alpha imports beta 2.0 in {env}"));
    // the abi3 wheel for old glibc is the gamma installed; the sdist's
    // module imports
    let said = p.run("py.toml", &["-c", "import gamma, delta; print(gamma.G, delta.D)"]);
    assert_eq!(said.trim(), "manylinux_2_17_x86_64 delta built from its sdist");
    packages
}

/// A pylock.toml and a uv.lock of the same files give the same package
/// derivations as the requirements file: their environments build
/// nothing else, and run.
fn pylock_and_uv_lock_give_the_same_packages(p: &Project, packages: &BTreeMap<String, (String, String)>) {
    p.write("pylock.toml", &pylock(p));
    p.write("uv.lock", &uv_lock(p));
    p.env("env-pylock", "pylock.toml", Some(&["alpha", "gamma", "delta"]), "bin/alpha");
    p.env("env-uv", "uv.lock", None, "bin/alpha");
    let out = p.lock_ok(&["env-pylock.toml", "env-uv.toml"]);
    assert!(out.contains("pylock.toml: 5 packages") && out.contains("uv.lock: 5 packages"), "{out}");
    assert_eq!(p.pinned_files("pylock.toml"), expected_files(&p.d));
    assert_eq!(p.pinned_files("uv.lock"), expected_files(&p.d));
    // the requirements file's pins are kept as they were
    assert_eq!(p.pinned_files("requirements.txt"), expected_files(&p.d));
    assert_eq!(&p.packages("env-pylock.toml"), packages);
    assert_eq!(&p.packages("env-uv.toml"), packages);
    for recipe in ["env-pylock", "env-uv"] {
        let (out, progress) = p.build(&format!("{recipe}.toml"));
        assert_eq!(built(&progress), BTreeSet::from([format!("{recipe}-1")]), "{progress}");
        assert_eq!(p.run(&format!("{recipe}.toml"), &[]).trim(), format!("alpha imports beta 2.0 in {out}"));
    }
}

/// A new version of one package: `drv lock --check` sees the edited
/// requirements file, and the next build builds that package and the
/// environment, nothing else.
fn changing_one_pin_rebuilds_that_package_and_the_environment_only(p: &Project) {
    let check = |code: i32| {
        let out = p.drv().args(["lock", "--check", "env.toml"]).output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{}{}", text(&out.stdout), text(&out.stderr));
        text(&out.stderr)
    };
    check(0);
    let before = p.packages("env.toml");

    let beta_2_1 = beta("2.1");
    p.index.publish(&beta_2_1);
    let edited = p.d.requirements().replace(&requirement(&[&p.d.beta]), &requirement(&[&beta_2_1]));
    p.write("requirements.txt", &edited);
    let err = check(1);
    assert!(err.contains("requirements.txt changed since it was resolved") && err.contains("run `drv lock`"), "{err}");
    // evaluation refuses the stale lock too
    let out = p.drv().args(["eval", "env.toml"]).output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("requirements.txt changed since `drv lock` resolved it"), "{}", text(&out.stderr));

    let out = p.lock_ok(&["env.toml"]);
    assert!(out.contains("requirements.txt: 5 packages"), "{out}");
    check(0);
    assert_eq!(p.pinned_files("requirements.txt")["beta"], beta_2_1.filename);
    // Current now: a plain `drv lock` resolves nothing; `--update NAME`
    // resolves the lock file holding that project again (and only the
    // Python part: the Debian archive is not asked).
    let out = p.lock_ok(&["env.toml"]);
    assert!(out.contains("Python lock files are up to date") && !out.contains("packages for Python"), "{out}");
    let out = p.lock_ok(&["--update", "beta", "env.toml"]);
    assert!(out.contains("requirements.txt: 5 packages for Python 3.11"), "{out}");
    assert_eq!(p.pinned_files("requirements.txt")["beta"], beta_2_1.filename);
    let (env, progress) = p.build("env.toml");
    let expected = BTreeSet::from([beta_2_1.filename.clone(), "python3.11-beta-2.1".to_owned(), "env-1".to_owned()]);
    assert_eq!(built(&progress), expected, "{progress}");
    let after = p.packages("env.toml");
    for name in ["alpha-1.0", "gamma-1.0", "delta-1.0", "tinybackend-1.0"] {
        assert_eq!(before[name], after[name], "{name} changed");
    }
    assert!(!after.contains_key("beta-2.0"));
    assert_eq!(p.run("env.toml", &[]).trim(), format!("alpha imports beta 2.1 in {env}"));
}

/// An sdist whose backend is in its own tree (`backend-path`, no build
/// requirements) builds with no other package.
fn an_sdist_with_its_backend_in_its_tree_builds_with_nothing_else(p: &Project) {
    let backend = fs::read(format!("{FIXTURES}/python/tinybackend.py")).unwrap();
    let pyproject = b"[build-system]\nrequires = []\nbuild-backend = \"tinybackend\"\nbackend-path = [\"_build\"]\n";
    let epsilon = sdist(
        "epsilon",
        "1.0",
        &[("pyproject.toml", pyproject), ("_build/tinybackend.py", &backend), ("epsilon.py", b"E = 'epsilon built by its own backend'\n")],
    );
    p.index.publish(&epsilon);
    p.write("in-tree.txt", &format!("{}\n", requirement(&[&epsilon])));
    p.env("in-tree", "in-tree.txt", None, "bin/python3");
    p.lock_ok(&["in-tree.toml"]);
    assert_eq!(p.pinned_files("in-tree.txt"), BTreeMap::from([("epsilon".to_owned(), epsilon.filename.clone())]));
    let (_, progress) = p.build("in-tree.toml");
    let expected = BTreeSet::from([epsilon.filename.clone(), "python3.11-epsilon-1.0".to_owned(), "in-tree-1".to_owned()]);
    assert_eq!(built(&progress), expected, "{progress}");
    assert_eq!(p.run("in-tree.toml", &["-c", "import epsilon; print(epsilon.E)"]).trim(), "epsilon built by its own backend");
}

/// A file the index serves with other bytes than were locked: the build
/// fails at the download and registers nothing of the package, whether
/// the index page still lists the locked hash or lists the new one.
#[test]
fn a_file_changed_on_the_index_fails_the_build_and_registers_nothing() {
    let p = Project::new();
    p.write("requirements.txt", &p.d.requirements());
    p.env("env", "requirements.txt", Some(&["alpha"]), "bin/alpha");
    p.lock_ok(&["env.toml"]);
    let packages = p.packages("env.toml");
    let beta = &packages["beta-2.0"].1;
    let evaluated = p.drv().args(["eval", "--json", "env.toml"]).output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&evaluated.stdout).unwrap();
    let wheel = json["derivations"]
        .as_object()
        .unwrap()
        .values()
        .find(|d| d["name"] == p.d.beta.filename.as_str())
        .map(|d| d["outputs"]["out"].as_str().unwrap().to_owned())
        .expect("a derivation fetching beta's wheel");

    for relist in [false, true] {
        p.index.swap_bytes(&p.d.beta.filename, b"not the locked wheel", relist);
        let out = p.drv().args(["build", "--no-link", "env.toml"]).output().unwrap();
        assert!(!out.status.success(), "relist {relist}: the build succeeded");
        let err = text(&out.stderr);
        let why = if relist { "the index lists" } else { "hash mismatch" };
        assert!(err.contains(why) && err.contains(&p.d.beta.filename), "relist {relist}: {err}");
        for path in [&wheel, beta] {
            assert!(!p.is_valid(path) && !p.real(path).exists(), "relist {relist}: {path} is in the store");
        }
        // nor a partial download or build beside them
        let leftovers: Vec<String> = fs::read_dir(p.s.root().join("store"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.') || (n.contains("beta-2.0") && !n.ends_with(".drv")))
            .collect();
        assert!(leftovers.is_empty(), "relist {relist}: {leftovers:?}");
    }
}

/// gamma 1.0 with no file for the target: each file is named with the
/// reason it is refused.
#[test]
fn files_that_do_not_fit_the_target_are_refused_each_with_its_reason() {
    let p = Project::new();
    p.write("requirements.txt", &format!("{}\n", requirement(&[&p.d.gamma_2_39, &p.d.gamma_linux])));
    p.env("env", "requirements.txt", None, "bin/python3");
    let err = p.lock_fails(&["env.toml"]);
    assert!(err.contains("gamma 1.0: no file fits CPython 3.11 on glibc 2.36 (x86_64)"), "{err}");
    let line = |file: &str| err.lines().find(|l| l.contains(file)).unwrap_or_else(|| panic!("{file} is not named: {err}")).to_owned();
    let l = line(&p.d.gamma_2_39.filename);
    assert!(l.contains("glibc 2.39") && l.contains("2.36"), "{l}");
    let l = line(&p.d.gamma_linux.filename);
    assert!(l.contains("linux_"), "{l}");
    assert!(p.pinned_files("requirements.txt").is_empty());
}

/// Hash-checking mode: every line `==` and `--hash`, and the hash must
/// be one of a file the index lists.
#[test]
fn requirement_lines_without_pin_or_hash_or_with_an_unknown_hash_are_refused() {
    let p = Project::new();
    p.env("env", "requirements.txt", None, "bin/python3");
    let alpha = requirement(&[&p.d.alpha]);
    let beta = requirement(&[&p.d.beta]);
    let cases = [
        (format!("{alpha}\nbeta>=2 --hash=sha256:{}\n", p.d.beta.sha256()), "requirements.txt:2: beta is not pinned"),
        (format!("{alpha}\n# a comment\nbeta==2.0\n"), "requirements.txt:3: beta==2.0 has no --hash=sha256:"),
        (
            format!("{alpha}\nbeta==2.0 --hash=sha256:{}\n", "0".repeat(64)),
            "requirements.txt:2: beta==2.0: the index lists no file with one of its hashes",
        ),
        // a hash of another project's file
        (format!("{beta}\nalpha==1.0 --hash=sha256:{}\n", p.d.beta.sha256()), "requirements.txt:2: alpha==1.0: the index lists no file"),
    ];
    for (requirements, message) in cases {
        p.write("requirements.txt", &requirements);
        let err = p.lock_fails(&["env.toml"]);
        assert!(err.contains(message), "{requirements}\n{err}");
        assert!(p.pinned_files("requirements.txt").is_empty());
    }
}

/// An sdist's build backend must be pinned in the same lock; `drv lock`
/// says which package needs what, and how to add it.
#[test]
fn an_sdist_whose_backend_is_not_pinned_is_refused_with_help() {
    let p = Project::new();
    p.write("requirements.txt", &format!("{}\n{}\n", requirement(&[&p.d.beta]), requirement(&[&p.d.delta])));
    p.env("env", "requirements.txt", None, "bin/python3");
    let err = p.lock_fails(&["env.toml"]);
    assert!(err.contains("delta 1.0 has no wheel") && err.contains("needs tinybackend"), "{err}");
    assert!(err.contains("help: add a line `tinybackend==VERSION --hash=sha256:"), "{err}");
}

/// A `[python]` recipe is an environment only: a `[build]` beside it is
/// refused where the recipe says it; a package its lock does not have is
/// refused at evaluation, pointing at the name.
#[test]
fn python_recipes_with_a_build_or_an_unknown_package_are_refused_where_they_say_it() {
    let p = Project::new();
    p.write("requirements.txt", &format!("{}\n{}\n", requirement(&[&p.d.alpha]), requirement(&[&p.d.beta])));
    p.env("env", "requirements.txt", Some(&["alpha", "zeta"]), "bin/alpha");
    // the lock has no zeta: `drv lock` resolves and records the lock file,
    // then says so; evaluation refuses it at the name
    let err = p.lock_fails(&["env.toml"]);
    assert!(err.contains("env.toml: python.packages names \"zeta\", which requirements.txt does not pin"), "{err}");
    assert!(fs::read_to_string(p.dir.join("drv.lock")).unwrap().contains("name = \"alpha\""));
    for command in ["eval", "build"] {
        let out = p.drv().args([command, "env.toml"]).output().unwrap();
        assert!(!out.status.success(), "drv {command} succeeded");
        let line = common::diagnostic_line(&text(&out.stderr));
        assert!(line.contains("env.toml:8:22: requirements.txt has no package \"zeta\""), "{line}");
    }

    let mut recipe = fs::read_to_string(p.dir.join("env.toml")).unwrap().replace(", \"zeta\"", "");
    recipe.push_str("\n[build]\nscript = 'true'\n");
    p.write("env.toml", &recipe);
    let out = p.drv().args(["eval", "env.toml"]).output().unwrap();
    assert!(!out.status.success());
    let line = common::diagnostic_line(&text(&out.stderr));
    assert!(line.contains("env.toml:5:1: a [python] recipe is an environment") && line.contains("cannot also have [build]"), "{line}");
    let err = p.lock_fails(&["env.toml"]);
    assert!(err.contains("env.toml:5:1") && err.contains("cannot also have [build]"), "{err}");
}

/// An index lists an older file by the name its author typed
/// (`Zeta.Pkg-1.0-….whl`), a lock file by the escaped one
/// (`zeta_pkg-1.0-….whl`): both locks pin the escaped name, evaluate to
/// the same package, and the file is found on the index and builds.
/// Its module for Python 2 does not stop the install.
#[test]
fn a_file_spelled_otherwise_on_the_index_is_one_package_whichever_lock_names_it() {
    let p = Project::new();
    // A module for another Python (wheels carry such files) stays source
    // only, as pip leaves it: the install does not fail on it.
    let wheel = Wheel::new("zeta-pkg", "1.0")
        .file("zeta_pkg/__init__.py", b"Z = 'zeta'\n")
        .file("zeta_pkg/py2only.py", b"print 'for Python 2'\n")
        .build();
    let escaped = wheel.filename.clone();
    assert!(escaped.starts_with("zeta_pkg-1.0-"), "{escaped}");
    let typed = Dist { filename: escaped.replacen("zeta_pkg", "Zeta.Pkg", 1), ..wheel.clone() };
    p.index.publish(&typed);
    p.write("requirements.txt", &requirement(&[&typed]));
    p.write(
        "pylock.toml",
        &format!(
            "lock-version = \"1.0\"\ncreated-by = \"drv-tests\"\n\n[[packages]]\nname = \"zeta-pkg\"\nversion = \"1.0\"\n\
             wheels = [{{ name = \"{escaped}\", url = \"{}\", hashes = {{ sha256 = \"{}\" }} }}]\n",
            p.index.file_url(&escaped),
            typed.sha256()
        ),
    );
    p.env("env-req", "requirements.txt", None, "bin/python3");
    p.env("env-pylock", "pylock.toml", None, "bin/python3");
    p.lock_ok(&["env-req.toml", "env-pylock.toml"]);
    assert_eq!(p.pinned_files("requirements.txt")["zeta-pkg"], escaped);
    assert_eq!(p.pinned_files("pylock.toml")["zeta-pkg"], escaped);
    assert_eq!(p.packages("env-req.toml"), p.packages("env-pylock.toml"));
    p.build("env-pylock.toml");
    assert_eq!(p.run("env-pylock.toml", &["-c", "import zeta_pkg; print(zeta_pkg.Z)"]).trim(), "zeta");
}
