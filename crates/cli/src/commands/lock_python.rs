//! `drv lock` for `[python]` recipes: choose, for each Python lock file a
//! recipe names, the one file of each package that fits the recipe's
//! interpreter and C library, and record it in `drv.lock` with the
//! dependency edges that hold there ([`drv_python::pins`]). A requirements
//! file names no files: they are found through the index's simple API,
//! here, once. Dependencies a lock does not record are read from each
//! distribution's core metadata, and an sdist's build system from its
//! `pyproject.toml`, so evaluation needs neither the network nor the files.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use drv_debian::lock::DebianLock;
use drv_python::{Choice, DistFile, LockFormat, Pin, PinnedLock, PythonLock, PythonPins, Target};
use drv_realise::{FetchSource, Fetcher};

use crate::printer::Printer;

/// A Python lock file and the target its recipes want.
pub struct Wanted {
    pub file: PathBuf,
    /// The recipe that names it first (for messages).
    pub recipe: PathBuf,
    pub target: Target,
}

/// The target of an interpreter recipe's version (`3.11.2`) on `debian`'s C library.
pub fn target(interpreter_version: &str, debian: &DebianLock, recipe: &Path) -> anyhow::Result<Target> {
    let glibc = drv_eval::glibc_version(debian).ok_or_else(|| anyhow!("the lock pins no C library (libc6) to resolve Python packages against"))?;
    let mut parts = interpreter_version.split('.');
    let major = parts.next().and_then(|p| p.parse().ok());
    let minor = parts.next().and_then(|p| p.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok());
    let (Some(major), Some(minor)) = (major, minor) else {
        bail!("{}: the interpreter's version {interpreter_version:?} is not MAJOR.MINOR[.PATCH]", recipe.display());
    };
    let arch = match debian.architecture.as_str() {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "i386" => "i686",
        other => other,
    };
    Ok(Target { python: (major, minor), python_full: interpreter_version.to_owned(), glibc, arch: arch.to_owned() })
}

/// The pinned lock entry `wanted` would get, with the file's hash now.
pub fn pinned_now(w: &Wanted, lock_dir: &Path) -> anyhow::Result<PinnedLock> {
    let bytes = std::fs::read(&w.file).with_context(|| format!("cannot read {}", w.file.display()))?;
    let rel = w.file.strip_prefix(lock_dir).map_err(|_| anyhow!("{} is not in or below {}, where drv.lock is", w.file.display(), lock_dir.display()))?;
    Ok(PinnedLock {
        file: rel.to_string_lossy().into_owned(),
        sha256: drv_formats::Sha256::digest(&bytes).to_hex(),
        python: format!("{}.{}", w.target.python.0, w.target.python.1),
        glibc: format!("{}.{}", w.target.glibc.0, w.target.glibc.1),
        arch: w.target.arch.clone(),
    })
}

/// Why `old` no longer serves the lock file as it is `now` (`None`: it
/// does).
pub fn stale(old: &PythonPins, now: &PinnedLock) -> Option<String> {
    match old.lock(&now.file) {
        None => Some(format!("{} is not resolved", now.file)),
        Some(p) if p.sha256 != now.sha256 => Some(format!("{} changed since it was resolved", now.file)),
        Some(p) if (&p.python, &p.glibc, &p.arch) != (&now.python, &now.glibc, &now.arch) => Some(format!(
            "{} was resolved for Python {} on glibc {} ({}), the recipes now want Python {} on glibc {} ({})",
            now.file, p.python, p.glibc, p.arch, now.python, now.glibc, now.arch
        )),
        Some(_) => None,
    }
}

