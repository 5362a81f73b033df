//! Lowering checked recipes into derivations, the way Nix's `derivation`
//! builtin does: every input by store path, output paths from
//! `hashDerivationModulo`, the `.drv` files written to the store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use drv_formats::{ContentAddress, Derivation, DerivationHash, StorePath};
use drv_realise::{Download, FETCH_BUILDER, ROOTFS_BUILDER, TOOLCHAIN_ENV};
use drv_store::{Ingestion, LocalStore};

use crate::error::EvalError;
use crate::graph::{Evaluation, GraphBuilder, Node, NodeKind};
use crate::load::RecipeSet;
use crate::recipe::{Phases, Recipe, Source};

/// The platform every derivation is built for.
pub const SYSTEM: &str = "x86_64-linux";

/// The store name of a build script passed as a file (see
/// `Lowering::builder_args`).
pub const BUILDER_SCRIPT_NAME: &str = "builder.sh";

/// Debian packages of the C library store path that builds linking C code
/// run on: glibc's loader and libraries (`libc6`), and `libgcc_s`, which
/// glibc loads for `pthread_cancel` and C++ exceptions.
pub const LIBC_PACKAGES: [&str; 2] = ["libc6", "libgcc-s1"];

/// A toolchain that names one of these packages makes or fixes up ELF
/// files (links C code, or sets `RUNPATH` with patchelf): its build gets
/// the C library store path as `$DRV_LIBC` (see
/// `drv_debian::rootfs::CC_WRAPPER`).
pub const LINKS_C: [&str; 3] = ["libc6-dev", "patchelf", "g++"];

/// Debian packages of the C++ standard library store path.
pub const LIBCXX_PACKAGES: [&str; 1] = ["libstdc++6"];

/// A toolchain that names this package links C++ code: its build also
/// gets the C++ standard library store path as `$DRV_LIBCXX`.
pub const LINKS_CXX: &str = "g++";

/// Whether `recipe`'s build gets the C library (see [`LINKS_C`]).
fn links_c(recipe: &Recipe) -> bool {
    recipe.toolchain.iter().any(|n| LINKS_C.contains(&n.as_str()))
}

/// The toolchain of the builds that make prebuilt outputs (the C library
/// and `[prebuilt]` recipes): unpack `.deb`s, relocate, set `RUNPATH`.
pub const PREBUILT_TOOLCHAIN: [&str; 7] = ["dash", "coreutils", "dpkg", "tar", "findutils", "sed", "patchelf"];

/// With this package in its toolchain's closure a build can strip: its
/// ELF files' debug information goes to a `debug` output.
const STRIPS: &str = "binutils";

/// The Debian packages `recipe` needs beyond the ones it names: those of
/// the C library and of the toolchain that makes it, for a recipe that
/// links C code or is `[prebuilt]`. `drv lock` locks them too.
pub fn implied_packages(recipe: &Recipe) -> Vec<&'static str> {
    let mut implied: Vec<&'static str> = Vec::new();
    if links_c(recipe) || !recipe.prebuilt.is_empty() || recipe.python.is_some() {
        implied.extend(LIBC_PACKAGES.iter().chain(&PREBUILT_TOOLCHAIN));
    }
    if recipe.toolchain.iter().any(|n| n == LINKS_CXX) {
        implied.extend(LIBCXX_PACKAGES);
    }
    implied
}

/// Lower every recipe of `set` and write the derivations to `store`.
pub fn lower(set: &RecipeSet, store: &mut LocalStore) -> Result<Evaluation, EvalError> {
    let mut l = Lowering {
        python_packages: BTreeMap::new(),
        store,
        hashes: BTreeMap::new(),
        eval: GraphBuilder::default(),
        packages: BTreeMap::new(),
        toolchains: BTreeMap::new(),
        libc: None,
        libcxx: None,
    };
    for file in &set.order {
        l.recipe(&set.recipes[file], set)?;
    }
    let root = l.packages[&set.root].0.clone();
    let tests = set.recipes[&set.root]
        .tests
        .iter()
        .map(|t| l.eval.tests_by_recipe[&(set.root.clone(), t.name.clone())].clone())
        .collect();
    Ok(l.eval.finish(root, tests))
}

