//! One cgroup per build, for its process and memory limits.
//!
//! drv puts a build in a new cgroup below its own, for each controller it
//! needs (`pids`, `memory`):
//! - **cgroup v2** (the unified hierarchy, cgroups(7)) when the controller
//!   is available in drv's cgroup and enabled, or can be enabled, in its
//!   `cgroup.subtree_control`: true in the root cgroup or a subtree
//!   delegated to drv's user with no process in it. A cgroup holding
//!   processes cannot enable controllers for its children ("no internal
//!   processes"); drv does not move itself to make room, so it falls back.
//! - **cgroup v1**, the controller's own hierarchy (`/sys/fs/cgroup/pids`,
//!   `…/memory`), where creating a child needs only write access.
//!
//! Anything else (no write access, no controller) is an error, and the
//! caller falls back to rlimits (see [`super::limits`]). The build's
//! processes join by writing `0` (cgroups(7): "writing the value 0 … moves
//! the writing process") before the sandbox starts anything: to
//! `cgroup.procs` on v2, and to `tasks` on v1, which moves only the
//! writing thread — the whole process, as the joining process has one
//! thread — without the global lock that moving a whole thread group
//! takes (`cgroup_threadgroup_rwsem`, whose write side waits for an RCU
//! grace period: up to 15 ms a build on a busy machine). Dropping a
//! [`BuildCgroup`] removes it, first killing what is left in it
//! (`cgroup.kill`, or `SIGKILL` to each member on v1).
//!
//! Where drv's own cgroups are, and the removal of build cgroups that
//! dead drv processes left, are done once per process: they do not change
//! while it runs.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::limits::Limits;

/// A cgroup controller drv uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Controller {
    Pids,
    Memory,
}

impl Controller {
    fn name(self) -> &'static str {
        match self {
            Controller::Pids => "pids",
            Controller::Memory => "memory",
        }
    }
}

/// Why no cgroup could be made.
#[derive(Debug, thiserror::Error)]
pub(super) enum CgroupError {
    #[error("no cgroup hierarchy has the {controller} controller for drv's process")]
    NoController { controller: &'static str },
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |error| CgroupError::Io { path: path.to_owned(), error }
}

/// One directory of the build's cgroup and what it limits.
struct Group {
    path: PathBuf,
    v2: bool,
    controllers: Vec<Controller>,
}

/// A build's cgroup(s): one directory on v2, one per controller on v1.
pub(super) struct BuildCgroup {
    groups: Vec<Group>,
    limits: Limits,
}

/// Build cgroups made by this process so far, for unique names.
static CREATED: AtomicU64 = AtomicU64::new(0);

impl BuildCgroup {
    /// A cgroup holding `wanted` with `limits` set, or `None` if nothing
    /// is wanted.
    pub(super) fn create(limits: &Limits, wanted: &[Controller]) -> Result<Option<Self>, CgroupError> {
        if wanted.is_empty() {
            return Ok(None);
        }
        let name = format!("drv-build-{}-{}", std::process::id(), CREATED.fetch_add(1, Ordering::Relaxed));
        let mut build = BuildCgroup { groups: Vec::new(), limits: *limits };
        for &controller in wanted {
            if build.groups.iter().any(|g| g.controllers.contains(&controller)) {
                continue;
            }
            let (parent, v2) = located(controller)?;
            let path = parent.join(&name);
            match build.groups.iter_mut().find(|g| g.path == path) {
                Some(group) => group.controllers.push(controller),
                None => {
                    fs::create_dir(&path).map_err(io_error(&path))?;
                    build.groups.push(Group { path, v2, controllers: vec![controller] });
                }
            }
        }
        for group in &build.groups {
            for &controller in &group.controllers {
                set_limit(group, controller, limits)?;
            }
        }
        Ok(Some(build))
    }

    /// What this cgroup limits.
    pub(super) fn controllers(&self) -> Vec<Controller> {
        self.groups.iter().flat_map(|g| g.controllers.iter().copied()).collect()
    }

    /// The files a single-threaded process writes `0` to, to join: v2's
    /// `cgroup.procs`, v1's `tasks` (see the module documentation).
    pub(super) fn join_files(&self) -> Vec<CString> {
        self.groups
            .iter()
            .filter_map(|g| {
                let file = g.path.join(if g.v2 { "cgroup.procs" } else { "tasks" });
                CString::new(file.into_os_string().into_vec()).ok()
            })
            .collect()
    }

