//! Mirror resolution for `mirror://NAME/path` URLs.
//!
//! drv names no package registry's host anywhere in its source: a mirror is
//! a name resolved at run time, in this order:
//! 1. the configuration's `[mirrors]` table and `DRV_MIRROR_<NAME>`;
//! 2. for `debian`, the Debian archive this machine's apt already uses
//!    (the first `deb` source serving `main`, preferring a non-security one);
//!    for `debian-security`, apt's security archive, else the `debian`
//!    mirror's sibling `…/debian-security` (the archive's own layout);
//! 3. for `pypi`, the index pip is configured with (`PIP_INDEX_URL`,
//!    `pip config list`), else the default index the installed pip reports.
//!    The value is a "simple" index base URL (PEP 503).
//!
//! Resolution is lazy (nothing is probed until a mirror URL is fetched) and
//! each name is resolved at most once per [`Mirrors`] value.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// What can go wrong resolving a mirror.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(
        "unknown mirror {name:?}: configure it with `[mirrors] {name} = \"https://...\"` in \
         the config file ({config}) or the environment variable DRV_MIRROR_{}",
        name.to_ascii_uppercase().replace('-', "_")
    )]
    Unknown { name: String, config: String },
    #[error("mirror {name:?} is not configured and {probe} found none{}", detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    NotFound { name: String, probe: String, detail: Option<String> },
    #[error("{url:?} is not a mirror URL (expected mirror://NAME/path)")]
    NotAMirrorUrl { url: String },
}

pub type Result<T, E = MirrorError> = std::result::Result<T, E>;

/// Where the system's own package tool settings are looked up. Tests point
/// these at temporary files and a Python that does not exist.
#[derive(Clone, Debug)]
pub struct SystemSources {
    /// apt's configuration directory (`/etc/apt`): `sources.list` and
    /// `sources.list.d/`.
    pub apt_dir: PathBuf,
    /// The Python whose pip is asked (`python3`).
    pub python: OsString,
    /// `PIP_INDEX_URL` as set in the environment.
    pub pip_index_url: Option<String>,
}

impl SystemSources {
    /// This machine: `/etc/apt`, `python3` on `PATH`, this process's
    /// `PIP_INDEX_URL`.
    pub fn from_env() -> Self {
        Self {
            apt_dir: PathBuf::from("/etc/apt"),
            python: OsString::from("python3"),
            pip_index_url: std::env::var("PIP_INDEX_URL").ok().filter(|v| !v.is_empty()),
        }
    }

    /// Nothing from the system: only configured mirrors resolve.
    pub fn none() -> Self {
        Self { apt_dir: PathBuf::from("/nonexistent"), python: OsString::from("/nonexistent/python3"), pip_index_url: None }
    }
}

/// Resolves mirror names to base URLs; caches what it resolved.
#[derive(Debug)]
pub struct Mirrors {
    configured: BTreeMap<String, String>,
    system: SystemSources,
    resolved: Mutex<BTreeMap<String, String>>,
}

impl Mirrors {
    /// Mirrors from the configuration, falling back to `system`.
    pub fn new(configured: BTreeMap<String, String>, system: SystemSources) -> Self {
        Self { configured, system, resolved: Mutex::new(BTreeMap::new()) }
    }

