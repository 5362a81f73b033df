//! Finding and parsing a recipe and every recipe it reaches.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use drv_debian::lock::{DebianLock, Lock, LockError, LOCK_FILE_NAME};

use crate::error::{Diagnostic, EvalError};
use crate::recipe::{self, Recipe, Spans};

/// A recipe and everything it depends on, parsed and checked.
#[derive(Debug, Clone)]
pub struct RecipeSet {
    /// The recipe that was asked for.
    pub root: PathBuf,
    pub recipes: BTreeMap<PathBuf, Recipe>,
    /// Every recipe, dependencies before their dependents.
    pub order: Vec<PathBuf>,
    /// The lock file and what it pins, when a recipe names Debian packages
    /// ([`BUILTIN_LOCK_NAME`] for drv's built-in one).
    pub lock: Option<(PathBuf, DebianLock)>,
    /// The Python lock files of `[python]` recipes (absolute) and what
    /// `drv lock` chose from each, checked to be current.
    pub python: BTreeMap<PathBuf, PythonLockPins>,
}

/// One Python lock file as `drv.lock` pins it.
#[derive(Debug, Clone)]
pub struct PythonLockPins {
    pub pinned: drv_python::PinnedLock,
    /// The Python pins of `drv.lock` (every lock file's: shared by all).
    pub pins: std::sync::Arc<drv_python::PythonPins>,
}

/// The glibc version (`(2, 36)`) of a Debian lock's C library (`libc6`).
pub fn glibc_version(debian: &DebianLock) -> Option<(u32, u32)> {
    let v = &debian.find(drv_debian_libc())?.version;
    let upstream = v.split_once(':').map_or(v.as_str(), |(_, r)| r);
    let upstream = upstream.split('-').next()?;
    let mut parts = upstream.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn drv_debian_libc() -> &'static str {
    crate::lower::LIBC_PACKAGES[0]
}

/// `3.11.2` → `3.11`.
pub fn python_minor(version: &str) -> Option<String> {
    let mut parts = version.split('.');
    let (a, b) = (parts.next()?, parts.next()?);
    let b: String = b.chars().take_while(|c| c.is_ascii_digit()).collect();
    (a.parse::<u32>().is_ok() && !b.is_empty()).then(|| format!("{a}.{b}"))
}

/// The lock of drv's own recipes (`recipes/drv.lock`), built into drv: the
/// toolchain of a recipe that has no `drv.lock` at or above its directory
/// (a recipe tried out anywhere). It pins bookworm's gcc, binutils, make,
/// libc6-dev, coreutils, dash, sed, grep, mawk, diffutils, findutils, tar,
/// bzip2, gzip, xz-utils and their closure; a name it does not cover is
/// an error that says to run `drv lock`. Same drv, same toolchain.
pub const BUILTIN_LOCK: &str = include_str!("../../../recipes/drv.lock");

/// How the built-in lock is named in errors and in the graph.
pub const BUILTIN_LOCK_NAME: &str = "drv's built-in lock (the lock of drv's own recipes)";

/// Where the lock file of a recipe is: `drv.lock` in the recipe's
/// directory or the nearest ancestor directory that has one; when none
/// has, the one `drv lock` would create (in the recipe's directory), and
/// evaluation uses [`BUILTIN_LOCK`] instead.
pub fn lock_file_for(recipe: &Path) -> PathBuf {
    let dir = recipe.parent().unwrap_or(Path::new("/"));
    dir.ancestors()
        .map(|d| d.join(LOCK_FILE_NAME))
        .find(|f| f.is_file())
        .unwrap_or_else(|| dir.join(LOCK_FILE_NAME))
}

/// Load `entry` and, recursively, its dependencies, and the lock file that
/// pins their Debian packages ([`lock_file_for`]). A dependency cycle is an
/// error listing the recipe files around the cycle; a Debian package name
/// the lock does not cover is an error pointing at the recipe's
/// `toolchain.debian`.
pub fn load(entry: &Path) -> Result<RecipeSet, EvalError> {
    load_with(entry, true)
}

/// [`load`] without the lock file: what `drv lock` reads to learn the
/// names to resolve.
pub fn load_unlocked(entry: &Path) -> Result<RecipeSet, EvalError> {
    load_with(entry, false)
}

