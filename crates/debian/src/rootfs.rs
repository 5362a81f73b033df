//! Assembling `.deb`s into a toolchain root file system, without dpkg,
//! without maintainer scripts, then checking that it is complete.
//!
//! [`assemble`] unpacks every package's `data.tar` into a new directory the
//! way a Debian 12 system lays files out (merged `/usr`, documentation left
//! out as dpkg's `path-exclude` would), refusing anything that could write
//! outside that directory. What the packages' maintainer scripts would have
//! added is declared in one reviewed table, [`DECLARED_LINKS`]. Then every
//! symlink must resolve inside the tree and every ELF file's libraries must
//! be found in it, or the tree is removed and the error names the file.
//!
//! The tree depends only on the packages' contents: not on the order they
//! are given in, the number of threads, the host's umask or its files.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::io::{self, Read, Write as _};
use std::os::unix::fs::{symlink, DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::deb::{Control, Deb, DebError};

/// Directories never unpacked. They hold documentation only (manuals, info
/// pages, translations of messages, Debian's lint overrides): no build needs
/// them, and leaving them out keeps the tree small. dpkg does the same for
/// paths a `path-exclude` rule in `/etc/dpkg/dpkg.cfg.d` names, which is how
/// Debian's minimal images drop them.
pub const DOCUMENTATION_DIRS: [&str; 5] =
    ["usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian"];

/// Name of the manifest at the top of every tree: the packages and the
/// declared links, so a user can see what is inside. Part of the tree, hence
/// of its hash. No package may ship a file of that name.
pub const MANIFEST: &str = ".drv-toolchain.json";

/// Version of the tree layout, written in the manifest. Bump it when the
/// same packages would be assembled differently (a new declared link, a
/// directory left out), so that trees made by different rules differ.
pub const FORMAT_VERSION: u32 = 3;

/// Top-level directories that Debian 12's usrmerge turns into symlinks to
/// their `/usr` counterparts (`bin -> usr/bin`); package members under them
/// are unpacked under `usr/`.
const USRMERGE_DIRS: [&str; 7] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32", "libo32"];

/// Linux's limit on symlinks followed in one path lookup (`ELOOP`).
const MAX_SYMLINKS: usize = 40;

/// A link that a package's maintainer script makes on a Debian system and
/// that this builder, which runs no scripts, makes from this table instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeclaredLink {
    /// Where the link goes, relative to the tree's root, merged-/usr form.
    pub path: &'static str,
    /// What it leads to, relative to the tree's root. The link is written
    /// relative to its own directory.
    pub target: &'static str,
    /// The package whose script makes the link.
    pub package: &'static str,
}

/// What maintainer scripts would have done, for the packages a toolchain
/// is made of. Checked against the bookworm packages' `postinst`s
/// (`dpkg-deb -e`). A link is made only when its target is a regular file
/// in the tree (through symlinks) and nothing in the tree is at its path
/// yet; so for a path listed twice, the first entry whose target is there
/// wins, which is how the highest-priority alternative would be chosen.
///
/// `update-alternatives` would go through `/etc/alternatives/NAME`; the
/// tree is immutable, so there is no selection to change and the link
/// points straight at the alternative.
///
/// Not needed, hence not here: `/bin/sh`, which bookworm's dash ships
/// itself (`./bin/sh -> dash`); its `postinst`'s `dpkg-divert
/// --no-rename` only records that dash owns it and moves no file.
/// coreutils' `postinst` links `/usr/bin/touch` to `/bin/touch` only where
/// `/usr` is not merged. Manual-page slaves of the groups below are
/// documentation. The ld.so cache (libc-bin's `ldconfig` trigger) is not
/// made: Debian's loader searches the multiarch directories without one.
pub const DECLARED_LINKS: &[DeclaredLink] = &[
    // mawk postinst: update-alternatives --install /usr/bin/awk awk
    // /usr/bin/mawk 5 --slave /usr/bin/nawk nawk /usr/bin/mawk
    DeclaredLink { path: "usr/bin/awk", target: "usr/bin/mawk", package: "mawk" },
    DeclaredLink { path: "usr/bin/nawk", target: "usr/bin/mawk", package: "mawk" },
    // gcc postinst: --install /usr/bin/cc cc /usr/bin/gcc 20, and the same
    // for c89 (c89-gcc) and c99 (c99-gcc).
    DeclaredLink { path: "usr/bin/cc", target: "usr/bin/gcc", package: "gcc" },
    DeclaredLink { path: "usr/bin/c89", target: "usr/bin/c89-gcc", package: "gcc" },
    DeclaredLink { path: "usr/bin/c99", target: "usr/bin/c99-gcc", package: "gcc" },
    // g++ postinst: --install /usr/bin/c++ c++ /usr/bin/g++ 20.
    DeclaredLink { path: "usr/bin/c++", target: "usr/bin/g++", package: "g++" },
    // cpp postinst: --install /lib/cpp cpp /usr/bin/cpp 10 (/lib is usr/lib).
    DeclaredLink { path: "usr/lib/cpp", target: "usr/bin/cpp", package: "cpp" },
    // debianutils postinst: --install /usr/bin/which which
    // /usr/bin/which.debianutils 0.
    DeclaredLink { path: "usr/bin/which", target: "usr/bin/which.debianutils", package: "debianutils" },
    // xz-utils postinst: --install /usr/bin/lzma lzma /usr/bin/xz 20 with
    // slaves unlzma (unxz) and lz{cat,more,less,diff,cmp,grep,egrep,fgrep}
    // (xz{cat,…}).
    DeclaredLink { path: "usr/bin/lzma", target: "usr/bin/xz", package: "xz-utils" },
    DeclaredLink { path: "usr/bin/unlzma", target: "usr/bin/unxz", package: "xz-utils" },
    DeclaredLink { path: "usr/bin/lzcat", target: "usr/bin/xzcat", package: "xz-utils" },
    DeclaredLink { path: "usr/bin/lzmore", target: "usr/bin/xzmore", package: "xz-utils" },
    DeclaredLink { path: "usr/bin/lzless", target: "usr/bin/xzless", package: "xz-utils" },
    DeclaredLink { path: "usr/bin/lzdiff", target: "usr/bin/xzdiff", package: "xz-utils" },
    DeclaredLink { path: "usr/bin/lzcmp", target: "usr/bin/xzcmp", package: "xz-utils" },
    DeclaredLink { path: "usr/bin/lzgrep", target: "usr/bin/xzgrep", package: "xz-utils" },
    DeclaredLink { path: "usr/bin/lzegrep", target: "usr/bin/xzegrep", package: "xz-utils" },
    DeclaredLink { path: "usr/bin/lzfgrep", target: "usr/bin/xzfgrep", package: "xz-utils" },
    // tar postinst: --install /usr/sbin/rmt rmt /usr/sbin/rmt-tar 50 (tar's
    // own /etc/rmt points at /usr/sbin/rmt).
    DeclaredLink { path: "usr/sbin/rmt", target: "usr/sbin/rmt-tar", package: "tar" },
];

