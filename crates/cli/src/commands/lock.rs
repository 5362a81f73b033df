//! `drv lock`: resolve the recipes' Debian package names against the
//! archive's signed indices and write the lock file that evaluation reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::Args;
use drv_debian::lock::{DebianLock, Lock, LockError, LockedPackage, Repository};
use drv_debian::resolve::Index;
use drv_realise::{fetch_suite_index, Verification};
use drv_realise::{Config, Fetcher};

use super::lock_python;
use crate::printer::Printer;
use crate::reporter::LineReporter;
use crate::Cli;

#[derive(Args)]
pub struct LockArgs {
    /// Recipe files, or directories whose *.toml recipes are all read (default: the current
    /// directory). They share one lock file: the nearest drv.lock at or above the first
    /// recipe's directory, else a new one there.
    paths: Vec<PathBuf>,
    /// Check, offline, that the lock covers every package the recipes use; exit 1 naming the
    /// recipe and the package when it does not.
    #[arg(long, conflicts_with = "update")]
    check: bool,
    /// Resolve again against the archive the named packages, or all of them when none is named.
    /// Recipe paths may follow (`drv lock --update gcc-12 recipes/`): a value with a `/` or
    /// ending in .toml is a path, never a package name.
    #[arg(long, num_args = 0.., value_name = "PACKAGE")]
    update: Option<Vec<String>>,
    /// The Debian release to resolve against (default: the lock's, else
    /// bookworm).
    #[arg(long)]
    suite: Option<String>,
    /// The Debian architecture (default: the lock's, else amd64).
    #[arg(long, value_name = "ARCH")]
    architecture: Option<String>,
    /// The OpenPGP keyring the archive's release files must be signed with (default: the
    /// debian-archive-keyring package's).
    #[arg(long, value_name = "FILE")]
    keyring: Option<PathBuf>,
}

/// Every recipe to read: the files given, and the `*.toml` files of the
/// directories given, sorted.
fn recipe_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let paths = if paths.is_empty() { vec![PathBuf::from(".")] } else { paths.to_vec() };
    let mut files = Vec::new();
    for p in &paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot read directory {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "toml") && f.is_file())
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    if files.is_empty() {
        bail!("no recipe (*.toml) in {}", paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
    }
    Ok(files)
}

/// The default repositories of a suite: the release, its updates, and its
/// security archive (another mirror), in order of preference.
fn default_repositories(suite: &str) -> Vec<(String, String)> {
    vec![
        (suite.to_owned(), "debian".to_owned()),
        (format!("{suite}-updates"), "debian".to_owned()),
        (format!("{suite}-security"), "debian-security".to_owned()),
    ]
}

