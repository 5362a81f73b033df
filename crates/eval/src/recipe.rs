//! The recipe format (see `docs/recipes.md`): its serde schema, and the
//! checks that turn a parsed file into a [`Recipe`] whose every value is
//! valid, with errors that point into the file.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use drv_formats::{NameProblem, Sha256, StorePath};
use drv_sandbox::MAX_ARG_STRLEN;
use serde::Deserialize;
use toml::Spanned;

use crate::error::Diagnostic;

/// `path` relative to `dir` (both absolute and normal), with `..` where
/// it is not below it.
fn relative_to(dir: &Path, path: &Path) -> String {
    let d: Vec<_> = dir.components().collect();
    let p: Vec<_> = path.components().collect();
    let common = d.iter().zip(&p).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..d.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        ".".to_owned()
    } else {
        out.to_string_lossy().into_owned()
    }
}

// ---- the file as written -------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RecipeFile {
    name: Spanned<String>,
    version: Spanned<String>,
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    source: Vec<Spanned<SourceEntry>>,
    #[serde(default)]
    dependencies: DependenciesEntry,
    toolchain: Option<ToolchainEntry>,
    prebuilt: Option<ToolchainEntry>,
    #[serde(default)]
    build: BuildEntry,
    outputs: Option<Spanned<Vec<Spanned<String>>>>,
    source_date_epoch: Option<u64>,
    main: Option<Spanned<String>>,
    #[serde(default)]
    test: Vec<Spanned<TestEntry>>,
    python: Option<Spanned<PythonEntry>>,
}