struct Lowering<'a> {
    store: &'a mut LocalStore,
    /// The packages of a toolchain (sorted names) → its derivation and output.
    toolchains: BTreeMap<Vec<String>, Toolchain>,
    /// The C library's derivation and output, once lowered.
    libc: Option<(StorePath, StorePath)>,
    /// The C++ standard library's, likewise.
    libcxx: Option<(StorePath, StorePath)>,
    hashes: BTreeMap<StorePath, DerivationHash>,
    eval: GraphBuilder,
    /// Recipe file → (package `.drv`, its `out` path).
    packages: BTreeMap<PathBuf, (StorePath, StorePath)>,
    /// (Python lock file, package) → its installation's `.drv` and `out`.
    python_packages: BTreeMap<(PathBuf, String), (StorePath, StorePath)>,
}

/// A lowered toolchain root file system.
#[derive(Clone)]
struct Toolchain {
    drv: StorePath,
    out: StorePath,
    /// The names of its packages, sorted.
    packages: Vec<String>,
}

/// A recipe's run-time dependencies, transitively: what its dependents get too.
fn propagated(set: &RecipeSet, recipe: &Recipe, into: &mut BTreeSet<PathBuf>) {
    for d in recipe.runtime_dependencies() {
        if into.insert(d.clone()) {
            propagated(set, &set.recipes[d], into);
        }
    }
}

/// Shell variable name for a dependency: `my-lib` → `my_lib`.
fn var_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

