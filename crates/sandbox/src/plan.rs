//! The sandbox's file system and process image, computed on the host before
//! forking.
//!
//! Everything the forked children need — every path as a `CString`, file
//! contents, the uid/gid maps, argv and envp — is prepared here, so that the
//! code after `fork` only makes system calls (see `child.rs` for why).

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use super::{BuildDirFs, Conditions, SandboxError, SandboxSpec, BUILD_GID, BUILD_UID};

/// Where the intermediate root keeps the host's root after the first
/// `pivot_root`; every bind source is read through it.
const OLD_ROOT: &str = "/oldroot";
/// Where the build's root is assembled before the second `pivot_root`.
const NEW_ROOT: &str = "/newroot";

/// Device nodes bind-mounted from the host's `/dev`.
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// The symlinks of a minimal `/dev`: (link, target).
pub const DEVICE_LINKS: [(&str, &str); 4] = [
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];

/// Host files that a build with network access (a fixed-output fetch) needs
/// to resolve names and check certificates.
const NETWORK_ETC_FILES: [&str; 3] = ["resolv.conf", "hosts", "services"];

/// One thing to create in a new root, applied by the sandbox's child (and [`super::enter_root`]) in
/// a forked child (after `fork`, before `exec`). The build sandbox's
/// targets are absolute paths under [`NEW_ROOT`], its bind sources under
/// [`OLD_ROOT`]; other users (`drv run`'s mount namespaces) use host paths.
#[derive(Clone, Debug)]
pub enum Step {
    /// `mkdir`; an existing directory is fine (store dirs share ancestors).
    Dir { path: CString, mode: u32 },
    /// An empty file to bind a file over.
    File { path: CString },
    Symlink { target: CString, link: CString },
    Tmpfs { target: CString, options: CString },
    /// A recursive bind mount; read-only unless `writable`.
    Bind { source: CString, target: CString, writable: bool },
    /// A new procfs for the build's PID namespace.
    Proc { target: CString },
    /// A new file with these contents (`/etc/passwd`, `/etc/group`).
    Write { path: CString, contents: Vec<u8> },
}

impl Step {
    /// For error messages: what the step was doing, in host terms.
    pub(super) fn describe(&self) -> String {
        let show = |c: &CString| c.to_string_lossy().into_owned();
        let inside = |c: &CString| show(c).strip_prefix(NEW_ROOT).unwrap_or_default().to_owned();
        // A source is a host path, or a path inside a read-only input.
        let host = |c: &CString| show(c).strip_prefix(OLD_ROOT).map_or_else(|| inside(c), str::to_owned);
        match self {
            Step::Dir { path, .. } => format!("create directory {}", inside(path)),
            Step::File { path } => format!("create mount point {}", inside(path)),
            Step::Symlink { target, link } => format!("create symlink {} -> {}", inside(link), show(target)),
            Step::Tmpfs { target, .. } => format!("mount tmpfs on {}", inside(target)),
            Step::Bind { source, target, writable } => format!(
                "bind-mount {} on {} ({})",
                host(source),
                inside(target),
                if *writable { "read-write" } else { "read-only" }
            ),
            Step::Proc { target } => format!("mount proc on {}", inside(target)),
            Step::Write { path, .. } => format!("write {}", inside(path)),
        }
    }
}

/// Everything the children need, prepared before forking.
pub(super) struct Plan {
    /// The intermediate tmpfs is mounted over this host directory (the
    /// canonical build directory: it exists, and after the first
    /// `pivot_root` its real contents are visible again under
    /// [`OLD_ROOT`]).
    pub base: CString,
    /// `base` + [`OLD_ROOT`].
    pub base_old_root: CString,
    pub new_root: CString,
    pub steps: Vec<Step>,
    pub setgroups: &'static [u8],
    pub uid_map: Vec<u8>,
    pub gid_map: Vec<u8>,
    /// `false`: the build gets its own network namespace with only `lo`.
    pub network: bool,
    /// The builder's working directory, inside.
    pub build_dir: CString,
    pub hostname: CString,
    pub domainname: CString,
    pub umask: u32,
    /// Set on the builder before `execve`, when it is to see fewer CPUs.
    pub affinity: Option<nix::sched::CpuSet>,
    pub builder: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// Checked for free space when the builder exits, if set.
    pub tmp_size: Option<u64>,
    /// The files of the build's cgroups that the outer child writes `0`
    /// to, to join them before it starts anything.
    pub cgroup_join: Vec<CString>,
    /// Set on the builder before `execve`.
    pub rlimits: Vec<(nix::sys::resource::Resource, u64)>,
}

