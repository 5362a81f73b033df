//! Host tools as one content-addressed store path: a *toolchain root file
//! system* assembled from installed Debian packages.
//!
//! A recipe names the Debian packages its build needs (`gcc-12`, `make`).
//! [`DebianPackages::resolve`] closes that set over `Depends` and
//! `Pre-Depends` in the dpkg database; [`import_toolchain`] copies exactly
//! the files those packages own (dpkg's `.list` files) into a staging tree
//! laid out as on the host, merged-/usr symlinks included, and commits it
//! as one recursive content-addressed store path. The sandbox mounts that
//! path read-only as the build's root file system, so a different host
//! compiler is a different input (and a different output hash) rather than
//! a silently different result, and nothing the recipe did not declare is
//! visible to the build.
//!
//! Links that `update-alternatives` manages (`/usr/bin/cc`, `/usr/bin/awk`)
//! belong to no package's file list, so they are added from dpkg's
//! alternatives database (`ADMIN/alternatives/NAME`) and the host's current
//! selections (`ROOT/etc/alternatives/NAME`), for the groups whose chosen
//! alternative is in the tree: see [`import_toolchain`].
//!
//! Asking again is cheap: the resolved set's `name:arch=version`s key a
//! cache `ROOT/var/drv/toolchains/<sha256>` holding the store path, so a
//! repeated import reads the dpkg status file, the alternatives database
//! and a few small files and touches no package file.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::formats::hash::Sha256;
use crate::formats::nar;
use crate::formats::path::{ContentAddress, StorePath};
use crate::local::LocalStore;
use crate::StoreError;

/// Version of the tree layout and of the cache key. Bump it whenever the
/// same packages would be imported differently (a new skipped directory, a
/// manifest field), so old cache entries stop matching.
///
/// 2: `update-alternatives` links and the manifest's `alternatives`.
pub const TOOLCHAIN_FORMAT_VERSION: u32 = 2;

/// Name of the manifest written at the top of every toolchain tree: the
/// requested names and the resolved packages with their versions, so a user
/// can see what is inside. It is part of the tree, hence of the hash.
pub const TOOLCHAIN_MANIFEST: &str = ".drv-toolchain.json";

/// Directories (relative to the host root) that are never imported. They
/// hold documentation only (manuals, info pages, translations of messages,
/// Debian's lint overrides): no build needs them, and leaving them out
/// keeps the tree small and free of files that change with every upload.
pub const DOCUMENTATION_DIRS: [&str; 5] =
    ["usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian"];

/// Top-level entries that merged-/usr hosts make symlinks into `/usr`.
/// Those that are symlinks on the host are recreated in every tree, with
/// the host's targets, so `/bin/sh` works inside the tree as it does outside.
const USRMERGE_LINKS: [&str; 7] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32", "libo32"];

/// Where, relative to the host root, `update-alternatives` keeps the link
/// naming each group's current selection (`etc/alternatives/awk ->
/// /usr/bin/mawk`); the group's own link points there.
const ALTERNATIVES_LINK_DIR: &str = "etc/alternatives";

/// What can go wrong resolving or importing a toolchain.
#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    #[error("package {name} is not installed on this host (apt-get install {name})")]
    NotInstalled { name: String },
    #[error("{name:?} is not a Debian package name (expected NAME or NAME:ARCH)")]
    InvalidPackageName { name: String },
    #[error("no packages named: a toolchain needs at least one")]
    NoPackages,
    #[error("{package} depends on {dependency}, which is not installed (dpkg database inconsistent?)")]
    UnsatisfiedDependency { package: String, dependency: String },
    #[error("dpkg database {}: {reason}", path.display())]
    Database { path: PathBuf, reason: String },
    #[error("no file list for {package} in {}", info_dir.display())]
    NoFileList { package: String, info_dir: PathBuf },
    #[error("cannot read {} (a file of {package}): {error}", path.display())]
    Unreadable { package: String, path: PathBuf, error: io::Error },
    #[error("{} (a file of {package}) is neither a regular file, a directory nor a symlink; a store path cannot hold it", path.display())]
    UnsupportedFileType { package: String, path: PathBuf },
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ToolchainError {
    fn io(path: &Path, error: io::Error) -> Self {
        Self::Io { path: path.to_owned(), error }
    }
}

type Result<T, E = ToolchainError> = std::result::Result<T, E>;

/// One installed package, as identified in the dpkg database.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct InstalledPackage {
    pub name: String,
    /// `amd64`, `all`, …: together with the name, what dpkg keys packages by.
    pub architecture: String,
    pub version: String,
}

impl InstalledPackage {
    /// `name:arch`, dpkg's key.
    pub fn key(&self) -> String {
        format!("{}:{}", self.name, self.architecture)
    }

    /// `name:arch=version`: what the toolchain's identity is made of.
    pub fn identity(&self) -> String {
        format!("{}:{}={}", self.name, self.architecture, self.version)
    }
}

/// The installed Debian packages of a host: a dpkg admin directory
/// (`/var/lib/dpkg`: `status`, `info/*.list`, `diversions`) and the root
/// its file lists are relative to.
#[derive(Clone, Debug)]
pub struct DebianPackages {
    admin_dir: PathBuf,
    root: PathBuf,
}

impl DebianPackages {
    /// This machine: `/var/lib/dpkg` describing `/`.
    pub fn host() -> Self {
        Self::new("/var/lib/dpkg", "/")
    }

    /// The dpkg database in `admin_dir`, whose listed paths live under
    /// `host_root` (a fake host in tests, a mounted image).
    pub fn new(admin_dir: impl Into<PathBuf>, host_root: impl Into<PathBuf>) -> Self {
        Self { admin_dir: admin_dir.into(), root: host_root.into() }
    }

    pub fn admin_dir(&self) -> &Path {
        &self.admin_dir
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The named packages and everything they depend on, transitively,
    /// sorted by name and architecture, each once.
    ///
    /// A name is `NAME` or `NAME:ARCH` (`NAME` prefers the native
    /// architecture, then `all`). Dependencies follow `Depends` and
    /// `Pre-Depends` among installed packages only: of alternatives
    /// `a | b` the first one installed wins; version constraints are not
    /// checked (dpkg already did when it installed them); `:any`,
    /// `:native` and `:ARCH` qualifiers and `Multi-Arch: foreign` decide
    /// which architectures satisfy; a virtual package is satisfied by an
    /// installed package that `Provides` it (the first by name and
    /// architecture when several do), a real package being preferred.
    pub fn resolve(&self, names: &[String]) -> Result<Vec<InstalledPackage>> {
        let db = Database::read(&self.admin_dir.join("status"))?;
        db.closure(names)
    }

    fn info_dir(&self) -> PathBuf {
        self.admin_dir.join("info")
    }

    /// The `.list` file of `pkg`: `NAME:ARCH.list` for `Multi-Arch: same`
    /// packages, `NAME.list` for the rest.
    fn file_list(&self, pkg: &InstalledPackage) -> Result<Vec<String>> {
        let info = self.info_dir();
        for candidate in [info.join(format!("{}.list", pkg.key())), info.join(format!("{}.list", pkg.name))] {
            match fs::read(&candidate) {
                Ok(bytes) => {
                    return Ok(String::from_utf8_lossy(&bytes).lines().map(str::to_owned).collect());
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ToolchainError::io(&candidate, e)),
            }
        }
        Err(ToolchainError::NoFileList { package: pkg.key(), info_dir: info })
    }

    /// The raw `diversions` file (empty when there is none).
    fn diversions_file(&self) -> Result<String> {
        let path = self.admin_dir.join("diversions");
        match fs::read(&path) {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(ToolchainError::io(&path, e)),
        }
    }

    /// The host's merged-/usr symlinks: `(name, target)` for each of
    /// [`USRMERGE_LINKS`] that is a symlink at the host root.
    fn usrmerge_links(&self) -> Vec<(&'static str, PathBuf)> {
        USRMERGE_LINKS.iter().filter_map(|name| fs::read_link(self.root.join(name)).ok().map(|t| (*name, t))).collect()
    }

    /// The alternatives database (`ADMIN/alternatives/`, empty when there
    /// is none) and the host's current selection of each group. About
    /// sixty small files on a developer's machine: cheap enough for the
    /// quick cache key.
    fn alternatives(&self) -> Result<AlternativesState> {
        let dir = self.admin_dir.join("alternatives");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(AlternativesState::default()),
            Err(e) => return Err(ToolchainError::io(&dir, e)),
        };
        let mut groups = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(|e| ToolchainError::io(&dir, e))?;
            let Ok(name) = entry.file_name().into_string() else { continue };
            // update-alternatives writes `NAME.dpkg-tmp` and renames it.
            let is_file = entry.file_type().map_err(|e| ToolchainError::io(&entry.path(), e))?.is_file();
            if !is_file || name.starts_with('.') || name.ends_with(".dpkg-tmp") {
                continue;
            }
            let path = entry.path();
            let bytes = fs::read(&path).map_err(|e| ToolchainError::io(&path, e))?;
            let selection = fs::read_link(self.root.join(ALTERNATIVES_LINK_DIR).join(&name))
                .ok()
                .map(|t| t.to_string_lossy().into_owned());
            groups.insert(name, AlternativesGroupState { file: path, bytes, selection });
        }
        Ok(AlternativesState { groups })
    }
}

/// dpkg's alternatives as they stand on a host, by group name.
#[derive(Default)]
struct AlternativesState {
    groups: BTreeMap<String, AlternativesGroupState>,
}

struct AlternativesGroupState {
    /// `ADMIN/alternatives/NAME`, for error messages.
    file: PathBuf,
    /// That file's bytes, as read.
    bytes: Vec<u8>,
    /// The target of `ROOT/etc/alternatives/NAME`: the host's current
    /// choice (`None` when the link is missing).
    selection: Option<String>,
}

impl AlternativesState {
    /// sha256 of every group's name, database bytes and host selection:
    /// everything the tree's alternatives links are made from besides
    /// which files the packages put in the tree.
    fn digest(&self) -> Sha256 {
        let mut text = String::from("drv-toolchain alternatives\n");
        for (name, group) in &self.groups {
            let _ = writeln!(
                text,
                "{name} {} -> {}",
                Sha256::digest(&group.bytes).to_hex(),
                group.selection.as_deref().unwrap_or("(none)")
            );
        }
        Sha256::digest(text.as_bytes())
    }
}

