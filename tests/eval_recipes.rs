//! Evaluation of the recipes under `tests/recipes/`: golden `.drv` files,
//! agreement with real Nix's `derivation` builtin, and which hashes change
//! when an input changes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use common::Nix;
use drv_eval::Evaluation;
use drv_formats::{StoreDir, StorePath};
use drv_store::{Ingestion, LocalStore};

const RECIPES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/recipes");

/// The toolchain comes from `tests/recipes/drv.lock`, so the golden files
/// depend on nothing of the machine.
fn evaluate(root: &Path, recipe: &Path) -> (LocalStore, Evaluation) {
    let mut store = LocalStore::open(root, StoreDir::default()).unwrap();
    let eval = drv_eval::evaluate(recipe, &mut store).unwrap();
    (store, eval)
}

/// The `.deb` downloads of the toolchain (dash, coreutils and their
/// closure in the lock) and its assembly.
const TOOLCHAIN_DERIVATIONS: usize = 18 + 1;

#[test]
fn golden_derivations() {
    let t = tempfile::tempdir().unwrap();
    let update = std::env::var_os("DRV_UPDATE_GOLDEN").is_some();
    for name in ["base", "middle", "top"] {
        let recipe = Path::new(RECIPES).join(format!("{name}.toml"));
        let (store, eval) = evaluate(t.path(), &recipe);
        let written = fs::read(store.real_path(&eval.root)).unwrap();
        let golden = Path::new(RECIPES).join(format!("{name}.drv"));
        if update {
            fs::write(&golden, &written).unwrap();
        }
        let expected = fs::read(&golden).unwrap_or_default();
        assert!(
            written == expected,
            "{name}: the .drv differs from {}; rerun with DRV_UPDATE_GOLDEN=1 if the change is intended:\n{}",
            golden.display(),
            String::from_utf8_lossy(&written)
        );
        // the file is stored where Nix's text-path rule puts it
        let (drv, _) = eval.get(&eval.root).unwrap();
        assert_eq!(store.store_dir().text_path(eval.root.name(), &written, &drv.references()).unwrap(), eval.root);
    }
}

#[test]
fn evaluation_is_deterministic_and_graph_is_complete() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let top = Path::new(RECIPES).join("top.toml");
    let (_, e1) = evaluate(a.path(), &top);
    let (store, e2) = evaluate(b.path(), &top);
    assert_eq!(e1.root, e2.root);
    // top, middle, base, two fetches, one test, and one toolchain for all
    assert_eq!(e2.derivations.len(), 6 + TOOLCHAIN_DERIVATIONS, "{:?}", e2.derivations.keys().collect::<Vec<_>>());
    let toolchains: Vec<&StorePath> = e2.derivations.keys().filter(|p| p.name().ends_with("-toolchain.drv")).collect();
    assert_eq!(toolchains.len(), 1, "recipes with the same packages share one toolchain");
    assert_eq!(e2.tests.len(), 1);
    let order = e2.build_order();
    let pos = |n: &str| order.iter().position(|p| p.name().starts_with(n)).unwrap();
    assert!(pos("base") < pos("middle") && pos("middle") < pos("top-0.3.drv"));
    assert!(pos("top-0.3.drv") < pos("top-0.3-test-runs"));
    // every .drv is valid in the store with its inputs as references
    for p in &order {
        let info = store.require_path_info(p).unwrap();
        let (drv, _) = e2.get(p).unwrap();
        assert_eq!(info.references, drv.references());
    }
}

/// Copy the recipes somewhere they can be edited.
fn editable_recipes() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for e in fs::read_dir(RECIPES).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), t.path().join(e.file_name())).unwrap();
        }
    }
    t
}

/// name (without hash) → .drv path, for every derivation of an evaluation
fn by_name(eval: &Evaluation) -> BTreeMap<String, StorePath> {
    eval.derivations.keys().map(|p| (p.name().to_owned(), p.clone())).collect()
}

fn changed(before: &BTreeMap<String, StorePath>, after: &BTreeMap<String, StorePath>) -> BTreeSet<String> {
    before.iter().filter(|(n, p)| after.get(*n) != Some(*p)).map(|(n, _)| n.clone()).collect()
}

#[test]
fn a_change_rebuilds_exactly_what_is_downstream() {
    let dir = editable_recipes();
    let store_dir = tempfile::tempdir().unwrap();
    let top = dir.path().join("top.toml");
    let eval = |_: &str| by_name(&evaluate(store_dir.path(), &top).1);
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let downstream_of_middle = names(&["middle-2.1.drv", "top-0.3.drv", "top-0.3-test-runs.drv"]);

    let before = eval("initial");
    // one byte of a local source
    fs::write(dir.path().join("base-data.txt"), "base dat4\n").unwrap();
    let after = eval("source byte");
    let mut expected = downstream_of_middle.clone();
    expected.insert("base-1.0.drv".into());
    assert_eq!(changed(&before, &after), expected);

    // an environment variable of middle
    let before = after;
    let m = fs::read_to_string(dir.path().join("middle.toml")).unwrap();
    fs::write(dir.path().join("middle.toml"), m.replace("LEVEL = \"3\"", "LEVEL = \"4\"")).unwrap();
    let after = eval("env");
    assert_eq!(changed(&before, &after), downstream_of_middle);

    // a pinned download's hash: only its fetch and what uses it
    let before = after;
    let t = fs::read_to_string(&top).unwrap();
    fs::write(&top, t.replace("sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=", &"1".repeat(64))).unwrap();
    let after = eval("hash");
    assert_eq!(
        changed(&before, &after),
        names(&["payload-0.3.tar.gz.drv", "top-0.3.drv", "top-0.3-test-runs.drv"])
    );

    // a new dependency of top
    let before = after;
    let t = fs::read_to_string(&top).unwrap();
    fs::write(&top, t.replace("run = [\"middle.toml\"]", "run = [\"middle.toml\"]\nbuild = [\"base.toml\"]")).unwrap();
    let after = eval("dependency");
    assert_eq!(changed(&before, &after), names(&["top-0.3.drv", "top-0.3-test-runs.drv"]));

    // and changing nothing changes nothing
    assert!(changed(&after, &eval("again")).is_empty());
}

