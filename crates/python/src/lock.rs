//! One model of a locked set of Python distributions, whatever file it
//! came from, and the choices drv makes from it for a target.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::error::LockFileError;
use crate::name::normalize;
use crate::target::Target;
use crate::wheel::{is_sdist, WheelName};

/// The file a lock was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockFormat {
    /// A requirements file in pip's hash-checking mode (what `pip-compile
    /// --generate-hashes` and `uv pip compile --generate-hashes` write):
    /// hashes, but neither file names nor dependencies.
    Requirements,
    /// PEP 751's `pylock.toml` (or `pylock.NAME.toml`).
    Pylock,
    /// uv's `uv.lock`.
    UvLock,
}

impl LockFormat {
    /// The format a file's name says: `requirements*.txt` (any `.txt`),
    /// `pylock.toml`/`pylock.*.toml`, `uv.lock`.
    pub fn of(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?;
        if name == "uv.lock" {
            Some(LockFormat::UvLock)
        } else if name == "pylock.toml" || (name.starts_with("pylock.") && name.ends_with(".toml")) {
            Some(LockFormat::Pylock)
        } else if name.ends_with(".txt") || name.ends_with(".in") {
            Some(LockFormat::Requirements)
        } else {
            None
        }
    }
}

/// A file of a package the lock allows: its name and sha256 (lower-case
/// hex).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DistFile {
    pub filename: String,
    pub sha256: String,
}

/// One package of a lock.
#[derive(Clone, Debug)]
pub struct LockedPackage {
    /// Normalized (PEP 503).
    pub name: String,
    pub version: String,
    /// Where the lock says it (line of a requirements file; 0 when the
    /// format has no lines drv tracks).
    pub line: usize,
    /// When it applies (PEP 508); `None` is always.
    pub marker: Option<pep508_rs::MarkerTree>,
    /// The files the lock names, with their hashes (pylock.toml, uv.lock).
    pub files: Vec<DistFile>,
    /// The hashes the lock allows when it names no files (a requirements
    /// file: the files are found on the index at lock time).
    pub hashes: BTreeSet<String>,
    /// The extras a requirements line asks for (`name[extra]==…`).
    pub extras: Vec<String>,
    /// Its dependencies, each with the marker under which it applies;
    /// `None` when the format does not record them.
    pub dependencies: Option<Vec<(String, Option<pep508_rs::MarkerTree>)>>,
}

impl LockedPackage {
    /// Whether this package is installed on `target`.
    pub fn applies(&self, env: &pep508_rs::MarkerEnvironment) -> bool {
        self.marker.as_ref().is_none_or(|m| m.evaluate(env, &[]))
    }

    /// The lock's keys of the dependencies it records whose markers hold
    /// in `env` (none when it records none).
    pub fn dependencies_on(&self, env: &pep508_rs::MarkerEnvironment) -> Vec<&str> {
        self.dependencies
            .iter()
            .flatten()
            .filter(|(_, m)| m.as_ref().is_none_or(|m| m.evaluate(env, &[])))
            .map(|(d, _)| d.as_str())
            .collect()
    }

    /// Whether the lock allows a file with this sha256.
    pub fn allows(&self, sha256: &str) -> bool {
        self.hashes.contains(sha256) || self.files.iter().any(|f| f.sha256 == sha256)
    }
}

/// A lock, read and checked.
#[derive(Clone, Debug)]
pub struct PythonLock {
    pub format: LockFormat,
    /// The file's name, for messages.
    pub file: String,
    /// By normalized name.
    pub packages: BTreeMap<String, LockedPackage>,
    /// The packages the lock is for, each under the marker where it
    /// applies (uv.lock: the project's direct dependencies; other formats:
    /// every package).
    pub roots: Vec<(String, Option<pep508_rs::MarkerTree>)>,
}

impl PythonLock {
    /// Read `text`, a lock of `format` named `file` (for messages).
    pub fn parse(format: LockFormat, file: &str, text: &str) -> Result<Self, LockFileError> {
        match format {
            LockFormat::Requirements => crate::requirements::parse(file, text),
            LockFormat::Pylock => crate::pylock::parse(file, text),
            LockFormat::UvLock => crate::uvlock::parse(file, text),
        }
    }

