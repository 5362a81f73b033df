//! Wheel file names (PEP 427, "File name convention"; PEP 491) and the
//! tags they carry (PEP 425, "Compatibility Tags for Built Distributions").

use std::fmt;
use std::str::FromStr;

use crate::name::normalize;

/// One compatibility tag: `{python}-{abi}-{platform}`, e.g.
/// `cp311-cp311-manylinux_2_17_x86_64` or `py3-none-any`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag {
    pub python: String,
    pub abi: String,
    pub platform: String,
}

impl Tag {
    pub fn new(python: &str, abi: &str, platform: &str) -> Self {
        Self { python: python.to_owned(), abi: abi.to_owned(), platform: platform.to_owned() }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.python, self.abi, self.platform)
    }
}

/// A wheel's file name, parsed: `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`,
/// each tag field possibly a `.`-separated set ("compressed tag sets").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WheelName {
    /// The project name, normalized (PEP 503).
    pub name: String,
    pub version: pep440_rs::Version,
    /// The build tag: a number, then optional letters (`1`, `2b`).
    pub build: Option<String>,
    pub python: Vec<String>,
    pub abi: Vec<String>,
    pub platform: Vec<String>,
}

/// Why a file name is not a wheel's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WheelNameError {
    #[error("{0:?} is not a wheel file name (it does not end in .whl)")]
    NotAWheel(String),
    #[error("{0:?} is not a wheel file name: expected NAME-VERSION[-BUILD]-PYTHON-ABI-PLATFORM.whl")]
    Fields(String),
    #[error("{name:?}: version {version:?}: {problem}")]
    Version { name: String, version: String, problem: String },
    #[error("{name:?}: build tag {build:?} does not start with a digit")]
    Build { name: String, build: String },
}

impl FromStr for WheelName {
    type Err = WheelNameError;

    fn from_str(file: &str) -> Result<Self, Self::Err> {
        let stem = file.strip_suffix(".whl").ok_or_else(|| WheelNameError::NotAWheel(file.to_owned()))?;
        let parts: Vec<&str> = stem.split('-').collect();
        let (name, version, build, tags) = match parts.as_slice() {
            [n, v, p, a, pl] => (*n, *v, None, [*p, *a, *pl]),
            [n, v, b, p, a, pl] => (*n, *v, Some(*b), [*p, *a, *pl]),
            _ => return Err(WheelNameError::Fields(file.to_owned())),
        };
        if name.is_empty() || tags.iter().any(|t| t.is_empty() || t.split('.').any(str::is_empty)) {
            return Err(WheelNameError::Fields(file.to_owned()));
        }
        let version = pep440_rs::Version::from_str(version).map_err(|e| WheelNameError::Version {
            name: file.to_owned(),
            version: version.to_owned(),
            problem: e.to_string(),
        })?;
        if let Some(b) = build {
            if !b.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(WheelNameError::Build { name: file.to_owned(), build: b.to_owned() });
            }
        }
        let split = |t: &str| t.split('.').map(str::to_owned).collect::<Vec<_>>();
        Ok(WheelName {
            name: normalize(name),
            version,
            build: build.map(str::to_owned),
            python: split(tags[0]),
            abi: split(tags[1]),
            platform: split(tags[2]),
        })
    }
}

impl WheelName {
    /// Every tag the wheel declares (the product of its tag sets).
    pub fn tags(&self) -> impl Iterator<Item = Tag> + '_ {
        self.python.iter().flat_map(move |p| {
            self.abi.iter().flat_map(move |a| self.platform.iter().map(move |pl| Tag::new(p, a, pl)))
        })
    }
}

/// Whether `file` names a source distribution: `NAME-VERSION.tar.gz` (PEP
/// 625) or the older `.zip`.
pub fn is_sdist(file: &str) -> bool {
    file.ends_with(".tar.gz") || file.ends_with(".zip")
}

/// `file` with its project name escaped as PEP 427 (wheels) and PEP 625
/// (sdists) write it: lower case, every run of `-`, `_` and `.` one `_`.
/// Indexes list older files by the name their author typed
/// (`PyYAML-6.0.2-….whl`), lock files by the escaped one
/// (`pyyaml-6.0.2-….whl`): `drv lock` records the escaped one, so a file
/// is one download, one store path, whichever lock named it.
pub fn canonical_file_name(file: &str) -> String {
    // A wheel's name part ends at its first `-`; an sdist's at the last
    // `-` before its version, which starts with a digit.
    let split = if is_sdist(file) {
        file.char_indices().filter(|&(i, c)| c == '-' && file[i + 1..].starts_with(|d: char| d.is_ascii_digit())).map(|(i, _)| i).last()
    } else {
        file.find('-')
    };
    let Some(at) = split else { return file.to_owned() };
    crate::name::collapse_separators(&file[..at], '_') + &file[at..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_recorded_with_escaped_project_names() {
        assert_eq!(
            canonical_file_name("PyYAML-6.0.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
            "pyyaml-6.0.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
        );
        assert_eq!(canonical_file_name("python-dateutil-2.8.2.tar.gz"), "python_dateutil-2.8.2.tar.gz");
        assert_eq!(canonical_file_name("zope.interface-6.0.zip"), "zope_interface-6.0.zip");
        assert_eq!(canonical_file_name("flask-3.1.3-py3-none-any.whl"), "flask-3.1.3-py3-none-any.whl");
    }

    #[test]
    fn wheel_names_parse_with_compressed_tag_sets_and_build_tags() {
        let w: WheelName = "markupsafe-3.0.4-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl".parse().unwrap();
        assert_eq!((w.name.as_str(), w.version.to_string().as_str(), w.build.as_deref()), ("markupsafe", "3.0.4", None));
        assert_eq!(w.platform, ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64"]);
        assert_eq!(w.tags().count(), 3);
        let w: WheelName = "Foo_Bar-1.0-2b-py2.py3-none-any.whl".parse().unwrap();
        assert_eq!((w.name.as_str(), w.build.as_deref()), ("foo-bar", Some("2b")));
        assert_eq!(w.tags().map(|t| t.to_string()).collect::<Vec<_>>(), ["py2-none-any", "py3-none-any"]);
    }

    #[test]
    fn malformed_wheel_names_are_refused() {
        for bad in ["flask-3.1.3.tar.gz", "flask-3.1.3-py3-none.whl", "flask-x.y!-py3-none-any.whl", "-1.0-py3-none-any.whl", "a-1.0-b-py3-none-any.whl", "a-1.0-py3..x-none-any.whl", "a-1.0-1-2-py3-none-any.whl"] {
            assert!(bad.parse::<WheelName>().is_err(), "{bad}");
        }
    }
}
