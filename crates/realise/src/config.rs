//! drv's configuration: TOML files layered key by key, then environment
//! variables.
//!
//! Sources, later ones overriding earlier ones:
//! 1. `/etc/drv/config.toml`
//! 2. `$XDG_CONFIG_HOME/drv/config.toml` (default `~/.config/drv/config.toml`)
//! 3. the file named by `DRV_CONFIG`, if set
//! 4. `DRV_MIRROR_<NAME>=URL`, one mirror each (`NAME` lower-cased, `_`
//!    for `-`: `DRV_MIRROR_DEBIAN_SECURITY` sets the mirror
//!    `debian-security`)
//!
//! A missing file is skipped; an unreadable or malformed one, or one with a
//! key drv does not know, is an error naming the file and the key (a typo
//! must not silently fall back to a default).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The environment variable naming one more configuration file, read last.
pub const CONFIG_ENV: &str = "DRV_CONFIG";
/// Prefix of the environment variables that set one mirror each.
pub const MIRROR_ENV_PREFIX: &str = "DRV_MIRROR_";
/// The system-wide configuration file.
pub const SYSTEM_CONFIG: &str = "/etc/drv/config.toml";

/// What can go wrong loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {error}", file.display())]
    Read { file: PathBuf, error: std::io::Error },
    #[error("{}: {message}", file.display())]
    Syntax { file: PathBuf, message: String },
    #[error("{}: unknown key {key:?} (known keys: {})", file.display(), KNOWN_KEYS.join(", "))]
    UnknownKey { file: PathBuf, key: String },
    #[error("{}: mirror {name:?}: {url:?} is not an absolute URL", source_name)]
    InvalidMirror { source_name: String, name: String, url: String },
    #[error("{}: {key}: {error}", file.display())]
    InvalidSize { file: PathBuf, key: &'static str, error: drv_sandbox::SizeError },
}

pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// The top-level keys a configuration file may contain.
pub const KNOWN_KEYS: &[&str] = &[
    "mirrors",
    "substituters",
    "trusted-public-keys",
    "keep-outputs",
    "keep-derivations",
    "cores",
    "max-jobs",
    "use-cgroups",
    "max-processes",
    "max-memory",
    "tmp-size",
];

/// drv's effective configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Mirror name → base URL, for `mirror://NAME/path` URLs. Names not
    /// here may still resolve from the system (see [`crate::mirrors`]).
    pub mirrors: BTreeMap<String, String>,
    /// Binary caches to substitute from, in order.
    pub substituters: Vec<String>,
    /// Keys (`name:base64`) whose signatures on substitutes are trusted.
    pub trusted_public_keys: Vec<String>,
    /// Keep the outputs of derivations that are GC roots.
    pub keep_outputs: bool,
    /// Keep the derivations of paths that are GC roots.
    pub keep_derivations: bool,
    /// Cores each build may use (`None`: all).
    pub cores: Option<usize>,
    /// Builds run at once (`None`: one per core).
    pub max_jobs: Option<usize>,
    /// Put each build in a cgroup when possible (Nix's `use-cgroups`;
    /// `None`: yes).
    pub use_cgroups: Option<bool>,
    /// Processes and threads of one build (`Some(0)`: no limit; `None`:
    /// [`drv_sandbox::DEFAULT_MAX_PROCESSES`]).
    pub max_processes: Option<u64>,
    /// Bytes of memory of one build (`Some(0)`: no limit; `None`: three
    /// quarters of the host's).
    pub max_memory: Option<u64>,
    /// Bytes of each of a build's `/tmp` and `/dev/shm` (`Some(0)`: no
    /// limit; `None`: [`drv_sandbox::DEFAULT_TMP_SIZE`]).
    pub tmp_size: Option<u64>,
}

