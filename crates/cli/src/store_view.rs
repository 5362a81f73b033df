//! Running programs from a store kept under `--root DIR`: its paths name
//! `/store/...`, which is `DIR/store/...` on this machine. Such a program
//! runs in a mount namespace whose root shows the host's own top-level
//! directories and, at `/store`, `DIR/store` (in a user namespace too when
//! drv is not root). A store at its logical place needs none of this.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::unistd::{chdir, pivot_root};

/// What the child needs, prepared before forking so that the child only
/// makes system calls.
struct Plan {
    new_root: CString,
    /// Host top-level entries: (host path, path in the new root, is a directory).
    binds: Vec<(CString, CString, bool)>,
    /// Host top-level symlinks: (target, path in the new root).
    links: Vec<(CString, CString)>,
    store_mount_point: CString,
    real_store: CString,
    cwd: CString,
    maps: Option<(Vec<u8>, Vec<u8>)>,
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("paths have no NUL")
}

/// A directory the namespace's root is mounted on; removed when dropped.
pub struct StoreView {
    dir: Option<tempfile::TempDir>,
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
    let dir = tempfile::Builder::new().prefix("drv-store-view-").tempdir()?;
    let new_root = dir.path().to_owned();
    let mut binds = Vec::new();
    let mut links = Vec::new();
    for entry in std::fs::read_dir("/")? {
        let entry = entry?;
        let name = entry.file_name();
        if name == first {
            continue;
        }
        let host = Path::new("/").join(&name);
        let inside = new_root.join(&name);
        let meta = std::fs::symlink_metadata(&host)?;
        if meta.file_type().is_symlink() {
            links.push((c(&std::fs::read_link(&host)?), c(&inside)));
        } else {
            binds.push((c(&host), c(&inside), meta.is_dir()));
        }
    }
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let plan = Plan {
        new_root: c(&new_root),
        binds,
        links,
        store_mount_point: c(&new_root.join(&first)),
        real_store: c(&real),
        cwd: c(&std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"))),
        maps: (uid != 0).then(|| (format!("{uid} {uid} 1\n").into_bytes(), format!("{gid} {gid} 1\n").into_bytes())),
    };
    // SAFETY: the closure runs in the forked child before exec; it only
    // makes system calls on data prepared above.
    unsafe {
        cmd.pre_exec(move || enter(&plan).map_err(std::io::Error::from));
    }
    Ok(StoreView { dir: Some(dir) })
}

fn enter(plan: &Plan) -> nix::Result<()> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    if let Some((uid_map, gid_map)) = &plan.maps {
        unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)?;
        for (file, data) in [(c"/proc/self/setgroups", &b"deny"[..]), (c"/proc/self/uid_map", uid_map), (c"/proc/self/gid_map", gid_map)] {
            let fd = nix::fcntl::open(file, OFlag::O_WRONLY, Mode::empty())?;
            nix::unistd::write(&fd, data)?;
        }
    } else {
        unshare(CloneFlags::CLONE_NEWNS)?;
    }
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)?;
    mount(Some("tmpfs"), plan.new_root.as_c_str(), Some("tmpfs"), MsFlags::empty(), Some("mode=0755"))?;
    for (host, inside, is_dir) in &plan.binds {
        if *is_dir {
            nix::unistd::mkdir(inside.as_c_str(), Mode::from_bits_truncate(0o755))?;
        } else {
            drop(nix::fcntl::open(inside.as_c_str(), OFlag::O_CREAT | OFlag::O_WRONLY, Mode::from_bits_truncate(0o644))?);
        }
        // A mount that cannot be bound (an odd special file) is left out.
        let _ = mount(Some(host.as_c_str()), inside.as_c_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>);
    }
    for (target, inside) in &plan.links {
        nix::unistd::symlinkat(target.as_c_str(), nix::fcntl::AT_FDCWD, inside.as_c_str())?;
    }
    nix::unistd::mkdir(plan.store_mount_point.as_c_str(), Mode::from_bits_truncate(0o755))?;
    mount(Some(plan.real_store.as_c_str()), plan.store_mount_point.as_c_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)?;
    chdir(plan.new_root.as_c_str())?;
    pivot_root(".", ".")?;
    umount2(".", MntFlags::MNT_DETACH)?;
    chdir(plan.cwd.as_c_str()).or_else(|_| chdir("/"))?;
    Ok(())
}

impl Drop for StoreView {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            let _ = d.close();
        }
    }
}
