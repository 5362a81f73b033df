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
    sdist: Option<Dist>,
    #[serde(default)]
    wheels: Vec<Dist>,
}

#[derive(Deserialize)]
struct Dependency {
    name: String,
    version: Option<String>,
    marker: Option<String>,
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
    let mut packages = BTreeMap::new();
    let mut roots = Vec::new();
    for p in &parsed.package {
        let name = normalize(&p.name);
        let field = |field: &'static str, message: String| LockFileError::Field { file: file.to_owned(), package: p.name.clone(), field, message };
        let mut dependencies = Vec::new();
        for d in &p.dependencies {
            let marker = d
                .marker
                .as_deref()
                .map(|m| pep508_rs::MarkerTree::from_str(m).map_err(|e| field("dependencies", format!("{}: {e}", d.name))))
                .transpose()?;
            dependencies.push((key(&normalize(&d.name), d.version.as_deref(), &versions), marker));
        }
        // The project itself (a virtual or editable root): what it
        // depends on is what the lock is for.
        if p.source.contains_key("virtual") || p.source.contains_key("editable") {
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

/// The lock's key of a package: its name, or `NAME@VERSION` when the lock
/// holds it at several versions.
fn key(name: &str, version: Option<&str>, versions: &BTreeMap<String, usize>) -> String {
    match version {
        Some(v) if versions.get(name).copied().unwrap_or(0) > 1 => format!("{name}@{v}"),
        _ => name.to_owned(),
    }
}
