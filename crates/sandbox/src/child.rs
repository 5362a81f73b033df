//! The code that runs after `fork`: three processes per build.
//!
//! - the **outer child**, forked from `run`'s thread: unshares the user,
//!   mount, PID, network, UTS and IPC namespaces, writes its own uid/gid
//!   maps (mapping only itself, so no privilege is needed), forks the init
//!   and waits for it. It stays outside the new PID namespace.
//! - the **init**, PID 1 of the new PID namespace: builds the root file
//!   system, names the host, brings `lo` up, `pivot_root`s, forks the
//!   builder, reaps every process re-parented to it, and reports the
//!   builder's wait status as soon as the builder exits. Its exit tears the
//!   PID namespace down, killing whatever the builder left running.
//! - the **builder**: connects stdio, `chdir`s to `/build`, `execve`s.
//!
//! Both children set `PR_SET_PDEATHSIG(SIGKILL)`: if `run`'s process dies,
//! the outer child dies, then the init, then the whole namespace.
//!
//! Failures travel to `run` over a close-on-exec pipe as fixed-size records
//! (`kind`, `stage`, `value`): a failed mount becomes a readable error, not
//! an anonymous exit code.
//!
//! Fork safety: `run` may be called from a multi-threaded program, where
//! only async-signal-safe calls are sound between `fork` and `exec`. All
//! paths, file contents and argv/envp are prepared before forking (see
//! `plan.rs`), and what runs here is system calls through `nix` with
//! stack-built C strings (nix builds short paths on the stack). The
//! compromise: nix's error and path helpers may allocate for paths longer
//! than its stack buffer; glibc resets its allocator locks in a forked
//! child, so this is safe there in practice.

use std::ffi::{c_char, c_short, CStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag, AT_FDCWD};
use nix::libc;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::prctl;
use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use nix::sys::stat::{umask, Mode};
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{self, ForkResult, Pid};

use super::plan::{Plan, Step};

/// Size of one report record: `kind`, `stage`, `value`, native-endian u32s.
pub(super) const REPORT_LEN: usize = 12;
/// `value` is an errno.
pub(super) const KIND_FAILED: u32 = 1;
/// `value` is the builder's raw wait status.
pub(super) const KIND_STATUS: u32 = 2;
/// `stage` is the index in [`TMP_MOUNTS`] of a tmpfs that was full when
/// the builder exited.
pub(super) const KIND_TMP_FULL: u32 = 3;
/// The size-limited tmpfs mounts, as the builder sees them.
pub(super) const TMP_MOUNTS: [&str; 2] = ["/tmp", "/dev/shm"];
/// Stages at or above this are `plan.steps[stage - PLAN_STAGE_BASE]`.
pub(super) const PLAN_STAGE_BASE: u32 = 1000;

/// Where a child failed; sent as `stage`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(super) enum Stage {
    ParentDeathSignal = 1,
    Unshare,
    SetGroups,
    UidMap,
    GidMap,
    Descriptors,
    ForkInit,
    MakePrivate,
    IntermediateRoot,
    PivotIntermediate,
    NewRoot,
    Hostname,
    Loopback,
    PivotFinal,
    ReadOnlyRoot,
    NoNewPrivs,
    ForkBuilder,
    BuilderStdio,
    BuilderCwd,
    Exec,
    Reap,
    JoinCgroup,
    Rlimits,
    Affinity,
}

impl Stage {
    pub(super) const ALL: [Stage; 24] = [
        Stage::ParentDeathSignal,
        Stage::Unshare,
        Stage::SetGroups,
        Stage::UidMap,
        Stage::GidMap,
        Stage::Descriptors,
        Stage::ForkInit,
        Stage::MakePrivate,
        Stage::IntermediateRoot,
        Stage::PivotIntermediate,
        Stage::NewRoot,
        Stage::Hostname,
        Stage::Loopback,
        Stage::PivotFinal,
        Stage::ReadOnlyRoot,
        Stage::NoNewPrivs,
        Stage::ForkBuilder,
        Stage::BuilderStdio,
        Stage::BuilderCwd,
        Stage::Exec,
        Stage::Reap,
        Stage::JoinCgroup,
        Stage::Rlimits,
        Stage::Affinity,
    ];

