//! The layers stay layers: each of drv's crates (docs/architecture.md,
//! "Layers") depends only on crates below it, as their `Cargo.toml` files
//! say (`cargo metadata`) and as their sources say (no path into a crate
//! above); modules import from the module that defines an item, not
//! through their crate's root; and the architecture document's crate graph
//! is the one `Cargo.toml` makes.
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

/// The layers, bottom first (docs/architecture.md, "Layers"): every
/// workspace crate with its layer. A crate may depend on crates of lower
/// layers only, directly or through another crate.
const LAYERS: &[(&str, u32)] = &[
    ("drv-formats", 1),
    ("drv-sandbox", 1),
    ("drv-python", 1),
    ("drv-debian", 2),
    ("drv-store", 3),
    ("drv-realise", 4),
    ("drv-eval", 5),
    ("drv-cli", 6),
];

/// Third-party crates a layer must not reach: the pure formats do no
/// I/O but the trees they archive; the sandbox and the ecosystem formats
/// know no database or network; the local store builds nothing and
/// downloads nothing.
const FORBIDDEN: &[(&str, &[&str])] = &[
    ("drv-formats", &["rusqlite", "reqwest", "tokio", "axum", "nix"]),
    ("drv-sandbox", &["rusqlite", "reqwest", "tokio", "axum"]),
    ("drv-python", &["rusqlite", "reqwest", "tokio", "axum", "nix"]),
    ("drv-debian", &["rusqlite", "reqwest", "tokio", "axum"]),
    ("drv-store", &["reqwest", "tokio", "axum", "drv-sandbox"]),
];

/// Crates a package must not depend on itself (normal dependencies), though
/// a crate below it may: the store's database is the store's, and
/// realisation reaches it through the store's API.
const FORBIDDEN_DIRECT: &[(&str, &[&str])] = &[("drv-realise", &["rusqlite"]), ("drv-eval", &["rusqlite"]), ("drv-cli", &["rusqlite"])];

/// drv-formats reads and writes the trees it archives with `rustix`'s
/// directory-relative calls, and may ask it for nothing else (no
/// processes, no system calls beyond the file system).
const FORMATS_RUSTIX_FEATURES: &[&str] = &["fs"];

fn layer(package: &str) -> Option<u32> {
    LAYERS.iter().find(|(name, _)| *name == package).map(|(_, layer)| *layer)
}

/// The crate directory of a workspace crate (`drv-store` → `crates/store`).
fn source_dir(package: &str) -> PathBuf {
    workspace_root().join("crates").join(package.trim_start_matches("drv-")).join("src")
}

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