/// The compiler drivers a build calls by name, which [`assemble`] replaces
/// (when the package made them symlinks) by [`CC_WRAPPER`] around the
/// program they pointed at. `cc` is a declared link to `gcc`, so it is
/// wrapped too.
pub const WRAPPED_COMPILERS: [&str; 4] =
    ["usr/bin/gcc", "usr/bin/x86_64-linux-gnu-gcc", "usr/bin/g++", "usr/bin/x86_64-linux-gnu-g++"];

/// The environment variable naming the store path of the C library a
/// build links against (made by drv from the lock's `libc6`; set by the
/// evaluator for a toolchain that names `libc6-dev`).
pub const LIBC_ENV: &str = "DRV_LIBC";

/// The environment variable naming the store path of the C++ standard
/// library (`libstdc++`, from the lock's `libstdc++6`; set by the
/// evaluator for a toolchain that names `g++`).
pub const LIBCXX_ENV: &str = "DRV_LIBCXX";

/// drv's compiler wrapper, Nix's `cc-wrapper` in miniature: when
/// `$DRV_LIBC` is set and the call links, the program gets the loader of
/// that store path as its interpreter (`--dynamic-linker`) and its `lib`
/// in `RUNPATH`, so what is built runs on the C library of its closure,
/// not the host's. A C++ driver (its program's name has `++`) also gets
/// `$DRV_LIBCXX/lib` in `RUNPATH` when that is set. `@COMPILER@` is the
/// wrapped program's absolute path.
///
/// A call that only compiles (`-c`, `-S`, `-E`, `-M`, `-MM`) or names no
/// input (`gcc --version`) is passed through unchanged, as Nix's wrapper
/// does; a value after `-o`, `-x`, `-I`, `-L`… is not an input.
pub const CC_WRAPPER: &str = r#"#!/bin/sh
# drv's compiler wrapper (see drv_debian::rootfs::CC_WRAPPER): links
# against the C library at $DRV_LIBC, with its loader and its RUNPATH.
compiler=@COMPILER@
[ -n "${DRV_LIBC-}" ] || exec "$compiler" "$@"
links=no
skip=no
for a in "$@"; do
  if [ "$skip" = yes ]; then skip=no; continue; fi
  case "$a" in
    -c|-S|-E|-M|-MM) exec "$compiler" "$@" ;;
    -o|-x|-I|-L|-l|-u|-T|-include|-imacros|-isystem|-iquote|-idirafter|-MF|-MT|-MQ|-Xlinker|-Xassembler|-Xpreprocessor) skip=yes ;;
    -) links=yes ;;
    -*) ;;
    *) links=yes ;;
  esac
done
[ "$links" = yes ] || exec "$compiler" "$@"
loader=
for l in "$DRV_LIBC"/lib/ld-linux*.so.[0-9]; do [ -f "$l" ] && loader=$l; done
if [ -z "$loader" ]; then
  echo "drv cc-wrapper: no loader (lib/ld-linux*.so.N) in DRV_LIBC=$DRV_LIBC" >&2
  exit 1
fi
case "$compiler" in
  *++*) if [ -n "${DRV_LIBCXX-}" ]; then set -- "$@" -Wl,-rpath,"$DRV_LIBCXX/lib"; fi ;;
esac
exec "$compiler" "$@" -Wl,--dynamic-linker="$loader" -Wl,-rpath,"$DRV_LIBC/lib" -Wl,--enable-new-dtags
"#;

/// How [`assemble`] works.
#[derive(Clone, Debug)]
pub struct AssembleOptions {
    /// Threads unpacking packages at once (at least one is used).
    pub jobs: usize,
}

impl Default for AssembleOptions {
    /// One thread per available CPU.
    fn default() -> Self {
        Self { jobs: std::thread::available_parallelism().map_or(1, |n| n.get()) }
    }
}

/// A link [`assemble`] added to the tree: a top-level merged-/usr link or
/// one of [`DECLARED_LINKS`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct AddedLink {
    pub path: String,
    /// The symlink's contents, as written.
    pub target: String,
}

/// What [`assemble`] made.
#[derive(Clone, Debug, Default)]
pub struct Assembled {
    /// Sorted by name, then architecture.
    pub packages: Vec<Control>,
    /// Regular files (a hard link counts as one more).
    pub files: u64,
    /// Bytes of regular files written.
    pub bytes: u64,
    pub directories: u64,
    /// Symlinks, the packages' and the added ones.
    pub symlinks: u64,
    /// ELF files whose interpreter and libraries were checked.
    pub elf_files: u64,
    /// The top-level merged-/usr links (`bin -> usr/bin`), sorted.
    pub usrmerge_links: Vec<AddedLink>,
    /// Links made from [`DECLARED_LINKS`], in table order.
    pub declared_links: Vec<AddedLink>,
    /// Compiler drivers replaced by [`CC_WRAPPER`]: the path and the
    /// program it runs, in [`WRAPPED_COMPILERS`] order.
    pub wrapped_compilers: Vec<AddedLink>,
}