impl Lowering<'_> {
    /// Write `drv` to the store, remember its modulo hash, add it to the graph.
    fn add(&mut self, drv: Derivation, node: Node) -> Result<StorePath, EvalError> {
        let path = self.store.add_text(&format!("{}.drv", drv.name()), &drv.to_aterm(), &drv.references())?;
        let h = drv.hash_modulo(|p| self.hashes.get(p).copied())?;
        self.hashes.insert(path.clone(), h);
        self.eval.insert(path.clone(), drv, node);
        Ok(path)
    }

    fn recipe(&mut self, recipe: &Recipe, set: &RecipeSet) -> Result<(), EvalError> {
        if !recipe.prebuilt.is_empty() {
            return self.prebuilt_recipe(recipe, set);
        }
        if recipe.python.is_some() {
            return self.python_env(recipe, set);
        }
        let mut input_drvs: BTreeSet<StorePath> = BTreeSet::new();
        let mut input_srcs: BTreeSet<StorePath> = BTreeSet::new();
        let mut srcs = Vec::new();
        for source in &recipe.sources {
            let out = match source {
                Source::Local { path, name } => {
                    let p = self.store.add_path(path, name, Ingestion::Recursive).map_err(|e| {
                        EvalError::Store(e)
                    })?;
                    input_srcs.insert(p.clone());
                    p
                }
                Source::Url { url, sha256, name } => {
                    let (drv, out) = self.fetch(name, *sha256, Download::Url(url), &recipe.file)?;
                    input_drvs.insert(drv);
                    out
                }
                Source::PythonIndex { project, version, file, sha256 } => {
                    let download = Download::PythonIndexFile { project, version, file };
                    let (drv, out) = self.fetch(file, *sha256, download, &recipe.file)?;
                    input_drvs.insert(drv);
                    out
                }
            };
            srcs.push(self.store.display(&out));
        }

        let toolchain = if recipe.toolchain.is_empty() {
            None
        } else {
            let t = self.toolchain(&recipe.toolchain, &recipe.file, set)?;
            input_drvs.insert(t.drv.clone());
            Some(t)
        };
        let libc = if links_c(recipe) { Some(self.libc(set)?) } else { None };
        let libcxx = if recipe.toolchain.iter().any(|n| n == LINKS_CXX) { Some(self.libcxx(set)?) } else { None };
        // Stripping keeps the debug information in an output of its own,
        // as nixpkgs' `separateDebugInfo` does.
        let strip = toolchain.as_ref().is_some_and(|t| t.packages.iter().any(|p| p == STRIPS));
        let mut outputs = recipe.outputs.clone();
        if strip && !outputs.iter().any(|o| o == "debug") {
            outputs.push("debug".into());
        }

        // Dependencies: declared ones plus what they propagate.
        let mut deps: BTreeSet<PathBuf> = recipe.build_dependencies.iter().chain(&recipe.run_dependencies).cloned().collect();
        for d in deps.clone() {
            propagated(set, &set.recipes[&d], &mut deps);
        }
        let tc_out = toolchain.as_ref().map(|t| &t.out);
        let env = self.common_env(recipe, &deps, set, tc_out, libc.as_ref(), libcxx.as_ref(), &mut input_drvs);

        let mut b = Derivation::builder(self.store.store_dir(), &recipe.full_name(), SYSTEM, "/bin/sh");
        for a in self.builder_args(build_script(&recipe.phases, !srcs.is_empty(), strip), &mut input_srcs)? {
            b = b.arg(a);
        }
        for o in &outputs {
            b = b.output(o.clone());
        }
        let mut env = env;
        env.insert("name".into(), recipe.full_name());
        env.insert("system".into(), SYSTEM.into());
        env.insert("builder".into(), "/bin/sh".into());
        if !srcs.is_empty() {
            env.insert("src".into(), srcs[0].clone());
            env.insert("srcs".into(), srcs.join(" "));
        }
        env.insert("outputs".into(), outputs.join(" "));
        for (k, v) in &recipe.env {
            env.insert(k.clone(), v.clone());
        }
        for (k, v) in env {
            b = b.env(k, v);
        }
        for d in &input_drvs {
            b = b.input_derivation(d.clone(), ["out".to_owned()]);
        }
        for s in &input_srcs {
            b = b.input_source(s.clone());
        }
        let drv = b.build(|p| self.hashes.get(p).copied())?;
        let out = drv.outputs()["out"].path.clone();
        let node = Node { recipe: recipe.file.clone(), kind: NodeKind::Package, main: recipe.main.clone() };
        let drv_path = self.add(drv, node)?;
        self.packages.insert(recipe.file.clone(), (drv_path.clone(), out.clone()));

        for test in &recipe.tests {
            let mut test_deps: BTreeSet<PathBuf> = test.dependencies.iter().cloned().collect();
            for d in test_deps.clone() {
                propagated(set, &set.recipes[&d], &mut test_deps);
            }
            // The package under test and what it needs at run time.
            let mut tested: BTreeSet<PathBuf> = BTreeSet::from([recipe.file.clone()]);
            propagated(set, recipe, &mut tested);
            test_deps.extend(tested);
            let mut t_inputs = BTreeSet::new();
            let mut env = self.common_env(recipe, &test_deps, set, tc_out, libc.as_ref(), libcxx.as_ref(), &mut t_inputs);
            let name = format!("{}-test-{}", recipe.full_name(), test.name);
            env.insert("name".into(), name.clone());
            env.insert("system".into(), SYSTEM.into());
            env.insert("builder".into(), "/bin/sh".into());
            for (k, v) in &test.env {
                env.insert(k.clone(), v.clone());
            }
            let script = format!("mkdir -p \"$out\"\ncd \"$out\"\n{}\n", test.script);
            let mut t_srcs = BTreeSet::new();
            let mut b = Derivation::builder(self.store.store_dir(), &name, SYSTEM, "/bin/sh").output("out");
            for a in self.builder_args(script, &mut t_srcs)? {
                b = b.arg(a);
            }
            for s in &t_srcs {
                b = b.input_source(s.clone());
            }
            for (k, v) in env {
                b = b.env(k, v);
            }
            if let Some(t) = &toolchain {
                t_inputs.insert(t.drv.clone());
            }
            for d in &t_inputs {
                b = b.input_derivation(d.clone(), ["out".to_owned()]);
            }
            let drv = b.build(|p| self.hashes.get(p).copied())?;
            let node = Node { recipe: recipe.file.clone(), kind: NodeKind::Test(test.name.clone()), main: None };
            let p = self.add(drv, node)?;
            self.eval.tests_by_recipe.insert((recipe.file.clone(), test.name.clone()), p);
        }
        Ok(())
    }

    /// The arguments of `/bin/sh` that run `script`: `-e -c SCRIPT`, or,
    /// for a script that would not fit in one argument of `execve`
    /// (`MAX_ARG_STRLEN`, 128 KiB), `-e FILE` with the script as a text
    /// file in the store, added to `input_srcs`. That file is what Nix's
    /// `builtins.toFile "builder.sh" script` makes, as nixpkgs' stdenv
    /// passes its `builder.sh`, so the derivation stays one Nix builds
    /// alike; scripts that fit keep the `-c` form and their store paths.
    fn builder_args(&mut self, script: String, input_srcs: &mut BTreeSet<StorePath>) -> Result<Vec<String>, EvalError> {
        if script.len() < drv_sandbox::MAX_ARG_STRLEN {
            return Ok(vec!["-e".into(), "-c".into(), script]);
        }
        let file = self.store.add_text(BUILDER_SCRIPT_NAME, script.as_bytes(), &BTreeSet::new())?;
        let shown = self.store.display(&file);
        input_srcs.insert(file);
        Ok(vec!["-e".into(), shown])
    }

    /// Environment shared by a package and its tests: dependency paths,
    /// search paths, determinism settings. Adds the dependencies'
    /// derivations to `input_drvs`.
    fn common_env(
        &self,
        recipe: &Recipe,
        deps: &BTreeSet<PathBuf>,
        set: &RecipeSet,
        toolchain: Option<&StorePath>,
        libc: Option<&(StorePath, StorePath)>,
        libcxx: Option<&(StorePath, StorePath)>,
        input_drvs: &mut BTreeSet<StorePath>,
    ) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let mut bin = Vec::new();
        let (mut cppflags, mut ldflags, mut pkgconfig) = (Vec::new(), Vec::new(), Vec::new());
        // Sorted by recipe name so the order does not depend on file paths.
        let mut named: Vec<(&str, &StorePath, &StorePath)> = deps
            .iter()
            .map(|d| {
                let (drv, out) = &self.packages[d];
                (set.recipes[d].name.as_str(), drv, out)
            })
            .collect();
        named.sort();
        for (name, drv, out) in named {
            input_drvs.insert(drv.clone());
            let o = self.store.display(out);
            env.insert(var_name(name), o.clone());
            bin.push(format!("{o}/bin"));
            cppflags.push(format!("-I{o}/include"));
            ldflags.push(format!("-L{o}/lib -Wl,-rpath,{o}/lib"));
            pkgconfig.push(format!("{o}/lib/pkgconfig"));
        }
        if toolchain.is_some() {
            bin.extend(["/usr/bin".to_owned(), "/bin".to_owned()]);
        }
        env.insert("PATH".into(), bin.join(":"));
        if !cppflags.is_empty() {
            env.insert("CPPFLAGS".into(), cppflags.join(" "));
            env.insert("LDFLAGS".into(), ldflags.join(" "));
            env.insert("PKG_CONFIG_PATH".into(), pkgconfig.join(":"));
        }
        if let Some(t) = toolchain {
            env.insert(TOOLCHAIN_ENV.into(), self.store.display(t));
        }
        if let Some((drv, out)) = libc {
            input_drvs.insert(drv.clone());
            env.insert(drv_debian::rootfs::LIBC_ENV.into(), self.store.display(out));
        }
        if let Some((drv, out)) = libcxx {
            input_drvs.insert(drv.clone());
            env.insert(drv_debian::rootfs::LIBCXX_ENV.into(), self.store.display(out));
        }
        env.insert("SOURCE_DATE_EPOCH".into(), recipe.source_date_epoch.to_string());
        env
    }

    /// The lock of this evaluation, or the error a recipe at `file` that
    /// needs one gets.
    fn lock<'s>(set: &'s RecipeSet, file: &std::path::Path) -> Result<(&'s PathBuf, &'s drv_debian::lock::DebianLock), EvalError> {
        // `load` reads the lock whenever a recipe names Debian packages; a
        // set made another way may not have one.
        match &set.lock {
            Some((lock_file, lock)) => Ok((lock_file, lock)),
            None => {
                let file = file.parent().unwrap_or(std::path::Path::new("/")).join(drv_debian::lock::LOCK_FILE_NAME);
                Err(EvalError::Lock(Box::new(drv_debian::lock::LockError::Missing { file })))
            }
        }
    }

    /// The download of one locked `.deb`: its derivation and output.
    fn deb(&mut self, set: &RecipeSet, p: &drv_debian::lock::LockedPackage) -> Result<(StorePath, StorePath), EvalError> {
        let (lock_file, lock) = Self::lock(set, &set.root)?;
        let repository = lock.repository(p).ok_or_else(|| {
            EvalError::Lock(Box::new(drv_debian::lock::LockError::UnknownRepository {
                file: lock_file.clone(),
                package: p.name.clone(),
                repository: p.repository.clone(),
            }))
        })?;
        let sha256 = drv_formats::Sha256::parse(&p.sha256).map_err(drv_store::StoreError::from)?;
        let file = store_name(p.path.rsplit('/').next().unwrap_or(&p.path));
        let url = format!("mirror://{}/{}", repository.mirror, p.path);
        let lock_file = lock_file.clone();
        self.fetch(&file, sha256, Download::Url(&url), &lock_file)
    }

    /// The toolchain of the Debian package `names` (of the recipe at
    /// `file`): a `.deb` download for each locked package of their
    /// closure, and the derivation that assembles them into a root file
    /// system. Toolchains with the same closure are one.
    fn toolchain(&mut self, names: &[String], file: &std::path::Path, set: &RecipeSet) -> Result<Toolchain, EvalError> {
        let (lock_file, lock) = Self::lock(set, file)?;
        let lock_file = lock_file.clone();
        let closure = lock.closure(names).map_err(|e| EvalError::Lock(Box::new(e)))?;
        let key: Vec<String> = closure.iter().map(|p| p.name.clone()).collect();
        if let Some(t) = self.toolchains.get(&key) {
            return Ok(t.clone());
        }
        let name = format!("{}-toolchain", lock.suite);
        let mut debs = Vec::new();
        let mut b = Derivation::builder(self.store.store_dir(), &name, "builtin", ROOTFS_BUILDER);
        for p in closure {
            let (drv, out) = self.deb(set, p)?;
            b = b.input_derivation(drv, ["out".to_owned()]);
            debs.push(self.store.display(&out));
        }
        b = b
            .output("out")
            .env("builder", ROOTFS_BUILDER)
            .env("name", name.as_str())
            .env("system", "builtin")
            .env("debs", debs.join(" "))
            .env("rootfsFormat", drv_debian::rootfs::FORMAT_VERSION.to_string());
        let drv = b.build(|p| self.hashes.get(p).copied())?;
        let out = drv.outputs()["out"].path.clone();
        let node = Node { recipe: lock_file, kind: NodeKind::Toolchain, main: None };
        let drv_path = self.add(drv, node)?;
        let t = Toolchain { drv: drv_path, out, packages: key.clone() };
        self.toolchains.insert(key, t.clone());
        Ok(t)
    }

    /// The C library store path, made from the lock's [`LIBC_PACKAGES`]:
    /// what every program built by a toolchain naming one of [`LINKS_C`] loads.
    fn libc(&mut self, set: &RecipeSet) -> Result<(StorePath, StorePath), EvalError> {
        if let Some(l) = &self.libc {
            return Ok(l.clone());
        }
        let l = self.runtime_library(set, "glibc", "the C library", &LIBC_PACKAGES, None, &[("selfRunpath", "libc.so.6")])?;
        self.libc = Some(l.clone());
        Ok(l)
    }

    /// The C++ standard library store path, made from the lock's
    /// [`LIBCXX_PACKAGES`] with `RUNPATH` over the C library's `lib`:
    /// what every program built by a toolchain naming [`LINKS_CXX`] loads.
    fn libcxx(&mut self, set: &RecipeSet) -> Result<(StorePath, StorePath), EvalError> {
        if let Some(l) = &self.libcxx {
            return Ok(l.clone());
        }
        let libc = self.libc(set)?;
        let l = self.runtime_library(set, "libstdc++", "the C++ standard library", &LIBCXX_PACKAGES, Some(libc), &[])?;
        self.libcxx = Some(l.clone());
        Ok(l)
    }

    /// A runtime library drv makes from the lock by itself: `packages`
    /// (the first one's version names it, `NAME-VERSION`), with `RUNPATH`
    /// over `libc`'s `lib` when given. `what` names it in errors.
    fn runtime_library(
        &mut self,
        set: &RecipeSet,
        name: &str,
        what: &str,
        packages: &[&str],
        libc: Option<(StorePath, StorePath)>,
        env: &[(&str, &str)],
    ) -> Result<(StorePath, StorePath), EvalError> {
        let (lock_file, lock) = Self::lock(set, &set.root)?;
        let lock_file = lock_file.clone();
        let version = lock.find(packages[0]).map(|p| p.version.clone()).ok_or_else(|| {
            EvalError::Lock(Box::new(drv_debian::lock::LockError::NotLocked {
                name: packages[0].to_owned(),
                needed_by: Some(format!("{what} store path")),
            }))
        })?;
        let packages: Vec<String> = packages.iter().map(|s| s.to_string()).collect();
        let name = store_name(&format!("{name}-{version}"));
        let node = Node { recipe: lock_file.clone(), kind: NodeKind::Package, main: None };
        let (runpath, inputs) = match libc {
            Some((drv, out)) => (Some(format!("{}/lib", self.store.display(&out))), BTreeSet::from([drv])),
            None => (None, BTreeSet::new()),
        };
        self.prebuilt(&name, &packages, runpath, env, inputs, &lock_file, set, node)
    }

    /// A `[prebuilt]` recipe: its packages relocated, with `RUNPATH` over
    /// its own `lib`, its dependencies' and the C library's.
    fn prebuilt_recipe(&mut self, recipe: &Recipe, set: &RecipeSet) -> Result<(), EvalError> {
        let (libc_drv, libc_out) = self.libc(set)?;
        let mut deps: BTreeSet<PathBuf> = recipe.build_dependencies.iter().chain(&recipe.run_dependencies).cloned().collect();
        for d in deps.clone() {
            propagated(set, &set.recipes[&d], &mut deps);
        }
        let mut named: Vec<(&str, &StorePath, &StorePath)> =
            deps.iter().map(|d| (set.recipes[d].name.as_str(), &self.packages[d].0, &self.packages[d].1)).collect();
        named.sort();
        let mut runpath: Vec<String> = named.iter().map(|(_, _, out)| format!("{}/lib", self.store.display(out))).collect();
        runpath.push(format!("{}/lib", self.store.display(&libc_out)));
        let mut inputs: BTreeSet<StorePath> = named.iter().map(|(_, drv, _)| (*drv).clone()).collect();
        inputs.insert(libc_drv);
        let node = Node { recipe: recipe.file.clone(), kind: NodeKind::Package, main: recipe.main.clone() };
        let (drv, out) = self.prebuilt(&recipe.full_name(), &recipe.prebuilt, Some(runpath.join(":")), &[], inputs, &recipe.file, set, node)?;
        self.packages.insert(recipe.file.clone(), (drv, out));
        Ok(())
    }

    /// The derivation that makes `name` from exactly the locked Debian
    /// `packages` (not their dependencies) by [`PREBUILT_SCRIPT`], with
    /// `RUNPATH` set to `$out/lib:RUNPATH` when `runpath` is given, and
    /// `env` added to its environment.
    #[allow(clippy::too_many_arguments)]
    fn prebuilt(
        &mut self,
        name: &str,
        packages: &[String],
        runpath: Option<String>,
        env: &[(&str, &str)],
        mut inputs: BTreeSet<StorePath>,
        file: &std::path::Path,
        set: &RecipeSet,
        node: Node,
    ) -> Result<(StorePath, StorePath), EvalError> {
        let (_, lock) = Self::lock(set, file)?;
        let mut locked = Vec::new();
        for n in packages {
            let p = lock.find(n).cloned().ok_or_else(|| {
                EvalError::Lock(Box::new(drv_debian::lock::LockError::NotLocked { name: n.clone(), needed_by: Some(name.to_owned()) }))
            })?;
            locked.push(p);
        }
        let mut debs = Vec::new();
        for p in &locked {
            let (drv, out) = self.deb(set, p)?;
            inputs.insert(drv);
            debs.push(self.store.display(&out));
        }
        let tools: Vec<String> = PREBUILT_TOOLCHAIN.iter().map(|s| s.to_string()).collect();
        let toolchain = self.toolchain(&tools, file, set)?;
        inputs.insert(toolchain.drv.clone());
        let mut b = Derivation::builder(self.store.store_dir(), name, SYSTEM, "/bin/sh")
            .arg("-e")
            .arg("-c")
            .arg(PREBUILT_SCRIPT)
            .output("out")
            .env("builder", "/bin/sh")
            .env("name", name)
            .env("system", SYSTEM)
            .env("outputs", "out")
            .env("PATH", "/usr/bin:/bin")
            .env("debs", debs.join(" "))
            .env("multiarch", multiarch(&lock.architecture))
            .env(TOOLCHAIN_ENV, self.store.display(&toolchain.out));
        if let Some(r) = runpath {
            b = b.env("runpath", r);
        }
        for (k, v) in env {
            b = b.env(*k, *v);
        }
        for d in &inputs {
            b = b.input_derivation(d.clone(), ["out".to_owned()]);
        }
        let drv = b.build(|p| self.hashes.get(p).copied())?;
        let out = drv.outputs()["out"].path.clone();
        let drv_path = self.add(drv, node)?;
        Ok((drv_path, out))
    }

    /// A fixed-output derivation that downloads one file.
    fn fetch(
        &mut self,
        name: &str,
        sha256: drv_formats::Sha256,
        download: Download,
        recipe: &std::path::Path,
    ) -> Result<(StorePath, StorePath), EvalError> {
        let mut b = Derivation::builder(self.store.store_dir(), name, "builtin", FETCH_BUILDER)
            .fixed_output(ContentAddress::Flat(sha256))
            .env("builder", FETCH_BUILDER)
            .env("name", name)
            .env("system", "builtin");
        for (k, v) in download.env() {
            b = b.env(k, v);
        }
        let drv = b.build(|_| None)?;
        let out = drv.outputs()["out"].path.clone();
        let node = Node { recipe: recipe.to_owned(), kind: NodeKind::Fetch, main: None };
        let p = self.add(drv, node)?;
        Ok((p, out))
    }
}