    /// The packages of the lock installed on `target`, by the lock's key
    /// (the name; `NAME@VERSION` where a uv.lock holds several versions):
    /// those its roots reach through edges whose markers hold, when the
    /// lock records edges (uv.lock: the versions of a forked resolution
    /// that this target does not take are left out); else every package
    /// whose marker holds.
    ///
    /// Errors: two versions of one project on this target, which no
    /// installation can hold.
    pub fn installed_on(&self, target: &Target) -> Result<BTreeMap<&str, &LockedPackage>, String> {
        let env = target.marker_environment();
        let mut out: BTreeMap<&str, &LockedPackage> = BTreeMap::new();
        if self.format == LockFormat::UvLock {
            let holds = |m: &Option<pep508_rs::MarkerTree>| m.as_ref().is_none_or(|m| m.evaluate(&env, &[]));
            let mut todo: Vec<&str> = self.roots.iter().filter(|(_, m)| holds(m)).map(|(r, _)| r.as_str()).collect();
            while let Some(key) = todo.pop() {
                let Some((k, p)) = self.packages.get_key_value(key) else {
                    return Err(format!("{}: an edge to {key:?}, which the lock does not have", self.file));
                };
                if out.insert(k.as_str(), p).is_none() {
                    todo.extend(p.dependencies.iter().flatten().filter(|(_, m)| holds(m)).map(|(d, _)| d.as_str()));
                }
            }
        } else {
            out.extend(self.packages.iter().filter(|(_, p)| p.applies(&env)).map(|(k, p)| (k.as_str(), p)));
        }
        let mut names: BTreeMap<&str, &str> = BTreeMap::new();
        for p in out.values() {
            if let Some(other) = names.insert(&p.name, &p.version) {
                return Err(format!(
                    "{}: {} is locked at {other} and at {} for this interpreter and platform: an environment holds one",
                    self.file, p.name, p.version
                ));
            }
        }
        Ok(out)
    }

    /// The packages `roots` need on `target`: the roots and, through the
    /// lock's dependencies whose markers hold, everything they need,
    /// sorted by name. Without recorded dependencies (requirements files,
    /// pylock.toml files without them) every package that applies.
    pub fn closure(&self, roots: &[String], target: &Target) -> Result<Vec<&LockedPackage>, SelectError> {
        let env = target.marker_environment();
        let mut seen = BTreeSet::new();
        let holds = |m: &Option<pep508_rs::MarkerTree>| m.as_ref().is_none_or(|m| m.evaluate(&env, &[]));
        let mut todo: Vec<String> = roots.iter().map(|r| normalize(r)).collect();
        if todo.is_empty() {
            todo = self.roots.iter().filter(|(_, m)| holds(m)).map(|(r, _)| r.clone()).collect();
        }
        while let Some(name) = todo.pop() {
            let Some(p) = self.packages.get(&name) else {
                return Err(SelectError::NotInLock { file: self.file.clone(), name });
            };
            if !p.applies(&env) || !seen.insert(name.clone()) {
                continue;
            }
            match &p.dependencies {
                Some(deps) => {
                    todo.extend(deps.iter().filter(|(_, m)| holds(m)).map(|(d, _)| d.clone()));
                }
                None => {
                    // Nothing says what it needs: everything that applies.
                    for (n, q) in &self.packages {
                        if q.applies(&env) {
                            seen.insert(n.clone());
                        }
                    }
                }
            }
        }
        Ok(seen.iter().map(|n| &self.packages[n]).collect())
    }
}

/// The file chosen for a package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// The best-fitting wheel.
    Wheel(DistFile),
    /// No wheel fits: the source distribution, to be built (PEP 517).
    Sdist(DistFile),
}

impl Choice {
    pub fn file(&self) -> &DistFile {
        match self {
            Choice::Wheel(f) | Choice::Sdist(f) => f,
        }
    }
}

/// Why a file was not chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub filename: String,
    pub reason: String,
}

/// A package none of whose files fits, and why each does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfit {
    pub package: String,
    pub version: String,
    pub python: String,
    pub glibc: String,
    pub arch: String,
    pub refusals: Vec<Refusal>,
}

