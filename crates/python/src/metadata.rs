//! What drv reads from a distribution to lock it: the core metadata of a
//! wheel (`*.dist-info/METADATA`) or an sdist (`PKG-INFO`), for the
//! dependencies (`Requires-Dist`, Core metadata specifications 2.x), and an
//! sdist's `pyproject.toml` `[build-system]` (PEP 517, PEP 518), for how
//! its wheel is built. The caller reads the archive; this is the text.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use pep508_rs::{ExtraName, Requirement, VersionOrUrl};

use crate::lock::PythonLock;
use crate::name::normalize;
use crate::target::Target;

/// The fields of core metadata that locking needs.
#[derive(Clone, Debug, Default)]
pub struct CoreMetadata {
    pub name: String,
    pub version: String,
    /// `Requires-Dist`, parsed (PEP 508).
    pub requires_dist: Vec<Requirement>,
    /// `Dynamic` (metadata 2.2): fields an sdist's build may still change.
    pub dynamic: Vec<String>,
}

/// Read core metadata: the header fields, up to the first empty line
/// (the rest is the description). A continuation line (starting with
/// white space) belongs to the field before it.
///
/// Errors: a `Requires-Dist` that is not PEP 508, with the value.
pub fn parse_metadata(text: &str) -> Result<CoreMetadata, String> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let mut m = CoreMetadata::default();
    for (k, v) in fields {
        match k.as_str() {
            "name" => m.name = v,
            "version" => m.version = v,
            "dynamic" => m.dynamic.push(v.to_ascii_lowercase()),
            "requires-dist" => m.requires_dist.push(Requirement::from_str(&v).map_err(|e| format!("Requires-Dist {v:?}: {e}"))?),
            _ => {}
        }
    }
    Ok(m)
}

/// An sdist's `[build-system]`, as PEP 517 and PEP 518 define it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildSystemTable {
    /// `requires`, parsed.
    pub requires: Vec<Requirement>,
    /// `build-backend`.
    pub backend: String,
    /// `backend-path`.
    pub backend_path: Vec<String>,
}

/// The `[build-system]` of an sdist's `pyproject.toml` (`None`: the sdist
/// has no `pyproject.toml`). Without the table, or without
/// `build-backend`, PEP 517's fallback: setuptools' legacy backend, with
/// `setuptools>=40.8.0` when `requires` is absent too.
///
/// Errors: TOML that does not parse, a requirement that is not PEP 508.
pub fn build_system(pyproject: Option<&str>) -> Result<BuildSystemTable, String> {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(rename = "build-system")]
        build_system: Option<Table>,
    }
    #[derive(serde::Deserialize)]
    struct Table {
        requires: Option<Vec<String>>,
        #[serde(rename = "build-backend")]
        build_backend: Option<String>,
        #[serde(rename = "backend-path", default)]
        backend_path: Vec<String>,
    }
    let table = match pyproject {
        None => None,
        Some(text) => toml::from_str::<File>(text).map_err(|e| format!("pyproject.toml: {}", e.message()))?.build_system,
    };
    let (requires, backend, backend_path) = match table {
        None => (None, None, vec![]),
        Some(t) => (t.requires, t.build_backend, t.backend_path),
    };
    let requires = requires.unwrap_or_else(|| vec!["setuptools>=40.8.0".to_owned()]);
    let requires = requires
        .iter()
        .map(|r| Requirement::from_str(r).map_err(|e| format!("pyproject.toml: [build-system] requires {r:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(BuildSystemTable {
        requires,
        backend: backend.unwrap_or_else(|| "setuptools.build_meta:__legacy__".to_owned()),
        backend_path,
    })
}

/// Whether `version` satisfies `req`'s version specifiers (PEP 440); a
/// requirement without any, or a version that is not PEP 440, fits.
pub fn fits(req: &Requirement, version: &str) -> bool {
    match (&req.version_or_url, version.parse::<pep440_rs::Version>()) {
        (Some(VersionOrUrl::VersionSpecifier(specs)), Ok(v)) => specs.contains(&v),
        _ => true,
    }
}

