//! The code that runs in the sandbox's processes before the builder's
//! `execve`: three processes per build.
//!
//! - the **outer child**, started from `run`'s thread: joins the build's
//!   cgroup, arms the build's timeout, and starts the init in new user,
//!   mount, PID, network, UTS and IPC namespaces, then waits for it. It
//!   stays outside the new namespaces.
//! - the **init**, PID 1 of the new PID namespace: writes its own uid/gid
//!   maps (mapping only the caller's ids, so no privilege is needed),
//!   builds the root file system, names the host, brings `lo` up,
//!   `pivot_root`s, starts the builder, reaps every process re-parented to
//!   it, and reports the builder's wait status as soon as the builder
//!   exits. Its exit tears the PID namespace down, killing whatever the
//!   builder left running.
//! - the **builder**: connects stdio, `chdir`s to `/build`, `execve`s.
//!
//! Both the outer child and the init set `PR_SET_PDEATHSIG(SIGKILL)`: if
//! `run`'s thread dies, the outer child dies, then the init, then the whole
//! namespace. The timeout is the outer child's `ITIMER_REAL`: its
//! `SIGALRM` kills the outer child, and with it the rest.
//!
//! Failures travel to `run` over a close-on-exec pipe as fixed-size records
//! (`kind`, `stage`, `value`): a failed mount becomes a readable error, not
//! an anonymous exit code.
//!
//! # Starting processes without copying drv
//!
//! Each process is started with `clone(CLONE_VM | CLONE_VFORK)`, as
//! `posix_spawn` starts one: the child runs in the caller's memory, on a
//! stack of its own ([`Stacks`]), and the calling thread is suspended until
//! the child exits or `execve`s. `fork` would copy the page tables of the
//! whole drv process three times a build and tear the copies down again
//! (about a fifth of a small build's time), and make every page drv then
//! writes fault once. The chain of suspensions (`run`'s thread waits for
//! the outer child, the outer child for the init, the init for the
//! builder's `execve`) means that at any moment at most one of them runs
//! on `run`'s thread's behalf: each may use that thread's thread-local
//! state (`errno`) as its own, as a `posix_spawn` child does. drv's other
//! threads keep running beside them, so the children must not take locks
//! those threads may hold or change memory those threads use: everything
//! they need (every path, file contents, argv/envp) is prepared before
//! (see `plan.rs`) and only read here, and what runs here is system calls
//! through `nix` and `rustix` with stack-built C strings (nix builds short
//! paths on the stack; its helpers may allocate for longer paths, which
//! is then as if `run`'s suspended thread allocated). Signal dispositions,
//! the signal mask, descriptors, the umask and the working directory are
//! each child's own (no `CLONE_SIGHAND`, `CLONE_FILES` or `CLONE_FS`).

