//! The Python part of drv's lock file (`drv.lock`): for each Python lock
//! file a recipe names, the target it was resolved for and the one
//! distribution file chosen for each of its packages, with the dependency
//! edges that hold on that target. `drv lock` writes it; evaluation reads
//! only it, so the choice of files and the edges are the same everywhere
//! and need no network.
//!
//! ```toml
//! [[python.lock]]
//! file = "requirements/flask.txt"   # relative to drv.lock's directory
//! sha256 = "…"                      # of the file's bytes when resolved
//! python = "3.11"
//! glibc = "2.36"
//! arch = "x86_64"
//!
//! [[python.package]]
//! lock = "requirements/flask.txt"
//! name = "flask"                    # normalized (PEP 503)
//! version = "3.1.3"
//! file = "flask-3.1.3-py3-none-any.whl"
//! sha256 = "…"
//! requires = ["blinker", "click", "itsdangerous", "jinja2", "werkzeug"]
//! # an sdist only: how its wheel is built (PEP 517, PEP 518)
//! build-requires = ["flit-core"]
//! build-backend = "flit_core.buildapi"
//! backend-path = []
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::name::{is_valid, normalize};

/// The `[python]` tables as written (what `drv.lock`'s reader deserializes).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct PinsFile {
    #[serde(default)]
    lock: Vec<LockFileEntry>,
    #[serde(default)]
    package: Vec<PackageEntry>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct LockFileEntry {
    file: Spanned<String>,
    sha256: Spanned<String>,
    python: Spanned<String>,
    glibc: Spanned<String>,
    arch: Spanned<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PackageEntry {
    lock: Spanned<String>,
    name: Spanned<String>,
    version: Spanned<String>,
    file: Spanned<String>,
    sha256: Spanned<String>,
    requires: Spanned<Vec<String>>,
    build_requires: Option<Spanned<Vec<String>>>,
    build_backend: Option<Spanned<String>>,
    #[serde(default)]
    backend_path: Vec<String>,
}

/// A value of the section that cannot be right: where (`span`, bytes of
/// the lock file's text), which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinError {
    pub span: Range<usize>,
    pub field: String,
    pub message: String,
}

/// The Python section of `drv.lock`, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PythonPins {
    /// Sorted by file.
    pub locks: Vec<PinnedLock>,
    /// Sorted by lock, then name.
    pub packages: Vec<Pin>,
}

/// A Python lock file as `drv lock` last resolved it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PinnedLock {
    /// Relative to the directory of `drv.lock`, `/`-separated.
    pub file: String,
    /// sha256 of the file's bytes then, lower-case hex: a file that no
    /// longer has it must be locked again.
    pub sha256: String,
    /// The target: `3.11`, `2.36`, `x86_64`.
    pub python: String,
    pub glibc: String,
    pub arch: String,
}

/// The file chosen for one package of a lock.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pin {
    /// The [`PinnedLock::file`] it belongs to.
    pub lock: String,
    /// Normalized (PEP 503).
    pub name: String,
    pub version: String,
    /// The wheel or sdist file name on the index.
    pub file: String,
    /// Its sha256, lower-case hex.
    pub sha256: String,
    /// The packages of the same lock it needs on the target, sorted.
    pub requires: Vec<String>,
    /// For an sdist: how to build its wheel.
    pub build: Option<BuildSystem>,
}

/// An sdist's `[build-system]` (PEP 518), resolved against its lock.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BuildSystem {
    /// Packages of the same lock the backend needs, sorted.
    pub requires: Vec<String>,
    /// `module` or `module:object` (PEP 517).
    pub backend: String,
    /// Directories of the source tree put first on `sys.path`.
    pub backend_path: Vec<String>,
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_relative_file(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('/') && s.split('/').all(|c| !c.is_empty() && c != "." && c != "..") && !s.chars().any(char::is_control)
}

fn is_dotted(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
}

