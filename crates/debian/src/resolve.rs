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
//!   a requested one (the smallest name if several), else the one with
//!   the smallest name: apt would ask, and a lock must not depend on
//!   which provider happened to be seen first.
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
    /// The repository (suite) whose index listed it.
    pub repository: String,
}

impl IndexPackage {
    /// `Pre-Depends` then `Depends`, parsed.
    pub fn relations(&self) -> Result<Vec<Alternatives>> {
        let parse = |field: &'static str, text: &str| {
            relation::parse_relations(text).map_err(|e| ResolveError::Malformed {
                repository: self.repository.clone(),
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
        for paragraph in control::paragraphs(text) {
            let paragraph =
                paragraph.map_err(|source| ResolveError::Control { repository: repository.to_owned(), source })?;
            let package = parse_stanza(&paragraph, repository)?;
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
    depends: Option<&'a str>,
    pre_depends: Option<&'a str>,
    provides: Option<&'a str>,
    filename: Option<&'a str>,
    size: Option<&'a str>,
    sha256: Option<&'a str>,
}

fn parse_stanza<'p>(paragraph: &control::Paragraph<'p>, repository: &str) -> Result<IndexPackage> {
    // One pass over the fields rather than a lookup per wanted field:
    // this runs for each of an index's ~60,000 stanzas.
    let mut w = Wanted::default();
    for f in &paragraph.fields {
        let slot = match f.name.len() {
            4 if f.is("Size") => &mut w.size,
            6 if f.is("SHA256") => &mut w.sha256,
            7 if f.is("Package") => &mut w.package,
            7 if f.is("Version") => &mut w.version,
            7 if f.is("Depends") => &mut w.depends,
            8 if f.is("Filename") => &mut w.filename,
            8 if f.is("Provides") => &mut w.provides,
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
        repository: repository.to_owned(),
        package: if name.is_empty() { format!("(stanza at line {})", paragraph.line) } else { name.to_owned() },
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
        pre_depends: w.pre_depends.unwrap_or_default().to_owned(),
        depends: w.depends.unwrap_or_default().to_owned(),
        provides,
        filename: filename.to_owned(),
        size,
        sha256: sha256.to_ascii_lowercase(),
        repository: repository.to_owned(),
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
        // Providers are in id order; pick by name so that stanza order
        // does not matter.
        let by_name = |ids: &mut dyn Iterator<Item = usize>| ids.min_by(|&a, &b| self.package(a).name.cmp(&self.package(b).name));
        let requested = by_name(&mut satisfying.iter().copied().filter(|&id| self.requested.contains(self.package(id).name.as_str())));
        match requested.or_else(|| by_name(&mut satisfying.iter().copied())) {
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
                Err(Failure::Missing) => reasons.push(format!("{relation}: not in the index")),
                Err(Failure::Unsatisfiable(why)) => reasons.push(format!("{relation}: {why}")),
            }
        }
        first.ok_or_else(|| ResolveError::Unsatisfiable {
            relation: Alternatives(group.to_vec()).to_string(),
            needed_by: needed_by.map(str::to_owned),
            reason: reasons.join("; "),
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
                repository: p.repository.clone(),
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