/// One group of dpkg's alternatives database, as update-alternatives(1)
/// describes `ADMIN/alternatives/NAME` ("ADMINISTRATIVE DIRECTORY").
#[derive(Debug, PartialEq, Eq)]
struct AlternativeGroup {
    /// The group's link (`/usr/bin/awk`).
    link: String,
    /// Slave name and link (`nawk`, `/usr/bin/nawk`).
    slaves: Vec<(String, String)>,
    alternatives: Vec<Alternative>,
}

#[derive(Debug, PartialEq, Eq)]
struct Alternative {
    /// What the group's link leads to when this alternative is chosen.
    path: String,
    priority: i64,
    /// One per slave, in the same order; empty when this alternative has
    /// no such slave.
    slave_targets: Vec<String>,
}

/// How the alternative placed in a tree was chosen (recorded in the
/// manifest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
enum AlternativeSelection {
    /// The host's current selection.
    Host,
    /// The host's selection is not in the tree: the tree's highest priority.
    HighestPriorityInTree,
}

impl AlternativeGroup {
    /// Parse a database file: a status line (`auto` or `manual`), the
    /// group's link, slave name/link line pairs, an empty line, then for
    /// each alternative its path, its priority and one line per slave with
    /// that slave's target (possibly empty); an empty line or the end of
    /// the file after the last one.
    fn parse(text: &str, file: &Path) -> Result<Self> {
        let malformed = |reason: String| ToolchainError::Database { path: file.to_owned(), reason };
        let mut lines = text.lines();
        let mut next = |what: &str| lines.next().ok_or_else(|| malformed(format!("ends before {what}")));
        let status = next("the status")?;
        if !matches!(status, "auto" | "manual") {
            return Err(malformed(format!("status {status:?} is neither auto nor manual")));
        }
        let absolute = |path: &str, what: &str| {
            if path.starts_with('/') {
                Ok(path.to_owned())
            } else {
                Err(malformed(format!("{what} {path:?} is not an absolute path")))
            }
        };
        let link = absolute(next("the link")?, "link")?;
        let mut slaves = Vec::new();
        loop {
            let name = next("the end of the slaves")?;
            if name.is_empty() {
                break;
            }
            // The name is a file name in /etc/alternatives.
            if name.contains('/') || name == "." || name == ".." {
                return Err(malformed(format!("slave name {name:?} is not a file name")));
            }
            let slave_link = absolute(next("a slave's link")?, "slave link")?;
            slaves.push((name.to_owned(), slave_link));
        }
        let mut alternatives = Vec::new();
        loop {
            // The end of the file is as good as the closing empty line.
            let path = match next("an alternative") {
                Ok("") | Err(_) => break,
                Ok(path) => absolute(path, "alternative")?,
            };
            let priority = next("a priority")?;
            let priority =
                priority.parse().map_err(|_| malformed(format!("priority {priority:?} of {path} is not a number")))?;
            let slave_targets = slaves
                .iter()
                .map(|_| next("a slave's target").map(str::to_owned))
                .collect::<Result<Vec<_>>>()?;
            alternatives.push(Alternative { path, priority, slave_targets });
        }
        Ok(Self { link, slaves, alternatives })
    }

    /// The alternative a tree gets, given the host's `selection` and
    /// which paths are in the tree: the host's selection if it is one of
    /// the group's alternatives and in the tree; otherwise the
    /// highest-priority alternative in the tree (the first in the file on
    /// a tie), which is what `update-alternatives --auto` would choose
    /// were only the tree's packages installed; `None` when no
    /// alternative is in the tree.
    fn choose(
        &self,
        selection: Option<&str>,
        mut in_tree: impl FnMut(&str) -> Result<bool>,
    ) -> Result<Option<(&Alternative, AlternativeSelection)>> {
        if let Some(host) = self.alternatives.iter().find(|a| Some(a.path.as_str()) == selection) {
            if in_tree(&host.path)? {
                return Ok(Some((host, AlternativeSelection::Host)));
            }
        }
        let mut best: Option<&Alternative> = None;
        for a in &self.alternatives {
            if best.is_none_or(|b| a.priority > b.priority) && in_tree(&a.path)? {
                best = Some(a);
            }
        }
        Ok(best.map(|a| (a, AlternativeSelection::HighestPriorityInTree)))
    }
}

/// A group's links as placed in a tree, recorded in the manifest.
#[derive(Debug, serde::Serialize)]
struct ChosenAlternative {
    name: String,
    link: String,
    /// The chosen alternative: `etc/alternatives/NAME`'s target.
    path: String,
    selection: AlternativeSelection,
    /// The slaves placed (those whose target is in the tree).
    slaves: Vec<ChosenSlave>,
}

#[derive(Debug, serde::Serialize)]
struct ChosenSlave {
    name: String,
    link: String,
    path: String,
}

/// Add to the tree the links of each alternatives group whose chosen
/// alternative (see [`AlternativeGroup::choose`]) the packages put there:
/// the group's link to `/etc/alternatives/NAME` and that one to the
/// alternative, and the same pair for each slave whose target is in the
/// tree. Links go to their real locations; a link that is documentation,
/// whose directory the host lacks, or whose place a package's own file
/// already took is not made, and a group whose own link or selection
/// link cannot be made is left out whole.
fn place_alternatives(builder: &mut TreeBuilder, state: &AlternativesState) -> Result<Vec<ChosenAlternative>> {
    let mut chosen = Vec::new();
    for (name, group_state) in &state.groups {
        let group = AlternativeGroup::parse(&String::from_utf8_lossy(&group_state.bytes), &group_state.file)?;
        let Some((alternative, selection)) = group.choose(group_state.selection.as_deref(), |p| builder.contains(p))?
        else {
            continue;
        };
        if !builder.place_alternative_links(name, &group.link, &alternative.path)? {
            continue;
        }
        let mut slaves = Vec::new();
        for ((slave, link), target) in group.slaves.iter().zip(&alternative.slave_targets) {
            if target.is_empty() || !builder.contains(target)? {
                continue;
            }
            if builder.place_alternative_links(slave, link, target)? {
                slaves.push(ChosenSlave { name: slave.clone(), link: link.clone(), path: target.clone() });
            }
        }
        chosen.push(ChosenAlternative {
            name: name.clone(),
            link: group.link.clone(),
            path: alternative.path.clone(),
            selection,
            slaves,
        });
    }
    Ok(chosen)
}

/// Where a diverted file's content really is: dpkg's `diversions` file is
/// triples of lines `from`, `to`, `package` (`:` for a local diversion).
struct Diversions(HashMap<String, (String, String)>);

impl Diversions {
    fn parse(text: &str) -> Self {
        let lines: Vec<&str> = text.lines().collect();
        Self(lines.chunks_exact(3).map(|t| (t[0].to_owned(), (t[1].to_owned(), t[2].to_owned()))).collect())
    }

    /// Where `package`'s file listed as `listed` is on disk: a diversion by
    /// another package (or a local one) moved it to the divert-to path; a
    /// package's own diversion does not apply to its own files.
    fn location<'a>(&'a self, listed: &'a str, package: &str) -> &'a str {
        match self.0.get(listed) {
            Some((to, by)) if by != package => to,
            _ => listed,
        }
    }
}

/// One alternative of a dependency: `name[:qualifier]`, version and
/// architecture restrictions dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Relation {
    name: String,
    qualifier: Option<String>,
}

impl Relation {
    /// Parse one alternative as written in a control field
    /// (`libc6:any (>= 2.34) [amd64] <!nocheck>`).
    fn parse_alternative(text: &str) -> Option<Self> {
        let text = text.trim_start();
        let end = text.find(|c: char| c.is_whitespace() || c == '(' || c == '[' || c == '<').unwrap_or(text.len());
        let word = text[..end].trim();
        if word.is_empty() {
            return None;
        }
        Some(match word.split_once(':') {
            Some((name, q)) => Self { name: name.to_owned(), qualifier: Some(q.to_owned()) },
            None => Self { name: word.to_owned(), qualifier: None },
        })
    }

    /// Parse a package name given by a user: `NAME` or `NAME:ARCH`.
    fn parse_request(text: &str) -> Result<Self> {
        let (name, qualifier) = match text.split_once(':') {
            Some((n, q)) => (n, Some(q)),
            None => (text, None),
        };
        let name_ok = name.len() >= 2
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        let qualifier_ok = match qualifier {
            None => true,
            Some(q) => !q.is_empty() && q.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
        };
        if !(name_ok && qualifier_ok) {
            return Err(ToolchainError::InvalidPackageName { name: text.to_owned() });
        }
        Ok(Self { name: name.to_owned(), qualifier: qualifier.map(str::to_owned) })
    }
}

/// An installed package's stanza, as much of it as resolution needs.
struct Stanza {
    package: InstalledPackage,
    multi_arch_foreign: bool,
    /// `Depends` then `Pre-Depends`: each group is a list of alternatives,
    /// kept with its text for error messages.
    depends: Vec<(String, Vec<Relation>)>,
    /// Virtual package names from `Provides`.
    provides: Vec<String>,
}

/// The installed packages of a dpkg `status` file, indexed.
struct Database {
    stanzas: Vec<Stanza>,
    by_name: HashMap<String, Vec<usize>>,
    providers: HashMap<String, Vec<usize>>,
    native_arch: String,
}

impl Database {
    fn read(path: &Path) -> Result<Self> {
        let bytes = fs::read(path).map_err(|e| ToolchainError::io(path, e))?;
        Self::parse(&String::from_utf8_lossy(&bytes), path)
    }

