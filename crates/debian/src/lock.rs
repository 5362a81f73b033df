//! The lock file (`drv.lock`, next to the recipes): every Debian package a
//! recipe's toolchain needs, pinned by version, pool path, size and sha256,
//! with the dependency edges chosen when it was resolved.
//!
//! Evaluation reads only this file: no network, no dpkg database, no host
//! file. `drv lock` writes it from the archive's indices (see
//! [`crate::resolve`]).
//!
//! The format is TOML, sorted and one value per line so that a change is a
//! readable diff:
//!
//! ```toml
//! version = 1
//!
//! [debian]
//! architecture = "amd64"
//! suite = "bookworm"
//!
//! [[debian.repository]]
//! suite = "bookworm"
//! mirror = "debian"
//! date = "Sat, 09 Nov 2024 10:46:33 UTC"
//!
//! [[debian.package]]
//! name = "make"
//! version = "4.3-4.1"
//! architecture = "amd64"
//! repository = "bookworm"
//! path = "pool/main/m/make-dfsg/make_4.3-4.1_amd64.deb"
//! size = 396500
//! sha256 = "…"
//! depends = ["libc6"]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Spanned;

/// Version of the lock file format this code reads and writes.
pub const LOCK_VERSION: u32 = 1;

/// The lock file's conventional name, next to the recipes.
pub const LOCK_FILE_NAME: &str = "drv.lock";

/// The whole lock file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lock {
    /// Absent when no recipe names Debian packages.
    pub debian: Option<DebianLock>,
    /// The Python lock files recipes name, resolved (`[[python.lock]]`,
    /// `[[python.package]]`; see [`drv_python::pins`]). Empty when no
    /// recipe has a `[python]` table.
    pub python: drv_python::PythonPins,
}

/// The Debian part: one suite, one architecture, the repositories its
/// packages come from, and the packages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebianLock {
    /// The release's code name (`bookworm`).
    pub suite: String,
    /// Debian architecture (`amd64`); packages are of it or `all`.
    pub architecture: String,
    /// The names the recipes asked for, sorted: the roots `drv lock`
    /// resolves again on `--update`, whichever recipes it is given.
    pub requested: Vec<String>,
    /// Where packages come from, in order of preference (the release,
    /// its `-updates`, its security archive).
    pub repositories: Vec<Repository>,
    /// Sorted by name, then architecture.
    pub packages: Vec<LockedPackage>,
}

/// One archive suite a package may come from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Repository {
    /// The suite as the archive names it (`bookworm-security`): what
    /// [`LockedPackage::repository`] refers to.
    pub suite: String,
    /// The mirror name its URLs go through (`debian`, `debian-security`):
    /// `mirror://<mirror>/<pool path>`.
    pub mirror: String,
    /// The `Date:` of its `Release` file when the lock was written.
    pub date: String,
}

/// One pinned `.deb`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    /// `amd64` or `all`.
    pub architecture: String,
    /// The [`Repository::suite`] it was found in.
    pub repository: String,
    /// `Filename:` of the index: the pool path below the mirror's base.
    pub path: String,
    /// Size of the `.deb` in bytes.
    pub size: u64,
    /// sha256 of the `.deb`, 64 lowercase hex digits.
    pub sha256: String,
    /// Names of the locked packages chosen for its `Depends` and
    /// `Pre-Depends` (one per alternative group), sorted.
    pub depends: Vec<String>,
    /// Virtual package names it provides that a recipe or a dependency
    /// asked for, sorted.
    pub provides: Vec<String>,
}