pub(super) fn cstring(bytes: impl Into<Vec<u8>>, what: &str) -> Result<CString, SandboxError> {
    let bytes = bytes.into();
    CString::new(bytes).map_err(|e| SandboxError::InvalidSpec {
        value: String::from_utf8_lossy(&e.into_vec()).into_owned(),
        reason: format!("{what} contains a NUL byte"),
    })
}

fn path_cstring(prefix: &str, path: &Path) -> Result<CString, SandboxError> {
    let mut bytes = prefix.as_bytes().to_vec();
    bytes.extend_from_slice(path.as_os_str().as_bytes());
    cstring(bytes, "a path")
}

/// `path` inside the new root.
fn inside(path: impl AsRef<Path>) -> Result<CString, SandboxError> {
    path_cstring(NEW_ROOT, path.as_ref())
}

/// Where bind mounts come from: host paths, canonicalised on the host
/// (after the first `pivot_root` an absolute symlink would resolve against
/// the wrong root), or the same files inside a tree already bound
/// read-only in the new root.
#[derive(Default)]
struct Sources {
    /// Canonical paths of the directories seen so far: most sources are
    /// entries of a few directories (the store, the toolchain, its `etc`,
    /// `/dev`), and `canonicalize` reads every component of a path.
    dirs: HashMap<PathBuf, PathBuf>,
    /// Canonical host directories bound read-only so far, and where they
    /// are inside.
    read_only: Vec<(PathBuf, PathBuf)>,
}

impl Sources {
    /// `path` without symlinks: its directory's canonical path (computed
    /// once) and its name, unless it is itself a symlink.
    fn canonical(&mut self, path: &Path) -> Result<PathBuf, SandboxError> {
        let io = |e| SandboxError::io(path, e);
        if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
            if !fs::symlink_metadata(path).map_err(io)?.file_type().is_symlink() {
                let dir = match self.dirs.get(dir) {
                    Some(known) => known.clone(),
                    None => {
                        let found = fs::canonicalize(dir).map_err(|e| SandboxError::io(dir, e))?;
                        self.dirs.insert(dir.to_owned(), found.clone());
                        found
                    }
                };
                return Ok(dir.join(name));
            }
        }
        fs::canonicalize(path).map_err(io)
    }

    /// The host's `path` as a bind source: inside a read-only tree bound
    /// earlier if it is in one (its bind is then read-only at once, and
    /// [`super::remount_read_only`] has nothing to do), else through the
    /// host's root.
    fn host(&mut self, path: &Path) -> Result<CString, SandboxError> {
        let canonical = self.canonical(path)?;
        for (tree, at) in &self.read_only {
            if let Ok(rest) = canonical.strip_prefix(tree) {
                return inside(at.join(rest));
            }
        }
        path_cstring(OLD_ROOT, &canonical)
    }

    /// Record that the host tree `path` is bound read-only at `inside`.
    fn bound_read_only(&mut self, path: &Path, inside: &Path) -> Result<(), SandboxError> {
        let canonical = self.canonical(path)?;
        self.read_only.push((canonical, inside.to_owned()));
        Ok(())
    }
}

/// Directories to create for `path` and each of its ancestors below `/`.
fn dirs_for(steps: &mut Vec<Step>, path: &Path) -> Result<(), SandboxError> {
    let mut at = PathBuf::from("/");
    for component in path.components() {
        if let Component::Normal(name) = component {
            at.push(name);
            steps.push(Step::Dir { path: inside(&at)?, mode: 0o755 });
        }
    }
    Ok(())
}

