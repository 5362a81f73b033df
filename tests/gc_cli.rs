//! `drv gc` and `drv root`, run as a user runs them against temporary
//! roots. Stores are built through the library (text paths with
//! references, as `.drv` files are stored), in this test process, whose
//! temporary roots are then dropped so that `drv gc` sees only the roots
//! each test sets up.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::TestStore;
use drv_formats::{StoreDir, StorePath};
use drv_store::LocalStore;

fn open(root: &Path) -> LocalStore {
    LocalStore::open(root, StoreDir::default()).unwrap()
}

/// `len` text paths, each referring to the one before; the last is the head.
fn chain(store: &mut LocalStore, prefix: &str, len: usize) -> Vec<StorePath> {
    let mut out: Vec<StorePath> = Vec::new();
    for i in 0..len {
        let refs: BTreeSet<StorePath> = out.last().cloned().into_iter().collect();
        let text = format!("{prefix} {i} {}", out.last().map(|p| store.display(p)).unwrap_or_default());
        out.push(store.add_text(&format!("{prefix}-{i}"), text.as_bytes(), &refs).unwrap());
    }
    out
}

fn valid(store: &LocalStore) -> BTreeSet<String> {
    store.all_valid_paths().unwrap().iter().map(|p| store.display(p)).collect()
}

fn display_all(store: &LocalStore, paths: &[StorePath]) -> BTreeSet<String> {
    paths.iter().map(|p| store.display(p)).collect()
}

/// The names in the store directory, as logical paths.
fn store_entries(store: &LocalStore) -> BTreeSet<String> {
    fs::read_dir(store.real_store_dir())
        .unwrap()
        .map(|e| format!("/store/{}", e.unwrap().file_name().to_string_lossy()))
        .collect()
}

fn gc_json(s: &TestStore, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["gc", "--json"];
    args.extend(extra);
    serde_json::from_str(&s.ok(&args)).unwrap()
}

fn deleted(v: &serde_json::Value) -> BTreeSet<String> {
    v["deleted"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_owned()).collect()
}

#[test]
fn roots_of_every_kind_keep_their_closures_and_nothing_else() {
    let s = TestStore::new();
    let mut store = open(&s.root());
    let explicit = chain(&mut store, "explicit", 4);
    let indirect = chain(&mut store, "indirect", 3);
    let temporary = chain(&mut store, "temporary", 3);
    let dead = chain(&mut store, "dead", 5);
    // a dependency shared by a live and a dead path stays
    let shared = chain(&mut store, "shared", 1);
    let dead_user = store.add_text("dead-user", b"x", &BTreeSet::from([shared[0].clone()])).unwrap();
    let live_user = store.add_text("live-user", b"y", &BTreeSet::from([shared[0].clone()])).unwrap();
    store.clear_temp_roots().unwrap();

    s.ok(&["root", "add", "mine", &store.display(explicit.last().unwrap())]);
    s.ok(&["root", "add", "other", &store.display(&live_user)]);
    let result = s.scratch("result");
    std::os::unix::fs::symlink(store.real_path(indirect.last().unwrap()), &result).unwrap();
    store.add_indirect_root(&result).unwrap();
    // held by this (running) process
    store.add_temp_root(temporary.last().unwrap()).unwrap();
    // leftovers: an interrupted build's output, a dead staging directory,
    // a --check copy
    let real = store.real_store_dir().to_owned();
    fs::create_dir_all(real.join("0c1n8g2nvmfq8vbn9z1nm7fjl4z5sxls-partial/bin")).unwrap();
    fs::create_dir_all(real.join(".tmp-999999-deadbeef/object")).unwrap();
    fs::write(real.join(format!("{}.check", dead[0].to_basename())), "old").unwrap();

    let v = gc_json(&s, &[]);
    let mut live = display_all(&store, &explicit);
    live.extend(display_all(&store, &indirect));
    live.extend(display_all(&store, &temporary));
    live.extend(display_all(&store, &[shared[0].clone(), live_user.clone()]));
    assert_eq!(valid(&store), live);
    assert_eq!(store_entries(&store), live, "only live paths are left in the store directory");
    let mut want_deleted = display_all(&store, &dead);
    want_deleted.insert(store.display(&dead_user));
    want_deleted.extend(
        ["0c1n8g2nvmfq8vbn9z1nm7fjl4z5sxls-partial", ".tmp-999999-deadbeef"].map(|n| format!("/store/{n}")),
    );
    want_deleted.insert(format!("/store/{}.check", dead[0].to_basename()));
    assert_eq!(deleted(&v), want_deleted);
    assert_eq!(v["deletedCount"], want_deleted.len());
    assert!(v["bytesFreed"].as_u64().unwrap() > 0);
    s.ok(&["store", "verify", "--check-contents"]);

    // the roots as reported
    let roots = s.ok(&["gc", "--print-roots"]);
    assert!(roots.contains(&format!("mine -> {}", store.display(explicit.last().unwrap()))), "{roots}");
    assert!(roots.contains(&format!("{} -> {}", result.display(), store.display(indirect.last().unwrap()))), "{roots}");
    assert!(roots.contains(&format!("{{temp:{}}} -> ", std::process::id())), "{roots}");

    // once the temporary root's process lets go, its closure is garbage
    store.clear_temp_roots().unwrap();
    let v = gc_json(&s, &[]);
    assert_eq!(deleted(&v), display_all(&store, &temporary));
}