/// Every breach of [`LAYERS`], [`FORBIDDEN`] and
/// [`FORMATS_RUSTIX_FEATURES`] in `metadata`, one line each.
fn breaches(metadata: &Value) -> Vec<String> {
    let packages = declared(metadata);
    let mut found = Vec::new();
    for package in packages.keys() {
        let Some(own) = layer(package) else {
            found.push(format!("{package} has no layer in tests/layers.rs (and docs/architecture.md)"));
            continue;
        };
        let reached = reached(&packages, package);
        for (name, path) in &reached {
            if let Some(theirs) = layer(name).filter(|theirs| *theirs >= own) {
                found.push(format!("{package} (layer {own}) must not depend on {name} (layer {theirs}): {path}"));
            }
        }
        let forbidden = FORBIDDEN.iter().find(|(p, _)| p == package).map(|(_, f)| *f).unwrap_or(&[]);
        for name in forbidden {
            if let Some(path) = reached.get(*name) {
                found.push(format!("{package} must not depend on {name}: {path}"));
            }
        }
        // A drv crate as a dev-dependency is a layer breach too.
        for dep in &packages[package] {
            let upward = layer(&dep.name).is_some_and(|theirs| theirs >= own && dep.name != *package);
            if dep.kind.as_deref() == Some("dev") && (upward || forbidden.contains(&dep.name.as_str()) && dep.name.starts_with("drv-")) {
                found.push(format!("{package} must not depend on {} (dev-dependency)", dep.name));
            }
        }
    }
    for (package, names) in FORBIDDEN_DIRECT {
        for dep in packages.get(*package).into_iter().flatten() {
            if dep.kind.is_none() && names.contains(&dep.name.as_str()) {
                found.push(format!("{package} must not use {} itself (only through the crate that owns it)", dep.name));
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
fn crates_depend_on_lower_layers_only() {
    let found = breaches(&metadata());
    assert!(found.is_empty(), "layer breaches (docs/architecture.md, \"Layers\"):\n{}", found.join("\n"));
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(!files.is_empty(), "no sources under {}", dir.display());
    files
}

#[test]
fn crates_sources_name_no_crate_above_them() {
    let mut found = Vec::new();
    for (package, own) in LAYERS {
        let forbidden_drv = FORBIDDEN.iter().find(|(p, _)| p == package).map(|(_, f)| *f).unwrap_or(&[]);
        let forbidden: Vec<String> = LAYERS
            .iter()
            .filter(|(name, theirs)| name != package && theirs >= own)
            .map(|(name, _)| *name)
            .chain(forbidden_drv.iter().copied().filter(|n| n.starts_with("drv-")))
            .map(|name| name.replace('-', "_"))
            .collect();
        for path in files_under(&source_dir(package)) {
            let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for name in &forbidden {
                if text.contains(&format!("{name}::")) {
                    found.push(format!("{} names {name}", path.display()));
                }
            }
        }
    }
    assert!(found.is_empty(), "layer breaches in sources:\n{}", found.join("\n"));
}

/// The names a crate root re-exports (`pub use a::{B, C};` gives B, C).
fn root_reexports(root: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut statement = String::new();
    for line in root.lines() {
        if statement.is_empty() && !line.starts_with("pub use ") {
            continue;
        }
        statement.push_str(line);
        if !line.trim_end().ends_with(';') {
            continue;
        }
        let imported = statement.rsplit("::").next().unwrap_or("").trim_end_matches(';');
        for name in imported.trim_matches(['{', '}', ' ']).split(',') {
            let name = name.split(" as ").last().unwrap_or("").trim();
            if !name.is_empty() {
                names.insert(name.to_owned());
            }
        }
        statement.clear();
    }
    names
}

/// A crate's modules import each other's items from the module that
/// defines them, not through the crate root's re-exports: the root is the
/// crate's face to its users, and an import of it from inside points
/// back up (a module that defines `Error` and imports `crate::Config`
/// from the root that re-exports both makes a cycle of the layering).
#[test]
fn modules_do_not_import_through_their_crate_root() {
    let mut found = Vec::new();
    for (package, _) in LAYERS {
        let dir = source_dir(package);
        let root = ["lib.rs", "main.rs"].iter().map(|f| dir.join(f)).find(|p| p.exists()).expect("a crate root");
        let root_text = fs::read_to_string(&root).unwrap();
        // A module of the root shares its name with an item it re-exports
        // (`mod lower; pub use lower::lower;`): `crate::lower::X` is a path
        // into the module, not through the root.
        let modules: BTreeSet<&str> = root_text
            .lines()
            .filter_map(|l| l.trim_start_matches("pub ").strip_prefix("mod "))
            .map(|l| l.trim_end_matches(';').trim())
            .collect();
        let reexported: BTreeSet<String> =
            root_reexports(&root_text).into_iter().filter(|name| !modules.contains(name.as_str())).collect();
        for path in files_under(&dir) {
            if path == root || path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = fs::read_to_string(&path).unwrap();
            for (i, line) in text.lines().enumerate() {
                // Documentation links name items by their public path.
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for name in &reexported {
                    let direct = format!("crate::{name}");
                    let at = line.find(&direct);
                    let whole = at.is_some_and(|at| !line[at + direct.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_'));
                    if whole {
                        found.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "imports through the crate root (import from the defining module):\n{}", found.join("\n"));
}

const DIAGRAM_START: &str = "<!-- crate graph: tests/layers.rs keeps it in step with Cargo.toml -->";
const DIAGRAM_END: &str = "<!-- end of crate graph -->";

/// The dependency diagram of docs/architecture.md as the workspace's
/// `Cargo.toml` files make it: a Mermaid graph, layers top down, one edge
/// per direct (non-dev) dependency between drv's crates.
fn diagram(metadata: &Value) -> String {
    let packages = declared(metadata);
    let mut out = String::from("```mermaid\ngraph TD\n");
    let mut layers: Vec<u32> = LAYERS.iter().map(|(_, l)| *l).collect();
    layers.dedup();
    for l in layers.iter().rev() {
        let names: Vec<&str> = LAYERS.iter().filter(|(_, x)| x == l).map(|(n, _)| *n).collect();
        out.push_str(&format!("  subgraph layer{l}[\"layer {l}\"]\n"));
        for name in names {
            out.push_str(&format!("    {name}\n"));
        }
        out.push_str("  end\n");
    }
    for (package, _) in LAYERS {
        let mut deps: Vec<&str> = packages[*package]
            .iter()
            .filter(|d| d.kind.is_none() && layer(&d.name).is_some())
            .map(|d| d.name.as_str())
            .collect();
        deps.sort_by_key(|d| (std::cmp::Reverse(layer(d)), *d));
        deps.dedup();
        for dep in deps {
            out.push_str(&format!("  {package} --> {dep}\n"));
        }
    }
    out.push_str("```\n");
    out
}

#[test]
fn architecture_diagram_is_the_crate_graph() {
    let doc_path = workspace_root().join("docs/architecture.md");
    let doc = fs::read_to_string(&doc_path).unwrap();
    let start = doc.find(DIAGRAM_START).expect("docs/architecture.md has the crate graph's start marker") + DIAGRAM_START.len();
    let end = doc.find(DIAGRAM_END).expect("docs/architecture.md has the crate graph's end marker");
    let want = format!("\n{}", diagram(&metadata()));
    if doc[start..end] != want {
        if std::env::var_os("DRV_BLESS").is_some() {
            fs::write(&doc_path, format!("{}{want}{}", &doc[..start], &doc[end..])).unwrap();
            return;
        }
        panic!("docs/architecture.md's crate graph differs from Cargo.toml; rerun with DRV_BLESS=1 to rewrite it:\n{want}");
    }
}

/// The check itself: a forbidden edge, direct or through another drv
/// crate, an edge to the same or a higher layer, an upward dev-dependency
/// and a wider use of rustix are each reported.
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
    add(packages, "drv-store", serde_json::json!({"name": "drv-realise", "kind": "dev", "features": []}));
    add(packages, "drv-debian", serde_json::json!({"name": "drv-eval", "kind": null, "features": []}));
    add(packages, "drv-realise", serde_json::json!({"name": "rusqlite", "kind": null, "features": []}));
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
        "drv-sandbox (layer 1) must not depend on drv-python (layer 1): drv-sandbox -> drv-python",
        "drv-store must not depend on drv-realise (dev-dependency)",
        "drv-debian (layer 2) must not depend on drv-eval (layer 5): drv-debian -> drv-eval",
        "drv-realise must not use rusqlite itself (only through the crate that owns it)",
        "drv-formats may use rustix for the file system only, not {\"process\"}",
    ];
    for line in expected {
        assert!(found.iter().any(|f| f == line), "{line:?} not in {found:#?}");
    }
}
