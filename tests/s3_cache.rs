//! `s3://` binary caches against a real S3 server: SeaweedFS started by
//! each test on its own loopback ports (`common::s3`). Skipped, with a
//! message, only where `weed` is not installed (`.ci/run` installs it and
//! sets `DRV_REQUIRE_S3=1`, so CI never skips).

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;

use common::s3::{weed, SeaweedFs, ACCESS_KEY, SECRET_KEY};
use common::{closure_infos, keys, populate, TestStore, FIXTURES};

/// `drv` against `s`, signing as the server's user.
fn drv(s: &TestStore, fs: &SeaweedFs) -> std::process::Command {
    let mut c = s.cmd();
    c.envs(fs.env());
    for v in ["AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"] {
        c.env_remove(v);
    }
    c
}

fn run(s: &TestStore, fs: &SeaweedFs, args: &[&str]) -> (bool, String, String) {
    let out = drv(s, fs).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn ok(s: &TestStore, fs: &SeaweedFs, args: &[&str]) -> String {
    let (success, stdout, stderr) = run(s, fs, args);
    assert!(success, "drv {args:?} failed:\n{stderr}");
    stdout
}

/// A random (incompressible) file of `len` bytes in the store, returned
/// as its store path: big enough for multipart uploads and chunking.
fn add_random(s: &TestStore, name: &str, len: usize) -> String {
    let file = s.scratch(name);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(&file, bytes).unwrap();
    s.ok(&["store", "add", file.to_str().unwrap()]).trim().to_owned()
}

#[test]
fn push_and_substitute_a_signed_closure() {
    let Some(weed) = weed() else { return };
    let fs = SeaweedFs::start(&weed, 0, "000");
    fs.create_bucket("team");
    let src = TestStore::new();
    let top = populate(&src);
    let k = keys(&src, "s3-cache-1");
    let url = fs.url("team/drv", "");
    ok(&src, &fs, &["cache", "push", "--to", &url, "--key", &k.secret, &top]);
    let objects: Vec<String> = fs.list("team", "").into_iter().map(|(k, _)| k).collect();
    assert!(objects.contains(&"drv/nix-cache-info".to_owned()), "{objects:?}");
    assert_eq!(objects.iter().filter(|k| k.ends_with(".narinfo")).count(), 4, "{objects:?}");
    assert_eq!(objects.iter().filter(|k| k.starts_with("drv/nar/") && k.ends_with(".nar.zst")).count(), 4, "{objects:?}");
    // Pushing again uploads nothing.
    let (_, _, err) = run(&src, &fs, &["cache", "push", "--to", &url, "--key", &k.secret, &top]);
    assert!(err.contains("pushed 0 path(s)") && err.contains("4 already there"), "{err}");

    // Signatures are required: without the key nothing is taken.
    let dst = TestStore::new();
    let (success, _, err) = run(&dst, &fs, &["cache", "fetch", "--substituters", &url, &top]);
    assert!(!success && err.contains("no signature by a trusted key"), "{err}");
    let d = common::open(&dst);
    assert!(!d.is_valid(&d.parse_path_arg(&top).unwrap()).unwrap());
    drop(d);
    ok(&dst, &fs, &["cache", "fetch", "--substituters", &url, "--trusted-public-key", &k.public, &top]);
    dst.ok(&["store", "verify", "--check-contents"]);
    assert_eq!(closure_infos(&dst, &top), closure_infos(&src, &top));

    // A signature by another key is refused too.
    let other = keys(&src, "someone-else");
    let dst2 = TestStore::new();
    let (success, _, err) = run(&dst2, &fs, &["cache", "fetch", "--substituters", &url, "--trusted-public-key", &other.public, &top]);
    assert!(!success && err.contains("no signature by a trusted key"), "{err}");
}

#[test]
fn virtual_host_addressing_and_shared_parameters() {
    let Some(weed) = weed() else { return };
    let fs = SeaweedFs::start(&weed, 0, "000");
    fs.create_bucket("vhost");
    let src = TestStore::new();
    let top = populate(&src);
    let k = keys(&src, "vhost-1");
    // BUCKET.localhost:PORT, the secret key and the compression given in
    // the URL as Nix writes them.
    let url = format!(
        "s3://vhost/p?endpoint=http://localhost:{}&addressing-style=virtual&compression=xz&secret-key={}",
        fs.s3_port, k.secret
    );
    ok(&src, &fs, &["cache", "push", "--to", &url, &top]);
    let objects: Vec<String> = fs.list("vhost", "p/").into_iter().map(|(k, _)| k).collect();
    assert_eq!(objects.iter().filter(|k| k.ends_with(".nar.xz")).count(), 4, "{objects:?}");
    let dst = TestStore::new();
    let read = format!("s3://vhost/p?endpoint=http://localhost:{}&addressing-style=virtual", fs.s3_port);
    ok(&dst, &fs, &["cache", "fetch", "--substituters", &read, "--trusted-public-key", &k.public, &top]);
    dst.ok(&["store", "verify", "--check-contents"]);
    // Path style reads what virtual-host style wrote.
    let dst = TestStore::new();
    ok(&dst, &fs, &["cache", "fetch", "--substituters", &fs.url("vhost/p", "addressing-style=path"), "--trusted-public-key", &k.public, &top]);
}

#[test]
fn credentials_come_from_the_standard_places_and_never_show() {
    let Some(weed) = weed() else { return };
    let fs = SeaweedFs::start(&weed, 0, "000");
    fs.create_bucket("creds");
    let src = TestStore::new();
    let top = populate(&src);
    let url = fs.url("creds", "");

    // A wrong secret is refused by the server; nothing is written, and
    // neither the secret nor the signed URL (which carries the key id)
    // appears in the output.
    let wrong_secret = "wrong-secret-7f3e9a1b";
    let out = drv(&src, &fs).env("AWS_SECRET_ACCESS_KEY", wrong_secret).args(["cache", "push", "--to", &url, &top]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("403") && err.contains("SignatureDoesNotMatch"), "{err}");
    for secret in [wrong_secret, SECRET_KEY, ACCESS_KEY, "X-Amz-"] {
        assert!(!err.contains(secret), "{secret:?} in: {err}");
    }
    assert!(fs.list("creds", "").is_empty());

    // The shared credentials file, by profile (no AWS_* variables).
    let file = src.scratch("aws-credentials");
    std::fs::write(&file, format!("[default]\naws_access_key_id = nobody\naws_secret_access_key = nothing\n\n[ci]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n")).unwrap();
    let from_file = |extra: &str| {
        let mut c = drv(&src, &fs);
        c.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY").env("AWS_SHARED_CREDENTIALS_FILE", &file);
        c.env("AWS_CONFIG_FILE", src.scratch("no-config"));
        c.args(["cache", "push", "--to", &fs.url("creds", extra), &top]).output().unwrap()
    };
    let out = from_file("profile=ci");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs.list("creds", "").iter().filter(|(k, _)| k.ends_with(".narinfo")).count(), 4);
    // The default profile's wrong key: refused. A profile that does not
    // exist: an error naming it and the files, before any request.
    let out = from_file("");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && (err.contains("InvalidAccessKeyId") || err.contains("403")), "{err}");
    assert!(!err.contains("nothing"), "{err}");
    let out = from_file("profile=absent");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("\"absent\"") && err.contains("aws-credentials"), "{err}");

    // A bucket that does not exist is said to be missing, not taken for
    // a cache without the paths.
    let dst = TestStore::new();
    let (success, _, err) = run(&dst, &fs, &["cache", "fetch", "--substituters", &fs.url("no-such-bucket", ""), &top]);
    assert!(!success && err.contains("NoSuchBucket"), "{err}");

    // A parameter drv does not know is an error naming it.
    let (success, _, err) = run(&src, &fs, &["cache", "push", "--to", &fs.url("creds", "endpiont=x"), &top]);
    assert!(!success && err.contains("\"endpiont\""), "{err}");
}