impl RecipeFile {
    /// The keys that say how to build, in the file's order of sections:
    /// what a recipe whose output drv makes by its own rules (`[prebuilt]`,
    /// `[python]`) cannot have.
    fn build_keys(&self) -> impl Iterator<Item = &'static str> {
        let b = &self.build;
        let phases = b.script.is_some() || [&b.unpack, &b.configure, &b.build, &b.install, &b.check].iter().any(|p| p.is_some());
        [
            (!self.source.is_empty(), "[[source]]"),
            (self.toolchain.is_some(), "[toolchain]"),
            (phases || !b.env.is_empty(), "[build]"),
            (!self.test.is_empty(), "[[test]]"),
            (self.outputs.is_some(), "outputs"),
        ]
        .into_iter()
        .filter_map(|(present, key)| present.then_some(key))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PythonEntry {
    interpreter: Spanned<String>,
    lock: Spanned<String>,
    packages: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SourceEntry {
    url: Option<Spanned<String>>,
    pypi: Option<Spanned<PypiEntry>>,
    path: Option<Spanned<String>>,
    sha256: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PypiEntry {
    project: String,
    version: String,
    file: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct DependenciesEntry {
    #[serde(default)]
    build: Vec<Spanned<String>>,
    #[serde(default)]
    run: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ToolchainEntry {
    debian: Spanned<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct BuildEntry {
    script: Option<Spanned<String>>,
    unpack: Option<Spanned<String>>,
    configure: Option<Spanned<String>>,
    build: Option<Spanned<String>>,
    install: Option<Spanned<String>>,
    check: Option<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TestEntry {
    name: Spanned<String>,
    script: Spanned<String>,
    #[serde(default)]
    dependencies: Vec<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, Spanned<String>>,
}

// ---- the checked recipe ----------------------------------------------------

/// A source of a recipe, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A download: `https://`, `http://`, `file://` or `mirror://NAME/path`,
    /// pinned by the sha256 of the file.
    Url { url: String, sha256: Sha256, name: String },
    /// A file of the Python package index, found through its simple API.
    PythonIndex { project: String, version: String, file: String, sha256: Sha256 },
    /// A file or directory next to the recipe, added to the store by content.
    Local { path: PathBuf, name: String },
}

/// How the package is built: one script, or Nix-style phases.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Phases {
    pub script: Option<String>,
    pub unpack: Option<String>,
    pub configure: Option<String>,
    pub build: Option<String>,
    pub install: Option<String>,
    pub check: Option<String>,
}

/// A test of the package: a derivation whose output is the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Test {
    pub name: String,
    pub script: String,
    pub dependencies: Vec<PathBuf>,
    pub env: BTreeMap<String, String>,
}

/// A Python environment (`[python]`): packages of a lock file, installed
/// for an interpreter, one store path a package, joined into one
/// environment (a virtual environment over the interpreter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonEnv {
    /// The interpreter's recipe (absolute).
    pub interpreter: PathBuf,
    /// The lock file (absolute): a requirements file in hash-checking
    /// mode, a `pylock.toml` or a `uv.lock`.
    pub lock: PathBuf,
    /// The packages asked for (as written); their dependency closure
    /// comes from the lock. Empty: every package of the lock.
    pub packages: Vec<String>,
}

/// A recipe whose every value has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// The recipe file, absolute.
    pub file: PathBuf,
    pub name: String,
    pub version: String,
    pub sources: Vec<Source>,
    /// Recipes (absolute paths) needed only to build.
    pub build_dependencies: Vec<PathBuf>,
    /// Recipes needed to build and at run time; propagated to dependents.
    pub run_dependencies: Vec<PathBuf>,
    /// Debian packages whose files form the build's root file system.
    pub toolchain: Vec<String>,
    /// Debian packages whose shared libraries, headers and pkg-config
    /// files make up the output (`[prebuilt] debian`), relocated into it;
    /// such a recipe has no sources, build or toolchain of its own.
    pub prebuilt: Vec<String>,
    pub phases: Phases,
    pub env: BTreeMap<String, String>,
    pub outputs: Vec<String>,
    pub source_date_epoch: u64,
    /// The program `drv run` starts, relative to the `out` output.
    pub main: Option<String>,
    pub tests: Vec<Test>,
    /// `[python]`: the recipe is a Python environment.
    pub python: Option<PythonEnv>,
}

/// Where in the file each dependency was named, for errors found later
/// (a missing file, a cycle).
#[derive(Debug, Clone, Default)]
pub struct Spans {
    pub dependencies: BTreeMap<PathBuf, Range<usize>>,
    /// `toolchain.debian`, where a name the lock does not cover is shown.
    pub toolchain: Option<Range<usize>>,
    /// `prebuilt.debian`, likewise.
    pub prebuilt: Option<Range<usize>>,
    /// `python.lock` and `python.packages`, where a lock file that is not
    /// locked, or a package it does not have, is shown.
    pub python_lock: Option<Range<usize>>,
    pub python_packages: Vec<(String, Range<usize>)>,
}

impl Recipe {
    /// The recipe as TOML that [`parse`] reads back, from the same file,
    /// to an equal `Recipe`: every value written explicitly (source names,
    /// outputs, `source-date-epoch`), paths relative to the recipe's
    /// directory, strings escaped by the `toml` crate. What `parse` drops
    /// (`description`, comments, spellings of hashes) is not kept.
    pub fn to_toml(&self) -> String {
        use toml::{Table, Value};
        let dir = self.file.parent().unwrap_or(Path::new("/"));
        let rel = |p: &Path| Value::String(relative_to(dir, p));
        let strings = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
        let env = |e: &BTreeMap<String, String>| Value::Table(e.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect());
        let mut t = Table::new();
        t.insert("name".into(), Value::String(self.name.clone()));
        t.insert("version".into(), Value::String(self.version.clone()));
        if let Some(m) = &self.main {
            t.insert("main".into(), Value::String(m.clone()));
        }
        // A prebuilt recipe has neither (drv decides both).
        if self.prebuilt.is_empty() {
            t.insert("outputs".into(), strings(&self.outputs));
        }
        t.insert("source-date-epoch".into(), Value::Integer(self.source_date_epoch as i64));
        let sources: Vec<Value> = self
            .sources
            .iter()
            .map(|src| {
                let mut e = Table::new();
                match src {
                    Source::Url { url, sha256, name } => {
                        e.insert("url".into(), Value::String(url.clone()));
                        e.insert("sha256".into(), Value::String(sha256.to_hex()));
                        e.insert("name".into(), Value::String(name.clone()));
                    }
                    Source::PythonIndex { project, version, file, sha256 } => {
                        let mut pypi = Table::new();
                        pypi.insert("project".into(), Value::String(project.clone()));
                        pypi.insert("version".into(), Value::String(version.clone()));
                        pypi.insert("file".into(), Value::String(file.clone()));
                        e.insert("pypi".into(), Value::Table(pypi));
                        e.insert("sha256".into(), Value::String(sha256.to_hex()));
                    }
                    Source::Local { path, name } => {
                        e.insert("path".into(), rel(path));
                        e.insert("name".into(), Value::String(name.clone()));
                    }
                }
                Value::Table(e)
            })
            .collect();
        if !sources.is_empty() {
            t.insert("source".into(), Value::Array(sources));
        }
        let mut deps = Table::new();
        deps.insert("build".into(), Value::Array(self.build_dependencies.iter().map(|p| rel(p)).collect()));
        deps.insert("run".into(), Value::Array(self.run_dependencies.iter().map(|p| rel(p)).collect()));
        t.insert("dependencies".into(), Value::Table(deps));
        if !self.toolchain.is_empty() {
            let mut tc = Table::new();
            tc.insert("debian".into(), strings(&self.toolchain));
            t.insert("toolchain".into(), Value::Table(tc));
        }
        if !self.prebuilt.is_empty() {
            let mut pb = Table::new();
            pb.insert("debian".into(), strings(&self.prebuilt));
            t.insert("prebuilt".into(), Value::Table(pb));
        }
        let mut build = Table::new();
        let p = &self.phases;
        for (key, value) in [
            ("script", &p.script),
            ("unpack", &p.unpack),
            ("configure", &p.configure),
            ("build", &p.build),
            ("install", &p.install),
            ("check", &p.check),
        ] {
            if let Some(v) = value {
                build.insert(key.into(), Value::String(v.clone()));
            }
        }
        build.insert("env".into(), env(&self.env));
        if self.prebuilt.is_empty() {
            t.insert("build".into(), Value::Table(build));
        }
        let tests: Vec<Value> = self
            .tests
            .iter()
            .map(|test| {
                let mut e = Table::new();
                e.insert("name".into(), Value::String(test.name.clone()));
                e.insert("script".into(), Value::String(test.script.clone()));
                e.insert("dependencies".into(), Value::Array(test.dependencies.iter().map(|p| rel(p)).collect()));
                e.insert("env".into(), env(&test.env));
                Value::Table(e)
            })
            .collect();
        if !tests.is_empty() {
            t.insert("test".into(), Value::Array(tests));
        }
        if let Some(py) = &self.python {
            let mut e = Table::new();
            e.insert("interpreter".into(), rel(&py.interpreter));
            e.insert("lock".into(), rel(&py.lock));
            e.insert("packages".into(), strings(&py.packages));
            t.insert("python".into(), Value::Table(e));
            // An environment is made by drv: nothing to build.
            t.remove("build");
            t.remove("outputs");
        }
        toml::to_string(&t).unwrap_or_default()
    }

    /// The derivation name: `<name>-<version>`.
    pub fn full_name(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }

    /// Every recipe this one refers to.
    pub fn all_dependencies(&self) -> impl Iterator<Item = &PathBuf> {
        self.build_dependencies
            .iter()
            .chain(self.runtime_dependencies())
            .chain(self.tests.iter().flat_map(|t| &t.dependencies))
    }

    /// The recipes this one needs at run time, which its dependents get
    /// too: `dependencies.run`, and a Python environment's interpreter.
    pub fn runtime_dependencies(&self) -> impl Iterator<Item = &PathBuf> {
        self.run_dependencies.iter().chain(self.python.as_ref().map(|p| &p.interpreter))
    }
}

/// Parse and check the recipe in `text`, read from `file` (absolute).
pub fn parse(file: &Path, text: &str) -> Result<(Recipe, Spans), Diagnostic> {
    let raw: RecipeFile = toml::from_str(text).map_err(|e| toml_diagnostic(file, text, &e))?;
    let at = |span: Range<usize>, msg: String| Diagnostic::spanning(file, text, span, msg);
    let dir = file.parent().unwrap_or(Path::new("/"));
    let mut spans = Spans::default();

    let name = raw.name.get_ref().clone();
    let version = raw.version.get_ref().clone();
    for (what, value) in [("name", &raw.name), ("version", &raw.version)] {
        let v = value.get_ref();
        if let Some(problem) = NameProblem::of(v) {
            return Err(at(value.span(), format!("invalid {what} {v:?}: {problem}")));
        }
    }
    // The longest store name made of name and version is the `.drv`
    // file's, `<name>-<version>.drv` (Nix: writeDerivation in
    // src/libstore/derivations.cc); outputs and tests add more, below.
    check_store_name(&format!("{name}-{version}.drv"), "its .drv file").map_err(|m| at(raw.name.span(), m))?;

    let mut sources = Vec::new();
    for entry in &raw.source {
        sources.push(check_source(file, text, dir, entry)?);
    }

    let mut dep = |s: &Spanned<String>| -> Result<PathBuf, Diagnostic> {
        let rel = s.get_ref();
        if !rel.ends_with(".toml") {
            return Err(at(s.span(), format!("dependency {rel:?} is not a recipe file (*.toml)")));
        }
        let path = normalize(&dir.join(rel));
        spans.dependencies.entry(path.clone()).or_insert(s.span());
        Ok(path)
    };
    let build_dependencies = raw.dependencies.build.iter().map(&mut dep).collect::<Result<Vec<_>, _>>()?;
    let run_dependencies = raw.dependencies.run.iter().map(&mut dep).collect::<Result<Vec<_>, _>>()?;

    let mut tests = Vec::new();
    for t in &raw.test {
        let t_ref = t.get_ref();
        let tname = t_ref.name.get_ref();
        if let Some(problem) = NameProblem::of(tname) {
            return Err(at(t_ref.name.span(), format!("invalid test name {tname:?}: {problem}")));
        }
        if tests.iter().any(|x: &Test| &x.name == tname) {
            return Err(at(t_ref.name.span(), format!("a second test named {tname:?}")));
        }
        // The test's derivation is `<name>-<version>-test-<test>` (see
        // `lower`), its .drv file that and `.drv`.
        check_store_name(&format!("{name}-{version}-test-{tname}.drv"), "the .drv file of this test")
            .map_err(|m| at(t_ref.name.span(), m))?;
        check_string(&t_ref.script, "the test's script").map_err(|m| at(t_ref.script.span(), m))?;
        tests.push(Test {
            name: tname.clone(),
            script: t_ref.script.get_ref().clone(),
            dependencies: t_ref.dependencies.iter().map(&mut dep).collect::<Result<Vec<_>, _>>()?,
            env: check_env(file, text, &t_ref.env)?,
        });
    }

    // Nix's rules for `outputs` (prim_derivationStrict in
    // src/libexpr/primops.cc): no duplicates, none called `drv`, and each
    // output's store name `<name>-<version>-<output>` valid.
    let outputs = match &raw.outputs {
        None => vec!["out".to_owned()],
        Some(o) => {
            let mut list: Vec<String> = Vec::new();
            for x in o.get_ref() {
                let v = x.get_ref();
                if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(at(x.span(), format!("invalid output name {v:?}: use letters, digits and `_`")));
                }
                if v == "drv" {
                    return Err(at(x.span(), "invalid output name \"drv\": Nix reserves it (`<name>.drv` is the derivation itself)".into()));
                }
                if list.contains(v) {
                    return Err(at(x.span(), format!("duplicate output {v:?}")));
                }
                if v != "out" {
                    check_store_name(&format!("{name}-{version}-{v}"), &format!("output {v}")).map_err(|m| at(x.span(), m))?;
                }
                list.push(v.clone());
            }
            if !list.iter().any(|x| x == "out") {
                return Err(at(o.span(), "outputs must include \"out\"".into()));
            }
            list
        }
    };

    let debian_names = |entry: &Option<ToolchainEntry>, key: &str, empty: &str| -> Result<(Vec<String>, Option<Range<usize>>), Diagnostic> {
        let Some(t) = entry else { return Ok((vec![], None)) };
        let list = t.debian.get_ref().clone();
        if list.is_empty() {
            return Err(at(t.debian.span(), format!("{key}.debian is empty: {empty}")));
        }
        for p in &list {
            if !drv_debian::relation::valid_package_name(p) {
                return Err(at(t.debian.span(), format!("{p:?} is not a Debian package name")));
            }
        }
        Ok((list, Some(t.debian.span())))
    };
    let (toolchain, toolchain_span) = debian_names(&raw.toolchain, "toolchain", "name the Debian packages the build needs")?;
    spans.toolchain = toolchain_span;
    let (prebuilt, prebuilt_span) = debian_names(&raw.prebuilt, "prebuilt", "name the Debian packages the output is made of")?;
    if let Some(span) = &prebuilt_span {
        // drv makes a prebuilt output by its own rules: nothing to build.
        if let Some(what) = raw.build_keys().next() {
            return Err(at(
                span.clone(),
                format!("a [prebuilt] recipe is made from its Debian packages alone; it cannot also have {what}"),
            ));
        }
    }
    spans.prebuilt = prebuilt_span;

    let b = &raw.build;
    if b.script.is_some() && [&b.unpack, &b.configure, &b.build, &b.install, &b.check].iter().any(|p| p.is_some()) {
        return Err(Diagnostic::at(file, text, text.find("[build]").unwrap_or(0), "[build] has both `script` and phases: use one or the other"));
    }
    let phase = |p: &Option<Spanned<String>>, what: &str| -> Result<Option<String>, Diagnostic> {
        match p {
            None => Ok(None),
            Some(p) => {
                check_string(p, &format!("build.{what}")).map_err(|m| at(p.span(), m))?;
                Ok(Some(p.get_ref().clone()))
            }
        }
    };
    let phases = Phases {
        script: phase(&b.script, "script")?,
        unpack: phase(&b.unpack, "unpack")?,
        configure: phase(&b.configure, "configure")?,
        build: phase(&b.build, "build")?,
        install: phase(&b.install, "install")?,
        check: phase(&b.check, "check")?,
    };

    let python = match &raw.python {
        None => None,
        Some(py) => {
            // An environment is made by drv's own rules, like a prebuilt output.
            let prebuilt = raw.prebuilt.is_some().then_some("[prebuilt]");
            if let Some(what) = prebuilt.into_iter().chain(raw.build_keys()).next() {
                return Err(at(
                    py.span(),
                    format!("a [python] recipe is an environment drv makes from its lock file; it cannot also have {what}"),
                )
                .with_help("put the build in a recipe of its own that depends on this one"));
            }
            let py = py.get_ref();
            let interp = py.interpreter.get_ref();
            if !interp.ends_with(".toml") {
                return Err(at(py.interpreter.span(), format!("interpreter {interp:?} is not a recipe file (*.toml)")));
            }
            let interpreter = normalize(&dir.join(interp));
            spans.dependencies.entry(interpreter.clone()).or_insert(py.interpreter.span());
            let lock = inside_recipe_dir(dir, py.lock.get_ref()).map_err(|m| at(py.lock.span(), m.replace("source path", "lock file")))?;
            if drv_python::LockFormat::of(&lock).is_none() {
                return Err(at(
                    py.lock.span(),
                    format!("{:?} is not a Python lock file drv reads", py.lock.get_ref()),
                )
                .with_help("name a requirements file in hash-checking mode (*.txt), a pylock.toml (PEP 751) or a uv.lock"));
            }
            spans.python_lock = Some(py.lock.span());
            let mut packages = Vec::new();
            for p in py.packages.iter().flat_map(|p| p.get_ref()) {
                if !drv_python::name::is_valid(p.get_ref()) {
                    return Err(at(p.span(), format!("{:?} is not a Python project name", p.get_ref())));
                }
                spans.python_packages.push((p.get_ref().clone(), p.span()));
                packages.push(p.get_ref().clone());
            }
            if let Some(p) = &py.packages {
                if packages.is_empty() {
                    return Err(at(p.span(), "python.packages is empty: name the packages, or leave it out for every package of the lock".into()));
                }
            }
            Some(PythonEnv { interpreter, lock, packages })
        }
    };

    let main = match &raw.main {
        None => None,
        Some(m) => {
            let v = m.get_ref();
            if v.starts_with('/') || v.split('/').any(|c| c == ".." || c.is_empty()) {
                return Err(at(m.span(), format!("main {v:?} must be a path relative to the output, like \"bin/app\"")));
            }
            Some(v.clone())
        }
    };

    Ok((
        Recipe {
            file: file.to_owned(),
            name,
            version,
            sources,
            build_dependencies,
            run_dependencies,
            toolchain,
            prebuilt,
            phases,
            env: check_env(file, text, &b.env)?,
            outputs,
            source_date_epoch: raw.source_date_epoch.unwrap_or(1),
            main,
            tests,
            python,
        },
        spans,
    ))
}

/// Environment variables the build sets itself and a recipe may not.
const RESERVED_ENV: &[&str] = &[
    "name", "system", "builder", "out", "src", "srcs", "PATH", "HOME", "TMPDIR", "TZ", "LC_ALL",
    "SOURCE_DATE_EPOCH", "NIX_BUILD_CORES", "PYTHONHASHSEED", "outputHash", "outputHashMode", "drvToolchain",
];

/// Why `name` cannot be the store name of `what`, in a sentence, or
/// nothing when it can.
fn check_store_name(name: &str, what: &str) -> Result<(), String> {
    match NameProblem::of(name) {
        None => Ok(()),
        Some(problem @ NameProblem::TooLong { .. }) => Err(format!("the store name of {what}, {name:?}, is too long: {problem}")),
        Some(problem) => Err(format!("the store name of {what}, {name:?}, is invalid: {problem}")),
    }
}

/// A string that reaches the builder's argv or environment: `execve`
/// takes C strings, so a NUL byte cannot pass (Nix refuses it when it
/// builds; drv when it evaluates).
fn check_string(value: &Spanned<String>, what: &str) -> Result<(), String> {
    match value.get_ref().find('\0') {
        Some(i) => Err(format!("{what} contains a NUL byte (at byte {i}), which no program can be passed")),
        None => Ok(()),
    }
}

fn check_env(
    file: &Path,
    text: &str,
    env: &BTreeMap<Spanned<String>, Spanned<String>>,
) -> Result<BTreeMap<String, String>, Diagnostic> {
    let mut out = BTreeMap::new();
    for (k, v) in env {
        let key = k.get_ref();
        let valid = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(Diagnostic::spanning(file, text, k.span(), format!("{key:?} is not a valid environment variable name")));
        }
        if RESERVED_ENV.contains(&key.as_str()) {
            return Err(Diagnostic::spanning(file, text, k.span(), format!("{key} is set by drv itself and cannot be overridden")));
        }
        check_string(v, &format!("the value of {key}")).map_err(|m| Diagnostic::spanning(file, text, v.span(), m))?;
        // `KEY=value` and its NUL is one string of the builder's
        // environment, which Linux limits (execve(2)); a script has no
        // such limit (see `lower`), so large data belongs in a source.
        let len = key.len() + 1 + v.get_ref().len() + 1;
        if len > MAX_ARG_STRLEN {
            return Err(Diagnostic::spanning(
                file,
                text,
                v.span(),
                format!(
                    "the value of {key} is {} bytes: over Linux's limit of {MAX_ARG_STRLEN} bytes (128 KiB) for one environment string `{key}=...`",
                    v.get_ref().len()
                ),
            )
            .with_help("put the data in a file next to the recipe and add it as a `path` source"));
        }
        out.insert(key.clone(), v.get_ref().clone());
    }
    Ok(out)
}