    pub(super) fn from_u32(n: u32) -> Option<Stage> {
        Stage::ALL.iter().copied().find(|s| *s as u32 == n)
    }

    pub(super) fn describe(self) -> &'static str {
        match self {
            Stage::ParentDeathSignal => "set the parent-death signal",
            Stage::Unshare => "unshare the user, mount, PID, network, UTS and IPC namespaces",
            Stage::SetGroups => "write /proc/self/setgroups",
            Stage::UidMap => "write /proc/self/uid_map",
            Stage::GidMap => "write /proc/self/gid_map",
            Stage::Descriptors => "set up the sandbox's file descriptors",
            Stage::ForkInit => "fork the sandbox init",
            Stage::MakePrivate => "make the mount tree private",
            Stage::IntermediateRoot => "mount the intermediate root",
            Stage::PivotIntermediate => "pivot_root into the intermediate root",
            Stage::NewRoot => "mount the build's root tmpfs",
            Stage::Hostname => "set the host and domain names",
            Stage::Loopback => "bring up the loopback interface",
            Stage::PivotFinal => "pivot_root into the build's root",
            Stage::ReadOnlyRoot => "make the build's root read-only",
            Stage::NoNewPrivs => "set no_new_privs",
            Stage::ForkBuilder => "fork the builder",
            Stage::BuilderStdio => "connect the builder's stdin, stdout and stderr",
            Stage::BuilderCwd => "change to the build directory",
            Stage::Exec => "execute the builder",
            Stage::Reap => "wait for the builder",
            Stage::JoinCgroup => "join the build's cgroup",
            Stage::Rlimits => "set the builder's resource limits",
            Stage::Affinity => "set the builder's CPU affinity",
        }
    }
}