    /// Parse deb822 stanzas: `Field: value` lines, continuation lines
    /// starting with white space, stanzas separated by blank lines. Only
    /// packages whose `Status` is `<want> ok installed` are kept: those
    /// whose files are all on disk.
    fn parse(text: &str, path: &Path) -> Result<Self> {
        let mut stanzas = Vec::new();
        let mut fields: HashMap<String, String> = HashMap::new();
        let mut last_field: Option<String> = None;
        for line in text.lines().chain(std::iter::once("")) {
            if line.trim().is_empty() {
                if !fields.is_empty() {
                    stanzas.extend(Self::stanza(&fields, path)?);
                    fields.clear();
                }
                last_field = None;
            } else if line.starts_with([' ', '\t']) {
                // Multi-line fields drv ignores (Description, Conffiles)
                // continue this way; joining with a space keeps a folded
                // relation field parseable too.
                if let Some(value) = last_field.as_ref().and_then(|f| fields.get_mut(f)) {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                let name = name.trim().to_ascii_lowercase();
                fields.insert(name.clone(), value.trim().to_owned());
                last_field = Some(name);
            } else {
                return Err(ToolchainError::Database {
                    path: path.to_owned(),
                    reason: format!("malformed line {line:?}"),
                });
            }
        }

        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let mut providers: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, s) in stanzas.iter().enumerate() {
            by_name.entry(s.package.name.clone()).or_default().push(i);
            for v in &s.provides {
                providers.entry(v.clone()).or_default().push(i);
            }
        }
        // dpkg itself is always of the native architecture.
        let native_arch = by_name
            .get("dpkg")
            .and_then(|v| v.first())
            .map(|&i| stanzas[i].package.architecture.clone())
            .unwrap_or_else(|| native_arch_of_build().to_owned());
        Ok(Self { stanzas, by_name, providers, native_arch })
    }

    /// The stanza's package if it is installed.
    fn stanza(fields: &HashMap<String, String>, path: &Path) -> Result<Option<Stanza>> {
        let installed = fields
            .get("status")
            .map(|s| s.split_whitespace().collect::<Vec<_>>())
            .is_some_and(|words| matches!(words.as_slice(), [_, "ok", "installed"]));
        if !installed {
            return Ok(None);
        }
        let field = |name: &str| -> Result<String> {
            fields.get(name).cloned().ok_or_else(|| ToolchainError::Database {
                path: path.to_owned(),
                reason: format!(
                    "installed package {} has no {name} field",
                    fields.get("package").map_or("(unnamed)", String::as_str)
                ),
            })
        };
        let package = InstalledPackage {
            name: field("package")?,
            architecture: field("architecture")?,
            version: field("version")?,
        };
        let mut depends = Vec::new();
        for f in ["depends", "pre-depends"] {
            for group in fields.get(f).map_or("", String::as_str).split(',') {
                let alternatives: Vec<Relation> = group.split('|').filter_map(Relation::parse_alternative).collect();
                if !alternatives.is_empty() {
                    depends.push((group.trim().to_owned(), alternatives));
                }
            }
        }
        let provides = fields
            .get("provides")
            .map_or("", String::as_str)
            .split(',')
            .filter_map(Relation::parse_alternative)
            .map(|r| r.name)
            .collect();
        let multi_arch_foreign = fields.get("multi-arch").is_some_and(|m| m == "foreign");
        Ok(Some(Stanza { package, multi_arch_foreign, depends, provides }))
    }

    /// See [`DebianPackages::resolve`].
    fn closure(&self, names: &[String]) -> Result<Vec<InstalledPackage>> {
        let mut queue = VecDeque::new();
        for name in names {
            let wanted = Relation::parse_request(name)?;
            let found = self.satisfier(&wanted, &self.native_arch);
            queue.push_back(found.ok_or_else(|| ToolchainError::NotInstalled { name: name.clone() })?);
        }
        let mut chosen = BTreeSet::new();
        while let Some(i) = queue.pop_front() {
            if !chosen.insert(i) {
                continue;
            }
            let stanza = &self.stanzas[i];
            for (text, alternatives) in &stanza.depends {
                let found = alternatives.iter().find_map(|r| self.satisfier(r, &stanza.package.architecture));
                queue.push_back(found.ok_or_else(|| ToolchainError::UnsatisfiedDependency {
                    package: stanza.package.key(),
                    dependency: text.clone(),
                })?);
            }
        }
        let mut packages: Vec<InstalledPackage> = chosen.into_iter().map(|i| self.stanzas[i].package.clone()).collect();
        packages.sort();
        Ok(packages)
    }

    /// The installed package that satisfies `relation` for a package of
    /// architecture `from_arch`: a real package of that name if one
    /// qualifies, else a provider.
    fn satisfier(&self, relation: &Relation, from_arch: &str) -> Option<usize> {
        let native = self.native_arch.as_str();
        // An `all` package's dependencies are resolved as the native ones.
        let from_arch = if from_arch == "all" { native } else { from_arch };
        let qualifies = |i: &usize| {
            let s = &self.stanzas[*i];
            let arch = s.package.architecture.as_str();
            match relation.qualifier.as_deref() {
                Some("any") => true,
                Some("native") => arch == native || arch == "all",
                Some(q) => arch == q,
                None => arch == from_arch || arch == "all" || s.multi_arch_foreign,
            }
        };
        // Deterministic preference: the depender's architecture, then the
        // native one, then `all`, then by name and architecture.
        let preference = |i: &usize| {
            let p = &self.stanzas[*i].package;
            let arch = p.architecture.as_str();
            (arch != from_arch, arch != native, arch != "all", p.name.clone(), p.architecture.clone())
        };
        let best = |candidates: Option<&Vec<usize>>| {
            candidates.into_iter().flatten().copied().filter(qualifies).min_by_key(preference)
        };
        best(self.by_name.get(&relation.name)).or_else(|| best(self.providers.get(&relation.name)))
    }
}

/// Debian's name for the architecture drv was built for, used only when
/// the database has no `dpkg` package to tell.
fn native_arch_of_build() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "i386",
        "aarch64" => "arm64",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        other => other,
    }
}

/// The manifest written into the tree as [`TOOLCHAIN_MANIFEST`].
#[derive(serde::Serialize)]
struct Manifest<'a> {
    format: u32,
    requested: &'a [String],
    packages: &'a [InstalledPackage],
    alternatives: &'a [ChosenAlternative],
}

/// The store path holding the root file system of the named packages and
/// their dependencies (see [`DebianPackages::resolve`]), importing it if
/// this store does not have it yet.
///
/// The tree holds every path in the packages' file lists, at its real
/// location on the host (a path listed under `/bin` on a merged-/usr host
/// lands in `usr/bin`), minus [`DOCUMENTATION_DIRS`] and minus listed paths
/// absent from the host (`dpkg --path-exclude`); regular files keep their
/// contents and executable bit, symlinks their targets; the host's merged-
/// /usr symlinks are recreated; diverted files are taken from where the
/// diversion put them; [`TOOLCHAIN_MANIFEST`] names the packages and the
/// alternatives chosen. The path is content-addressed (recursive sha256,
/// no references), so the same package versions (and alternatives) give
/// the same path on any machine.
///
/// `update-alternatives` links are added for each group of the host's
/// alternatives database one of whose alternatives is in the tree: the
/// group's link (`usr/bin/awk -> /etc/alternatives/awk`) and its selection
/// (`etc/alternatives/awk -> /usr/bin/mawk`), with the host's targets. The
/// alternative is the host's current selection when the tree has it;
/// otherwise (the host chose `gawk`, the recipe asked for `mawk` only) the
/// highest-priority alternative the tree has, the one `update-alternatives
/// --auto` would pick on a host with only these packages, so the tree
/// never points at a file it lacks. Each slave (`nawk`, `awk.1.gz`) whose
/// target for that alternative is in the tree gets its pair of links too.
/// Links under [`DOCUMENTATION_DIRS`] are never made, and a path a package
/// ships itself is never replaced by a link.
///
/// The order of `names` does not matter. A repeated call with the same
/// resolved package versions and alternatives state is answered from
/// `ROOT/var/drv/toolchains/` without reading any package file, as long
/// as the path is still valid. That trusts the host's files to be what
/// dpkg installed (`dpkg --verify` says whether they are).
pub fn import_toolchain(store: &mut LocalStore, pkgs: &DebianPackages, names: &[String]) -> Result<StorePath> {
    let mut requested: Vec<String> = names.to_vec();
    requested.sort();
    requested.dedup();
    if requested.is_empty() {
        return Err(ToolchainError::NoPackages);
    }
    let usrmerge = pkgs.usrmerge_links();
    let alternatives = pkgs.alternatives()?;
    let alternatives_digest = alternatives.digest();
    // While dpkg's status and diversions files are byte for byte what they
    // were, the answer is the one recorded last time: hashing them is ten
    // times cheaper than parsing the package database.
    let quick_file = quick_key(pkgs, &requested, &usrmerge, &alternatives_digest)
        .map(|k| store.state_dir().join("toolchains").join(format!("quick-{}", k.to_hex())));
    if let Some(q) = &quick_file {
        if let Some(path) = cached_path(store, q)? {
            return Ok(path);
        }
    }
    let packages = pkgs.resolve(&requested)?;
    let diversions = pkgs.diversions_file()?;
    let key = cache_key(&requested, &packages, &diversions, &usrmerge, &alternatives_digest);
    let cache_file = store.state_dir().join("toolchains").join(key.to_hex());
    if let Some(path) = cached_path(store, &cache_file)? {
        if let Some(q) = &quick_file {
            write_cache(q, &path)?;
        }
        return Ok(path);
    }

    let staging = store.staging()?;
    let tree = staging.path();
    fs::create_dir(&tree).map_err(|e| ToolchainError::io(&tree, e))?;
    let mut builder = TreeBuilder::new(&pkgs.root, &tree);
    let diversions = Diversions::parse(&diversions);
    for pkg in &packages {
        for listed in pkgs.file_list(pkg)? {
            // `/.` (the root itself) heads every list.
            if !listed.starts_with('/') || listed == "/." {
                continue;
            }
            builder.place(&pkg.name, diversions.location(&listed, &pkg.name))?;
        }
    }
    // After every package file, so none is mistaken for absent or replaced.
    let chosen = place_alternatives(&mut builder, &alternatives)?;
    for (name, target) in &usrmerge {
        builder.place_usrmerge_link(name, target)?;
    }
    let manifest = Manifest {
        format: TOOLCHAIN_FORMAT_VERSION,
        requested: &requested,
        packages: &packages,
        alternatives: &chosen,
    };
    let mut json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    json.push(b'\n');
    let manifest_path = tree.join(TOOLCHAIN_MANIFEST);
    fs::write(&manifest_path, json).map_err(|e| ToolchainError::io(&manifest_path, e))?;

    // The staged modes already follow the canonical executable rule, so
    // this hash is the one of the tree `commit` canonicalises.
    let nar_hash = nar::hash_path(&tree).map_err(StoreError::from)?;
    let ca = ContentAddress::Recursive(nar_hash.sha256);
    let name = store_path_name(&requested, packages.len());
    let path = store.store_dir().fixed_output_path(&name, &ca).map_err(StoreError::from)?;
    store.commit(staging, &path, nar_hash, BTreeSet::new(), None, Some(ca))?;
    write_cache(&cache_file, &path)?;
    if let Some(q) = &quick_file {
        write_cache(q, &path)?;
    }
    Ok(path)
}