/// A size in a file: a number of bytes or a string such as `"4G"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl SizeValue {
    fn bytes(&self, file: &Path, key: &'static str) -> Result<u64> {
        match self {
            SizeValue::Bytes(n) => Ok(*n),
            SizeValue::Text(text) => drv_sandbox::parse_size(text)
                .map_err(|error| ConfigError::InvalidSize { file: file.to_owned(), key, error }),
        }
    }
}

/// One file's settings: every key optional, so a later file overrides
/// only what it names.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    mirrors: BTreeMap<String, String>,
    substituters: Option<Vec<String>>,
    trusted_public_keys: Option<Vec<String>>,
    keep_outputs: Option<bool>,
    keep_derivations: Option<bool>,
    cores: Option<usize>,
    max_jobs: Option<usize>,
    use_cgroups: Option<bool>,
    max_processes: Option<u64>,
    max_memory: Option<SizeValue>,
    tmp_size: Option<SizeValue>,
}

impl Config {
    /// The configuration of this process: the standard files (see the
    /// module documentation) and this process's environment.
    pub fn load() -> Result<Self> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Self::load_from(&default_paths(&env), &env)
    }

    /// Layer `paths` in order (missing ones skipped), then the file named
    /// by `DRV_CONFIG` in `env`, then the `DRV_MIRROR_*` variables of `env`.
    /// Reads nothing else, so tests can pass temporary files and a made-up
    /// environment.
    pub fn load_from(paths: &[PathBuf], env: &BTreeMap<String, String>) -> Result<Self> {
        let mut config = Config::default();
        for path in paths {
            if let Some(text) = read_if_present(path)? {
                config.apply(path, &text)?;
            }
        }
        if let Some(extra) = env.get(CONFIG_ENV).filter(|v| !v.is_empty()) {
            // Named explicitly: a missing file is a mistake, not a default.
            let path = PathBuf::from(extra);
            let text = fs::read_to_string(&path).map_err(|error| ConfigError::Read { file: path.clone(), error })?;
            config.apply(&path, &text)?;
        }
        for (var, url) in env {
            if let Some(name) = var.strip_prefix(MIRROR_ENV_PREFIX) {
                // Shell variable names have no `-`.
                let name = name.to_ascii_lowercase().replace('_', "-");
                validate_mirror(var, &name, url)?;
                config.mirrors.insert(name, url.clone());
            }
        }
        Ok(config)
    }

    /// Apply one file's text over `self`, key by key (mirrors name by name).
    fn apply(&mut self, file: &Path, text: &str) -> Result<()> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax { file: file.to_owned(), message: e.to_string() })?;
        // Checked here rather than by serde so the error is structured and
        // names the key even when several are wrong.
        if let Some(key) = table.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
            return Err(ConfigError::UnknownKey { file: file.to_owned(), key: key.clone() });
        }
        let layer: ConfigFile = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Syntax { file: file.to_owned(), message: e.to_string() })?;
        for (name, url) in layer.mirrors {
            validate_mirror(&file.display().to_string(), &name, &url)?;
            self.mirrors.insert(name, url);
        }
        if let Some(v) = layer.substituters {
            self.substituters = v;
        }
        if let Some(v) = layer.trusted_public_keys {
            self.trusted_public_keys = v;
        }
        if let Some(v) = layer.keep_outputs {
            self.keep_outputs = v;
        }
        if let Some(v) = layer.keep_derivations {
            self.keep_derivations = v;
        }
        if layer.cores.is_some() {
            self.cores = layer.cores;
        }
        if layer.max_jobs.is_some() {
            self.max_jobs = layer.max_jobs;
        }
        if layer.use_cgroups.is_some() {
            self.use_cgroups = layer.use_cgroups;
        }
        if layer.max_processes.is_some() {
            self.max_processes = layer.max_processes;
        }
        if let Some(v) = &layer.max_memory {
            self.max_memory = Some(v.bytes(file, "max-memory")?);
        }
        if let Some(v) = &layer.tmp_size {
            self.tmp_size = Some(v.bytes(file, "tmp-size")?);
        }
        Ok(())
    }

    /// The build limits: drv's defaults ([`drv_sandbox::Limits::default`])
    /// with what the configuration sets; 0 is no limit.
    pub fn limits(&self) -> drv_sandbox::Limits {
        let defaults = drv_sandbox::Limits::default();
        let set = |value: Option<u64>, default: Option<u64>| match value {
            Some(0) => None,
            Some(n) => Some(n),
            None => default,
        };
        drv_sandbox::Limits {
            processes: set(self.max_processes, defaults.processes),
            memory: set(self.max_memory, defaults.memory),
            tmp_size: set(self.tmp_size, defaults.tmp_size),
            use_cgroups: self.use_cgroups.unwrap_or(defaults.use_cgroups),
        }
    }
}