fn load_with(entry: &Path, locked: bool) -> Result<RecipeSet, EvalError> {
    let entry = std::path::absolute(entry).map_err(|error| EvalError::Read { path: entry.to_owned(), error })?;
    let entry = recipe::normalize(&entry);
    let mut loader = Loader::default();
    loader.visit(&entry, None)?;
    let mut python = BTreeMap::new();
    let lock = if locked && loader.recipes.values().any(|r| !r.toolchain.is_empty() || !r.prebuilt.is_empty() || r.python.is_some()) {
        let file = lock_file_for(&entry);
        let (lock, shown_lock, used) = match Lock::read(&file) {
            Ok(lock) => (lock, crate::error::shown(&file).display().to_string(), file.clone()),
            Err(LockError::Missing { .. }) => {
                let builtin = Path::new(BUILTIN_LOCK_NAME);
                let lock = Lock::parse(BUILTIN_LOCK, builtin).map_err(|e| EvalError::Lock(Box::new(e)))?;
                let shown = format!("{BUILTIN_LOCK_NAME}; `drv lock` makes {}", crate::error::shown(&file).display());
                (lock, shown, builtin.to_owned())
            }
            Err(e) => return Err(EvalError::Lock(Box::new(e))),
        };
        let Some(debian) = lock.debian else {
            return Err(EvalError::Lock(Box::new(LockError::NoDebian { file })));
        };
        python = python_pins(&loader, &file, &used, lock.python, &debian)?;
        // A name the lock does not cover is shown where the recipe says it.
        for (path, recipe) in &loader.recipes {
            let (spans, text) = &loader.spans[path];
            let named = recipe.toolchain.iter().map(|n| (n.clone(), &spans.toolchain));
            let prebuilt = recipe.prebuilt.iter().map(|n| (n.clone(), &spans.prebuilt));
            // The C library's packages, shown where the recipe asks for it.
            let shown_at = if recipe.prebuilt.is_empty() { &spans.toolchain } else { &spans.prebuilt };
            let implied = crate::lower::implied_packages(recipe).into_iter().map(|n| (n.to_owned(), shown_at));
            for (name, span) in named.chain(prebuilt).chain(implied) {
                let name = &name;
                if let Err(e) = debian.closure(std::slice::from_ref(name)) {
                    // The name where the list has it; the whole list for a
                    // package the recipe implies (the C library's).
                    let span = span.clone().unwrap_or(0..0);
                    let quoted = format!("{name:?}");
                    let span = match text.get(span.clone()).and_then(|list| list.find(&quoted)) {
                        Some(i) => span.start + i..span.start + i + quoted.len(),
                        None => span,
                    };
                    // A near miss among the locked names is most likely a typo.
                    let near = debian
                        .packages
                        .iter()
                        .map(|p| p.name.as_str())
                        .filter(|p| strsim::damerau_levenshtein(p, name) <= 2)
                        .min_by_key(|p| strsim::damerau_levenshtein(p, name));
                    let help = match near {
                        Some(p) => format!("did you mean {p:?}? The lock used: {shown_lock}"),
                        None => format!("the lock used: {shown_lock}"),
                    };
                    return Err(Diagnostic::spanning(path, text, span, format!("{e}")).with_help(help).into());
                }
            }
        }
        Some((used, debian))
    } else {
        None
    };
    Ok(RecipeSet { root: entry, recipes: loader.recipes, order: loader.order, lock, python })
}