/// What can go wrong assembling a tree. Every variant names the file: the
/// `.deb` and its member, or the path in the tree.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("no .deb given: a root file system needs at least one package")]
    NoPackages,
    #[error("{} already exists; assemble makes a new directory", path.display())]
    OutExists { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Deb(#[from] DebError),
    #[error("{package} is given twice: {} and {}", first.display(), second.display())]
    DuplicatePackage { package: String, first: PathBuf, second: PathBuf },
    #[error("{}: member {member:?} {reason}", deb.display())]
    UnsafeMember { deb: PathBuf, member: String, reason: &'static str },
    #[error("{}: member {member:?} is a {kind}, which a root file system in the store cannot hold", deb.display())]
    UnsupportedType { deb: PathBuf, member: String, kind: &'static str },
    #[error("{}: member {member:?} is a hard link to {target:?}, not a regular file this package unpacked before it", deb.display())]
    HardLink { deb: PathBuf, member: String, target: String },
    #[error("{}: member {member:?} goes through the symlink {symlink} (from {symlink_package})", deb.display())]
    ThroughSymlink { deb: PathBuf, member: String, symlink: String, symlink_package: String },
    #[error("{path} is shipped by both {first} and {second} ({what})")]
    Conflict { path: String, first: String, second: String, what: &'static str },
    #[error("symlink {path} -> {target}: {problem}")]
    Symlink { path: String, target: String, problem: String },
    #[error("{path}: ELF file the loader cannot read: {reason}")]
    Elf { path: String, reason: String },
    #[error("{path} needs {soname}, which is in none of {searched}")]
    MissingLibrary { path: String, soname: String, searched: String },
    #[error("{path} asks for the interpreter {interpreter}, which is not an ELF file in the tree")]
    MissingInterpreter { path: String, interpreter: String },
    /// Another thread failed; never returned.
    #[error("stopped because another package failed")]
    Stopped,
}

type Result<T, E = RootfsError> = std::result::Result<T, E>;

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io { path: path.to_owned(), source }
}

/// Assemble the `.deb`s at `debs` into a new directory `out` (which must
/// not exist; its parent must), and check the result.
///
/// The tree holds every member of every package's `data.tar` except those
/// under [`DOCUMENTATION_DIRS`]:
/// - members under `bin/`, `sbin/`, `lib*/` go under `usr/`, and the top
///   level gets relative links `bin -> usr/bin` and so on, for exactly the
///   `usr/X` that exist (Debian 12's merged `/usr`);
/// - regular files get mode 0755 if the owner may execute them, else
///   0644 (no setuid, setgid or sticky bit); directories 0755; symlinks
///   keep their targets; a hard link is made to the file of the same
///   package it names; owners and times are not kept;
/// - the links of [`DECLARED_LINKS`] whose targets are in the tree;
/// - each of [`WRAPPED_COMPILERS`] that a package made a symlink to a
///   compiler replaced by [`CC_WRAPPER`] around that compiler;
/// - [`MANIFEST`]: the packages and the added links, as JSON.
///
/// Refused, with an error naming the `.deb` and the member: a member name
/// that is absolute, has a `..` component or is not UTF-8; a member whose
/// path goes through a symlink any package ships (nothing is ever written
/// through a symlink: all symlinks are made after every file); a device,
/// FIFO or other special file (Debian's toolchain packages ship none and a
/// store path cannot hold one); a hard link to anything but a regular file
/// the same package unpacked earlier; a truncated or corrupt archive. Two
/// packages may ship the same directory or the same symlink with the same
/// target; any other path shipped twice is a [`RootfsError::Conflict`].
///
/// Then, with an error naming the file: every symlink must resolve inside
/// the tree (absolute targets from the tree's root, relative ones from the
/// link's directory, chains followed, no more than 40 links, no `..` above
/// the root) to something that exists; every ELF file's `PT_INTERP` must
/// be an ELF file in the tree and each `DT_NEEDED` library must be found
/// as the loader would look for it (below).
///
/// The tree depends only on the packages: not on the order of `debs` or
/// of the threads. Packages are unpacked on `options.jobs` threads, the
/// largest first. On error, `out` is removed; when several packages are
/// wrong, which error is returned depends on timing.
///
/// # Library search
///
/// For each `DT_NEEDED` name (ld.so(8)): the object's `DT_RPATH` (unless it
/// has a `DT_RUNPATH`) and `DT_RUNPATH`, with `$ORIGIN` and `$LIB`
/// expanded; then the loader's defaults, multiarch first
/// (`lib/x86_64-linux-gnu`, `usr/lib/x86_64-linux-gnu`, `lib`, `usr/lib`,
/// `lib64`, `usr/lib64` on amd64). A candidate counts only if it is an ELF
/// file of the same class and machine, as the loader skips others.
/// `etc/ld.so.conf.d` is not searched: the loader sees those directories
/// only through the cache `ldconfig` builds (`etc/ld.so.cache`), which
/// this builder does not make, so a library found only there would not
/// load (libc6's own entries repeat the defaults).
pub fn assemble(debs: &[PathBuf], out: &Path, options: &AssembleOptions) -> Result<Assembled> {
    if debs.is_empty() {
        return Err(RootfsError::NoPackages);
    }
    match fs::DirBuilder::new().mode(0o755).create(out) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(RootfsError::OutExists { path: out.to_owned() });
        }
        Err(e) => return Err(RootfsError::Io { path: out.to_owned(), source: e }),
    }
    let result = assemble_into(debs, out, options);
    if result.is_err() {
        // Best effort: the error that matters is the one being returned.
        let _ = fs::remove_dir_all(out);
    }
    result
}

fn assemble_into(debs: &[PathBuf], out: &Path, options: &AssembleOptions) -> Result<Assembled> {
    let shared = Shared {
        out,
        debs,
        nodes: Mutex::new(HashMap::new()),
        packages: Mutex::new(BTreeMap::new()),
        names: debs.iter().map(|_| std::sync::OnceLock::new()).collect(),
        stop: AtomicBool::new(false),
    };
    let unpacked = unpack_all(&shared, options.jobs.max(1))?;
    let nodes = shared.nodes.into_inner().unwrap_or_else(PoisonError::into_inner);
    let packages: Vec<Control> =
        shared.packages.into_inner().unwrap_or_else(PoisonError::into_inner).into_values().map(|(c, _)| c).collect();

    let mut tree = Tree { nodes, out };
    let mut assembled = Assembled { packages, ..Assembled::default() };
    for u in &unpacked {
        assembled.files += u.files;
        assembled.bytes += u.bytes;
    }
    assembled.directories = tree.nodes.values().filter(|n| matches!(n, Node::Dir { .. })).count() as u64;

    // Every file is in place, so no symlink made now can redirect a write.
    let mut package_links: Vec<(&String, &String)> = tree
        .nodes
        .iter()
        .filter_map(|(path, node)| match node {
            Node::Symlink { target, .. } => Some((path, target)),
            _ => None,
        })
        .collect();
    package_links.sort();
    for (path, target) in package_links {
        let at = out.join(path);
        symlink(target, &at).map_err(io_error(&at))?;
    }
    for dir in USRMERGE_DIRS {
        let usr = format!("usr/{dir}");
        if matches!(tree.nodes.get(&usr), Some(Node::Dir { .. })) && !tree.nodes.contains_key(dir) {
            assembled.usrmerge_links.push(tree.add_link(dir, usr)?);
        }
    }
    assembled.usrmerge_links.sort();
    for declared in DECLARED_LINKS {
        if tree.nodes.contains_key(declared.path) {
            continue;
        }
        let parent_is_dir = match declared.path.rsplit_once('/') {
            Some((parent, _)) => matches!(tree.nodes.get(parent), Some(Node::Dir { .. })),
            None => true,
        };
        if parent_is_dir && matches!(tree.resolve(declared.target), Ok((_, Kind::File))) {
            let target = relative_target(declared.path, declared.target);
            assembled.declared_links.push(tree.add_link(declared.path, target)?);
        }
    }
    for path in WRAPPED_COMPILERS {
        let Some(Node::Symlink { .. }) = tree.nodes.get(path) else { continue };
        let Ok((real, Kind::File)) = tree.resolve(path) else { continue };
        let at = out.join(path);
        fs::remove_file(&at).map_err(io_error(&at))?;
        write_file(&at, CC_WRAPPER.replace("@COMPILER@", &format!("/{real}")).as_bytes(), true)?;
        let owner = tree.nodes.get(&real).and_then(Node::owner).unwrap_or(0);
        tree.nodes.insert(path.to_owned(), Node::File { owner });
        assembled.wrapped_compilers.push(AddedLink { path: path.to_owned(), target: format!("/{real}") });
    }
    assembled.symlinks = tree.nodes.values().filter(|n| matches!(n, Node::Symlink { .. })).count() as u64;

    tree.check_symlinks()?;
    let elves: BTreeMap<&str, &ElfInfo> =
        unpacked.iter().flat_map(|u| u.elves.iter().map(|(p, e)| (p.as_str(), e))).collect();
    check_libraries(&tree, &elves)?;
    assembled.elf_files = elves.len() as u64;

    write_manifest(out, &assembled)?;
    Ok(assembled)
}

/// What the unpacking threads share.
struct Shared<'a> {
    out: &'a Path,
    debs: &'a [PathBuf],
    /// Every path in the tree so far: the one record of what exists, so
    /// that no thread trusts what it finds on the file system.
    nodes: Mutex<HashMap<String, Node>>,
    /// `(name, architecture)` → the control fields and the `.deb`'s index.
    packages: Mutex<BTreeMap<(String, String), (Control, usize)>>,
    /// Each `.deb`'s package name once its control file is read, for error
    /// messages.
    names: Vec<std::sync::OnceLock<String>>,
    /// Set when a thread fails, so that the others stop early.
    stop: AtomicBool,
}

