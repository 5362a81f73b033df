use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;
use crate::deb::Compression;
use crate::test_debs::*;

/// Every entry under `root`: a symlink as `-> target`, a file as its mode
/// and contents, a directory as `dir`.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for path in entries {
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                out.insert(rel, format!("-> {}", fs::read_link(&path).unwrap().display()));
            } else if meta.is_dir() {
                out.insert(rel, "dir".into());
                walk(root, &path, out);
            } else {
                let mode = meta.permissions().mode() & 0o7777;
                out.insert(rel, format!("{mode:o} {}", String::from_utf8_lossy(&fs::read(&path).unwrap())));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn options(jobs: usize) -> AssembleOptions {
    AssembleOptions { jobs }
}

/// A package like dash: `/bin/sh` a link to a program in `/bin`, a
/// library in `/lib`, documentation.
fn shell_package() -> Vec<Entry> {
    vec![
        Dir("./"),
        Dir("./bin/"),
        exe("./bin/dash", &elf(Some("/lib64/ld-linux-x86-64.so.2"), &["libc.so.6"], None)),
        Symlink("./bin/sh", "dash"),
        Dir("./usr/"),
        Dir("./usr/share/"),
        Dir("./usr/share/doc/"),
        Dir("./usr/share/doc/dash/"),
        file("./usr/share/doc/dash/copyright", b"GPL"),
        Dir("./usr/share/man/man1/"),
        file("./usr/share/man/man1/dash.1.gz", b"man"),
        Dir("./usr/share/dash/"),
        file("./usr/share/dash/data", b"data"),
    ]
}

fn libc_package() -> Vec<Entry> {
    vec![
        Dir("./"),
        Dir("./lib/"),
        Dir("./lib/x86_64-linux-gnu/"),
        exe("./lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", &elf(None, &[], None)),
        file("./lib/x86_64-linux-gnu/libc.so.6", &elf(Some("/lib64/ld-linux-x86-64.so.2"), &[], None)),
        Dir("./lib64/"),
        Symlink("./lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
        Dir("./usr/share/doc/libc6/"),
        file("./usr/share/doc/libc6/copyright", b"LGPL"),
        Dir("./usr/share/lintian/overrides/"),
        file("./usr/share/lintian/overrides/libc6", b"x"),
    ]
}

#[test]
fn merged_usr_documentation_modes_and_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let debs = [
        write_deb(dir.path(), "dash", &shell_package(), Compression::Xz),
        write_deb(dir.path(), "libc6", &libc_package(), Compression::Zstd),
    ];
    let out = dir.path().join("tree");
    let done = assemble(&debs, &out, &options(2)).unwrap();
    let tree = snapshot(&out);

    assert_eq!(tree["bin"], "-> usr/bin");
    assert_eq!(tree["lib"], "-> usr/lib");
    assert_eq!(tree["lib64"], "-> usr/lib64");
    assert!(!tree.contains_key("sbin"), "no usr/sbin, so no sbin link");
    assert_eq!(tree["usr/bin/sh"], "-> dash");
    assert!(tree["usr/bin/dash"].starts_with("755 "));
    assert!(tree["usr/lib/x86_64-linux-gnu/libc.so.6"].starts_with("644 "));
    assert_eq!(tree["usr/share/dash/data"], "644 data");
    assert!(tree.keys().all(|p| !is_documentation(p)), "{tree:#?}");
    assert!(tree.contains_key("usr/share"), "usr/share itself is kept");

    assert_eq!(done.packages.iter().map(|p| p.package.as_str()).collect::<Vec<_>>(), ["dash", "libc6"]);
    assert_eq!(done.elf_files, 3);
    let manifest: serde_json::Value = serde_json::from_slice(&fs::read(out.join(MANIFEST)).unwrap()).unwrap();
    assert_eq!(manifest["format"], FORMAT_VERSION);
    assert_eq!(manifest["packages"][0]["name"], "dash");
    assert_eq!(manifest["packages"][1]["version"], "1.0-1");
    assert_eq!(manifest["usrmerge_links"][0]["path"], "bin");
}

#[test]
fn every_compression_gives_the_same_tree() {
    let dir = tempfile::tempdir().unwrap();
    let mut trees = Vec::new();
    for compression in [Compression::None, Compression::Gzip, Compression::Xz, Compression::Zstd] {
        let sub = dir.path().join(format!("c{}", suffix(compression)));
        fs::create_dir(&sub).unwrap();
        let debs = [
            write_deb(&sub, "dash", &shell_package(), compression),
            write_deb(&sub, "libc6", &libc_package(), compression),
        ];
        let out = sub.join("tree");
        assemble(&debs, &out, &options(1)).unwrap();
        trees.push(snapshot(&out));
    }
    assert!(trees.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn order_and_threads_do_not_matter() {
    let dir = tempfile::tempdir().unwrap();
    let extra = vec![
        Dir("./usr/bin/"),
        exe("./usr/bin/mawk", b"awk"),
        exe("./usr/bin/gcc-12", b"gcc"),
        Symlink("./usr/bin/gcc", "gcc-12"),
        // The same directory and the same symlink as dash: both fine.
        Dir("./bin/"),
        Symlink("./bin/sh", "dash"),
    ];
    let mut debs = vec![
        write_deb(dir.path(), "dash", &shell_package(), Compression::Xz),
        write_deb(dir.path(), "libc6", &libc_package(), Compression::Gzip),
        write_deb(dir.path(), "tools", &extra, Compression::Zstd),
    ];
    let a = dir.path().join("a");
    assemble(&debs, &a, &options(1)).unwrap();
    debs.reverse();
    let b = dir.path().join("b");
    assemble(&debs, &b, &options(3)).unwrap();
    assert_eq!(snapshot(&a), snapshot(&b));
    assert_eq!(snapshot(&a)["usr/bin/cc"], "-> gcc");
}

#[test]
fn declared_links_only_when_their_target_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let tools = vec![
        Dir("./usr/bin/"),
        exe("./usr/bin/mawk", b"awk"),
        Dir("./usr/lib/"),
        exe("./usr/bin/cpp-12", b"cpp"),
        Symlink("./usr/bin/cpp", "cpp-12"),
    ];
    let debs = [write_deb(dir.path(), "tools", &tools, Compression::Xz)];
    let out = dir.path().join("tree");
    let done = assemble(&debs, &out, &options(1)).unwrap();
    let tree = snapshot(&out);
    assert_eq!(tree["usr/bin/awk"], "-> mawk");
    assert_eq!(tree["usr/bin/nawk"], "-> mawk");
    assert_eq!(tree["usr/lib/cpp"], "-> ../bin/cpp");
    for absent in ["usr/bin/cc", "usr/bin/c++", "usr/bin/which", "usr/bin/lzma", "usr/sbin/rmt"] {
        assert!(!tree.contains_key(absent), "{absent} made without its target");
    }
    let made: Vec<&str> = done.declared_links.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(made, ["usr/bin/awk", "usr/bin/nawk", "usr/lib/cpp"]);
}

#[test]
fn a_package_file_is_never_replaced_by_a_declared_link() {
    let dir = tempfile::tempdir().unwrap();
    let tools = vec![Dir("./usr/bin/"), exe("./usr/bin/mawk", b"mawk"), exe("./usr/bin/awk", b"own awk")];
    let debs = [write_deb(dir.path(), "tools", &tools, Compression::Xz)];
    let out = dir.path().join("tree");
    assemble(&debs, &out, &options(1)).unwrap();
    assert_eq!(snapshot(&out)["usr/bin/awk"], "755 own awk");
}

#[test]
fn relative_targets() {
    assert_eq!(relative_target("usr/bin/awk", "usr/bin/mawk"), "mawk");
    assert_eq!(relative_target("usr/lib/cpp", "usr/bin/cpp"), "../bin/cpp");
    assert_eq!(relative_target("bin", "usr/bin"), "usr/bin");
}

#[test]
fn hard_links_within_a_package() {
    let dir = tempfile::tempdir().unwrap();
    let entries = vec![
        Dir("./bin/"),
        exe("./bin/bunzip2", b"bz"),
        HardLink("./bin/bzcat", "./bin/bunzip2"),
        // A library known by its hard link's name is still a library.
        Dir("./lib/"),
        file("./lib/libz.so.1.2", &elf(None, &[], None)),
        HardLink("./lib/libz.so.1", "./lib/libz.so.1.2"),
        exe("./bin/zz", &elf(None, &["libz.so.1"], None)),
    ];
    let debs = [write_deb(dir.path(), "bzip2", &entries, Compression::Xz)];
    let out = dir.path().join("tree");
    let done = assemble(&debs, &out, &options(1)).unwrap();
    assert_eq!(snapshot(&out)["usr/bin/bzcat"], "755 bz");
    assert_eq!(done.files, 5);
    assert_eq!(done.elf_files, 3);
}

/// Assemble and expect an error; `out` must be gone afterwards.
fn refused(debs: &[PathBuf], dir: &Path) -> RootfsError {
    let out = dir.join("tree");
    let error = assemble(debs, &out, &options(2)).unwrap_err();
    assert!(!out.exists(), "{} left behind after: {error}", out.display());
    error
}

#[test]
fn a_file_in_two_packages_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let debs = [
        write_deb(dir.path(), "one", &[Dir("./usr/bin/"), exe("./usr/bin/x", b"1")], Compression::Xz),
        write_deb(dir.path(), "two", &[Dir("./bin/"), exe("./bin/x", b"2")], Compression::Xz),
    ];
    match refused(&debs, dir.path()) {
        RootfsError::Conflict { path, first, second, .. } => {
            assert_eq!((path.as_str(), first.as_str(), second.as_str()), ("usr/bin/x", "one", "two"));
        }
        other => panic!("{other}"),
    }
    // Differing symlinks too.
    let debs = [
        write_deb(dir.path(), "one", &[Symlink("./usr/bin/y", "a")], Compression::Xz),
        write_deb(dir.path(), "two", &[Symlink("./usr/bin/y", "b")], Compression::Xz),
    ];
    assert!(matches!(refused(&debs, dir.path()), RootfsError::Conflict { .. }));
}

#[test]
fn the_same_package_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_deb(dir.path(), "one", &[Dir("./usr/")], Compression::Xz);
    let b = dir.path().join("copy.deb");
    fs::copy(&a, &b).unwrap();
    assert!(matches!(refused(&[a, b], dir.path()), RootfsError::DuplicatePackage { .. }));
}