    /// The base URL of mirror `name`. The first call for a name may read
    /// apt's sources or run pip; later calls return the cached answer.
    pub fn resolve(&self, name: &str) -> Result<String> {
        if let Some(url) = self.configured.get(name) {
            return Ok(url.clone());
        }
        if let Some(url) = self.resolved.lock().expect("mirror cache poisoned").get(name) {
            return Ok(url.clone());
        }
        let url = match name {
            "debian" => debian_from_apt(&self.system.apt_dir)?.ok_or_else(|| MirrorError::NotFound {
                name: name.to_owned(),
                probe: format!("apt's sources under {}", self.system.apt_dir.display()),
                detail: None,
            })?,
            "debian-security" => {
                let sources = read_apt_sources(&self.system.apt_dir);
                match pick_security_archive(&sources) {
                    Some(url) => url,
                    None => {
                        let debian = self.resolve("debian")?;
                        let base = debian.trim_end_matches('/');
                        match base.strip_suffix("/debian") {
                            Some(parent) => format!("{parent}/debian-security"),
                            None => {
                                return Err(MirrorError::NotFound {
                                    name: name.to_owned(),
                                    probe: format!("apt's sources under {}", self.system.apt_dir.display()),
                                    detail: Some(format!("and mirror debian ({debian}) does not end in /debian")),
                                })
                            }
                        }
                    }
                }
            }
            "pypi" => pypi_from_pip(&self.system)?,
            _ => {
                return Err(MirrorError::Unknown {
                    name: name.to_owned(),
                    config: "/etc/drv/config.toml or ~/.config/drv/config.toml".to_owned(),
                })
            }
        };
        self.resolved.lock().expect("mirror cache poisoned").insert(name.to_owned(), url.clone());
        Ok(url)
    }

    /// `mirror://NAME/path` → the mirror's base joined with `path` (one
    /// slash between them).
    pub fn resolve_url(&self, url: &str) -> Result<String> {
        let rest = url
            .strip_prefix("mirror://")
            .ok_or_else(|| MirrorError::NotAMirrorUrl { url: url.to_owned() })?;
        let (name, path) = rest.split_once('/').unwrap_or((rest, ""));
        if name.is_empty() {
            return Err(MirrorError::NotAMirrorUrl { url: url.to_owned() });
        }
        let base = self.resolve(name)?;
        Ok(join_url(&base, path))
    }
}

/// `base` and `path` with exactly one slash between them.
pub fn join_url(base: &str, path: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'))
}

/// One `deb` source of apt's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AptSource {
    pub uri: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
}

impl AptSource {
    fn is_security(&self) -> bool {
        self.uri.trim_end_matches('/').ends_with("-security")
            || self.suites.iter().any(|s| s.ends_with("-security") || s.ends_with("/updates"))
    }
}

/// The `deb` lines of a one-line-style `sources.list` (`deb-src` and
/// comments skipped; `[option=value ...]` blocks ignored).
pub fn parse_sources_list(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb ").or_else(|| line.strip_prefix("deb\t")) else { continue };
        let mut rest = rest.trim_start();
        if rest.starts_with('[') {
            match rest.find(']') {
                Some(end) => rest = rest[end + 1..].trim_start(),
                None => continue,
            }
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else { continue };
        out.push(AptSource {
            uri: uri.to_owned(),
            suites: vec![suite.to_owned()],
            components: words.map(str::to_owned).collect(),
        });
    }
    out
}

/// The `deb` stanzas of a deb822 `.sources` file, one [`AptSource`] per URI.
/// Stanzas with `Enabled: no` are skipped.
pub fn parse_deb822(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for stanza in deb822_stanzas(text) {
        let field = |name: &str| {
            stanza.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).unwrap_or("")
        };
        if !field("Types").split_whitespace().any(|t| t == "deb") || field("Enabled").eq_ignore_ascii_case("no") {
            continue;
        }
        let suites: Vec<String> = field("Suites").split_whitespace().map(str::to_owned).collect();
        let components: Vec<String> = field("Components").split_whitespace().map(str::to_owned).collect();
        for uri in field("URIs").split_whitespace() {
            out.push(AptSource { uri: uri.to_owned(), suites: suites.clone(), components: components.clone() });
        }
    }
    out
}

/// Stanzas as (field, value) pairs; continuation lines are joined to the
/// field's value with a space, comments dropped.
fn deb822_stanzas(text: &str) -> Vec<Vec<(String, String)>> {
    let mut stanzas = vec![Vec::new()];
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            if !stanzas.last().is_some_and(Vec::is_empty) {
                stanzas.push(Vec::new());
            }
            continue;
        }
        let current: &mut Vec<(String, String)> = stanzas.last_mut().expect("never empty");
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            current.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    stanzas.retain(|s| !s.is_empty());
    stanzas
}