    /// The limit the build reached, if the kernel counted one: an
    /// out-of-memory kill (`oom_kill` in `memory.events`, or in v1's
    /// `memory.oom_control`), then a refused fork (`max` in `pids.events`).
    pub(super) fn hit(&self) -> Option<super::LimitHit> {
        for group in &self.groups {
            if group.controllers.contains(&Controller::Memory) {
                let file = if group.v2 { "memory.events" } else { "memory.oom_control" };
                if counter(&group.path.join(file), "oom_kill") > 0 {
                    return Some(super::LimitHit::Memory { max: self.limits.memory.unwrap_or_default() });
                }
            }
        }
        for group in &self.groups {
            if group.controllers.contains(&Controller::Pids) && counter(&group.path.join("pids.events"), "max") > 0 {
                return Some(super::LimitHit::Processes { max: self.limits.processes.unwrap_or_default() });
            }
        }
        None
    }
}

impl Drop for BuildCgroup {
    fn drop(&mut self) {
        for group in &self.groups {
            // Usually empty by now: a sandbox's processes are gone with
            // their PID namespace.
            if fs::remove_dir(&group.path).is_ok() {
                continue;
            }
            // Without a sandbox (`--no-sandbox`) this is what kills what
            // the builder left behind.
            let kill_file = group.path.join("cgroup.kill");
            if !(group.v2 && fs::write(&kill_file, "1").is_ok()) {
                kill_members(&group.path);
            }
            // Dying processes leave the cgroup a moment later: usually
            // within a fraction of a millisecond, so the waits start short
            // (a fixed 10 ms wait cost about 5 ms a build on average).
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut wait = Duration::from_micros(50);
            while fs::remove_dir(&group.path).is_err() && Instant::now() < deadline {
                kill_members(&group.path);
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(10));
            }
        }
    }
}

/// Where drv's cgroup for `controller` is and whether it is v2, found once
/// per process (see [`locate`]); on first finding a directory, the stale
/// build cgroups in it are removed.
fn located(controller: Controller) -> Result<(PathBuf, bool), CgroupError> {
    /// Per controller, in [`Controller`]'s order: found, or why not.
    static FOUND: OnceLock<Mutex<[Option<(PathBuf, bool)>; 2]>> = OnceLock::new();
    let slot = match controller {
        Controller::Pids => 0,
        Controller::Memory => 1,
    };
    let found = FOUND.get_or_init(|| Mutex::new([None, None]));
    let mut found = found.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = &found[slot] {
        return Ok(known.clone());
    }
    // Not cached when not found: then each build says why (and falls back
    // to rlimits), as the error may be passing.
    let mountinfo = read("/proc/self/mountinfo")?;
    let own = read("/proc/self/cgroup")?;
    let (parent, v2) = locate(&mountinfo, &own, controller)?;
    if !found.iter().flatten().any(|(p, _)| *p == parent) {
        remove_stale(&parent);
    }
    found[slot] = Some((parent.clone(), v2));
    Ok((parent, v2))
}

/// Remove the build cgroups of drv processes that are gone (killed before
/// they could remove them): empty by now, as their PID namespaces died with
/// them. A cgroup still in use cannot be removed, so this is harmless.
fn remove_stale(parent: &Path) {
    for entry in fs::read_dir(parent).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let owner = name.to_str().and_then(|n| n.strip_prefix("drv-build-")).and_then(|rest| rest.split_once('-'));
        if let Some((pid, _)) = owner {
            if !Path::new("/proc").join(pid).exists() {
                let _ = fs::remove_dir(entry.path());
            }
        }
    }
}

fn kill_members(dir: &Path) {
    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

fn read(path: &str) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(io_error(Path::new(path)))
}

/// The number after `key` in a flat-keyed file (`max 3`, `oom_kill 1`);
/// 0 if absent.
fn counter(file: &Path, key: &str) -> u64 {
    let text = fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

fn write_value(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(io_error(path))
}

fn set_limit(group: &Group, controller: Controller, limits: &Limits) -> Result<(), CgroupError> {
    let dir = &group.path;
    match (controller, group.v2) {
        (Controller::Pids, _) => {
            if let Some(n) = limits.processes {
                write_value(&dir.join("pids.max"), &n.to_string())?;
            }
        }
        (Controller::Memory, true) => {
            if let Some(n) = limits.memory {
                write_value(&dir.join("memory.max"), &n.to_string())?;
                // Swap would let a runaway build thrash the host instead of
                // failing; absent without swap accounting.
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    write_value(&swap, "0")?;
                }
            }
        }
        (Controller::Memory, false) => {
            if let Some(n) = limits.memory {
                write_value(&dir.join("memory.limit_in_bytes"), &n.to_string())?;
                // Memory plus swap, no more than memory alone; absent
                // without swap accounting. Set after the memory limit,
                // which it may not be below.
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write_value(&memsw, &n.to_string())?;
                }
            }
        }
    }
    Ok(())
}