pub fn run(_cli: &Cli, args: &LockArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    // `--update` takes any number of values, so paths after it land there.
    let is_path = |v: &String| v.contains('/') || v.ends_with(".toml") || v == ".";
    let mut paths = args.paths.clone();
    paths.extend(args.update.iter().flatten().filter(|v| is_path(v)).map(PathBuf::from));
    let update: Option<Vec<String>> = args.update.as_ref().map(|u| u.iter().filter(|v| !is_path(v)).cloned().collect());
    let files = recipe_files(&paths)?;
    // Each name, with the first recipe that asks for it.
    let mut wanted: BTreeMap<String, PathBuf> = BTreeMap::new();
    // Python lock files: each with the first recipe naming it and the
    // interpreter's version.
    let mut python_wanted: BTreeMap<PathBuf, (PathBuf, String)> = BTreeMap::new();
    // Each `[python]` recipe's packages, checked against its lock once resolved.
    let mut python_packages: Vec<(PathBuf, PathBuf, Vec<String>)> = Vec::new();
    let mut lock_file: Option<PathBuf> = None;
    for f in &files {
        let set = drv_eval::load_unlocked(f)?;
        let this_lock = drv_eval::lock_file_for(&set.root);
        match &lock_file {
            None => lock_file = Some(this_lock),
            Some(l) if *l != this_lock => bail!(
                "{} and {} would use different lock files ({} and {}): lock them separately",
                files[0].display(),
                f.display(),
                l.display(),
                this_lock.display()
            ),
            Some(_) => {}
        }
        for (path, recipe) in &set.recipes {
            let implied = drv_eval::implied_packages(recipe).into_iter().map(str::to_owned);
            for name in recipe.toolchain.iter().chain(&recipe.prebuilt).cloned().chain(implied) {
                wanted.entry(name).or_insert_with(|| path.clone());
            }
            if let Some(py) = &recipe.python {
                python_packages.push((path.clone(), py.lock.clone(), py.packages.clone()));
                let version = set.recipes[&py.interpreter].version.clone();
                match python_wanted.get(&py.lock) {
                    Some((other, v)) if *v != version => bail!(
                        "{} and {} use {} with interpreters of different versions ({v} and {version}): one lock file is resolved for one interpreter",
                        shown(other).display(),
                        shown(path).display(),
                        shown(&py.lock).display()
                    ),
                    Some(_) => {}
                    None => {
                        python_wanted.insert(py.lock.clone(), (path.clone(), version));
                    }
                }
            }
        }
    }
    let lock_file = lock_file.expect("at least one recipe");
    let lock_shown = shown(&lock_file);
    let (old, old_python) = match Lock::read(&lock_file) {
        Ok(l) => (l.debian, l.python),
        Err(LockError::Missing { .. }) => (None, Default::default()),
        Err(e) => return Err(e.into()),
    };
    let lock_dir = lock_file.parent().unwrap_or(Path::new("/")).to_owned();
    let python_targets = |debian: &DebianLock| -> anyhow::Result<Vec<lock_python::Wanted>> {
        python_wanted
            .iter()
            .map(|(file, (recipe, version))| {
                Ok(lock_python::Wanted { file: file.clone(), recipe: recipe.clone(), target: lock_python::target(version, debian, recipe)? })
            })
            .collect()
    };
    // `--update NAME`: Debian names go to the Debian resolution, Python
    // project names to the Python one.
    let python_names: BTreeSet<&str> = old_python.packages.iter().map(|p| p.name.as_str()).collect();
    let is_python = |n: &str| python_names.contains(drv_python::normalize(n).as_str()) && old.as_ref().is_none_or(|d| d.find(n).is_none());
    let python_update: Option<Vec<String>> = update.as_ref().map(|u| u.iter().filter(|n| is_python(n)).cloned().collect());
    let debian_update: Option<Vec<String>> = match &update {
        Some(u) if !u.is_empty() && u.iter().all(|n| is_python(n)) => None,
        Some(u) => Some(u.iter().filter(|n| !is_python(n)).cloned().collect()),
        None => None,
    };
    let python_update = match (&update, python_update) {
        (Some(u), _) if u.is_empty() => Some(vec![]),
        (_, Some(p)) if p.is_empty() => None,
        (_, p) => p,
    };

    if args.check {
        // What evaluation would use: the lock file, else drv's built-in one.
        let (lock, what) = match &old {
            Some(d) => (d.clone(), lock_shown.display().to_string()),
            None => {
                let builtin = Lock::parse(drv_eval::BUILTIN_LOCK, Path::new(drv_eval::BUILTIN_LOCK_NAME))?;
                (builtin.debian.expect("the built-in lock pins packages"), drv_eval::BUILTIN_LOCK_NAME.to_owned())
            }
        };
        let uncovered: Vec<(&String, &PathBuf)> =
            wanted.iter().filter(|(name, _)| lock.closure(std::slice::from_ref(*name)).is_err()).collect();
        for (name, recipe) in &uncovered {
            printer.failure(format_args!("{}: Debian package {name:?} is not in {what}", shown(recipe).display()));
        }
        if !uncovered.is_empty() {
            printer.failure(format_args!("run `drv lock` to resolve {} into {}", if uncovered.len() == 1 { "it" } else { "them" }, lock_shown.display()));
            return Ok(ExitCode::FAILURE);
        }
        let mut stale = Vec::new();
        for w in python_targets(&lock)? {
            if let Some(why) = lock_python::stale(&old_python, &lock_python::pinned_now(&w, &lock_dir)?) {
                stale.push(format!("{}: {why}", shown(&w.recipe).display()));
            }
        }
        if !stale.is_empty() {
            for s in &stale {
                printer.failure(s);
            }
            printer.failure(format_args!("run `drv lock` to resolve {} into {}", if stale.len() == 1 { "it" } else { "them" }, lock_shown.display()));
            return Ok(ExitCode::FAILURE);
        }
        if python_wanted.is_empty() {
            printer.result(format_args!("{what} covers every Debian package of {} recipe(s)", files.len()))?;
        } else {
            printer.result(format_args!("{what} covers every Debian package and Python lock file of {} recipe(s)", files.len()))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let update = debian_update;
    let update_all = update.as_ref().is_some_and(|u| u.is_empty());
    if wanted.is_empty() && old.is_none() && python_wanted.is_empty() {
        bail!("no recipe names Debian packages or a Python lock file: nothing to lock");
    }
    let debian = lock_debian(args, &update, update_all, &wanted, &old, &lock_file, printer)?;
    let mut python = old_python.clone();
    if let Some(d) = &debian {
        let targets = python_targets(d)?;
        let mut needed = python_update.is_some();
        for w in &targets {
            needed |= lock_python::stale(&old_python, &lock_python::pinned_now(w, &lock_dir)?).is_some();
        }
        if needed {
            let fetcher = Fetcher::new(&Config::load()?, Arc::new(LineReporter::messages(printer)))?;
            python = lock_python::resolve(&fetcher, &targets, &old_python, &lock_dir, python_update.as_deref(), printer)?;
            // Locks of other recipes beside these are kept as they are.
            for l in &old_python.locks {
                if python.lock(&l.file).is_none() {
                    python.locks.push(l.clone());
                    python.packages.extend(old_python.packages.iter().filter(|p| p.lock == l.file).cloned());
                }
            }
            python.locks.sort();
            python.packages.sort();
        } else if !python_wanted.is_empty() {
            printer.result(format_args!("{}: the Python lock files are up to date", lock_shown.display()))?;
        }
    }
    let new = Lock { debian, python };
    let old_text = std::fs::read_to_string(&lock_file).unwrap_or_default();
    if new.to_toml() != old_text {
        write_lock(&lock_file, &new)?;
    }
    // What was resolved is kept; a recipe asking for what its lock does
    // not have is then an error.
    let python = &new.python;
    for (recipe, file, packages) in &python_packages {
        let rel = file.strip_prefix(&lock_dir).unwrap_or(file).to_string_lossy().into_owned();
        for name in packages {
            if python.lock(&rel).is_some() && python.closure(&rel, std::slice::from_ref(name)).is_err() {
                bail!(
                    "{}: python.packages names {name:?}, which {} does not pin for this interpreter",
                    shown(recipe).display(),
                    shown(file).display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The Debian part of the lock: `old`, completed or updated against the
/// archive as `update` says; messages on stdout.
fn lock_debian(
    args: &LockArgs,
    update: &Option<Vec<String>>,
    update_all: bool,
    wanted: &BTreeMap<String, PathBuf>,
    old: &Option<DebianLock>,
    lock_file: &Path,
    printer: Printer,
) -> anyhow::Result<Option<DebianLock>> {
    let lock_shown = shown(lock_file);
    if wanted.is_empty() && old.is_none() {
        return Ok(None);
    }
    // Another suite or architecture is another lock: only a full update
    // may switch, never a lock that is only being completed.
    if let Some(d) = &old {
        let other = |given: &Option<String>, locked: &str| given.as_deref().is_some_and(|g| g != locked);
        if (other(&args.suite, &d.suite) || other(&args.architecture, &d.architecture)) && !update_all {
            bail!(
                "{} is for {} ({}); `drv lock --update` with --suite/--architecture re-resolves all of it",
                lock_shown.display(),
                d.suite,
                d.architecture
            );
        }
    }
    let in_lock = |n: &str| old.as_ref().is_some_and(|d| d.find(n).is_some());
    if let Some(unknown) = update.iter().flatten().find(|n| !in_lock(n) && !wanted.contains_key(*n)) {
        bail!("{unknown:?} is neither in {} nor named by a recipe: nothing to update", lock_shown.display());
    }

    // The roots: what the recipes ask for now and what they asked before
    // (recipes beside other recipes share the lock, and are not all given
    // every time).
    let mut roots: BTreeSet<String> = wanted.keys().cloned().collect();
    if let Some(d) = &old {
        if d.requested.is_empty() {
            // A lock without `requested`: its top-level packages.
            let depended: BTreeSet<&str> = d.packages.iter().flat_map(|p| p.depends.iter().map(String::as_str)).collect();
            roots.extend(d.packages.iter().filter(|p| !depended.contains(p.name.as_str())).map(|p| p.name.clone()));
        } else {
            roots.extend(d.requested.iter().cloned());
        }
    }
    let roots: Vec<String> = roots.into_iter().collect();
    if update.is_none() {
        if let Some(d) = &old {
            if d.closure(&roots).is_ok() {
                if d.requested == roots {
                    printer.result(format_args!("{} is up to date", lock_shown.display()))?;
                } else {
                    // Covered already: only the roots are recorded, offline.
                    let mut d = d.clone();
                    d.requested = roots;
                    printer.result(format_args!("{}: every name already locked; roots recorded", lock_shown.display()))?;
                    return Ok(Some(d));
                }
                return Ok(Some(d.clone()));
            }
        }
    }

    let suite = args.suite.clone().or_else(|| old.as_ref().map(|d| d.suite.clone())).unwrap_or_else(|| "bookworm".into());
    let architecture =
        args.architecture.clone().or_else(|| old.as_ref().map(|d| d.architecture.clone())).unwrap_or_else(|| "amd64".into());
    let repositories: Vec<(String, String)> = match &old {
        Some(d) if d.suite == suite && !d.repositories.is_empty() => {
            d.repositories.iter().map(|r| (r.suite.clone(), r.mirror.clone())).collect()
        }
        _ => default_repositories(&suite),
    };

    let fetcher = Fetcher::new(&Config::load()?, Arc::new(LineReporter::messages(printer)))?;
    let mut index = Index::new();
    let mut locked_repositories = Vec::new();
    let started = std::time::Instant::now();
    for (repo_suite, mirror) in &repositories {
        let got = fetch_suite_index(&fetcher, mirror, repo_suite, "main", &architecture, args.keyring.as_deref())
            .with_context(|| format!("cannot read the index of {repo_suite} (mirror {mirror})"))?;
        match &got.verification {
            Verification::Verified { .. } => {}
            Verification::Unverified { reason } => {
                printer.warn(format_args!("the release file of {repo_suite} is not verified: {reason}"))
            }
        }
        index
            .add_packages(&got.packages, repo_suite)
            .with_context(|| format!("the Packages index of {repo_suite} (mirror {mirror})"))?;
        locked_repositories.push(Repository { suite: repo_suite.clone(), mirror: mirror.clone(), date: got.date });
    }
    let resolved = drv_debian::resolve::resolve(&index, &architecture, &roots).map_err(|e| {
        let needing = match &e {
            drv_debian::resolve::ResolveError::Missing { name, needed_by: None } => wanted.get(name),
            _ => None,
        };
        match needing {
            Some(recipe) => anyhow::anyhow!("{}: {e}", shown(recipe).display()),
            None => e.into(),
        }
    })?;

    let kept: BTreeMap<String, LockedPackage> = match &old {
        Some(d) if !update_all && d.suite == suite && d.architecture == architecture => {
            d.packages.iter().map(|p| (p.name.clone(), p.clone())).collect()
        }
        _ => BTreeMap::new(),
    };
    let fresh: BTreeMap<String, LockedPackage> = resolved.into_iter().map(|p| (p.name.clone(), p)).collect();
    let named: BTreeSet<String> = update.iter().flatten().cloned().collect();
    let packages = merge(&kept, &fresh, &named, &roots)?;

    let d = DebianLock { suite, architecture, requested: roots.clone(), repositories: locked_repositories, packages };
    let d = &d;
    let before: BTreeMap<&str, &str> =
        old.as_ref().map(|o| o.packages.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect()).unwrap_or_default();
    let mut added = 0;
    let mut changed = Vec::new();
    for p in &d.packages {
        match before.get(p.name.as_str()) {
            None => added += 1,
            Some(v) if *v != p.version => changed.push(format!("{} {v} -> {}", p.name, p.version)),
            Some(_) => {}
        }
    }
    let removed = before.keys().filter(|n| !d.packages.iter().any(|p| p.name == **n)).count();
    let size: u64 = d.packages.iter().map(|p| p.size).sum();
    printer.result(format_args!(
        "{}: {} packages ({:.1} MB) from {} names: {added} added, {} changed, {removed} removed ({:.1} s)",
        lock_shown.display(),
        d.packages.len(),
        size as f64 / 1e6,
        roots.len(),
        changed.len(),
        started.elapsed().as_secs_f64()
    ))?;
    for c in &changed {
        printer.result(format_args!("  {c}"))?;
    }
    Ok(Some(d.clone()))
}

/// The lock's packages: `fresh` (today's resolution of `roots`) where a
/// package is new, named for update, or must move with one that moved;
/// `kept` (the old lock) everywhere else, so that nothing moves unasked.
///
/// Debian relations between packages of one source are often exact
/// (`gcc-12` needs `cpp-12 (= its version)`), and the archive keeps no
/// old versions to check a mix against: so the moving set is closed both
/// ways over the dependency edges — a moved package's dependencies move
/// when their version changed, and a kept package that depends on a moved
/// one moves too. Every edge then joins two packages of the same
/// resolution (one consistent index) or two unchanged ones.
fn merge(
    kept: &BTreeMap<String, LockedPackage>,
    fresh: &BTreeMap<String, LockedPackage>,
    named: &BTreeSet<String>,
    roots: &[String],
) -> anyhow::Result<Vec<LockedPackage>> {
    let mut moving: BTreeSet<String> = fresh.keys().filter(|n| !kept.contains_key(*n) || named.contains(*n)).cloned().collect();
    loop {
        let mut more = BTreeSet::new();
        for n in &moving {
            for d in fresh.get(n).map(|p| p.depends.as_slice()).unwrap_or_default() {
                let differs = match (kept.get(d), fresh.get(d)) {
                    (Some(k), Some(f)) => k.version != f.version,
                    _ => false,
                };
                if differs && !moving.contains(d) {
                    more.insert(d.clone());
                }
            }
        }
        for (n, k) in kept {
            if !moving.contains(n) && fresh.contains_key(n) && k.depends.iter().any(|d| moving.contains(d)) {
                more.insert(n.clone());
            }
        }
        if more.is_empty() {
            break;
        }
        moving.extend(more);
    }
    let mut chosen: BTreeMap<String, LockedPackage> = kept.clone();
    for n in &moving {
        if let Some(p) = fresh.get(n) {
            chosen.insert(n.clone(), p.clone());
        }
    }
    for (n, p) in fresh {
        let entry = chosen.entry(n.clone()).or_insert_with(|| p.clone());
        // A kept package may now stand for a virtual name a root asks for.
        for v in &p.provides {
            if !entry.provides.contains(v) {
                entry.provides.push(v.clone());
                entry.provides.sort();
            }
        }
    }
    // Kept entries depend on kept ones, fresh ones on fresh ones: closed,
    // unless the old lock was edited by hand.
    let chosen: Vec<LockedPackage> = chosen.into_values().collect();
    let closure = drv_debian::lock::closure(&chosen, roots)
        .context("the pins kept from the lock and today's resolution do not fit together; `drv lock --update` re-resolves all")?;
    Ok(closure.into_iter().cloned().collect())
}

/// Write `lock` to `file` atomically (a sibling renamed over it).
fn write_lock(file: &Path, lock: &Lock) -> anyhow::Result<()> {
    let tmp = file.with_extension(format!("lock.tmp-{}", std::process::id()));
    std::fs::write(&tmp, lock.to_toml()).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("cannot write {}", file.display()))
}

/// `path` relative to the current directory when it is below it.
pub(super) fn shown(path: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_owned))
        .unwrap_or_else(|| path.to_owned())
}