use std::ffi::{c_char, c_int, c_short, c_void, CStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag, AT_FDCWD};
use nix::libc;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::prctl;
use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use nix::sys::stat::{umask, Mode};
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{self, Pid};

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
    Timer,
    Lifeline,
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
    pub(super) const ALL: [Stage; 25] = [
        Stage::ParentDeathSignal,
        Stage::Unshare,
        Stage::SetGroups,
        Stage::UidMap,
        Stage::GidMap,
        Stage::Descriptors,
        Stage::Timer,
        Stage::Lifeline,
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
            Stage::Unshare => "create the user, mount, PID, network, UTS and IPC namespaces",
            Stage::SetGroups => "write /proc/self/setgroups",
            Stage::UidMap => "write /proc/self/uid_map",
            Stage::GidMap => "write /proc/self/gid_map",
            Stage::Descriptors => "set up the sandbox's file descriptors",
            Stage::Timer => "arm the build's timeout",
            Stage::Lifeline => "watch the sandbox's outer process",
            Stage::MakePrivate => "make the mount tree private",
            Stage::IntermediateRoot => "mount the intermediate root",
            Stage::PivotIntermediate => "pivot_root into the intermediate root",
            Stage::NewRoot => "mount the build's root tmpfs",
            Stage::Hostname => "set the host and domain names",
            Stage::Loopback => "bring up the loopback interface",
            Stage::PivotFinal => "pivot_root into the build's root",
            Stage::ReadOnlyRoot => "make the build's root read-only",
            Stage::NoNewPrivs => "set no_new_privs",
            Stage::ForkBuilder => "start the builder",
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

/// Move the calling single-threaded process into the cgroup of `file`, its
/// `cgroup.procs` or (v1) `tasks` (cgroups(7): writing 0 names the writer).
pub(super) fn join_cgroup(file: &CStr) -> nix::Result<()> {
    let fd = open(file, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())?;
    write_all(&fd, b"0")
}

/// Stack size of each of the sandbox's processes before `execve`: what
/// they run is a few frames of system calls (nix's path buffers are the
/// largest, a page each), so this is ample.
const STACK_SIZE: usize = 256 * 1024;
/// An inaccessible page below each stack: an overflow faults instead of
/// writing into the next stack.
const GUARD_SIZE: usize = 4096;

/// The stacks of the outer child, the init and the builder (before its
/// `execve`), each above a guard page, in one anonymous mapping. Only
/// touched pages cost anything.
pub(super) struct Stacks {
    base: *mut c_void,
    len: usize,
}

impl Stacks {
    pub(super) fn new() -> nix::Result<Self> {
        let len = 3 * (GUARD_SIZE + STACK_SIZE);
        // SAFETY: a new private mapping at an address the kernel picks
        // aliases nothing.
        let base = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE | rustix::mm::MapFlags::STACK,
            )
        }
        .map_err(|e| Errno::from_raw(e.raw_os_error()))?;
        let stacks = Stacks { base, len };
        for i in 0..3 {
            // SAFETY: the guard page lies inside the mapping made above,
            // which nothing uses yet.
            unsafe {
                rustix::mm::mprotect(stacks.bottom(i).cast(), GUARD_SIZE, rustix::mm::MprotectFlags::empty())
            }
            .map_err(|e| Errno::from_raw(e.raw_os_error()))?;
        }
        Ok(stacks)
    }

    /// The lowest address of stack `i`'s slot (its guard page).
    fn bottom(&self, i: usize) -> *mut u8 {
        self.base.cast::<u8>().wrapping_add(i * (GUARD_SIZE + STACK_SIZE))
    }

    /// The initial stack pointer of stack `i` (stacks grow down; the slot's
    /// end is page-aligned, so 16-byte aligned as the ABI wants).
    fn top(&self, i: usize) -> *mut c_void {
        self.bottom(i).wrapping_add(GUARD_SIZE + STACK_SIZE).cast()
    }
}

impl Drop for Stacks {
    fn drop(&mut self) {
        // SAFETY: `run` drops (or reuses) the stacks only once every
        // process that ran on them is gone (the report pipe reached
        // end-of-file: they all closed it, which a process does after
        // releasing its memory).
        let _ = unsafe { rustix::mm::munmap(self.base, self.len) };
    }
}

/// Start `entry(arg)` in a new process that shares this process's memory,
/// on stack `stack` of `stacks`, in new namespaces per `namespaces`, and
/// return once it has exited or called `execve` (the calling thread is
/// suspended until then). Its exit signal is `SIGCHLD`, so it is waited
/// for as a forked child.
///
/// # Safety
///
/// `entry` must treat `arg` as an `&A` that outlives the child's use of it
/// (true for anything the caller borrows, as the caller is suspended), and
/// follow the rules of this module's documentation: only system calls on
/// prepared data, never return into the caller's frames (the child exits
/// or `execve`s).
unsafe fn clone_vfork<A>(
    entry: extern "C" fn(*mut c_void) -> c_int,
    arg: &A,
    stacks: &Stacks,
    stack: usize,
    namespaces: CloneFlags,
) -> nix::Result<Pid> {
    let flags = (namespaces | CloneFlags::CLONE_VM | CloneFlags::CLONE_VFORK).bits() | libc::SIGCHLD;
    // SAFETY: the stack is mapped, unused (each process has its own slot)
    // and outlives the child (see `Stacks`'s drop); the caller vouches for
    // `entry` and `arg`.
    let pid = unsafe { libc::clone(entry, stacks.top(stack), flags, arg as *const A as *mut c_void) };
    Errno::result(pid).map(Pid::from_raw)
}