impl PythonPins {
    /// Check the section as written.
    ///
    /// Errors: the first value that cannot be right (a hash that is not 64
    /// hex digits, a package of a lock the section does not list, a
    /// requirement on a package the lock does not pin, a file name that is
    /// not a wheel's or an sdist's).
    pub fn from_file(raw: PinsFile) -> Result<PythonPins, PinError> {
        let bad = |span: Range<usize>, field: String, message: String| PinError { span, field, message };
        let mut locks = Vec::new();
        let mut files = BTreeSet::new();
        for (i, l) in raw.lock.into_iter().enumerate() {
            let field = |f: &str| format!("python.lock[{i}].{f}");
            if !is_relative_file(l.file.get_ref()) {
                return Err(bad(l.file.span(), field("file"), format!("{:?} is not a relative path without `..`", l.file.get_ref())));
            }
            if !files.insert(l.file.get_ref().clone()) {
                return Err(bad(l.file.span(), field("file"), "listed twice".into()));
            }
            if !is_hex64(l.sha256.get_ref()) {
                return Err(bad(l.sha256.span(), field("sha256"), format!("{:?} is not 64 lowercase hex digits", l.sha256.get_ref())));
            }
            for (what, v) in [("python", &l.python), ("glibc", &l.glibc)] {
                let ok = v.get_ref().split_once('.').is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok());
                if !ok {
                    return Err(bad(v.span(), field(what), format!("{:?} is not MAJOR.MINOR", v.get_ref())));
                }
            }
            if l.arch.get_ref().is_empty() || !l.arch.get_ref().chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(bad(l.arch.span(), field("arch"), format!("{:?} is not a machine name", l.arch.get_ref())));
            }
            locks.push(PinnedLock {
                file: l.file.into_inner(),
                sha256: l.sha256.into_inner(),
                python: l.python.into_inner(),
                glibc: l.glibc.into_inner(),
                arch: l.arch.into_inner(),
            });
        }
        let mut packages = Vec::new();
        let mut names: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for p in &raw.package {
            names.entry(p.lock.get_ref()).or_default().insert(p.name.get_ref().clone());
        }
        let mut seen = BTreeSet::new();
        for (i, p) in raw.package.iter().enumerate() {
            let name = p.name.get_ref();
            let field = |f: &str| format!("python.package[{i}] ({name}).{f}");
            if !files.contains(p.lock.get_ref()) {
                return Err(bad(p.lock.span(), field("lock"), format!("{:?} is not one of the [[python.lock]] files", p.lock.get_ref())));
            }
            if !is_valid(name) || normalize(name) != *name {
                return Err(bad(p.name.span(), field("name"), format!("{name:?} is not a normalized project name (PEP 503)")));
            }
            if !seen.insert((p.lock.get_ref().clone(), name.clone())) {
                return Err(bad(p.name.span(), field("name"), "pinned twice for the same lock".into()));
            }
            if p.version.get_ref().parse::<pep440_rs::Version>().is_err() {
                return Err(bad(p.version.span(), field("version"), format!("{:?} is not a PEP 440 version", p.version.get_ref())));
            }
            let file = p.file.get_ref();
            let is_dist = crate::wheel::is_sdist(file) || file.parse::<crate::wheel::WheelName>().is_ok();
            if !is_dist || file.contains('/') {
                return Err(bad(p.file.span(), field("file"), format!("{file:?} is not a wheel or sdist file name")));
            }
            if !is_hex64(p.sha256.get_ref()) {
                return Err(bad(p.sha256.span(), field("sha256"), format!("{:?} is not 64 lowercase hex digits", p.sha256.get_ref())));
            }
            let pinned = &names[p.lock.get_ref().as_str()];
            let check_names = |list: &Spanned<Vec<String>>, f: &str| -> Result<Vec<String>, PinError> {
                for r in list.get_ref() {
                    if !pinned.contains(r) {
                        return Err(bad(list.span(), field(f), format!("{r:?} is not a package pinned for {}", p.lock.get_ref())));
                    }
                }
                Ok(sorted(list.get_ref().clone()))
            };
            let requires = check_names(&p.requires, "requires")?;
            let build = match (&p.build_requires, &p.build_backend) {
                (None, None) => None,
                (Some(r), Some(b)) => {
                    if !is_dotted(b.get_ref().split(':').next().unwrap_or_default())
                        || b.get_ref().split(':').nth(1).is_some_and(|o| !is_dotted(o))
                    {
                        return Err(bad(b.span(), field("build-backend"), format!("{:?} is not `module` or `module:object`", b.get_ref())));
                    }
                    if let Some(bad_path) = p.backend_path.iter().find(|d| d.starts_with('/') || d.split('/').any(|c| c == "..")) {
                        return Err(bad(p.name.span(), field("backend-path"), format!("{bad_path:?} is not a path inside the source tree")));
                    }
                    Some(BuildSystem { requires: check_names(r, "build-requires")?, backend: b.get_ref().clone(), backend_path: p.backend_path.clone() })
                }
                _ => return Err(bad(p.name.span(), field("build-backend"), "an sdist has both build-requires and build-backend".into())),
            };
            if build.is_some() != crate::wheel::is_sdist(file) {
                return Err(bad(p.file.span(), field("file"), "build-requires and build-backend go with an sdist, and only with one".into()));
            }
            packages.push(Pin {
                lock: p.lock.get_ref().clone(),
                name: name.clone(),
                version: p.version.get_ref().clone(),
                file: file.clone(),
                sha256: p.sha256.get_ref().clone(),
                requires,
                build,
            });
        }
        locks.sort();
        packages.sort();
        Ok(PythonPins { locks, packages })
    }

    /// The section as TOML: sorted, one value per line (appended to the
    /// rest of `drv.lock`). Empty when nothing is pinned.
    pub fn to_toml(&self) -> String {
        let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let list = |v: &[String]| format!("[{}]", v.iter().map(|s| q(s)).collect::<Vec<_>>().join(", "));
        let mut s = String::new();
        for l in &self.locks {
            s.push_str(&format!(
                "\n[[python.lock]]\nfile = {}\nsha256 = {}\npython = {}\nglibc = {}\narch = {}\n",
                q(&l.file),
                q(&l.sha256),
                q(&l.python),
                q(&l.glibc),
                q(&l.arch)
            ));
        }
        for p in &self.packages {
            s.push_str(&format!(
                "\n[[python.package]]\nlock = {}\nname = {}\nversion = {}\nfile = {}\nsha256 = {}\nrequires = {}\n",
                q(&p.lock),
                q(&p.name),
                q(&p.version),
                q(&p.file),
                q(&p.sha256),
                list(&p.requires)
            ));
            if let Some(b) = &p.build {
                s.push_str(&format!("build-requires = {}\nbuild-backend = {}\n", list(&b.requires), q(&b.backend)));
                if !b.backend_path.is_empty() {
                    s.push_str(&format!("backend-path = {}\n", list(&b.backend_path)));
                }
            }
        }
        s
    }

    /// The pinned lock `file` (relative to `drv.lock`'s directory).
    pub fn lock(&self, file: &str) -> Option<&PinnedLock> {
        self.locks.iter().find(|l| l.file == file)
    }

    /// The packages pinned for lock `file`, by name.
    pub fn packages_of(&self, file: &str) -> BTreeMap<&str, &Pin> {
        self.packages.iter().filter(|p| p.lock == file).map(|p| (p.name.as_str(), p)).collect()
    }

    /// The pins of lock `file` that `roots` need, through `requires`,
    /// sorted by name; every pin of the lock when `roots` is empty.
    ///
    /// Errors: the first root the lock does not pin.
    pub fn closure<'a>(&'a self, file: &str, roots: &[String]) -> Result<Vec<&'a Pin>, String> {
        let by_name = self.packages_of(file);
        if roots.is_empty() {
            return Ok(by_name.into_values().collect());
        }
        let mut seen = BTreeSet::new();
        let mut todo: Vec<String> = roots.iter().map(|r| normalize(r)).collect();
        while let Some(n) = todo.pop() {
            let Some(p) = by_name.get(n.as_str()) else { return Err(n) };
            if seen.insert(n.clone()) {
                todo.extend(p.requires.iter().cloned());
            }
        }
        Ok(seen.iter().map(|n| by_name[n.as_str()]).collect())
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECTION: &str = r#"
[[python.lock]]
file = "requirements.txt"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
python = "3.11"
glibc = "2.36"
arch = "x86_64"