/// Nix string literal with `${name}` interpolations for the store paths in
/// `subst`, so Nix sees the same inputs through string context.
fn nix_string(value: &str, subst: &[(String, String)]) -> String {
    let mut out = String::from("\"");
    let mut rest = value;
    'outer: while !rest.is_empty() {
        for (path, var) in subst {
            if let Some(after) = rest.strip_prefix(path.as_str()) {
                out.push_str(&format!("${{{var}}}"));
                rest = after;
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap();
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' if rest[1..].starts_with('{') => out.push_str("\\$"),
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    out.push('"');
    out
}

/// The same graph written as a Nix expression with `derivation` calls:
/// Nix's own evaluator must give the same `.drv` paths.
#[test]
fn nix_instantiate_gives_the_same_drv_paths() {
    let Some(nix) = Nix::find() else { return };
    let t = tempfile::tempdir().unwrap();
    let top = Path::new(RECIPES).join("top.toml");
    let (store, eval) = evaluate(t.path(), &top);

    // local sources and the toolchain, by their store paths
    let mut sources: Vec<(StorePath, PathBuf, String)> = vec![];
    {
        let mut s2 = LocalStore::open(t.path(), StoreDir::default()).unwrap();
        let (file, name) = (Path::new(RECIPES).join("base-data.txt"), "base-data.txt");
        let p = s2.add_path(&file, name, Ingestion::Recursive).unwrap();
        sources.push((p, file, name.to_owned()));
    }
    let mut subst: Vec<(String, String)> = Vec::new();
    let mut expr = String::from("let\n");
    for (i, (p, file, name)) in sources.iter().enumerate() {
        expr.push_str(&format!("  s{i} = builtins.path {{ path = {}; name = \"{name}\"; }};\n", file.display()));
        subst.push((store.display(p), format!("s{i}")));
    }
    let mut vars = BTreeMap::new();
    for (i, p) in eval.build_order().iter().enumerate() {
        let (drv, _) = eval.get(p).unwrap();
        let outputs = drv.outputs();
        let mut attrs = String::new();
        for (k, v) in drv.env() {
            if outputs.contains_key(k) || k == "outputs" {
                continue;
            }
            attrs.push_str(&format!("    \"{k}\" = {};\n", nix_string(std::str::from_utf8(v).unwrap(), &subst)));
        }
        let args: Vec<String> = drv.args().iter().map(|a| nix_string(a, &subst)).collect();
        // `outputs` is an attribute (a list) exactly where drv set the variable.
        if let Some(o) = drv.env().get("outputs") {
            let outs: Vec<String> = std::str::from_utf8(o).unwrap().split(' ').map(|o| format!("\"{o}\"")).collect();
            attrs.push_str(&format!("    outputs = [ {} ];\n", outs.join(" ")));
        }
        expr.push_str(&format!("  d{i} = derivation {{\n{attrs}    args = [ {} ];\n  }};\n", args.join(" ")));
        for (o, out) in outputs {
            subst.push((store.display(&out.path), format!("d{i}.{o}")));
        }
        // longest first, so a path is never matched by a prefix of another
        subst.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        vars.insert(p.clone(), format!("d{i}"));
    }
    let all: Vec<String> = vars.values().map(|v| format!("{v}.drvPath")).collect();
    expr.push_str(&format!("in [ {} ]\n", all.join(" ")));
    let file = t.path().join("graph.nix");
    fs::write(&file, &expr).unwrap();
    let out = nix.output("nix-instantiate", &["--store", &nix.store_arg(), "--eval", "--strict", "--json", file.to_str().unwrap()]);
    let theirs: Vec<String> = serde_json::from_slice(&out).unwrap();
    let ours: Vec<String> = vars.keys().map(|p| store.display(p)).collect();
    let theirs: BTreeSet<String> = theirs.into_iter().collect();
    let ours: BTreeSet<String> = ours.into_iter().collect();
    let mut diff = String::new();
    for t in theirs.difference(&ours) {
        let name = t.rsplit_once('-').map(|(_, n)| n).unwrap_or(t);
        let base = Path::new(t).file_name().unwrap();
        let nix_drv = fs::read_to_string(nix.dir.path().join("real").join(base)).unwrap_or_default();
        let our_path = ours.iter().find(|o| o.ends_with(name) && o.rsplit_once('-').map(|(_, n)| n) == Some(name));
        let our_drv = our_path.map(|o| fs::read_to_string(t_root(&store, o)).unwrap_or_default()).unwrap_or_default();
        diff.push_str(&format!("nix:  {nix_drv}\nours: {our_drv}\n"));
    }
    assert_eq!(theirs, ours, "{diff}\nexpression:\n{expr}");
}

fn t_root(store: &LocalStore, display: &str) -> PathBuf {
    store.real_path(&store.store_dir().parse_path(display).unwrap())
}