/// Mount `source` (a host path) at `target` (a path inside), creating the
/// right kind of mount point; read-only unless `writable`.
fn bind(steps: &mut Vec<Step>, sources: &mut Sources, source: &Path, target: &Path, writable: bool) -> Result<(), SandboxError> {
    let meta = fs::metadata(source).map_err(|e| SandboxError::io(source, e))?;
    let target_c = inside(target)?;
    if meta.is_dir() {
        steps.push(Step::Dir { path: target_c.clone(), mode: 0o755 });
    } else {
        steps.push(Step::File { path: target_c.clone() });
    }
    steps.push(Step::Bind { source: sources.host(source)?, target: target_c, writable });
    Ok(())
}

/// Mirror one entry of a toolchain tree at `target`: its symlinks as
/// symlinks (so `bin -> usr/bin` stays a link), directories and files as
/// read-only binds; sockets and the like are skipped.
fn mirror(steps: &mut Vec<Step>, sources: &mut Sources, source: &Path, target: &Path) -> Result<(), SandboxError> {
    let meta = fs::symlink_metadata(source).map_err(|e| SandboxError::io(source, e))?;
    if meta.file_type().is_symlink() {
        let link_target = fs::read_link(source).map_err(|e| SandboxError::io(source, e))?;
        steps.push(Step::Symlink {
            target: cstring(link_target.into_os_string().into_vec(), "a symlink target")?,
            link: inside(target)?,
        });
    } else if meta.is_dir() || meta.is_file() {
        bind(steps, sources, source, target, false)?;
    }
    Ok(())
}

fn sorted_entries(dir: &Path) -> Result<Vec<OsString>, SandboxError> {
    let mut names = fs::read_dir(dir)
        .and_then(|entries| entries.map(|e| e.map(|e| e.file_name())).collect::<Result<Vec<_>, _>>())
        .map_err(|e| SandboxError::io(dir, e))?;
    names.sort();
    Ok(names)
}

fn passwd(c: &Conditions) -> Vec<u8> {
    format!(
        "{user}:x:{uid}:{gid}:drv build user:{dir}:/noshell\n\
         nobody:x:65534:65534:Nobody:/:/noshell\n",
        user = c.user,
        uid = c.uid,
        gid = c.gid,
        dir = c.build_dir.display()
    )
    .into_bytes()
}

fn group(c: &Conditions) -> Vec<u8> {
    format!("{}:!:{}:\nnogroup:x:65534:\n", c.user, c.gid).into_bytes()
}

/// The first `n` of the CPUs this process may run on: the builder's
/// affinity when [`Conditions::cpus`] asks for fewer than all.
fn first_cpus(n: usize) -> Result<Option<nix::sched::CpuSet>, SandboxError> {
    use nix::sched::{sched_getaffinity, CpuSet};
    let current = sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map_err(|e| SandboxError::Spawn { what: "read the CPU affinity", error: e.into() })?;
    let mut chosen = CpuSet::new();
    let mut count = 0;
    for cpu in 0..CpuSet::count() {
        if count == n {
            break;
        }
        if current.is_set(cpu).unwrap_or(false) {
            chosen.set(cpu).map_err(|e| SandboxError::Spawn { what: "choose the build's CPUs", error: e.into() })?;
            count += 1;
        }
    }
    Ok(Some(chosen))
}

