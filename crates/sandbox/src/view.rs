//! A root of [`Step`]s entered by a program that is not a build (`drv
//! run`, `drv shell`): a new mount namespace (and, when not root, a user
//! namespace mapping only the caller's own uid and gid, so the program
//! keeps them), a fresh tmpfs root assembled with the sandbox's own steps,
//! `pivot_root`, and the same read-only remount. One implementation of
//! mount namespaces for the whole binary.

use std::ffi::CString;

use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, pivot_root};

use crate::child::{remount_read_only, run_step};
use crate::plan::Step;

/// What [`enter_root`] does, prepared before the fork so that the child
/// only makes system calls.
#[derive(Debug)]
pub struct RootPlan {
    /// An existing empty directory the new root's tmpfs is mounted on.
    pub new_root: CString,
    /// Applied in order; a step marked `false` may fail (a host entry that
    /// cannot be bound, such as an odd special file, is left out).
    pub steps: Vec<(Step, bool)>,
    /// Remount `/` read-only once entered.
    pub read_only_root: bool,
    /// Where the program starts (`/` if that cannot be entered).
    pub cwd: CString,
    /// `uid_map` and `gid_map` contents for a new user namespace; `None`
    /// (as root): no user namespace.
    pub maps: Option<(Vec<u8>, Vec<u8>)>,
}

/// The maps of a user namespace in which the caller keeps its own uid and
/// gid (the only ones an unprivileged process may map); `None` for root,
/// who needs no user namespace.
pub fn own_id_maps() -> Option<(Vec<u8>, Vec<u8>)> {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    (uid != 0).then(|| (format!("{uid} {uid} 1\n").into_bytes(), format!("{gid} {gid} 1\n").into_bytes()))
}

/// Enter `plan`'s root. Meant for a child between fork and exec
/// (`Command::pre_exec`): it allocates nothing.
///
/// # Errors
/// The first system call that failed.
pub fn enter_root(plan: &RootPlan) -> nix::Result<()> {
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
    for (step, required) in &plan.steps {
        match run_step(step) {
            Err(e) if *required => return Err(e),
            _ => {}
        }
    }
    chdir(plan.new_root.as_c_str())?;
    pivot_root(".", ".")?;
    umount2(".", MntFlags::MNT_DETACH)?;
    chdir("/")?;
    if plan.read_only_root {
        remount_read_only(c"/")?;
    }
    chdir(plan.cwd.as_c_str()).or_else(|_| chdir("/"))?;
    Ok(())
}
