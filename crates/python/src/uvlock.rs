//! `uv.lock`, the lock file of uv projects (version 1): packages with
//! their sources, distributions and dependency edges (each edge under the
//! marker where it applies).

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use serde::Deserialize;

use crate::error::LockFileError;
use crate::lock::{check_sha256, file_name_of, DistFile, LockFormat, LockedPackage, PythonLock};
use crate::name::normalize;

#[derive(Deserialize)]
struct File {
    version: u32,
    #[serde(default)]
    package: Vec<Package>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Package {
    name: String,
    version: Option<String>,
    source: BTreeMap<String, toml::Value>,
    #[serde(default)]
    dependencies: Vec<Dependency>,
    /// The package's extras: what `name[extra]` adds.
    #[serde(default)]
    optional_dependencies: BTreeMap<String, Vec<Dependency>>,
    /// The project's dependency groups (PEP 735; uv's `dev`).
    #[serde(default)]
    dev_dependencies: BTreeMap<String, Vec<Dependency>>,
    sdist: Option<Dist>,
    #[serde(default)]
    wheels: Vec<Dist>,
}

#[derive(Deserialize)]
struct Dependency {
    name: String,
    version: Option<String>,
    marker: Option<String>,
    /// The extras of the dependency asked for (`name[extra]`).
    #[serde(default)]
    extra: Vec<String>,
}

#[derive(Deserialize)]
struct Dist {
    filename: Option<String>,
    url: Option<String>,
    path: Option<String>,
    hash: Option<String>,
}

pub(crate) fn parse(file: &str, text: &str) -> Result<PythonLock, LockFileError> {
    let parsed: File = toml::from_str(text).map_err(|e| LockFileError::Toml { file: file.to_owned(), message: e.to_string() })?;
    if parsed.version != 1 {
        return Err(LockFileError::File { file: file.to_owned(), message: format!("version = {}: drv reads uv.lock version 1", parsed.version) });
    }
    // A name locked at two versions (uv forks a resolution by markers) is
    // told apart by the version its edges name.
    let mut versions: BTreeMap<String, usize> = BTreeMap::new();
    for p in &parsed.package {
        *versions.entry(normalize(&p.name)).or_default() += 1;
    }
    // Each package's extras, by its key.
    let extras_of: BTreeMap<String, &BTreeMap<String, Vec<Dependency>>> = parsed
        .package
        .iter()
        .map(|p| (key(&normalize(&p.name), p.version.as_deref(), &versions), &p.optional_dependencies))
        .collect();
    let mut packages = BTreeMap::new();
    let mut roots = Vec::new();
    for p in &parsed.package {
        let name = normalize(&p.name);
        let field = |field: &'static str, message: String| LockFileError::Field { file: file.to_owned(), package: p.name.clone(), field, message };
        let mut dependencies = Vec::new();
        for d in &p.dependencies {
            edges(d, None, &extras_of, &versions, &mut dependencies, 0).map_err(|m| field("dependencies", m))?;
        }
        // The project itself (a virtual or editable root): what it
        // depends on is what the lock is for.
        if p.source.contains_key("virtual") || p.source.contains_key("editable") {
            // Every extra and group of the project, as `uv sync
            // --all-extras --all-groups` installs: a recipe's `packages`
            // picks among them.
            for d in p.optional_dependencies.values().chain(p.dev_dependencies.values()).flatten() {
                edges(d, None, &extras_of, &versions, &mut dependencies, 0).map_err(|m| field("dependencies", m))?;
            }
            roots.extend(dependencies.iter().cloned());
            continue;
        }
        if !p.source.contains_key("registry") {
            let kind = p.source.keys().next().cloned().unwrap_or_default();
            return Err(field("source", format!("a {kind} source: drv installs only distributions pinned by hash from an index")));
        }
        let version = p.version.clone().ok_or_else(|| field("version", "missing".into()))?;
        let mut files = Vec::new();
        for (kind, d) in p.sdist.iter().map(|d| ("sdist", d)).chain(p.wheels.iter().map(|d| ("wheels", d))) {
            let filename = d
                .filename
                .clone()
                .or_else(|| d.url.as_deref().and_then(file_name_of))
                .or_else(|| d.path.as_deref().and_then(file_name_of))
                .ok_or_else(|| field(kind, "a file with neither filename, url nor path".into()))?;
            let hash = d.hash.as_deref().ok_or_else(|| field(kind, format!("{filename}: no hash")))?;
            let hex = hash.strip_prefix("sha256:").ok_or_else(|| field(kind, format!("{filename}: hash {hash:?} is not sha256:HEX")))?;
            let sha256 = check_sha256(hex).map_err(|m| field(kind, format!("{filename}: {m}")))?;
            files.push(DistFile { filename, sha256 });
        }
        if files.is_empty() {
            return Err(field("wheels", "the package has no sdist and no wheels".into()));
        }
        let k = key(&name, Some(&version), &versions);
        packages.insert(
            k.clone(),
            LockedPackage { name, version, line: 0, marker: None, files, hashes: BTreeSet::new(), extras: Vec::new(), dependencies: Some(dependencies) },
        );
    }
    if roots.is_empty() {
        roots = packages.keys().map(|k| (k.clone(), None)).collect();
    }
    Ok(PythonLock { format: LockFormat::UvLock, file: file.to_owned(), packages, roots })
}

/// The edges `d` makes: to its package, under its marker (and `under`,
/// the marker of the edge that asked for this extra), and, for each extra
/// it asks for, to what that extra adds, recursively.
fn edges(
    d: &Dependency,
    under: Option<&pep508_rs::MarkerTree>,
    extras_of: &BTreeMap<String, &BTreeMap<String, Vec<Dependency>>>,
    versions: &BTreeMap<String, usize>,
    out: &mut Vec<(String, Option<pep508_rs::MarkerTree>)>,
    depth: usize,
) -> Result<(), String> {
    // Extras asking for extras of each other end somewhere; a lock whose
    // chain does not is not one uv wrote.
    if depth > 64 {
        return Err(format!("{}: extras that ask for each other without end", d.name));
    }
    let mut marker = d.marker.as_deref().map(|m| pep508_rs::MarkerTree::from_str(m).map_err(|e| format!("{}: {e}", d.name))).transpose()?;
    if let Some(u) = under {
        let mut m = marker.unwrap_or(pep508_rs::MarkerTree::TRUE);
        m.and(u.clone());
        marker = Some(m);
    }
    let k = key(&normalize(&d.name), d.version.as_deref(), versions);
    for e in &d.extra {
        let Some(adds) = extras_of.get(&k).and_then(|x| x.get(e)) else {
            return Err(format!("{}[{e}]: the lock records no extra {e:?} of {}", d.name, d.name));
        };
        for a in adds {
            edges(a, marker.as_ref(), extras_of, versions, out, depth + 1)?;
        }
    }
    out.push((k, marker));
    Ok(())
}

/// The lock's key of a package: its name, or `NAME@VERSION` when the lock
/// holds it at several versions.
fn key(name: &str, version: Option<&str>, versions: &BTreeMap<String, usize>) -> String {
    match version {
        Some(v) if versions.get(name).copied().unwrap_or(0) > 1 => format!("{name}@{v}"),
        _ => name.to_owned(),
    }
}
