//! Another host, simulated honestly: a minimal root file system of another
//! Debian release (trixie, made by `debootstrap` from Debian's packages)
//! runs the same `drv` binary, with nothing of this host but the kernel
//! (its own `/etc`, its own apt sources, no dpkg state in common). The
//! showcase must evaluate to the same derivations, and a recipe with a C
//! compile step must give the same output NAR hash as on this host.
//!
//! It downloads a base system and the pinned toolchain (a minute or two),
//! so it is ignored by the fast suite; `.ci/run` runs it with `--ignored`.
//! Needs root (debootstrap, mount namespaces) and `debootstrap` installed.
//! `DRV_OTHER_DISTRO_ROOTFS=DIR` reuses a root file system made before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
/// Another release than the host's (Debian 12): Debian 13.
const OTHER_SUITE: &str = "trixie";

/// `drv eval --json` reduced to what must not depend on the host: each
/// derivation's path, name and output paths (not the recipe's file path).
fn derivations(json: &str) -> BTreeMap<String, String> {
    let v: serde_json::Value = serde_json::from_str(json).expect("drv eval --json prints JSON");
    v["derivations"]
        .as_object()
        .expect("an object of derivations")
        .iter()
        .map(|(drv, info)| (drv.clone(), format!("{} {}", info["name"], info["outputs"])))
        .collect()
}

fn run(cmd: &mut Command) -> String {
    eprintln!("$ {cmd:?}");
    let out = cmd.stderr(Stdio::inherit()).output().expect("command runs");
    assert!(out.status.success(), "{cmd:?} failed");
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Each path's NAR hash in `drv path-info --json` output.
fn nar_hashes(path_info_json: &str) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(path_info_json).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| (i["path"].as_str().unwrap().to_owned(), i["narHash"].as_str().unwrap().to_owned()))
        .collect()
}

/// Run `script` (sh) with `rootfs` as `/` of a new mount namespace:
/// `pivot_root`, not `chroot`, so that drv's sandbox may still create
/// user namespaces in it (the kernel refuses those inside a chroot).
fn inside(rootfs: &Path, script: &str) -> String {
    let r = rootfs.display();
    let setup = format!(
        "set -e; mount --make-rprivate /; mount --rbind {r} {r}; \
         mount -t proc proc {r}/proc; mount --rbind /dev {r}/dev; mount -t tmpfs tmpfs {r}/tmp; \
         mount --bind /etc/resolv.conf {r}/etc/resolv.conf 2>/dev/null || true; \
         cd {r}; mkdir -p .old; pivot_root . .old; cd /; umount -l /.old; \
         export PATH=/usr/local/bin:/usr/bin:/bin HOME=/root; {script}"
    );
    run(Command::new("unshare").args(["--mount", "--fork", "sh", "-c", &setup]))
}

#[test]
#[ignore = "debootstraps another Debian release and builds in it (minutes): run with --ignored"]
fn another_release_evaluates_and_builds_the_same() {
    let tmp = tempfile::Builder::new().prefix("drv-other-distro-").tempdir().unwrap();
    let rootfs = match std::env::var_os("DRV_OTHER_DISTRO_ROOTFS") {
        Some(p) => PathBuf::from(p),
        None => {
            let rootfs = tmp.path().join(OTHER_SUITE);
            let mirror = drv_realise::debian_from_apt(Path::new("/etc/apt"))
                .ok()
                .flatten()
                .expect("this host's apt names a Debian archive");
            run(Command::new("debootstrap").args(["--variant=minbase", OTHER_SUITE]).arg(&rootfs).arg(&mirror).stdout(Stdio::null()));
            rootfs
        }
    };
    // The other host's view: its own release, none of this host's packages.
    let os_release = std::fs::read_to_string(rootfs.join("etc/os-release")).unwrap();
    assert!(os_release.contains(OTHER_SUITE), "{os_release}");

    // The same binary and the same recipes (with their lock) in the other root.
    let bin = rootfs.join("usr/local/bin/drv");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_drv"), &bin).unwrap();
    let recipes = rootfs.join("work/recipes");
    let _ = std::fs::remove_dir_all(&recipes);
    std::fs::create_dir_all(&recipes).unwrap();
    run(Command::new("cp").arg("-a").arg(format!("{REPO}/recipes/.")).arg(&recipes));

    // Here.
    let here = tmp.path().join("here");
    let drv = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_drv"));
        c.arg("--root").arg(&here).args(args);
        run(&mut c)
    };
    let eval_here = derivations(&drv(&["eval", "--json", &format!("{REPO}/recipes/flask_app.toml")]));
    let hello_here = drv(&["build", "--no-link", &format!("{REPO}/recipes/hello.toml")]);
    // `out` and `debug` (gcc's toolchain strips into a debug output).
    let outputs: Vec<&str> = hello_here.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(outputs.len(), 2, "{hello_here}");
    let mut args = vec!["path-info", "--json"];
    args.extend(&outputs);
    let hash_here = nar_hashes(&drv(&args));

    // There: a store under /tmp of the other root, downloads through its
    // own apt configuration.
    let eval_there = derivations(&inside(&rootfs, "drv --root /tmp/r eval --json /work/recipes/flask_app.toml"));
    assert_eq!(eval_there, eval_here, "the showcase's derivations differ on {OTHER_SUITE}");
    let there = inside(
        &rootfs,
        "outs=$(drv --root /tmp/r build --no-link /work/recipes/hello.toml); \
         drv --root /tmp/r path-info --json $outs",
    );
    let hash_there = nar_hashes(&there);
    assert_eq!(hash_there, hash_here, "hello's output differs on {OTHER_SUITE}");
    eprintln!("{OTHER_SUITE}: {} derivations identical; hello's outputs {hash_here:?} on both", eval_here.len());
}
