//! `drv lock` against a miniature signed Debian archive served through
//! `file://` mirrors (`tests/fixtures/debian`, real bookworm `.deb`s):
//! resolution, signature and index checks, `--check`, `--update`, and the
//! errors for names and files the archive does not have. Offline.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{TestStore, FIXTURES, TEST_LOCK};

fn keyring() -> String {
    format!("{FIXTURES}/debian/keyring.gpg")
}

/// A recipe folder with one recipe naming `packages`.
fn recipes(s: &TestStore, packages: &[&str]) -> PathBuf {
    let dir = s.scratch("recipes");
    fs::create_dir_all(&dir).unwrap();
    let names: Vec<String> = packages.iter().map(|p| format!("{p:?}")).collect();
    fs::write(
        dir.join("tools.toml"),
        format!("name = \"tools\"\nversion = \"1\"\n[toolchain]\ndebian = [{}]\n[build]\nscript = 'true'\n", names.join(", ")),
    )
    .unwrap();
    dir
}

fn lock(s: &TestStore, dir: &Path, args: &[&str]) -> std::process::Output {
    s.cmd().current_dir(dir).arg("lock").arg("--keyring").arg(keyring()).args(args).output().unwrap()
}

fn text(o: &std::process::Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn names(lock: &str) -> Vec<String> {
    lock.lines().filter_map(|l| l.strip_prefix("name = ")).map(|n| n.trim_matches('"').to_owned()).collect()
}

#[test]
fn lock_resolves_the_closure_from_signed_indices() {
    let s = TestStore::new();
    // The test lock's roots: the test toolchain, and the C library's
    // packages and toolchain (which the Python tests' interpreter needs).
    let dir = recipes(&s, &["dash", "coreutils", "grep", "sed", "bash", "dpkg", "findutils", "libc6", "libgcc-s1", "patchelf", "tar"]);
    let out = lock(&s, &dir, &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("not verified"), "{stderr}");
    assert!(stdout.contains("27 packages"), "{stdout}");
    // the same as the committed test lock, which was made the same way
    assert_eq!(fs::read_to_string(dir.join("drv.lock")).unwrap(), fs::read_to_string(TEST_LOCK).unwrap());
    // the security archive's packages come from its own mirror
    let written = fs::read_to_string(dir.join("drv.lock")).unwrap();
    assert!(written.contains("mirror = \"debian-security\"") && written.contains("repository = \"bookworm-security\""));
    // nothing to do the second time, and --check agrees, offline
    let (stdout, _) = text(&lock(&s, &dir, &[]));
    assert!(stdout.contains("up to date"), "{stdout}");
    let out = s.cmd().current_dir(&dir).args(["lock", "--check"]).env("DRV_MIRROR_DEBIAN", "file:///nonexistent").output().unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
}

#[test]
fn check_names_the_recipe_and_the_package_and_lock_adds_only_what_is_missing() {
    let s = TestStore::new();
    let dir = recipes(&s, &["dash"]);
    assert!(lock(&s, &dir, &[]).status.success());
    let before = fs::read_to_string(dir.join("drv.lock")).unwrap();
    assert!(!names(&before).contains(&"grep".to_owned()));

    fs::write(dir.join("more.toml"), "name = \"more\"\nversion = \"1\"\n[toolchain]\ndebian = [\"grep\"]\n[build]\nscript = 'true'\n").unwrap();
    let out = s.cmd().current_dir(&dir).args(["lock", "--check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let (_, stderr) = text(&out);
    assert!(stderr.contains("more.toml") && stderr.contains("\"grep\"") && stderr.contains("drv.lock"), "{stderr}");
    // evaluation refuses it too, pointing at the recipe
    let err = s.fails(&["eval", dir.join("more.toml").to_str().unwrap()]);
    assert!(err.contains("more.toml:4:") && err.contains("grep"), "{err}");

    let out = lock(&s, &dir, &[]);
    assert!(out.status.success(), "{}", text(&out).1);
    let after = fs::read_to_string(dir.join("drv.lock")).unwrap();
    assert!(names(&after).contains(&"grep".to_owned()));
    // every entry locked before is still there, byte for byte
    for entry in before.split("\n\n").filter(|e| e.starts_with("[[debian.package]]")) {
        assert!(after.contains(entry), "changed: {entry}");
    }
    assert!(s.cmd().current_dir(&dir).args(["lock", "--check"]).output().unwrap().status.success());
}

/// A copy of the miniature archive that a test may damage.
fn archive_copy(s: &TestStore, name: &str) -> PathBuf {
    let copy = s.scratch(name);
    let status = std::process::Command::new("cp").arg("-a").arg(format!("{FIXTURES}/debian")).arg(&copy).status().unwrap();
    assert!(status.success());
    copy
}

/// `drv` with the mirrors pointing at a copy of the archive.
fn against(s: &TestStore, archive: &Path) -> std::process::Command {
    let mut c = s.cmd();
    c.env("DRV_MIRROR_DEBIAN", format!("file://{}/debian", archive.display()))
        .env("DRV_MIRROR_DEBIAN_SECURITY", format!("file://{}/debian-security", archive.display()));
    c
}

fn lock_against(s: &TestStore, dir: &Path, archive: &Path) -> std::process::Output {
    against(s, archive).current_dir(dir).args(["lock", "--keyring", &keyring()]).output().unwrap()
}

#[test]
fn a_tampered_release_or_index_is_refused_and_no_lock_is_written() {
    let s = TestStore::new();
    let dir = recipes(&s, &["dash"]);

    // one byte of the signed text
    let archive = archive_copy(&s, "archive");
    let release = archive.join("debian/dists/bookworm/InRelease");
    let t = fs::read_to_string(&release).unwrap();
    fs::write(&release, t.replacen("Suite: bookworm", "Suite: bookwork", 1)).unwrap();
    let out = lock_against(&s, &dir, &archive);
    assert!(!out.status.success());
    let (_, stderr) = text(&out);
    assert!(stderr.contains("signature does not verify") && stderr.contains("InRelease"), "{stderr}");
    assert!(!dir.join("drv.lock").exists());

    // an index that is not the one the release lists
    let archive = archive_copy(&s, "archive2");
    let index = archive.join("debian/dists/bookworm/main/binary-amd64/Packages.xz");
    let mut bytes = fs::read(&index).unwrap();
    bytes.push(0);
    fs::write(&index, bytes).unwrap();
    let out = lock_against(&s, &dir, &archive);
    assert!(!out.status.success());
    let (_, stderr) = text(&out);
    assert!(stderr.contains("Packages.xz") && stderr.contains("the release lists"), "{stderr}");
    assert!(!dir.join("drv.lock").exists());

    // signed by a key that is not in the keyring: refused too
    let out = s
        .cmd()
        .current_dir(&dir)
        .args(["lock", "--keyring", "/usr/share/keyrings/debian-archive-keyring.gpg"])
        .output()
        .unwrap();
    if Path::new("/usr/share/keyrings/debian-archive-keyring.gpg").exists() {
        assert!(!out.status.success());
        assert!(text(&out).1.contains("signature does not verify"), "{}", text(&out).1);
    }
    // a keyring the user names must exist: no silent fall-back to unverified
    let out = s.cmd().current_dir(&dir).args(["lock", "--keyring", "/nonexistent/keyring.gpg"]).output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out).1.contains("keyring /nonexistent/keyring.gpg does not exist"), "{}", text(&out).1);
    assert!(!dir.join("drv.lock").exists());
}

#[test]
fn a_name_the_archive_does_not_have_names_the_recipe() {
    let s = TestStore::new();
    let dir = recipes(&s, &["dash", "no-such-package"]);
    let out = lock(&s, &dir, &[]);
    assert!(!out.status.success());
    let (_, stderr) = text(&out);
    assert!(stderr.contains("tools.toml") && stderr.contains("no-such-package"), "{stderr}");
    assert!(!dir.join("drv.lock").exists());
}

#[test]
fn a_pinned_deb_the_mirror_no_longer_has_is_one_clear_error() {
    let s = TestStore::new();
    let dir = recipes(&s, &["dash"]);
    fs::copy(TEST_LOCK, dir.join("drv.lock")).unwrap();
    let archive = archive_copy(&s, "archive");
    fs::remove_file(archive.join("debian/pool/main/d/dash/dash_0.5.12-2_amd64.deb")).unwrap();
    let out = against(&s, &archive).args(["build", "--no-link"]).arg(dir.join("tools.toml")).output().unwrap();
    assert!(!out.status.success());
    let (_, stderr) = text(&out);
    for part in ["dash 0.5.12-2", "no longer on mirror \"debian\"", "--substituters", "drv lock --update dash"] {
        assert!(stderr.contains(part), "{part:?} missing from:\n{stderr}");
    }
}

#[test]
fn a_deb_whose_bytes_changed_on_the_mirror_is_refused_and_nothing_is_registered() {
    let s = TestStore::new();
    let dir = recipes(&s, &["dash"]);
    fs::copy(TEST_LOCK, dir.join("drv.lock")).unwrap();
    let archive = archive_copy(&s, "archive");
    let deb = archive.join("debian/pool/main/d/dash/dash_0.5.12-2_amd64.deb");
    let mut bytes = fs::read(&deb).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&deb, bytes).unwrap();
    let out = against(&s, &archive).args(["build", "--no-link"]).arg(dir.join("tools.toml")).output().unwrap();
    assert!(!out.status.success());
    let (_, stderr) = text(&out);
    assert!(stderr.contains("other bytes for dash 0.5.12-2") && stderr.contains("drv lock --update dash"), "{stderr}");
    // in the lock's own spelling, so it can be found there
    let pinned = fs::read_to_string(dir.join("drv.lock")).unwrap();
    let hex = stderr.split("pinned: sha256 ").nth(1).unwrap().split_whitespace().next().unwrap();
    assert!(pinned.contains(&format!("sha256 = \"{hex}\"")), "{stderr}");
    let store: Vec<String> = fs::read_dir(s.root().join("store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".drv"))
        .collect();
    assert!(!store.iter().any(|n| n.contains("dash_") || n.ends_with("-toolchain") || n.starts_with(".tmp")), "{store:?}");
}

#[test]
fn update_moves_only_the_named_packages() {
    let s = TestStore::new();
    let dir = recipes(&s, &["dash", "grep"]);
    assert!(lock(&s, &dir, &[]).status.success());
    let current = fs::read_to_string(dir.join("drv.lock")).unwrap();
    // pretend dash and grep were locked at older versions
    let old = current.replace("version = \"0.5.12-2\"", "version = \"0.5.11-1\"").replace("version = \"3.8-5\"", "version = \"3.7-1\"");
    assert_ne!(old, current);
    fs::write(dir.join("drv.lock"), &old).unwrap();
    // covered: nothing moves without --update
    assert!(text(&lock(&s, &dir, &[])).0.contains("up to date"));
    assert_eq!(fs::read_to_string(dir.join("drv.lock")).unwrap(), old);
    // --update dash moves dash only
    let out = lock(&s, &dir, &["--update", "dash"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("1 changed"), "{stdout}");
    let after = fs::read_to_string(dir.join("drv.lock")).unwrap();
    assert!(after.contains("version = \"0.5.12-2\"") && after.contains("version = \"3.7-1\""), "{after}");
    // --update alone moves everything to the archive's versions; a path
    // after it is a path, not a package
    let out = s.cmd().current_dir(s.dir.path()).args(["lock", "--keyring", &keyring(), "--update", "recipes/"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(fs::read_to_string(dir.join("drv.lock")).unwrap(), current);
}

/// A `.deb` (pinned by its true sha256, so the download is accepted) whose
/// data.tar holds `../escaped`: the toolchain's assembly refuses it, names
/// the member and the package, and nothing reaches the store or its
/// parent directory.
#[test]
fn a_hostile_deb_fails_the_toolchain_and_nothing_is_registered() {
    let s = TestStore::new();
    let work = s.scratch("evil");
    let sh = |script: &str| {
        let out = std::process::Command::new("sh").arg("-ec").arg(script).current_dir(&work).output().unwrap();
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    };
    fs::create_dir_all(work.join("pkg")).unwrap();
    fs::write(work.join("pkg/escaped"), "outside\n").unwrap();
    fs::write(work.join("control"), "Package: evil\nVersion: 1\nArchitecture: amd64\n").unwrap();
    sh("printf '2.0\\n' > debian-binary; tar -czf control.tar.gz ./control; \
        tar -C pkg -cPzf data.tar.gz --transform 's,^,../,' escaped; \
        mkdir -p mirror/debian/pool/main/e/evil; ar rcD mirror/debian/pool/main/e/evil/evil_1_amd64.deb debian-binary control.tar.gz data.tar.gz");
    let deb = work.join("mirror/debian/pool/main/e/evil/evil_1_amd64.deb");
    let bytes = fs::read(&deb).unwrap();
    let sha = drv_formats::Sha256::digest(&bytes).to_hex();
    let dir = recipes(&s, &["evil"]);
    fs::write(
        dir.join("drv.lock"),
        format!(
            "version = 1\n\n[debian]\narchitecture = \"amd64\"\nsuite = \"bookworm\"\n\n[[debian.repository]]\nsuite = \"bookworm\"\nmirror = \"debian\"\ndate = \"d\"\n\n\
             [[debian.package]]\nname = \"evil\"\nversion = \"1\"\narchitecture = \"amd64\"\nrepository = \"bookworm\"\n\
             path = \"pool/main/e/evil/evil_1_amd64.deb\"\nsize = {}\nsha256 = \"{sha}\"\ndepends = []\n",
            bytes.len()
        ),
    )
    .unwrap();
    let out = s
        .cmd()
        .env("DRV_MIRROR_DEBIAN", format!("file://{}/mirror/debian", work.display()))
        .args(["build", "--no-link"])
        .arg(dir.join("tools.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let (_, stderr) = text(&out);
    assert!(stderr.contains("../escaped") && stderr.contains("evil_1_amd64.deb"), "{stderr}");
    let store: Vec<String> = fs::read_dir(s.root().join("store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!store.iter().any(|n| n.ends_with("-toolchain") || n.starts_with(".tmp") || n == "escaped"), "{store:?}");
    assert!(!s.root().join("escaped").exists());
    s.ok(&["store", "verify", "--check-contents"]);
}

fn version_of(lock: &str, name: &str) -> String {
    let at = lock.find(&format!("name = \"{name}\"\n")).unwrap();
    let v = &lock[at..];
    let v = &v[v.find("version = \"").unwrap() + "version = \"".len()..];
    v[..v.find('"').unwrap()].to_owned()
}

/// Debian's exact relations (libgcc-s1 needs `gcc-12-base (= its
/// version)`): updating one of the pair moves the other, whichever is named.
#[test]
fn update_keeps_exact_version_relations_whole() {
    for named in ["libgcc-s1", "gcc-12-base"] {
        let s = TestStore::new();
        let dir = recipes(&s, &["dash"]);
        assert!(lock(&s, &dir, &[]).status.success());
        let current = fs::read_to_string(dir.join("drv.lock")).unwrap();
        let now = version_of(&current, "libgcc-s1");
        assert_eq!(version_of(&current, "gcc-12-base"), now);
        let old = current.replace(&format!("version = \"{now}\""), "version = \"12.2.0-14\"");
        fs::write(dir.join("drv.lock"), &old).unwrap();
        let out = lock(&s, &dir, &["--update", named]);
        assert!(out.status.success(), "{}", text(&out).1);
        let after = fs::read_to_string(dir.join("drv.lock")).unwrap();
        assert_eq!((version_of(&after, "libgcc-s1"), version_of(&after, "gcc-12-base")), (now.clone(), now.clone()), "{named}");
        assert!(text(&out).0.contains("2 changed"), "{}", text(&out).0);
    }
}

/// Recipes beside each other share the lock: locking one of them keeps
/// what the others need, and names a lock never had cannot be updated.
#[test]
fn locking_one_recipe_keeps_the_others_packages() {
    let s = TestStore::new();
    let dir = recipes(&s, &["dash", "grep"]);
    assert!(lock(&s, &dir, &[]).status.success());
    let before = fs::read_to_string(dir.join("drv.lock")).unwrap();
    fs::write(dir.join("new.toml"), "name = \"new\"\nversion = \"1\"\n[toolchain]\ndebian = [\"sed\"]\n[build]\nscript = 'true'\n").unwrap();
    let out = lock(&s, &dir, &["new.toml"]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(text(&out).0.contains("0 removed"), "{}", text(&out).0);
    let after = fs::read_to_string(dir.join("drv.lock")).unwrap();
    for name in names(&before) {
        assert!(names(&after).contains(&name), "{name} dropped");
    }
    assert!(after.contains("requested = [\"dash\", \"grep\", \"sed\"]"), "{after}");
    // --update of one file re-resolves every root, not only that file's
    let out = lock(&s, &dir, &["--update", "new.toml"]);
    assert!(out.status.success() && text(&out).0.contains("0 removed"), "{}", text(&out).0);

    let out = lock(&s, &dir, &["--update", "nosuchpkg"]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("\"nosuchpkg\" is neither in"), "{}", text(&out).1);
    // another suite only with a full update
    let out = lock(&s, &dir, &["--suite", "trixie"]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("is for bookworm (amd64)") && text(&out).1.contains("--update"), "{}", text(&out).1);
}

/// Without a lock file, `--check` checks what evaluation would use: drv's
/// built-in lock.
#[test]
fn check_without_a_lock_file_checks_the_built_in_lock() {
    let s = TestStore::new();
    let dir = recipes(&s, &["gcc", "make"]);
    let out = s.cmd().current_dir(&dir).args(["lock", "--check"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(text(&out).0.contains("built-in lock"), "{}", text(&out).0);
    let dir = recipes(&s, &["gcc", "perl"]);
    let out = s.cmd().current_dir(&dir).args(["lock", "--check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("\"perl\" is not in drv's built-in lock"), "{}", text(&out).1);
}