/// `/etc/drv/config.toml`, then the user's file under `XDG_CONFIG_HOME`
/// (or `HOME/.config`) as found in `env`.
pub fn default_paths(env: &BTreeMap<String, String>) -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from(SYSTEM_CONFIG)];
    let user_dir = match (env.get("XDG_CONFIG_HOME"), env.get("HOME")) {
        (Some(xdg), _) if !xdg.is_empty() => Some(PathBuf::from(xdg)),
        (_, Some(home)) if !home.is_empty() => Some(Path::new(home).join(".config")),
        _ => None,
    };
    if let Some(dir) = user_dir {
        paths.push(dir.join("drv/config.toml"));
    }
    paths
}

fn read_if_present(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(ConfigError::Read { file: path.to_owned(), error }),
    }
}

/// A mirror base must be an absolute URL with a scheme drv can fetch.
fn validate_mirror(source_name: &str, name: &str, url: &str) -> Result<()> {
    let ok = ["https://", "http://", "file://"].iter().any(|s| url.starts_with(s))
        && reqwest::Url::parse(url).is_ok();
    if ok {
        Ok(())
    } else {
        Err(ConfigError::InvalidMirror { source_name: source_name.to_owned(), name: name.to_owned(), url: url.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn later_files_override_earlier_ones_key_by_key() {
        let t = tempfile::tempdir().unwrap();
        let system = write(
            t.path(),
            "system.toml",
            r#"
            substituters = ["https://cache.one.example"]
            keep-outputs = true
            cores = 4
            [mirrors]
            debian = "https://deb.one.example/debian"
            gnu = "https://gnu.one.example/gnu"
            "#,
        );
        let user = write(
            t.path(),
            "user.toml",
            r#"
            cores = 2
            max-jobs = 3
            trusted-public-keys = ["k:AAAA"]
            [mirrors]
            debian = "https://deb.two.example/debian"
            "#,
        );
        let missing = t.path().join("missing.toml");
        let c = Config::load_from(&[system, missing, user], &BTreeMap::new()).unwrap();
        assert_eq!(c.substituters, vec!["https://cache.one.example"]);
        assert!(c.keep_outputs);
        assert!(!c.keep_derivations);
        assert_eq!(c.cores, Some(2));
        assert_eq!(c.max_jobs, Some(3));
        assert_eq!(c.trusted_public_keys, vec!["k:AAAA"]);
        assert_eq!(c.mirrors["debian"], "https://deb.two.example/debian");
        assert_eq!(c.mirrors["gnu"], "https://gnu.one.example/gnu");
    }

    #[test]
    fn environment_comes_last() {
        let t = tempfile::tempdir().unwrap();
        let user = write(t.path(), "user.toml", "[mirrors]\npypi = \"https://a.example/simple\"\n");
        let extra = write(t.path(), "extra.toml", "keep-derivations = true\n[mirrors]\npypi = \"https://b.example/simple\"\n");
        let env = BTreeMap::from([
            (CONFIG_ENV.to_owned(), extra.display().to_string()),
            ("DRV_MIRROR_DEBIAN".to_owned(), "http://c.example/debian".to_owned()),
            ("DRV_ROOT".to_owned(), "/ignored".to_owned()),
        ]);
        let c = Config::load_from(&[user], &env).unwrap();
        assert!(c.keep_derivations);
        assert_eq!(c.mirrors["pypi"], "https://b.example/simple");
        assert_eq!(c.mirrors["debian"], "http://c.example/debian");
        assert_eq!(c.mirrors.len(), 2);
    }

    #[test]
    fn unknown_keys_name_file_and_key() {
        let t = tempfile::tempdir().unwrap();
        let f = write(t.path(), "c.toml", "cores = 1\nmax_jobs = 2\n");
        match Config::load_from(std::slice::from_ref(&f), &BTreeMap::new()) {
            Err(ConfigError::UnknownKey { file, key }) => {
                assert_eq!(file, f);
                assert_eq!(key, "max_jobs");
            }
            other => panic!("{other:?}"),
        }
        let err = Config::load_from(std::slice::from_ref(&f), &BTreeMap::new()).unwrap_err().to_string();
        assert!(err.contains("c.toml") && err.contains("max_jobs"), "{err}");
    }

    #[test]
    fn bad_values_and_missing_explicit_file_are_errors() {
        let t = tempfile::tempdir().unwrap();
        let f = write(t.path(), "c.toml", "cores = \"many\"\n");
        assert!(matches!(Config::load_from(&[f], &BTreeMap::new()), Err(ConfigError::Syntax { .. })));
        let f = write(t.path(), "d.toml", "[mirrors]\nx = \"not a url\"\n");
        assert!(matches!(Config::load_from(&[f], &BTreeMap::new()), Err(ConfigError::InvalidMirror { .. })));
        let env = BTreeMap::from([(CONFIG_ENV.to_owned(), t.path().join("nope.toml").display().to_string())]);
        assert!(matches!(Config::load_from(&[], &env), Err(ConfigError::Read { .. })));
    }

    #[test]
    fn build_limits_come_from_the_files_and_zero_is_no_limit() {
        let t = tempfile::tempdir().unwrap();
        let defaults = Config::default().limits();
        assert_eq!(defaults, drv_sandbox::Limits::default());
        assert_eq!(defaults.processes, Some(drv_sandbox::DEFAULT_MAX_PROCESSES));
        assert_eq!(defaults.tmp_size, Some(drv_sandbox::DEFAULT_TMP_SIZE));
        assert!(defaults.use_cgroups);

        let f = write(t.path(), "c.toml", "max-processes = 100\nmax-memory = \"2G\"\ntmp-size = 0\nuse-cgroups = false\n");
        let limits = Config::load_from(&[f], &BTreeMap::new()).unwrap().limits();
        assert_eq!(
            limits,
            drv_sandbox::Limits { processes: Some(100), memory: Some(2 << 30), tmp_size: None, use_cgroups: false }
        );
        let f = write(t.path(), "d.toml", "max-memory = 1048576\n");
        assert_eq!(Config::load_from(&[f], &BTreeMap::new()).unwrap().limits().memory, Some(1 << 20));

        let f = write(t.path(), "e.toml", "tmp-size = \"lots\"\n");
        match Config::load_from(std::slice::from_ref(&f), &BTreeMap::new()) {
            Err(e @ ConfigError::InvalidSize { key: "tmp-size", .. }) => {
                assert!(e.to_string().contains("lots") && e.to_string().contains("e.toml"), "{e}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn default_paths_follow_xdg() {
        let env = BTreeMap::from([("HOME".to_owned(), "/home/u".to_owned())]);
        assert_eq!(
            default_paths(&env),
            vec![PathBuf::from(SYSTEM_CONFIG), PathBuf::from("/home/u/.config/drv/config.toml")]
        );
        let env = BTreeMap::from([
            ("HOME".to_owned(), "/home/u".to_owned()),
            ("XDG_CONFIG_HOME".to_owned(), "/x".to_owned()),
        ]);
        assert_eq!(default_paths(&env)[1], PathBuf::from("/x/drv/config.toml"));
    }
}