#[test]
fn hostile_member_names() {
    let dir = tempfile::tempdir().unwrap();
    for (name, reason) in [
        ("./usr/../../evil", "has a `..` component"),
        ("/etc/evil", "is an absolute path"),
        ("../evil", "has a `..` component"),
    ] {
        let entries = vec![Dir("./usr/"), File(name, b"x".to_vec(), 0o644)];
        let debs = [write_deb(dir.path(), "evil", &entries, Compression::Xz)];
        match refused(&debs, dir.path()) {
            RootfsError::UnsafeMember { member, reason: r, .. } => assert_eq!((member.as_str(), r), (name, reason)),
            other => panic!("{name}: {other}"),
        }
    }
    assert!(!dir.path().join("evil").exists());
}

#[test]
fn nothing_is_written_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    // The symlink points out of the tree; the next member goes through it.
    let entries = vec![
        Dir("./usr/"),
        Dir("./usr/lib/"),
        Symlink("./usr/lib/escape", Box::leak(outside.display().to_string().into_boxed_str())),
        file("./usr/lib/escape/pwned", b"x"),
    ];
    let debs = [write_deb(dir.path(), "evil", &entries, Compression::Xz)];
    assert!(matches!(refused(&debs, dir.path()), RootfsError::ThroughSymlink { .. }));
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);

    // The same across two packages, whichever is unpacked first.
    let debs = [
        write_deb(dir.path(), "link", &[Dir("./usr/lib/"), Symlink("./usr/lib/escape", "../../..")], Compression::Xz),
        write_deb(dir.path(), "file", &[file("./usr/lib/escape/pwned", b"x")], Compression::Zstd),
    ];
    let error = refused(&debs, dir.path());
    assert!(matches!(error, RootfsError::ThroughSymlink { .. } | RootfsError::Conflict { .. }), "{error}");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn symlinks_must_resolve_inside_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    for (target, problem) in [
        ("../../../etc/passwd", "goes above the root"),
        ("missing", "does not exist"),
        ("loop", "more than 40 symlinks"),
        ("/usr/bin/f/x", "is a file, not a directory"),
    ] {
        let entries = vec![
            Dir("./usr/bin/"),
            file("./usr/bin/f", b""),
            Symlink("./usr/bin/loop", "loop"),
            Symlink("./usr/bin/l", target),
        ];
        let debs = [write_deb(dir.path(), "links", &entries, Compression::Gzip)];
        match refused(&debs, dir.path()) {
            RootfsError::Symlink { path, problem: p, .. } => {
                assert!(path == "usr/bin/l" || (path == "usr/bin/loop" && target == "loop"), "{path}");
                assert!(p.contains(problem), "{target}: {p}");
            }
            other => panic!("{target}: {other}"),
        }
    }
}

