//! `drv prefetch`, run as a user runs it, against temporary roots and a
//! real HTTP server on 127.0.0.1 (port 0).

mod common;

use std::fs;
use std::path::Path;

use common::{FileServer, TestStore};

/// The store path `drv prefetch` reported on stderr.
fn reported_path(stderr: &str) -> String {
    let line = stderr.lines().find(|l| l.starts_with("path is '")).unwrap_or_else(|| panic!("no path in {stderr:?}"));
    line.trim_start_matches("path is '").trim_end_matches('\'').to_owned()
}

fn sri_of(s: &TestStore, file: &Path) -> String {
    s.ok(&["hash", "file", "--sri", file.to_str().unwrap()]).trim().to_owned()
}

/// `drv prefetch ARGS` with the user's configuration kept out.
fn prefetch(s: &TestStore, args: &[&str]) -> std::process::Output {
    let mut cmd = s.cmd();
    cmd.arg("prefetch").args(args);
    cmd.env("XDG_CONFIG_HOME", s.scratch("xdg")).env_remove("DRV_CONFIG");
    cmd.output().unwrap()
}

#[test]
fn prefetch_of_a_file_url_prints_the_sri_hash_and_adds_the_file() {
    let s = TestStore::new();
    let file = s.scratch("hello-1.0.tar.gz");
    fs::write(&file, b"pretend tarball\n").unwrap();
    let url = format!("file://{}", file.display());
    let out = prefetch(&s, &[&url]);
    common::assert_success(&out, &["prefetch", &url]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let want = sri_of(&s, &file);
    assert_eq!(stdout, format!("{want}\n"));
    let path = reported_path(&String::from_utf8(out.stderr).unwrap());
    assert!(path.starts_with("/store/") && path.ends_with("-hello-1.0.tar.gz"), "{path}");
    // the same path `store add-fixed` gives: a flat fixed-output path
    let fixed = s.ok(&["store", "add-fixed", "sha256", file.to_str().unwrap()]);
    assert_eq!(fixed.trim(), path);
    let real = s.root().join(path.trim_start_matches('/'));
    assert_eq!(fs::read(real).unwrap(), b"pretend tarball\n");
}

#[test]
fn prefetch_of_a_loopback_url_with_json_output() {
    let server = FileServer::start(b"served bytes");
    let s = TestStore::new();
    let url = server.url("/files/served.txt");
    let out = prefetch(&s, &["--json", &url]);
    common::assert_success(&out, &["prefetch", "--json", &url]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let local = s.scratch("copy");
    fs::write(&local, b"served bytes").unwrap();
    assert_eq!(json["url"], url);
    assert_eq!(json["sha256"], sri_of(&s, &local));
    assert_eq!(json["size"], 12);
    let hex = s.ok(&["hash", "file", local.to_str().unwrap()]);
    let nix32 = s.ok(&["hash", "file", "--base32", local.to_str().unwrap()]);
    assert_eq!(json["base16"], hex.trim());
    assert_eq!(json["nix32"], nix32.trim());
    let path = reported_path(&String::from_utf8(out.stderr).unwrap());
    assert_eq!(json["path"], path);
    assert!(path.ends_with("-served.txt"), "{path}");

    // --name overrides the URL's last segment
    let out = prefetch(&s, &["--name", "renamed", &url]);
    common::assert_success(&out, &["prefetch", "--name", "renamed", &url]);
    assert!(reported_path(&String::from_utf8(out.stderr).unwrap()).ends_with("-renamed"));
}

#[test]
fn prefetch_of_a_missing_url_fails_and_adds_nothing() {
    let server = FileServer::start(b"x");
    let s = TestStore::new();
    let url = server.url("/elsewhere/nothing.tar.gz");
    let out = prefetch(&s, &[&url]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("not found (HTTP 404)"), "{stderr}");
    assert!(s.snapshot().iter().all(|(p, _)| !p.to_string_lossy().contains("nothing.tar.gz")));
}

#[test]
fn prefetch_of_a_local_file_hashes_and_adds_it() {
    let s = TestStore::new();
    let file = s.scratch("notes.txt");
    fs::write(&file, b"some notes").unwrap();
    let out = prefetch(&s, &[file.to_str().unwrap()]);
    common::assert_success(&out, &["prefetch", file.to_str().unwrap()]);
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), sri_of(&s, &file));
    assert!(reported_path(&String::from_utf8(out.stderr).unwrap()).ends_with("-notes.txt"));
}

#[test]
fn prefetch_of_an_unknown_mirror_says_how_to_configure_it() {
    let s = TestStore::new();
    let out = prefetch(&s, &["mirror://nosuchmirror/x.tar.gz"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("DRV_MIRROR_NOSUCHMIRROR") && stderr.contains("[mirrors]"), "{stderr}");
}
