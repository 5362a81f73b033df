//! Lowering a `[python]` recipe: one derivation a distribution (installed
//! into a store path of its own by the pinned interpreter, [`INSTALL`]),
//! and the environment that joins a recipe's packages ([`ENV`]). A package
//! depends on the interpreter and its file only (and, for an sdist, on its
//! build requirements), so changing one pin rebuilds that package and the
//! environments that hold it, nothing else.

use std::collections::BTreeSet;
use std::path::Path;

use drv_formats::{Derivation, DerivationBuilder, StorePath};
use drv_python::{Pin, WheelName};
use drv_realise::{Download, TOOLCHAIN_ENV};

use super::{store_name, Lowering, SYSTEM};
use crate::error::EvalError;
use crate::graph::{Node, NodeKind};
use crate::load::{python_minor, PythonLockPins, RecipeSet};
use crate::recipe::Recipe;

/// The installer of one distribution (see the script's header).
pub const INSTALL: &str = include_str!("python/install.py");

/// The builder of environments (see the script's header).
pub const ENV: &str = include_str!("python/env.py");

/// The Debian packages a build that installs compiled code needs: the
/// RUNPATH of its ELF files is set to the closure's C library.
const PATCHELF: &str = "patchelf";

/// Whether a distribution may hold compiled code: a wheel for a platform,
/// or an sdist (whose build may compile some).
fn may_hold_elf(file: &str) -> bool {
    match file.parse::<WheelName>() {
        Ok(w) => w.tags().any(|t| t.platform != "any"),
        Err(_) => true,
    }
}