#[test]
fn hard_link_to_something_not_unpacked() {
    let dir = tempfile::tempdir().unwrap();
    for target in ["./usr/bin/nothing", "./etc/passwd", "../../etc/passwd", "./usr/bin/link"] {
        let entries = vec![Dir("./usr/bin/"), Symlink("./usr/bin/link", "x"), HardLink("./usr/bin/h", target)];
        let debs = [write_deb(dir.path(), "evil", &entries, Compression::Xz)];
        assert!(matches!(refused(&debs, dir.path()), RootfsError::HardLink { .. }), "{target}");
    }
    // A file of another package is not this package's.
    let debs = [
        write_deb(dir.path(), "one", &[Dir("./usr/bin/"), exe("./usr/bin/a", b"a")], Compression::Xz),
        write_deb(dir.path(), "two", &[Dir("./usr/bin/"), HardLink("./usr/bin/b", "./usr/bin/a")], Compression::Xz),
    ];
    assert!(matches!(refused(&debs, dir.path()), RootfsError::HardLink { .. }));
}

#[test]
fn special_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let debs = [write_deb(dir.path(), "evil", &[Dir("./usr/"), Fifo("./usr/fifo")], Compression::Xz)];
    assert!(matches!(refused(&debs, dir.path()), RootfsError::UnsupportedType { kind: "FIFO", .. }));
}