/// `old` with every lock of `wanted` resolved again where it is stale or
/// `update` says so (`Some([])`: all; names: the locks holding them),
/// and locks no recipe names any more dropped when `prune`.
pub fn resolve(
    fetcher: &Fetcher,
    wanted: &[Wanted],
    old: &PythonPins,
    lock_dir: &Path,
    update: Option<&[String]>,
    printer: Printer,
) -> anyhow::Result<PythonPins> {
    let mut out = PythonPins::default();
    for w in wanted {
        let now = pinned_now(w, lock_dir)?;
        let named = |p: &Pin| update.is_some_and(|u| u.is_empty() || u.iter().any(|n| drv_python::normalize(n) == p.name));
        let keep = stale(old, &now).is_none() && !old.packages.iter().any(|p| p.lock == now.file && named(p));
        if keep {
            out.locks.push(old.lock(&now.file).expect("not stale").clone());
            out.packages.extend(old.packages.iter().filter(|p| p.lock == now.file).cloned());
            continue;
        }
        let started = std::time::Instant::now();
        let pins = resolve_one(fetcher, w, &now)?;
        printer.result(format_args!(
            "{}: {} packages for Python {} on glibc {} ({:.1} s)",
            super::lock::shown(&w.file).display(),
            pins.len(),
            now.python,
            now.glibc,
            started.elapsed().as_secs_f64()
        ))?;
        out.locks.push(now);
        out.packages.extend(pins);
    }
    out.locks.sort();
    out.packages.sort();
    Ok(out)
}

/// One distribution as downloaded, for what locking reads from it.
struct Downloaded {
    metadata: Option<drv_python::CoreMetadata>,
    pyproject: Option<String>,
}

fn resolve_one(fetcher: &Fetcher, w: &Wanted, pinned: &PinnedLock) -> anyhow::Result<Vec<Pin>> {
    let shown = super::lock::shown(&w.file).display().to_string();
    let format = LockFormat::of(&w.file).ok_or_else(|| anyhow!("{shown}: not a Python lock file drv reads"))?;
    let text = std::fs::read_to_string(&w.file).with_context(|| format!("cannot read {shown}"))?;
    let lock = PythonLock::parse(format, &shown, &text)?;
    let env = w.target.marker_environment();
    // What the target installs, then (below) what its sdists build with:
    // each package of the lock by its key (`NAME@VERSION` for a forked
    // uv.lock), chosen once.
    let mut todo: Vec<String> = lock.installed_on(&w.target).map_err(|e| anyhow!(e))?.keys().map(|k| (*k).to_owned()).collect();
    let mut chosen: BTreeMap<String, (Choice, Option<drv_python::BuildSystem>)> = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    while let Some(key) = todo.pop() {
        if chosen.contains_key(&key) {
            continue;
        }
        let p = &lock.packages[&key];
        let (choice, downloaded) = choose(fetcher, &shown, p, w)?;
        if let Some(m) = downloaded.as_ref().and_then(|d| d.metadata.clone()) {
            metadata.insert(key.clone(), m);
        }
        let build = match &choice {
            Choice::Wheel(_) => None,
            Choice::Sdist(f) => {
                let pyproject = downloaded.as_ref().and_then(|d| d.pyproject.as_deref());
                let table = drv_python::build_system(pyproject).map_err(|e| anyhow!("{shown}: {}: {e}", f.filename))?;
                let mut requires = BTreeSet::new();
                for r in table.requires.iter().filter(|r| r.evaluate_markers(&env, &[])) {
                    let dep = drv_python::normalize(r.name.as_ref());
                    // Any package of the lock that fits, installed or not
                    // (a uv.lock holds build requirements only as some
                    // group's dependencies).
                    let found = lock
                        .packages
                        .iter()
                        .filter(|(_, q)| q.name == dep && q.applies(&env) && drv_python::metadata::fits(r, &q.version))
                        .map(|(k, _)| k.clone())
                        .next();
                    let Some(k) = found else {
                        bail!("{}", unpinned_build_requirement(&shown, format, p, &dep, &r.to_string(), w));
                    };
                    todo.push(k);
                    requires.insert(dep);
                }
                Some(drv_python::BuildSystem { requires: requires.into_iter().collect(), backend: table.backend, backend_path: table.backend_path })
            }
        };
        // What a package needs comes along (a build requirement's own
        // dependencies, where the lock records them).
        todo.extend(p.dependencies_on(&env).into_iter().map(str::to_owned));
        chosen.insert(key, (choice, build));
    }
    let names: BTreeMap<&str, &str> =
        lock.packages.iter().filter(|(k, _)| chosen.contains_key(*k)).map(|(k, p)| (k.as_str(), p.name.as_str())).collect();
    let mut seen = BTreeMap::new();
    for (k, n) in &names {
        if let Some(other) = seen.insert(*n, *k) {
            bail!("{shown}: {n} is needed at two versions ({} and {}) on this target: an environment holds one", lock.packages[other].version, lock.packages[*k].version);
        }
    }
    let edges = drv_python::dependency_edges(&lock, &metadata, &w.target).map_err(|e| anyhow!(e))?;
    Ok(chosen
        .into_iter()
        .map(|(key, (choice, build))| {
            let p = &lock.packages[&key];
            let requires: BTreeSet<String> =
                edges.get(&key).into_iter().flatten().filter_map(|d| names.get(d.as_str()).map(|n| (*n).to_owned())).collect();
            Pin {
                lock: pinned.file.clone(),
                name: p.name.clone(),
                version: p.version.clone(),
                file: drv_python::wheel::canonical_file_name(&choice.file().filename),
                sha256: choice.file().sha256.clone(),
                requires: requires.into_iter().collect(),
                build,
            }
        })
        .collect())
}