impl Plan {
    /// Lay out the build's root for a validated `spec`.
    pub(super) fn new(spec: &SandboxSpec) -> Result<Self, SandboxError> {
        let mut steps = Vec::new();
        let mut sources = Sources::default();
        let store_dir = spec.store_dir.as_path();

        // The store: the writable scratch directory, with each input bound
        // read-only over the placeholder `run` created for it.
        dirs_for(&mut steps, store_dir)?;
        steps.push(Step::Bind { source: sources.host(&spec.scratch_store)?, target: inside(store_dir)?, writable: true });
        for input in &spec.inputs {
            if fs::symlink_metadata(&input.physical).map(|m| m.file_type().is_symlink()).unwrap_or(false) {
                continue; // copied as a symlink into the scratch store
            }
            // The mount point is the placeholder `run` made in the scratch
            // store, of the input's kind (directory or file).
            steps.push(Step::Bind { source: sources.host(&input.physical)?, target: inside(&input.logical)?, writable: false });
            // The toolchain is usually one of them: its entries are bound
            // from here below.
            sources.bound_read_only(&input.physical, &input.logical)?;
        }

        let conditions = &spec.conditions;
        dirs_for(&mut steps, &conditions.build_dir)?;
        match conditions.build_dir_fs {
            // No size of its own: the build's memory limit bounds it (tmpfs
            // pages are charged to the cgroup that writes them).
            BuildDirFs::Tmpfs => steps.push(Step::Tmpfs {
                target: inside(&conditions.build_dir)?,
                options: cstring("mode=0700", "options")?,
            }),
            BuildDirFs::Host => steps.push(Step::Bind {
                source: sources.host(&spec.build_dir)?,
                target: inside(&conditions.build_dir)?,
                writable: true,
            }),
        }
        // tmpfs(5): without `size=` a tmpfs may grow to half the host's
        // memory; `size=0` would mean no limit at all.
        let tmp_options = match spec.limits.tmp_size {
            Some(size) => format!("mode=1777,size={}", size.max(1)),
            None => "mode=1777".to_owned(),
        };
        steps.push(Step::Dir { path: inside("/tmp")?, mode: 0o1777 });
        steps.push(Step::Tmpfs { target: inside("/tmp")?, options: cstring(tmp_options.as_str(), "options")? });

        steps.push(Step::Dir { path: inside("/dev")?, mode: 0o755 });
        for device in DEVICES {
            let host_dev = Path::new("/dev").join(device);
            if fs::metadata(&host_dev).is_err() {
                continue; // e.g. no /dev/tty in some containers
            }
            steps.push(Step::File { path: inside(&host_dev)? });
            // Writable: a read-only mount would not stop writes to a device
            // anyway, but keeps the mount flags honest.
            steps.push(Step::Bind { source: sources.host(&host_dev)?, target: inside(&host_dev)?, writable: true });
        }
        steps.push(Step::Dir { path: inside("/dev/shm")?, mode: 0o1777 });
        steps.push(Step::Tmpfs { target: inside("/dev/shm")?, options: cstring(tmp_options, "options")? });
        for (link, target) in DEVICE_LINKS {
            steps.push(Step::Symlink { target: cstring(target, "a symlink target")?, link: inside(link)? });
        }

        steps.push(Step::Dir { path: inside("/proc")?, mode: 0o555 });
        steps.push(Step::Proc { target: inside("/proc")? });

        // /etc: the toolchain's entries one level deep, then drv's own
        // files, which take precedence.
        steps.push(Step::Dir { path: inside("/etc")?, mode: 0o755 });
        let mut own_etc: Vec<&str> = vec!["passwd", "group"];
        if spec.network {
            own_etc.extend(NETWORK_ETC_FILES);
            own_etc.push("ssl");
        } else {
            own_etc.push("hosts");
        }
        if let Some(toolchain) = &spec.toolchain {
            let etc = toolchain.join("etc");
            if etc.is_dir() {
                for name in sorted_entries(&etc)? {
                    if own_etc.iter().any(|own| OsStr::new(own) == name) {
                        continue;
                    }
                    mirror(&mut steps, &mut sources, &etc.join(&name), &Path::new("/etc").join(&name))?;
                }
            }
        }
        steps.push(Step::Write { path: inside("/etc/passwd")?, contents: passwd(conditions) });
        steps.push(Step::Write { path: inside("/etc/group")?, contents: group(conditions) });
        if spec.network {
            for name in NETWORK_ETC_FILES {
                let file = Path::new("/etc").join(name);
                if fs::metadata(&file).map(|m| m.is_file()).unwrap_or(false) {
                    bind(&mut steps, &mut sources, &file, &file, false)?;
                }
            }
            let certs = Path::new("/etc/ssl/certs");
            if certs.is_dir() {
                steps.push(Step::Dir { path: inside("/etc/ssl")?, mode: 0o755 });
                bind(&mut steps, &mut sources, certs, certs, false)?;
            }
        } else {
            steps.push(Step::Write {
                path: inside("/etc/hosts")?,
                contents: b"127.0.0.1 localhost\n::1 localhost\n".to_vec(),
            });
        }

        // The toolchain's other top-level entries at `/`, except those the
        // sandbox itself provides.
        if let Some(toolchain) = &spec.toolchain {
            let store_top = store_dir.components().find_map(|c| match c {
                Component::Normal(name) => Some(name.to_owned()),
                _ => None,
            });
            for name in sorted_entries(toolchain)? {
                let build_top = conditions.build_dir.components().nth(1).map(|c| c.as_os_str().to_owned());
                let reserved = ["build", "tmp", "dev", "proc", "etc", "homeless-shelter"]
                    .iter()
                    .any(|r| OsStr::new(r) == name)
                    || store_top.as_deref() == Some(name.as_os_str())
                    || build_top.as_deref() == Some(name.as_os_str());
                if !reserved {
                    mirror(&mut steps, &mut sources, &toolchain.join(&name), &Path::new("/").join(&name))?;
                }
            }
        }

        let base = fs::canonicalize(&spec.build_dir).map_err(|e| SandboxError::io(&spec.build_dir, e))?;
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let mut argv = vec![cstring(spec.builder.as_os_str().as_bytes(), "the builder path")?];
        for arg in &spec.args {
            argv.push(cstring(arg.as_bytes(), "an argument")?);
        }
        let envp = spec
            .env
            .iter()
            .map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                cstring(kv, "an environment variable")
            })
            .collect::<Result<_, _>>()?;
        Ok(Plan {
            base_old_root: path_cstring("", &base.join(OLD_ROOT.trim_start_matches('/')))?,
            base: path_cstring("", &base)?,
            new_root: cstring(NEW_ROOT, "a path")?,
            steps,
            setgroups: b"deny",
            uid_map: format!("{} {uid} 1\n", conditions.uid).into_bytes(),
            gid_map: format!("{} {gid} 1\n", conditions.gid).into_bytes(),
            network: spec.network,
            build_dir: path_cstring("", &conditions.build_dir)?,
            hostname: cstring(conditions.hostname.as_str(), "the host name")?,
            domainname: cstring(conditions.domainname.as_str(), "the domain name")?,
            umask: conditions.umask,
            affinity: conditions.cpus.map(first_cpus).transpose()?.flatten(),
            builder: cstring(spec.builder.as_os_str().as_bytes(), "the builder path")?,
            argv,
            envp,
            tmp_size: spec.limits.tmp_size,
            cgroup_join: Vec::new(),
            rlimits: Vec::new(),
        })
    }

    /// Only the identity maps: for [`super::check_namespaces`].
    pub(super) fn probe() -> Self {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let empty = CString::default();
        Plan {
            base: empty.clone(),
            base_old_root: empty.clone(),
            new_root: empty.clone(),
            steps: Vec::new(),
            setgroups: b"deny",
            uid_map: format!("{BUILD_UID} {uid} 1\n").into_bytes(),
            gid_map: format!("{BUILD_GID} {gid} 1\n").into_bytes(),
            network: false,
            build_dir: empty.clone(),
            hostname: empty.clone(),
            domainname: empty.clone(),
            umask: 0o022,
            affinity: None,
            builder: empty,
            argv: Vec::new(),
            envp: Vec::new(),
            tmp_size: None,
            cgroup_join: Vec::new(),
            rlimits: Vec::new(),
        }
    }
}