#[test]
fn truncated_and_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let whole = deb_bytes("big", &[Dir("./usr/"), File("./usr/big", big, 0o644)], Compression::Zstd);
    // Not the last byte: it may be the `ar` padding after an odd-sized
    // member, which a reader need not see.
    for cut in [whole.len() - 2, whole.len() / 2, 200] {
        let path = dir.path().join("cut.deb");
        fs::write(&path, &whole[..cut]).unwrap();
        match refused(&[path], dir.path()) {
            RootfsError::Deb(DebError::Truncated { path, .. } | DebError::Corrupt { path, .. }) => {
                assert!(path.ends_with("cut.deb"))
            }
            other => panic!("cut at {cut}: {other}"),
        }
    }
    let uncompressed = deb_bytes("big", &[Dir("./usr/"), file("./usr/big", &[7; 5000])], Compression::None);
    let path = dir.path().join("cut.deb");
    fs::write(&path, &uncompressed[..uncompressed.len() - 3000]).unwrap();
    assert!(matches!(refused(&[path], dir.path()), RootfsError::Deb(DebError::Truncated { .. })));

    let path = dir.path().join("text.deb");
    fs::write(&path, "not an archive at all").unwrap();
    match refused(&[path], dir.path()) {
        RootfsError::Deb(DebError::NotAr { path }) => assert!(path.ends_with("text.deb")),
        other => panic!("{other}"),
    }
}

#[test]
fn out_must_not_exist_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let debs = [write_deb(dir.path(), "one", &[Dir("./usr/")], Compression::Xz)];
    let out = dir.path().join("tree");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("keep"), "x").unwrap();
    assert!(matches!(assemble(&debs, &out, &options(1)), Err(RootfsError::OutExists { .. })));
    assert!(out.join("keep").exists());
}

#[test]
fn libraries_are_searched_as_the_loader_does() {
    let dir = tempfile::tempdir().unwrap();
    let lib = |needed: &'static [&'static str]| elf(None, needed, None);
    let ok = vec![
        Dir("./usr/lib/x86_64-linux-gnu/plugins/"),
        file("./usr/lib/x86_64-linux-gnu/libb.so.1", &lib(&[])),
        Symlink("./usr/lib/x86_64-linux-gnu/libb.so", "libb.so.1"),
        // Found through DT_RUNPATH with $ORIGIN.
        file("./usr/lib/x86_64-linux-gnu/plugins/libp.so", &lib(&[])),
        exe("./usr/lib/x86_64-linux-gnu/tool", &elf(None, &["libb.so.1", "libp.so"], Some("$ORIGIN/plugins"))),
    ];
    let debs = [write_deb(dir.path(), "libs", &ok, Compression::Xz)];
    assemble(&debs, &dir.path().join("ok"), &options(1)).unwrap();

    let missing = vec![Dir("./usr/bin/"), exe("./usr/bin/tool", &elf(None, &["libnothere.so.2"], None))];
    let debs = [write_deb(dir.path(), "tool", &missing, Compression::Xz)];
    match refused(&debs, dir.path()) {
        RootfsError::MissingLibrary { path, soname, .. } => {
            assert_eq!((path.as_str(), soname.as_str()), ("usr/bin/tool", "libnothere.so.2"))
        }
        other => panic!("{other}"),
    }

    // A file of that name that is not an ELF object does not count.
    let script = vec![
        Dir("./usr/lib/"),
        file("./usr/lib/libs.so", b"GROUP ( libs.so.1 )"),
        exe("./usr/lib/tool", &elf(None, &["libs.so"], None)),
    ];
    let debs = [write_deb(dir.path(), "tool", &script, Compression::Xz)];
    assert!(matches!(refused(&debs, dir.path()), RootfsError::MissingLibrary { .. }));

    let no_interp =
        vec![Dir("./usr/bin/"), exe("./usr/bin/tool", &elf(Some("/lib64/ld-linux-x86-64.so.2"), &[], None))];
    let debs = [write_deb(dir.path(), "tool", &no_interp, Compression::Xz)];
    assert!(matches!(refused(&debs, dir.path()), RootfsError::MissingInterpreter { .. }));
}

