//! The store commands, run as a user runs them, against temporary roots;
//! compared with real Nix where it is installed.

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::io::Write as _;

use common::{Nix, TestStore, FIXTURES};

/// Executables, symlinks (a dangling one too), empty directories,
/// non-UTF-8 names and a large file.
fn awkward_tree(dir: &Path) {
    fs::create_dir_all(dir.join("sub/empty")).unwrap();
    fs::create_dir_all(dir.join("deep/a/b/c")).unwrap();
    fs::write(dir.join("plain"), b"hello\n").unwrap();
    fs::write(dir.join("empty-file"), b"").unwrap();
    fs::write(dir.join("sub/run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(dir.join("sub/run.sh"), fs::Permissions::from_mode(0o750)).unwrap();
    symlink("../plain", dir.join("sub/link")).unwrap();
    symlink("/nonexistent/target", dir.join("dangling")).unwrap();
    symlink("sub", dir.join("dirlink")).unwrap();
    fs::write(dir.join(std::ffi::OsStr::from_bytes(b"latin1-\xe9t\xe9")), b"bytes").unwrap();
    fs::write(dir.join("unicode-\u{1F980}"), b"crab").unwrap();
    // 9 MiB + 3 bytes: not a multiple of the NAR's 8-byte padding
    let big: Vec<u8> = (0..(9 << 20) + 3).map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    fs::write(dir.join("deep/a/b/c/big.bin"), big).unwrap();
}

fn drv_stdout(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_drv")).args(args).output().unwrap();
    common::assert_success(&out, args);
    out.stdout
}

#[test]
fn dump_and_hash_agree_with_nix_vectors() {
    // NARs written by Nix 2.8: restore, dump again byte-identical, and the
    // hash is the narHash Nix registered.
    let s = TestStore::new();
    let vectors: serde_json::Value =
        serde_json::from_slice(&fs::read(format!("{FIXTURES}/nix-vectors/vectors.json")).unwrap()).unwrap();
    for (name, vector) in [("v1-noinputs", "v1-noinputs"), ("v3-fod-recursive", "v3-fod-recursive")] {
        let nar = fs::read(format!("{FIXTURES}/nix-vectors/{name}.out.nar")).unwrap();
        let dir = s.scratch(name);
        let mut child = s.cmd().args(["store", "restore"]).arg(&dir).stdin(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(&nar).unwrap();
        assert!(child.wait().unwrap().success());
        let d = dir.to_str().unwrap();
        assert_eq!(drv_stdout(&["store", "dump", d]), nar, "{name}");
        let outputs = &vectors[vector]["outputs"];
        let want = outputs.as_object().unwrap().values().next().unwrap()["narHash"].as_str().unwrap();
        let got = String::from_utf8(drv_stdout(&["hash", "path", "--base32", d])).unwrap();
        assert_eq!(format!("sha256:{}", got.trim()), want, "{name}");
    }
}

#[test]
fn dump_hash_and_add_agree_with_real_nix() {
    let Some(nix) = Nix::find() else { return };
    let s = TestStore::new();
    let tree = s.scratch("tree");
    awkward_tree(&tree);
    let t = tree.to_str().unwrap();
    assert_eq!(drv_stdout(&["store", "dump", t]), nix.output("nix-store", &["--dump", t]));
    for flags in [&[][..], &["--base32"][..]] {
        let mut args = vec!["hash", "path"];
        args.extend(flags);
        args.push(t);
        let mut nargs = vec!["--type", "sha256"];
        nargs.extend(flags);
        nargs.push(t);
        assert_eq!(drv_stdout(&args), nix.output("nix-hash", &nargs), "{flags:?}");
    }
    let big = tree.join("deep/a/b/c/big.bin");
    let b = big.to_str().unwrap();
    assert_eq!(
        drv_stdout(&["hash", "file", b]),
        nix.output("nix-hash", &["--type", "sha256", "--flat", b])
    );
    let store = nix.store_arg();
    assert_eq!(s.ok(&["store", "add", t]).as_bytes(), nix.output("nix-store", &["--store", &store, "--add", t]));
    assert_eq!(
        s.ok(&["store", "add-fixed", "sha256", b]).as_bytes(),
        nix.output("nix-store", &["--store", &store, "--add-fixed", "sha256", b])
    );
    let sub = tree.join("sub");
    let sub = sub.to_str().unwrap();
    assert_eq!(
        s.ok(&["store", "add-fixed", "--recursive", "sha256", sub]).as_bytes(),
        nix.output("nix-store", &["--store", &store, "--add-fixed", "--recursive", "sha256", sub])
    );
    // and the stored copies dump exactly as Nix's copies do
    let ours = s.ok(&["store", "add", t]);
    let ours = s.root().join(ours.trim().trim_start_matches('/'));
    let theirs = nix.dir.path().join("real").join(ours.file_name().unwrap());
    assert_eq!(
        drv_stdout(&["store", "dump", ours.to_str().unwrap()]),
        nix.output("nix-store", &["--dump", theirs.to_str().unwrap()])
    );
}

#[test]
fn hash_spellings() {
    let s = TestStore::new();
    let f = s.scratch("f");
    fs::write(&f, b"hello").unwrap();
    let f = f.to_str().unwrap();
    let hex = String::from_utf8(drv_stdout(&["hash", "file", f])).unwrap();
    assert_eq!(hex.trim(), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    let sri = String::from_utf8(drv_stdout(&["hash", "file", "--sri", f])).unwrap();
    assert_eq!(sri.trim(), "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=");
    let b32 = String::from_utf8(drv_stdout(&["hash", "file", "--base32", f])).unwrap();
    assert_eq!(b32.trim(), "094qif9n4cq4fdg459qzbhg1c6wywawwaaivx0k0x8xhbyx4vwic");
}

#[test]
fn add_is_canonical_idempotent_and_queryable() {
    let s = TestStore::new();
    let tree = s.scratch("tree");
    awkward_tree(&tree);
    let t = tree.to_str().unwrap();
    let p = s.ok(&["store", "add", t]);
    let p = p.trim();
    assert!(p.starts_with("/store/") && p.ends_with("-tree"), "{p}");
    let real = s.root().join(p.trim_start_matches('/'));
    let m = fs::symlink_metadata(real.join("sub/run.sh")).unwrap();
    assert_eq!((m.permissions().mode() & 0o7777, m.mtime()), (0o555, 1));
    let m = fs::symlink_metadata(real.join("plain")).unwrap();
    assert_eq!((m.permissions().mode() & 0o7777, m.mtime()), (0o444, 1));
    let before = s.snapshot();
    assert_eq!(s.ok(&["store", "add", t]).trim(), p);
    assert_eq!(s.snapshot(), before, "adding again changed the store");

    let named = s.ok(&["store", "add", "--name", "renamed", t]);
    assert!(named.trim().ends_with("-renamed"));

    let json: serde_json::Value = serde_json::from_str(&s.ok(&["path-info", "--json", "-S", p])).unwrap();
    let info = &json[0];
    assert_eq!(info["path"], p);
    let nar = drv_stdout(&["store", "dump", t]);
    assert_eq!(info["narSize"], nar.len() as u64);
    assert_eq!(info["closureSize"], nar.len() as u64);
    assert!(info["ca"].as_str().unwrap().starts_with("fixed:r:sha256:"));
    // the store dump of a valid path is the NAR of its source
    assert_eq!(drv_stdout(&["store", "dump", real.to_str().unwrap()]), nar);

    let sizes = s.ok(&["path-info", "--size", p]);
    assert!(sizes.contains(&nar.len().to_string()), "{sizes}");
    s.ok(&["store", "verify", "--check-contents"]);
}

#[test]
fn failures_exit_non_zero_with_one_line_and_change_nothing() {
    let s = TestStore::new();
    s.ok(&["store", "verify"]);
    let before = s.snapshot();
    let missing = s.scratch("missing");
    let err = s.fails(&["store", "add", missing.to_str().unwrap()]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("missing"), "{err}");
    let dir = s.scratch("a-dir");
    fs::create_dir(&dir).unwrap();
    let err = s.fails(&["store", "add-fixed", "sha256", dir.to_str().unwrap()]);
    assert!(err.contains("a-dir"), "{err}");
    let f = s.scratch("f");
    fs::write(&f, "x").unwrap();
    let err = s.fails(&["store", "add", "--name", "bad name", f.to_str().unwrap()]);
    assert!(err.contains("bad name"), "{err}");
    let err = s.fails(&["store", "add-fixed", "--expect", &"0".repeat(64), "sha256", f.to_str().unwrap()]);
    assert!(err.contains("hash mismatch"), "{err}");
    let err = s.fails(&["path-info", "/store/ikcfqh9q2jd5v5azikbfn5gqrmfcdc4c-nothere"]);
    assert!(err.contains("ikcfqh9q2jd5v5azikbfn5gqrmfcdc4c-nothere"), "{err}");
    assert_eq!(s.snapshot(), before);
}

#[test]
fn corrupt_and_malicious_nars_are_refused_without_leftovers() {
    let s = TestStore::new();
    let good = fs::read(format!("{FIXTURES}/nix-vectors/v3-fod-recursive.out.nar")).unwrap();
    let mut bad_magic = good.clone();
    bad_magic[10] ^= 0xff;
    let evil_name = {
        // an entry named ".." would step out of the target
        let mut n = good.clone();
        let pos = n.windows(8).position(|w| w == b"link\0\0\0\0").unwrap();
        n[pos - 8..pos].copy_from_slice(&2u64.to_le_bytes());
        n[pos..pos + 8].copy_from_slice(b"..\0\0\0\0\0\0");
        n
    };
    for (what, nar) in [
        ("empty", vec![]),
        ("bad-magic", bad_magic),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("dotdot", evil_name),
    ] {
        let dir = s.scratch(what);
        let mut child = s
            .cmd()
            .args(["store", "restore"])
            .arg(&dir)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(&nar);
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success(), "{what} accepted");
        assert!(!dir.exists(), "{what} left {dir:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1, "{what}");
    }
    let leftovers: Vec<_> = fs::read_dir(s.dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn verify_reports_tampered_paths() {
    let s = TestStore::new();
    let f = s.scratch("file");
    fs::write(&f, "original").unwrap();
    let p = s.ok(&["store", "add", f.to_str().unwrap()]);
    let real = s.root().join(p.trim().trim_start_matches('/'));
    fs::set_permissions(&real, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&real, "tampered").unwrap();
    s.ok(&["store", "verify"]); // present: fine without content checks
    let out = s.cmd().args(["store", "verify", "--check-contents"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("modified"));
    // The same as JSON: one problem, the same words, the same exit status.
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["store", "verify", "--json"])).unwrap();
    assert_eq!(v, serde_json::json!({"consistent": true, "problems": []}));
    let out = s.cmd().args(["store", "verify", "--check-contents", "--json"]).output().unwrap();
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["consistent"], false);
    assert_eq!(v["problems"].as_array().unwrap().len(), 1, "{v}");
    assert!(v["problems"][0].as_str().unwrap().contains("modified"), "{v}");
}

#[test]
fn result_links_and_physical_paths_name_store_paths() {
    let s = TestStore::new();
    let f = s.scratch("file");
    fs::write(&f, "x").unwrap();
    let p = s.ok(&["store", "add", f.to_str().unwrap()]);
    let p = p.trim();
    let link = s.scratch("result");
    symlink(p, &link).unwrap();
    let physical = s.root().join(p.trim_start_matches('/'));
    let base = Path::new(p).file_name().unwrap().to_str().unwrap();
    for arg in [p, link.to_str().unwrap(), physical.to_str().unwrap(), base] {
        assert_eq!(s.ok(&["path-info", arg]).trim(), p, "{arg}");
    }
}

#[test]
fn a_reader_that_goes_away_ends_drv_quietly() {
    let t = TestStore::new();
    let file = t.scratch("big");
    fs::write(&file, vec![7u8; 4 << 20]).unwrap();
    let mut child = t
        .cmd()
        .args(["store", "dump", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read a little, then close the pipe, as `| head -c 100` does.
    let mut head = [0u8; 100];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut head).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // No panic, no "Broken pipe" error: the reader chose to stop.
    assert!(stderr.trim().is_empty(), "{stderr}");
    assert!(!out.status.success(), "a dump cut short is not a success");
}

/// A name over Nix's 211 characters is refused with the reason, not just
/// "invalid name".
#[test]
fn add_of_an_over_long_name_says_why() {
    let s = TestStore::new();
    let file = s.scratch(&"c".repeat(212));
    fs::write(&file, "x").unwrap();
    let err = s.fails(&["store", "add", file.to_str().unwrap()]);
    assert!(err.contains("it is 212 characters long; Nix allows at most 211"), "{err}");
    let err = s.fails(&["store", "add", "--name", "a/b", file.to_str().unwrap()]);
    assert!(err.contains("it contains '/'"), "{err}");
}

/// Commands started at once on a root that does not exist yet all
/// succeed: creating the layout, the database and its schema, and opening
/// it under contention never fail ("database is locked").
#[test]
fn concurrent_first_opens_of_a_new_store_all_succeed() {
    let t = tempfile::tempdir().unwrap();
    for round in 0..12 {
        let root = t.path().join(format!("root-{round}"));
        let children: Vec<_> = (0..8)
            .map(|_| {
                std::process::Command::new(env!("CARGO_BIN_EXE_drv"))
                    .arg("--root")
                    .arg(&root)
                    .args(["store", "verify"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "round {round}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}