/// What the outer child needs; it lives on `run`'s thread's stack, which
/// is suspended for as long as the sandbox's processes share its memory.
pub(super) struct Launch<'a> {
    pub plan: &'a Plan,
    /// `run`'s process, for the parent-death check.
    pub parent: Pid,
    pub report: RawFd,
    /// `None` only checks that the namespaces can be made
    /// ([`super::check_namespaces`]).
    pub log: Option<RawFd>,
    pub timeout: Option<Duration>,
    pub stacks: &'a Stacks,
}

/// What the init needs, on the outer child's stack.
struct InitArgs<'a> {
    plan: &'a Plan,
    report: RawFd,
    log: Option<RawFd>,
    /// The read end of a pipe whose only write end the outer child holds:
    /// it hangs up when the outer child is gone.
    lifeline: RawFd,
    lifeline_write: RawFd,
    stacks: &'a Stacks,
}

/// What the builder needs, on the init's stack.
struct BuilderArgs<'a> {
    plan: &'a Plan,
    report: RawFd,
    log: RawFd,
}

/// The stacks' slots.
const OUTER_STACK: usize = 0;
const INIT_STACK: usize = 1;
const BUILDER_STACK: usize = 2;

/// Start the outer child for `launch` and wait until it has exited (with
/// the whole sandbox); its pid, for `waitpid`.
pub(super) fn start(launch: &Launch) -> nix::Result<Pid> {
    extern "C" fn entry(arg: *mut c_void) -> c_int {
        // SAFETY: `start` passes a `&Launch` that outlives this process's
        // use of it (its caller is suspended).
        outer(unsafe { &*arg.cast::<Launch>() })
    }
    // SAFETY: `outer` follows this module's rules and never returns.
    unsafe { clone_vfork(entry, launch, launch.stacks, OUTER_STACK, CloneFlags::empty()) }
}

/// The outer child: join the cgroup, arm the timeout, start the init in
/// new namespaces and wait for it.
fn outer(launch: &Launch) -> ! {
    let report = launch.report;
    check(prctl::set_pdeathsig(Signal::SIGKILL), report, Stage::ParentDeathSignal);
    // `run`'s thread may have died between the clone and prctl.
    if unistd::getppid() != launch.parent {
        exit(1);
    }
    let (report, log) = check(isolate_descriptors(report, launch.log), report, Stage::Descriptors);
    let plan = launch.plan;
    // Before the init is started, so that every process of the build is in
    // it; and from the host's user namespace, which owns the cgroup files.
    for file in &plan.cgroup_join {
        check(join_cgroup(file), report, Stage::JoinCgroup);
    }
    if let Some(timeout) = launch.timeout {
        check(arm_timeout(timeout), report, Stage::Timer);
    }
    let (lifeline, lifeline_write) = check(unistd::pipe2(OFlag::O_CLOEXEC), report, Stage::Lifeline);
    let mut namespaces = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    if !plan.network {
        namespaces |= CloneFlags::CLONE_NEWNET;
    }
    let args = InitArgs {
        plan,
        report,
        log,
        lifeline: lifeline.as_raw_fd(),
        lifeline_write: lifeline_write.as_raw_fd(),
        stacks: launch.stacks,
    };
    extern "C" fn entry(arg: *mut c_void) -> c_int {
        // SAFETY: the outer child passes a `&InitArgs` from its own stack
        // and is suspended while this process shares its memory.
        init(unsafe { &*arg.cast::<InitArgs>() })
    }
    // SAFETY: `init` follows this module's rules and never returns.
    let child = check(unsafe { clone_vfork(entry, &args, launch.stacks, INIT_STACK, namespaces) }, report, Stage::Unshare);
    // The init is gone; a timeout from now on would only kill a finished
    // build. Its wait status says nothing `run` needs (the init reports).
    let _ = arm_timeout(Duration::ZERO);
    while let Err(Errno::EINTR) = waitpid(child, None) {}
    exit(0)
}

