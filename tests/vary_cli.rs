//! `drv build --check --vary`: one tiny recipe per variation, each leaking
//! exactly that circumstance into its output, must be named for exactly
//! that variation; a reproducible recipe passes with none.

mod common;

use std::fs;
use std::path::PathBuf;

use common::TestStore;

const TOOLS: &str = "[toolchain]\ndebian = [\"dash\", \"coreutils\"]\n";

fn recipe(s: &TestStore, name: &str, script: &str) -> PathBuf {
    let dir = s.scratch("recipes");
    common::write_lock(&dir);
    let p = dir.join(format!("{name}.toml"));
    fs::write(&p, format!("name = \"{name}\"\nversion = \"1\"\n{TOOLS}[build]\nscript = '''\n{script}\n'''\n")).unwrap();
    p
}

/// Build `script`, then check it under `vary`; the exit status and the
/// JSON report of the recipe's own derivation.
fn vary(name: &str, script: &str, vary: &str) -> (bool, serde_json::Value, TestStore) {
    let s = TestStore::new();
    let r = recipe(&s, name, script);
    s.ok(&["build", "--no-link", r.to_str().unwrap()]);
    let out = s.cmd().args(["build", "--no-link", "--check", &format!("--vary={vary}"), "--json", r.to_str().unwrap()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr)));
    let report = json["derivations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["drv"].as_str().unwrap().ends_with(&format!("-{name}-1.drv")))
        .unwrap_or_else(|| panic!("no report of {name}: {json:#}"))
        .clone();
    (out.status.success(), report, s)
}