#[test]
fn removing_a_result_link_makes_its_closure_collectable() {
    let s = TestStore::new();
    let mut store = open(&s.root());
    let first = chain(&mut store, "first", 3);
    let second = chain(&mut store, "second", 2);
    store.clear_temp_roots().unwrap();
    let result = s.scratch("result");
    // a relative, logical target is fine too: it names a store path
    std::os::unix::fs::symlink(store.display(first.last().unwrap()), &result).unwrap();
    store.add_indirect_root(&result).unwrap();
    let v = gc_json(&s, &[]);
    assert_eq!(deleted(&v), display_all(&store, &second));
    assert_eq!(valid(&store), display_all(&store, &first));

    // repointed: the old target goes, the new one stays
    let third = chain(&mut store, "third", 2);
    store.clear_temp_roots().unwrap();
    fs::remove_file(&result).unwrap();
    std::os::unix::fs::symlink(store.real_path(third.last().unwrap()), &result).unwrap();
    let v = gc_json(&s, &[]);
    assert_eq!(deleted(&v), display_all(&store, &first));

    // removed: everything goes, and the registration with it
    fs::remove_file(&result).unwrap();
    let v = gc_json(&s, &[]);
    assert_eq!(deleted(&v), display_all(&store, &third));
    assert!(valid(&store).is_empty());
    assert_eq!(fs::read_dir(store.layout().auto_roots_dir()).unwrap().count(), 0);
}

#[test]
fn dry_run_deletes_nothing_and_lists_exactly_what_a_real_run_deletes() {
    let s = TestStore::new();
    let mut store = open(&s.root());
    let live = chain(&mut store, "live", 5);
    for c in 0..5 {
        chain(&mut store, &format!("dead{c}"), 6);
    }
    store.clear_temp_roots().unwrap();
    s.ok(&["root", "add", "live", &store.display(live.last().unwrap())]);
    fs::create_dir_all(store.real_store_dir().join("leftover")).unwrap();

    // with --max-freed: the same prefix of the same order
    let before = s.snapshot();
    let dry_limited = s.ok(&["gc", "--dry-run", "--max-freed", "500"]);
    let dry_limited: Vec<&str> = dry_limited.lines().collect();
    assert_eq!(s.snapshot(), before, "--dry-run changed the store");
    let real_limited = gc_json(&s, &["--max-freed", "500"]);
    let real_limited: Vec<&str> = real_limited["deleted"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(dry_limited, real_limited);
    assert!(real_limited.len() > 1 && real_limited.len() < 31, "{real_limited:?}");

    let before = s.snapshot();
    let out = s.cmd().args(["gc", "--dry-run"]).output().unwrap();
    assert!(out.status.success());
    let dry: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains(&format!("would delete {} paths", dry.len())), "{stderr}");
    assert_eq!(s.snapshot(), before, "--dry-run changed the store");
    assert_eq!(s.ok(&["gc", "--print-dead"]).lines().collect::<Vec<_>>(), dry);
    assert_eq!(s.snapshot(), before, "--print-dead changed the store");
    let live_listed: BTreeSet<String> = s.ok(&["gc", "--print-live"]).lines().map(str::to_owned).collect();
    assert_eq!(live_listed, display_all(&store, &live));

    let out = s.cmd().args(["gc"]).output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains(&format!("deleted {} paths, freed ", dry.len())), "{stderr}");
    assert_eq!(valid(&store), display_all(&store, &live));
    assert_eq!(store_entries(&store), display_all(&store, &live));
    // nothing left to do
    assert_eq!(gc_json(&s, &[])["deletedCount"], 0);
}