/// The showcase toolchain (72 bookworm packages), if present: assembled,
/// then the programs a build needs are there.
#[test]
#[ignore = "needs /work/debs-showcase (72 real .debs)"]
fn showcase_toolchain() {
    let dir = Path::new("/work/debs-showcase");
    let mut debs: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    debs.sort();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tree");
    let done = assemble(&debs, &out, &AssembleOptions::default()).unwrap();
    assert_eq!(done.packages.len(), debs.len());
    for program in ["usr/bin/gcc", "usr/bin/sh", "usr/bin/awk", "usr/bin/cc", "bin/sh", "usr/bin/make", "usr/bin/as"] {
        assert!(out.join(program).exists(), "{program} missing");
    }
    // Debian's gcc and x86_64-linux-gnu-gcc are symlinks to gcc-12's
    // program: both wrapped around it.
    let wrapped: Vec<(&str, &str)> = done.wrapped_compilers.iter().map(|l| (l.path.as_str(), l.target.as_str())).collect();
    assert_eq!(
        wrapped,
        [("usr/bin/gcc", "/usr/bin/x86_64-linux-gnu-gcc-12"), ("usr/bin/x86_64-linux-gnu-gcc", "/usr/bin/x86_64-linux-gnu-gcc-12")]
    );
    let gcc = fs::read_to_string(out.join("usr/bin/gcc")).unwrap();
    assert!(gcc.starts_with("#!/bin/sh\n") && gcc.contains("compiler=/usr/bin/x86_64-linux-gnu-gcc-12\n"), "{gcc}");
    assert_eq!(fs::read_to_string(out.join("usr/bin/cc")).unwrap(), gcc);
}

/// A gcc package laid out as Debian's: `gcc -> gcc-12 ->
/// x86_64-linux-gnu-gcc-12`, the last a program.
fn gcc_package() -> Vec<Entry> {
    vec![
        Dir("./usr/"),
        Dir("./usr/bin/"),
        exe("./usr/bin/x86_64-linux-gnu-gcc-12", b"the real gcc"),
        Symlink("./usr/bin/gcc-12", "x86_64-linux-gnu-gcc-12"),
        Symlink("./usr/bin/gcc", "gcc-12"),
    ]
}

#[test]
fn a_symlinked_gcc_is_replaced_by_the_wrapper() {
    let dir = tempfile::tempdir().unwrap();
    let debs = [
        write_deb(dir.path(), "dash", &shell_package(), Compression::Xz),
        write_deb(dir.path(), "libc6", &libc_package(), Compression::Xz),
        write_deb(dir.path(), "gcc", &gcc_package(), Compression::Xz),
    ];
    let out = dir.path().join("tree");
    let done = assemble(&debs, &out, &options(2)).unwrap();
    let tree = snapshot(&out);

    let expected = CC_WRAPPER.replace("@COMPILER@", "/usr/bin/x86_64-linux-gnu-gcc-12");
    assert_eq!(tree["usr/bin/gcc"], format!("755 {expected}"), "gcc is an executable file holding the wrapper");
    assert!(expected.contains("compiler=/usr/bin/x86_64-linux-gnu-gcc-12\n"), "{expected}");
    assert!(!expected.contains("@COMPILER@"));
    // What the wrapper runs is left as the package made it.
    assert_eq!(tree["usr/bin/gcc-12"], "-> x86_64-linux-gnu-gcc-12");
    assert_eq!(tree["usr/bin/x86_64-linux-gnu-gcc-12"], "755 the real gcc");
    // The declared link `cc` still leads to gcc, now the wrapper.
    assert_eq!(tree["usr/bin/cc"], "-> gcc");
    assert_eq!(fs::read_to_string(out.join("usr/bin/cc")).unwrap(), expected);
    // The package has no x86_64-linux-gnu-gcc: nothing made up for it.
    assert!(!tree.contains_key("usr/bin/x86_64-linux-gnu-gcc"));

    let wrapped = [AddedLink { path: "usr/bin/gcc".into(), target: "/usr/bin/x86_64-linux-gnu-gcc-12".into() }];
    assert_eq!(done.wrapped_compilers, wrapped);
    assert!(done.declared_links.iter().any(|l| l.path == "usr/bin/cc"));
    let manifest: serde_json::Value = serde_json::from_slice(&fs::read(out.join(MANIFEST)).unwrap()).unwrap();
    assert_eq!(manifest["format"], FORMAT_VERSION);
    assert_eq!(manifest["wrapped_compilers"], serde_json::json!([{ "path": "usr/bin/gcc", "target": "/usr/bin/x86_64-linux-gnu-gcc-12" }]));
}

