//! `drv why-rebuild`: a change to a recipe's build step, a source, a
//! dependency three levels down or a toolchain package is named, with the
//! recipe's (or lock's) file and line. Nothing is built: evaluation writes
//! the derivations compared.

mod common;

use std::fs;
use std::path::PathBuf;

use common::TestStore;

const TOOLS: &str = "[toolchain]\ndebian = [\"dash\", \"coreutils\"]\n";

/// a ← b ← c ← d (each a build dependency of the next); a has a source.
fn chain(s: &TestStore) -> PathBuf {
    let dir = s.scratch("recipes");
    common::write_lock(&dir);
    fs::write(dir.join("a.txt"), "a\n").unwrap();
    let dep = |name: &str, on: &str| {
        format!(
            "name = \"{name}\"\nversion = \"1\"\n[dependencies]\nbuild = [\"{on}.toml\"]\n{TOOLS}[build]\nscript = '''\nmkdir $out\ncat ${on}/* > $out/{name}\n'''\n"
        )
    };
    fs::write(
        dir.join("a.toml"),
        format!("name = \"a\"\nversion = \"1\"\n[[source]]\npath = \"a.txt\"\n{TOOLS}[build]\nscript = '''\nmkdir $out\ncat $src > $out/a\n'''\n"),
    )
    .unwrap();
    fs::write(dir.join("b.toml"), dep("b", "a")).unwrap();
    fs::write(dir.join("c.toml"), dep("c", "b")).unwrap();
    fs::write(dir.join("d.toml"), dep("d", "c")).unwrap();
    dir.join("d.toml")
}

fn eval(s: &TestStore, recipe: &PathBuf) -> String {
    s.ok(&["eval", recipe.to_str().unwrap()]).trim().to_owned()
}

fn why(s: &TestStore, recipe: &PathBuf, since: &str) -> (String, serde_json::Value) {
    let text = s.ok(&["why-rebuild", recipe.to_str().unwrap(), "--since", since]);
    let json = s.ok(&["why-rebuild", "--json", recipe.to_str().unwrap(), "--since", since]);
    (text, serde_json::from_str(&json).unwrap())
}

/// The deepest changed derivation on the first chain of inputs, and the
/// names along the way.
fn leaf(json: &serde_json::Value) -> (Vec<String>, serde_json::Value) {
    let mut names = vec![json["name"].as_str().unwrap().to_owned()];
    let mut at = json.clone();
    while let Some(next) = at["inputs"].as_array().and_then(|i| i.first()).cloned() {
        names.push(next["name"].as_str().unwrap().to_owned());
        at = next;
    }
    (names, at)
}