/// A key from the bytes of dpkg's `status` and `diversions` files rather
/// than the packages they describe, and from the alternatives state;
/// `None` when they cannot be read.
fn quick_key(
    pkgs: &DebianPackages,
    requested: &[String],
    usrmerge: &[(&str, PathBuf)],
    alternatives: &Sha256,
) -> Option<Sha256> {
    let mut text = format!("drv-toolchain quick format {TOOLCHAIN_FORMAT_VERSION}\nadmin {}\nroot {}\n", pkgs.admin_dir.display(), pkgs.root.display());
    for file in ["status", "diversions"] {
        match fs::read(pkgs.admin_dir.join(file)) {
            Ok(bytes) => {
                let _ = writeln!(text, "{file} {}", Sha256::digest(&bytes).to_hex());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && file == "diversions" => text.push_str("diversions none\n"),
            Err(_) => return None,
        }
    }
    for r in requested {
        let _ = writeln!(text, "requested {r}");
    }
    for (name, target) in usrmerge {
        let _ = writeln!(text, "usrmerge {name} {}", target.display());
    }
    let _ = writeln!(text, "alternatives {}", alternatives.to_hex());
    Some(Sha256::digest(text.as_bytes()))
}

/// `toolchain-<first requested>-<n>pkgs`, shortened to a valid length.
fn store_path_name(requested: &[String], count: usize) -> String {
    let suffix = format!("-{count}pkgs");
    // Requested names were validated: `[a-z0-9+.-]`, and an `:arch` the
    // store-path alphabet lacks.
    let first = requested[0].replace(':', "_");
    let room = StorePath::MAX_NAME_LEN - "toolchain-".len() - suffix.len();
    let first: String = first.chars().take(room).collect();
    format!("toolchain-{first}{suffix}")
}

/// sha256 of everything the tree is made from besides the host's files
/// themselves.
fn cache_key(
    requested: &[String],
    packages: &[InstalledPackage],
    diversions: &str,
    usrmerge: &[(&str, PathBuf)],
    alternatives: &Sha256,
) -> Sha256 {
    let mut text = format!("drv-toolchain format {TOOLCHAIN_FORMAT_VERSION}\n");
    for r in requested {
        let _ = writeln!(text, "requested {r}");
    }
    for p in packages {
        let _ = writeln!(text, "package {}", p.identity());
    }
    let _ = writeln!(text, "diversions {}", Sha256::digest(diversions.as_bytes()).to_hex());
    for (name, target) in usrmerge {
        let _ = writeln!(text, "usrmerge {name} -> {}", target.display());
    }
    // The whole alternatives state, not only the groups this tree uses:
    // which groups those are depends on the package files, which a cache
    // hit must not read.
    let _ = writeln!(text, "alternatives {}", alternatives.to_hex());
    Sha256::digest(text.as_bytes())
}

/// The cached path, if the cache has one and it is still valid.
fn cached_path(store: &LocalStore, cache_file: &Path) -> Result<Option<StorePath>> {
    let text = match fs::read_to_string(cache_file) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ToolchainError::io(cache_file, e)),
    };
    // A damaged entry is only a miss: the import rewrites it.
    let Ok(path) = StorePath::from_basename(text.trim()) else { return Ok(None) };
    Ok(store.is_valid(&path)?.then_some(path))
}

/// Record `path` for the key, atomically (write a sibling, rename).
fn write_cache(cache_file: &Path, path: &StorePath) -> Result<()> {
    let dir = cache_file.parent().expect("cache file has a directory");
    fs::create_dir_all(dir).map_err(|e| ToolchainError::io(dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| ToolchainError::io(dir, e))?;
    writeln!(tmp, "{}", path.to_basename()).map_err(|e| ToolchainError::io(tmp.path(), e))?;
    tmp.persist(cache_file).map_err(|e| ToolchainError::io(cache_file, e.error))?;
    Ok(())
}

/// Copies host paths into the staging tree at their real locations.
struct TreeBuilder<'a> {
    host_root: &'a Path,
    tree: &'a Path,
    /// Listed parent directory → its real location relative to the root
    /// (`None`: missing on the host). Thousands of files share a few
    /// hundred parents.
    real_dirs: HashMap<PathBuf, Option<PathBuf>>,
    /// Directories already created in the tree.
    made_dirs: HashSet<PathBuf>,
    /// Real locations in the tree so far (`/bin/sh` and `/usr/bin/sh` are
    /// one).
    placed: HashSet<PathBuf>,
}

impl<'a> TreeBuilder<'a> {
    fn new(host_root: &'a Path, tree: &'a Path) -> Self {
        Self { host_root, tree, real_dirs: HashMap::new(), made_dirs: HashSet::new(), placed: HashSet::new() }
    }

    /// Where the host's `listed` (absolute) really is, relative to the
    /// root: its parent resolved through the host's symlinks. `None` for
    /// documentation, the root itself and a path whose directory the host
    /// lacks.
    fn location(&mut self, listed: &str) -> Result<Option<PathBuf>> {
        let rel = Path::new(listed.trim_start_matches('/'));
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else { return Ok(None) };
        if is_documentation(rel) {
            return Ok(None);
        }
        let Some(real_parent) = self.real_dir(parent)? else { return Ok(None) };
        let real = real_parent.join(name);
        Ok((!is_documentation(&real)).then_some(real))
    }

    /// Whether the host's `listed` (absolute) is in the tree: placed from
    /// a package's file list (or a link placed since).
    fn contains(&mut self, listed: &str) -> Result<bool> {
        Ok(self.location(listed)?.is_some_and(|real| self.placed.contains(&real)))
    }

    /// Copy the host's `listed` (absolute, as in a `.list` file) into the
    /// tree at its real location, unless it is documentation or missing.
    fn place(&mut self, package: &str, listed: &str) -> Result<()> {
        let Some(real) = self.location(listed)? else { return Ok(()) };
        if !self.placed.insert(real.clone()) {
            return Ok(());
        }
        let src = self.host_root.join(&real);
        let meta = match fs::symlink_metadata(&src) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Only what is in the tree counts as placed.
                self.placed.remove(&real);
                return Ok(());
            }
            Err(error) => return Err(ToolchainError::Unreadable { package: package.to_owned(), path: src, error }),
        };
        let real_parent = real.parent().expect("a real location has a parent").to_owned();
        self.make_dir(&real_parent)?;
        let dest = self.tree.join(&real);
        let ft = meta.file_type();
        if ft.is_dir() {
            self.make_dir(&real)
        } else if ft.is_symlink() {
            let target = fs::read_link(&src).map_err(|error| ToolchainError::Unreadable {
                package: package.to_owned(),
                path: src.clone(),
                error,
            })?;
            symlink(&target, &dest).map_err(|e| ToolchainError::io(&dest, e))
        } else if ft.is_file() {
            copy_regular(package, &src, &dest, meta.permissions().mode() & 0o111 != 0)
        } else {
            Err(ToolchainError::UnsupportedFileType { package: package.to_owned(), path: src })
        }
    }

    /// Make `update-alternatives`' pair of links for `name`: `link` ->
    /// `/etc/alternatives/NAME` -> `target`, each at its real location.
    /// Makes neither (and says `false`) unless both places are free: not
    /// documentation, in a directory the host has, not taken by a package.
    fn place_alternative_links(&mut self, name: &str, link: &str, target: &str) -> Result<bool> {
        let selection_link = format!("/{ALTERNATIVES_LINK_DIR}/{name}");
        let (Some(link_at), Some(selection_at)) = (self.location(link)?, self.location(&selection_link)?) else {
            return Ok(false);
        };
        if link_at == selection_at || self.placed.contains(&link_at) || self.placed.contains(&selection_at) {
            return Ok(false);
        }
        for (at, to) in [(selection_at, target), (link_at, selection_link.as_str())] {
            self.make_dir(at.parent().expect("a real location has a parent"))?;
            let dest = self.tree.join(&at);
            symlink(to, &dest).map_err(|e| ToolchainError::io(&dest, e))?;
            self.placed.insert(at);
        }
        Ok(true)
    }

    /// Recreate a merged-/usr symlink at the top of the tree.
    fn place_usrmerge_link(&mut self, name: &str, target: &Path) -> Result<()> {
        let rel = PathBuf::from(name);
        if self.placed.insert(rel.clone()) {
            let dest = self.tree.join(rel);
            symlink(target, &dest).map_err(|e| ToolchainError::io(&dest, e))?;
        }
        Ok(())
    }

    fn real_dir(&mut self, listed_dir: &Path) -> Result<Option<PathBuf>> {
        if let Some(known) = self.real_dirs.get(listed_dir) {
            return Ok(known.clone());
        }
        let real = resolve_in_root(self.host_root, listed_dir)?;
        self.real_dirs.insert(listed_dir.to_owned(), real.clone());
        Ok(real)
    }

    fn make_dir(&mut self, rel: &Path) -> Result<()> {
        if self.made_dirs.insert(rel.to_owned()) {
            let dir = self.tree.join(rel);
            fs::create_dir_all(&dir).map_err(|e| ToolchainError::io(&dir, e))?;
        }
        Ok(())
    }
}

fn is_documentation(rel: &Path) -> bool {
    DOCUMENTATION_DIRS.iter().any(|d| rel.starts_with(d))
}