/// The file of `p` that fits `w`'s target, and, when locking must read it
/// (dependencies the lock does not record, an sdist's build system), the
/// file's metadata.
fn choose(fetcher: &Fetcher, shown: &str, p: &drv_python::LockedPackage, w: &Wanted) -> anyhow::Result<(Choice, Option<Downloaded>)> {
    let name = &p.name;
    // A lock that names its files is chosen from; a requirements file
    // from the index's files whose hashes it allows.
    let (candidates, urls): (Vec<DistFile>, BTreeMap<String, String>) = if p.files.is_empty() {
        let listed = fetcher.index_files(name).with_context(|| format!("{shown}: finding the files of {name} {}", p.version))?;
        let mut c = Vec::new();
        let mut urls = BTreeMap::new();
        for f in listed {
            if let Some(h) = f.sha256.filter(|h| p.hashes.contains(h)) {
                urls.insert(f.filename.clone(), f.url.clone());
                c.push(DistFile { filename: f.filename, sha256: h });
            }
        }
        if c.is_empty() {
            bail!(
                "{shown}:{}: {name}=={}: the index lists no file with one of its hashes ({})",
                p.line,
                p.version,
                p.hashes.iter().map(|h| format!("sha256:{h}")).collect::<Vec<_>>().join(", ")
            );
        }
        (c, urls)
    } else {
        (p.files.clone(), BTreeMap::new())
    };
    let choice = drv_python::select(p, &candidates, &w.target).map_err(|e| anyhow!("{shown}: {e}"))?;
    let file = choice.file().clone();
    let sdist = matches!(choice, Choice::Sdist(_));
    if p.dependencies.is_some() && !sdist {
        return Ok((choice, None));
    }
    let source = match urls.get(&file.filename) {
        Some(url) => FetchSource::Url(url.clone()),
        None => FetchSource::PythonIndexFile { project: name.clone(), filename: file.filename.clone() },
    };
    let got = fetcher.prefetch(&source).with_context(|| format!("{shown}: downloading {}", file.filename))?;
    if got.sha256.to_hex() != file.sha256 {
        bail!("{shown}: {} has sha256 {}, not {} as the lock says", file.filename, got.sha256.to_hex(), file.sha256);
    }
    let d = read_distribution(&got.file, &file.filename).with_context(|| format!("{shown}: reading {}", file.filename))?;
    match &d.metadata {
        Some(m) if sdist && p.dependencies.is_none() && m.dynamic.iter().any(|f| f == "requires-dist") => bail!(
            "{shown}: {name} {} has only an sdist whose dependencies are known only after building it: \
             lock it with a tool that records them (uv.lock, pylock.toml)",
            p.version
        ),
        None if p.dependencies.is_none() => {
            bail!("{shown}: {}: no core metadata (METADATA or PKG-INFO) to read its dependencies from", file.filename)
        }
        _ => {}
    }
    Ok((choice, Some(d)))
}

