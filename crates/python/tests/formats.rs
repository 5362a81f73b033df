//! The lock files of one project as uv writes them (tests/fixtures/python):
//! each format read, the same packages found, and the same file chosen
//! for each package from the two formats that name files.

use std::collections::BTreeMap;
use std::path::Path;

use drv_python::lock::select;
use drv_python::{Choice, LockFormat, PythonLock, Target};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/python");

fn read(file: &str) -> PythonLock {
    let path = Path::new(FIXTURES).join(file);
    let format = LockFormat::of(&path).unwrap();
    PythonLock::parse(format, file, &std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn cpython311() -> Target {
    Target { python: (3, 11), python_full: "3.11.2".into(), glibc: (2, 36), arch: "x86_64".into() }
}

const EXPECTED: [(&str, &str); 8] = [
    ("blinker", "1.9.0"),
    ("click", "8.5.1"),
    ("flask", "3.1.3"),
    ("itsdangerous", "2.2.0"),
    ("jinja2", "3.1.6"),
    ("markupsafe", "3.0.4"),
    ("pyyaml", "6.0.2"),
    ("werkzeug", "3.1.9"),
];

fn versions(lock: &PythonLock, roots: &[String]) -> Vec<(String, String)> {
    lock.closure(roots, &cpython311()).unwrap().into_iter().map(|p| (p.name.clone(), p.version.clone())).collect()
}

#[test]
fn the_three_formats_lock_the_same_packages() {
    let expected: Vec<(String, String)> = EXPECTED.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    for file in ["uv.lock", "pylock.toml", "requirements.txt"] {
        assert_eq!(versions(&read(file), &[]), expected, "{file}");
    }
}

#[test]
fn uv_lock_gives_one_packages_closure() {
    let lock = read("uv.lock");
    let flask: Vec<String> = versions(&lock, &["Flask".into()]).into_iter().map(|(n, _)| n).collect();
    assert_eq!(flask, ["blinker", "click", "flask", "itsdangerous", "jinja2", "markupsafe", "werkzeug"]);
    assert_eq!(versions(&lock, &["jinja2".into()]).len(), 2, "jinja2 needs markupsafe only");
}

#[test]
fn uv_lock_edges_apply_under_their_markers_and_forked_versions_stay_apart() {
    let h = |c: char| std::iter::repeat_n(c, 64).collect::<String>();
    let text = format!(
        r#"version = 1
revision = 3
requires-python = ">=3.9"

[[package]]
name = "app"
version = "0.1.0"
source = {{ virtual = "." }}
dependencies = [
    {{ name = "click" }},
    {{ name = "numpy", version = "1.26.4", marker = "python_full_version < '3.10'" }},
    {{ name = "numpy", version = "2.1.0", marker = "python_full_version >= '3.10'" }},
]

[[package]]
name = "click"
version = "8.1.7"
source = {{ registry = "https://index.invalid/simple" }}
dependencies = [{{ name = "colorama", marker = "sys_platform == 'win32'" }}]
wheels = [{{ url = "https://index.invalid/p/click-8.1.7-py3-none-any.whl", hash = "sha256:{a}" }}]

[[package]]
name = "colorama"
version = "0.4.6"
source = {{ registry = "https://index.invalid/simple" }}
wheels = [{{ url = "https://index.invalid/p/colorama-0.4.6-py2.py3-none-any.whl", hash = "sha256:{b}" }}]

[[package]]
name = "numpy"
version = "1.26.4"
source = {{ registry = "https://index.invalid/simple" }}
sdist = {{ url = "https://index.invalid/p/numpy-1.26.4.tar.gz", hash = "sha256:{c}" }}

[[package]]
name = "numpy"
version = "2.1.0"
source = {{ registry = "https://index.invalid/simple" }}
wheels = [{{ url = "https://index.invalid/p/numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", hash = "sha256:{d}" }}]
"#,
        a = h('a'),
        b = h('b'),
        c = h('c'),
        d = h('d')
    );
    let lock = PythonLock::parse(LockFormat::UvLock, "uv.lock", &text).unwrap();
    let got = versions(&lock, &[]);
    assert_eq!(got, [("click".to_string(), "8.1.7".to_string()), ("numpy".into(), "2.1.0".into())]);
    let old = Target { python: (3, 9), python_full: "3.9.18".into(), ..cpython311() };
    let got: Vec<(String, String)> = lock.closure(&[], &old).unwrap().into_iter().map(|p| (p.name.clone(), p.version.clone())).collect();
    assert_eq!(got, [("click".to_string(), "8.1.7".to_string()), ("numpy".into(), "1.26.4".into())]);
}

#[test]
fn the_same_file_is_chosen_from_uv_lock_and_pylock() {
    let t = cpython311();
    let choose = |lock: &PythonLock| -> BTreeMap<String, Choice> {
        lock.closure(&[], &t).unwrap().into_iter().map(|p| (p.name.clone(), select(p, &p.files, &t).unwrap())).collect()
    };
    let (uv, pylock) = (choose(&read("uv.lock")), choose(&read("pylock.toml")));
    // The same files (pylock.toml names them normalized: pyyaml-…, not PyYAML-…).
    let hashes = |m: &BTreeMap<String, Choice>| m.iter().map(|(n, c)| (n.clone(), c.file().sha256.clone())).collect::<Vec<_>>();
    assert_eq!(hashes(&uv), hashes(&pylock));
    let file = |name: &str| uv[name].file().filename.clone();
    assert_eq!(file("flask"), "flask-3.1.3-py3-none-any.whl");
    assert!(file("markupsafe").starts_with("markupsafe-3.0.4-cp311-cp311-manylinux") && file("markupsafe").contains("x86_64"), "{}", file("markupsafe"));
    assert!(file("pyyaml").starts_with("PyYAML-6.0.2-cp311-cp311-manylinux"), "{}", file("pyyaml"));
    // Every chosen file's hash is one the requirements file allows too.
    let req = read("requirements.txt");
    for (name, choice) in &uv {
        assert!(req.packages[name].allows(&choice.file().sha256), "{name}");
    }
    // For CPython 3.11 on an older C library, markupsafe's only fitting
    // file would be its sdist.
    let old = Target { glibc: (2, 12), ..t.clone() };
    let lock = read("uv.lock");
    let m = &lock.packages["markupsafe"];
    assert!(matches!(select(m, &m.files, &old).unwrap(), Choice::Sdist(_)));
}

#[test]
fn malformed_toml_locks_say_where() {
    let bad = |format: LockFormat, text: &str| PythonLock::parse(format, "f.lock", text).unwrap_err().to_string();
    let e = bad(LockFormat::UvLock, "version = 1\n[[package]]\nname = \"a\"\nversion = \"1\"\nsource = { registry = \"r\" }\nwheels = [{ url = \"a-1-py3-none-any.whl\", hash = \"md5:00\" }]\n");
    assert!(e.contains("package \"a\"") && e.contains("`wheels`") && e.contains("not sha256:HEX"), "{e}");
    let e = bad(LockFormat::UvLock, "version = 1\n[[package]]\nname = \"a\"\nsource = { git = \"x\" }\n");
    assert!(e.contains("git source"), "{e}");
    let e = bad(LockFormat::UvLock, "version = 2\n");
    assert!(e.contains("version = 2"), "{e}");
    let e = bad(LockFormat::Pylock, "lock-version = \"2.0\"\n");
    assert!(e.contains("lock-version"), "{e}");
    let e = bad(LockFormat::Pylock, "lock-version = \"1.0\"\n[[packages]]\nname = \"a\"\nversion = \"1\"\nwheels = [{ name = \"a-1-py3-none-any.whl\", hashes = { sha512 = \"00\" } }]\n");
    assert!(e.contains("no sha256"), "{e}");
    let e = bad(LockFormat::Pylock, "lock-version = \"1.0\"\n[[packages]]\nname = \"a\"\nversion = \"1\"\ndirectory = { path = \".\" }\n");
    assert!(e.contains("`directory`"), "{e}");
    let e = bad(LockFormat::Pylock, "lock-version = \"1.0\"\n[[packages]\n");
    assert!(e.contains("f.lock") && e.contains("line 2"), "{e}");
}
