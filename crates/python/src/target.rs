//! The interpreter and platform a distribution must fit.

use std::collections::HashMap;

use crate::wheel::{Tag, WheelName};

/// A CPython interpreter on glibc Linux: the tags its wheels may carry,
/// and the values of PEP 508's environment markers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `(3, 11)`.
    pub python: (u32, u32),
    /// `3.11.2`, for `python_full_version`.
    pub python_full: String,
    /// The C library the closure carries: `(2, 36)`.
    pub glibc: (u32, u32),
    /// `x86_64`.
    pub arch: String,
}

/// The oldest glibc a `manylinux_2_X` tag may name (PEP 600: manylinux1
/// is glibc 2.5).
const OLDEST_GLIBC_MINOR: u32 = 5;

impl Target {
    /// The platforms this target accepts, best first: `manylinux_2_X` from
    /// the pinned glibc down to 2.5, with the legacy aliases (PEP 600:
    /// `manylinux2014` = 2.17, `manylinux2010` = 2.12, `manylinux1` = 2.5)
    /// beside the version they alias. `linux_ARCH` is never accepted: such
    /// a wheel was built on one machine for that machine's libraries.
    pub fn platforms(&self) -> Vec<String> {
        let arch = &self.arch;
        let mut out = Vec::new();
        if self.glibc.0 != 2 {
            return out;
        }
        for minor in (OLDEST_GLIBC_MINOR..=self.glibc.1).rev() {
            out.push(format!("manylinux_2_{minor}_{arch}"));
            let legacy = match minor {
                17 => Some("manylinux2014"),
                12 => Some("manylinux2010"),
                5 => Some("manylinux1"),
                _ => None,
            };
            if let Some(l) = legacy {
                out.push(format!("{l}_{arch}"));
            }
        }
        out
    }

    /// Every tag this target accepts, best first, as `packaging.tags`
    /// orders CPython's (`cpython_tags`, then `compatible_tags`): the
    /// interpreter's own ABI, `abi3` for this and older minors, `none`;
    /// then `py3X`/`py3`, platform-specific before `any`.
    pub fn tags(&self) -> Vec<Tag> {
        let (major, minor) = self.python;
        let cp = format!("cp{major}{minor}");
        let platforms = self.platforms();
        let mut tags = Vec::new();
        for abi in [cp.as_str(), "abi3", "none"] {
            for p in &platforms {
                tags.push(Tag::new(&cp, abi, p));
            }
        }
        // abi3 wheels of older minors (PEP 384): cp32-abi3 and later.
        for older in (2..minor).rev() {
            for p in &platforms {
                tags.push(Tag::new(&format!("cp{major}{older}"), "abi3", p));
            }
        }
        let mut pys = vec![format!("py{major}{minor}"), format!("py{major}")];
        pys.extend((0..minor).rev().map(|m| format!("py{major}{m}")));
        for py in &pys {
            for p in &platforms {
                tags.push(Tag::new(py, "none", p));
            }
        }
        tags.push(Tag::new(&cp, "none", "any"));
        for py in &pys {
            tags.push(Tag::new(py, "none", "any"));
        }
        tags
    }

    /// A ranking of tags: lower is better.
    pub fn ranking(&self) -> HashMap<Tag, usize> {
        self.tags().into_iter().enumerate().map(|(i, t)| (t, i)).collect()
    }

    /// The rank of `wheel` (its best tag), `None` when no tag fits.
    pub fn rank(&self, ranking: &HashMap<Tag, usize>, wheel: &WheelName) -> Option<usize> {
        wheel.tags().filter_map(|t| ranking.get(&t).copied()).min()
    }

    /// PEP 508's marker environment for this target.
    pub fn marker_environment(&self) -> pep508_rs::MarkerEnvironment {
        let python_version = format!("{}.{}", self.python.0, self.python.1);
        pep508_rs::MarkerEnvironment::try_from(pep508_rs::MarkerEnvironmentBuilder {
            implementation_name: "cpython",
            implementation_version: &self.python_full,
            os_name: "posix",
            platform_machine: &self.arch,
            platform_python_implementation: "CPython",
            // The kernel is the build machine's, not the target's: markers
            // on it would make the lock machine-dependent.
            platform_release: "",
            platform_system: "Linux",
            platform_version: "",
            python_full_version: &self.python_full,
            python_version: &python_version,
            sys_platform: "linux",
        })
        .expect("versions built from numbers parse")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn cpython311() -> Target {
        Target { python: (3, 11), python_full: "3.11.2".into(), glibc: (2, 36), arch: "x86_64".into() }
    }

    fn rank(t: &Target, file: &str) -> Option<usize> {
        t.rank(&t.ranking(), &file.parse().unwrap())
    }

    #[test]
    fn the_interpreters_own_abi_beats_abi3_beats_pure() {
        let t = cpython311();
        let own = rank(&t, "m-1-cp311-cp311-manylinux_2_17_x86_64.whl").unwrap();
        let abi3 = rank(&t, "m-1-cp38-abi3-manylinux_2_17_x86_64.whl").unwrap();
        let pure = rank(&t, "m-1-py3-none-any.whl").unwrap();
        assert!(own < abi3 && abi3 < pure, "{own} {abi3} {pure}");
        // A newer manylinux (closer to the pinned glibc) is preferred.
        assert!(rank(&t, "m-1-cp311-cp311-manylinux_2_28_x86_64.whl") < rank(&t, "m-1-cp311-cp311-manylinux2014_x86_64.whl"));
    }

    #[test]
    fn wheels_for_other_platforms_interpreters_or_newer_c_libraries_do_not_fit() {
        let t = cpython311();
        for file in [
            "m-1-cp311-cp311-linux_x86_64.whl",
            "m-1-cp311-cp311-manylinux_2_39_x86_64.whl",
            "m-1-cp311-cp311-musllinux_1_2_x86_64.whl",
            "m-1-cp311-cp311-manylinux_2_17_aarch64.whl",
            "m-1-cp311-cp311-win_amd64.whl",
            "m-1-cp312-cp312-manylinux_2_17_x86_64.whl",
            "m-1-cp312-abi3-manylinux_2_17_x86_64.whl",
            "m-1-py2-none-any.whl",
        ] {
            assert_eq!(rank(&t, file), None, "{file}");
        }
        for file in ["m-1-cp311-cp311-manylinux_2_36_x86_64.whl", "m-1-cp311-cp311-manylinux1_x86_64.whl", "m-1-py2.py3-none-any.whl"] {
            assert!(rank(&t, file).is_some(), "{file}");
        }
    }

    #[test]
    fn markers_evaluate_for_the_target() {
        let env = cpython311().marker_environment();
        let m = |s: &str| s.parse::<pep508_rs::MarkerTree>().unwrap().evaluate(&env, &[]);
        assert!(m("python_version >= '3.8' and sys_platform == 'linux'"));
        assert!(!m("python_version < '3.11'"));
        assert!(!m("sys_platform == 'win32'"));
        assert!(m("platform_machine == 'x86_64' and implementation_name == 'cpython'"));
    }
}