/// What is wrong with a lock file, or what it does not cover.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Bad TOML, or an unknown or mistyped key. `span` is the offending
    /// bytes of `text` (what was parsed), for showing the line.
    #[error("{}:{line}:{column}: {message}", file.display())]
    Syntax { file: PathBuf, line: usize, column: usize, message: String, span: Range<usize>, text: Arc<str> },
    /// A value that cannot be right, in `field`; `span` and `text` as for
    /// [`LockError::Syntax`].
    #[error("{}:{line}:{column}: {field}: {message} (help: {})", file.display(), Self::INVALID_HELP)]
    Invalid { file: PathBuf, line: usize, column: usize, field: String, message: String, span: Range<usize>, text: Arc<str> },
    #[error("the lock file does not cover Debian package {name:?}{}; run `drv lock`", needed_by.as_deref().map(|n| format!(" (needed by {n})")).unwrap_or_default())]
    NotLocked { name: String, needed_by: Option<String> },
    #[error("no lock file {}: run `drv lock` to resolve the recipes' Debian packages", file.display())]
    Missing { file: PathBuf },
    #[error("{} pins no Debian packages: run `drv lock` to resolve the recipes' Debian packages", file.display())]
    NoDebian { file: PathBuf },
    #[error("cannot read {}: {error}", file.display())]
    Read { file: PathBuf, error: std::io::Error },
    #[error("{}: package {package} comes from repository {repository:?}, which the lock does not list", file.display())]
    UnknownRepository { file: PathBuf, package: String, repository: String },
}

impl LockError {
    /// The fix for [`LockError::Invalid`].
    pub const INVALID_HELP: &str = "correct the entry, or move the file away and run `drv lock` to resolve again";
}