/// `_exit`: no atexit handlers or stdio flushing of the parent's state.
fn exit(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

fn send(report: RawFd, kind: u32, stage: u32, value: i32) {
    let mut record = [0u8; REPORT_LEN];
    record[0..4].copy_from_slice(&kind.to_ne_bytes());
    record[4..8].copy_from_slice(&stage.to_ne_bytes());
    record[8..12].copy_from_slice(&value.to_ne_bytes());
    // SAFETY: the report pipe stays open in this process until it exits.
    let fd = unsafe { BorrowedFd::borrow_raw(report) };
    // Records are smaller than PIPE_BUF, so a write is atomic and whole.
    while let Err(Errno::EINTR) = unistd::write(fd, &record) {}
}

fn fail(report: RawFd, stage: u32, errno: Errno) -> ! {
    send(report, KIND_FAILED, stage, errno as i32);
    exit(1)
}

/// Unwrap a step's result or report it and exit.
fn check<T>(result: nix::Result<T>, report: RawFd, stage: Stage) -> T {
    match result {
        Ok(value) => value,
        Err(errno) => fail(report, stage as u32, errno),
    }
}

fn rustix_errno(result: rustix::io::Result<()>) -> nix::Result<()> {
    result.map_err(|e| Errno::from_raw(e.raw_os_error()))
}

fn write_all(fd: impl AsFd, mut bytes: &[u8]) -> nix::Result<()> {
    while !bytes.is_empty() {
        match unistd::write(fd.as_fd(), bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_file(path: &CStr, contents: &[u8], create: bool) -> nix::Result<()> {
    let flags = if create {
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC
    } else {
        OFlag::O_WRONLY | OFlag::O_CLOEXEC
    };
    let fd = open(path, flags, Mode::from_bits_truncate(0o644))?;
    write_all(&fd, contents)
}

/// Close a descriptor inherited from `run`'s process, which this process
/// will never use again.
fn close_inherited(fd: RawFd) {
    // SAFETY: this process owns its copy of the descriptor, and `run`'s
    // `OwnedFd` for it is never dropped here (the process `_exit`s).
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
}

/// Move the calling process into the cgroup whose `cgroup.procs` is
/// `procs` (cgroups(7): writing 0 names the writer).
pub(super) fn join_cgroup(procs: &CStr) -> nix::Result<()> {
    let fd = open(procs, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())?;
    write_all(&fd, b"0")
}

/// The outer child: enter the namespaces and fork the init. With `log`
/// `None` it only checks that the namespaces can be made
/// ([`super::check_namespaces`]).
pub(super) fn outer(plan: &Plan, parent: Pid, report: RawFd, log: Option<RawFd>) -> ! {
    check(prctl::set_pdeathsig(Signal::SIGKILL), report, Stage::ParentDeathSignal);
    // `run`'s thread may have died between fork and prctl.
    if unistd::getppid() != parent {
        exit(1);
    }
    let (report, log) = check(isolate_descriptors(report, log), report, Stage::Descriptors);
    // Before anything is forked, so that every process of the build is in
    // it; and from the host's user namespace, which owns the cgroup files.
    for procs in &plan.cgroup_procs {
        check(join_cgroup(procs), report, Stage::JoinCgroup);
    }
    let mut flags = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    if !plan.network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    check(unshare(flags), report, Stage::Unshare);
    // Mapping only our own ids needs no privilege, but the gid map is only
    // accepted once setgroups is denied.
    check(write_file(c"/proc/self/setgroups", plan.setgroups, false), report, Stage::SetGroups);
    check(write_file(c"/proc/self/uid_map", &plan.uid_map, false), report, Stage::UidMap);
    check(write_file(c"/proc/self/gid_map", &plan.gid_map, false), report, Stage::GidMap);
    let Some(log) = log else { exit(0) };

    // SAFETY: this process is single-threaded (a fork's child).
    match check(unsafe { unistd::fork() }, report, Stage::ForkInit) {
        ForkResult::Child => init(plan, report, log),
        ForkResult::Parent { child } => {
            close_inherited(log);
            close_inherited(report);
            while let Err(Errno::EINTR) = waitpid(child, None) {}
            exit(0)
        }
    }
}

/// Keep only the descriptors the sandbox needs: `report` and `log` moved
/// to fresh close-on-exec descriptors (returned), `/dev/null` as 0, 1 and
/// 2, nothing else. This process and the init never `exec`, so they would
/// otherwise hold, for the whole build, whatever `run`'s process had open
/// at the fork: another build's log pipe (which would then never reach
/// end-of-file), a file another thread is writing (`ETXTBSY` when it is
/// executed), the caller's terminal.
fn isolate_descriptors(report: RawFd, log: Option<RawFd>) -> nix::Result<(RawFd, Option<RawFd>)> {
    // SAFETY: both are open in this process (inherited from `run`).
    let fresh = |fd: RawFd| fcntl(unsafe { BorrowedFd::borrow_raw(fd) }, FcntlArg::F_DUPFD_CLOEXEC(10));
    let new_report = fresh(report)?;
    let new_log = log.map(fresh).transpose()?;
    let null = open(c"/dev/null", OFlag::O_RDWR, Mode::empty())?;
    unistd::dup2_stdin(&null)?;
    unistd::dup2_stdout(&null)?;
    unistd::dup2_stderr(&null)?;
    // If it is above 2, the sweep below closes it; if not, it is now stdio.
    let _ = null.into_raw_fd();
    let mut keep = [new_report, new_log.unwrap_or(new_report)];
    keep.sort_unstable();
    close_between(3, keep[0] - 1);
    close_between(keep[0] + 1, keep[1] - 1);
    close_between(keep[1] + 1, RawFd::MAX);
    Ok((new_report, new_log))
}

/// Close every descriptor in `first..=last`.
fn close_between(first: RawFd, last: RawFd) {
    if first > last {
        return;
    }
    // Neither nix nor rustix wraps close_range(2); glibc does (2.34+).
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: closing descriptors this process will not use again.
        if unsafe { libc::close_range(first as libc::c_uint, last as libc::c_uint, 0) } == 0 {
            return;
        }
    }
    // Kernels before 5.9, other C libraries: the low descriptors at least.
    for fd in first..=last.min(4096) {
        let _ = unistd::close(fd);
    }
}

/// PID 1 of the build's PID namespace.
fn init(plan: &Plan, report: RawFd, log: RawFd) -> ! {
    check(prctl::set_pdeathsig(Signal::SIGKILL), report, Stage::ParentDeathSignal);
    // Modes below are exact; the builder gets the usual 022 again.
    umask(Mode::empty());

    // Nothing done here may propagate to the host's mount tree.
    let no_str: Option<&CStr> = None;
    check(
        mount(no_str, c"/", no_str, MsFlags::MS_REC | MsFlags::MS_PRIVATE, no_str),
        report,
        Stage::MakePrivate,
    );
    // A tmpfs over the build directory becomes an intermediate root, with the
    // host's root under /oldroot: every bind source is then read from
    // there, even ones the tmpfs would otherwise hide. It and the build's
    // root hold only mount points and the few /etc files: sized for that,
    // as every tmpfs of the sandbox has a size.
    check(
        mount(Some(c"tmpfs"), plan.base.as_c_str(), Some(c"tmpfs"), MsFlags::empty(), Some(c"mode=0700,size=1m")),
        report,
        Stage::IntermediateRoot,
    );
    check(unistd::mkdir(plan.base_old_root.as_c_str(), Mode::from_bits_truncate(0o700)), report, Stage::IntermediateRoot);
    check(unistd::pivot_root(plan.base.as_c_str(), plan.base_old_root.as_c_str()), report, Stage::PivotIntermediate);
    check(unistd::chdir(c"/"), report, Stage::PivotIntermediate);
    check(unistd::mkdir(plan.new_root.as_c_str(), Mode::from_bits_truncate(0o755)), report, Stage::NewRoot);
    check(
        mount(Some(c"tmpfs"), plan.new_root.as_c_str(), Some(c"tmpfs"), MsFlags::MS_NOSUID, Some(c"mode=0755,size=8m")),
        report,
        Stage::NewRoot,
    );

    // procfs is mounted among these steps, while the host's /proc is still
    // visible under /oldroot: the kernel refuses a new procfs in a user
    // namespace that cannot see a full one.
    for (i, step) in plan.steps.iter().enumerate() {
        if let Err(errno) = run_step(step) {
            fail(report, PLAN_STAGE_BASE + i as u32, errno);
        }
    }

    check(rustix_errno(rustix::system::sethostname(plan.hostname.to_bytes())), report, Stage::Hostname);
    check(rustix_errno(rustix::system::setdomainname(plan.domainname.to_bytes())), report, Stage::Hostname);
    if !plan.network {
        check(loopback_up(), report, Stage::Loopback);
    }

    // pivot_root(".", ".") stacks the intermediate root over the new one;
    // detaching it drops the host's tree from this namespace.
    check(unistd::chdir(plan.new_root.as_c_str()), report, Stage::PivotFinal);
    check(unistd::pivot_root(c".", c"."), report, Stage::PivotFinal);
    check(umount2(c".", MntFlags::MNT_DETACH), report, Stage::PivotFinal);
    check(unistd::chdir(c"/"), report, Stage::PivotFinal);
    check(remount_read_only(c"/"), report, Stage::ReadOnlyRoot);
    check(prctl::set_no_new_privs(), report, Stage::NoNewPrivs);

    // SAFETY: single-threaded.
    let builder_pid = match check(unsafe { unistd::fork() }, report, Stage::ForkBuilder) {
        ForkResult::Child => builder(plan, report, log),
        ForkResult::Parent { child } => child,
    };
    close_inherited(log);
    // Reap everything (orphaned daemons are re-parented here) until the
    // builder itself exits; then exit at once, which kills the rest.
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == builder_pid => {
                report_full_tmp(plan, report);
                send(report, KIND_STATUS, 0, (code & 0xff) << 8);
                exit(0);
            }
            Ok(WaitStatus::Signaled(pid, sig, core)) if pid == builder_pid => {
                report_full_tmp(plan, report);
                send(report, KIND_STATUS, 0, sig as i32 | if core { 0x80 } else { 0 });
                exit(0);
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => fail(report, Stage::Reap as u32, errno),
        }
    }
}

/// A size-limited tmpfs with no block left is why a failing build failed,
/// most likely; only this namespace can still look at it.
fn report_full_tmp(plan: &Plan, report: RawFd) {
    if plan.tmp_size.is_none() {
        return;
    }
    // The same order as `TMP_MOUNTS`.
    for (i, mount) in [c"/tmp", c"/dev/shm"].iter().enumerate() {
        if statvfs(*mount).is_ok_and(|s| s.blocks_available() == 0) {
            send(report, KIND_TMP_FULL, i as u32, 0);
        }
    }
}

/// The builder process, just before `execve`.
fn builder(plan: &Plan, report: RawFd, log: RawFd) -> ! {
    // Undo state inherited from the drv process: Rust's runtime ignores
    // SIGPIPE (an ignored signal stays ignored across exec), and the
    // calling thread may have signals blocked.
    // SAFETY: restoring the default disposition installs no handler.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    umask(Mode::from_bits_truncate(plan.umask));
    if let Some(cpus) = &plan.affinity {
        check(nix::sched::sched_setaffinity(Pid::from_raw(0), cpus), report, Stage::Affinity);
    }
    // No controlling terminal, its own session.
    check(unistd::setsid().map(drop), report, Stage::BuilderStdio);

    // SAFETY: `log` is open in this process until exec.
    let log_fd = unsafe { BorrowedFd::borrow_raw(log) };
    check(unistd::dup2_stdout(log_fd), report, Stage::BuilderStdio);
    check(unistd::dup2_stderr(log_fd), report, Stage::BuilderStdio);
    let null = check(open(c"/dev/null", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()), report, Stage::BuilderStdio);
    check(unistd::dup2_stdin(&null), report, Stage::BuilderStdio);
    check(unistd::chdir(plan.build_dir.as_c_str()), report, Stage::BuilderCwd);
    for &(resource, value) in &plan.rlimits {
        check(nix::sys::resource::setrlimit(resource, value, value), report, Stage::Rlimits);
    }
    // Only 0, 1 and 2 survive the exec: `log` and `report` are close-on-exec
    // (see `isolate_descriptors`), and nothing else is open.

    let errno = match unistd::execve(plan.builder.as_c_str(), &plan.argv, &plan.envp) {
        Err(errno) => errno,
        Ok(never) => match never {},
    };
    fail(report, Stage::Exec as u32, errno)
}

/// Apply one [`Step`]: only system calls on its prepared strings, so it
/// may run between `fork` and `exec`.
pub fn run_step(step: &Step) -> nix::Result<()> {
    let no_str: Option<&CStr> = None;
    match step {
        Step::Dir { path, mode } => match unistd::mkdir(path.as_c_str(), Mode::from_bits_truncate(*mode)) {
            Ok(()) | Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(e),
        },
        Step::File { path } => {
            open(path.as_c_str(), OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_CLOEXEC, Mode::from_bits_truncate(0o644))
                .map(drop)
        }
        Step::Symlink { target, link } => unistd::symlinkat(target.as_c_str(), AT_FDCWD, link.as_c_str()),
        Step::Tmpfs { target, options } => mount(
            Some(c"tmpfs"),
            target.as_c_str(),
            Some(c"tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options.as_c_str()),
        ),
        Step::Bind { source, target, writable } => {
            mount(Some(source.as_c_str()), target.as_c_str(), no_str, MsFlags::MS_BIND | MsFlags::MS_REC, no_str)?;
            if *writable {
                Ok(())
            } else {
                remount_read_only(target)
            }
        }
        Step::Proc { target } => mount(
            Some(c"proc"),
            target.as_c_str(),
            Some(c"proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            no_str,
        ),
        Step::Write { path, contents } => write_file(path, contents, true),
    }
}

/// Make the mount at `target` read-only. A mount inherited from a more
/// privileged namespace has its nosuid/nodev/noexec/atime flags locked: the
/// remount must repeat them or the kernel refuses it.
pub fn remount_read_only(target: &CStr) -> nix::Result<()> {
    let current = statvfs(target)?.flags();
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    for (has, keep) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if current.contains(has) {
            flags |= keep;
        }
    }
    let no_str: Option<&CStr> = None;
    mount(no_str, target, no_str, flags, no_str)
}

nix::ioctl_write_ptr_bad!(set_interface_flags, libc::SIOCSIFFLAGS, libc::ifreq);

/// A new network namespace has only `lo`, and it is down.
fn loopback_up() -> nix::Result<()> {
    let sock = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo") {
        *dst = *src as c_char;
    }
    request.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as c_short;
    // SAFETY: SIOCSIFFLAGS reads one ifreq, which outlives the call.
    unsafe { set_interface_flags(sock.as_raw_fd(), &request) }.map(drop)
}