/// One path of the tree, as recorded while unpacking. `owner` indexes the
/// `.deb` that shipped it first.
#[derive(Debug)]
enum Node {
    Dir { owner: Option<usize> },
    File { owner: usize },
    Symlink { owner: Option<usize>, target: String },
}

impl Node {
    fn owner(&self) -> Option<usize> {
        match self {
            Node::Dir { owner } | Node::Symlink { owner, .. } => *owner,
            Node::File { owner } => Some(*owner),
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Node::Dir { .. } => "a directory",
            Node::File { .. } => "a file",
            Node::Symlink { .. } => "a symlink",
        }
    }
}

/// What a member asks to be.
enum Claim {
    Dir,
    File,
    Symlink(String),
}

impl Shared<'_> {
    fn package_name(&self, owner: Option<usize>) -> String {
        match owner {
            None => "drv".to_owned(),
            Some(i) => match self.names.get(i).and_then(|n| n.get()) {
                Some(name) => name.clone(),
                None => self.debs.get(i).map_or_else(String::new, |p| p.display().to_string()),
            },
        }
    }

    fn conflict(&self, path: &str, existing: &Node, owner: usize, wanted: &'static str) -> RootfsError {
        let mut names = [self.package_name(existing.owner()), self.package_name(Some(owner))];
        // Either order of unpacking gives the same message.
        names.sort();
        let [first, second] = names;
        let what = match (existing.what(), wanted) {
            (a, b) if a == b => a,
            ("a directory", _) | (_, "a directory") => "a directory and something else",
            _ => "a file and a symlink",
        };
        RootfsError::Conflict { path: path.to_owned(), first, second, what }
    }

    /// Record that `.deb` number `owner` puts `claim` at `path` (a tree
    /// path, see [`tree_path`]), creating its missing parent directories
    /// (and the directory itself) on disk. For a file, the caller creates
    /// it after this returns. Fails if the path is taken by something
    /// incompatible or goes through a symlink.
    fn claim(&self, owner: usize, member: &str, path: &str, claim: Claim) -> Result<()> {
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        for (end, _) in path.match_indices('/') {
            let ancestor = &path[..end];
            match nodes.get(ancestor) {
                Some(Node::Dir { .. }) => {}
                None => {
                    self.make_dir(ancestor)?;
                    nodes.insert(ancestor.to_owned(), Node::Dir { owner: Some(owner) });
                }
                Some(Node::Symlink { owner: symlink_owner, .. }) => {
                    return Err(RootfsError::ThroughSymlink {
                        deb: self.deb(owner),
                        member: member.to_owned(),
                        symlink: ancestor.to_owned(),
                        symlink_package: self.package_name(*symlink_owner),
                    });
                }
                Some(existing @ Node::File { .. }) => {
                    return Err(self.conflict(ancestor, existing, owner, "a directory"))
                }
            }
        }
        match (nodes.get(path), claim) {
            (None, Claim::Dir) => {
                self.make_dir(path)?;
                nodes.insert(path.to_owned(), Node::Dir { owner: Some(owner) });
            }
            (None, Claim::File) => {
                nodes.insert(path.to_owned(), Node::File { owner });
            }
            (None, Claim::Symlink(target)) => {
                nodes.insert(path.to_owned(), Node::Symlink { owner: Some(owner), target });
            }
            (Some(Node::Dir { .. }), Claim::Dir) => {}
            (Some(Node::Symlink { target: existing, .. }), Claim::Symlink(target)) if *existing == target => {}
            (Some(existing), claim) => {
                let wanted = match claim {
                    Claim::Dir => "a directory",
                    Claim::File => "a file",
                    Claim::Symlink(_) => "a symlink",
                };
                return Err(self.conflict(path, existing, owner, wanted));
            }
        }
        Ok(())
    }

    fn make_dir(&self, path: &str) -> Result<()> {
        let at = self.out.join(path);
        fs::DirBuilder::new().mode(0o755).create(&at).map_err(io_error(&at))?;
        // The umask may have taken bits away.
        fs::set_permissions(&at, fs::Permissions::from_mode(0o755)).map_err(io_error(&at))
    }

    fn deb(&self, index: usize) -> PathBuf {
        self.debs.get(index).cloned().unwrap_or_default()
    }

    /// Record `.deb` number `index`'s package; two `.deb`s of the same
    /// package and architecture are an error.
    fn register_package(&self, index: usize, control: &Control) -> Result<()> {
        let _ = self.names.get(index).map(|n| n.set(control.package.clone()));
        let mut packages = self.packages.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (control.package.clone(), control.architecture.clone());
        if let Some((_, other)) = packages.get(&key) {
            let mut pair = [self.deb(*other), self.deb(index)];
            pair.sort();
            let [first, second] = pair;
            return Err(RootfsError::DuplicatePackage { package: control.package.clone(), first, second });
        }
        packages.insert(key, (control.clone(), index));
        Ok(())
    }
}

