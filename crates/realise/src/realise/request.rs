//! What to run for one build, decided before anything runs: a pure
//! function from a derivation, its inputs' closure and the settings to a
//! [`BuildRequest`] (the sandbox's spec with the builder's whole
//! environment). Running it is an [`Executor`](super::Executor)'s job.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use drv_formats::{Derivation, StorePath};
use drv_sandbox::{BuildDirFs, Input, Isolation, SandboxSpec};
use drv_store::StoreLayout;

use super::{BuildError, BuildSettings};
use crate::builtins::TOOLCHAIN_ENV;
use crate::vary::Circumstances;

/// One build, ready to run: the derivation it is of and the sandbox's
/// spec (builder, arguments, environment, inputs, outputs, limits).
#[derive(Debug)]
pub struct BuildRequest {
    pub drv_path: StorePath,
    pub spec: SandboxSpec,
}

/// The host directories a build uses, made by the caller: an empty
/// directory the builder sees as the store (on the store's file system,
/// so outputs are renamed out of it), and the build directory.
#[derive(Clone, Copy, Debug)]
pub struct BuildDirs<'a> {
    pub scratch_store: &'a Path,
    pub build_dir: &'a Path,
}

/// The variables every build gets over the derivation's own, as Nix sets
/// them (Nix manual, "Derivations", "Builder execution";
/// `DerivationBuilderImpl::initEnv` in
/// src/libstore/unix/build/derivation-builder.cc), and drv's fixed
/// circumstances (docs/reproducibility.md): the time zone, locale and hash
/// seed that would otherwise come from the host. `build_dir` is the build
/// directory as the builder sees it.
fn fixed_env(layout: &StoreLayout, cores: usize, build_dir: &str) -> [(&'static str, String); 11] {
    [
        ("HOME", "/homeless-shelter".to_owned()),
        ("TMPDIR", build_dir.to_owned()),
        ("TEMPDIR", build_dir.to_owned()),
        ("TMP", build_dir.to_owned()),
        ("TEMP", build_dir.to_owned()),
        ("TZ", "UTC".to_owned()),
        ("LC_ALL", "C".to_owned()),
        ("PYTHONHASHSEED", "0".to_owned()),
        ("NIX_BUILD_CORES", cores.to_string()),
        ("NIX_STORE", layout.store_dir().to_string()),
        ("TERM", "dumb".to_owned()),
    ]
}

/// The build of `drv` (at `drv_path`) that sees `closure` (its inputs'
/// closure, valid in the store at `layout`), in `dirs`, under `settings`
/// and `circumstances`. `settings.cores` is the builder's
/// `NIX_BUILD_CORES` as given: the caller resolves "all cores" (0) first,
/// so that this function reads nothing of the machine.
///
/// # Errors
/// [`BuildError::Unsupported`] for a derivation with a pinned toolchain
/// (`drvToolchain`) built without the sandbox, which would run the host's
/// tools under the toolchain's output path; [`BuildError::Store`] if
/// `drvToolchain` is not a store path.
pub fn build_request(
    drv_path: &StorePath,
    drv: &Derivation,
    layout: &StoreLayout,
    closure: &BTreeSet<StorePath>,
    dirs: BuildDirs,
    settings: &BuildSettings,
    circumstances: &Circumstances,
) -> Result<BuildRequest, BuildError> {
    let store_dir = layout.store_dir();
    let toolchain = drv
        .env()
        .get(TOOLCHAIN_ENV)
        .map(|v| store_dir.parse_path(&String::from_utf8_lossy(v)))
        .transpose()?;
    let isolation = if settings.sandbox { Isolation::Namespaces } else { Isolation::None };
    if toolchain.is_some() && isolation == Isolation::None {
        return Err(BuildError::Unsupported {
            drv: store_dir.display(drv_path),
            reason: "this derivation builds with a pinned toolchain, which only the sandbox provides: \
                     without it the host's tools would stand in for it under the same output path; \
                     build it without --no-sandbox"
                .into(),
        });
    }
    let mut spec = SandboxSpec::new(drv.builder_path(), store_dir.as_str(), dirs.scratch_store, dirs.build_dir);
    spec.inputs = closure.iter().map(|p| Input { physical: layout.real_path(p), logical: PathBuf::from(store_dir.display(p)) }).collect();
    spec.outputs = drv.outputs().values().map(|o| PathBuf::from(store_dir.display(&o.path))).collect();
    spec.toolchain = toolchain.as_ref().map(|t| layout.real_path(t));
    spec.isolation = isolation;
    spec.limits = settings.limits;
    // The build directory is the sandbox's own tmpfs, so that listing a
    // directory does not depend on the file system holding the root; a
    // build whose directory is to be kept when it fails runs in the
    // host's (docs/reproducibility.md).
    spec.conditions = circumstances.conditions.clone();
    if settings.keep_failed {
        spec.conditions.build_dir_fs = BuildDirFs::Host;
    }
    let inside_build_dir = spec.conditions.build_dir.to_string_lossy().into_owned();

    let mut env: Vec<(String, String)> = drv.env().iter().map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned())).collect();
    let fixed = fixed_env(layout, settings.cores, &inside_build_dir);
    let overrides = fixed.iter().map(|(k, v)| (*k, v.as_str())).chain(circumstances.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    for (k, v) in overrides {
        env.retain(|(key, _)| key != k);
        env.push((k.to_owned(), v.to_owned()));
    }
    if !env.iter().any(|(k, _)| k == "SOURCE_DATE_EPOCH") {
        env.push(("SOURCE_DATE_EPOCH".into(), "1".into()));
    }
    if isolation == Isolation::None {
        // Unsandboxed, the builder sees host paths: outputs are written to
        // the scratch store and the build directory is physical.
        for (_, v) in env.iter_mut() {
            for o in &spec.outputs {
                let host = spec.host_path(o);
                *v = v.replace(&*o.to_string_lossy(), &host.to_string_lossy());
            }
            if *v == inside_build_dir {
                *v = dirs.build_dir.to_string_lossy().into_owned();
            }
        }
    }
    spec.env = env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
    spec.args = drv.args().iter().map(Into::into).collect();
    Ok(BuildRequest { drv_path: drv_path.clone(), spec })
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use drv_formats::{StoreDir, StorePath};

    use super::*;

    fn input(name: &str) -> StorePath {
        StorePath::from_basename(&format!("{}-{name}", "1".repeat(32))).unwrap()
    }

    fn drv(toolchain: Option<&StorePath>, env: &[(&str, &str)]) -> (StorePath, Derivation) {
        let dir = StoreDir::default();
        let mut b = Derivation::builder(&dir, "hello", "x86_64-linux", "/bin/sh").arg("-c").arg("echo hi > $out").output("out");
        for (k, v) in env {
            b = b.env(*k, *v);
        }
        if let Some(t) = toolchain {
            b = b.env(TOOLCHAIN_ENV, dir.display(t)).input_source(t.clone());
        }
        let d = b.build(|_| None).unwrap();
        (d.drv_path(), d)
    }

    fn request(drv: &(StorePath, Derivation), settings: &BuildSettings, circumstances: &Circumstances) -> Result<BuildRequest, BuildError> {
        let layout = StoreLayout::new(Path::new("/root-of-store"), StoreDir::default());
        let closure = BTreeSet::from([input("dash"), input("toolchain")]);
        let dirs = BuildDirs { scratch_store: Path::new("/scratch"), build_dir: Path::new("/builds/b") };
        build_request(&drv.0, &drv.1, &layout, &closure, dirs, settings, circumstances)
    }

    fn env_of(r: &BuildRequest) -> Vec<(String, String)> {
        r.spec.env.iter().map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned())).collect()
    }

    fn get<'a>(env: &'a [(String, String)], key: &str) -> Vec<&'a str> {
        env.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    #[test]
    fn a_build_sees_its_inputs_outputs_and_nixs_variables() {
        let t = input("toolchain");
        let d = drv(Some(&t), &[("HOME", "/mine"), ("keep", "this")]);
        let settings = BuildSettings { cores: 3, ..Default::default() };
        let r = request(&d, &settings, &Circumstances::default()).unwrap();
        assert_eq!(r.drv_path, d.0);
        assert_eq!(r.spec.builder, PathBuf::from("/bin/sh"));
        assert_eq!(r.spec.args, vec![OsString::from("-c"), OsString::from("echo hi > $out")]);
        let out = StoreDir::default().display(&d.1.outputs()["out"].path);
        assert_eq!(r.spec.outputs, vec![PathBuf::from(&out)]);
        // Inputs are bound from the physical store to their logical paths.
        let dash = r.spec.inputs.iter().find(|i| i.logical == Path::new(&StoreDir::default().display(&input("dash")))).unwrap();
        assert_eq!(dash.physical, Path::new("/root-of-store/store").join(input("dash").to_basename()));
        assert_eq!(r.spec.toolchain, Some(Path::new("/root-of-store/store").join(t.to_basename())));
        assert_eq!(r.spec.isolation, Isolation::Namespaces);
        let env = env_of(&r);
        // Nix's variables win over the derivation's, each once.
        assert_eq!(get(&env, "HOME"), ["/homeless-shelter"]);
        assert_eq!(get(&env, "NIX_BUILD_CORES"), ["3"]);
        assert_eq!(get(&env, "NIX_STORE"), ["/store"]);
        assert_eq!(get(&env, "TMPDIR"), ["/build"]);
        assert_eq!(get(&env, "out"), [out.as_str()]);
        assert_eq!(get(&env, "keep"), ["this"]);
        assert_eq!(get(&env, "SOURCE_DATE_EPOCH"), ["1"]);
    }

    #[test]
    fn circumstances_and_the_derivations_epoch_are_kept() {
        let d = drv(None, &[("SOURCE_DATE_EPOCH", "1700000000")]);
        let circumstances = Circumstances { env: vec![("TZ".into(), "Pacific/Chatham".into())], ..Default::default() };
        let env = env_of(&request(&d, &BuildSettings::default(), &circumstances).unwrap());
        assert_eq!(get(&env, "TZ"), ["Pacific/Chatham"]);
        assert_eq!(get(&env, "SOURCE_DATE_EPOCH"), ["1700000000"]);
    }

    #[test]
    fn without_the_sandbox_the_builder_sees_host_paths() {
        let d = drv(None, &[]);
        let settings = BuildSettings { sandbox: false, ..Default::default() };
        let r = request(&d, &settings, &Circumstances::default()).unwrap();
        assert_eq!(r.spec.isolation, Isolation::None);
        let env = env_of(&r);
        let out = d.1.outputs()["out"].path.to_basename();
        assert_eq!(get(&env, "out"), [format!("/scratch/{out}").as_str()]);
        assert_eq!(get(&env, "TMPDIR"), ["/builds/b"]);
    }

    #[test]
    fn a_pinned_toolchain_needs_the_sandbox() {
        let d = drv(Some(&input("toolchain")), &[]);
        let settings = BuildSettings { sandbox: false, ..Default::default() };
        let err = request(&d, &settings, &Circumstances::default()).unwrap_err();
        assert!(matches!(err, BuildError::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains("only the sandbox provides"), "{err}");
    }

    #[test]
    fn keep_failed_builds_in_the_hosts_directory() {
        let d = drv(None, &[]);
        let settings = BuildSettings { keep_failed: true, ..Default::default() };
        let r = request(&d, &settings, &Circumstances::default()).unwrap();
        assert_eq!(r.spec.conditions.build_dir_fs, BuildDirFs::Host);
    }
}
