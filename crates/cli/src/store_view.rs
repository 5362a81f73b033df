//! The mount namespaces `drv run` and `drv shell` start programs in.
//!
//! - [`apply`]: a store kept under `--root DIR` names its paths
//!   `/store/...`, which is `DIR/store/...` on this machine. Such a program
//!   runs where the root shows the host's own top-level directories and, at
//!   `/store`, `DIR/store`. A store at its logical place needs none of this.
//! - [`isolate`] (`--isolated`): a root that holds only a closure and the
//!   few things of the host a program needs to run and reach the network
//!   (see [`isolate`] for the list).
//!
//! Both plan a root here and enter it with the sandbox's
//! [`enter_root`]: a user namespace too when drv is not root, mapping only
//! the caller's own uid and gid (so the program keeps its uid), and the
//! build sandbox's [`Step`]s: the same mounts, the same read-only remounts.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use drv_sandbox::{enter_root, own_id_maps, RootPlan, Step, DEVICES, DEVICE_LINKS};

/// Where an isolated program starts: the fresh, empty, writable `/tmp`
/// (the rest of its root is read-only).
pub const ISOLATED_CWD: &str = "/tmp";

/// Host files an isolated program gets, read-only, when the host has them:
/// name resolution over the shared network.
const ETC_FILES: [&str; 2] = ["/etc/resolv.conf", "/etc/hosts"];

/// The host's certificate directory (CA certificates for TLS).
const CERTS: &str = "/etc/ssl/certs";

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("paths have no NUL")
}

/// `inside` (an absolute path as the program sees it) under `new_root`.
fn under(new_root: &Path, inside: &Path) -> CString {
    c(&new_root.join(inside.strip_prefix("/").unwrap_or(inside)))
}

/// A directory the namespace's root is mounted on; removed when dropped.
pub struct StoreView {
    dir: Option<tempfile::TempDir>,
}

/// A store path of the closure an isolated program gets.
pub struct ClosurePath {
    /// Where its files are on this machine (`DIR/store/<hash>-<name>`).
    pub real: PathBuf,
    /// Where the program sees it (`/store/<hash>-<name>`).
    pub logical: PathBuf,
}

/// Builds the steps of one root under `new_root`.
struct Layout {
    new_root: PathBuf,
    steps: Vec<(Step, bool)>,
}

impl Layout {
    fn new(new_root: &Path) -> Self {
        Layout { new_root: new_root.to_owned(), steps: Vec::new() }
    }

    fn at(&self, inside: &Path) -> CString {
        under(&self.new_root, inside)
    }

    /// `inside` and each of its ancestors, as directories.
    fn dirs(&mut self, inside: &Path) {
        let mut at = PathBuf::from("/");
        for component in inside.components() {
            if let Component::Normal(name) = component {
                at.push(name);
                self.steps.push((Step::Dir { path: self.at(&at), mode: 0o755 }, true));
            }
        }
    }

    /// Bind `host` at `inside` (whose parent exists), over a mount point of
    /// its kind; read-only unless `writable`. `required`: the bind itself
    /// must succeed.
    fn bind(&mut self, host: &Path, inside: &Path, writable: bool, required: bool) -> anyhow::Result<()> {
        let meta = std::fs::metadata(host).with_context(|| format!("cannot open {}", host.display()))?;
        let target = self.at(inside);
        let point = if meta.is_dir() { Step::Dir { path: target.clone(), mode: 0o755 } } else { Step::File { path: target.clone() } };
        self.steps.push((point, true));
        self.steps.push((Step::Bind { source: c(host), target, writable }, required));
        Ok(())
    }

    fn symlink(&mut self, target: &Path, inside: &Path) {
        self.steps.push((Step::Symlink { target: c(target), link: self.at(inside) }, true));
    }

    fn tmpfs(&mut self, inside: &Path) {
        self.steps.push((Step::Dir { path: self.at(inside), mode: 0o1777 }, true));
        self.steps.push((Step::Tmpfs { target: self.at(inside), options: c"mode=1777".to_owned() }, true));
    }
}

fn new_root_dir() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new().prefix("drv-store-view-").tempdir()?)
}