#[test]
fn the_triplet_compiler_is_wrapped_too_and_order_does_not_matter() {
    let dir = tempfile::tempdir().unwrap();
    let mut entries = gcc_package();
    entries.push(Symlink("./usr/bin/x86_64-linux-gnu-gcc", "x86_64-linux-gnu-gcc-12"));
    let mut debs = vec![
        write_deb(dir.path(), "gcc", &entries, Compression::Zstd),
        write_deb(dir.path(), "dash", &shell_package(), Compression::Gzip),
        write_deb(dir.path(), "libc6", &libc_package(), Compression::Xz),
    ];
    let a = dir.path().join("a");
    let done = assemble(&debs, &a, &options(1)).unwrap();
    let made: Vec<(&str, &str)> = done.wrapped_compilers.iter().map(|l| (l.path.as_str(), l.target.as_str())).collect();
    assert_eq!(
        made,
        [("usr/bin/gcc", "/usr/bin/x86_64-linux-gnu-gcc-12"), ("usr/bin/x86_64-linux-gnu-gcc", "/usr/bin/x86_64-linux-gnu-gcc-12")]
    );
    let tree = snapshot(&a);
    assert_eq!(tree["usr/bin/gcc"], tree["usr/bin/x86_64-linux-gnu-gcc"]);
    debs.reverse();
    let b = dir.path().join("b");
    assemble(&debs, &b, &options(3)).unwrap();
    assert_eq!(snapshot(&b), tree);
}

#[test]
fn no_wrapper_without_a_symlinked_gcc() {
    let dir = tempfile::tempdir().unwrap();
    // No gcc at all.
    let debs = [
        write_deb(dir.path(), "dash", &shell_package(), Compression::Xz),
        write_deb(dir.path(), "libc6", &libc_package(), Compression::Xz),
    ];
    let out = dir.path().join("none");
    let done = assemble(&debs, &out, &options(1)).unwrap();
    assert!(done.wrapped_compilers.is_empty());
    assert!(!out.join("usr/bin/gcc").exists() && !out.join("usr/bin/cc").exists());
    let manifest: serde_json::Value = serde_json::from_slice(&fs::read(out.join(MANIFEST)).unwrap()).unwrap();
    assert_eq!(manifest["wrapped_compilers"], serde_json::json!([]));

    // A gcc that is a program of its own is the package's, left alone.
    let own = vec![Dir("./usr/bin/"), exe("./usr/bin/gcc", b"own gcc")];
    let debs = [write_deb(dir.path(), "gcc", &own, Compression::Xz)];
    let out = dir.path().join("own");
    let done = assemble(&debs, &out, &options(1)).unwrap();
    assert!(done.wrapped_compilers.is_empty());
    assert_eq!(snapshot(&out)["usr/bin/gcc"], "755 own gcc");
}

/// [`CC_WRAPPER`] run for real by the host's `/bin/sh`, around a fake
/// compiler that prints its arguments one a line.
struct Wrapper {
    dir: tempfile::TempDir,
}

impl Wrapper {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let compiler = dir.path().join("fake-cc");
        fs::write(&compiler, "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n").unwrap();
        fs::set_permissions(&compiler, fs::Permissions::from_mode(0o755)).unwrap();
        let wrapper = CC_WRAPPER.replace("@COMPILER@", compiler.to_str().unwrap());
        fs::write(dir.path().join("gcc"), wrapper).unwrap();
        Self { dir }
    }

    /// A C library directory, with the loader or without.
    fn libc(&self, name: &str, loader: bool) -> PathBuf {
        let libc = self.dir.path().join(name);
        fs::create_dir_all(libc.join("lib")).unwrap();
        fs::write(libc.join("lib/libc.so.6"), b"").unwrap();
        if loader {
            fs::write(libc.join("lib/ld-linux-x86-64.so.2"), b"").unwrap();
        }
        libc
    }

    fn run(&self, libc: Option<&Path>, args: &[&str]) -> std::process::Output {
        let mut c = std::process::Command::new("/bin/sh");
        c.arg(self.dir.path().join("gcc")).args(args).env_remove(LIBC_ENV);
        if let Some(l) = libc {
            c.env(LIBC_ENV, l);
        }
        c.output().unwrap()
    }

    /// The arguments the compiler got.
    fn args(&self, libc: Option<&Path>, args: &[&str]) -> Vec<String> {
        let out = self.run(libc, args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
    }
}