/// What one thread found unpacking one package.
struct Unpacked {
    files: u64,
    bytes: u64,
    /// Each ELF file's path in the tree and what the loader reads of it.
    elves: Vec<(String, ElfInfo)>,
}

/// Unpack every `.deb` on `jobs` threads, largest first so that the big
/// compiler packages do not start last.
fn unpack_all(shared: &Shared<'_>, jobs: usize) -> Result<Vec<Unpacked>> {
    let mut order: Vec<(u64, usize)> =
        shared.debs.iter().enumerate().map(|(i, p)| (fs::metadata(p).map_or(0, |m| m.len()), i)).collect();
    order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let next = AtomicUsize::new(0);
    let jobs = jobs.min(order.len()).max(1);
    let results: Vec<(usize, Result<Unpacked>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    // One buffer per thread, grown to the largest file.
                    let mut buffer = Vec::new();
                    while let Some(&(_, index)) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                        if shared.stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let result = unpack_one(shared, index, &mut buffer);
                        if result.is_err() {
                            shared.stop.store(true, Ordering::Relaxed);
                        }
                        done.push((index, result));
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    let mut unpacked = Vec::with_capacity(results.len());
    let mut first_error: Option<(usize, RootfsError)> = None;
    for (index, result) in results {
        match result {
            Ok(u) => unpacked.push(u),
            Err(RootfsError::Stopped) => {}
            Err(e) => {
                if first_error.as_ref().is_none_or(|(i, _)| index < *i) {
                    first_error = Some((index, e));
                }
            }
        }
    }
    match first_error {
        Some((_, e)) => Err(e),
        None => Ok(unpacked),
    }
}

/// Unpack `.deb` number `index` into the tree.
fn unpack_one(shared: &Shared<'_>, index: usize, buffer: &mut Vec<u8>) -> Result<Unpacked> {
    let deb_path = shared.deb(index);
    let mut deb = Deb::open(&deb_path)?;
    shared.register_package(index, deb.control())?;
    let mut data = deb.data()?;
    let member_name = data.member().to_owned();
    let mut unpacked = Unpacked { files: 0, bytes: 0, elves: Vec::new() };
    // Regular files this package unpacked: what its hard links may name.
    // With the loader's view of each, if it is an ELF file, which a hard
    // link to it shares.
    let mut own_files: HashMap<String, Option<ElfInfo>> = HashMap::new();
    let stream_error = |e: io::Error| RootfsError::from(DebError::in_member(&deb_path, &member_name, e));
    {
        let mut archive = tar::Archive::new(&mut data);
        for entry in archive.entries().map_err(stream_error)? {
            if shared.stop.load(Ordering::Relaxed) {
                return Err(RootfsError::Stopped);
            }
            let mut entry = entry.map_err(stream_error)?;
            let raw_name = entry.path_bytes().into_owned();
            let member = String::from_utf8_lossy(&raw_name).into_owned();
            let unsafe_member =
                |reason| RootfsError::UnsafeMember { deb: deb_path.clone(), member: member.clone(), reason };
            let Some(path) = tree_path(&raw_name).map_err(unsafe_member)? else {
                continue;
            };
            let entry_type = entry.header().entry_type();
            match entry_type {
                tar::EntryType::Directory => shared.claim(index, &member, &path, Claim::Dir)?,
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    shared.claim(index, &member, &path, Claim::File)?;
                    buffer.clear();
                    let size = entry.size();
                    entry.read_to_end(buffer).map_err(stream_error)?;
                    if buffer.len() as u64 != size {
                        return Err(DebError::Truncated { path: deb_path.clone(), member: member_name.clone() }.into());
                    }
                    // Only the owner's executable bit survives the store's
                    // canonical modes (0444/0555); setuid and friends never.
                    let executable = entry.header().mode().map_err(stream_error)? & 0o100 != 0;
                    write_file(&shared.out.join(&path), buffer, executable)?;
                    let elf = parse_elf(buffer).map_err(|reason| RootfsError::Elf { path: path.clone(), reason })?;
                    if let Some(elf) = &elf {
                        unpacked.elves.push((path.clone(), elf.clone()));
                    }
                    unpacked.files += 1;
                    unpacked.bytes += size;
                    own_files.insert(path, elf);
                }
                tar::EntryType::Symlink => {
                    let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                    let target = String::from_utf8(target)
                        .ok()
                        .filter(|t| !t.is_empty())
                        .ok_or_else(|| unsafe_member("is a symlink whose target is empty or not UTF-8"))?;
                    shared.claim(index, &member, &path, Claim::Symlink(target))?;
                }
                tar::EntryType::Link => {
                    let raw_target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                    let target = tree_path(&raw_target).ok().flatten().filter(|t| own_files.contains_key(t));
                    let Some(target) = target else {
                        return Err(RootfsError::HardLink {
                            deb: deb_path.clone(),
                            member,
                            target: String::from_utf8_lossy(&raw_target).into_owned(),
                        });
                    };
                    shared.claim(index, &member, &path, Claim::File)?;
                    let (from, to) = (shared.out.join(&target), shared.out.join(&path));
                    fs::hard_link(&from, &to).map_err(io_error(&to))?;
                    unpacked.files += 1;
                    let elf = own_files.get(&target).cloned().flatten();
                    if let Some(elf) = &elf {
                        unpacked.elves.push((path.clone(), elf.clone()));
                    }
                    own_files.insert(path, elf);
                }
                // Metadata for the entries that follow, which the tar
                // reader has already applied where it matters (pax).
                tar::EntryType::XGlobalHeader => {}
                other => {
                    let kind = match other {
                        tar::EntryType::Char => "character device",
                        tar::EntryType::Block => "block device",
                        tar::EntryType::Fifo => "FIFO",
                        tar::EntryType::GNUSparse => "sparse file",
                        _ => "tar entry of an unknown type",
                    };
                    return Err(RootfsError::UnsupportedType { deb: deb_path.clone(), member, kind });
                }
            }
        }
    }
    // The end-of-archive padding, and the compressed stream's own check.
    data.finish()?;
    Ok(unpacked)
}

