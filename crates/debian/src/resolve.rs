//! Closing requested package names over `Depends` and `Pre-Depends`
//! against one suite's `Packages` indices (Debian Policy §7), for one
//! architecture.
//!
//! Every choice is a function of the index's contents, the architecture
//! and the set of requested names, never of the order in which stanzas
//! were read or packages visited, so the same indices always give the same
//! lock:
//!
//! - **Candidate of a name**: the real packages of that name whose
//!   `Architecture` is the target or `all`; the highest version
//!   (dpkg's ordering, [`debversion`]); on a tie the repository added
//!   first; then (duplicates only) the target architecture before `all`,
//!   then the smaller `Filename` and `SHA256`. One name, one package: the
//!   closure never holds two versions of a name.
//! - **Virtual names** (Policy §7.5): only when no real package has the
//!   name. The providers are the candidates of the names that list it in
//!   `Provides`; a versioned relation is satisfied only by a versioned
//!   `Provides: name (= v)`. Of the providers that satisfy the relation,
//!   a requested one, else the one of the highest `Priority` (Policy
//!   §2.5: `required` before `important`, `standard`, `optional`,
//!   `extra`; what a Debian base system already has, as apt would keep
//!   it: `awk` is `mawk`), then the smallest name: a lock must not depend
//!   on which provider happened to be seen first.
//! - **Alternatives** `a | b`: the first alternative that is satisfiable
//!   and is requested (its own name, or the name of the package it
//!   resolves to, is among the requested names); otherwise the first
//!   satisfiable alternative, as apt does. Satisfiable means here: the
//!   relation itself holds for the chosen candidate; its own dependencies
//!   are not looked at (neither does apt's first choice).
//! - **Versions** are checked against the chosen candidate only: an older
//!   version that would satisfy `(<< 2)` is not picked instead.
//! - **Multi-Arch** (Debian wiki "Multiarch/Implementation"): with one
//!   architecture every candidate is of the target architecture or `all`,
//!   so a plain (or `:native`, or `:<target>`) relation is satisfied by any
//!   candidate; `:any` only by `Multi-Arch: allowed` or `foreign`; a
//!   qualifier naming another architecture never. A `Multi-Arch: same`
//!   package of architecture `all` is refused.
//! - `Essential: yes` packages are not added implicitly: a toolchain lists
//!   what it runs.
//! - `Recommends`, `Suggests`, `Conflicts`, `Breaks` and the rest are
//!   ignored; cycles (through `Pre-Depends` too) are fine.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use debversion::Version;

use crate::control::{self, ControlError};
use crate::lock::LockedPackage;
use crate::relation::{self, Alternatives, ArchQualifier, Relation, VersionOp};

/// What can stop building an index or a resolution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A requested name (`needed_by: None`) or a dependency names a
    /// package that neither exists nor is provided.
    #[error("package {name:?} is not in the index{}", needed_by.as_deref().map(|n| format!(" (needed by {n})")).unwrap_or_default())]
    Missing { name: String, needed_by: Option<String> },
    /// The packages exist but do not satisfy the relation.
    #[error("{relation:?}{} cannot be satisfied: {reason}", needed_by.as_deref().map(|n| format!(" (needed by {n})")).unwrap_or_default())]
    Unsatisfiable { relation: String, needed_by: Option<String>, reason: String },
    /// A stanza lacks a field the lock needs, or has a value that cannot be
    /// right.
    #[error("{repository}: package {package}: field {field}: {reason}")]
    Malformed { repository: String, package: String, field: &'static str, reason: String },
    /// The index is not deb822.
    #[error("{repository}: {source}")]
    Control { repository: String, source: ControlError },
}

pub type Result<T, E = ResolveError> = std::result::Result<T, E>;

/// `Multi-Arch:` (Debian wiki "Multiarch/Implementation").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MultiArch {
    /// Absent or `no`.
    #[default]
    No,
    Same,
    Foreign,
    Allowed,
}

impl MultiArch {
    fn as_str(self) -> &'static str {
        match self {
            MultiArch::No => "no",
            MultiArch::Same => "same",
            MultiArch::Foreign => "foreign",
            MultiArch::Allowed => "allowed",
        }
    }
}

/// One package stanza of a `Packages` index: the fields resolution and the
/// lock need, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexPackage {
    pub name: String,
    pub version: Version,
    pub architecture: String,
    pub multi_arch: MultiArch,
    /// `Essential: yes`.
    pub essential: bool,
    /// `Priority:` as a rank, 0 = `required` … 4 = `extra`, 5 = absent.
    pub priority: u8,
    /// `Pre-Depends:` as written; parsed only when the package is part of
    /// a resolution (most of an index never is).
    pub pre_depends: String,
    /// `Depends:` as written; see `pre_depends`.
    pub depends: String,
    /// `Provides:`: names with an optional `= version` (Policy §7.5).
    pub provides: Vec<Relation>,
    /// `Filename:`: a relative pool path without `..`.
    pub filename: String,
    pub size: u64,
    /// 64 lowercase hexadecimal digits.
    pub sha256: String,
    /// The repository (suite) whose index listed it (shared by all the
    /// packages of one index).
    pub repository: Arc<str>,
}