/// The packages of `lock` that each of its packages needs on `target`,
/// by normalized name: from the lock's own edges where it records them
/// (uv.lock, pylock.toml with `dependencies`), else from `metadata`
/// (`Requires-Dist`, with the extras other requirements ask for, until
/// nothing changes). Packages whose markers do not hold on `target` are
/// left out.
///
/// Errors, in a sentence: a requirement on a package the lock does not
/// pin (the lock is incomplete), or on a version it does not pin; a
/// package with neither edges nor metadata.
pub fn dependency_edges(
    lock: &PythonLock,
    metadata: &BTreeMap<String, CoreMetadata>,
    target: &Target,
) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let env = target.marker_environment();
    let applies: BTreeMap<&str, _> = lock.packages.iter().filter(|(_, p)| p.applies(&env)).map(|(n, p)| (n.as_str(), p)).collect();
    let mut extras: BTreeMap<String, BTreeSet<ExtraName>> = BTreeMap::new();
    for p in applies.values() {
        extras.entry(p.name.clone()).or_default().extend(p.extras.iter().filter_map(|e| ExtraName::from_str(e).ok()));
    }
    loop {
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut grew = false;
        for (name, p) in &applies {
            let out = edges.entry((*name).to_owned()).or_default();
            if let Some(deps) = &p.dependencies {
                for (d, m) in deps {
                    if m.as_ref().is_none_or(|m| m.evaluate(&env, &[])) && applies.contains_key(d.as_str()) {
                        out.insert(d.clone());
                    }
                }
                continue;
            }
            let Some(meta) = metadata.get(*name) else {
                return Err(format!("{}: {name} {}: neither the lock nor the distribution says what it requires", lock.file, p.version));
            };
            let wanted: Vec<ExtraName> = extras.get(*name).map(|e| e.iter().cloned().collect()).unwrap_or_default();
            for r in &meta.requires_dist {
                if !r.evaluate_markers(&env, &wanted) {
                    continue;
                }
                let dep = normalize(r.name.as_ref());
                let Some(q) = applies.get(dep.as_str()) else {
                    return Err(format!(
                        "{}: {name} {} requires {r} (Requires-Dist), which the lock does not pin for this interpreter: \
                         the lock is incomplete; generate it again (for example with `--generate-hashes`)",
                        lock.file, p.version
                    ));
                };
                if !fits(r, &q.version) {
                    return Err(format!("{}: {name} {} requires {r}, but the lock pins {dep} {}", lock.file, p.version, q.version));
                }
                let e = extras.entry(dep.clone()).or_default();
                for x in &r.extras {
                    grew |= e.insert(x.clone());
                }
                if dep != *name {
                    out.insert(dep);
                }
            }
        }
        if !grew {
            return Ok(edges);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::LockFormat;

    fn target() -> Target {
        Target { python: (3, 11), python_full: "3.11.2".into(), glibc: (2, 36), arch: "x86_64".into() }
    }

    const H: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn metadata_fields_and_continuations() {
        let m = parse_metadata(
            "Metadata-Version: 2.1\nName: Flask\nVersion: 3.1.3\nRequires-Dist: Werkzeug>=3.1\nRequires-Dist: asgiref>=3.2; extra == \"async\"\n\
             Dynamic: Requires-Dist\nSummary: a\n  continued\n\nRequires-Dist: not-a-header\n",
        )
        .unwrap();
        assert_eq!((m.name.as_str(), m.version.as_str()), ("Flask", "3.1.3"));
        assert_eq!(m.requires_dist.len(), 2);
        assert_eq!(m.dynamic, ["requires-dist"]);
        assert!(parse_metadata("Requires-Dist: ===\n").unwrap_err().contains("Requires-Dist"));
    }

    #[test]
    fn edges_follow_markers_extras_and_pins() {
        let text = format!(
            "a==1.0 --hash=sha256:{H}\nb==2.0 --hash=sha256:{H}\nc==3.0 --hash=sha256:{H}\nd==4.0 --hash=sha256:{H}\n"
        );
        let lock = PythonLock::parse(LockFormat::Requirements, "r.txt", &text).unwrap();
        let meta = |reqs: &str| parse_metadata(reqs).unwrap();
        let mut m = BTreeMap::new();
        m.insert("a".to_owned(), meta("Requires-Dist: B[x]>=2\nRequires-Dist: win; sys_platform == \"win32\"\n"));
        m.insert("b".to_owned(), meta("Requires-Dist: c; extra == \"x\"\nRequires-Dist: d; extra == \"y\"\n"));
        m.insert("c".to_owned(), meta(""));
        m.insert("d".to_owned(), meta(""));
        let e = dependency_edges(&lock, &m, &target()).unwrap();
        assert_eq!(e["a"], BTreeSet::from(["b".to_owned()]));
        assert_eq!(e["b"], BTreeSet::from(["c".to_owned()]));
        m.insert("c".to_owned(), meta("Requires-Dist: missing\n"));
        assert!(dependency_edges(&lock, &m, &target()).unwrap_err().contains("requires missing"));
        m.insert("c".to_owned(), meta("Requires-Dist: d>=5\n"));
        assert!(dependency_edges(&lock, &m, &target()).unwrap_err().contains("the lock pins d 4.0"));
    }

    #[test]
    fn build_system_defaults_follow_pep_517() {
        let b = build_system(None).unwrap();
        assert_eq!(b.backend, "setuptools.build_meta:__legacy__");
        assert_eq!(b.requires[0].name.as_ref(), "setuptools");
        let b = build_system(Some("[build-system]\nrequires = [\"flit_core >=3.2,<4\"]\nbuild-backend = \"flit_core.buildapi\"\nbackend-path = [\".\"]\n")).unwrap();
        assert_eq!((b.backend.as_str(), b.backend_path.as_slice()), ("flit_core.buildapi", &[".".to_owned()][..]));
        assert!(build_system(Some("[build-system\n")).is_err());
    }
}