fn check_source(file: &Path, text: &str, dir: &Path, entry: &Spanned<SourceEntry>) -> Result<Source, Diagnostic> {
    let at = |span: Range<usize>, msg: String| Diagnostic::spanning(file, text, span, msg);
    let s = entry.get_ref();
    let kinds = [s.url.is_some(), s.pypi.is_some(), s.path.is_some()].iter().filter(|k| **k).count();
    if kinds != 1 {
        return Err(at(entry.span(), "a [[source]] has exactly one of `url`, `pypi` or `path`".into()));
    }
    let sha256 = |what: &str| -> Result<Sha256, Diagnostic> {
        match &s.sha256 {
            Some(h) => Sha256::parse(h.get_ref()).map_err(|e| at(h.span(), format!("invalid sha256: {e}"))),
            None => {
                let hint = match what {
                    w if w.starts_with("file://") => match drv_store::hash_file(Path::new(&w["file://".len()..])) {
                        Ok(h) => format!("add sha256 = \"{}\"", h.to_sri()),
                        Err(_) => format!("run `drv prefetch {w}` and add the hash it prints"),
                    },
                    w => format!("run `drv prefetch {w}` and add the hash it prints"),
                };
                Err(at(entry.span(), format!("source {what} has no sha256")).with_help(hint))
            }
        }
    };
    let name_override = match &s.name {
        Some(n) => {
            StorePath::validate_name(n.get_ref()).map_err(|_| at(n.span(), format!("invalid source name {:?}", n.get_ref())))?;
            Some(n.get_ref().clone())
        }
        None => None,
    };
    if let Some(url) = &s.url {
        let u = url.get_ref();
        let scheme_ok = ["https://", "http://", "file://", "mirror://"].iter().any(|p| u.starts_with(p));
        if !scheme_ok {
            return Err(at(url.span(), format!("unsupported URL {u:?}: use https://, http://, file:// or mirror://NAME/path")));
        }
        if let Some(rest) = u.strip_prefix("mirror://") {
            if !rest.contains('/') || rest.starts_with('/') {
                return Err(at(url.span(), format!("{u:?}: a mirror URL is mirror://NAME/path")));
            }
        }
        let h = sha256(u)?;
        let name = match name_override {
            Some(n) => n,
            None => {
                let last = u.trim_end_matches('/').rsplit('/').next().unwrap_or("source");
                let last = last.split(['?', '#']).next().unwrap_or(last);
                let sanitized: String = last
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() || "+-._?=".contains(c) { c } else { '_' })
                    .collect();
                let sanitized = sanitized.trim_start_matches('.').to_owned();
                if sanitized.is_empty() { "source".to_owned() } else { sanitized }
            }
        };
        StorePath::validate_name(&name).map_err(|_| at(url.span(), format!("cannot derive a store name from {u:?}; add name = \"...\"")))?;
        return Ok(Source::Url { url: u.clone(), sha256: h, name });
    }
    if let Some(p) = &s.pypi {
        let pr = p.get_ref();
        if !pr.file.ends_with(".whl") && !pr.file.ends_with(".tar.gz") && !pr.file.ends_with(".zip") {
            return Err(at(p.span(), format!("{:?} is not a wheel or source distribution file name", pr.file)));
        }
        StorePath::validate_name(&pr.file).map_err(|_| at(p.span(), format!("{:?} is not a valid store name", pr.file)))?;
        let h = sha256(&format!("the Python package index file {}", pr.file))?;
        return Ok(Source::PythonIndex { project: pr.project.clone(), version: pr.version.clone(), file: pr.file.clone(), sha256: h });
    }
    let p = s.path.as_ref().expect("one kind");
    if s.sha256.is_some() {
        return Err(at(entry.span(), "a local `path` source is hashed by content; remove sha256".into()));
    }
    let path = inside_recipe_dir(dir, p.get_ref()).map_err(|m| at(p.span(), m))?;
    let name = match name_override {
        Some(n) => n,
        None => path.file_name().and_then(|n| n.to_str()).unwrap_or("source").to_owned(),
    };
    StorePath::validate_name(&name).map_err(|_| at(p.span(), format!("cannot use {name:?} as a store name; add name = \"...\"")))?;
    Ok(Source::Local { path, name })
}