[[python.package]]
lock = "requirements.txt"
name = "a"
version = "1.0"
file = "a-1.0-py3-none-any.whl"
sha256 = "1111111111111111111111111111111111111111111111111111111111111111"
requires = ["b"]

[[python.package]]
lock = "requirements.txt"
name = "b"
version = "2.0"
file = "b-2.0.tar.gz"
sha256 = "2222222222222222222222222222222222222222222222222222222222222222"
requires = []
build-requires = ["c"]
build-backend = "c.api:backend"

[[python.package]]
lock = "requirements.txt"
name = "c"
version = "3.0"
file = "c-3.0-py3-none-any.whl"
sha256 = "3333333333333333333333333333333333333333333333333333333333333333"
requires = []
"#;

    #[derive(Deserialize)]
    struct Doc {
        python: PinsFile,
    }

    fn parse(text: &str) -> Result<PythonPins, PinError> {
        PythonPins::from_file(toml::from_str::<Doc>(text).unwrap().python)
    }

    #[test]
    fn reads_what_it_writes_and_closes_over_requires() {
        let pins = parse(SECTION).unwrap();
        let again = parse(&pins.to_toml()).unwrap();
        assert_eq!(again, pins);
        let names = |v: Vec<&Pin>| v.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(pins.closure("requirements.txt", &["A".into()]).unwrap()), ["a", "b"]);
        assert_eq!(names(pins.closure("requirements.txt", &[]).unwrap()), ["a", "b", "c"]);
        assert_eq!(pins.closure("requirements.txt", &["d".into()]).unwrap_err(), "d");
        assert_eq!(pins.packages[1].build.as_ref().unwrap().requires, ["c"]);
    }

    #[test]
    fn refuses_what_cannot_be_right() {
        let e = parse(&SECTION.replace("requires = [\"b\"]", "requires = [\"zz\"]")).unwrap_err();
        assert_eq!(e.field, "python.package[0] (a).requires");
        assert!(e.message.contains("\"zz\" is not a package pinned"), "{e:?}");
        let e = parse(&SECTION.replacen("1111", "11x1", 1)).unwrap_err();
        assert_eq!(e.field, "python.package[0] (a).sha256");
        let e = parse(&SECTION.replace("lock = \"requirements.txt\"\nname = \"a\"", "lock = \"other.txt\"\nname = \"a\"")).unwrap_err();
        assert_eq!(e.field, "python.package[0] (a).lock");
        let e = parse(&SECTION.replace("name = \"a\"", "name = \"A\"")).unwrap_err();
        assert!(e.message.contains("normalized"), "{e:?}");
        let e = parse(&SECTION.replace("file = \"a-1.0-py3-none-any.whl\"", "file = \"../a.whl\"")).unwrap_err();
        assert_eq!(e.field, "python.package[0] (a).file");
        let e = parse(&SECTION.replace("build-backend = \"c.api:backend\"\n", "")).unwrap_err();
        assert_eq!(e.field, "python.package[1] (b).build-backend");
        let e = parse(&SECTION.replace("file = \"requirements.txt\"", "file = \"/etc/x\"")).unwrap_err();
        assert_eq!(e.field, "python.lock[0].file");
    }
}