/// The source serving Debian's main archive: the first whose components
/// include `main`, preferring one that is not a security archive.
pub fn pick_debian_archive(sources: &[AptSource]) -> Option<String> {
    let with_main = || sources.iter().filter(|s| s.components.iter().any(|c| c == "main"));
    with_main()
        .find(|s| !s.is_security())
        .or_else(|| with_main().next())
        .map(|s| s.uri.clone())
}

/// The security archive among `sources`: the first serving `main`.
pub fn pick_security_archive(sources: &[AptSource]) -> Option<String> {
    sources.iter().find(|s| s.is_security() && s.components.iter().any(|c| c == "main")).map(|s| s.uri.clone())
}

/// Every `deb` source under `apt_dir`, in apt's reading order:
/// `sources.list`, then `sources.list.d/*.list` and `*.sources` by name.
pub fn read_apt_sources(apt_dir: &Path) -> Vec<AptSource> {
    let mut sources = Vec::new();
    if let Ok(text) = fs::read_to_string(apt_dir.join("sources.list")) {
        sources.extend(parse_sources_list(&text));
    }
    let mut parts: Vec<PathBuf> = fs::read_dir(apt_dir.join("sources.list.d"))
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    parts.sort();
    for part in parts {
        let Ok(text) = fs::read_to_string(&part) else { continue };
        match part.extension().and_then(|e| e.to_str()) {
            Some("list") => sources.extend(parse_sources_list(&text)),
            Some("sources") => sources.extend(parse_deb822(&text)),
            _ => {}
        }
    }
    sources
}

/// The Debian archive apt uses on this machine, if any.
pub fn debian_from_apt(apt_dir: &Path) -> Result<Option<String>> {
    Ok(pick_debian_archive(&read_apt_sources(apt_dir)))
}

/// The index URL in `pip config list` output: the environment's
/// (`:env:.index-url`) wins over `install.index-url`, which wins over
/// `global.index-url`, as in pip.
pub fn parse_pip_config_list(output: &str) -> Option<String> {
    let mut found = BTreeMap::new();
    for line in output.lines() {
        let Some((key, value)) = line.split_once('=') else { continue };
        let value = value.trim().trim_matches(|c| c == '\'' || c == '"');
        if !value.is_empty() {
            found.insert(key.trim().to_owned(), value.to_owned());
        }
    }
    [":env:.index-url", "install.index-url", "global.index-url"]
        .iter()
        .find_map(|key| found.remove(*key))
}

