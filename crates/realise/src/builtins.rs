//! The builders drv runs itself, and what their derivations say: the
//! contract between evaluation, which writes these derivations, and
//! realisation, which carries them out. One definition each, used by both.
//!
//! Nix has the same kind of builder (`builtin:fetchurl`, Nix manual,
//! "Advanced Attributes"); drv's reads its download from the environment
//! keys below instead of Nix's `url` alone.

use crate::fetch::FetchSource;

/// The builder of fixed-output downloads (flat sha256), realised by drv.
pub const FETCH_BUILDER: &str = "builtin:fetchurl";

/// The builder of toolchain root file systems: the `.deb`s named by the
/// derivation's `debs` (store paths of its inputs), unpacked and checked
/// by `drv_debian::rootfs::assemble`.
pub const ROOTFS_BUILDER: &str = "builtin:debian-rootfs";

/// The environment variable naming a build's toolchain root file system
/// (a store path); the sandbox mounts it as the build's `/`.
pub const TOOLCHAIN_ENV: &str = "drvToolchain";

const URL: &str = "url";
const PYTHON_INDEX_PROJECT: &str = "pythonIndexProject";
const PYTHON_INDEX_VERSION: &str = "pythonIndexVersion";
const PYTHON_INDEX_FILE: &str = "pythonIndexFile";

/// What a [`FETCH_BUILDER`] derivation downloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Download<'a> {
    /// A URL (`https://`, `file://`, `mirror://NAME/path`).
    Url(&'a str),
    /// A file of a project on the Python index (found through its simple
    /// API, PEP 503); the version is recorded, not used to find it.
    PythonIndexFile { project: &'a str, version: &'a str, file: &'a str },
}

impl<'a> Download<'a> {
    /// The derivation environment that says this download, as `(key, value)`.
    pub fn env(&self) -> Vec<(&'static str, &'a str)> {
        match *self {
            Download::Url(url) => vec![(URL, url)],
            Download::PythonIndexFile { project, version, file } => {
                vec![(PYTHON_INDEX_PROJECT, project), (PYTHON_INDEX_VERSION, version), (PYTHON_INDEX_FILE, file)]
            }
        }
    }
}

/// What to fetch for a [`FETCH_BUILDER`] derivation whose environment
/// variables `env` gives; `None` if it names neither a URL nor an index
/// file.
pub fn fetch_source(env: impl Fn(&str) -> Option<String>) -> Option<FetchSource> {
    match (env(URL), env(PYTHON_INDEX_PROJECT), env(PYTHON_INDEX_FILE)) {
        (Some(url), _, _) => Some(FetchSource::Url(url)),
        (None, Some(project), Some(filename)) => Some(FetchSource::PythonIndexFile { project, filename }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_reads_back_as_its_source() {
        let read = |d: Download| {
            let env = d.env();
            fetch_source(|k| env.iter().find(|(key, _)| *key == k).map(|(_, v)| v.to_string()))
        };
        assert_eq!(read(Download::Url("mirror://debian/a.deb")), Some(FetchSource::Url("mirror://debian/a.deb".into())));
        assert_eq!(
            read(Download::PythonIndexFile { project: "flask", version: "3.1.3", file: "flask-3.1.3-py3-none-any.whl" }),
            Some(FetchSource::PythonIndexFile { project: "flask".into(), filename: "flask-3.1.3-py3-none-any.whl".into() })
        );
        assert_eq!(fetch_source(|_| None), None);
    }
}