/// The error for an sdist whose build requirement `dep` (`requirement` as
/// its pyproject.toml writes it) the lock does not pin, with what to add
/// where.
fn unpinned_build_requirement(shown: &str, format: LockFormat, p: &drv_python::LockedPackage, dep: &str, requirement: &str, w: &Wanted) -> String {
    let help = match format {
        LockFormat::Requirements => format!(
            "add a line `{dep}==VERSION --hash=sha256:…` for a version that fits to {shown} \
             (compile it with the build requirements included, or `pip download --no-deps {dep}` and `drv hash` the file)"
        ),
        LockFormat::Pylock | LockFormat::UvLock => format!(
            "make {dep} part of the locked project (a dependency group, for example `uv add --group build '{requirement}'`) and lock again"
        ),
    };
    format!(
        "{shown}: {} {} has no wheel for Python {}.{} and is built from its sdist, whose build backend needs {requirement} \
         (pyproject.toml [build-system] requires); {shown} does not pin a version of {dep} that fits.\nhelp: {help}",
        p.name, p.version, w.target.python.0, w.target.python.1
    )
}

/// The core metadata (and, for an sdist, `pyproject.toml`) of the
/// distribution at `path`, named `filename` on the index.
fn read_distribution(path: &Path, filename: &str) -> anyhow::Result<Downloaded> {
    let limit = 16 * 1024 * 1024;
    let read_limited = |r: &mut dyn std::io::Read| -> anyhow::Result<String> {
        let mut s = String::new();
        r.take(limit).read_to_string(&mut s).context("not UTF-8 text")?;
        Ok(s)
    };
    if filename.ends_with(".whl") || filename.ends_with(".zip") {
        let mut z = zip::ZipArchive::new(std::fs::File::open(path)?).context("not a zip archive")?;
        let names: Vec<String> = z.file_names().map(str::to_owned).collect();
        let is_wheel = filename.ends_with(".whl");
        let find = |suffix: &str, depth: usize| names.iter().find(|n| n.ends_with(suffix) && n.matches('/').count() == depth).cloned();
        let meta = if is_wheel { find(".dist-info/METADATA", 1) } else { find("/PKG-INFO", 1) };
        let metadata = match meta {
            Some(m) => Some(drv_python::parse_metadata(&read_limited(&mut z.by_name(&m)?)?).map_err(|e| anyhow!("{m}: {e}"))?),
            None => None,
        };
        let pyproject = match (!is_wheel).then(|| find("/pyproject.toml", 1)).flatten() {
            Some(p) => Some(read_limited(&mut z.by_name(&p)?)?),
            None => None,
        };
        return Ok(Downloaded { metadata, pyproject });
    }
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(path)?);
    let mut archive = tar::Archive::new(gz);
    let (mut metadata, mut pyproject) = (None, None);
    for entry in archive.entries().context("not a gzip'd tar archive")? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let name = name.trim_start_matches("./").to_owned();
        if name.matches('/').count() != 1 {
            continue;
        }
        if name.ends_with("/PKG-INFO") {
            metadata = Some(drv_python::parse_metadata(&read_limited(&mut entry)?).map_err(|e| anyhow!("{name}: {e}"))?);
        } else if name.ends_with("/pyproject.toml") {
            pyproject = Some(read_limited(&mut entry)?);
        }
    }
    Ok(Downloaded { metadata, pyproject })
}