impl std::fmt::Display for Unfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: no file fits CPython {} on glibc {} ({}):", self.package, self.version, self.python, self.glibc, self.arch)?;
        for r in &self.refusals {
            write!(f, "\n  {}: {}", r.filename, r.reason)?;
        }
        Ok(())
    }
}

/// Why no file of a package could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("{0}")]
    NothingFits(Box<Unfit>),
    #[error("{file}: no package {name:?} in the lock")]
    NotInLock { file: String, name: String },
}

/// Choose the file of `package` to install on `target` among `candidates`
/// (the lock's own files, or the index's files whose sha256 the lock
/// allows): the wheel whose best tag ranks first (ties: the file name, so
/// the choice is the same everywhere), else the source distribution.
/// A candidate whose hash the lock does not allow is refused.
pub fn select(package: &LockedPackage, candidates: &[DistFile], target: &Target) -> Result<Choice, SelectError> {
    let ranking = target.ranking();
    let mut best: Option<(usize, &DistFile)> = None;
    let mut sdist = None;
    let mut refusals = Vec::new();
    for c in candidates {
        let refuse = |reason: String| Refusal { filename: c.filename.clone(), reason };
        if !package.allows(&c.sha256) {
            refusals.push(refuse(format!("sha256 {} is not one the lock allows", c.sha256)));
            continue;
        }
        if is_sdist(&c.filename) {
            sdist = sdist.or(Some(c));
            continue;
        }
        let wheel: WheelName = match c.filename.parse() {
            Ok(w) => w,
            Err(e) => {
                refusals.push(refuse(e.to_string()));
                continue;
            }
        };
        if wheel.name != package.name || wheel.version.to_string() != package.version_normalized() {
            refusals.push(refuse(format!("a wheel of {} {}, not {} {}", wheel.name, wheel.version, package.name, package.version)));
            continue;
        }
        match target.rank(&ranking, &wheel) {
            Some(rank) => {
                if best.is_none_or(|(r, f)| (rank, &c.filename) < (r, &f.filename)) {
                    best = Some((rank, c));
                }
            }
            None => refusals.push(refuse(why_not(&wheel, target))),
        }
    }
    if let Some((_, f)) = best {
        return Ok(Choice::Wheel(f.clone()));
    }
    if let Some(f) = sdist {
        return Ok(Choice::Sdist(f.clone()));
    }
    Err(SelectError::NothingFits(Box::new(Unfit {
        package: package.name.clone(),
        version: package.version.clone(),
        python: format!("{}.{}", target.python.0, target.python.1),
        glibc: format!("{}.{}", target.glibc.0, target.glibc.1),
        arch: target.arch.clone(),
        refusals,
    })))
}

impl LockedPackage {
    /// The version as PEP 440 normalizes it (what wheel names carry).
    fn version_normalized(&self) -> String {
        self.version.parse::<pep440_rs::Version>().map_or_else(|_| self.version.clone(), |v| v.to_string())
    }
}

/// The reason a wheel does not fit, in the user's terms.
fn why_not(wheel: &WheelName, target: &Target) -> String {
    let plats = &wheel.platform;
    if plats.iter().all(|p| p.starts_with("linux_")) {
        return "built for one machine's libraries (linux_*), which no other machine has".into();
    }
    if plats.iter().all(|p| p.starts_with("musllinux_")) {
        return "built for musl, not glibc".into();
    }
    let manylinux: Vec<(u32, u32)> = plats.iter().filter_map(|p| manylinux_glibc(p, &target.arch)).collect();
    if !manylinux.is_empty() && manylinux.iter().all(|g| *g > target.glibc) {
        let (a, b) = manylinux.iter().min().copied().unwrap_or_default();
        return format!("needs glibc {a}.{b}, newer than the closure's {}.{}", target.glibc.0, target.glibc.1);
    }
    if plats.iter().all(|p| p != "any" && !p.ends_with(&target.arch)) {
        return format!("for another platform ({})", plats.join(", "));
    }
    format!("for another interpreter ({}-{})", wheel.python.join("."), wheel.abi.join("."))
}