#[test]
fn large_nars_go_in_parts() {
    let Some(weed) = weed() else { return };
    let fs = SeaweedFs::start(&weed, 0, "000");
    fs.create_bucket("parts");
    let src = TestStore::new();
    let big = add_random(&src, "big.bin", 12 * 1024 * 1024 + 12345);
    let small = add_random(&src, "small.bin", 1000);
    let url = fs.url(
        "parts",
        "multipart-upload=true&multipart-threshold=8000000&multipart-chunk-size=5242880&compression=none&storage-class=STANDARD",
    );
    ok(&src, &fs, &["cache", "push", "--to", &url, &big, &small]);
    let nars: Vec<(String, String)> = fs.list("parts", "nar/");
    assert_eq!(nars.len(), 2, "{nars:?}");
    // S3 gives a multipart object the ETag `"MD5-OF-PART-MD5S-N"`, N the
    // number of parts: three of 5 MiB for a NAR of 12 MiB; the small NAR
    // went whole.
    let parts: Vec<&str> = nars.iter().map(|(_, etag)| etag.trim_matches('"').rsplit_once('-').map_or("whole", |(_, n)| n)).collect();
    assert!(parts.contains(&"3") && parts.contains(&"whole"), "{nars:?}");
    let dst = TestStore::new();
    ok(&dst, &fs, &["cache", "fetch", "--no-check-sigs", "--substituters", &fs.url("parts", ""), &big, &small]);
    dst.ok(&["store", "verify", "--check-contents"]);
}