impl Lock {
    /// Parse a lock file's text; `file` names it in errors.
    ///
    /// Errors: [`LockError::Syntax`] with the line and column of bad TOML
    /// or an unknown or mistyped key; [`LockError::Invalid`] naming the
    /// field for a value that cannot be right (a hash that is not 64 hex
    /// digits, a path with `..`, a dependency on a package not in the
    /// lock).
    pub fn parse(text: &str, file: &Path) -> Result<Lock, LockError> {
        let raw: LockFile = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let (line, column) = line_column(text, span.start);
            let message = e.message().trim().to_owned();
            LockError::Syntax { file: file.to_owned(), line, column, message, span, text: Arc::from(text) }
        })?;
        let invalid = |span: Range<usize>, field: String, message: String| {
            let (line, column) = line_column(text, span.start);
            LockError::Invalid { file: file.to_owned(), line, column, field, message, span, text: Arc::from(text) }
        };
        if *raw.version.get_ref() != LOCK_VERSION {
            let v = raw.version.get_ref();
            return Err(invalid(raw.version.span(), "version".into(), format!("{v} is not a lock version this drv reads ({LOCK_VERSION})")));
        }
        let python = match raw.python {
            None => drv_python::PythonPins::default(),
            Some(p) => drv_python::PythonPins::from_file(p).map_err(|e| invalid(e.span, e.field, e.message))?,
        };
        let Some(d) = raw.debian else { return Ok(Lock { debian: None, python }) };
        let mut suites = BTreeSet::new();
        for (i, r) in d.repository.iter().enumerate() {
            let field = |f: &str| format!("debian.repository[{i}].{f}");
            if !is_name(r.suite.get_ref()) {
                return Err(invalid(r.suite.span(), field("suite"), format!("{:?} is not a suite name", r.suite.get_ref())));
            }
            if !is_name(r.mirror.get_ref()) {
                return Err(invalid(r.mirror.span(), field("mirror"), format!("{:?} is not a mirror name", r.mirror.get_ref())));
            }
            if !suites.insert(r.suite.get_ref().clone()) {
                return Err(invalid(r.suite.span(), field("suite"), format!("repository {:?} is listed twice", r.suite.get_ref())));
            }
        }
        let architecture = d.architecture.get_ref().clone();
        if !is_name(&architecture) {
            return Err(invalid(d.architecture.span(), "debian.architecture".into(), format!("{architecture:?} is not an architecture")));
        }
        let mut names = BTreeSet::new();
        let mut packages = Vec::with_capacity(d.package.len());
        let mut depends_spans = Vec::with_capacity(d.package.len());
        for (i, p) in d.package.into_iter().enumerate() {
            let name = p.name.get_ref().clone();
            let field = |f: &str| format!("debian.package[{i}] ({name}).{f}");
            if !crate::relation::valid_package_name(&name) {
                return Err(invalid(p.name.span(), field("name"), format!("{name:?} is not a Debian package name")));
            }
            if !names.insert(name.clone()) {
                return Err(invalid(p.name.span(), field("name"), "locked twice".into()));
            }
            let version = p.version.get_ref();
            if version.is_empty() || version.chars().any(|c| c.is_whitespace()) {
                return Err(invalid(p.version.span(), field("version"), format!("{version:?} is not a Debian version")));
            }
            // One architecture per lock: a package of another could not
            // run in the toolchain, and nothing else would notice.
            let arch = p.architecture.get_ref();
            if *arch != architecture && arch != "all" {
                return Err(invalid(
                    p.architecture.span(),
                    field("architecture"),
                    format!("{arch:?} is neither the lock's architecture ({architecture:?}) nor \"all\""),
                ));
            }
            if !suites.contains(p.repository.get_ref()) {
                let r = p.repository.get_ref();
                return Err(invalid(p.repository.span(), field("repository"), format!("{r:?} is not one of the lock's repositories")));
            }
            if !is_pool_path(p.path.get_ref()) {
                let v = p.path.get_ref();
                return Err(invalid(p.path.span(), field("path"), format!("{v:?} is not a relative path to a .deb without `..`")));
            }
            let sha = p.sha256.get_ref();
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err(invalid(p.sha256.span(), field("sha256"), format!("{sha:?} is not 64 lowercase hex digits")));
            }
            depends_spans.push(p.depends.span());
            packages.push(LockedPackage {
                name,
                version: p.version.into_inner(),
                architecture: p.architecture.into_inner(),
                repository: p.repository.into_inner(),
                path: p.path.into_inner(),
                size: p.size,
                sha256: p.sha256.into_inner(),
                depends: sorted(p.depends.into_inner()),
                provides: sorted(p.provides),
            });
        }
        for (i, p) in packages.iter().enumerate() {
            for dep in &p.depends {
                if !names.contains(dep) {
                    return Err(invalid(
                        depends_spans[i].clone(),
                        format!("debian.package[{i}] ({}).depends", p.name),
                        format!("{dep:?} is not a package of the lock"),
                    ));
                }
            }
        }
        let mut requested = d.requested;
        requested.sort();
        requested.dedup();
        packages.sort();
        Ok(Lock {
            python,
            debian: Some(DebianLock {
                suite: d.suite.into_inner(),
                architecture,
                requested,
                repositories: d
                    .repository
                    .into_iter()
                    .map(|r| Repository { suite: r.suite.into_inner(), mirror: r.mirror.into_inner(), date: r.date })
                    .collect(),
                packages,
            }),
        })
    }

    /// Read and parse the lock file at `path`.
    ///
    /// Errors: [`LockError::Missing`] when there is none; otherwise as
    /// [`Lock::parse`].
    pub fn read(path: &Path) -> Result<Lock, LockError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Lock::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(LockError::Missing { file: path.to_owned() }),
            Err(error) => Err(LockError::Read { file: path.to_owned(), error }),
        }
    }

    /// The canonical text of the lock: sorted, one value per line.
    pub fn to_toml(&self) -> String {
        let mut s = String::from(
            "# drv.lock: what `drv lock` resolved for the recipes beside it. Committed;\n\
             # evaluation reads only this file. Regenerate with `drv lock --update`.\n",
        );
        s.push_str(&format!("version = {LOCK_VERSION}\n"));
        if let Some(d) = &self.debian {
            d.write_toml(&mut s);
        }
        s.push_str(&self.python.to_toml());
        s
    }
}