impl IndexPackage {
    /// `Pre-Depends` then `Depends`, parsed.
    pub fn relations(&self) -> Result<Vec<Alternatives>> {
        let parse = |field: &'static str, text: &str| {
            relation::parse_relations(text).map_err(|e| ResolveError::Malformed {
                repository: self.repository.to_string(),
                package: self.name.clone(),
                field,
                reason: e.to_string(),
            })
        };
        let mut all = parse("Pre-Depends", &self.pre_depends)?;
        all.extend(parse("Depends", &self.depends)?);
        Ok(all)
    }
}

/// The packages of one or more `Packages` indices, each from a repository
/// (suite); repositories are preferred in the order first added.
#[derive(Clone, Debug, Default)]
pub struct Index {
    packages: Vec<IndexPackage>,
    repositories: Vec<String>,
    by_name: HashMap<String, Vec<usize>>,
    /// Virtual name → packages whose `Provides` lists it.
    provided_by: HashMap<String, Vec<usize>>,
}

impl Index {
    pub fn new() -> Index {
        Index::default()
    }

    /// Add the stanzas of one `Packages` text from `repository` (the suite:
    /// `bookworm`, `bookworm-updates`, `bookworm-security`). Call in order
    /// of preference: on equal versions the earlier repository wins.
    ///
    /// Errors: malformed deb822 ([`ResolveError::Control`]); a stanza
    /// without `Package`, `Version`, `Architecture`, `Filename`, `Size` or
    /// `SHA256`, or with an invalid one of those, `Multi-Arch`, `Essential`
    /// or `Provides` ([`ResolveError::Malformed`]). On error the index may
    /// hold part of the text.
    pub fn add_packages(&mut self, text: &str, repository: &str) -> Result<()> {
        if !self.repositories.iter().any(|r| r == repository) {
            self.repositories.push(repository.to_owned());
        }
        let repository: Arc<str> = Arc::from(repository);
        let mut paragraphs = control::paragraphs(text);
        let mut fields = Vec::new();
        while let Some(line) = paragraphs.next_into(&mut fields) {
            let line = line.map_err(|source| ResolveError::Control { repository: repository.to_string(), source })?;
            let package = parse_stanza(line, &fields, &repository)?;
            let id = self.packages.len();
            for p in &package.provides {
                self.provided_by.entry(p.name.clone()).or_default().push(id);
            }
            self.by_name.entry(package.name.clone()).or_default().push(id);
            self.packages.push(package);
        }
        Ok(())
    }

    /// Every package read, in input order.
    pub fn packages(&self) -> &[IndexPackage] {
        &self.packages
    }

    /// Repositories in order of preference.
    pub fn repositories(&self) -> &[String] {
        &self.repositories
    }

    fn rank(&self, repository: &str) -> usize {
        self.repositories.iter().position(|r| r == repository).unwrap_or(usize::MAX)
    }

    /// The candidate for `name` on `architecture` (see the module's
    /// documentation), if any real package has that name.
    pub fn candidate(&self, name: &str, architecture: &str) -> Option<&IndexPackage> {
        self.candidate_id(name, architecture).and_then(|id| self.packages.get(id))
    }

    fn candidate_id(&self, name: &str, architecture: &str) -> Option<usize> {
        let ids = self.by_name.get(name)?;
        ids.iter()
            .copied()
            .filter_map(|id| Some((id, self.packages.get(id)?)))
            .filter(|(_, p)| p.architecture == architecture || p.architecture == "all")
            .max_by(|(_, a), (_, b)| {
                a.version
                    .cmp(&b.version)
                    .then_with(|| self.rank(&b.repository).cmp(&self.rank(&a.repository)))
                    .then_with(|| (a.architecture == architecture).cmp(&(b.architecture == architecture)))
                    .then_with(|| b.filename.cmp(&a.filename))
                    .then_with(|| b.sha256.cmp(&a.sha256))
            })
            .map(|(id, _)| id)
    }
}

/// Fields of a `Packages` stanza that the index keeps.
#[derive(Default)]
struct Wanted<'a> {
    package: Option<&'a str>,
    version: Option<&'a str>,
    architecture: Option<&'a str>,
    multi_arch: Option<&'a str>,
    essential: Option<&'a str>,
    priority: Option<&'a str>,
    depends: Option<&'a str>,
    pre_depends: Option<&'a str>,
    provides: Option<&'a str>,
    filename: Option<&'a str>,
    size: Option<&'a str>,
    sha256: Option<&'a str>,
}