/// The file `rel` names for a recipe in `dir`, which must be in or below
/// `dir` once every symlink is resolved: a recipe copies its `path`
/// sources into the world-readable store (and into every cache its
/// closure is pushed to), so one from elsewhere must not name `/etc/shadow`
/// or `../../.ssh/id_ed25519`. This is the rule of Nix flakes' pure
/// evaluation, which refuses paths outside the flake's source tree.
/// A symlink *inside* a source directory is copied as a symlink, not
/// followed, so it exposes nothing.
fn inside_recipe_dir(dir: &Path, rel: &str) -> Result<PathBuf, String> {
    if Path::new(rel).is_absolute() {
        return Err(format!("source path {rel:?} is absolute: a recipe reads only files in and below its own directory"));
    }
    let path = normalize(&dir.join(rel));
    let real_dir = std::fs::canonicalize(dir).map_err(|e| format!("cannot resolve the recipe's directory {}: {e}", dir.display()))?;
    let real = std::fs::canonicalize(&path).map_err(|e| format!("source path {rel:?} ({}): {e}", path.display()))?;
    if !real.starts_with(&real_dir) {
        return Err(format!(
            "source path {rel:?} is {}, outside the recipe's directory {}: a recipe reads only files in and below its own directory",
            real.display(),
            real_dir.display()
        ));
    }
    Ok(path)
}