/// Copy a regular file's bytes (the kernel's `copy_file_range` where it
/// can) and give it mode 0755 or 0644: the executable rule `canonicalise`
/// applies, so hashing before canonicalisation gives the final hash.
fn copy_regular(package: &str, src: &Path, dest: &Path, executable: bool) -> Result<()> {
    let unreadable = |error| ToolchainError::Unreadable { package: package.to_owned(), path: src.to_owned(), error };
    let mut from = fs::File::open(src).map_err(unreadable)?;
    let mode = if executable { 0o755 } else { 0o644 };
    let mut to = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(dest)
        .map_err(|e| ToolchainError::io(dest, e))?;
    // A failure here is nearly always reading the host's file (the staging
    // tree is ours); name the file the user can do something about.
    io::copy(&mut from, &mut to).map_err(unreadable)?;
    // The umask may have cleared bits the executable rule looks at.
    to.set_permissions(fs::Permissions::from_mode(mode)).map_err(|e| ToolchainError::io(dest, e))
}

/// Resolve the directory `rel` (relative to `root`) as if `root` were `/`:
/// every symlink followed, absolute targets taken relative to `root`, `..`
/// never leaving it. Returns the symlink-free location relative to `root`,
/// or `None` if some component is missing or not a directory.
fn resolve_in_root(root: &Path, rel: &Path) -> Result<Option<PathBuf>> {
    // Linux's own limit on symlinks followed in one lookup.
    const MAX_LINKS: usize = 40;
    let mut resolved = PathBuf::new();
    let mut pending: VecDeque<OsString> = components(rel);
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&c);
        let host = root.join(&candidate);
        let meta = match fs::symlink_metadata(&host) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ToolchainError::io(&host, e)),
        };
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(ToolchainError::io(&host, io::Error::other("too many levels of symbolic links")));
            }
            let target = fs::read_link(&host).map_err(|e| ToolchainError::io(&host, e))?;
            if target.is_absolute() {
                resolved = PathBuf::new();
            }
            for t in components(&target).into_iter().rev() {
                pending.push_front(t);
            }
        } else if meta.is_dir() {
            resolved = candidate;
        } else {
            return Ok(None);
        }
    }
    Ok(Some(resolved))
}