/// Where member `raw` goes in the tree: one leading `./` and empty or `.`
/// components dropped, `bin/…`, `sbin/…` and `lib*/…` moved under `usr/`.
/// `Ok(None)` for the archive's root entry and for documentation; an error
/// (the reason) for a name that could leave the tree or is not UTF-8.
fn tree_path(raw: &[u8]) -> Result<Option<String>, &'static str> {
    let name = std::str::from_utf8(raw).map_err(|_| "is not UTF-8")?;
    if name.starts_with('/') {
        return Err("is an absolute path");
    }
    let name = name.strip_prefix("./").unwrap_or(name);
    let mut parts = Vec::new();
    for component in name.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err("has a `..` component"),
            c => parts.push(c),
        }
    }
    let Some(first) = parts.first() else {
        return Ok(None);
    };
    if USRMERGE_DIRS.contains(first) {
        parts.insert(0, "usr");
    }
    let path = parts.join("/");
    if is_documentation(&path) {
        return Ok(None);
    }
    if path == MANIFEST {
        return Err("has the name of drv's manifest");
    }
    Ok(Some(path))
}

fn is_documentation(path: &str) -> bool {
    DOCUMENTATION_DIRS.iter().any(|d| path.strip_prefix(d).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
}

/// Create the regular file `at` (which must not exist: `O_EXCL` never
/// follows a symlink) with `contents` and mode 0755 or 0644.
fn write_file(at: &Path, contents: &[u8], executable: bool) -> Result<()> {
    let mode = if executable { 0o755 } else { 0o644 };
    let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(at).map_err(io_error(at))?;
    file.write_all(contents).map_err(io_error(at))?;
    // The umask may have taken bits away.
    file.set_permissions(fs::Permissions::from_mode(mode)).map_err(io_error(at))
}

/// The symlink contents that lead from `link` to `target`, both tree
/// paths: `usr/bin/awk`, `usr/bin/mawk` → `mawk`; `usr/lib/cpp`,
/// `usr/bin/cpp` → `../bin/cpp`.
fn relative_target(link: &str, target: &str) -> String {
    let link_dir: Vec<&str> = link.split('/').collect();
    let link_dir = link_dir.split_last().map_or(&[][..], |(_, dir)| dir);
    let target: Vec<&str> = target.split('/').collect();
    let common = link_dir.iter().zip(&target).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; link_dir.len() - common];
    parts.extend(target.iter().skip(common));
    parts.join("/")
}

