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
use std::path::{Path, PathBuf};

/// Version of the lock file format this code reads and writes.
pub const LOCK_VERSION: u32 = 1;

/// The lock file's conventional name, next to the recipes.
pub const LOCK_FILE_NAME: &str = "drv.lock";

/// The whole lock file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lock {
    /// Absent when no recipe names Debian packages.
    pub debian: Option<DebianLock>,
}

/// The Debian part: one suite, one architecture, the repositories its
/// packages come from, and the packages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebianLock {
    /// The release's code name (`bookworm`).
    pub suite: String,
    /// Debian architecture (`amd64`); packages are of it or `all`.
    pub architecture: String,
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
    #[error("{}:{line}:{column}: {message}", file.display())]
    Syntax { file: PathBuf, line: usize, column: usize, message: String },
    #[error("{}: {field}: {message}", file.display())]
    Invalid { file: PathBuf, field: String, message: String },
    #[error("the lock file does not cover Debian package {name:?}{}; run `drv lock`", needed_by.as_deref().map(|n| format!(" (needed by {n})")).unwrap_or_default())]
    NotLocked { name: String, needed_by: Option<String> },
    #[error("no lock file {}: run `drv lock` to resolve the recipes' Debian packages", file.display())]
    Missing { file: PathBuf },
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
        let _ = (text, file);
        todo!("lock parse")
    }

    /// The canonical text of the lock: sorted, one value per line.
    pub fn to_toml(&self) -> String {
        todo!("lock render")
    }
}

impl DebianLock {
    /// The package `name` (a real package, or failing that one that
    /// provides it).
    pub fn find(&self, name: &str) -> Option<&LockedPackage> {
        self.packages
            .iter()
            .find(|p| p.name == name)
            .or_else(|| self.packages.iter().find(|p| p.provides.iter().any(|v| v == name)))
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
        let mut seen: BTreeMap<&str, &LockedPackage> = BTreeMap::new();
        let mut queue: Vec<(&str, Option<&str>)> = names.iter().map(|n| (n.as_str(), None)).collect();
        let mut visited: BTreeSet<&str> = BTreeSet::new();
        while let Some((name, needed_by)) = queue.pop() {
            let p = self.find(name).ok_or_else(|| LockError::NotLocked {
                name: name.to_owned(),
                needed_by: needed_by.map(str::to_owned),
            })?;
            if visited.insert(p.name.as_str()) {
                seen.insert(p.name.as_str(), p);
                for d in &p.depends {
                    queue.push((d.as_str(), Some(p.name.as_str())));
                }
            }
        }
        Ok(seen.into_values().collect())
    }
}