/// The normal and `..` components of a path (`/` and `.` dropped).
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::path::StoreDir;
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;

    /// A fake host: a dpkg admin directory and a root file system, both in
    /// a temporary directory.
    struct FakeHost {
        _dir: tempfile::TempDir,
        admin: PathBuf,
        root: PathBuf,
    }

    impl FakeHost {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let admin = dir.path().join("dpkg");
            let root = dir.path().join("root");
            fs::create_dir_all(admin.join("info")).unwrap();
            fs::create_dir_all(&root).unwrap();
            Self { _dir: dir, admin, root }
        }

        fn packages(&self) -> DebianPackages {
            DebianPackages::new(&self.admin, &self.root)
        }

        fn status(&self, stanzas: &[String]) {
            fs::write(self.admin.join("status"), stanzas.concat()).unwrap();
        }

        fn list(&self, key: &str, paths: &[&str]) {
            let mut text = String::from("/.\n");
            for p in paths {
                text.push_str(p);
                text.push('\n');
            }
            fs::write(self.admin.join("info").join(format!("{key}.list")), text).unwrap();
        }

        fn file(&self, path: &str, contents: &str, mode: u32) {
            let p = self.root.join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, contents).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        }

        fn link(&self, path: &str, target: &str) {
            let p = self.root.join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            symlink(target, p).unwrap();
        }

        /// An alternatives group as update-alternatives keeps it: the
        /// database file `ADMIN/alternatives/NAME` (status `auto`, `link`,
        /// the slaves' names and links, then each alternative's path,
        /// priority and slave targets), the group's and the slaves' links
        /// on the host where nothing is there yet, and the host's
        /// selection (see [`FakeHost::select`]).
        fn alternatives(
            &self,
            name: &str,
            link: &str,
            slaves: &[(&str, &str)],
            alternatives: &[(&str, i64, &[&str])],
            selected: &str,
        ) {
            let mut text = format!("auto\n{link}\n");
            for (slave, slave_link) in slaves {
                text.push_str(&format!("{slave}\n{slave_link}\n"));
            }
            text.push('\n');
            for (path, priority, targets) in alternatives {
                assert_eq!(targets.len(), slaves.len(), "one target per slave");
                text.push_str(&format!("{path}\n{priority}\n"));
                for t in *targets {
                    text.push_str(&format!("{t}\n"));
                }
            }
            text.push('\n');
            let dir = self.admin.join("alternatives");
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(name), text).unwrap();
            for (n, l) in std::iter::once((name, link)).chain(slaves.iter().copied()) {
                let on_host = self.root.join(l.trim_start_matches('/'));
                if fs::symlink_metadata(&on_host).is_err() {
                    self.link(l.trim_start_matches('/'), &format!("/etc/alternatives/{n}"));
                }
            }
            self.select(name, selected);
        }

        /// Point the host's `/etc/alternatives/NAME` at `target`, as
        /// `update-alternatives --set` does.
        fn select(&self, name: &str, target: &str) {
            let at = self.root.join("etc/alternatives").join(name);
            let _ = fs::remove_file(&at);
            self.link(&format!("etc/alternatives/{name}"), target);
        }
    }

    /// Where `rel` leads inside the tree `root`, every symlink followed
    /// and absolute targets taken relative to `root`.
    fn resolve_in_tree(root: &Path, rel: &str) -> PathBuf {
        let mut path = PathBuf::from(rel);
        for _ in 0..40 {
            let parent = resolve_in_root(root, path.parent().unwrap()).unwrap().expect("directory in the tree");
            let here = parent.join(path.file_name().unwrap());
            match fs::read_link(root.join(&here)) {
                Ok(t) if t.is_absolute() => path = t.strip_prefix("/").unwrap().to_owned(),
                Ok(t) => path = parent.join(t),
                Err(_) => {
                    assert!(fs::symlink_metadata(root.join(&here)).is_ok(), "{} is not in the tree", here.display());
                    return here;
                }
            }
        }
        panic!("{rel}: too many symlinks");
    }

    /// An installed package's stanza, with the multi-line fields real
    /// status files have.
    fn installed(name: &str, arch: &str, version: &str, extra: &str) -> String {
        format!(
            "Package: {name}\nStatus: install ok installed\nPriority: optional\nArchitecture: {arch}\n\
             Version: {version}\n{extra}Conffiles:\n /etc/{name}.conf 0123\nDescription: {name}\n fake.\n\n"
        )
    }

    fn keys(packages: &[InstalledPackage]) -> Vec<String> {
        packages.iter().map(InstalledPackage::key).collect()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn resolution_host() -> FakeHost {
        let host = FakeHost::new();
        host.status(&[
            installed("dpkg", "amd64", "1.21.22", "Multi-Arch: foreign\n"),
            installed(
                "tool",
                "amd64",
                "1.0-1",
                "Depends: libfoo (>= 1.0), missing-pkg | alt-b (>= 2), awk, helper\nPre-Depends: libpre:any (>= 1)\n",
            ),
            installed("libfoo", "amd64", "1.0-1", "Multi-Arch: same\n"),
            installed("libfoo", "i386", "1.0-1", "Multi-Arch: same\n"),
            installed("alt-b", "all", "2.0", ""),
            // Removed, configuration files left: not installed.
            "Package: gawk\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 5\nProvides: awk\n\n"
                .into(),
            installed("mawk", "amd64", "1.3.4", "Provides: awk (= 1.3.4)\n"),
            installed("libpre", "i386", "1", "Multi-Arch: same\n"),
            installed("helper", "i386", "3", "Multi-Arch: foreign\n"),
            installed("needs-native-libpre", "amd64", "1", "Depends: libpre\n"),
            installed("unrelated", "amd64", "1", "Depends: libfoo\n"),
        ]);
        host
    }

    #[test]
    fn resolve_closes_over_depends_pre_depends_alternatives_and_provides() {
        let host = resolution_host();
        let pkgs = host.packages();
        assert_eq!(
            keys(&pkgs.resolve(&names(&["tool"])).unwrap()),
            [
                "alt-b:all",    // second alternative: the first is not installed
                "helper:i386",  // unqualified, but Multi-Arch: foreign
                "libfoo:amd64", // the depender's architecture, not i386
                "libpre:i386",  // Pre-Depends, `:any`
                "mawk:amd64",   // provides `awk`; gawk is only config files
                "tool:amd64",
            ]
        );
        assert_eq!(keys(&pkgs.resolve(&names(&["libfoo:i386"])).unwrap()), ["libfoo:i386"]);
        assert_eq!(keys(&pkgs.resolve(&names(&["libfoo"])).unwrap()), ["libfoo:amd64"]);
        assert_eq!(keys(&pkgs.resolve(&names(&["awk"])).unwrap()), ["mawk:amd64"]);
        // libpre is only installed for i386 and is not Multi-Arch: foreign,
        // so it does not satisfy an amd64 package's unqualified dependency.
        let err = pkgs.resolve(&names(&["needs-native-libpre"])).unwrap_err();
        assert!(
            matches!(&err, ToolchainError::UnsatisfiedDependency { package, dependency }
                if package == "needs-native-libpre:amd64" && dependency == "libpre"),
            "{err}"
        );
    }

    #[test]
    fn a_package_that_is_not_installed_is_named_with_how_to_install_it() {
        let host = resolution_host();
        let pkgs = host.packages();
        for missing in ["nope", "gawk", "libfoo:arm64"] {
            let err = pkgs.resolve(&names(&["tool", missing])).unwrap_err();
            assert!(matches!(&err, ToolchainError::NotInstalled { name } if name == missing), "{err}");
            assert!(err.to_string().contains(&format!("apt-get install {missing}")), "{err}");
        }
        for invalid in ["Tool", "a b", "tool:", "x"] {
            let err = pkgs.resolve(&names(&[invalid])).unwrap_err();
            assert!(matches!(err, ToolchainError::InvalidPackageName { .. }), "{invalid}: {err}");
        }
    }

    /// A merged-/usr host with a diversion, documentation, a file excluded
    /// from installation and files of packages that are not asked for.
    fn import_host(libfoo_version: &str) -> FakeHost {
        let host = FakeHost::new();
        host.status(&import_status(libfoo_version));
        for dir in ["bin", "lib", "lib64"] {
            host.link(dir, &format!("usr/{dir}"));
        }
        fs::create_dir_all(host.root.join("usr/lib64")).unwrap();
        host.list(
            "tool",
            &[
                "/bin",
                "/bin/tool",
                "/usr",
                "/usr/bin",
                "/usr/bin/cc",
                "/usr/share",
                "/usr/share/doc",
                "/usr/share/doc/tool",
                "/usr/share/doc/tool/copyright",
                "/usr/share/man/man1/tool.1.gz",
                "/usr/share/tool",
                "/usr/share/tool/data.txt",
                "/usr/share/tool/excluded.txt",
                "/opt/tool/only-via-link.txt",
                "/etc",
                "/etc/tool.conf",
            ],
        );
        host.file("usr/bin/tool", "#!/bin/sh\necho tool\n", 0o755);
        host.file("usr/bin/cc.real", "tool's cc", 0o750);
        host.file("usr/share/doc/tool/copyright", "GPL", 0o644);
        host.file("usr/share/man/man1/tool.1.gz", "man", 0o644);
        host.file("usr/share/tool/data.txt", "data", 0o600);
        host.file("usr/share/tool/only-via-link.txt", "via link", 0o644);
        // An absolute link: resolved inside the fake root, not on this machine.
        host.link("opt/tool", "/usr/share/tool");
        host.file("etc/tool.conf", "conf", 0o644);
        host.list(
            "libfoo:amd64",
            &[
                "/usr/lib",
                "/usr/lib/x86_64-linux-gnu",
                "/usr/lib/x86_64-linux-gnu/libfoo.so.1",
                "/lib/x86_64-linux-gnu/libfoo.so.1.0",
            ],
        );
        host.link("usr/lib/x86_64-linux-gnu/libfoo.so.1", "libfoo.so.1.0");
        host.file("usr/lib/x86_64-linux-gnu/libfoo.so.1.0", "ELF foo", 0o644);
        // The shell diverts /bin/sh itself: its own file stays in place.
        host.list("shell", &["/bin", "/bin/sh"]);
        host.link("usr/bin/sh", "tool");
        // The wrapper diverts tool's /usr/bin/cc to /usr/bin/cc.real.
        host.list("wrapper", &["/usr/bin/cc"]);
        host.file("usr/bin/cc", "wrapper's cc", 0o755);
        fs::write(
            host.admin.join("diversions"),
            "/usr/bin/cc\n/usr/bin/cc.real\nwrapper\n/bin/sh\n/bin/sh.distrib\nshell\n",
        )
        .unwrap();
        host.list("unrelated", &["/usr/bin/other"]);
        host.file("usr/bin/other", "other", 0o755);
        host.file("usr/bin/stray", "owned by nobody", 0o755);
        host.list("dpkg", &[]);
        host
    }

    fn import_status(libfoo_version: &str) -> Vec<String> {
        vec![
            installed("dpkg", "amd64", "1.21.22", ""),
            installed("tool", "amd64", "1.0-1", "Depends: libfoo, shell\n"),
            installed("libfoo", "amd64", libfoo_version, "Multi-Arch: same\n"),
            installed("shell", "all", "0.5", ""),
            installed("wrapper", "amd64", "1", ""),
            installed("unrelated", "amd64", "1", ""),
        ]
    }

    fn temp_store() -> (tempfile::TempDir, LocalStore) {
        let t = tempfile::tempdir().unwrap();
        let s = LocalStore::open(t.path(), StoreDir::default()).unwrap();
        (t, s)
    }

    /// Every entry under `dir`: `f` regular, `x` executable, `d`
    /// directory, `-> target` symlink.
    fn tree_listing(dir: &Path) -> BTreeMap<String, String> {
        fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let rel = path.strip_prefix(base).unwrap().to_str().unwrap().to_owned();
                let meta = fs::symlink_metadata(&path).unwrap();
                let kind = if meta.is_symlink() {
                    format!("-> {}", fs::read_link(&path).unwrap().display())
                } else if meta.is_dir() {
                    walk(base, &path, out);
                    "d".into()
                } else if meta.mode() & 0o111 != 0 {
                    "x".into()
                } else {
                    "f".into()
                };
                out.insert(rel, kind);
            }
        }
        let mut out = BTreeMap::new();
        walk(dir, dir, &mut out);
        out
    }

    #[test]
    fn the_imported_tree_holds_exactly_the_listed_files_at_their_real_locations() {
        let host = import_host("1.0-1");
        let (_t, mut store) = temp_store();
        let path = import_toolchain(&mut store, &host.packages(), &names(&["tool"])).unwrap();
        assert_eq!(path.name(), "toolchain-tool-3pkgs");
        let real = store.real_path(&path);
        let expected: BTreeMap<String, String> = [
            (".drv-toolchain.json", "f"),
            ("bin", "-> usr/bin"),
            ("lib", "-> usr/lib"),
            ("lib64", "-> usr/lib64"),
            ("etc", "d"),
            ("etc/tool.conf", "f"),
            ("usr", "d"),
            ("usr/bin", "d"),
            ("usr/bin/tool", "x"),
            ("usr/bin/cc.real", "x"),
            ("usr/bin/sh", "-> tool"),
            ("usr/lib", "d"),
            ("usr/lib/x86_64-linux-gnu", "d"),
            ("usr/lib/x86_64-linux-gnu/libfoo.so.1", "-> libfoo.so.1.0"),
            ("usr/lib/x86_64-linux-gnu/libfoo.so.1.0", "f"),
            ("usr/share", "d"),
            ("usr/share/tool", "d"),
            ("usr/share/tool/data.txt", "f"),
            ("usr/share/tool/only-via-link.txt", "f"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
        assert_eq!(tree_listing(&real), expected);
        assert_eq!(fs::read_to_string(real.join("usr/bin/cc.real")).unwrap(), "tool's cc");
        assert_eq!(fs::read_to_string(real.join("bin/tool")).unwrap(), "#!/bin/sh\necho tool\n");
        assert_eq!(fs::symlink_metadata(real.join("usr/share/tool/data.txt")).unwrap().mode() & 0o7777, 0o444);

        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(real.join(TOOLCHAIN_MANIFEST)).unwrap()).unwrap();
        assert_eq!(manifest["format"], TOOLCHAIN_FORMAT_VERSION);
        assert_eq!(manifest["requested"], serde_json::json!(["tool"]));
        let listed: Vec<String> = manifest["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                format!(
                    "{}:{}={}",
                    p["name"].as_str().unwrap(),
                    p["architecture"].as_str().unwrap(),
                    p["version"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(listed, ["libfoo:amd64=1.0-1", "shell:all=0.5", "tool:amd64=1.0-1"]);

        let info = store.require_path_info(&path).unwrap();
        assert_eq!(info.ca, Some(ContentAddress::Recursive(info.nar_hash)));
        assert!(info.references.is_empty());
        assert!(store.verify(true).unwrap().is_empty());
    }

    #[test]
    fn the_same_packages_give_the_same_path_and_a_second_import_reads_no_package_file() {
        let host = import_host("1.0-1");
        let (_t, mut store) = temp_store();
        let first = import_toolchain(&mut store, &host.packages(), &names(&["shell", "tool"])).unwrap();
        // Another machine (a fresh store) with the same package versions,
        // the names in another order and repeated.
        let (_t2, mut other_store) = temp_store();
        let elsewhere =
            import_toolchain(&mut other_store, &host.packages(), &names(&["tool", "shell", "tool"])).unwrap();
        assert_eq!(elsewhere, first);

        // A cache entry naming a path that is not valid is only a miss.
        let cache_dir = store.state_dir().join("toolchains");
        let entries: Vec<PathBuf> = fs::read_dir(&cache_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with("quick-"))
            .collect();
        assert_eq!(entries.len(), 1);
        // the quick entries too
        for e in fs::read_dir(&cache_dir).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().unwrap().to_string_lossy().starts_with("quick-") {
                fs::write(&p, "00000000000000000000000000000000-gone\n").unwrap();
            }
        }
        fs::write(&entries[0], "00000000000000000000000000000000-gone\n").unwrap();
        assert_eq!(import_toolchain(&mut store, &host.packages(), &names(&["tool", "shell"])).unwrap(), first);
        assert_eq!(fs::read_to_string(&entries[0]).unwrap(), format!("{first}\n"));

        // Without file lists or files, only a cache hit can succeed.
        fs::remove_dir_all(host.admin.join("info")).unwrap();
        fs::remove_dir_all(host.root.join("usr")).unwrap();
        assert_eq!(import_toolchain(&mut store, &host.packages(), &names(&["tool", "shell"])).unwrap(), first);
        assert_eq!(store.all_valid_paths().unwrap(), vec![first.clone()]);
        let leftovers: Vec<_> = fs::read_dir(store.real_store_dir()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from(first.to_basename())]);
    }

    #[test]
    fn another_version_of_one_package_gives_another_path() {
        let host = import_host("1.0-1");
        let (_t, mut store) = temp_store();
        let old = import_toolchain(&mut store, &host.packages(), &names(&["tool"])).unwrap();
        // Same files, new version: the manifest and the key both change.
        host.status(&import_status("1.0-2"));
        let new = import_toolchain(&mut store, &host.packages(), &names(&["tool"])).unwrap();
        assert_ne!(new, old);
        let manifest = fs::read_to_string(store.real_path(&new).join(TOOLCHAIN_MANIFEST)).unwrap();
        assert!(manifest.contains("\"1.0-2\""), "{manifest}");
        let full_keys = fs::read_dir(store.state_dir().join("toolchains"))
            .unwrap()
            .filter(|e| !e.as_ref().unwrap().file_name().to_string_lossy().starts_with("quick-"))
            .count();
        assert_eq!(full_keys, 2);
    }

    #[test]
    fn a_file_a_store_path_cannot_hold_is_refused_with_its_name() {
        let host = FakeHost::new();
        host.status(&[installed("daemon", "amd64", "1", "")]);
        host.list("daemon", &["/run", "/run/daemon.sock", "/usr/bin/daemon"]);
        host.file("usr/bin/daemon", "d", 0o755);
        fs::create_dir_all(host.root.join("run")).unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(host.root.join("run/daemon.sock")).unwrap();
        let (_t, mut store) = temp_store();
        let err = import_toolchain(&mut store, &host.packages(), &names(&["daemon"])).unwrap_err();
        assert!(
            matches!(&err, ToolchainError::UnsupportedFileType { package, path }
                if package == "daemon" && path.ends_with("run/daemon.sock")),
            "{err}"
        );
        // Nothing registered, no staging left behind.
        assert!(store.all_valid_paths().unwrap().is_empty());
        assert_eq!(fs::read_dir(store.real_store_dir()).unwrap().count(), 0);
    }

    #[test]
    fn an_unreadable_file_is_named() {
        if rustix::process::geteuid().is_root() {
            // root reads files whatever their mode: nothing to observe.
            return;
        }
        let host = FakeHost::new();
        host.status(&[installed("secret", "amd64", "1", "")]);
        host.list("secret", &["/etc/secret"]);
        host.file("etc/secret", "s", 0o000);
        let (_t, mut store) = temp_store();
        let err = import_toolchain(&mut store, &host.packages(), &names(&["secret"])).unwrap_err();
        assert!(
            matches!(&err, ToolchainError::Unreadable { package, path, .. }
                if package == "secret" && path.ends_with("etc/secret")),
            "{err}"
        );
    }

    /// The real dpkg database of this machine: `dash` and its dependencies
    /// (a few dozen packages, well under a second).
    #[test]
    fn imports_dash_from_the_host_dpkg_database() {
        let pkgs = DebianPackages::host();
        if !pkgs.admin_dir().join("status").exists() {
            eprintln!("no dpkg database on this host; skipped");
            return;
        }
        let (_t, mut store) = temp_store();
        let started = std::time::Instant::now();
        let path = import_toolchain(&mut store, &pkgs, &names(&["dash"])).unwrap();
        eprintln!("imported {path} in {:?}", started.elapsed());
        let real = store.real_path(&path);
        let dash = fs::metadata(real.join("usr/bin/dash")).unwrap();
        assert!(dash.is_file() && dash.mode() & 0o111 != 0);
        // Through the merged-/usr link and dash's `sh -> dash`, as on the host.
        if fs::read_link("/bin").is_ok() {
            assert!(fs::symlink_metadata(real.join("bin")).unwrap().is_symlink());
        }
        assert!(fs::metadata(real.join("bin/sh")).unwrap().is_file());
        assert!(!real.join("usr/share/doc").exists());
        let resolved = pkgs.resolve(&names(&["dash"])).unwrap();
        assert!(resolved.iter().any(|p| p.name == "libc6"), "{resolved:?}");
        assert_eq!(import_toolchain(&mut store, &pkgs, &names(&["dash"])).unwrap(), path);
    }

    const AWK_DATABASE: &str = "auto\n/usr/bin/awk\nawk.1.gz\n/usr/share/man/man1/awk.1.gz\nnawk\n/usr/bin/nawk\n\n\
        /usr/bin/gawk\n10\n/usr/share/man/man1/gawk.1.gz\n/usr/bin/gawk\n\
        /usr/bin/mawk\n5\n\n/usr/bin/mawk\n\n";

    #[test]
    fn parses_update_alternatives_database_files() {
        let file = Path::new("/var/lib/dpkg/alternatives/awk");
        let group = AlternativeGroup::parse(AWK_DATABASE, file).unwrap();
        assert_eq!(
            group,
            AlternativeGroup {
                link: "/usr/bin/awk".into(),
                slaves: vec![
                    ("awk.1.gz".into(), "/usr/share/man/man1/awk.1.gz".into()),
                    ("nawk".into(), "/usr/bin/nawk".into())
                ],
                alternatives: vec![
                    Alternative {
                        path: "/usr/bin/gawk".into(),
                        priority: 10,
                        slave_targets: vec!["/usr/share/man/man1/gawk.1.gz".into(), "/usr/bin/gawk".into()],
                    },
                    // An empty target: mawk has no man page slave here.
                    Alternative {
                        path: "/usr/bin/mawk".into(),
                        priority: 5,
                        slave_targets: vec!["".into(), "/usr/bin/mawk".into()],
                    },
                ],
            }
        );
        // Without the closing empty line, and with no slaves at all.
        let cc = AlternativeGroup::parse("manual\n/usr/bin/cc\n\n/usr/bin/gcc\n20", file).unwrap();
        assert_eq!(cc.alternatives, [Alternative { path: "/usr/bin/gcc".into(), priority: 20, slave_targets: vec![] }]);

        let pick = |selection: Option<&str>, tree: &[&str]| {
            group
                .choose(selection, |p| Ok(tree.contains(&p)))
                .unwrap()
                .map(|(a, how)| (a.path.clone(), how))
        };
        use AlternativeSelection::*;
        assert_eq!(
            pick(Some("/usr/bin/mawk"), &["/usr/bin/gawk", "/usr/bin/mawk"]),
            Some(("/usr/bin/mawk".into(), Host))
        );
        assert_eq!(
            pick(Some("/usr/bin/gawk"), &["/usr/bin/mawk"]),
            Some(("/usr/bin/mawk".into(), HighestPriorityInTree))
        );
        assert_eq!(
            pick(None, &["/usr/bin/mawk", "/usr/bin/gawk"]),
            Some(("/usr/bin/gawk".into(), HighestPriorityInTree))
        );
        assert_eq!(pick(Some("/usr/bin/gawk"), &[]), None);

        for (bad, reason) in [
            ("", "ends before the status"),
            ("sometimes\n/usr/bin/awk\n\n", "neither auto nor manual"),
            ("auto\nusr/bin/awk\n\n", "not an absolute path"),
            ("auto\n/usr/bin/awk\n../x\n/usr/bin/x\n\n", "not a file name"),
            ("auto\n/usr/bin/awk\n\n/usr/bin/mawk\nhigh\n\n", "not a number"),
            ("auto\n/usr/bin/awk\nnawk\n/usr/bin/nawk\n\n/usr/bin/mawk\n5\n", "ends before a slave's target"),
        ] {
            let err = AlternativeGroup::parse(bad, file).unwrap_err();
            assert!(
                matches!(&err, ToolchainError::Database { path, .. } if path == file)
                    && err.to_string().contains(reason),
                "{bad:?}: {err}"
            );
        }
    }

    /// A merged-/usr host with awk, pager and cc alternatives, a group and
    /// a slave whose links are documentation, and a group whose link a
    /// package ships as a file.
    fn alternatives_host() -> FakeHost {
        let host = FakeHost::new();
        host.status(&[
            installed("dpkg", "amd64", "1.21.22", ""),
            installed("mawk", "amd64", "1.3.4", ""),
            installed("gawk", "amd64", "5.2.1", ""),
            installed("original-awk", "amd64", "2012", ""),
            installed("more", "amd64", "2.38", ""),
            installed("gcc", "amd64", "12", ""),
            installed("tool", "amd64", "1", ""),
        ]);
        for dir in ["bin", "lib"] {
            host.link(dir, &format!("usr/{dir}"));
        }
        host.list("dpkg", &["/etc", "/etc/alternatives"]);
        host.list(
            "mawk",
            &[
                "/usr",
                "/usr/bin",
                "/usr/bin/mawk",
                "/usr/share",
                "/usr/share/man/man1/mawk.1.gz",
                "/usr/share/mawk",
                "/usr/share/mawk/awk.1",
            ],
        );
        host.file("usr/bin/mawk", "mawk", 0o755);
        host.file("usr/share/man/man1/mawk.1.gz", "man", 0o644);
        host.file("usr/share/mawk/awk.1", ".TH AWK", 0o644);
        for awk in ["gawk", "original-awk"] {
            host.list(awk, &["/usr/bin", &format!("/usr/bin/{awk}")]);
            host.file(&format!("usr/bin/{awk}"), awk, 0o755);
        }
        host.list("more", &["/bin", "/bin/more"]);
        host.file("usr/bin/more", "more", 0o755);
        host.list("gcc", &["/usr/bin/gcc"]);
        host.file("usr/bin/gcc", "gcc", 0o755);
        host.list("tool", &["/usr/bin/tool", "/usr/bin/tool-cmd"]);
        host.file("usr/bin/tool", "tool", 0o755);
        host.file("usr/bin/tool-cmd", "tool's own tool-cmd", 0o755);

        host.alternatives(
            "awk",
            "/usr/bin/awk",
            &[
                ("awk.1.gz", "/usr/share/man/man1/awk.1.gz"),
                ("nawk", "/usr/bin/nawk"),
                // A documentation link whose target is outside the
                // documentation directories, hence in the tree.
                ("awk.1", "/usr/share/man/man1/awk.1"),
                ("igawk", "/usr/bin/igawk"),
            ],
            &[
                ("/usr/bin/gawk", 10, &["/usr/share/man/man1/gawk.1.gz", "/usr/bin/gawk", "", "/usr/bin/igawk.gawk"]),
                ("/usr/bin/mawk", 5, &["/usr/share/man/man1/mawk.1.gz", "/usr/bin/mawk", "/usr/share/mawk/awk.1", ""]),
                ("/usr/bin/original-awk", 7, &["", "/usr/bin/original-awk", "", ""]),
            ],
            // A manual choice against the priorities.
            "/usr/bin/mawk",
        );
        // As on Debian: the alternative is listed under /bin, and a slave
        // link is too; both are really in usr/bin.
        host.alternatives(
            "pager",
            "/usr/bin/pager",
            &[("pg", "/bin/pg")],
            &[("/bin/more", 50, &["/bin/more"]), ("/usr/bin/less", 77, &["/usr/bin/less"])],
            "/bin/more",
        );
        host.alternatives("cc", "/usr/bin/cc", &[], &[("/usr/bin/gcc", 20, &[])], "/usr/bin/gcc");
        host.alternatives(
            "builtins.7.gz",
            "/usr/share/man/man7/builtins.7.gz",
            &[],
            &[("/usr/share/mawk/awk.1", 10, &[])],
            "/usr/share/mawk/awk.1",
        );
        host.alternatives("tool-cmd", "/usr/bin/tool-cmd", &[], &[("/usr/bin/tool", 10, &[])], "/usr/bin/tool");
        host
    }

    /// The manifest's `alternatives`: `name -> path (selection) [slaves]`.
    fn manifest_alternatives(tree: &Path) -> Vec<String> {
        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(tree.join(TOOLCHAIN_MANIFEST)).unwrap()).unwrap();
        manifest["alternatives"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let slaves: Vec<String> = a["slaves"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| {
                        let field = |f: &str| s[f].as_str().unwrap().to_owned();
                        format!("{} {} -> {}", field("name"), field("link"), field("path"))
                    })
                    .collect();
                format!(
                    "{} {} -> {} ({}) {slaves:?}",
                    a["name"].as_str().unwrap(),
                    a["link"].as_str().unwrap(),
                    a["path"].as_str().unwrap(),
                    a["selection"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn the_host_selection_gets_its_link_and_slave_links_at_their_real_locations() {
        let host = alternatives_host();
        let (_t, mut store) = temp_store();
        let path = import_toolchain(&mut store, &host.packages(), &names(&["gawk", "mawk", "more"])).unwrap();
        let real = store.real_path(&path);
        let expected: BTreeMap<String, String> = [
            (".drv-toolchain.json", "f"),
            ("bin", "-> usr/bin"),
            ("lib", "-> usr/lib"),
            ("etc", "d"),
            ("etc/alternatives", "d"),
            // The host's choice (mawk), not gawk's higher priority.
            ("etc/alternatives/awk", "-> /usr/bin/mawk"),
            ("etc/alternatives/nawk", "-> /usr/bin/mawk"),
            ("etc/alternatives/pager", "-> /bin/more"),
            ("etc/alternatives/pg", "-> /bin/more"),
            ("usr", "d"),
            ("usr/bin", "d"),
            ("usr/bin/awk", "-> /etc/alternatives/awk"),
            ("usr/bin/nawk", "-> /etc/alternatives/nawk"),
            ("usr/bin/pager", "-> /etc/alternatives/pager"),
            ("usr/bin/pg", "-> /etc/alternatives/pg"),
            ("usr/bin/gawk", "x"),
            ("usr/bin/mawk", "x"),
            ("usr/bin/more", "x"),
            ("usr/share", "d"),
            ("usr/share/mawk", "d"),
            ("usr/share/mawk/awk.1", "f"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
        assert_eq!(tree_listing(&real), expected);
        assert_eq!(resolve_in_tree(&real, "bin/awk"), Path::new("usr/bin/mawk"));
        assert_eq!(resolve_in_tree(&real, "bin/pg"), Path::new("usr/bin/more"));
        assert_eq!(
            manifest_alternatives(&real),
            [
                r#"awk /usr/bin/awk -> /usr/bin/mawk (host) ["nawk /usr/bin/nawk -> /usr/bin/mawk"]"#,
                r#"pager /usr/bin/pager -> /bin/more (host) ["pg /bin/pg -> /bin/more"]"#,
            ]
        );
        assert!(store.verify(true).unwrap().is_empty());
    }

    #[test]
    fn a_group_none_of_whose_alternatives_is_in_the_tree_is_left_out() {
        let host = alternatives_host();
        let (_t, mut store) = temp_store();
        let path = import_toolchain(&mut store, &host.packages(), &names(&["more"])).unwrap();
        let real = store.real_path(&path);
        let links: Vec<String> = tree_listing(&real)
            .into_iter()
            .filter(|(_, kind)| kind.starts_with("-> /"))
            .map(|(p, kind)| format!("{p} {kind}"))
            .collect();
        assert_eq!(
            links,
            [
                "etc/alternatives/pager -> /bin/more",
                "etc/alternatives/pg -> /bin/more",
                "usr/bin/pager -> /etc/alternatives/pager",
                "usr/bin/pg -> /etc/alternatives/pg",
            ]
        );
        assert_eq!(manifest_alternatives(&real).len(), 1);
    }

    #[test]
    fn without_the_host_selection_the_highest_priority_alternative_in_the_tree_is_chosen() {
        let host = alternatives_host();
        host.select("awk", "/usr/bin/gawk");
        let (_t, mut store) = temp_store();
        let awk = |store: &mut LocalStore, requested: &[&str]| {
            let path = import_toolchain(store, &host.packages(), &names(requested)).unwrap();
            let real = store.real_path(&path);
            let nawk = fs::read_link(real.join("etc/alternatives/nawk")).ok();
            assert_eq!(Some(fs::read_link(real.join("etc/alternatives/awk")).unwrap()), nawk);
            (resolve_in_tree(&real, "usr/bin/awk"), manifest_alternatives(&real).remove(0))
        };
        // original-awk (7) over mawk (5); gawk, the host's choice, is absent.
        let (resolved, recorded) = awk(&mut store, &["mawk", "original-awk"]);
        assert_eq!(resolved, Path::new("usr/bin/original-awk"));
        assert!(recorded.contains("-> /usr/bin/original-awk (highest-priority-in-tree)"), "{recorded}");
        let (resolved, _) = awk(&mut store, &["mawk"]);
        assert_eq!(resolved, Path::new("usr/bin/mawk"));
        // The host's choice when the tree has it, without the slave whose
        // target (igawk.gawk) the tree lacks.
        let (resolved, recorded) = awk(&mut store, &["mawk", "gawk"]);
        assert_eq!(resolved, Path::new("usr/bin/gawk"));
        assert_eq!(recorded, r#"awk /usr/bin/awk -> /usr/bin/gawk (host) ["nawk /usr/bin/nawk -> /usr/bin/gawk"]"#);
    }

    #[test]
    fn links_under_documentation_dirs_and_over_a_packaged_file_are_not_made() {
        let host = alternatives_host();
        let (_t, mut store) = temp_store();
        let path = import_toolchain(&mut store, &host.packages(), &names(&["mawk", "tool"])).unwrap();
        let real = store.real_path(&path);
        let listing = tree_listing(&real);
        // awk.1's target is in the tree, its link is documentation; so is
        // builtins.7.gz's own link.
        assert_eq!(listing.get("usr/share/mawk/awk.1").map(String::as_str), Some("f"));
        assert!(!real.join("usr/share/man").exists());
        for absent in ["etc/alternatives/awk.1", "etc/alternatives/awk.1.gz", "etc/alternatives/builtins.7.gz"] {
            assert!(!listing.contains_key(absent), "{absent}: {listing:?}");
        }
        // tool ships /usr/bin/tool-cmd itself: its file stays, no selection.
        assert_eq!(listing.get("usr/bin/tool-cmd").map(String::as_str), Some("x"));
        assert_eq!(fs::read_to_string(real.join("usr/bin/tool-cmd")).unwrap(), "tool's own tool-cmd");
        assert!(!listing.contains_key("etc/alternatives/tool-cmd"), "{listing:?}");
        let recorded = manifest_alternatives(&real);
        assert_eq!(recorded, [r#"awk /usr/bin/awk -> /usr/bin/mawk (host) ["nawk /usr/bin/nawk -> /usr/bin/mawk"]"#]);
    }

    #[test]
    fn another_selection_gives_other_cache_keys_and_another_path() {
        let host = alternatives_host();
        let pkgs = host.packages();
        let requested = names(&["gawk", "mawk"]);
        let keys = || {
            let digest = pkgs.alternatives().unwrap().digest();
            let packages = pkgs.resolve(&requested).unwrap();
            let usrmerge = pkgs.usrmerge_links();
            (
                quick_key(&pkgs, &requested, &usrmerge, &digest).unwrap(),
                cache_key(&requested, &packages, "", &usrmerge, &digest),
            )
        };
        let (_t, mut store) = temp_store();
        let (quick_mawk, full_mawk) = keys();
        let mawk = import_toolchain(&mut store, &pkgs, &requested).unwrap();

        host.select("awk", "/usr/bin/gawk");
        let (quick_gawk, full_gawk) = keys();
        assert_ne!(quick_gawk, quick_mawk);
        assert_ne!(full_gawk, full_mawk);
        let gawk = import_toolchain(&mut store, &pkgs, &requested).unwrap();
        assert_ne!(gawk, mawk);
        assert_eq!(resolve_in_tree(&store.real_path(&gawk), "usr/bin/awk"), Path::new("usr/bin/gawk"));

        // A changed database file (a new priority) is another key too.
        let db = host.admin.join("alternatives/cc");
        fs::write(&db, fs::read_to_string(&db).unwrap().replace("\n20\n", "\n30\n")).unwrap();
        assert_ne!(keys().0, quick_gawk);
        assert_ne!(keys().1, full_gawk);

        // Back to the first state: the first answer, from the cache.
        fs::write(&db, fs::read_to_string(&db).unwrap().replace("\n30\n", "\n20\n")).unwrap();
        host.select("awk", "/usr/bin/mawk");
        assert_eq!(keys(), (quick_mawk, full_mawk));
        assert_eq!(import_toolchain(&mut store, &pkgs, &requested).unwrap(), mawk);
    }

    /// The real alternatives of this machine: `mawk` gives `awk`, and
    /// `gcc` (when installed) gives `cc`.
    #[test]
    fn imports_alternatives_links_from_the_host() {
        let pkgs = DebianPackages::host();
        if !pkgs.admin_dir().join("alternatives/awk").exists() {
            eprintln!("no awk alternatives on this host; skipped");
            return;
        }
        let (_t, mut store) = temp_store();
        match import_toolchain(&mut store, &pkgs, &names(&["mawk"])) {
            Ok(path) => {
                let real = store.real_path(&path);
                assert_eq!(resolve_in_tree(&real, "usr/bin/awk"), Path::new("usr/bin/mawk"));
                assert!(fs::read_link(real.join("usr/bin/awk")).unwrap().starts_with("/etc/alternatives"));
            }
            Err(ToolchainError::NotInstalled { .. }) => eprintln!("mawk is not installed; skipped"),
            Err(e) => panic!("{e}"),
        }
        if !pkgs.admin_dir().join("alternatives/cc").exists() {
            eprintln!("no cc alternatives on this host (apt-get install gcc); skipped");
            return;
        }
        match import_toolchain(&mut store, &pkgs, &names(&["gcc"])) {
            Ok(path) => {
                let real = store.real_path(&path);
                let gcc = resolve_in_tree(&real, "usr/bin/gcc");
                assert_eq!(resolve_in_tree(&real, "usr/bin/cc"), gcc);
                assert!(fs::metadata(real.join(&gcc)).unwrap().mode() & 0o111 != 0);
            }
            Err(ToolchainError::NotInstalled { .. }) => eprintln!("gcc is not installed; skipped"),
            Err(e) => panic!("{e}"),
        }
    }
}