/// The finished tree, as recorded (no symlink is read back from disk).
struct Tree<'a> {
    nodes: HashMap<String, Node>,
    out: &'a Path,
}

/// What a path resolves to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
}

impl Tree<'_> {
    /// Make the symlink `path -> target` on disk and in the record.
    fn add_link(&mut self, path: &str, target: String) -> Result<AddedLink> {
        let at = self.out.join(path);
        symlink(&target, &at).map_err(io_error(&at))?;
        self.nodes.insert(path.to_owned(), Node::Symlink { owner: None, target: target.clone() });
        Ok(AddedLink { path: path.to_owned(), target })
    }

    /// Resolve the tree path `path` as the kernel would with the tree as
    /// `/`, following every symlink: the symlink-free path it leads to and
    /// what is there. The error says why not (missing, a loop, `..` above
    /// the root, a file used as a directory).
    fn resolve(&self, path: &str) -> Result<(String, Kind), String> {
        let mut pending: VecDeque<String> = path.split('/').map(str::to_owned).collect();
        let mut current: Vec<String> = Vec::new();
        let mut kind = Kind::Dir;
        let mut links = 0;
        while let Some(component) = pending.pop_front() {
            match component.as_str() {
                "" | "." => continue,
                ".." => {
                    if current.pop().is_none() {
                        return Err("goes above the root of the tree".to_owned());
                    }
                    kind = Kind::Dir;
                    continue;
                }
                _ => {}
            }
            if kind == Kind::File {
                return Err(format!("{} is a file, not a directory", current.join("/")));
            }
            let candidate =
                if current.is_empty() { component.clone() } else { format!("{}/{component}", current.join("/")) };
            match self.nodes.get(&candidate) {
                None => return Err(format!("{candidate} does not exist")),
                Some(Node::Dir { .. }) => {
                    current.push(component);
                    kind = Kind::Dir;
                }
                Some(Node::File { .. }) => {
                    current.push(component);
                    kind = Kind::File;
                }
                Some(Node::Symlink { target, .. }) => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(format!("more than {MAX_SYMLINKS} symlinks (a loop?)"));
                    }
                    if target.starts_with('/') {
                        current.clear();
                    }
                    for part in target.split('/').rev() {
                        pending.push_front(part.to_owned());
                    }
                }
            }
        }
        Ok((current.join("/"), kind))
    }

    /// Every symlink must lead to something in the tree.
    fn check_symlinks(&self) -> Result<()> {
        let mut links: Vec<(&String, &String)> = self
            .nodes
            .iter()
            .filter_map(|(p, n)| match n {
                Node::Symlink { target, .. } => Some((p, target)),
                _ => None,
            })
            .collect();
        links.sort();
        for (path, target) in links {
            self.resolve(path).map_err(|problem| RootfsError::Symlink {
                path: path.clone(),
                target: target.clone(),
                problem,
            })?;
        }
        Ok(())
    }

}

/// What the dynamic loader reads of an ELF file (elf(5), ld.so(8)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfInfo {
    /// `EI_CLASS`, `EI_DATA` and `e_machine`: a library must match all
    /// three to be loaded.
    pub class: u8,
    pub data: u8,
    pub machine: u16,
    /// `PT_INTERP`: the program's loader.
    pub interpreter: Option<String>,
    /// `DT_NEEDED`, `DT_RPATH`, `DT_RUNPATH`, in file order.
    pub needed: Vec<String>,
    pub rpath: Vec<String>,
    pub runpath: Vec<String>,
}

/// The loader's view of `bytes` if they are an ELF file; `Ok(None)` if
/// they are not one (no ELF magic). Read from the program headers, as the
/// loader does (section headers may be stripped).
pub fn parse_elf(bytes: &[u8]) -> Result<Option<ElfInfo>, String> {
    use object::elf::{FileHeader32, FileHeader64};
    use object::Endianness;
    if !bytes.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    let parsed = match bytes.get(4) {
        Some(&object::elf::ELFCLASS32) => parse_elf_as::<FileHeader32<Endianness>>(bytes),
        Some(&object::elf::ELFCLASS64) => parse_elf_as::<FileHeader64<Endianness>>(bytes),
        _ => return Err("unknown ELF class".to_owned()),
    };
    parsed.map(Some)
}