/// Lexically normalise `a/./b/../c` (no symlinks resolved, so a recipe's
/// identity is the path the user wrote).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Turn a TOML or schema error into a diagnostic, with the near miss for
/// an unknown key.
fn toml_diagnostic(file: &Path, text: &str, e: &toml::de::Error) -> Diagnostic {
    let message = e.message().trim().to_owned();
    let mut d = match e.span() {
        // A syntax error's span is often empty: mark the token there.
        Some(span) if !span.is_empty() => Diagnostic::spanning(file, text, span, message.clone()),
        span => Diagnostic::at(file, text, span.map_or(0, |s| s.start), message.clone()),
    };
    // serde: "unknown field `sha265`, expected one of `url`, `pypi`, ..."
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((field, expected)) = rest.split_once('`') {
            let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            d.message = format!("unknown key `{field}`");
            let best = candidates
                .iter()
                .map(|c| (strsim::jaro_winkler(field, c), *c))
                .filter(|(score, _)| *score > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0));
            d.help = Some(match best {
                Some((_, c)) => format!("did you mean `{c}`?"),
                None => format!("expected one of {}", candidates.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")),
            });
        }
    }
    d
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    const RECIPES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../recipes");

    /// The repository's recipes with one character inserted, removed or
    /// replaced: near-valid recipe files.
    fn mutated_recipe() -> impl Strategy<Value = String> {
        let mut seeds: Vec<String> = std::fs::read_dir(RECIPES)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.file_name().is_some_and(|n| n != "drv.lock"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        seeds.sort();
        (proptest::sample::select(seeds), any::<proptest::sample::Index>(), any::<char>(), 0u8..3).prop_map(|(text, at, c, how)| {
            let mut chars: Vec<char> = text.chars().collect();
            let i = at.index(chars.len());
            match how {
                0 => chars.insert(i, c),
                1 => {
                    chars.remove(i);
                }
                _ => chars[i] = c,
            }
            chars.into_iter().collect()
        })
    }

    /// What recipe parsing promises for any text: no panic, the same
    /// answer every time, and what it accepts renders ([`Recipe::to_toml`])
    /// to text that parses to the same recipe.
    fn check_recipe(text: &str) -> Result<(), TestCaseError> {
        let file = Path::new("/r/x.toml");
        match (parse(file, text), parse(file, text)) {
            (Ok((a, _)), Ok((b, _))) => {
                prop_assert_eq!(&a, &b);
                let rendered = a.to_toml();
                match parse(file, &rendered) {
                    Ok((again, _)) => prop_assert_eq!(again, a, "rendered:\n{}", rendered),
                    Err(e) => prop_assert!(false, "accepted, but its rendering is refused: {}\n{}", e, rendered),
                }
            }
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            _ => prop_assert!(false, "parsing is not deterministic"),
        }
        Ok(())
    }

    /// Every recipe of the repository, from its own file (so its local
    /// sources and dependencies resolve), renders to what parses the same.
    #[test]
    fn repository_recipes_render_to_what_parses_the_same() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut seen = 0;
        for dir in ["recipes", "tests/recipes"] {
            let dir = normalize(&std::path::absolute(root.join(dir)).unwrap());
            for entry in std::fs::read_dir(&dir).unwrap() {
                let file = entry.unwrap().path();
                if file.extension().is_some_and(|e| e == "toml") {
                    let text = std::fs::read_to_string(&file).unwrap();
                    let (recipe, _) = parse(&file, &text).unwrap();
                    let rendered = recipe.to_toml();
                    let (again, _) = parse(&file, &rendered).unwrap_or_else(|e| panic!("{e}\n{rendered}"));
                    assert_eq!(again, recipe, "{}", file.display());
                    seen += 1;
                }
            }
        }
        assert!(seen >= 10, "{seen}");
    }

    proptest! {
        #[test]
        fn mutated_recipes_parse_or_are_refused(text in mutated_recipe()) {
            check_recipe(&text)?;
        }
    }

    /// The recipe parser's fuzz target: runs for `DRV_FUZZ_SECONDS`
    /// seconds (none: returns at once); `bench/fuzz.sh` runs it.
    #[test]
    fn fuzz_recipe() {
        drv_formats::fuzz::fuzz("recipe", mutated_recipe(), |t| check_recipe(&t));
    }
}