/// A store name made of `s`: characters Nix does not allow in one (`~`
/// of Debian versions, `:` of epochs) become `_`.
fn store_name(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || "+-._?=".contains(c) { c } else { '_' }).collect()
}

/// Debian's multiarch triplet of an architecture (the directory under
/// `/usr/lib` its libraries are in).
fn multiarch(architecture: &str) -> &'static str {
    match architecture {
        "arm64" => "aarch64-linux-gnu",
        "i386" => "i386-linux-gnu",
        _ => "x86_64-linux-gnu",
    }
}

/// The builder's script: the recipe's own, or its phases around drv's
/// default unpacking; then, if `strip`, drv's [`STRIP_PHASE`].
fn build_script(phases: &Phases, has_sources: bool, strip: bool) -> String {
    let mut s = String::new();
    let mut phase = |name: &str, body: &str| {
        s.push_str(&format!("echo 'drv: {name} phase'\n{}\n", body.trim_end()));
    };
    if let Some(script) = &phases.script {
        if !strip {
            return script.clone();
        }
        s.push_str(script.trim_end());
        s.push('\n');
    } else {
        match &phases.unpack {
            Some(u) => phase("unpack", u),
            None if has_sources => phase("unpack", DEFAULT_UNPACK),
            None => {}
        }
        for (name, body) in [("configure", &phases.configure), ("build", &phases.build), ("check", &phases.check), ("install", &phases.install)] {
            if let Some(b) = body {
                phase(name, b);
            }
        }
    }
    if strip {
        s.push_str(STRIP_PHASE);
    }
    s
}