fn parse_elf_as<H>(bytes: &[u8]) -> Result<ElfInfo, String>
where
    H: object::read::elf::FileHeader<Endian = object::Endianness>,
{
    use object::read::elf::{Dyn as _, ProgramHeader as _};
    let header = H::parse(bytes).map_err(|e| e.to_string())?;
    let endian = header.endian().map_err(|e| e.to_string())?;
    let segments = header.program_headers(endian, bytes).map_err(|e| e.to_string())?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let ident = header.e_ident();
    let mut info = ElfInfo {
        class: ident.class,
        data: ident.data,
        machine: header.e_machine(endian),
        interpreter: None,
        needed: Vec::new(),
        rpath: Vec::new(),
        runpath: Vec::new(),
    };
    let mut dynamic = None;
    for segment in segments {
        if let Some(interpreter) = segment.interpreter(endian, bytes).map_err(|e| e.to_string())? {
            info.interpreter = Some(text(interpreter));
        }
        if let Some(entries) = segment.dynamic(endian, bytes).map_err(|e| e.to_string())? {
            dynamic = Some(entries);
        }
    }
    let Some(dynamic) = dynamic else {
        return Ok(info);
    };
    let value = |tag: u32| dynamic.iter().find(|d| d.tag32(endian) == Some(tag)).map(|d| d.d_val(endian).into());
    let (Some(strtab), Some(strsz)) = (value(object::elf::DT_STRTAB), value(object::elf::DT_STRSZ)) else {
        return Ok(info);
    };
    // DT_STRTAB is an address; the loadable segment holding it says where
    // that is in the file.
    let offset = segments.iter().find_map(|s| {
        let vaddr: u64 = s.p_vaddr(endian).into();
        let filesz: u64 = s.p_filesz(endian).into();
        let offset: u64 = s.p_offset(endian).into();
        (s.p_type(endian) == object::elf::PT_LOAD && strtab >= vaddr && strtab - vaddr < filesz)
            .then(|| offset + (strtab - vaddr))
    });
    let Some(offset) = offset else {
        return Err("DT_STRTAB is in no loadable segment".to_owned());
    };
    let strings = object::read::StringTable::new(bytes, offset, offset.saturating_add(strsz));
    for d in dynamic {
        let list = match d.tag32(endian) {
            Some(object::elf::DT_NEEDED) => &mut info.needed,
            Some(object::elf::DT_RPATH) => &mut info.rpath,
            Some(object::elf::DT_RUNPATH) => &mut info.runpath,
            _ => continue,
        };
        list.push(text(d.string(endian, strings).map_err(|e| e.to_string())?));
    }
    Ok(info)
}

/// The multiarch tuple of Debian's loader for an ELF machine and class,
/// which names its first default directories.
fn multiarch(machine: u16, class: u8) -> Option<&'static str> {
    match (machine, class) {
        (object::elf::EM_X86_64, object::elf::ELFCLASS64) => Some("x86_64-linux-gnu"),
        (object::elf::EM_386, object::elf::ELFCLASS32) => Some("i386-linux-gnu"),
        (object::elf::EM_AARCH64, object::elf::ELFCLASS64) => Some("aarch64-linux-gnu"),
        _ => None,
    }
}

/// Each ELF file's interpreter and libraries must be in the tree (see
/// [`assemble`]'s "Library search").
fn check_libraries(tree: &Tree<'_>, elves: &BTreeMap<&str, &ElfInfo>) -> Result<()> {
    let is_compatible = |path: &str, object: &ElfInfo| match tree.resolve(path) {
        Ok((real, Kind::File)) => elves
            .get(real.as_str())
            .is_some_and(|lib| lib.class == object.class && lib.data == object.data && lib.machine == object.machine),
        _ => false,
    };
    for (&path, elf) in elves {
        if let Some(interpreter) = &elf.interpreter {
            let found = match tree.resolve(interpreter) {
                Ok((real, Kind::File)) => elves.contains_key(real.as_str()),
                _ => false,
            };
            if !found {
                return Err(RootfsError::MissingInterpreter {
                    path: path.to_owned(),
                    interpreter: interpreter.clone(),
                });
            }
        }
        if elf.needed.is_empty() {
            continue;
        }
        let origin = path.rsplit_once('/').map_or("", |(dir, _)| dir);
        let lib = multiarch(elf.machine, elf.class).map(|t| format!("lib/{t}"));
        let expand = |dir: &str| -> Option<String> {
            let mut dir = dir.replace("${ORIGIN}", &format!("/{origin}")).replace("$ORIGIN", &format!("/{origin}"));
            if let Some(lib) = &lib {
                dir = dir.replace("${LIB}", lib).replace("$LIB", lib);
            }
            // Relative entries are relative to the process's working
            // directory, which no check can know; unknown `$` tokens make
            // the loader ignore the entry.
            (dir.starts_with('/') && !dir.contains('$')).then_some(dir)
        };
        let own: &[String] = if elf.runpath.is_empty() { &elf.rpath } else { &elf.runpath };
        let mut dirs: Vec<String> = own.iter().flat_map(|list| list.split(':')).filter_map(expand).collect();
        if let Some(tuple) = multiarch(elf.machine, elf.class) {
            dirs.push(format!("/lib/{tuple}"));
            dirs.push(format!("/usr/lib/{tuple}"));
        }
        dirs.extend(["/lib", "/usr/lib", "/lib64", "/usr/lib64"].map(str::to_owned));
        for soname in &elf.needed {
            let found = if soname.contains('/') {
                is_compatible(soname, elf)
            } else {
                dirs.iter().any(|dir| is_compatible(&format!("{dir}/{soname}"), elf))
            };
            if !found {
                return Err(RootfsError::MissingLibrary {
                    path: path.to_owned(),
                    soname: soname.clone(),
                    searched: dirs.join(":"),
                });
            }
        }
    }
    Ok(())
}

/// The manifest's JSON: stable field order, sorted lists, one trailing
/// newline.
fn write_manifest(out: &Path, assembled: &Assembled) -> Result<()> {
    #[derive(serde::Serialize)]
    struct Package<'a> {
        name: &'a str,
        version: &'a str,
        architecture: &'a str,
    }
    #[derive(serde::Serialize)]
    struct Manifest<'a> {
        format: u32,
        packages: Vec<Package<'a>>,
        usrmerge_links: &'a [AddedLink],
        declared_links: &'a [AddedLink],
        wrapped_compilers: &'a [AddedLink],
    }
    let manifest = Manifest {
        format: FORMAT_VERSION,
        packages: assembled
            .packages
            .iter()
            .map(|c| Package { name: &c.package, version: &c.version, architecture: &c.architecture })
            .collect(),
        usrmerge_links: &assembled.usrmerge_links,
        declared_links: &assembled.declared_links,
        wrapped_compilers: &assembled.wrapped_compilers,
    };
    let at = out.join(MANIFEST);
    let mut json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| RootfsError::Io { path: at.clone(), source: e.into() })?;
    json.push(b'\n');
    write_file(&at, &json, false)
}

#[cfg(test)]
mod tests;