impl DebianLock {
    /// Append the `[debian]` section to `s`.
    fn write_toml(&self, s: &mut String) {
        let d = self;
        s.push_str(&format!("\n[debian]\narchitecture = {}\nsuite = {}\n", quote(&d.architecture), quote(&d.suite)));
        s.push_str(&format!("requested = {}\n", list(&sorted(d.requested.clone()))));
        for r in &d.repositories {
            s.push_str(&format!(
                "\n[[debian.repository]]\nsuite = {}\nmirror = {}\ndate = {}\n",
                quote(&r.suite),
                quote(&r.mirror),
                quote(&r.date)
            ));
        }
        let mut packages: Vec<&LockedPackage> = d.packages.iter().collect();
        packages.sort();
        for p in packages {
            s.push_str(&format!(
                "\n[[debian.package]]\nname = {}\nversion = {}\narchitecture = {}\nrepository = {}\npath = {}\nsize = {}\nsha256 = {}\n",
                quote(&p.name),
                quote(&p.version),
                quote(&p.architecture),
                quote(&p.repository),
                quote(&p.path),
                p.size,
                quote(&p.sha256)
            ));
            s.push_str(&format!("depends = {}\n", list(&sorted(p.depends.clone()))));
            if !p.provides.is_empty() {
                s.push_str(&format!("provides = {}\n", list(&sorted(p.provides.clone()))));
            }
        }
    }
}

// ---- the file as written -------------------------------------------------

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LockFile {
    version: Spanned<u32>,
    debian: Option<DebianFile>,
    python: Option<drv_python::PinsFile>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DebianFile {
    suite: Spanned<String>,
    architecture: Spanned<String>,
    #[serde(default)]
    requested: Vec<String>,
    #[serde(default)]
    repository: Vec<RepositoryFile>,
    #[serde(default)]
    package: Vec<PackageFile>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RepositoryFile {
    suite: Spanned<String>,
    mirror: Spanned<String>,
    date: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PackageFile {
    name: Spanned<String>,
    version: Spanned<String>,
    architecture: Spanned<String>,
    repository: Spanned<String>,
    path: Spanned<String>,
    size: u64,
    sha256: Spanned<String>,
    /// Always written, `[]` for none.
    depends: Spanned<Vec<String>>,
    #[serde(default)]
    provides: Vec<String>,
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, column)
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", quoted.join(", "))
}

/// Suite, mirror and architecture names: what the archive uses.
fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn is_pool_path(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('/')
        && s.ends_with(".deb")
        && s.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && !s.bytes().any(|b| b.is_ascii_control() || b == b'\\')
}

impl DebianLock {
    /// The package `name` (a real package, or failing that one that
    /// provides it).
    pub fn find(&self, name: &str) -> Option<&LockedPackage> {
        find(&self.packages, name)
    }

    /// The repository a package came from.
    pub fn repository(&self, package: &LockedPackage) -> Option<&Repository> {
        self.repositories.iter().find(|r| r.suite == package.repository)
    }

    /// The closure of `names` over the locked `depends` edges, sorted by
    /// name: exactly the `.deb`s of one toolchain.
    ///
    /// Errors: [`LockError::NotLocked`] for a name (or an edge) the lock
    /// does not cover.
    pub fn closure(&self, names: &[String]) -> Result<Vec<&LockedPackage>, LockError> {
        closure(&self.packages, names)
    }
}

/// The package `name` among `packages`: a real package, or failing that
/// one that provides it.
pub fn find<'a>(packages: &'a [LockedPackage], name: &str) -> Option<&'a LockedPackage> {
    packages
        .iter()
        .find(|p| p.name == name)
        .or_else(|| packages.iter().find(|p| p.provides.iter().any(|v| v == name)))
}