/// drv's fixup of a build whose toolchain has binutils, after nixpkgs'
/// `separateDebugInfo`: each ELF executable or shared object with debug
/// information in an output other than `debug` has it copied to
/// `$debug/lib/debug/.build-id/NN/REST.debug` (by its GNU build ID), is
/// stripped of it (`strip --strip-debug`: the symbol table stays), and gets
/// a `.gnu_debuglink` to the copy, which gdb follows through the build ID.
/// Nothing refers to `$debug`, so a closure never holds it.
const STRIP_PHASE: &str = r#"echo 'drv: strip phase'
mkdir -p "$debug"
for o in $outputs; do
  [ "$o" = debug ] && continue
  eval "dir=\$$o"
  [ -d "$dir" ] || continue
  find "$dir" -type f \( -name '*.so' -o -name '*.so.*' -o -perm -u+x \) | LC_ALL=C sort | while read -r f; do
    case "$(od -An -tx1 -N4 "$f")" in *"7f 45 4c 46"*) ;; *) continue ;; esac
    case "$(readelf -h "$f" 2>/dev/null | sed -n 's/^ *Type: *\([A-Z]*\).*/\1/p')" in EXEC|DYN) ;; *) continue ;; esac
    readelf -S "$f" | grep -q ' \.debug_info ' || continue
    id=$(readelf -n "$f" | sed -n 's/^ *Build ID: *\([0-9a-f]*\)$/\1/p')
    [ -n "$id" ] || { echo "drv: $f has debug information but no build ID: stripped, not kept"; chmod u+w "$f"; strip --strip-debug "$f"; continue; }
    keep="$debug/lib/debug/.build-id/$(echo "$id" | cut -c1-2)/$(echo "$id" | cut -c3-).debug"
    mkdir -p "${keep%/*}"
    chmod u+w "$f"
    objcopy --only-keep-debug "$f" "$keep"
    chmod 0444 "$keep"
    strip --strip-debug "$f"
    objcopy --add-gnu-debuglink="$keep" "$f"
  done