#[test]
fn root_commands_add_list_and_remove() {
    let s = TestStore::new();
    let mut store = open(&s.root());
    let p = chain(&mut store, "p", 2);
    store.clear_temp_roots().unwrap();
    let head = store.display(&p[1]);
    s.ok(&["root", "add", "proj", &head]);
    assert_eq!(s.ok(&["root", "list"]), format!("proj -> {head}\n"));
    let json: serde_json::Value = serde_json::from_str(&s.ok(&["root", "list", "--json"])).unwrap();
    assert_eq!(json, serde_json::json!([{"root": "proj", "path": head}]));
    assert_eq!(gc_json(&s, &[])["deletedCount"], 0);

    let err = s.fails(&["root", "add", "../escape", &head]);
    assert!(err.contains("not a valid root name"), "{err}");
    let err = s.fails(&["root", "add", "x", "/store/0c1n8g2nvmfq8vbn9z1nm7fjl4z5sxls-nope"]);
    assert!(err.contains("not a valid store path"), "{err}");
    let err = s.fails(&["gc", "--max-freed", "lots"]);
    assert!(err.contains("not a size"), "{err}");

    s.ok(&["root", "remove", "proj"]);
    let err = s.fails(&["root", "remove", "proj"]);
    assert!(err.contains("no root named \"proj\""), "{err}");
    assert_eq!(s.ok(&["root", "list"]), "");
    assert_eq!(gc_json(&s, &[])["deletedCount"], 2);
}

const BUILDER_ROOT: &str = "DRV_GC_TEST_BUILDER_ROOT";
const BUILDER_ROUND: &str = "DRV_GC_TEST_BUILDER_ROUND";
const CHAIN_LEN: usize = 25;

/// Not a test on its own: the body of the builder processes that
/// `collection_in_a_loop_never_breaks_concurrent_builds` starts (this test
/// binary run again with the environment set). It "builds" a chain of
/// recipes the way the realiser does: each step's input is made a temporary
/// root before it is checked, then the output is created from it, and every
/// input and output must be there, valid, when used.
#[test]
fn chain_builder_process() {
    let (Ok(root), Ok(round)) = (std::env::var(BUILDER_ROOT), std::env::var(BUILDER_ROUND)) else { return };
    let round: usize = round.parse().unwrap();
    let mut store = open(Path::new(&root));
    let mut prev: Option<StorePath> = None;
    for step in 0..CHAIN_LEN {
        if let Some(input) = &prev {
            store.add_temp_root(input).unwrap();
            assert!(store.is_valid(input).unwrap(), "input {input} of step {step} vanished");
            assert!(fs::symlink_metadata(store.real_path(input)).is_ok(), "files of {input} vanished");
        }
        // Every third round changes the recipes from step 10 on: the rest
        // is rebuilt from what the previous rounds left, if GC kept it.
        let variant = if step >= 10 { round / 3 } else { 0 };
        let refs: BTreeSet<StorePath> = prev.iter().cloned().collect();
        let text = format!("step {step} variant {variant} {}", prev.as_ref().map(|p| store.display(p)).unwrap_or_default());
        let out = store.add_text(&format!("step-{step}"), text.as_bytes(), &refs).unwrap();
        assert!(store.is_valid(&out).unwrap(), "output {out} of step {step} is not valid");
        assert_eq!(fs::read(store.real_path(&out)).unwrap(), text.as_bytes(), "output {out} of step {step}");
        prev = Some(out);
    }
    let head = prev.unwrap();
    assert_eq!(store.closure(&BTreeSet::from([head.clone()])).unwrap().len(), CHAIN_LEN);
    println!("{}", store.display(&head));
}