/// Arm (or with zero, disarm) this process's `ITIMER_REAL`, with `SIGALRM`
/// at its default action (terminate) and unblocked: at the deadline the
/// kernel kills this process even while it waits for the init (the wait
/// of `CLONE_VFORK` ends on a fatal signal).
fn arm_timeout(timeout: Duration) -> nix::Result<()> {
    // SAFETY: the default disposition installs no handler; this process
    // has its own signal handlers (no CLONE_SIGHAND).
    unsafe { signal(Signal::SIGALRM, SigHandler::SigDfl) }?;
    let mut alarm = SigSet::empty();
    alarm.add(Signal::SIGALRM);
    sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&alarm), None)?;
    // A zero it_value disarms; round a sub-microsecond timeout up.
    let micros = if timeout.is_zero() { 0 } else { timeout.as_micros().max(1) };
    let value = libc::timeval {
        tv_sec: (micros / 1_000_000).min(libc::time_t::MAX as u128) as libc::time_t,
        tv_usec: (micros % 1_000_000) as libc::suseconds_t,
    };
    let timer = libc::itimerval { it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 }, it_value: value };
    // SAFETY: setitimer reads `timer` and writes nothing (old value NULL).
    Errno::result(unsafe { libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) }).map(drop)
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
fn init(args: &InitArgs) -> ! {
    let (plan, report) = (args.plan, args.report);
    check(prctl::set_pdeathsig(Signal::SIGKILL), report, Stage::ParentDeathSignal);
    // The outer child may have been killed (its timeout) before prctl; it
    // holds the lifeline's only other write end. getppid(2) cannot tell:
    // the parent is outside this PID namespace, so it reads 0.
    close_inherited(args.lifeline_write);
    // SAFETY: the read end is open in this process until it exits.
    let lifeline = unsafe { BorrowedFd::borrow_raw(args.lifeline) };
    let mut watch = [PollFd::new(lifeline, PollFlags::POLLIN)];
    match poll(&mut watch, PollTimeout::ZERO) {
        Ok(0) => {}
        Ok(_) => exit(1),
        Err(errno) => fail(report, Stage::Lifeline as u32, errno),
    }
    // Mapping only our own ids needs no privilege, but the gid map is only
    // accepted once setgroups is denied. `/proc` is still the host's, where
    // `self` is this process.
    check(write_file(c"/proc/self/setgroups", plan.setgroups, false), report, Stage::SetGroups);
    check(write_file(c"/proc/self/uid_map", &plan.uid_map, false), report, Stage::UidMap);
    check(write_file(c"/proc/self/gid_map", &plan.gid_map, false), report, Stage::GidMap);
    let Some(log) = args.log else { exit(0) };

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

    let builder_args = BuilderArgs { plan, report, log };
    extern "C" fn entry(arg: *mut c_void) -> c_int {
        // SAFETY: the init passes a `&BuilderArgs` from its own stack and
        // is suspended until this process has called `execve` or exited.
        builder(unsafe { &*arg.cast::<BuilderArgs>() })
    }
    // SAFETY: `builder` follows this module's rules and never returns.
    let spawned = unsafe { clone_vfork(entry, &builder_args, args.stacks, BUILDER_STACK, CloneFlags::empty()) };
    let builder_pid = check(spawned, report, Stage::ForkBuilder);
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
fn builder(args: &BuilderArgs) -> ! {
    let (plan, report, log) = (args.plan, args.report, args.log);
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
/// remount must repeat them or the kernel refuses it. A bind of a
/// read-only mount is read-only already (it copies the mount's flags), and
/// is left as it is.
pub fn remount_read_only(target: &CStr) -> nix::Result<()> {
    let current = statvfs(target)?.flags();
    if current.contains(FsFlags::ST_RDONLY) {
        return Ok(());
    }
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