/// One line of /proc/self/mountinfo (proc_pid_mountinfo(5)).
struct Mount<'a> {
    root: &'a str,
    mount_point: String,
    fstype: &'a str,
    super_options: &'a str,
}

fn parse_mount(line: &str) -> Option<Mount<'_>> {
    let (before, after) = line.split_once(" - ")?;
    let fields: Vec<&str> = before.split(' ').collect();
    let mut after = after.split(' ');
    Some(Mount {
        root: fields.get(3)?,
        mount_point: unescape(fields.get(4)?),
        fstype: after.next()?,
        super_options: after.nth(1).unwrap_or(""),
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// drv's own cgroup directory for `controller` and whether it is v2:
/// the v2 hierarchy if the controller is usable there, else its v1
/// hierarchy.
fn locate(mountinfo: &str, own: &str, controller: Controller) -> Result<(PathBuf, bool), CgroupError> {
    let name = controller.name();
    let mounts: Vec<Mount> = mountinfo.lines().filter_map(parse_mount).collect();
    // `ID:controllers:path`; v2 is `0::path`.
    let own_path = |v2: bool| {
        own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
            let matches = if v2 { list.is_empty() } else { list.split(',').any(|c| c == name) };
            matches.then_some(path)
        })
    };
    let dir = |mount: &Mount, path: &str| {
        // A mount of a subtree (a container's) shows paths below its root.
        let relative = Path::new(path).strip_prefix(mount.root).unwrap_or(Path::new(path));
        Path::new(&mount.mount_point).join(relative.strip_prefix("/").unwrap_or(relative))
    };

    if let (Some(mount), Some(path)) = (mounts.iter().find(|m| m.fstype == "cgroup2"), own_path(true)) {
        let base = dir(mount, path);
        let has = |file: &str| {
            fs::read_to_string(base.join(file)).map(|t| t.split_whitespace().any(|c| c == name)).unwrap_or(false)
        };
        if has("cgroup.controllers")
            && (has("cgroup.subtree_control") || fs::write(base.join("cgroup.subtree_control"), format!("+{name}")).is_ok())
        {
            return Ok((base, true));
        }
    }
    let v1 = mounts.iter().find(|m| m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == name));
    match (v1, own_path(false)) {
        (Some(mount), Some(path)) => Ok((dir(mount, path), false)),
        _ => Err(CgroupError::NoController { controller: name }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
25 30 0:23 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
26 25 0:24 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
27 25 0:25 /ctr /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
28 25 0:26 / /sys/fs/my\\040unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn v1_hierarchies_are_found_per_controller() {
        let own = "8:pids:/ctr/job\n4:memory:/a/b\n0::/\n";
        // The v2 directory here does not exist: its controllers are unusable.
        assert_eq!(
            locate(MOUNTINFO, own, Controller::Memory).unwrap(),
            (PathBuf::from("/sys/fs/cgroup/memory/a/b"), false)
        );
        assert_eq!(locate(MOUNTINFO, own, Controller::Pids).unwrap(), (PathBuf::from("/sys/fs/cgroup/pids/job"), false));
        assert!(matches!(
            locate(MOUNTINFO, "0::/\n", Controller::Pids),
            Err(CgroupError::NoController { controller: "pids" })
        ));
    }

    #[test]
    fn mountinfo_fields_are_unescaped() {
        let mount = parse_mount(MOUNTINFO.lines().nth(3).unwrap()).unwrap();
        assert_eq!(mount.mount_point, "/sys/fs/my unified");
        assert_eq!((mount.root, mount.fstype), ("/", "cgroup2"));
    }

    #[test]
    fn counters_are_read_by_key() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("memory.events");
        fs::write(&f, "low 0\nhigh 0\nmax 12\noom 1\noom_kill 2\n").unwrap();
        assert_eq!(counter(&f, "oom_kill"), 2);
        assert_eq!(counter(&f, "max"), 12);
        assert_eq!(counter(&f, "absent"), 0);
        assert_eq!(counter(&t.path().join("missing"), "max"), 0);
    }
}