/// The closure of `names` among `packages` over their `depends` edges,
/// sorted by name (see [`DebianLock::closure`]).
///
/// Errors: [`LockError::NotLocked`] for a name (or an edge) not among them.
pub fn closure<'a>(packages: &'a [LockedPackage], names: &[String]) -> Result<Vec<&'a LockedPackage>, LockError> {
    let mut seen: BTreeMap<&str, &LockedPackage> = BTreeMap::new();
    let mut queue: Vec<(&str, Option<&str>)> = names.iter().map(|n| (n.as_str(), None)).collect();
    while let Some((name, needed_by)) = queue.pop() {
        let p = find(packages, name)
            .ok_or_else(|| LockError::NotLocked { name: name.to_owned(), needed_by: needed_by.map(str::to_owned) })?;
        if !seen.contains_key(p.name.as_str()) {
            seen.insert(p.name.as_str(), p);
            for d in &p.depends {
                queue.push((d.as_str(), Some(p.name.as_str())));
            }
        }
    }
    Ok(seen.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lock {
        let pkg = |name: &str, depends: &[&str]| LockedPackage {
            name: name.into(),
            version: "1.0-1".into(),
            architecture: "amd64".into(),
            repository: "bookworm".into(),
            path: format!("pool/main/x/{name}/{name}_1.0-1_amd64.deb"),
            size: 10,
            sha256: "ab".repeat(32),
            depends: depends.iter().map(|d| d.to_string()).collect(),
            provides: vec![],
        };
        let mut awk = pkg("mawk", &["libc6"]);
        awk.provides = vec!["awk".into()];
        Lock {
            python: Default::default(),
            debian: Some(DebianLock {
                suite: "bookworm".into(),
                architecture: "amd64".into(),
                requested: vec!["awk".into(), "dash".into()],
                repositories: vec![Repository { suite: "bookworm".into(), mirror: "debian".into(), date: "d".into() }],
                packages: vec![pkg("dash", &["libc6"]), pkg("libc6", &["libgcc-s1"]), pkg("libgcc-s1", &["libc6"]), awk],
            }),
        }
    }

    #[test]
    fn render_parse_round_trip() {
        let lock = sample();
        let text = lock.to_toml();
        let back = Lock::parse(&text, Path::new("drv.lock")).unwrap();
        assert_eq!(back, lock);
        assert_eq!(back.to_toml(), text);
    }

    #[test]
    fn closure_follows_edges_and_virtual_names() {
        let lock = sample();
        let d = lock.debian.as_ref().unwrap();
        let names: Vec<&str> = d.closure(&["awk".into()]).unwrap().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["libc6", "libgcc-s1", "mawk"]);
        match d.closure(&["dash".into(), "gcc".into()]) {
            Err(LockError::NotLocked { name, needed_by: None }) => assert_eq!(name, "gcc"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_name_line_and_field() {
        let text = sample().to_toml();
        let typo = text.replacen("sha256 =", "sha265 =", 1);
        let line = typo.lines().position(|l| l.starts_with("sha265")).unwrap() + 1;
        match Lock::parse(&typo, Path::new("r/drv.lock")) {
            Err(LockError::Syntax { line: l, message, .. }) => {
                assert_eq!(l, line);
                assert!(message.contains("sha265"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        for (from, to, field) in [
            ("\"abab", "\"ABAB", "sha256"),
            ("path = \"pool/main/x/dash", "path = \"../x/dash", "path"),
            ("repository = \"bookworm\"", "repository = \"sid\"", "repository"),
            ("depends = [\"libc6\"]", "depends = [\"nothere\"]", "depends"),
            ("architecture = \"amd64\"\nrepository", "architecture = \"arm64\"\nrepository", "architecture"),
        ] {
            let bad = text.replacen(from, to, 1);
            assert_ne!(bad, text, "{from}");
            let e = Lock::parse(&bad, Path::new("r/drv.lock")).unwrap_err();
            let LockError::Invalid { line, field: f, .. } = &e else { panic!("{e:?}") };
            // the line of the bad value
            let at = bad.lines().nth(line - 1).unwrap();
            assert!(at.starts_with(field) && f.ends_with(field), "{e}: line {line} is {at:?}");
            assert!(e.to_string().starts_with(&format!("r/drv.lock:{line}:")), "{e}");
        }
        let e = Lock::parse("version = 2\n", Path::new("l")).unwrap_err().to_string();
        assert!(e.contains("version"), "{e}");
    }
}

#[cfg(test)]
pub(crate) mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn package() -> impl Strategy<Value = LockedPackage> {
        (
            "[a-z0-9][a-z0-9+.-]{1,12}",
            "[0-9][!-~]{0,10}",
            proptest::collection::vec("[a-z0-9][a-z0-9+.-]{1,12}", 0..3),
            proptest::collection::vec("\\PC{0,8}", 0..3),
            any::<u64>(),
            "[0-9a-f]{64}",
        )
            .prop_map(|(name, version, depends, provides, size, sha256)| LockedPackage {
                path: format!("pool/main/{name}_{size}.deb"),
                name,
                version,
                architecture: "amd64".into(),
                repository: "bookworm".into(),
                size,
                sha256,
                depends,
                provides,
            })
    }

    /// Lock files as `drv lock` writes them, over arbitrary values: every
    /// package's dependencies made to exist, so the lock is valid.
    pub(crate) fn lock_text() -> impl Strategy<Value = String> {
        ("\\PC{0,12}", "\\PC{0,12}", proptest::collection::vec(package(), 0..5)).prop_map(|(suite, date, mut packages)| {
            let names: BTreeSet<String> = packages.iter().map(|p| p.name.clone()).collect();
            let mut seen = BTreeSet::new();
            packages.retain(|p| seen.insert(p.name.clone()));
            for p in &mut packages {
                p.depends.retain(|d| names.contains(d));
            }
            let requested = packages.iter().take(2).map(|p| p.name.clone()).collect();
            Lock {
                python: Default::default(),
                debian: Some(DebianLock {
                    suite,
                    architecture: "amd64".into(),
                    requested,
                    repositories: vec![Repository { suite: "bookworm".into(), mirror: "debian".into(), date }],
                    packages,
                }),
            }
            .to_toml()
        })
    }

    /// Lock text with one character inserted, removed or replaced.
    pub(crate) fn mutated_lock_text() -> impl Strategy<Value = String> {
        (lock_text(), any::<proptest::sample::Index>(), any::<char>(), 0u8..3).prop_map(|(text, at, c, how)| {
            let mut chars: Vec<char> = text.chars().collect();
            let i = at.index(chars.len());
            match how {
                0 => chars.insert(i, c),
                1 => {
                    chars.remove(i);
                }
                _ => chars[i] = c,
            }
            chars.into_iter().collect()
        })
    }

    /// The parse ⇔ render contract of [`Lock::parse`] for one input.
    pub(crate) fn check_lock_round_trip(text: &str) -> Result<(), TestCaseError> {
        let file = Path::new("drv.lock");
        let Ok(lock) = Lock::parse(text, file) else { return Ok(()) };
        let rendered = lock.to_toml();
        let again = Lock::parse(&rendered, file);
        prop_assert!(again.is_ok(), "accepted, but its rendering is refused: {:?}\n{}", again, rendered);
        let again = again.unwrap();
        prop_assert_eq!(&again, &lock);
        prop_assert_eq!(again.to_toml(), rendered);
        Ok(())
    }

    proptest! {
        #[test]
        fn written_locks_parse_back(text in lock_text()) {
            prop_assert!(Lock::parse(&text, Path::new("drv.lock")).is_ok(), "{}", text);
            check_lock_round_trip(&text)?;
        }

        #[test]
        fn parsed_locks_render_to_what_parses_the_same(text in mutated_lock_text()) {
            check_lock_round_trip(&text)?;
        }
    }

    /// The lock file's fuzz target: [`parsed_locks_render_to_what_parses_the_same`]
    /// on fresh inputs for `DRV_FUZZ_SECONDS` seconds (none: returns at
    /// once); `bench/fuzz.sh` runs it.
    #[test]
    fn fuzz_lock() {
        drv_formats::fuzz::fuzz("lock", mutated_lock_text(), |t| check_lock_round_trip(&t));
    }
}