done
"#;

/// The builder of prebuilt outputs (the C library and `[prebuilt]`
/// recipes). From each `.deb` in `$debs` it keeps what programs and builds
/// use: the shared libraries of `lib/$multiarch` and `usr/lib/$multiarch`
/// (`*.so*`, symlinks kept, absolute ones made relative) in `$out/lib`,
/// their pkg-config files in `$out/lib/pkgconfig` with `prefix` and the
/// multiarch and `/usr` directories rewritten to the output's, and `usr/include` (with its `$multiarch` part
/// merged in) as `$out/include`. Static libraries, programs,
/// documentation and data are left out. With `$runpath`, every ELF file
/// gets `RUNPATH` `$out/lib:$runpath` (patchelf), so it finds its
/// libraries in the store and nowhere else; each file named in
/// `$selfRunpath` gets `RUNPATH` `$out/lib` alone (the C library's
/// `libc.so.6`, which loads `libgcc_s.so.1` itself for `pthread_exit` and
/// `pthread_cancel` and would otherwise search the host's directories for
/// it). A dangling symlink fails the build.
pub const PREBUILT_SCRIPT: &str = r#"echo 'drv: unpack phase'
mkdir unpacked
for d in $debs; do dpkg-deb -x "$d" unpacked; done
cd unpacked
echo 'drv: install phase'
mkdir -p "$out/lib"
for dir in "lib/$multiarch" "usr/lib/$multiarch"; do
  [ -d "$dir" ] || continue
  for f in "$dir"/*.so "$dir"/*.so.*; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    cp -P "$f" "$out/lib/"
  done
  if [ -d "$dir/pkgconfig" ]; then
    mkdir -p "$out/lib/pkgconfig"
    cp "$dir"/pkgconfig/*.pc "$out/lib/pkgconfig/"
  fi
done
for l in "$out"/lib/*; do
  [ -L "$l" ] || continue
  t=$(readlink "$l")
  case "$t" in /*) ln -sfn "${t##*/}" "$l" ;; esac
  [ -e "$l" ] || { echo "drv: $l -> $(readlink "$l") leads nowhere in the output" >&2; exit 1; }