fn parse_stanza<'p>(line: usize, fields: &[control::Field<'p>], repository: &Arc<str>) -> Result<IndexPackage> {
    // One pass over the fields rather than a lookup per wanted field:
    // this runs for each of an index's ~60,000 stanzas.
    let mut w = Wanted::default();
    for f in fields {
        let slot = match f.name.len() {
            4 if f.is("Size") => &mut w.size,
            6 if f.is("SHA256") => &mut w.sha256,
            7 if f.is("Package") => &mut w.package,
            7 if f.is("Version") => &mut w.version,
            7 if f.is("Depends") => &mut w.depends,
            8 if f.is("Filename") => &mut w.filename,
            8 if f.is("Provides") => &mut w.provides,
            8 if f.is("Priority") => &mut w.priority,
            9 if f.is("Essential") => &mut w.essential,
            10 if f.is("Multi-Arch") => &mut w.multi_arch,
            11 if f.is("Pre-Depends") => &mut w.pre_depends,
            12 if f.is("Architecture") => &mut w.architecture,
            _ => continue,
        };
        *slot = Some(f.value);
    }
    let name = w.package.unwrap_or_default();
    let malformed = |field, reason: &str| ResolveError::Malformed {
        repository: repository.to_string(),
        package: if name.is_empty() { format!("(stanza at line {line})") } else { name.to_owned() },
        field,
        reason: reason.to_owned(),
    };
    let required = |field, value: Option<&'p str>| value.filter(|v| !v.is_empty()).ok_or_else(|| malformed(field, "missing"));
    let name = required("Package", w.package)?;
    if !relation::valid_package_name(name) {
        return Err(malformed("Package", "not a valid package name"));
    }
    let version = required("Version", w.version)?.parse::<Version>().map_err(|e| malformed("Version", &e.to_string()))?;
    let architecture = required("Architecture", w.architecture)?;
    if !relation::valid_word(architecture) {
        return Err(malformed("Architecture", "not an architecture name"));
    }
    let multi_arch = match w.multi_arch.unwrap_or("no") {
        "no" => MultiArch::No,
        "same" => MultiArch::Same,
        "foreign" => MultiArch::Foreign,
        "allowed" => MultiArch::Allowed,
        _ => return Err(malformed("Multi-Arch", "not one of no, same, foreign, allowed")),
    };
    let essential = match w.essential.unwrap_or("no") {
        "yes" => true,
        "no" => false,
        _ => return Err(malformed("Essential", "not yes or no")),
    };
    // Unknown or absent priorities rank last.
    let priority = match w.priority.unwrap_or_default() {
        "required" => 0,
        "important" => 1,
        "standard" => 2,
        "optional" => 3,
        "extra" => 4,
        _ => 5,
    };
    let filename = required("Filename", w.filename)?;
    if filename.starts_with('/') || filename.split('/').any(|c| c == ".." || c.is_empty()) {
        return Err(malformed("Filename", "not a relative path below the mirror"));
    }
    if filename.chars().any(|c| c.is_control()) {
        return Err(malformed("Filename", "contains a control character"));
    }
    let size = required("Size", w.size)?.parse::<u64>().map_err(|_| malformed("Size", "not a number"))?;
    let sha256 = required("SHA256", w.sha256)?;
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed("SHA256", "not 64 hexadecimal digits"));
    }
    let mut provides = Vec::new();
    for group in relation::parse_relations(w.provides.unwrap_or_default()).map_err(|e| malformed("Provides", &e.to_string()))? {
        // Policy §7.5: a provided name, with at most an exact version.
        let [p] = <[Relation; 1]>::try_from(group.0).map_err(|_| malformed("Provides", "alternatives in Provides"))?;
        if p.version.as_ref().is_some_and(|v| v.op != VersionOp::Equal) {
            return Err(malformed("Provides", "a provided version must be `= version`"));
        }
        provides.push(p);
    }
    Ok(IndexPackage {
        name: name.to_owned(),
        version,
        architecture: architecture.to_owned(),
        multi_arch,
        essential,
        priority,
        pre_depends: w.pre_depends.unwrap_or_default().to_owned(),
        depends: w.depends.unwrap_or_default().to_owned(),
        provides,
        filename: filename.to_owned(),
        size,
        sha256: sha256.to_ascii_lowercase(),
        repository: Arc::clone(repository),
    })
}

/// Why one relation cannot be satisfied.
enum Failure {
    /// No real package and no provider.
    Missing,
    Unsatisfiable(String),
}

/// The package a relation resolved to, and the virtual name it was chosen
/// for (when it was chosen through `Provides`).
#[derive(Clone, Copy)]
struct Choice<'i> {
    id: usize,
    via: Option<&'i str>,
}

struct Resolver<'i> {
    index: &'i Index,
    architecture: &'i str,
    requested: BTreeSet<&'i str>,
}