/// The variations named as causes, each cause as `a+b`.
fn causes(report: &serde_json::Value) -> Vec<String> {
    report["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["variations"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect::<Vec<_>>().join("+"))
        .collect()
}

fn names_exactly(name: &str, script: &str, expected: &str) -> serde_json::Value {
    let (ok, report, _s) = vary(name, script, "all");
    assert!(!ok, "a non-reproducible build passed: {report:#}");
    assert_eq!(report["reproducible"], false, "{report:#}");
    assert!(report["uncontrolled"].is_null(), "{report:#}");
    assert_eq!(causes(&report), vec![expected.to_owned()], "{report:#}");
    // The difference is described, file by file.
    let cause = &report["causes"][0];
    assert!(!cause["outputs"][0]["differences"].as_array().unwrap().is_empty(), "{report:#}");
    report
}

#[test]
fn a_reproducible_recipe_passes_with_no_difference() {
    let (ok, report, _s) = vary("steady", "mkdir $out; echo hello > $out/greeting; ls $out > $out/listing", "all");
    assert!(ok, "{report:#}");
    assert_eq!(report["reproducible"], true, "{report:#}");
    assert!(causes(&report).is_empty(), "{report:#}");
    // Two builds at the same moment and one under every variation.
    assert_eq!(report["builds"], 3, "{report:#}");
}

#[test]
fn the_build_directorys_path_is_named_build_path() {
    names_exactly("pwd", "pwd > $out", "build-path");
}

#[test]
fn the_date_is_named_time() {
    let report = names_exactly("clock", "date -u > $out", "time");
    assert!(report["kept"][0].as_str().unwrap().ends_with("-clock-1.check"), "{report:#}");
}

#[test]
fn the_core_count_is_named_cores() {
    names_exactly("cores", "{ nproc; echo $NIX_BUILD_CORES; } > $out", "cores");
}

#[test]
fn the_umask_is_named_umask() {
    names_exactly("umask", "umask > $out", "umask");
}

#[test]
fn the_user_is_named_user() {
    names_exactly("ident", "id > $out", "user");
}

#[test]
fn the_host_name_is_named_hostname() {
    names_exactly("host", "uname -n > $out", "hostname");
}

#[test]
fn the_locale_is_named_locale() {
    names_exactly("locale", "echo \"LANG=$LANG LC_ALL=$LC_ALL\" > $out", "locale");
}

#[test]
fn the_time_zone_is_named_timezone() {
    names_exactly("zone", "date +%Z > $out", "timezone");
}

#[test]
fn an_environment_variable_is_named_env() {
    names_exactly("editor", "echo \"${EDITOR:-none}\" > $out", "env");
}

#[test]
fn a_directory_listing_is_named_file_order() {
    let script = "mkdir d\nfor f in one two three four five six seven eight nine ten; do echo $f > d/$f; done\nls -f d > $out";
    let probe = TestStore::new();
    let on_tmpfs = nix::sys::statfs::statfs(probe.dir.path()).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
    if on_tmpfs {
        // Nothing to vary: the store's file system is a tmpfs like /build.
        let (_, report, _s) = vary("listing", script, "file-order");
        assert_eq!(report["not_varied"][0]["variation"], "file-order", "{report:#}");
        return;
    }
    names_exactly("listing", script, "file-order");
}

/// Two variations that change the output only together are found as a
/// pair; one asked for alone is the only one tried.
#[test]
fn variations_that_matter_only_together_are_named_together() {
    let script = "if [ \"$(umask)\" != 0022 ] && [ \"$(uname -n)\" != localhost ]; then echo both > $out; else echo same > $out; fi";
    let (ok, report, _s) = vary("pair", script, "all");
    assert!(!ok);
    assert_eq!(causes(&report), vec!["umask+hostname".to_owned()], "{report:#}");

    let (ok, report, _s) = vary("pair", script, "umask");
    assert!(ok, "{report:#}");
    assert_eq!(report["varied"], serde_json::json!(["umask"]), "{report:#}");
}

/// Randomness is no variation's doing: said so, and nothing is narrowed.
#[test]
fn randomness_is_reported_as_uncontrolled() {
    let (ok, report, _s) = vary("random", "head -c 16 /dev/urandom | od -An -tx1 > $out", "all");
    assert!(!ok);
    assert!(!report["uncontrolled"].is_null(), "{report:#}");
    assert!(causes(&report).is_empty(), "{report:#}");
}

/// The text report names the cause and the differing file; the exit
/// status is non-zero.
#[test]
fn the_text_report_names_the_cause_and_the_file() {
    let s = TestStore::new();
    let r = recipe(&s, "mask", "mkdir $out; echo same > $out/same; umask > $out/mask");
    s.ok(&["build", "--no-link", r.to_str().unwrap()]);
    let err = s.fails(&["build", "--no-link", "--check", "--vary=umask,hostname", r.to_str().unwrap()]);
    assert!(err.contains("NOT reproducible"), "{err}");
    assert!(err.contains("depends on umask (umask 0002"), "{err}");
    assert!(err.contains("mask: sizes 5 and 5, first difference at byte 2"), "{err}");
    assert!(!err.contains("same:"), "{err}");
    assert!(!err.contains("depends on hostname"), "{err}");
    let err = s.fails(&["build", "--vary", r.to_str().unwrap()]);
    assert!(err.contains("--check"), "{err}");
    let err = s.fails(&["build", "--check", "--vary=umask,clock", r.to_str().unwrap()]);
    assert!(err.contains("unknown variation \"clock\""), "{err}");
}

/// The difference inside an archive is told member by member, and a text
/// file's as a unified diff; diffoscope's report is named where it is
/// installed.
#[test]
fn differences_are_described_in_the_files_formats() {
    let s = TestStore::new();
    let dir = s.scratch("recipes");
    common::write_lock(&dir);
    let r = dir.join("archive.toml");
    fs::write(
        &r,
        "name = \"archive\"\nversion = \"1\"\n[toolchain]\ndebian = [\"dash\", \"coreutils\", \"tar\"]\n[build]\nscript = '''\n\
         mkdir -p $out d\necho hi > d/f\ntar --sort=name --mtime=@1 --owner=0 --group=0 --numeric-owner -cf $out/d.tar d\n\
         printf 'one\\ntwo\\n' > $out/notes\numask >> $out/notes\n'''\n",
    )
    .unwrap();
    s.ok(&["build", "--no-link", r.to_str().unwrap()]);
    let err = s.fails(&["build", "--no-link", "--check", "--vary=umask", r.to_str().unwrap()]);
    assert!(err.contains("d.tar: sizes 10240 and 10240"), "{err}");
    assert!(err.contains("tar: member d/f: mode 644 → 664"), "{err}");
    assert!(err.contains("-0022") && err.contains("+0002"), "{err}");
    let diffoscope = std::process::Command::new("diffoscope").arg("--version").output().is_ok_and(|o| o.status.success());
    assert_eq!(err.contains("diffoscope's report: "), diffoscope, "{err}");
}