/// Make `cmd` run where `logical_store` shows `real_store`. Returns a guard
/// to keep until the command has exited.
pub fn apply(cmd: &mut Command, real_store: &Path, logical_store: &Path) -> anyhow::Result<StoreView> {
    let real = std::fs::canonicalize(real_store).with_context(|| format!("cannot open {}", real_store.display()))?;
    if std::fs::canonicalize(logical_store).ok().as_deref() == Some(real.as_path()) {
        return Ok(StoreView { dir: None });
    }
    let first = logical_store
        .components()
        .nth(1)
        .context("the store directory must not be /")?
        .as_os_str()
        .to_owned();
    if logical_store.components().count() != 2 {
        anyhow::bail!("running programs of a store under --root needs a store directory directly under / (like /store)");
    }
    let dir = new_root_dir()?;
    let mut layout = Layout::new(dir.path());
    for entry in std::fs::read_dir("/")? {
        let name = entry?.file_name();
        if name == first {
            continue;
        }
        let host = Path::new("/").join(&name);
        let meta = std::fs::symlink_metadata(&host)?;
        if meta.file_type().is_symlink() {
            layout.symlink(&std::fs::read_link(&host)?, &host);
        } else {
            layout.bind(&host, &host, true, false)?;
        }
    }
    layout.bind(&real, logical_store, true, true)?;
    let plan = RootPlan {
        new_root: c(dir.path()),
        steps: layout.steps,
        read_only_root: false,
        cwd: c(&std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"))),
        maps: own_id_maps(),
    };
    enter_before_exec(cmd, plan);
    Ok(StoreView { dir: Some(dir) })
}

/// Make `cmd` run in a root that holds only:
///
/// - each path of `closure`, read-only at its logical place;
/// - `/dev`: `null zero full random urandom tty` and `/dev/pts` from the
///   host, a fresh `/dev/shm`, and the `fd`/`stdin`/`stdout`/`stderr` links;
/// - `/proc`: the host's, bound recursively. A fresh procfs would need a
///   PID namespace of the program's own, and so an init process between drv
///   and the program; a `pre_exec` hook cannot be one;
/// - `/tmp`: a fresh, empty, writable tmpfs, the working directory;
/// - read-only, when the host has them: `/etc/resolv.conf`, `/etc/hosts`,
///   `/etc/ssl/certs` and the directories its links point into.
///
/// The root itself is read-only; the network is the host's. Returns a
/// guard to keep until the command has exited.
pub fn isolate(cmd: &mut Command, logical_store: &Path, closure: &[ClosurePath]) -> anyhow::Result<StoreView> {
    let dir = new_root_dir()?;
    let mut layout = Layout::new(dir.path());

    layout.dirs(logical_store);
    for path in closure {
        let meta = std::fs::symlink_metadata(&path.real).with_context(|| format!("cannot open {}", path.real.display()))?;
        if meta.file_type().is_symlink() {
            layout.symlink(&std::fs::read_link(&path.real)?, &path.logical);
        } else {
            layout.bind(&path.real, &path.logical, false, true)?;
        }
    }

    layout.dirs(Path::new("/dev"));
    for device in DEVICES {
        let host = Path::new("/dev").join(device);
        if host.exists() {
            // Writable: a read-only mount would not stop writes to a
            // device anyway (as in the build sandbox).
            layout.bind(&host, &host, true, true)?;
        }
    }
    // The host's ptys: the caller's terminal is one of them, and a shell
    // looks its name up there.
    if Path::new("/dev/pts").is_dir() {
        layout.bind(Path::new("/dev/pts"), Path::new("/dev/pts"), true, true)?;
        layout.symlink(Path::new("pts/ptmx"), Path::new("/dev/ptmx"));
    }
    layout.tmpfs(Path::new("/dev/shm"));
    for (link, target) in DEVICE_LINKS {
        layout.symlink(Path::new(target), Path::new(link));
    }
    layout.bind(Path::new("/proc"), Path::new("/proc"), true, true)?;
    layout.tmpfs(Path::new(ISOLATED_CWD));

    let etc: Vec<&Path> = ETC_FILES.iter().map(Path::new).filter(|f| f.is_file()).collect();
    if !etc.is_empty() || Path::new(CERTS).is_dir() {
        layout.dirs(Path::new("/etc"));
    }
    for file in etc {
        layout.bind(file, file, false, true)?;
    }
    for (host, inside) in certificate_dirs() {
        if let Some(parent) = inside.parent() {
            layout.dirs(parent);
        }
        layout.bind(&host, &inside, false, true)?;
    }

    let plan = RootPlan {
        new_root: c(dir.path()),
        steps: layout.steps,
        read_only_root: true,
        cwd: c(Path::new(ISOLATED_CWD)),
        maps: own_id_maps(),
    };
    enter_before_exec(cmd, plan);
    Ok(StoreView { dir: Some(dir) })
}

/// `/etc/ssl/certs` and every directory its symlinks point into: (host
/// directory, where it appears), parents before children. On Debian most
/// entries there are links into `/usr/share/ca-certificates/*/` (only the
/// bundle `ca-certificates.crt` is a regular file), elsewhere into
/// `/etc/pki/...`; binding those directories at their own paths keeps every
/// link readable without bringing the rest of `/usr` or `/etc`.
fn certificate_dirs() -> Vec<(PathBuf, PathBuf)> {
    let certs = Path::new(CERTS);
    let Ok(real_certs) = std::fs::canonicalize(certs) else { return Vec::new() };
    if !real_certs.is_dir() {
        return Vec::new();
    }
    let mut targets = BTreeSet::new();
    for entry in std::fs::read_dir(&real_certs).into_iter().flatten().flatten() {
        let is_link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(false);
        let Some(dir) = is_link.then(|| std::fs::canonicalize(entry.path()).ok()).flatten().and_then(|t| t.parent().map(Path::to_owned)) else {
            continue;
        };
        // Links within the directory need nothing more; a link into `/`
        // or `/etc` itself would bring too much, and is left dangling.
        if dir.starts_with(&real_certs) || dir == Path::new("/") || dir == Path::new("/etc") {
            continue;
        }
        targets.insert(dir);
    }
    // A directory below another one already bound needs no bind of its own
    // (sorted: parents come first).
    let mut chosen: Vec<PathBuf> = Vec::new();
    for dir in targets {
        if !chosen.iter().any(|parent| dir.starts_with(parent)) {
            chosen.push(dir);
        }
    }
    std::iter::once((real_certs, certs.to_owned())).chain(chosen.into_iter().map(|d| (d.clone(), d))).collect()
}

fn enter_before_exec(cmd: &mut Command, plan: RootPlan) {
    // SAFETY: the closure runs in the forked child before exec; it only
    // makes system calls on data prepared above.
    unsafe {
        cmd.pre_exec(move || enter_root(&plan).map_err(std::io::Error::from));
    }
}

impl Drop for StoreView {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            let _ = d.close();
        }
    }
}
