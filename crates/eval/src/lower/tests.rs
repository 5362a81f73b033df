//! The builder scripts lowering writes, run for real by the host's
//! `/bin/sh` on the fixture archive's `.deb`s and on `.deb`s made here:
//! [`PREBUILT_SCRIPT`] (with a fake `patchelf` that records its calls;
//! the host's `dpkg-deb`) and [`STRIP_PHASE`] (the host's binutils and
//! gcc). Each test is skipped, saying so, when a host program is missing.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::*;

const POOL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/debian/debian/pool/main");

fn have(programs: &[&str]) -> bool {
    let missing: Vec<&&str> = programs
        .iter()
        .filter(|p| !Command::new("/bin/sh").arg("-c").arg(format!("command -v {p} >/dev/null")).status().unwrap().success())
        .collect();
    if !missing.is_empty() {
        eprintln!("not on the host: {missing:?}: skipped");
    }
    missing.is_empty()
}

fn executable(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A scratch folder with a fake `patchelf` (it appends its arguments to
/// `patchelf.log`) first on `PATH`.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("bin")).unwrap();
        let log = dir.path().join("patchelf.log");
        executable(&dir.path().join("bin/patchelf"), &format!("#!/bin/sh\necho \"$*\" >> {}\n", log.display()));
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn patchelf_calls(&self) -> Vec<String> {
        fs::read_to_string(self.path("patchelf.log")).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    /// Run [`PREBUILT_SCRIPT`] as the derivation would, into `out`.
    fn prebuilt(&self, out: &Path, debs: &[PathBuf], runpath: Option<&str>) -> Output {
        let build = self.path(&format!("build-{}", out.file_name().unwrap().to_string_lossy()));
        fs::create_dir(&build).unwrap();
        let debs: Vec<String> = debs.iter().map(|d| d.display().to_string()).collect();
        let mut c = Command::new("/bin/sh");
        c.args(["-e", "-c", PREBUILT_SCRIPT])
            .current_dir(&build)
            .env("PATH", format!("{}:/usr/bin:/bin", self.path("bin").display()))
            .env("out", out)
            .env("debs", debs.join(" "))
            .env("multiarch", "x86_64-linux-gnu")
            .env_remove("runpath");
        if let Some(r) = runpath {
            c.env("runpath", r);
        }
        c.output().unwrap()
    }

    /// A `.deb` of `package` made by `dpkg-deb --build` from `files`
    /// (path, contents) and `links` (path, target).
    fn deb(&self, package: &str, files: &[(&str, &[u8])], links: &[(&str, &str)]) -> PathBuf {
        let root = self.path(&format!("pkg-{package}"));
        fs::create_dir_all(root.join("DEBIAN")).unwrap();
        fs::write(
            root.join("DEBIAN/control"),
            format!("Package: {package}\nVersion: 1.0-1\nArchitecture: amd64\nMaintainer: drv tests <drv@localhost>\nDescription: test\n"),
        )
        .unwrap();
        for (path, contents) in files {
            let at = root.join(path);
            fs::create_dir_all(at.parent().unwrap()).unwrap();
            fs::write(&at, contents).unwrap();
        }
        for (path, target) in links {
            let at = root.join(path);
            fs::create_dir_all(at.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, &at).unwrap();
        }
        let deb = self.path(&format!("{package}.deb"));
        let out = Command::new("dpkg-deb").args(["--root-owner-group", "-Zgzip", "--build"]).arg(&root).arg(&deb).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        deb
    }
}

fn ok(out: &Output) {
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// Every entry under `dir`, relative, a symlink as `name -> target`.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let meta = fs::symlink_metadata(&p).unwrap();
            if meta.file_type().is_symlink() {
                out.push(format!("{rel} -> {}", fs::read_link(&p).unwrap().display()));
            } else if meta.is_dir() {
                out.push(format!("{rel}/"));
                stack.push(p);
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// The C library derivation's build (no `runpath`) over the fixture's
/// real libc6 and libgcc-s1: the loader and libraries in `lib`, relative
/// links only, nothing patched; then a program linked by drv's compiler
/// wrapper against it runs on that loader.
#[test]
fn the_c_library_from_the_fixture_packages() {
    if !have(&["dpkg-deb", "sed", "od"]) {
        return;
    }
    let s = Scratch::new();
    let out = s.path("glibc");
    let debs = [
        PathBuf::from(format!("{POOL}/g/glibc/libc6_2.36-9+deb12u14_amd64.deb")),
        PathBuf::from(format!("{POOL}/g/gcc-12/libgcc-s1_12.2.0-14+deb12u1_amd64.deb")),
    ];
    ok(&s.prebuilt(&out, &debs, None));
    let files = listing(&out);
    for f in ["lib/ld-linux-x86-64.so.2", "lib/libc.so.6", "lib/libm.so.6", "lib/libpthread.so.0", "lib/libdl.so.2", "lib/libgcc_s.so.1"] {
        assert!(files.iter().any(|l| l == f || l.starts_with(&format!("{f} -> "))), "{f} missing: {files:#?}");
    }
    assert!(files.iter().all(|f| f.starts_with("lib/")), "only lib: {files:#?}");
    assert!(!files.iter().any(|f| f.contains(" -> /")), "an absolute link: {files:#?}");
    for l in files.iter().filter(|f| f.contains(" -> ")) {
        let name = l.split(" -> ").next().unwrap();
        assert!(out.join(name).exists(), "{l} dangles");
    }
    assert!(s.patchelf_calls().is_empty(), "{:?}", s.patchelf_calls());

    // drv's compiler wrapper around the host's gcc, against this C library.
    if !have(&["gcc", "readelf"]) {
        return;
    }
    let wrapper = s.path("bin/gcc");
    executable(&wrapper, &drv_debian::rootfs::CC_WRAPPER.replace("@COMPILER@", "/usr/bin/gcc"));
    fs::write(s.path("hello.c"), "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n").unwrap();
    let built = Command::new(&wrapper)
        .current_dir(s.dir.path())
        .args(["hello.c", "-o", "hello"])
        .env(drv_debian::rootfs::LIBC_ENV, &out)
        .output()
        .unwrap();
    ok(&built);
    let headers = Command::new("readelf").args(["-l", "-d"]).arg(s.path("hello")).output().unwrap();
    let headers = String::from_utf8_lossy(&headers.stdout);
    let lib = out.join("lib");
    assert!(headers.contains(&format!("[Requesting program interpreter: {}/ld-linux-x86-64.so.2]", lib.display())), "{headers}");
    assert!(headers.contains(&format!("(RUNPATH)            Library runpath: [{}]", lib.display())), "{headers}");
    let run = Command::new(s.path("hello")).env("LD_DEBUG", "libs").output().unwrap();
    ok(&run);
    assert_eq!(String::from_utf8_lossy(&run.stdout), "hello\n");
    // libc.so.6 came from the C library's lib, not the host's
    let debug = String::from_utf8_lossy(&run.stderr);
    assert!(debug.contains(&format!("calling init: {}/libc.so.6", lib.display())), "{debug}");
}

/// A `[prebuilt]` output: libraries (links made relative), headers with
/// the multiarch part merged, pkg-config files pointing into the output,
/// `RUNPATH` set on each ELF library; programs, static libraries and
/// documentation left out.
#[test]
fn a_prebuilt_output_is_relocated() {
    if !have(&["dpkg-deb", "sed", "od"]) {
        return;
    }
    let s = Scratch::new();
    let elf = b"\x7fELF\x02\x01\x01 not really";
    let pc = b"prefix=/usr\nlibdir=${prefix}/lib/x86_64-linux-gnu\nincludedir=${prefix}/include\nother=/usr/lib/x86_64-linux-gnu/foo\n\
               Name: foo\nVersion: 1.0\nLibs: -L${libdir} -lfoo\nCflags: -I${includedir} -I/usr/include/x86_64-linux-gnu/foo\n";
    let lib = s.deb(
        "libfoo1",
        &[("usr/lib/x86_64-linux-gnu/libfoo.so.1.0", elf), ("usr/share/doc/libfoo1/copyright", b"x"), ("usr/bin/foo-tool", elf)],
        &[("usr/lib/x86_64-linux-gnu/libfoo.so.1", "libfoo.so.1.0")],
    );
    let dev = s.deb(
        "libfoo-dev",
        &[
            ("usr/include/foo.h", b"#include <foo/conf.h>\n"),
            ("usr/include/x86_64-linux-gnu/foo/conf.h", b"#define FOO 1\n"),
            ("usr/lib/x86_64-linux-gnu/libfoo.a", b"!<arch>\n"),
            ("usr/lib/x86_64-linux-gnu/pkgconfig/foo.pc", pc),
        ],
        &[("usr/lib/x86_64-linux-gnu/libfoo.so", "/usr/lib/x86_64-linux-gnu/libfoo.so.1")],
    );
    let out = s.path("foo");
    ok(&s.prebuilt(&out, &[lib, dev], Some("/store/bar/lib:/store/glibc/lib")));
    assert_eq!(
        listing(&out),
        [
            "include/",
            "include/foo.h",
            "include/foo/",
            "include/foo/conf.h",
            "lib/",
            "lib/libfoo.so -> libfoo.so.1",
            "lib/libfoo.so.1 -> libfoo.so.1.0",
            "lib/libfoo.so.1.0",
            "lib/pkgconfig/",
            "lib/pkgconfig/foo.pc",
        ]
    );
    let o = out.display();
    assert_eq!(
        fs::read_to_string(out.join("lib/pkgconfig/foo.pc")).unwrap(),
        format!(
            "prefix={o}\nlibdir=${{prefix}}/lib\nincludedir=${{prefix}}/include\nother={o}/lib/foo\n\
             Name: foo\nVersion: 1.0\nLibs: -L${{libdir}} -lfoo\nCflags: -I${{includedir}} -I{o}/include/foo\n"
        )
    );
    // the one ELF file, once; symlinks and non-ELF files are not patched
    assert_eq!(s.patchelf_calls(), [format!("--set-rpath {o}/lib:/store/bar/lib:/store/glibc/lib {o}/lib/libfoo.so.1.0")]);
}

#[test]
fn a_prebuilt_output_with_a_dangling_link_fails() {
    if !have(&["dpkg-deb", "sed", "od"]) {
        return;
    }
    let s = Scratch::new();
    let deb = s.deb("libbroken1", &[], &[("usr/lib/x86_64-linux-gnu/libbroken.so", "libbroken.so.1")]);
    let result = s.prebuilt(&s.path("broken"), &[deb], None);
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("libbroken.so -> libbroken.so.1 leads nowhere in the output"), "{stderr}");
}

/// [`STRIP_PHASE`] over an output with a program built with `-g`, a
/// shared library, a script and a data file.
#[test]
fn the_strip_phase_moves_debug_information_to_the_debug_output() {
    if !have(&["gcc", "readelf", "objcopy", "strip", "od", "sed", "cut"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let debug = dir.path().join("debug");
    fs::create_dir_all(out.join("bin")).unwrap();
    fs::create_dir_all(out.join("lib")).unwrap();
    fs::write(dir.path().join("hello.c"), "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n").unwrap();
    fs::write(dir.path().join("f.c"), "int f(int x) { return x + 1; }\n").unwrap();
    let cc = |args: &[&str]| ok(&Command::new("gcc").current_dir(dir.path()).args(args).output().unwrap());
    cc(&["-g", "-Wl,--build-id", "hello.c", "-o", "out/bin/hello"]);
    cc(&["-g", "-shared", "-fPIC", "-Wl,--build-id", "f.c", "-o", "out/lib/libf.so.1"]);
    cc(&["-Wl,--build-id", "hello.c", "-o", "out/bin/nodebug"]);
    executable(&out.join("bin/script"), "#!/bin/sh\necho hi\n");
    fs::write(out.join("lib/data.so.txt"), "not ELF").unwrap();
    let nodebug_before = fs::read(out.join("bin/nodebug")).unwrap();

    let result = Command::new("/bin/sh")
        .args(["-e", "-c", STRIP_PHASE])
        .current_dir(dir.path())
        .env("out", &out)
        .env("debug", &debug)
        .env("outputs", "out debug")
        .output()
        .unwrap();
    ok(&result);

    let sections = |f: &Path| String::from_utf8(Command::new("readelf").arg("-S").arg(f).output().unwrap().stdout).unwrap();
    let build_id = |f: &Path| {
        let notes = String::from_utf8(Command::new("readelf").arg("-n").arg(f).output().unwrap().stdout).unwrap();
        notes.lines().find_map(|l| l.trim().strip_prefix("Build ID: ").map(str::to_owned)).unwrap()
    };
    for f in [out.join("bin/hello"), out.join("lib/libf.so.1")] {
        let s = sections(&f);
        assert!(!s.contains(" .debug_info "), "{}: {s}", f.display());
        assert!(s.contains(" .gnu_debuglink ") && s.contains(" .symtab "), "{}: debuglink and symbols: {s}", f.display());
        let id = build_id(&f);
        let kept = debug.join(format!("lib/debug/.build-id/{}/{}.debug", &id[..2], &id[2..]));
        assert!(sections(&kept).contains(" .debug_info "), "{}", kept.display());
        assert_eq!(fs::metadata(&kept).unwrap().permissions().mode() & 0o777, 0o444);
    }
    // what had no debug information, and what is not ELF, is untouched
    assert_eq!(fs::read(out.join("bin/nodebug")).unwrap(), nodebug_before);
    assert_eq!(fs::read_to_string(out.join("bin/script")).unwrap(), "#!/bin/sh\necho hi\n");
    assert_eq!(fs::read_to_string(out.join("lib/data.so.txt")).unwrap(), "not ELF");
    // the stripped program still runs, and nothing in out names $debug
    let run = Command::new(out.join("bin/hello")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), "hello\n");
    let debug_name = debug.display().to_string();
    for f in ["bin/hello", "lib/libf.so.1"] {
        let bytes = fs::read(out.join(f)).unwrap();
        assert!(!bytes.windows(debug_name.len()).any(|w| w == debug_name.as_bytes()), "{f} refers to $debug");
    }
}