#[test]
fn collection_in_a_loop_never_breaks_concurrent_builds() {
    let s = TestStore::new();
    drop(open(&s.root()));
    let stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let stop = stop.clone();
        let mut cmd = s.cmd();
        cmd.args(["gc", "--json"]);
        std::thread::spawn(move || {
            let mut runs = 0;
            let mut deleted = 0;
            while !stop.load(Ordering::Relaxed) || runs < 3 {
                let out = cmd.output().unwrap();
                assert!(out.status.success(), "drv gc failed: {}", String::from_utf8_lossy(&out.stderr));
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                deleted += v["deletedCount"].as_u64().unwrap();
                runs += 1;
            }
            (runs, deleted)
        })
    };
    // `drv store add` in a loop too: what it adds it prints, valid.
    let adder = {
        let mut base = s.cmd();
        base.args(["store", "add"]);
        let dir = s.scratch("adds");
        fs::create_dir_all(&dir).unwrap();
        let root = s.root();
        std::thread::spawn(move || {
            for i in 0..15 {
                let f = dir.join(format!("file{}", i % 4));
                fs::write(&f, format!("content {}", i % 4)).unwrap();
                let out = Command::new(base.get_program()).args(base.get_args()).arg(&f).output().unwrap();
                assert!(out.status.success(), "drv store add failed: {}", String::from_utf8_lossy(&out.stderr));
                let printed = String::from_utf8(out.stdout).unwrap();
                assert!(printed.trim().starts_with("/store/"), "{printed}");
                let _ = &root;
            }
        })
    };
    let exe = std::env::current_exe().unwrap();
    for round in 0..12 {
        let out = Command::new(&exe)
            .args(["--exact", "chain_builder_process", "--nocapture", "--test-threads=1"])
            .env(BUILDER_ROOT, s.root())
            .env(BUILDER_ROUND, round.to_string())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "builder round {round} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    adder.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let (runs, deleted) = collector.join().unwrap();
    assert!(runs >= 3 && deleted > 0, "the collector ran {runs} times and deleted {deleted} paths");
    s.ok(&["store", "verify", "--check-contents"]);
}

#[test]
fn sigkill_during_a_collection_leaves_a_consistent_store() {
    let s = TestStore::new();
    let mut store = open(&s.root());
    let live = chain(&mut store, "live", 20);
    store.clear_temp_roots().unwrap();
    s.ok(&["root", "add", "live", &store.display(live.last().unwrap())]);
    for round in 0..2 {
        for c in 0..60 {
            chain(&mut store, &format!("dead{round}-{c}"), 50);
        }
        store.clear_temp_roots().unwrap();
        assert_eq!(store.all_valid_paths().unwrap().len(), 20 + 3000);
        let mut child = s.cmd().args(["gc"]).stderr(Stdio::null()).spawn().unwrap();
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos() as u64;
        std::thread::sleep(Duration::from_millis(20 + nanos % 200));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let verify = s.cmd().args(["store", "verify"]).output().unwrap();
        assert!(verify.status.success(), "round {round}: {}", String::from_utf8_lossy(&verify.stdout));
        s.ok(&["gc"]);
        assert_eq!(valid(&store), display_all(&store, &live));
        assert_eq!(store_entries(&store), display_all(&store, &live));
        s.ok(&["store", "verify", "--check-contents"]);
    }
}

/// A path whose only user is a running process survives a collection, as
/// Nix's runtime roots make it survive `nix-store --gc`: one process works
/// inside a path, another names a path in its environment, a third has a
/// file of a path open; once they exit, the paths are collectable.
#[test]
fn paths_running_processes_use_are_kept_until_they_exit() {
    let s = TestStore::new();
    let add = |name: &str| {
        let dir = s.scratch(name);
        fs::create_dir_all(&dir).unwrap();
        // Contents of this run only: a process of another run (another
        // root) naming the same path would be a runtime root of it here too.
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        fs::write(dir.join("data"), format!("{name} {} {nanos}", std::process::id())).unwrap();
        s.ok(&["store", "add", dir.to_str().unwrap()]).trim().to_owned()
    };
    let (cwd, env, open) = (add("in-cwd"), add("in-env"), add("open-file"));
    let physical = |p: &str| s.root().join(p.trim_start_matches('/'));
    let mut holders = [
        Command::new("sleep").arg("60").current_dir(physical(&cwd)).spawn().unwrap(),
        Command::new("sleep").arg("60").env("HOLD", &env).spawn().unwrap(),
        Command::new("sleep").arg("60").stdin(fs::File::open(physical(&open).join("data")).unwrap()).spawn().unwrap(),
    ];
    let v = gc_json(&s, &["--print-roots"]);
    for p in [&cwd, &env, &open] {
        assert!(physical(p).join("data").exists(), "{p} deleted while in use: {v}");
    }
    let runtime: BTreeSet<(String, String)> = v["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["root"].as_str().unwrap().to_owned(), r["path"].as_str().unwrap().to_owned()))
        .collect();
    for (h, p) in holders.iter().zip([&cwd, &env, &open]) {
        assert!(runtime.contains(&(format!("{{runtime:{}}}", h.id()), p.clone())), "{runtime:?}");
    }
    for h in &mut holders {
        h.kill().unwrap();
        h.wait().unwrap();
    }
    let v = gc_json(&s, &[]);
    assert_eq!(deleted(&v), BTreeSet::from([cwd, env, open]), "{v}");
}