/// The glibc a manylinux platform tag needs, if it is one for `arch`.
fn manylinux_glibc(platform: &str, arch: &str) -> Option<(u32, u32)> {
    let rest = platform.strip_suffix(arch)?.strip_suffix('_')?;
    match rest {
        "manylinux1" => Some((2, 5)),
        "manylinux2010" => Some((2, 12)),
        "manylinux2014" => Some((2, 17)),
        _ => {
            let v = rest.strip_prefix("manylinux_")?;
            let (a, b) = v.split_once('_')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        }
    }
}

/// A sha256 in lower-case hex, or why not.
pub(crate) fn check_sha256(hex: &str) -> Result<String, String> {
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex.to_ascii_lowercase())
    } else {
        Err(format!("{hex:?} is not a sha256 (64 hexadecimal digits)"))
    }
}

/// The file name at the end of a URL or path (percent-decoded).
pub(crate) fn file_name_of(location: &str) -> Option<String> {
    let path = location.split(['?', '#']).next()?;
    let last = path.rsplit('/').next().filter(|s| !s.is_empty())?;
    let mut out = Vec::new();
    let bytes = last.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = last.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_uv_lock_installs_the_extras_asked_for_and_the_projects_groups() {
        let h = "0".repeat(64);
        let pkg = |name: &str| {
            format!("[[package]]\nname = \"{name}\"\nversion = \"1.0\"\nsource = {{ registry = \"r\" }}\nsdist = {{ url = \"https://index.invalid/{name}-1.0.tar.gz\", hash = \"sha256:{h}\" }}\n")
        };
        let text = format!(
            "version = 1\nrequires-python = \">=3.10\"\n\n[[package]]\nname = \"demo\"\nversion = \"0.1.0\"\nsource = {{ editable = \".\" }}\n\
             dependencies = [{{ name = \"uvicorn\", extra = [\"standard\"] }}]\n\n[package.dev-dependencies]\ndev = [{{ name = \"pytest\" }}]\n\n\
             {}\n[package.optional-dependencies]\nstandard = [{{ name = \"httptools\" }}, {{ name = \"colorama\", marker = \"sys_platform == 'win32'\" }}]\n\n{}\n{}\n{}\n{}",
            pkg("uvicorn"),
            pkg("httptools"),
            pkg("colorama"),
            pkg("pytest"),
            pkg("unused")
        );
        let lock = PythonLock::parse(LockFormat::UvLock, "uv.lock", &text).unwrap();
        let installed: Vec<&str> = lock.installed_on(&target()).unwrap().into_keys().collect();
        assert_eq!(installed, ["httptools", "pytest", "uvicorn"]);
        let bad = text.replace("extra = [\"standard\"]", "extra = [\"nope\"]");
        let err = PythonLock::parse(LockFormat::UvLock, "uv.lock", &bad).unwrap_err().to_string();
        assert!(err.contains("no extra \"nope\""), "{err}");
    }

    #[test]
    fn a_forked_uv_lock_installs_the_versions_its_edges_take_on_the_target() {
        let h = "0".repeat(64);
        let text = format!(
            r#"version = 1
requires-python = ">=3.10"

[[package]]
name = "demo"
version = "0.1.0"
source = {{ virtual = "." }}
dependencies = [
    {{ name = "numpy", version = "1.26.4", source = {{ registry = "r" }}, marker = "python_full_version < '3.11'" }},
    {{ name = "numpy", version = "2.2.0", source = {{ registry = "r" }}, marker = "python_full_version >= '3.11'" }},
]

[[package]]
name = "numpy"
version = "1.26.4"
source = {{ registry = "r" }}
sdist = {{ url = "https://index.invalid/numpy-1.26.4.tar.gz", hash = "sha256:{h}" }}

[[package]]
name = "numpy"
version = "2.2.0"
source = {{ registry = "r" }}
sdist = {{ url = "https://index.invalid/numpy-2.2.0.tar.gz", hash = "sha256:{h}" }}
"#
        );
        let lock = PythonLock::parse(LockFormat::UvLock, "uv.lock", &text).unwrap();
        let installed = lock.installed_on(&target()).unwrap();
        let versions: Vec<(&str, &str)> = installed.iter().map(|(k, p)| (*k, p.version.as_str())).collect();
        assert_eq!(versions, [("numpy@2.2.0", "2.2.0")]);
        // without the markers both versions would be installed: refused
        let both = text.replace(", marker = \"python_full_version < '3.11'\"", "");
        let lock = PythonLock::parse(LockFormat::UvLock, "uv.lock", &both).unwrap();
        let err = lock.installed_on(&target()).unwrap_err();
        assert!(err.contains("numpy is locked at"), "{err}");
    }
    use super::*;

    fn target() -> Target {
        Target { python: (3, 11), python_full: "3.11.2".into(), glibc: (2, 36), arch: "x86_64".into() }
    }

    fn package(files: &[(&str, &str)]) -> LockedPackage {
        LockedPackage {
            name: "markupsafe".into(),
            version: "3.0.4".into(),
            line: 0,
            marker: None,
            files: files.iter().map(|(f, h)| DistFile { filename: (*f).into(), sha256: (*h).into() }).collect(),
            hashes: BTreeSet::new(),
            extras: Vec::new(),
            dependencies: None,
        }
    }

    fn h(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    #[test]
    fn the_best_wheel_is_chosen_and_others_refused_with_reasons() {
        let files = [
            ("markupsafe-3.0.4-cp311-cp311-musllinux_1_2_x86_64.whl", h('1')),
            ("markupsafe-3.0.4-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl", h('2')),
            ("markupsafe-3.0.4-cp311-cp311-win_amd64.whl", h('3')),
            ("markupsafe-3.0.4.tar.gz", h('4')),
            ("markupsafe-3.0.4-cp38-abi3-manylinux_2_17_x86_64.whl", h('5')),
        ];
        let p = package(&files.iter().map(|(f, h)| (*f, h.as_str())).collect::<Vec<_>>());
        let chosen = select(&p, &p.files, &target()).unwrap();
        assert_eq!(chosen, Choice::Wheel(p.files[1].clone()));
        // Only the sdist and unfit wheels: the sdist.
        let unfit = vec![p.files[0].clone(), p.files[2].clone(), p.files[3].clone()];
        assert_eq!(select(&p, &unfit, &target()).unwrap(), Choice::Sdist(p.files[3].clone()));
    }

    #[test]
    fn a_wheel_too_new_for_the_c_library_or_for_one_machine_is_refused_by_name() {
        let p = package(&[
            ("markupsafe-3.0.4-cp311-cp311-manylinux_2_39_x86_64.whl", &h('1')),
            ("markupsafe-3.0.4-cp311-cp311-linux_x86_64.whl", &h('2')),
            ("markupsafe-3.0.4-cp312-cp312-manylinux_2_17_x86_64.whl", &h('3')),
        ]);
        let e = select(&p, &p.files, &target()).unwrap_err().to_string();
        assert!(e.contains("needs glibc 2.39, newer than the closure's 2.36"), "{e}");
        assert!(e.contains("linux_*"), "{e}");
        assert!(e.contains("another interpreter (cp312-cp312)"), "{e}");
    }

    #[test]
    fn a_file_whose_hash_the_lock_does_not_allow_is_refused() {
        let mut p = package(&[]);
        p.hashes.insert(h('a'));
        let offered = [DistFile { filename: "markupsafe-3.0.4-py3-none-any.whl".into(), sha256: h('b') }];
        let e = select(&p, &offered, &target()).unwrap_err().to_string();
        assert!(e.contains("not one the lock allows"), "{e}");
        let offered = [DistFile { filename: "markupsafe-3.0.4-py3-none-any.whl".into(), sha256: h('a') }];
        assert!(select(&p, &offered, &target()).is_ok());
    }

    #[test]
    fn file_names_come_from_urls_and_paths() {
        assert_eq!(file_name_of("https://x.invalid/a/b/c-1.0-py3-none-any.whl#sha256=ab").as_deref(), Some("c-1.0-py3-none-any.whl"));
        assert_eq!(file_name_of("./dist/a%2Bb-1.0.tar.gz").as_deref(), Some("a+b-1.0.tar.gz"));
        assert_eq!(file_name_of("https://x.invalid/dir/"), None);
    }
}