#[test]
fn the_wrapper_adds_the_loader_and_runpath_only_when_linking() {
    let w = Wrapper::new();
    let libc = w.libc("libc", true);
    let links = |args: &[&str]| -> Vec<String> {
        let lib = libc.join("lib");
        let mut v: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        v.push(format!("-Wl,--dynamic-linker={}", lib.join("ld-linux-x86-64.so.2").display()));
        v.push(format!("-Wl,-rpath,{}", lib.display()));
        v.push("-Wl,--enable-new-dtags".into());
        v
    };
    let same = |args: &[&str]| -> Vec<String> { args.iter().map(|a| a.to_string()).collect() };

    // Without DRV_LIBC (or with it empty), nothing is added, even to a link.
    for args in [&["x.c", "-o", "x"][..], &["-c", "x.c"], &["--version"]] {
        assert_eq!(w.args(None, args), same(args), "{args:?}");
    }
    assert_eq!(w.args(Some(Path::new("")), &["x.c", "-o", "x"]), same(&["x.c", "-o", "x"]));

    // Links: an input file (or `-` for stdin) and no compile-only flag.
    for args in [
        &["x.c", "-o", "x"][..],
        &["-o", "x", "x.c"],
        &["-O2", "a.o", "b.o", "-lm", "-o", "prog"],
        &["-shared", "-fPIC", "x.o", "-o", "libx.so"],
        &["-x", "c", "-", "-o", "x"],
        &["-I", "include", "-L", "lib", "-l", "z", "main.c"],
    ] {
        assert_eq!(w.args(Some(&libc), args), links(args), "{args:?}");
    }

    // Compiles only, or names no input: passed through unchanged.
    for args in [
        &["-c", "x.c"][..],
        &["x.c", "-c", "-o", "x.o"],
        &["-S", "x.c"],
        &["-E", "x.c"],
        &["-M", "x.c"],
        &["-MM", "x.c"],
        &["--version"],
        &["-dumpmachine"],
        &["-print-file-name=libc.so"],
        &["-o", "x"],
        // A value after -o (or -I, -L, -x…) is not an input.
        &["-o", "x.c"],
        &["-I", "x.c", "-L", "y.o", "-x", "c"],
        &["-MF", "deps.d", "-MT", "x.o"],
        &[],
    ] {
        assert_eq!(w.args(Some(&libc), args), same(args), "{args:?}");
    }
}

#[test]
fn the_wrapper_refuses_a_libc_without_a_loader() {
    let w = Wrapper::new();
    let empty = w.libc("no-loader", false);
    let out = w.run(Some(&empty), &["x.c", "-o", "x"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "the compiler was run: {}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no loader") && stderr.contains(&format!("DRV_LIBC={}", empty.display())), "{stderr}");
    // Not linking: no loader needed.
    assert_eq!(w.args(Some(&empty), &["-c", "x.c"]), ["-c", "x.c"]);
    // A directory that is not there is no C library either.
    let out = w.run(Some(&w.dir.path().join("missing")), &["x.c"]);
    assert!(!out.status.success());
}