#[test]
fn a_killed_push_leaves_the_cache_consistent_and_a_rerun_completes_it() {
    let Some(weed) = weed() else { return };
    let fs = SeaweedFs::start(&weed, 0, "000");
    fs.create_bucket("killed");
    let src = TestStore::new();
    let top = populate(&src);
    let bigs: Vec<String> = (0..3).map(|i| add_random(&src, &format!("big-{i}"), 3 * 1024 * 1024)).collect();
    let url = fs.url("killed", "");
    let k = keys(&src, "killed-1");
    let mut args = vec!["cache", "push", "--jobs", "1", "--to", &url, "--key", &k.secret, &top];
    args.extend(bigs.iter().map(String::as_str));
    let mut child = drv(&src, &fs).args(&args).env("DRV_LOG_FORMAT", "lines").stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Killed while the third NAR is on its way: two are in the bucket.
    let mut uploading = 0;
    for line in lines.by_ref() {
        if line.unwrap().starts_with("uploading ") {
            uploading += 1;
            if uploading == 3 {
                break;
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(uploading, 3);
    let objects: Vec<String> = fs.list("killed", "").into_iter().map(|(k, _)| k).collect();
    // Narinfos go last: a reader sees no path whose NAR is missing.
    assert!(objects.iter().all(|k| !k.ends_with(".narinfo")), "{objects:?}");
    assert!(objects.iter().any(|k| k.starts_with("nar/")), "{objects:?}");
    let dst = TestStore::new();
    let (success, _, _) = run(&dst, &fs, &["cache", "fetch", "--substituters", &url, "--trusted-public-key", &k.public, &top]);
    assert!(!success);
    dst.ok(&["store", "verify"]);

    ok(&src, &fs, &args[..2].iter().chain(&args[4..]).copied().collect::<Vec<_>>());
    let mut fetch = vec!["cache", "fetch", "--substituters", &url, "--trusted-public-key", &k.public, &top];
    fetch.extend(bigs.iter().map(String::as_str));
    ok(&dst, &fs, &fetch);
    dst.ok(&["store", "verify", "--check-contents"]);
}

#[test]
fn an_object_deleted_behind_drvs_back_is_a_miss_and_the_build_goes_on() {
    let Some(weed) = weed() else { return };
    let fs = SeaweedFs::start(&weed, 0, "000");
    fs.create_bucket("gone");
    let recipe = format!("{FIXTURES}/../recipes/middle.toml");
    let src = TestStore::new();
    ok(&src, &fs, &["build", "--no-link", "--no-substitute", &recipe]);
    let url = fs.url("gone", "");
    ok(&src, &fs, &["cache", "push", "--to", &url, &recipe]);
    let nars: Vec<String> = fs.list("gone", "nar/").into_iter().map(|(k, _)| k).collect();
    assert!(nars.len() >= 3, "{nars:?}");
    for k in &nars {
        fs.delete("gone", k);
    }
    // Every narinfo is there, no NAR: each path is a miss, built instead.
    let dst = TestStore::new();
    let (success, stdout, err) = run(&dst, &fs, &["build", "--no-link", "--substituters", &format!("{url}&trusted=1"), &recipe]);
    assert!(success, "{err}");
    assert!(err.contains("not found"), "{err}");
    let built = stdout.trim().to_owned();
    let (_, src_out, _) = run(&src, &fs, &["build", "--no-link", "--no-substitute", &recipe]);
    assert_eq!(built, src_out.trim());
    dst.ok(&["store", "verify", "--check-contents"]);
}

#[test]
fn a_volume_server_killed_during_a_substitution() {
    let Some(weed) = weed() else { return };
    // Three volume servers, every object on two of them.
    let mut fs = SeaweedFs::start(&weed, 2, "001");
    fs.create_bucket("replicated");
    let src = TestStore::new();
    let top = populate(&src);
    // Larger than the filer's 4 MiB chunks: each NAR spreads over volumes.
    let bigs: Vec<String> = (0..4).map(|i| add_random(&src, &format!("big-{i}"), 9 * 1024 * 1024)).collect();
    let url = fs.url("replicated", "compression=none&trusted=1");
    let mut paths = vec![top.as_str()];
    paths.extend(bigs.iter().map(String::as_str));
    ok(&src, &fs, &[&["cache", "push", "--to", &url][..], &paths].concat());
    // The server killed is the extra one holding the most of it (each
    // object has two copies on three servers, so one of the extra two
    // holds some): reading it back needs the other replicas.
    let victim = if fs.volume_bytes(0) >= fs.volume_bytes(1) { 0 } else { 1 };
    assert!(fs.volume_bytes(victim) > 9 * 1024 * 1024, "{} {}", fs.volume_bytes(0), fs.volume_bytes(1));

    let dst = TestStore::new();
    let fetch: Vec<&str> = [&["cache", "fetch", "--max-downloads", "1", "--substituters", &url][..], &paths].concat();
    let mut child = drv(&dst, &fs).args(&fetch).env("DRV_LOG_FORMAT", "lines").stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let started = line.starts_with("copying ");
        log.push(line);
        if started {
            break;
        }
    }
    fs.kill_volume_server(victim);
    log.extend(lines.map(|l| l.unwrap()));
    let first = child.wait().unwrap();
    // Completed, or failed cleanly: whatever is registered is whole.
    dst.ok(&["store", "verify", "--check-contents"]);
    if !first.success() {
        eprintln!("first substitution failed, as it may:\n{}", log.join("\n"));
        ok(&dst, &fs, &fetch);
        dst.ok(&["store", "verify", "--check-contents"]);
    }
    for p in &paths {
        assert!(closure_infos(&dst, p) == closure_infos(&src, p), "{p}");
    }
}