impl<'i> Resolver<'i> {
    fn package(&self, id: usize) -> &'i IndexPackage {
        // Ids only ever come from the index's own maps.
        &self.index.packages[id]
    }

    /// Whether `package` may satisfy a relation with qualifier `qualifier`.
    fn multi_arch(&self, package: &IndexPackage, qualifier: Option<&ArchQualifier>) -> Result<(), String> {
        if package.multi_arch == MultiArch::Same && package.architecture == "all" {
            return Err(format!("{} is Multi-Arch: same but of architecture all", package.name));
        }
        match qualifier {
            Some(ArchQualifier::Any) if !matches!(package.multi_arch, MultiArch::Allowed | MultiArch::Foreign) => {
                Err(format!("`:any` needs Multi-Arch: allowed or foreign, and {} is Multi-Arch: {}", package.name, package.multi_arch.as_str()))
            }
            Some(ArchQualifier::Arch(a)) if a != self.architecture && a != "all" => {
                Err(format!("only architecture {} is resolved", self.architecture))
            }
            _ => Ok(()),
        }
    }

    fn satisfy(&self, relation: &Relation) -> Result<Choice<'i>, Failure> {
        if let Some(id) = self.index.candidate_id(&relation.name, self.architecture) {
            let package = self.package(id);
            if let Some(constraint) = &relation.version {
                if !constraint.satisfied_by(&package.version) {
                    return Err(Failure::Unsatisfiable(format!("the candidate is {} {}", package.name, package.version)));
                }
            }
            self.multi_arch(package, relation.arch_qualifier.as_ref()).map_err(Failure::Unsatisfiable)?;
            return Ok(Choice { id, via: None });
        }
        let providers: BTreeSet<usize> = self
            .index
            .provided_by
            .get(&relation.name)
            .into_iter()
            .flatten()
            .copied()
            // Only the candidate of its own name can be locked.
            .filter(|&id| self.index.candidate_id(&self.package(id).name, self.architecture) == Some(id))
            .collect();
        if providers.is_empty() {
            return Err(Failure::Missing);
        }
        let mut rejected = Vec::new();
        let mut satisfying = Vec::new();
        for id in providers {
            let package = self.package(id);
            let provided = package.provides.iter().filter(|p| p.name == relation.name);
            let versions_ok = match &relation.version {
                None => true,
                // Policy §7.5: an unversioned Provides never satisfies a
                // versioned relation.
                Some(c) => provided.clone().any(|p| p.version.as_ref().is_some_and(|v| c.satisfied_by(&v.version))),
            };
            let how = provided.map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
            if !versions_ok {
                rejected.push(format!("{} provides {how}", package.name));
            } else if let Err(why) = self.multi_arch(package, relation.arch_qualifier.as_ref()) {
                rejected.push(why);
            } else {
                satisfying.push(id);
            }
        }
        // Providers are in id order; pick by priority and name so that
        // stanza order does not matter.
        let rank = |id: usize| (self.package(id).priority, self.package(id).name.as_str());
        let best = |ids: &mut dyn Iterator<Item = usize>| ids.min_by(|&a, &b| rank(a).cmp(&rank(b)));
        let requested = best(&mut satisfying.iter().copied().filter(|&id| self.requested.contains(self.package(id).name.as_str())));
        match requested.or_else(|| best(&mut satisfying.iter().copied())) {
            Some(id) => {
                // Borrow the virtual name from the index, which outlives
                // the relation.
                let via = self.package(id).provides.iter().find(|p| p.name == relation.name).map(|p| p.name.as_str());
                Ok(Choice { id, via })
            }
            None => Err(Failure::Unsatisfiable(format!("virtual package; {}", rejected.join("; ")))),
        }
    }

    /// The package chosen for one alternatives group.
    fn choose(&self, group: &[Relation], needed_by: Option<&str>) -> Result<Choice<'i>> {
        let mut first = None;
        let mut reasons = Vec::new();
        for relation in group {
            match self.satisfy(relation) {
                Ok(choice) => {
                    let name = self.package(choice.id).name.as_str();
                    if self.requested.contains(relation.name.as_str()) || self.requested.contains(name) {
                        return Ok(choice);
                    }
                    first.get_or_insert(choice);
                }
                Err(Failure::Missing) if group.len() == 1 => {
                    return Err(ResolveError::Missing { name: relation.name.clone(), needed_by: needed_by.map(str::to_owned) })
                }
                Err(Failure::Missing) => reasons.push((relation, "not in the index".to_owned())),
                Err(Failure::Unsatisfiable(why)) => reasons.push((relation, why)),
            }
        }
        first.ok_or_else(|| ResolveError::Unsatisfiable {
            relation: Alternatives(group.to_vec()).to_string(),
            needed_by: needed_by.map(str::to_owned),
            // One relation: its reason alone, without repeating it.
            reason: match group {
                [_] => reasons.pop().map(|(_, why)| why).unwrap_or_default(),
                _ => reasons.iter().map(|(r, why)| format!("{r}: {why}")).collect::<Vec<_>>().join("; "),
            },
        })
    }
}