#[test]
fn the_wrapper_passes_arguments_with_spaces_and_the_exit_status_through() {
    let w = Wrapper::new();
    let libc = w.libc("with space", true);
    let got = w.args(Some(&libc), &["my file.c", "-o", "my prog", "-DX=a b"]);
    assert_eq!(&got[..4], ["my file.c", "-o", "my prog", "-DX=a b"]);
    assert_eq!(got[5], format!("-Wl,-rpath,{}", libc.join("lib").display()));
    // The compiler's failure is the wrapper's.
    let failing = w.dir.path().join("fail-cc");
    fs::write(&failing, "#!/bin/sh\nexit 3\n").unwrap();
    fs::set_permissions(&failing, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(w.dir.path().join("gcc"), CC_WRAPPER.replace("@COMPILER@", failing.to_str().unwrap())).unwrap();
    assert_eq!(w.run(Some(&libc), &["x.c"]).status.code(), Some(3));
    assert_eq!(w.run(None, &["x.c"]).status.code(), Some(3));
}

/// The wrapper around the host's gcc, when there is one: the program it
/// links has the loader of `$DRV_LIBC` as its interpreter and that
/// `lib` as its `RUNPATH` (not `RPATH`), and runs.
#[test]
fn the_wrapper_around_a_real_gcc_links_against_drv_libc() {
    let host_gcc = Path::new("/usr/bin/gcc");
    let host_loader = Path::new("/lib64/ld-linux-x86-64.so.2");
    let host_libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
    if !(host_gcc.exists() && host_loader.exists() && host_libc.exists()) {
        eprintln!("no x86-64 gcc and glibc on the host: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("gcc");
    fs::write(&wrapper, CC_WRAPPER.replace("@COMPILER@", host_gcc.to_str().unwrap())).unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    // A C library directory made of the host's own files.
    let libc = dir.path().join("libc");
    fs::create_dir_all(libc.join("lib")).unwrap();
    std::os::unix::fs::symlink(host_loader, libc.join("lib/ld-linux-x86-64.so.2")).unwrap();
    std::os::unix::fs::symlink(host_libc, libc.join("lib/libc.so.6")).unwrap();
    fs::write(dir.path().join("hello.c"), "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n").unwrap();

    let gcc = |args: &[&str]| {
        let out = std::process::Command::new(&wrapper).current_dir(dir.path()).args(args).env(LIBC_ENV, &libc).output().unwrap();
        assert!(out.status.success(), "gcc {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    gcc(&["hello.c", "-o", "hello"]);
    let elf = parse_elf(&fs::read(dir.path().join("hello")).unwrap()).unwrap().unwrap();
    let lib = libc.join("lib").display().to_string();
    assert_eq!(elf.interpreter, Some(format!("{lib}/ld-linux-x86-64.so.2")));
    assert_eq!(elf.runpath, [lib]);
    assert!(elf.rpath.is_empty(), "{:?}", elf.rpath);
    let run = std::process::Command::new(dir.path().join("hello")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), "hello\n");

    // Compiling only: an object file, which has no interpreter.
    gcc(&["-c", "hello.c", "-o", "hello.o"]);
    let object = parse_elf(&fs::read(dir.path().join("hello.o")).unwrap()).unwrap().unwrap();
    assert_eq!(object.interpreter, None);
    assert!(object.runpath.is_empty());
}

/// A C++ driver (its program's name has `++`) also gets `$DRV_LIBCXX/lib`
/// in `RUNPATH` when linking; a C driver never does; compiling only adds
/// nothing. Run for real around the host's `g++` where it has one: the
/// program's `RUNPATH` names the C++ library first, then the C library,
/// and it runs.
#[test]
fn the_cxx_wrapper_adds_the_cxx_library() {
    let dir = tempfile::tempdir().unwrap();
    let fake = |name: &str| {
        let compiler = dir.path().join(name);
        fs::write(&compiler, "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n").unwrap();
        fs::set_permissions(&compiler, fs::Permissions::from_mode(0o755)).unwrap();
        let wrapper = dir.path().join(format!("wrapped-{name}"));
        fs::write(&wrapper, CC_WRAPPER.replace("@COMPILER@", compiler.to_str().unwrap())).unwrap();
        wrapper
    };
    let (cxx, cc) = (fake("x86_64-linux-gnu-g++-12"), fake("x86_64-linux-gnu-gcc-12"));
    let libc = dir.path().join("libc");
    fs::create_dir_all(libc.join("lib")).unwrap();
    fs::write(libc.join("lib/ld-linux-x86-64.so.2"), b"").unwrap();
    let libcxx = dir.path().join("libcxx");
    let args = |wrapper: &Path, args: &[&str]| -> Vec<String> {
        let out = std::process::Command::new("/bin/sh")
            .arg(wrapper)
            .args(args)
            .env(LIBC_ENV, &libc)
            .env(LIBCXX_ENV, &libcxx)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
    };
    let cxx_rpath = format!("-Wl,-rpath,{}/lib", libcxx.display());
    assert!(args(&cxx, &["x.cc", "-o", "x"]).contains(&cxx_rpath));
    assert!(!args(&cc, &["x.c", "-o", "x"]).contains(&cxx_rpath));
    assert_eq!(args(&cxx, &["-c", "x.cc"]), ["-c", "x.cc"]);

    let host_gxx = Path::new("/usr/bin/g++");
    let host_loader = Path::new("/lib64/ld-linux-x86-64.so.2");
    let host_lib = Path::new("/lib/x86_64-linux-gnu");
    let host_libstdcxx = Path::new("/usr/lib/x86_64-linux-gnu/libstdc++.so.6");
    if !(host_gxx.exists() && host_loader.exists() && host_libstdcxx.exists()) {
        eprintln!("no x86-64 g++ and libstdc++ on the host: the real link is skipped");
        return;
    }
    let real = dir.path().join("real");
    fs::create_dir_all(real.join("libc/lib")).unwrap();
    fs::create_dir_all(real.join("libcxx/lib")).unwrap();
    std::os::unix::fs::symlink(host_loader, real.join("libc/lib/ld-linux-x86-64.so.2")).unwrap();
    for l in ["libc.so.6", "libm.so.6", "libgcc_s.so.1"] {
        std::os::unix::fs::symlink(host_lib.join(l), real.join("libc/lib").join(l)).unwrap();
    }
    std::os::unix::fs::symlink(host_libstdcxx, real.join("libcxx/lib/libstdc++.so.6")).unwrap();
    // The wrapper as the rootfs writes it: the name it execs has `++`.
    let wrapper = real.join("g++");
    fs::write(&wrapper, CC_WRAPPER.replace("@COMPILER@", "/usr/bin/g++")).unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(real.join("hello.cc"), "#include <iostream>\nint main() { std::cout << \"hello\" << std::endl; }\n").unwrap();
    let out = std::process::Command::new(&wrapper)
        .current_dir(&real)
        .args(["hello.cc", "-o", "hello"])
        .env(LIBC_ENV, real.join("libc"))
        .env(LIBCXX_ENV, real.join("libcxx"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let elf = parse_elf(&fs::read(real.join("hello")).unwrap()).unwrap().unwrap();
    let (cxx_lib, c_lib) = (real.join("libcxx/lib").display().to_string(), real.join("libc/lib").display().to_string());
    assert_eq!(elf.runpath, [format!("{cxx_lib}:{c_lib}")]);
    assert!(elf.needed.iter().any(|n| n == "libstdc++.so.6"), "{:?}", elf.needed);
    let run = std::process::Command::new(real.join("hello")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), "hello\n");
}
