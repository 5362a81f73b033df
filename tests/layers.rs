//! The layers stay layers: the crates at the bottom of drv (docs/architecture.md,
//! "Layers") depend on nothing above them, as their `Cargo.toml` files say
//! (`cargo metadata`) and as their sources say (no `use` of a crate above).
//!
//! A dependency is followed through the workspace's own crates (a drv crate
//! that drv-formats used would bring its dependencies too); third-party
//! crates are checked where they are named, which is where they would be
//! added.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// What each bottom crate must not depend on.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "drv-formats",
        &[
            "drv-store", "drv-sandbox", "drv-eval", "drv-cli", "drv-debian", "rusqlite", "reqwest", "tokio", "axum",
            "nix",
        ],
    ),
    ("drv-sandbox", &["drv-store", "drv-eval", "drv-cli", "rusqlite", "reqwest"]),
];

/// drv-formats reads and writes the trees it archives with `rustix`'s
/// directory-relative calls, and may ask it for nothing else (no
/// processes, no system calls beyond the file system).
const FORMATS_RUSTIX_FEATURES: &[&str] = &["fs"];

/// Crate names that the sources of a bottom crate must not mention.
const FORBIDDEN_IN_SOURCE: &[(&str, &[&str])] = &[
    ("crates/formats/src", &["drv_store", "drv_sandbox", "drv_eval", "drv_cli", "drv_debian"]),
    ("crates/sandbox/src", &["drv_store", "drv_eval", "drv_cli"]),
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").ok().or(option_env!("CARGO").map(str::to_owned)).unwrap_or("cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline", "--manifest-path"])
        .arg(workspace_root().join("Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON")
}

/// A dependency as `Cargo.toml` declares it.
struct Dep {
    name: String,
    /// `None` for a normal dependency, else `"dev"` or `"build"`.
    kind: Option<String>,
    features: Vec<String>,
}

/// Each workspace package's declared dependencies.
fn declared(metadata: &Value) -> BTreeMap<String, Vec<Dep>> {
    let packages = metadata["packages"].as_array().expect("packages");
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"].as_array().expect("dependencies");
            let deps = deps
                .iter()
                .map(|d| Dep {
                    name: d["name"].as_str().expect("name").to_owned(),
                    kind: d["kind"].as_str().map(str::to_owned),
                    features: d["features"].as_array().into_iter().flatten().filter_map(|f| f.as_str()).map(str::to_owned).collect(),
                })
                .collect();
            (p["name"].as_str().expect("package name").to_owned(), deps)
        })
        .collect()
}

/// What `package` depends on when built (normal and build dependencies),
/// through the workspace's crates: each name with the path that brings it.
fn reached(packages: &BTreeMap<String, Vec<Dep>>, package: &str) -> BTreeMap<String, String> {
    let mut seen = BTreeMap::new();
    let mut stack = vec![(package.to_owned(), package.to_owned())];
    while let Some((name, via)) = stack.pop() {
        for dep in packages.get(&name).into_iter().flatten() {
            if dep.kind.as_deref() == Some("dev") || seen.contains_key(&dep.name) {
                continue;
            }
            let path = format!("{via} -> {}", dep.name);
            seen.insert(dep.name.clone(), path.clone());
            if packages.contains_key(&dep.name) {
                stack.push((dep.name.clone(), path));
            }
        }
    }
    seen
}

/// Every breach of [`FORBIDDEN`] and [`FORMATS_RUSTIX_FEATURES`] in
/// `metadata`, one line each.
fn breaches(metadata: &Value) -> Vec<String> {
    let packages = declared(metadata);
    let mut found = Vec::new();
    for (package, forbidden) in FORBIDDEN {
        assert!(packages.contains_key(*package), "{package} is not in the workspace");
        let reached = reached(&packages, package);
        for name in *forbidden {
            if let Some(path) = reached.get(*name) {
                found.push(format!("{package} must not depend on {name}: {path}"));
            }
        }
        // A drv crate as a dev-dependency is a layer breach too.
        for dep in &packages[*package] {
            if dep.kind.as_deref() == Some("dev") && dep.name.starts_with("drv-") && forbidden.contains(&dep.name.as_str()) {
                found.push(format!("{package} must not depend on {} (dev-dependency)", dep.name));
            }
        }
    }
    for dep in &packages["drv-formats"] {
        if dep.name == "rustix" && dep.kind.is_none() {
            let extra: BTreeSet<_> = dep.features.iter().filter(|f| !FORMATS_RUSTIX_FEATURES.contains(&f.as_str())).collect();
            if !extra.is_empty() {
                found.push(format!("drv-formats may use rustix for the file system only, not {extra:?}"));
            }
        }
    }
    found
}

#[test]
fn bottom_crates_depend_on_nothing_above_them() {
    let found = breaches(&metadata());
    assert!(found.is_empty(), "layer breaches (docs/architecture.md, \"Layers\"):\n{}", found.join("\n"));
}

#[test]
fn bottom_crates_sources_name_nothing_above_them() {
    let mut found = Vec::new();
    for (dir, forbidden) in FORBIDDEN_IN_SOURCE {
        let mut stack = vec![workspace_root().join(dir)];
        let mut files = 0;
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                files += 1;
                let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                for name in *forbidden {
                    if text.contains(name) {
                        found.push(format!("{} names {name}", path.display()));
                    }
                }
            }
        }
        assert!(files > 0, "no sources under {dir}");
    }
    assert!(found.is_empty(), "layer breaches in sources:\n{}", found.join("\n"));
}

/// The check itself: a forbidden edge, direct or through another drv
/// crate, and a wider use of rustix are each reported.
#[test]
fn the_check_catches_a_breach() {
    let mut metadata = metadata();
    assert!(breaches(&metadata).is_empty());
    let packages = metadata["packages"].as_array_mut().unwrap();
    let add = |packages: &mut Vec<Value>, package: &str, dep: Value| {
        let p = packages.iter_mut().find(|p| p["name"] == package).unwrap();
        p["dependencies"].as_array_mut().unwrap().push(dep);
    };
    add(packages, "drv-formats", serde_json::json!({"name": "rusqlite", "kind": null, "features": []}));
    add(packages, "drv-sandbox", serde_json::json!({"name": "drv-python", "kind": null, "features": []}));
    add(packages, "drv-python", serde_json::json!({"name": "reqwest", "kind": null, "features": []}));
    let formats = packages.iter_mut().find(|p| p["name"] == "drv-formats").unwrap();
    for dep in formats["dependencies"].as_array_mut().unwrap() {
        if dep["name"] == "rustix" {
            dep["features"] = serde_json::json!(["fs", "process"]);
        }
    }
    let found = breaches(&metadata);
    let expected = [
        "drv-formats must not depend on rusqlite: drv-formats -> rusqlite",
        "drv-sandbox must not depend on reqwest: drv-sandbox -> drv-python -> reqwest",
        "drv-formats may use rustix for the file system only, not {\"process\"}",
    ];
    for line in expected {
        assert!(found.iter().any(|f| f == line), "{line:?} not in {found:#?}");
    }
}