/// The closure of `requested` over `Pre-Depends` and `Depends` for
/// `architecture`, sorted by name then architecture, with each package's
/// chosen dependencies and the virtual names it stands for. The rules are
/// in the module's documentation.
///
/// Errors: [`ResolveError::Missing`] for a requested name (`needed_by:
/// None`) or a dependency that names nothing in the index;
/// [`ResolveError::Unsatisfiable`] for a relation no candidate satisfies;
/// [`ResolveError::Malformed`] for an unparsable `Depends`/`Pre-Depends`
/// of a package in the closure. When several are wrong, the first met in
/// breadth-first order from the sorted requested names is reported.
pub fn resolve(index: &Index, architecture: &str, requested: &[String]) -> Result<Vec<LockedPackage>> {
    let resolver =
        Resolver { index, architecture, requested: requested.iter().map(String::as_str).collect() };
    let roots: Vec<Relation> = resolver.requested.iter().map(|n| Relation::new(*n)).collect();

    #[derive(Default)]
    struct Chosen {
        depends: BTreeSet<String>,
        provides: BTreeSet<String>,
    }
    let mut chosen: BTreeMap<usize, Chosen> = BTreeMap::new();
    let mut queue = VecDeque::new();
    let visit = |choice: Choice<'_>, chosen: &mut BTreeMap<usize, Chosen>, queue: &mut VecDeque<usize>| {
        let entry = chosen.entry(choice.id).or_insert_with(|| {
            queue.push_back(choice.id);
            Chosen::default()
        });
        if let Some(virtual_name) = choice.via {
            entry.provides.insert(virtual_name.to_owned());
        }
    };
    for root in &roots {
        let choice = resolver.choose(std::slice::from_ref(root), None)?;
        visit(choice, &mut chosen, &mut queue);
    }
    while let Some(id) = queue.pop_front() {
        let package = resolver.package(id);
        for group in package.relations()? {
            let choice = resolver.choose(&group.0, Some(&package.name))?;
            let name = &resolver.package(choice.id).name;
            if choice.id != id {
                chosen.entry(id).or_default().depends.insert(name.clone());
            }
            visit(choice, &mut chosen, &mut queue);
        }
    }
    let mut locked: Vec<LockedPackage> = chosen
        .into_iter()
        .map(|(id, c)| {
            let p = resolver.package(id);
            LockedPackage {
                name: p.name.clone(),
                version: p.version.to_string(),
                architecture: p.architecture.clone(),
                repository: p.repository.to_string(),
                path: p.filename.clone(),
                size: p.size,
                sha256: p.sha256.clone(),
                depends: c.depends.into_iter().collect(),
                provides: c.provides.into_iter().collect(),
            }
        })
        .collect();
    locked.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
    Ok(locked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// A stanza with the required fields filled in; `extra` holds more
    /// `Field: value` lines.
    fn stanza(name: &str, version: &str, arch: &str, extra: &str) -> String {
        let sha: String = Sha256::digest(format!("{name} {version} {arch}")).iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: {arch}\n{extra}Filename: pool/main/{name}_{version}_{arch}.deb\nSize: 1000\nSHA256: {sha}\n"
        )
    }

    fn index_of(stanzas: &[String]) -> Index {
        let mut index = Index::new();
        index.add_packages(&stanzas.join("\n"), "bookworm").unwrap();
        index
    }

    fn names(requested: &[&str]) -> Vec<String> {
        requested.iter().map(|s| s.to_string()).collect()
    }

    fn run(index: &Index, requested: &[&str]) -> Result<Vec<LockedPackage>> {
        resolve(index, "amd64", &names(requested))
    }

    /// `name version -> depends [provides]` lines, for compact asserts.
    fn summary(locked: &[LockedPackage]) -> Vec<String> {
        locked
            .iter()
            .map(|p| {
                let mut s = format!("{} {} -> {}", p.name, p.version, p.depends.join(","));
                if !p.provides.is_empty() && !p.depends.is_empty() {
                    s += " ";
                }
                if !p.provides.is_empty() {
                    s += &format!("[{}]", p.provides.join(","));
                }
                s
            })
            .collect()
    }

    #[test]
    fn closure_with_pre_depends_and_fields() {
        let index = index_of(&[
            stanza("app", "1.0-1", "amd64", "Pre-Depends: libc6 (>= 2.34)\nDepends: tool, libc6\n"),
            stanza("tool", "2", "all", ""),
            stanza("libc6", "2.36-9", "amd64", "Multi-Arch: same\n"),
            stanza("unrelated", "1", "amd64", "Depends: missing-thing\n"),
        ]);
        let locked = run(&index, &["app"]).unwrap();
        assert_eq!(summary(&locked), ["app 1.0-1 -> libc6,tool", "libc6 2.36-9 -> ", "tool 2 -> "]);
        let app = &locked[0];
        assert_eq!(app.architecture, "amd64");
        assert_eq!(app.repository, "bookworm");
        assert_eq!(app.path, "pool/main/app_1.0-1_amd64.deb");
        assert_eq!(app.size, 1000);
        assert_eq!(app.sha256.len(), 64);
        assert_eq!(locked[2].architecture, "all");
    }

    #[test]
    fn alternatives_first_satisfiable_unless_one_is_requested() {
        let index = index_of(&[
            stanza("app", "1", "amd64", "Depends: gone | old (>= 2) | first | second\n"),
            stanza("old", "1", "amd64", ""),
            stanza("first", "1", "amd64", ""),
            stanza("second", "1", "amd64", ""),
        ]);
        assert_eq!(summary(&run(&index, &["app"]).unwrap()), ["app 1 -> first", "first 1 -> "]);
        // A requested alternative wins over an earlier one.
        assert_eq!(summary(&run(&index, &["app", "second"]).unwrap()), ["app 1 -> second", "second 1 -> "]);
        // A requested but unsatisfiable alternative does not.
        assert_eq!(summary(&run(&index, &["app", "old"]).unwrap()), ["app 1 -> first", "first 1 -> ", "old 1 -> "]);
    }

    #[test]
    fn alternatives_none_satisfiable() {
        let index = index_of(&[stanza("app", "1", "amd64", "Depends: gone | old (>= 2)\n"), stanza("old", "1", "amd64", "")]);
        let err = run(&index, &["app"]).unwrap_err();
        let ResolveError::Unsatisfiable { relation, needed_by, reason } = &err else { panic!("{err:?}") };
        assert_eq!(relation, "gone | old (>= 2)");
        assert_eq!(needed_by.as_deref(), Some("app"));
        assert!(reason.contains("gone: not in the index") && reason.contains("old (>= 2): the candidate is old 1"), "{reason}");
        assert!(err.to_string().contains("needed by app"));
    }

    #[test]
    fn virtual_packages() {
        let index = index_of(&[
            stanza("app", "1", "amd64", "Depends: awk\n"),
            stanza("mawk", "1.3", "amd64", "Provides: awk\n"),
            stanza("gawk", "5.2", "amd64", "Provides: awk\n"),
            stanza("busybox", "1", "amd64", "Provides: gawk\n"),
        ]);
        // Several providers: the smallest name…
        assert_eq!(summary(&run(&index, &["app"]).unwrap()), ["app 1 -> gawk", "gawk 5.2 -> [awk]"]);
        // …unless one is requested.
        assert_eq!(summary(&run(&index, &["app", "mawk"]).unwrap()), ["app 1 -> mawk", "mawk 1.3 -> [awk]"]);
        // A virtual name can be requested; a real package beats a provider.
        assert_eq!(summary(&run(&index, &["awk", "gawk"]).unwrap()), ["gawk 5.2 -> [awk]"]);
    }

    #[test]
    fn providers_rank_by_priority_before_name() {
        let index = index_of(&[
            stanza("app", "1", "amd64", "Depends: awk
"),
            stanza("mawk", "1.3", "amd64", "Provides: awk
Priority: required
"),
            stanza("gawk", "5.2", "amd64", "Provides: awk
Priority: optional
"),
            stanza("awka", "1", "amd64", "Provides: awk
"),
        ]);
        assert_eq!(summary(&run(&index, &["app"]).unwrap()), ["app 1 -> mawk", "mawk 1.3 -> [awk]"]);
        // A requested provider still wins over a higher priority.
        assert_eq!(summary(&run(&index, &["app", "gawk"]).unwrap()), ["app 1 -> gawk", "gawk 5.2 -> [awk]"]);
    }

    #[test]
    fn versioned_provides() {
        let index = index_of(&[
            stanza("app", "1", "amd64", "Depends: iface (>= 2)\n"),
            stanza("plain", "1", "amd64", "Provides: iface\n"),
            stanza("one", "1", "amd64", "Provides: iface (= 1)\n"),
            stanza("two", "1", "amd64", "Provides: iface (= 2.0), other\n"),
            stanza("old", "1", "amd64", "Depends: iface (>= 3)\n"),
        ]);
        assert_eq!(summary(&run(&index, &["app"]).unwrap()), ["app 1 -> two", "two 1 -> [iface]"]);
        let err = run(&index, &["old"]).unwrap_err();
        let ResolveError::Unsatisfiable { relation, needed_by, reason } = &err else { panic!("{err:?}") };
        assert_eq!((relation.as_str(), needed_by.as_deref()), ("iface (>= 3)", Some("old")));
        assert!(reason.contains("plain provides iface") && reason.contains("two provides iface (= 2.0)"), "{reason}");
    }

    #[test]
    fn multi_arch_qualifiers() {
        let index = index_of(&[
            stanza("allowed", "1", "amd64", "Multi-Arch: allowed\n"),
            stanza("foreign", "1", "all", "Multi-Arch: foreign\n"),
            stanza("plain", "1", "amd64", ""),
            stanza("same", "1", "amd64", "Multi-Arch: same\n"),
            stanza("badsame", "1", "all", "Multi-Arch: same\n"),
            stanza("other", "1", "i386", ""),
            stanza("ok", "1", "amd64", "Depends: allowed:any, foreign:any, plain:native, same, plain:amd64, foreign\n"),
            stanza("any-plain", "1", "amd64", "Depends: plain:any\n"),
            stanza("cross", "1", "amd64", "Depends: plain:i386\n"),
            stanza("needs-badsame", "1", "amd64", "Depends: badsame\n"),
            stanza("needs-other", "1", "amd64", "Depends: other\n"),
        ]);
        let locked = run(&index, &["ok"]).unwrap();
        assert_eq!(locked[2].depends, ["allowed", "foreign", "plain", "same"]);
        for (name, relation) in [("any-plain", "plain:any"), ("cross", "plain:i386"), ("needs-badsame", "badsame")] {
            match run(&index, &[name]) {
                Err(ResolveError::Unsatisfiable { relation: r, needed_by, .. }) => {
                    assert_eq!((r.as_str(), needed_by.as_deref()), (relation, Some(name)))
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        // Only the target architecture and `all` are candidates.
        assert_eq!(
            run(&index, &["needs-other"]).unwrap_err(),
            ResolveError::Missing { name: "other".into(), needed_by: Some("needs-other".into()) }
        );
        assert_eq!(summary(&resolve(&index, "i386", &names(&["other"])).unwrap()), ["other 1 -> "]);
    }

    #[test]
    fn missing_packages_name_who_needs_them() {
        let index = index_of(&[stanza("app", "1", "amd64", "Depends: libgone (>= 1)\n")]);
        let err = run(&index, &["app"]).unwrap_err();
        assert_eq!(err, ResolveError::Missing { name: "libgone".into(), needed_by: Some("app".into()) });
        assert_eq!(err.to_string(), "package \"libgone\" is not in the index (needed by app)");
        let err = run(&index, &["nothere"]).unwrap_err();
        assert_eq!(err, ResolveError::Missing { name: "nothere".into(), needed_by: None });
        assert_eq!(err.to_string(), "package \"nothere\" is not in the index");
    }

    #[test]
    fn version_constraint_fails() {
        let index = index_of(&[stanza("app", "1", "amd64", "Depends: lib (>= 2.0)\n"), stanza("lib", "1:1.0", "amd64", "")]);
        // With an epoch the candidate is newer.
        assert!(run(&index, &["app"]).is_ok());
        let index = index_of(&[stanza("app", "1", "amd64", "Depends: lib (>= 2.0)\n"), stanza("lib", "1.9", "amd64", "")]);
        let err = run(&index, &["app"]).unwrap_err();
        assert_eq!(
            err,
            ResolveError::Unsatisfiable {
                relation: "lib (>= 2.0)".into(),
                needed_by: Some("app".into()),
                reason: "the candidate is lib 1.9".into()
            }
        );
    }

    #[test]
    fn cycles_and_self_dependencies() {
        let index = index_of(&[
            stanza("aa", "1", "amd64", "Pre-Depends: bb\nDepends: aa-virt\n"),
            stanza("bb", "1", "amd64", "Pre-Depends: aa\nProvides: aa-virt\n"),
            stanza("cc", "1", "amd64", "Depends: cc-virt\nProvides: cc-virt\n"),
        ]);
        assert_eq!(summary(&run(&index, &["aa"]).unwrap()), ["aa 1 -> bb", "bb 1 -> aa [aa-virt]"]);
        assert_eq!(summary(&run(&index, &["cc"]).unwrap()), ["cc 1 -> [cc-virt]"]);
    }

    #[test]
    fn essential_packages_are_not_implicit() {
        let index = index_of(&[
            stanza("app", "1", "amd64", "Depends: lib\n"),
            stanza("lib", "1", "amd64", ""),
            stanza("bash", "5", "amd64", "Essential: yes\n"),
        ]);
        assert_eq!(summary(&run(&index, &["app"]).unwrap()), ["app 1 -> lib", "lib 1 -> "]);
        assert!(index.candidate("bash", "amd64").is_some_and(|p| p.essential));
        assert_eq!(run(&index, &["bash"]).unwrap().len(), 1);
    }

    #[test]
    fn candidates_highest_version_then_earlier_repository() {
        let mut index = Index::new();
        let security = [stanza("lib", "1.0-1+deb12u1", "amd64", ""), stanza("tie", "2", "amd64", "")].join("\n");
        let main = [
            stanza("lib", "1.0-1", "amd64", ""),
            stanza("lib", "0.9", "amd64", ""),
            stanza("tie", "2", "amd64", "Depends: lib\n"),
        ]
        .join("\n");
        index.add_packages(&main, "bookworm").unwrap();
        index.add_packages(&security, "bookworm-security").unwrap();
        let locked = run(&index, &["tie"]).unwrap();
        assert_eq!(summary(&locked), ["lib 1.0-1+deb12u1 -> ", "tie 2 -> lib"]);
        assert_eq!((locked[0].repository.as_str(), locked[1].repository.as_str()), ("bookworm-security", "bookworm"));
        assert_eq!(index.repositories(), ["bookworm", "bookworm-security"]);
    }

    #[test]
    fn stanza_order_does_not_matter() {
        let mut stanzas = vec![
            stanza("app", "1", "amd64", "Depends: awk, cc | c-compiler, iface (>= 2), libc6\nPre-Depends: dpkg\n"),
            stanza("mawk", "1.3", "amd64", "Provides: awk\nDepends: libc6\n"),
            stanza("gawk", "5.2", "amd64", "Provides: awk\nDepends: libc6\n"),
            stanza("gcc", "12", "amd64", "Provides: c-compiler\nDepends: cpp (= 12), libc6\n"),
            stanza("clang", "14", "amd64", "Provides: c-compiler\n"),
            stanza("cpp", "12", "amd64", "Depends: gcc\n"),
            stanza("one", "1", "all", "Provides: iface (= 2)\n"),
            stanza("two", "1", "all", "Provides: iface (= 3)\n"),
            stanza("libc6", "2.36", "amd64", "Multi-Arch: same\n"),
            stanza("libc6", "2.35", "amd64", "Multi-Arch: same\n"),
            stanza("dpkg", "1.21", "amd64", "Pre-Depends: libc6\nEssential: yes\n"),
        ];
        let requested = ["mawk", "app"];
        let expected = run(&index_of(&stanzas), &requested).unwrap();
        assert_eq!(
            summary(&expected),
            [
                "app 1 -> clang,dpkg,libc6,mawk,one",
                "clang 14 -> [c-compiler]",
                "dpkg 1.21 -> libc6",
                "libc6 2.36 -> ",
                "mawk 1.3 -> libc6 [awk]",
                "one 1 -> [iface]",
            ]
        );
        // Every rotation, and each of those reversed.
        for _ in 0..stanzas.len() {
            stanzas.rotate_left(1);
            assert_eq!(run(&index_of(&stanzas), &requested).unwrap(), expected);
            let reversed: Vec<String> = stanzas.iter().rev().cloned().collect();
            assert_eq!(run(&index_of(&reversed), &["app", "mawk", "app"]).unwrap(), expected);
        }
    }

    #[test]
    fn malformed_stanzas_name_package_and_field() {
        let good = stanza("app", "1", "amd64", "");
        let cases = [
            (good.replace("Package: app\n", ""), "(stanza at line 1)", "Package"),
            (good.replace("Version: 1\n", ""), "app", "Version"),
            (good.replace("Version: 1", "Version: 1 2"), "app", "Version"),
            (good.replace("Architecture: amd64\n", ""), "app", "Architecture"),
            (good.replace("Filename: pool/main", "Filename: /pool/main"), "app", "Filename"),
            (good.replace("Filename: pool/main", "Filename: pool/../../etc"), "app", "Filename"),
            (good.replace("Size: 1000", "Size: -1"), "app", "Size"),
            (good.lines().filter(|l| !l.starts_with("SHA256")).map(|l| format!("{l}\n")).collect(), "app", "SHA256"),
            (good.replace("SHA256: ", "SHA256: 00"), "app", "SHA256"),
            (good.replace("Size: 1000", "Size: 1000\nMulti-Arch: maybe"), "app", "Multi-Arch"),
            (good.replace("Size: 1000", "Size: 1000\nProvides: a | b"), "app", "Provides"),
            (good.replace("Size: 1000", "Size: 1000\nProvides: virt (>= 1)"), "app", "Provides"),
        ];
        for (text, package, field) in cases {
            let err = Index::new().add_packages(&text, "bookworm").unwrap_err();
            match &err {
                ResolveError::Malformed { repository, package: p, field: f, .. } => {
                    assert_eq!((repository.as_str(), p.as_str(), *f), ("bookworm", package, field), "{text}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        let err = Index::new().add_packages("Package: x\n bad\nnocolon\n", "bookworm").unwrap_err();
        assert!(matches!(err, ResolveError::Control { .. }));
        // A bad Depends is reported only when the package is needed.
        let index = index_of(&[stanza("app", "1", "amd64", "Depends: lib (>= )\n"), stanza("ok", "1", "amd64", "")]);
        assert!(run(&index, &["ok"]).is_ok());
        assert!(matches!(run(&index, &["app"]), Err(ResolveError::Malformed { field: "Depends", .. })));
    }
}