fn pypi_from_pip(system: &SystemSources) -> Result<String> {
    if let Some(url) = &system.pip_index_url {
        return Ok(url.clone());
    }
    let not_found = |detail: String| MirrorError::NotFound {
        name: "pypi".to_owned(),
        probe: format!("{}'s pip", system.python.to_string_lossy()),
        detail: Some(detail),
    };
    let run = |args: &[&str]| -> std::result::Result<String, String> {
        let out = Command::new(&system.python)
            .args(args)
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    if let Some(url) = run(&["-m", "pip", "config", "list"]).ok().as_deref().and_then(parse_pip_config_list) {
        return Ok(url);
    }
    // No index configured: the default is whatever the installed pip uses,
    // which keeps its host out of drv's source.
    let url = run(&["-c", "from pip._internal.models.index import PyPI; print(PyPI.simple_url)"]).map_err(not_found)?;
    let url = url.trim();
    if url.is_empty() {
        return Err(not_found("pip printed no index URL".to_owned()));
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_sources_skip_deb_src_options_and_comments() {
        let text = "\
# deb http://old.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/k.gpg] http://a.example/debian bookworm main contrib # trailing
deb http://b.example/debian-security bookworm-security main
";
        let s = parse_sources_list(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0], AptSource {
            uri: "http://a.example/debian".into(),
            suites: vec!["bookworm".into()],
            components: vec!["main".into(), "contrib".into()],
        });
        assert_eq!(pick_debian_archive(&s).as_deref(), Some("http://a.example/debian"));
    }

    #[test]
    fn deb822_sources_skip_security_when_another_serves_main() {
        let text = "\
Types: deb
URIs: http://sec.example/debian-security
Suites: trixie-security
Components: main
Signed-By: /usr/share/keyrings/k.gpg

# disabled
Types: deb
URIs: http://off.example/debian
Suites: trixie
Components: main
Enabled: no

Types: deb deb-src
URIs: http://main.example/debian
  http://second.example/debian
Suites: trixie trixie-updates
Components: contrib main
";
        let s = parse_deb822(text);
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(s[2].uri, "http://second.example/debian");
        assert_eq!(pick_debian_archive(&s).as_deref(), Some("http://main.example/debian"));
        // only a security archive: better than nothing
        assert_eq!(pick_debian_archive(&s[..1]).as_deref(), Some("http://sec.example/debian-security"));
        assert_eq!(pick_security_archive(&s).as_deref(), Some("http://sec.example/debian-security"));
        assert_eq!(pick_security_archive(&s[1..]), None);
        // nothing serving main
        let contrib_only = parse_sources_list("deb http://x.example/debian trixie contrib\n");
        assert_eq!(pick_debian_archive(&contrib_only), None);
    }

    #[test]
    fn apt_directory_is_read_in_order() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("sources.list.d")).unwrap();
        fs::write(t.path().join("sources.list.d/b.sources"), "Types: deb\nURIs: http://b.example/d\nSuites: s\nComponents: main\n").unwrap();
        fs::write(t.path().join("sources.list.d/a.list"), "deb http://a.example/d s contrib\n").unwrap();
        fs::write(t.path().join("sources.list.d/c.list.save"), "deb http://c.example/d s main\n").unwrap();
        assert_eq!(debian_from_apt(t.path()).unwrap().as_deref(), Some("http://b.example/d"));
        fs::write(t.path().join("sources.list"), "deb http://first.example/d s main\n").unwrap();
        assert_eq!(debian_from_apt(t.path()).unwrap().as_deref(), Some("http://first.example/d"));
    }

    #[test]
    fn pip_config_prefers_install_over_global() {
        let out = "global.index-url='https://g.example/simple'\ninstall.index-url='https://i.example/simple'\nglobal.timeout='60'\n";
        assert_eq!(parse_pip_config_list(out).as_deref(), Some("https://i.example/simple"));
        assert_eq!(parse_pip_config_list("global.index-url='https://g.example/simple'\n").as_deref(), Some("https://g.example/simple"));
        assert_eq!(parse_pip_config_list("global.cert='/etc/ssl/x.pem'\n"), None);
        let with_env = ":env:.index-url='https://e.example/simple'\ninstall.index-url='https://i.example/simple'\n";
        assert_eq!(parse_pip_config_list(with_env).as_deref(), Some("https://e.example/simple"));
        assert_eq!(parse_pip_config_list(""), None);
    }

    #[test]
    fn configured_mirrors_win_and_unknown_names_say_how_to_configure() {
        let m = Mirrors::new(
            BTreeMap::from([("debian".to_owned(), "https://d.example/debian/".to_owned())]),
            SystemSources::none(),
        );
        assert_eq!(m.resolve_url("mirror://debian/pool/main/x.deb").unwrap(), "https://d.example/debian/pool/main/x.deb");
        let err = m.resolve_url("mirror://nosuch/x").unwrap_err().to_string();
        assert!(err.contains("[mirrors] nosuch = ") && err.contains("DRV_MIRROR_NOSUCH"), "{err}");
        assert!(matches!(m.resolve_url("https://x.example/"), Err(MirrorError::NotAMirrorUrl { .. })));
        // not configured and nothing on the system
        assert!(matches!(m.resolve("pypi"), Err(MirrorError::NotFound { .. })));
    }

    #[test]
    fn pip_index_url_from_the_environment_is_used_and_cached() {
        let system = SystemSources { pip_index_url: Some("https://p.example/simple".into()), ..SystemSources::none() };
        let m = Mirrors::new(BTreeMap::new(), system);
        assert_eq!(m.resolve_url("mirror://pypi/six/").unwrap(), "https://p.example/simple/six/");
        assert_eq!(m.resolved.lock().unwrap().get("pypi").map(String::as_str), Some("https://p.example/simple"));
    }
}
