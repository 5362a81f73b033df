//! Lowering checked recipes into derivations, the way Nix's `derivation`
//! builtin does: every input by store path, output paths from
//! `hashDerivationModulo`, the `.drv` files written to the store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use drv_store::{ContentAddress, Derivation, DerivationHash, Ingestion, LocalStore, StorePath};

use crate::error::EvalError;
use crate::graph::{Evaluation, GraphBuilder, Node, NodeKind};
use crate::load::RecipeSet;
use crate::recipe::{Phases, Recipe, Source};

/// The platform every derivation is built for.
pub const SYSTEM: &str = "x86_64-linux";

/// The store name of a build script passed as a file (see
/// `Lowering::builder_args`).
pub const BUILDER_SCRIPT_NAME: &str = "builder.sh";

/// The builder of fixed-output downloads, realised by drv itself.
pub const FETCH_BUILDER: &str = "builtin:fetchurl";

/// Environment variable naming the toolchain root file system of a build.
pub const TOOLCHAIN_ENV: &str = "drvToolchain";

/// The builder of toolchain root file systems, realised by drv itself
/// from the `.deb`s named by `debs` (see `drv_debian::rootfs`).
pub const ROOTFS_BUILDER: &str = drv_store::realise::ROOTFS_BUILDER;

/// Lower every recipe of `set` and write the derivations to `store`.
pub fn lower(set: &RecipeSet, store: &mut LocalStore) -> Result<Evaluation, EvalError> {
    let mut l = Lowering {
        store,
        hashes: BTreeMap::new(),
        eval: GraphBuilder::default(),
        packages: BTreeMap::new(),
        toolchains: BTreeMap::new(),
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
    toolchains: BTreeMap<Vec<String>, (StorePath, StorePath)>,
    hashes: BTreeMap<StorePath, DerivationHash>,
    eval: GraphBuilder,
    /// Recipe file → (package `.drv`, its `out` path).
    packages: BTreeMap<PathBuf, (StorePath, StorePath)>,
}

/// A recipe's run-time dependencies, transitively: what its dependents get too.
fn propagated(set: &RecipeSet, recipe: &Recipe, into: &mut BTreeSet<PathBuf>) {
    for d in &recipe.run_dependencies {
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
                    let (drv, out) = self.fetch(name, *sha256, &[("url", url.as_str())], &recipe.file)?;
                    input_drvs.insert(drv);
                    out
                }
                Source::PythonIndex { project, version, file, sha256 } => {
                    let env = [("pythonIndexProject", project.as_str()), ("pythonIndexVersion", version.as_str()), ("pythonIndexFile", file.as_str())];
                    let (drv, out) = self.fetch(file, *sha256, &env, &recipe.file)?;
                    input_drvs.insert(drv);
                    out
                }
            };
            srcs.push(self.store.display(&out));
        }

        let toolchain = if recipe.toolchain.is_empty() {
            None
        } else {
            let (drv, out) = self.toolchain(recipe, set)?;
            input_drvs.insert(drv);
            Some(out)
        };

        // Dependencies: declared ones plus what they propagate.
        let mut deps: BTreeSet<PathBuf> = recipe.build_dependencies.iter().chain(&recipe.run_dependencies).cloned().collect();
        for d in deps.clone() {
            propagated(set, &set.recipes[&d], &mut deps);
        }
        let env = self.common_env(recipe, &deps, set, toolchain.as_ref(), &mut input_drvs);

        let mut b = Derivation::builder(self.store.store_dir(), &recipe.full_name(), SYSTEM, "/bin/sh");
        for a in self.builder_args(build_script(&recipe.phases, !srcs.is_empty()), &mut input_srcs)? {
            b = b.arg(a);
        }
        for o in &recipe.outputs {
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
        env.insert("outputs".into(), recipe.outputs.join(" "));
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
        let out = drv.outputs()?["out"].path.clone();
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
            let mut env = self.common_env(recipe, &test_deps, set, toolchain.as_ref(), &mut t_inputs);
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
            if toolchain.is_some() {
                let (drv, _) = self.toolchain(recipe, set)?;
                t_inputs.insert(drv);
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
        if script.len() < drv_store::sandbox::MAX_ARG_STRLEN {
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
        env.insert("SOURCE_DATE_EPOCH".into(), recipe.source_date_epoch.to_string());
        env
    }

    /// The toolchain of `recipe`: a `.deb` download for each locked
    /// package of the closure of its `toolchain.debian` names, and the
    /// derivation that assembles them into a root file system. Recipes
    /// with the same closure share one.
    fn toolchain(&mut self, recipe: &Recipe, set: &RecipeSet) -> Result<(StorePath, StorePath), EvalError> {
        // `load` reads the lock whenever a recipe names Debian packages; a
        // set made another way may not have one.
        let Some((lock_file, lock)) = &set.lock else {
            let file = recipe.file.parent().unwrap_or(std::path::Path::new("/")).join(drv_debian::lock::LOCK_FILE_NAME);
            return Err(EvalError::Lock(Box::new(drv_debian::lock::LockError::Missing { file })));
        };
        let closure = lock.closure(&recipe.toolchain).map_err(|e| EvalError::Lock(Box::new(e)))?;
        let key: Vec<String> = closure.iter().map(|p| p.name.clone()).collect();
        if let Some(t) = self.toolchains.get(&key) {
            return Ok(t.clone());
        }
        let mut debs = Vec::new();
        let mut b = Derivation::builder(self.store.store_dir(), &format!("{}-toolchain", lock.suite), "builtin", ROOTFS_BUILDER);
        for p in &closure {
            let repository = lock.repository(p).ok_or_else(|| {
                EvalError::Lock(Box::new(drv_debian::lock::LockError::UnknownRepository {
                    file: lock_file.clone(),
                    package: p.name.clone(),
                    repository: p.repository.clone(),
                }))
            })?;
            let sha256 = drv_store::Sha256::parse(&p.sha256).map_err(drv_store::StoreError::from)?;
            // Store names have no `~` (Debian versions do: `5.7-0.5~deb12u1`).
            let file: String = p
                .path
                .rsplit('/')
                .next()
                .unwrap_or(&p.path)
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || "+-._?=".contains(c) { c } else { '_' })
                .collect();
            let url = format!("mirror://{}/{}", repository.mirror, p.path);
            let (drv, out) = self.fetch(&file, sha256, &[("url", url.as_str())], lock_file)?;
            b = b.input_derivation(drv, ["out".to_owned()]);
            debs.push(self.store.display(&out));
        }
        let name = format!("{}-toolchain", lock.suite);
        b = b
            .output("out")
            .env("builder", ROOTFS_BUILDER)
            .env("name", name.as_str())
            .env("system", "builtin")
            .env("debs", debs.join(" "))
            .env("rootfsFormat", drv_debian::rootfs::FORMAT_VERSION.to_string());
        let drv = b.build(|p| self.hashes.get(p).copied())?;
        let out = drv.outputs()?["out"].path.clone();
        let node = Node { recipe: lock_file.clone(), kind: NodeKind::Toolchain, main: None };
        let drv_path = self.add(drv, node)?;
        self.toolchains.insert(key, (drv_path.clone(), out.clone()));
        Ok((drv_path, out))
    }

    /// A fixed-output derivation that downloads one file.
    fn fetch(
        &mut self,
        name: &str,
        sha256: drv_store::Sha256,
        env: &[(&str, &str)],
        recipe: &std::path::Path,
    ) -> Result<(StorePath, StorePath), EvalError> {
        let mut b = Derivation::builder(self.store.store_dir(), name, "builtin", FETCH_BUILDER)
            .fixed_output(ContentAddress::Flat(sha256))
            .env("builder", FETCH_BUILDER)
            .env("name", name)
            .env("system", "builtin");
        for (k, v) in env {
            b = b.env(*k, *v);
        }
        let drv = b.build(|_| None)?;
        let out = drv.outputs()?["out"].path.clone();
        let node = Node { recipe: recipe.to_owned(), kind: NodeKind::Fetch, main: None };
        let p = self.add(drv, node)?;
        Ok((p, out))
    }
}

/// The builder's script: the recipe's own, or its phases around drv's
/// default unpacking.
fn build_script(phases: &Phases, has_sources: bool) -> String {
    if let Some(script) = &phases.script {
        return script.clone();
    }
    let mut s = String::new();
    let mut phase = |name: &str, body: &str| {
        s.push_str(&format!("echo 'drv: {name} phase'\n{}\n", body.trim_end()));
    };
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
    s
}

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
