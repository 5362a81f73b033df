//! `pylock.toml` (PEP 751, "A file format to record Python dependencies
//! for installation reproducibility"), lock-version 1.x.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use serde::Deserialize;

use crate::error::LockFileError;
use crate::lock::{check_sha256, file_name_of, DistFile, LockFormat, LockedPackage, PythonLock};
use crate::name::normalize;

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct File {
    lock_version: String,
    #[serde(default)]
    packages: Vec<Package>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Package {
    name: String,
    version: Option<String>,
    marker: Option<String>,
    dependencies: Option<Vec<Dependency>>,
    sdist: Option<Dist>,
    wheels: Option<Vec<Dist>>,
    vcs: Option<toml::Value>,
    directory: Option<toml::Value>,
    archive: Option<toml::Value>,
}

#[derive(Deserialize)]
struct Dependency {
    name: Option<String>,
}

#[derive(Deserialize)]
struct Dist {
    name: Option<String>,
    url: Option<String>,
    path: Option<String>,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
}

pub(crate) fn parse(file: &str, text: &str) -> Result<PythonLock, LockFileError> {
    let parsed: File = toml::from_str(text).map_err(|e| LockFileError::Toml { file: file.to_owned(), message: e.to_string() })?;
    // PEP 751: a tool must refuse a major version it does not know.
    if parsed.lock_version.split('.').next() != Some("1") {
        return Err(LockFileError::File {
            file: file.to_owned(),
            message: format!("lock-version {:?}: drv reads version 1.x of PEP 751", parsed.lock_version),
        });
    }
    let mut packages = BTreeMap::new();
    for p in parsed.packages {
        let name = normalize(&p.name);
        let field = |field: &'static str, message: String| LockFileError::Field { file: file.to_owned(), package: p.name.clone(), field, message };
        for (present, kind) in [(p.vcs.is_some(), "vcs"), (p.directory.is_some(), "directory"), (p.archive.is_some(), "archive")] {
            if present {
                return Err(field(kind, "drv installs only distributions pinned by hash from an index (sdist, wheels)".into()));
            }
        }
        let version = p.version.clone().ok_or_else(|| field("version", "missing: drv needs the version of every package".into()))?;
        let marker = p
            .marker
            .as_deref()
            .map(|m| pep508_rs::MarkerTree::from_str(m).map_err(|e| field("marker", e.to_string())))
            .transpose()?;
        let mut files = Vec::new();
        let dists = p.sdist.iter().map(|d| ("sdist", d)).chain(p.wheels.iter().flatten().map(|d| ("wheels", d)));
        for (kind, d) in dists {
            let filename = d
                .name
                .clone()
                .or_else(|| d.url.as_deref().and_then(file_name_of))
                .or_else(|| d.path.as_deref().and_then(file_name_of))
                .ok_or_else(|| field(kind, "a file with neither name, url nor path".into()))?;
            let hex = d.hashes.get("sha256").ok_or_else(|| field(kind, format!("{filename}: no sha256 in `hashes` (drv pins sha256)")))?;
            let sha256 = check_sha256(hex).map_err(|m| field(kind, format!("{filename}: {m}")))?;
            files.push(DistFile { filename, sha256 });
        }
        if files.is_empty() {
            return Err(field("wheels", "the package has no sdist and no wheels".into()));
        }
        let dependencies = p
            .dependencies
            .as_ref()
            .map(|deps| deps.iter().filter_map(|d| d.name.as_deref()).map(|n| (normalize(n), None)).collect());
        packages.insert(
            name.clone(),
            LockedPackage { name, version, line: 0, marker, files, hashes: BTreeSet::new(), extras: Vec::new(), dependencies },
        );
    }
    let roots = packages.keys().map(|k| (k.clone(), None)).collect();
    Ok(PythonLock { format: LockFormat::Pylock, file: file.to_owned(), packages, roots })
}