impl Lowering<'_> {
    /// A `[python]` recipe: its lock's packages installed, and the
    /// environment joining the closure of the packages it names.
    pub(super) fn python_env(&mut self, recipe: &Recipe, set: &RecipeSet) -> Result<(), EvalError> {
        let py = recipe.python.as_ref().expect("a [python] recipe");
        let lock = set.python.get(&py.lock).ok_or_else(|| EvalError::PythonLock { file: py.lock.clone(), message: "not resolved: run `drv lock`".into() })?;
        let closure = lock
            .pins
            .closure(&lock.pinned.file, &py.packages)
            .map_err(|name| EvalError::PythonLock { file: py.lock.clone(), message: format!("no package {name:?}") })?;
        let (interp_drv, interp_out) = self.packages[&py.interpreter].clone();
        let interpreter = set.recipes.get(&py.interpreter).expect("loaded");
        let mut inputs = BTreeSet::from([interp_drv]);
        let mut outs = Vec::new();
        for pin in closure {
            let (drv, out) = self.python_package(pin, lock, &py.lock, interpreter, set, &mut Vec::new())?;
            inputs.insert(drv);
            outs.push(self.store.display(&out));
        }
        let mut b = self
            .interpreter_runs(&recipe.full_name(), &self.store.display(&interp_out), interpreter, ENV)
            .env("python", self.store.display(&interp_out))
            .env("pythonPackages", outs.join(" "));
        for d in &inputs {
            b = b.input_derivation(d.clone(), ["out".to_owned()]);
        }
        let drv = b.build(|p| self.hashes.get(p).copied())?;
        let out = drv.outputs()["out"].path.clone();
        let node = Node { recipe: recipe.file.clone(), kind: NodeKind::Package, main: recipe.main.clone() };
        let drv_path = self.add(drv, node)?;
        self.packages.insert(recipe.file.clone(), (drv_path, out));
        Ok(())
    }

    /// The derivation installing `pin` (of the lock file `lock_file`) for
    /// `interpreter`; one per lock file and package, whichever recipes
    /// share it. `building` holds the sdists whose build requirements are
    /// being lowered, to refuse a cycle.
    fn python_package(
        &mut self,
        pin: &Pin,
        lock: &PythonLockPins,
        lock_file: &Path,
        interpreter: &Recipe,
        set: &RecipeSet,
        building: &mut Vec<String>,
    ) -> Result<(StorePath, StorePath), EvalError> {
        let key = (lock_file.to_owned(), pin.name.clone());
        if let Some(done) = self.python_packages.get(&key) {
            return Ok(done.clone());
        }
        let sha256 = drv_formats::Sha256::parse(&pin.sha256).map_err(drv_store::StoreError::from)?;
        let download = Download::PythonIndexFile { project: &pin.name, version: &pin.version, file: &pin.file };
        let (fetch_drv, src) = self.fetch(&store_name(&pin.file), sha256, download, lock_file)?;
        let mut inputs = BTreeSet::from([fetch_drv, self.packages[&interpreter.file].0.clone()]);
        let interp_out = self.store.display(&self.packages[&interpreter.file].1);
        let minor = python_minor(&interpreter.version).unwrap_or_else(|| interpreter.version.clone());
        let name = store_name(&format!("python{minor}-{}-{}", pin.name, pin.version));
        let mut b = self
            .interpreter_runs(&name, &interp_out, interpreter, INSTALL)
            .env("src", self.store.display(&src))
            .env("pythonFile", pin.file.as_str())
            .env("SOURCE_DATE_EPOCH", "1");
        if let Some(build) = &pin.build {
            if building.contains(&pin.name) {
                building.push(pin.name.clone());
                return Err(EvalError::PythonLock {
                    file: lock_file.to_owned(),
                    message: format!("the sdists' build requirements form a cycle: {}", building.join(" -> ")),
                });
            }
            building.push(pin.name.clone());
            // No build requirements (a backend in the tree, `backend-path`)
            // is no build input, not the whole lock (`closure` of no roots).
            let closure = if build.requires.is_empty() {
                Vec::new()
            } else {
                lock.pins.closure(&lock.pinned.file, &build.requires).map_err(|n| EvalError::PythonLock {
                    file: lock_file.to_owned(),
                    message: format!("{} {} builds with {n:?}, which is not pinned", pin.name, pin.version),
                })?
            };
            let mut build_inputs = Vec::new();
            for dep in closure {
                let (d, o) = self.python_package(dep, lock, lock_file, interpreter, set, building)?;
                inputs.insert(d);
                build_inputs.push(self.store.display(&o));
            }
            building.pop();
            b = b
                .env("buildBackend", build.backend.as_str())
                .env("backendPath", build.backend_path.join("\n"))
                .env("buildInputs", build_inputs.join(" "));
        }
        if may_hold_elf(&pin.file) {
            let tools = vec![PATCHELF.to_owned()];
            let toolchain = self.toolchain(&tools, lock_file, set)?;
            let (libc_drv, libc_out) = self.libc(set)?;
            inputs.insert(toolchain.drv.clone());
            inputs.insert(libc_drv);
            b = b
                .env(TOOLCHAIN_ENV, self.store.display(&toolchain.out))
                .env(drv_debian::rootfs::LIBC_ENV, self.store.display(&libc_out))
                .env("PATH", "/usr/bin:/bin");
        }
        for d in &inputs {
            b = b.input_derivation(d.clone(), ["out".to_owned()]);
        }
        let drv = b.build(|p| self.hashes.get(p).copied())?;
        let out = drv.outputs()["out"].path.clone();
        let node = Node { recipe: lock_file.to_owned(), kind: NodeKind::Package, main: None };
        let drv_path = self.add(drv, node)?;
        self.python_packages.insert(key, (drv_path.clone(), out.clone()));
        Ok((drv_path, out))
    }
}

impl Lowering<'_> {
    /// A derivation `name` with one output, `out`, whose builder is the
    /// interpreter (at `interp_out`, its recipe's `main`, else
    /// `bin/python3`) running `script` in isolated mode (`-I -c`).
    fn interpreter_runs(&self, name: &str, interp_out: &str, interpreter: &Recipe, script: &str) -> DerivationBuilder {
        let builder = format!("{interp_out}/{}", interpreter.main.as_deref().unwrap_or("bin/python3"));
        Derivation::builder(self.store.store_dir(), name, SYSTEM, &builder)
            .arg("-I")
            .arg("-c")
            .arg(script)
            .output("out")
            .env("builder", builder.as_str())
            .env("name", name)
            .env("system", SYSTEM)
            .env("outputs", "out")
    }
}