/// The pins of each `[python]` recipe's lock file, checked against the
/// file as it is now and the target (interpreter and C library) it is for.
/// `lock_file` is where `drv.lock` is (or would be), `used` the lock read.
fn python_pins(
    loader: &Loader,
    lock_file: &Path,
    used: &Path,
    pins: drv_python::PythonPins,
    debian: &DebianLock,
) -> Result<BTreeMap<PathBuf, PythonLockPins>, EvalError> {
    let mut out = BTreeMap::new();
    let pins = std::sync::Arc::new(pins);
    let lock_dir = lock_file.parent().unwrap_or(Path::new("/"));
    for (path, recipe) in &loader.recipes {
        let Some(py) = &recipe.python else { continue };
        let (spans, text) = &loader.spans[path];
        let span = spans.python_lock.clone().unwrap_or(0..0);
        let at = |message: String| -> EvalError { Diagnostic::spanning(path, text, span.clone(), message).into() };
        let shown_lock = crate::error::shown(lock_file).display().to_string();
        let Ok(rel) = py.lock.strip_prefix(lock_dir) else {
            return Err(at(format!("the lock file is not in or below {}, the directory of {shown_lock}", lock_dir.display())));
        };
        let rel = rel.to_string_lossy().into_owned();
        let run_lock = format!("run `drv lock {}`", crate::error::shown(path).display());
        let Some(pinned) = pins.lock(&rel).cloned() else {
            let what = if used == lock_file { shown_lock.clone() } else { BUILTIN_LOCK_NAME.to_owned() };
            return Err(Diagnostic::spanning(path, text, span.clone(), format!("{rel} is not resolved in {what}"))
                .with_help(format!("{run_lock}: it chooses each package's file and records it"))
                .into());
        };
        let bytes = std::fs::read(&py.lock).map_err(|error| EvalError::Read { path: py.lock.clone(), error })?;
        let sha = drv_formats::Sha256::digest(&bytes).to_hex();
        if sha != pinned.sha256 {
            return Err(Diagnostic::spanning(path, text, span.clone(), format!("{rel} changed since `drv lock` resolved it into {shown_lock}"))
                .with_help(run_lock)
                .into());
        }
        let interp = &loader.recipes[&py.interpreter];
        let minor = python_minor(&interp.version);
        let glibc = glibc_version(debian).map(|(a, b)| format!("{a}.{b}"));
        if minor.as_deref() != Some(pinned.python.as_str()) || glibc.as_deref() != Some(pinned.glibc.as_str()) {
            return Err(Diagnostic::spanning(
                path,
                text,
                span.clone(),
                format!(
                    "{rel} was resolved for Python {} on glibc {}, but the interpreter is {} {} on glibc {}",
                    pinned.python,
                    pinned.glibc,
                    interp.name,
                    interp.version,
                    glibc.as_deref().unwrap_or("?")
                ),
            )
            .with_help(run_lock)
            .into());
        }
        for (name, pspan) in &spans.python_packages {
            if pins.closure(&rel, std::slice::from_ref(name)).is_err() {
                return Err(Diagnostic::spanning(path, text, pspan.clone(), format!("{rel} has no package {name:?} for Python {} on {}", pinned.python, pinned.arch)).into());
            }
        }
        out.insert(py.lock.clone(), PythonLockPins { pinned, pins: std::sync::Arc::clone(&pins) });
    }
    Ok(out)
}

#[derive(Default)]
struct Loader {
    recipes: BTreeMap<PathBuf, Recipe>,
    spans: BTreeMap<PathBuf, (Spans, String)>,
    order: Vec<PathBuf>,
    /// The recipes being visited, outermost first: a cycle is a path back into it.
    stack: Vec<PathBuf>,
}

impl Loader {
    fn visit(&mut self, file: &Path, referrer: Option<&Path>) -> Result<(), EvalError> {
        if let Some(pos) = self.stack.iter().position(|p| p == file) {
            let mut cycle = self.stack[pos..].to_vec();
            cycle.push(file.to_owned());
            // Shown at the dependency entry that closes the cycle.
            if let Some((r, (spans, text))) = referrer.and_then(|r| Some((r, self.spans.get(r)?))) {
                if let Some(span) = spans.dependencies.get(file) {
                    let around = cycle.iter().map(|p| crate::error::shown(p).display().to_string()).collect::<Vec<_>>();
                    let d = Diagnostic::spanning(r, text, span.clone(), format!("dependency cycle: {}", around.join(" -> ")))
                        .with_help("a recipe cannot depend on itself, directly or through other recipes; remove one of these dependencies");
                    return Err(d.into());
                }
            }
            return Err(EvalError::Cycle(cycle));
        }
        if self.recipes.contains_key(file) {
            return Ok(());
        }
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(error) => {
                // Point at the dependency entry that names the missing file.
                if let Some(r) = referrer {
                    let (spans, text) = &self.spans[r];
                    if let Some(span) = spans.dependencies.get(file) {
                        return Err(Diagnostic::spanning(r, text, span.clone(), format!("dependency {}: {error}", crate::error::shown(file).display())).into());
                    }
                }
                return Err(EvalError::Read { path: file.to_owned(), error });
            }
        };
        let (recipe, spans) = recipe::parse(file, &text)?;
        let deps: Vec<PathBuf> = recipe.all_dependencies().cloned().collect();
        self.spans.insert(file.to_owned(), (spans, text));
        self.stack.push(file.to_owned());
        for d in &deps {
            self.visit(d, Some(file))?;
        }
        self.stack.pop();
        self.recipes.insert(file.to_owned(), recipe);
        self.order.push(file.to_owned());
        Ok(())
    }
}