done
if [ -d usr/include ]; then
  mkdir -p "$out/include"
  cp -R usr/include/. "$out/include/"
  if [ -d "$out/include/$multiarch" ]; then
    cp -R "$out/include/$multiarch/." "$out/include/"
    rm -rf "${out:?}/include/$multiarch"
  fi
fi
if [ -d "$out/lib/pkgconfig" ]; then
  for pc in "$out"/lib/pkgconfig/*.pc; do
    sed -i -e "s|^prefix=.*|prefix=$out|" \
      -e "s|/usr/lib/$multiarch|$out/lib|g" -e "s|/usr/include/$multiarch|$out/include|g" -e "s|/usr/include|$out/include|g" \
      -e "s|/lib/$multiarch|/lib|g" -e "s|/include/$multiarch|/include|g" "$pc"
  done
fi
for f in ${selfRunpath-}; do
  chmod u+w "$out/lib/$f"
  patchelf --set-rpath "$out/lib" "$out/lib/$f"
done
if [ -n "${runpath-}" ]; then
  echo 'drv: runpath phase'
  for f in "$out"/lib/*; do
    [ -f "$f" ] && [ ! -L "$f" ] || continue
    case "$(od -An -tx1 -N4 "$f")" in *"7f 45 4c 46"*) ;; *) continue ;; esac
    chmod u+w "$f"
    patchelf --set-rpath "$out/lib:$runpath" "$f"
  done
fi
"#;

/// Unpack archives among the sources into `/build`, copy the rest under
/// their names (without the store hash), and enter the single directory
/// an archive created.
const DEFAULT_UNPACK: &str = r#"for s in $srcs; do
  b=${s##*/}; b=${b#*-}
  case "$b" in
    *.tar|*.tar.gz|*.tgz|*.tar.xz|*.txz|*.tar.bz2|*.tbz2|*.tar.zst) tar -xf "$s" --no-same-owner --no-same-permissions ;;
    *) cp -R "$s" "$b"; chmod -R u+w "$b" ;;
  esac
done
n=0; for d in */; do [ -d "$d" ] && n=$((n+1)) && last=$d; done
if [ "$n" -eq 1 ]; then cd "$last"; fi"#;

mod python;

#[cfg(test)]
mod tests;