fn line_of(file: &PathBuf, needle: &str) -> usize {
    fs::read_to_string(file).unwrap().lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn a_changed_build_step_three_levels_down_is_named_with_its_line() {
    let s = TestStore::new();
    let d = chain(&s);
    let before = eval(&s, &d);
    let a = s.scratch("recipes/a.toml");
    let text = fs::read_to_string(&a).unwrap().replace("cat $src > $out/a", "cat $src > $out/a; echo changed >> $out/a");
    fs::write(&a, text).unwrap();
    let (text, json) = why(&s, &d, &before);
    let (names, at) = leaf(&json);
    assert_eq!(names, ["d-1", "c-1", "b-1", "a-1"], "{json:#}");
    let change = &at["changes"][0];
    assert_eq!(change["kind"], "script", "{json:#}");
    assert_eq!(change["new"], "cat $src > $out/a; echo changed >> $out/a", "{json:#}");
    assert_eq!(change["file"], a.to_str().unwrap(), "{json:#}");
    assert_eq!(change["line"], line_of(&a, "echo changed"), "{json:#}");
    // Nothing else is blamed: only what changed at each level.
    assert_eq!(at["changes"].as_array().unwrap().len(), 1, "{json:#}");
    for level in [&json, &json["inputs"][0], &json["inputs"][0]["inputs"][0]] {
        assert!(level["changes"].as_array().unwrap().is_empty(), "{level:#}");
    }
    assert!(text.contains(&format!("({}:{})", a.display(), line_of(&a, "echo changed"))), "{text}");
    assert!(text.contains("+ cat $src > $out/a; echo changed >> $out/a"), "{text}");
    assert!(text.contains("because input c-1 changed"), "{text}");
}

#[test]
fn a_changed_source_is_named_with_its_line() {
    let s = TestStore::new();
    let d = chain(&s);
    let before = eval(&s, &d);
    fs::write(s.scratch("recipes/a.txt"), "A\n").unwrap();
    let (text, json) = why(&s, &d, &before);
    let (_, at) = leaf(&json);
    let change = &at["changes"][0];
    assert_eq!(change["kind"], "source", "{json:#}");
    assert_eq!(change["name"], "a.txt", "{json:#}");
    let a = s.scratch("recipes/a.toml");
    assert_eq!(change["line"], line_of(&a, "a.txt"), "{json:#}");
    // The variables naming the source are not differences of their own.
    assert_eq!(at["changes"].as_array().unwrap().len(), 1, "{json:#}");
    assert!(text.contains("source a.txt"), "{text}");
}

#[test]
fn a_changed_toolchain_package_is_named_with_its_lock_entry() {
    let s = TestStore::new();
    let d = chain(&s);
    let before = eval(&s, &d);
    let lock = s.scratch("recipes/drv.lock");
    let text = fs::read_to_string(&lock).unwrap().replace("version = \"9.1-1\"", "version = \"9.1-2\"").replace("coreutils_9.1-1_amd64.deb", "coreutils_9.1-2_amd64.deb");
    assert!(text.contains("9.1-2"), "the test lock no longer pins coreutils 9.1-1");
    fs::write(&lock, text).unwrap();
    let (out, json) = why(&s, &d, &before);
    // Every recipe's toolchain changed; each names the package once.
    let mut at = &json;
    let toolchain = loop {
        let found = at["inputs"].as_array().unwrap().iter().find(|i| i["name"].as_str().unwrap().contains("toolchain"));
        if let Some(t) = found {
            break t.clone();
        }
        at = &at["inputs"].as_array().unwrap()[0];
    };
    let change = toolchain["changes"].as_array().unwrap().iter().find(|c| c["kind"] == "debian-package").unwrap().clone();
    assert_eq!((change["package"].as_str(), change["old"].as_str(), change["new"].as_str()), (Some("coreutils"), Some("9.1-1"), Some("9.1-2")), "{json:#}");
    assert_eq!(change["file"].as_str().unwrap(), lock.to_str().unwrap(), "{json:#}");
    assert_eq!(change["line"], line_of(&lock, "name = \"coreutils\""), "{json:#}");
    assert!(out.contains("Debian package coreutils: 9.1-1 → 9.1-2"), "{out}");
}

#[test]
fn since_an_output_path_and_an_added_dependency() {
    let s = TestStore::new();
    let dir = s.scratch("recipes");
    common::write_lock(&dir);
    let one = dir.join("one.toml");
    fs::write(&one, format!("name = \"one\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'echo one > $out'\n")).unwrap();
    fs::write(dir.join("extra.toml"), format!("name = \"extra\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'echo x > $out'\n")).unwrap();
    let out = s.ok(&["build", "--no-link", one.to_str().unwrap()]);
    // Unchanged: said so.
    let same = s.ok(&["why-rebuild", one.to_str().unwrap(), "--since", out.trim()]);
    assert!(same.contains("nothing to rebuild"), "{same}");
    fs::write(&one, format!("name = \"one\"\nversion = \"1\"\n[dependencies]\nbuild = [\"extra.toml\"]\n{TOOLS}[build]\nscript = 'echo one > $out'\n")).unwrap();
    let (text, json) = why(&s, &one, out.trim());
    let change = json["changes"].as_array().unwrap().iter().find(|c| c["kind"] == "input").unwrap().clone();
    assert_eq!(change["name"], "extra-1", "{json:#}");
    assert_eq!(change["line"], line_of(&one, "extra.toml"), "{json:#}");
    assert!(text.contains("input extra-1 added"), "{text}");
    // Something that is not an earlier build is an error, not a panic.
    let err = s.fails(&["why-rebuild", one.to_str().unwrap(), "--since", "/store/00000000000000000000000000000000-gone"]);
    assert!(err.contains("error"), "{err}");
}

/// A cache filled from an earlier build lacks today's derivation: named,
/// with why it differs from the one the cache has.
#[test]
fn a_cache_miss_names_what_the_cache_lacks_and_why() {
    let s = TestStore::new();
    let dir = s.scratch("recipes");
    common::write_lock(&dir);
    let one = dir.join("one.toml");
    fs::write(&one, format!("name = \"one\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'echo one > $out'\n")).unwrap();
    s.ok(&["build", "--no-link", one.to_str().unwrap()]);
    let key = s.scratch("key.sec");
    let public = s.scratch("key.pub");
    s.ok(&["key", "generate", "--name", "test-1", "--secret-file", key.to_str().unwrap(), "--public-file", public.to_str().unwrap()]);
    let cache = s.scratch("cache");
    let url = format!("file://{}", cache.display());
    // Every output of the evaluation: the package, its toolchain, the downloads.
    let eval: serde_json::Value = serde_json::from_str(&s.ok(&["eval", "--json", one.to_str().unwrap()])).unwrap();
    let outputs: Vec<String> = eval["derivations"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|d| d["outputs"].as_object().unwrap().values().map(|o| o.as_str().unwrap().to_owned()).collect::<Vec<_>>())
        .collect();
    let mut push = vec!["cache", "push", "--to", &url, "--key", key.to_str().unwrap()];
    push.extend(outputs.iter().map(String::as_str));
    s.ok(&push);
    let cached = s.ok(&["why-rebuild", one.to_str().unwrap(), "--substituters", &url]);
    assert!(cached.contains("nothing to build"), "{cached}");

    fs::write(&one, format!("name = \"one\"\nversion = \"1\"\n{TOOLS}[build]\nscript = 'echo two > $out'\n")).unwrap();
    let text = s.ok(&["why-rebuild", one.to_str().unwrap(), "--substituters", &url]);
    assert!(text.contains("lack the outputs of 1 derivation"), "{text}");
    assert!(text.contains("+ echo two > $out"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&s.ok(&["why-rebuild", "--json", one.to_str().unwrap(), "--substituters", &url])).unwrap();
    let first = &json["first"][0];
    assert!(first["drv"].as_str().unwrap().ends_with("-one-1.drv"), "{json:#}");
    assert!(!first["nearest"].is_null(), "{json:#}");
    let change = &first["why"]["changes"][0];
    assert_eq!((change["kind"].as_str(), change["line"].as_u64()), (Some("script"), Some(6)), "{json:#}");
}
