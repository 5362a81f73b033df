//! Running a [`SandboxSpec`]: [`run`] and [`check_namespaces`], the
//! processes around the builder, and the checks before and after it.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::prctl;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{self, Pid};

use crate::child::{self, Stage, KIND_FAILED, KIND_STATUS, KIND_TMP_FULL, PLAN_STAGE_BASE, REPORT_LEN, TMP_MOUNTS};
use crate::cgroup;
use crate::error::{Result, SandboxError};
use crate::limits::{self, LimitHit, Limits};
use crate::plan::Plan;
use crate::spec::{Isolation, SandboxSpec};

/// Run `spec`'s builder to completion and return its exit status (a
/// non-zero status is `Ok`: the build failed, the sandbox did not).
///
/// The builder's stdout and stderr are `log` (a file, or the write end of a
/// pipe that the caller drains from another thread: `run` blocks until the
/// build ends). `run` closes its copy of `log` once the sandbox has started,
/// so a pipe reaches end-of-file when the build and everything it started
/// are gone. Stdin is `/dev/null`.
pub fn run(spec: &SandboxSpec, log: OwnedFd) -> Result<ExitStatus> {
    validate(spec)?;
    match spec.isolation {
        Isolation::Namespaces => run_namespaced(spec, log),
        Isolation::None => run_unisolated(spec, log),
    }
}

/// Check that this process may create the namespaces [`run`] needs; the
/// error is [`SandboxError::NamespacesUnavailable`] with the kernel's
/// reason and the settings involved.
pub fn check_namespaces() -> Result<()> {
    let plan = Plan::probe();
    let outcome = spawn(&plan, None, None)?;
    if let Some((stage, errno)) = outcome.failure {
        return Err(failure(&plan, Path::new(""), stage, errno));
    }
    match outcome.outer {
        WaitStatus::Exited(_, 0) => Ok(()),
        other => Err(SandboxError::Lost { detail: format!("{other:?}") }),
    }
}

fn invalid(value: impl AsRef<OsStr>, reason: impl Into<String>) -> SandboxError {
    SandboxError::InvalidSpec { value: value.as_ref().to_string_lossy().into_owned(), reason: reason.into() }
}

fn validate(spec: &SandboxSpec) -> Result<()> {
    check_exec_limits(spec)?;
    let store_dir = &spec.store_dir;
    let normal = |p: &Path| p.is_absolute() && p.components().skip(1).all(|c| matches!(c, Component::Normal(_)));
    if !normal(store_dir) || store_dir == Path::new("/") {
        return Err(invalid(store_dir, "the store directory must be an absolute path below / without . or .."));
    }
    if !normal(&spec.builder) {
        return Err(invalid(&spec.builder, "the builder must be an absolute path without . or .."));
    }
    let conditions = &spec.conditions;
    let build_top = conditions.build_dir.components().nth(1);
    let store_top = store_dir.components().nth(1);
    if !normal(&conditions.build_dir)
        || build_top.is_none()
        || build_top == store_top
        || ["tmp", "dev", "proc", "etc"].iter().any(|r| build_top == Some(Component::Normal(OsStr::new(r))))
    {
        return Err(invalid(
            &conditions.build_dir,
            "the build directory must be an absolute path without . or .., outside the store, /tmp, /dev, /proc and /etc",
        ));
    }
    // They are written into /etc/passwd and given to sethostname(2).
    for (value, what) in [(&conditions.user, "user name"), (&conditions.hostname, "host name"), (&conditions.domainname, "domain name")] {
        if value.is_empty() || value.len() > 64 || value.bytes().any(|b| b == b':' || b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err(invalid(value, format!("not a usable {what} (1 to 64 bytes, no ':', space or control character)")));
        }
    }
    if conditions.cpus == Some(0) {
        return Err(invalid("0", "a build runs on at least one CPU"));
    }
    if conditions.umask > 0o777 {
        return Err(invalid(format!("{:o}", conditions.umask), "a umask is at most 0777"));
    }
    let mut names = BTreeSet::new();
    let logicals = spec.inputs.iter().map(|i| &i.logical).chain(&spec.outputs);
    for logical in logicals {
        let name = match (logical.parent(), logical.file_name()) {
            (Some(parent), Some(name)) if parent == store_dir && normal(logical) => name,
            _ => return Err(invalid(logical, format!("not a path directly in {}", store_dir.display()))),
        };
        if !names.insert(name) {
            return Err(invalid(logical, "named twice among the inputs and outputs"));
        }
    }
    for input in &spec.inputs {
        fs::symlink_metadata(&input.physical).map_err(|e| SandboxError::io(&input.physical, e))?;
    }
    let is_dir = |p: &Path| fs::metadata(p).map(|m| m.is_dir()).map_err(|e| SandboxError::io(p, e));
    for (dir, what) in [(&spec.build_dir, "the build directory"), (&spec.scratch_store, "the scratch store")]
        .into_iter()
        .chain(spec.toolchain.iter().map(|t| (t, "the toolchain")))
    {
        if !is_dir(dir)? {
            return Err(invalid(dir, format!("{what} is not a directory")));
        }
    }
    let mut scratch = fs::read_dir(&spec.scratch_store).map_err(|e| SandboxError::io(&spec.scratch_store, e))?;
    if scratch.next().is_some() {
        return Err(SandboxError::ScratchNotEmpty { path: spec.scratch_store.clone() });
    }
    for (key, _) in &spec.env {
        if key.is_empty() || key.as_encoded_bytes().contains(&b'=') {
            return Err(invalid(key, "an environment variable name must be non-empty and without '='"));
        }
    }
    Ok(())
}

/// The build's cgroup, if one can be made (else the rlimits hold; the
/// caller learnt why from [`limit_notes`]), and the rlimits for what it
/// does not cover.
fn resource_control(limits: &Limits) -> (Option<cgroup::BuildCgroup>, Vec<(nix::sys::resource::Resource, u64)>) {
    let group = cgroup::BuildCgroup::create(limits, &limits::wanted_controllers(limits)).ok().flatten();
    let covered = group.as_ref().map(|g| g.controllers()).unwrap_or_default();
    let rlimits = limits.rlimits(&covered);
    (group, rlimits)
}

fn run_namespaced(spec: &SandboxSpec, log: OwnedFd) -> Result<ExitStatus> {
    let mut plan = Plan::new(spec)?;
    let (group, rlimits) = resource_control(&spec.limits);
    plan.cgroup_join = group.as_ref().map(|g| g.join_files()).unwrap_or_default();
    plan.rlimits = rlimits;
    let placeholders = create_placeholders(spec)?;
    let outcome = spawn(&plan, Some(log), spec.timeout);
    remove_placeholders(&placeholders);
    let outcome = outcome?;

    if let Some((stage, errno)) = outcome.failure {
        if stage == Stage::Exec as u32 {
            return Err(exec_error(spec, &spec.builder, io::Error::from_raw_os_error(errno)));
        }
        return Err(failure(&plan, &spec.builder, stage, errno));
    }
    if outcome.timed_out {
        return Err(SandboxError::TimedOut { timeout: spec.timeout.unwrap_or_default() });
    }
    let Some(status) = outcome.status else {
        return Err(SandboxError::Lost { detail: format!("{:?}", outcome.outer) });
    };
    if !status.success() {
        let tmp_full = outcome.tmp_full.and_then(|i| TMP_MOUNTS.get(i as usize)).map(|mount| LimitHit::TmpSpace {
            mount: (*mount).to_owned(),
            size: spec.limits.tmp_size.unwrap_or_default(),
        });
        if let Some(hit) = group.as_ref().and_then(|g| g.hit()).or(tmp_full) {
            return Err(SandboxError::LimitExceeded { hit, status });
        }
    }
    check_scratch(spec)?;
    Ok(status)
}

/// The mount points for the inputs inside the scratch store, of the same
/// kind as each input; a symlink input is copied as the symlink itself.
fn create_placeholders(spec: &SandboxSpec) -> Result<Vec<PathBuf>> {
    let mut made = Vec::new();
    for input in &spec.inputs {
        let Some(name) = input.logical.file_name() else { continue };
        let at = spec.scratch_store.join(name);
        let meta = fs::symlink_metadata(&input.physical).map_err(|e| SandboxError::io(&input.physical, e))?;
        let created = if meta.file_type().is_symlink() {
            fs::read_link(&input.physical).and_then(|target| std::os::unix::fs::symlink(target, &at))
        } else if meta.is_dir() {
            fs::create_dir(&at)
        } else {
            File::create_new(&at).map(drop)
        };
        if let Err(e) = created {
            remove_placeholders(&made);
            return Err(SandboxError::io(&at, e));
        }
        made.push(at);
    }
    Ok(made)
}

/// Best effort: a placeholder that cannot be removed (the builder replaced
/// a symlink input with something else) is then reported as a stray entry.
fn remove_placeholders(paths: &[PathBuf]) {
    for path in paths {
        let _ = match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => fs::remove_dir(path),
            Ok(_) => fs::remove_file(path),
            Err(_) => Ok(()),
        };
    }
}

/// Anything in the scratch store but the declared outputs is an error.
fn check_scratch(spec: &SandboxSpec) -> Result<()> {
    let outputs: BTreeSet<&OsStr> = spec.outputs.iter().filter_map(|o| o.file_name()).collect();
    let entries = fs::read_dir(&spec.scratch_store).map_err(|e| SandboxError::io(&spec.scratch_store, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let name = entry.map_err(|e| SandboxError::io(&spec.scratch_store, e))?.file_name();
        if !outputs.contains(name.as_os_str()) {
            names.push(name.to_string_lossy().into_owned());
        }
    }
    if names.is_empty() {
        Ok(())
    } else {
        names.sort();
        Err(SandboxError::StrayStoreEntries { scratch: spec.scratch_store.clone(), names })
    }
}

/// What the sandbox's processes reported.
struct Outcome {
    /// The first failure: stage and errno.
    failure: Option<(u32, i32)>,
    /// The builder's exit status.
    status: Option<ExitStatus>,
    timed_out: bool,
    /// The index in [`TMP_MOUNTS`] of a tmpfs found full when the builder
    /// exited.
    tmp_full: Option<u32>,
    /// How the outer child ended.
    outer: WaitStatus,
}

thread_local! {
    /// Stacks no sandbox process runs on any more, for this thread's next
    /// build.
    static SPARE_STACKS: Cell<Option<child::Stacks>> = const { Cell::new(None) };
}

/// Start the outer child for `plan` (it kills the sandbox at `timeout`),
/// wait until it is gone, collect the reports of every sandbox process,
/// and reap it. `log` `None` only probes the namespaces.
fn spawn(plan: &Plan, log: Option<OwnedFd>, timeout: Option<Duration>) -> Result<Outcome> {
    let (read_end, write_end) = unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| SandboxError::spawn("pipe", e))?;
    // A thread's builds run one after another: the stacks (and their
    // touched pages) of the last one serve the next.
    let stacks = match SPARE_STACKS.try_with(Cell::take).ok().flatten() {
        Some(stacks) => stacks,
        None => child::Stacks::new().map_err(|e| SandboxError::spawn("map the sandbox's stacks", e))?,
    };
    let launch = child::Launch {
        plan,
        parent: unistd::getpid(),
        report: write_end.as_raw_fd(),
        log: log.as_ref().map(|fd| fd.as_raw_fd()),
        timeout,
        stacks: &stacks,
    };
    // This thread is suspended until the outer child exits, which it does
    // once the build is over (or at the timeout).
    let started = child::start(&launch);
    drop(write_end);
    drop(log);
    let outer = match started {
        Ok(pid) => pid,
        Err(e) => return Err(SandboxError::spawn("start the sandbox", e)),
    };

    // End-of-file: every sandbox process has closed the pipe, which a
    // process does only after releasing its memory (or `execve`), so none
    // runs on the stacks any more. An outer child killed at the timeout
    // leaves an init that is still dying; this waits for it too.
    let records = match read_reports(File::from(read_end)) {
        Ok(records) => {
            // Unmapped instead when this thread's locals are being
            // destroyed.
            let _ = SPARE_STACKS.try_with(move |spare| spare.set(Some(stacks)));
            records
        }
        Err(error) => {
            // Whether a sandbox process still runs on the stacks is
            // unknown: they stay mapped.
            std::mem::forget(stacks);
            return Err(SandboxError::Spawn { what: "read the sandbox's reports", error });
        }
    };
    let outer_status = loop {
        match waitpid(outer, None) {
            Err(Errno::EINTR) => continue,
            Ok(status) => break status,
            Err(e) => return Err(SandboxError::spawn("wait for the sandbox", e)),
        }
    };

    let mut outcome = Outcome { failure: None, status: None, timed_out: false, tmp_full: None, outer: outer_status };
    for record in records.chunks_exact(REPORT_LEN) {
        let word = |i: usize| u32::from_ne_bytes([record[i], record[i + 1], record[i + 2], record[i + 3]]);
        let (kind, stage, value) = (word(0), word(4), word(8) as i32);
        if kind == KIND_FAILED && outcome.failure.is_none() {
            outcome.failure = Some((stage, value));
        } else if kind == KIND_STATUS {
            outcome.status = Some(ExitStatus::from_raw(value));
        } else if kind == KIND_TMP_FULL && outcome.tmp_full.is_none() {
            outcome.tmp_full = Some(stage);
        }
    }
    // The timer killed the outer child before the builder's status came:
    // the build was still running at the deadline.
    outcome.timed_out = matches!(outer_status, WaitStatus::Signaled(_, Signal::SIGALRM, _)) && outcome.status.is_none();
    Ok(outcome)
}

/// Read report records until end-of-file.
fn read_reports(mut pipe: File) -> io::Result<Vec<u8>> {
    let mut records = Vec::new();
    let mut chunk = [0u8; 4 * REPORT_LEN];
    loop {
        match pipe.read(&mut chunk) {
            Ok(0) => return Ok(records),
            Ok(n) => records.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

/// The error for a child's failure `errno` at `stage`.
fn failure(plan: &Plan, builder: &Path, stage: u32, errno: i32) -> SandboxError {
    let error = io::Error::from_raw_os_error(errno);
    if stage >= PLAN_STAGE_BASE {
        let step = plan.steps.get((stage - PLAN_STAGE_BASE) as usize);
        return SandboxError::Setup { step: step.map_or_else(|| format!("step {stage}"), |s| s.describe()), error };
    }
    match Stage::from_u32(stage) {
        Some(s @ (Stage::Unshare | Stage::SetGroups | Stage::UidMap | Stage::GidMap)) => {
            SandboxError::NamespacesUnavailable { reason: namespaces_reason(s, &error) }
        }
        Some(Stage::Exec) => SandboxError::Exec { builder: builder.to_owned(), error },
        Some(s) => SandboxError::Setup { step: s.describe().to_owned(), error },
        None => SandboxError::Setup { step: format!("stage {stage}"), error },
    }
}

/// The kernel's refusal, with the settings that usually explain it.
fn namespaces_reason(stage: Stage, error: &io::Error) -> String {
    let mut reason = format!("cannot {}: {error}", stage.describe());
    for (file, setting) in [
        ("/proc/sys/kernel/unprivileged_userns_clone", "kernel.unprivileged_userns_clone"),
        ("/proc/sys/user/max_user_namespaces", "user.max_user_namespaces"),
        ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "kernel.apparmor_restrict_unprivileged_userns"),
    ] {
        if let Ok(value) = fs::read_to_string(file) {
            reason.push_str(&format!("; {setting} = {}", value.trim()));
        }
    }
    reason
}

/// Linux's limit on the length of one string of `execve`'s argv or envp,
/// its terminating NUL included: 32 pages (`MAX_ARG_STRLEN` in
/// include/uapi/linux/binfmts.h; execve(2), "Limits on size of arguments
/// and environment").
pub const MAX_ARG_STRLEN: usize = 32 * 4096;

/// A string over [`MAX_ARG_STRLEN`] is refused before anything is set up,
/// by name, rather than as `execve`'s bare E2BIG.
fn check_exec_limits(spec: &SandboxSpec) -> Result<()> {
    for (i, arg) in spec.args.iter().enumerate() {
        let len = arg.len() + 1;
        if len > MAX_ARG_STRLEN {
            return Err(SandboxError::ArgumentTooLong { what: format!("argument {}", i + 1), len });
        }
    }
    for (k, v) in &spec.env {
        let len = k.len() + 1 + v.len() + 1;
        if len > MAX_ARG_STRLEN {
            return Err(SandboxError::ArgumentTooLong { what: format!("environment variable {}", k.to_string_lossy()), len });
        }
    }
    Ok(())
}

/// The bytes `execve` copies for `spec`'s argv and envp (strings and
/// pointers), for the error when their total is refused.
fn exec_size(spec: &SandboxSpec) -> usize {
    let ptr = std::mem::size_of::<usize>();
    let argv: usize = spec.args.iter().map(|a| a.len() + 1 + ptr).sum::<usize>() + spec.builder.as_os_str().len() + 1 + ptr;
    let envp: usize = spec.env.iter().map(|(k, v)| k.len() + v.len() + 2 + ptr).sum();
    argv + envp
}

/// The error of a failed `execve` of the builder.
fn exec_error(spec: &SandboxSpec, builder: &Path, error: io::Error) -> SandboxError {
    if error.raw_os_error() == Some(Errno::E2BIG as i32) {
        return SandboxError::ArgumentsTooLong { builder: builder.to_owned(), total: exec_size(spec), error };
    }
    SandboxError::Exec { builder: builder.to_owned(), error }
}

/// `--no-sandbox`: the builder on the host, same clean environment. Only
/// its process group is killed at the end and at the timeout.
fn run_unisolated(spec: &SandboxSpec, log: OwnedFd) -> Result<ExitStatus> {
    let builder = spec.host_path(&spec.builder);
    let stderr = log.try_clone().map_err(|error| SandboxError::Spawn { what: "duplicate the log", error })?;
    let mut command = Command::new(&builder);
    command
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.build_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(stderr))
        .process_group(0);
    // No tmpfs of its own here, but the same cgroup or rlimits; the cgroup
    // also reaches what leaves the process group.
    let (group, rlimits) = resource_control(&spec.limits);
    let join = group.as_ref().map(|g| g.join_files()).unwrap_or_default();
    // SAFETY: prctl, umask, open, write and setrlimit are
    // async-signal-safe, and the paths were made before the fork.
    unsafe {
        command.pre_exec(move || {
            // The same fixed umask as in the sandbox (`child::builder`),
            // not the caller's.
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
            prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
            for file in &join {
                child::join_cgroup(file).map_err(io::Error::from)?;
            }
            for &(resource, value) in &rlimits {
                nix::sys::resource::setrlimit(resource, value, value).map_err(io::Error::from)?;
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|error| exec_error(spec, &builder, error))?;
    drop(command); // our copies of the log
    let process_group = Pid::from_raw(child.id() as i32);
    let wait_error = |error| SandboxError::Spawn { what: "wait for the builder", error };
    let status = match spec.timeout {
        None => Some(child.wait().map_err(wait_error)?),
        Some(timeout) => {
            let deadline = Instant::now() + timeout;
            loop {
                if let Some(status) = child.try_wait().map_err(wait_error)? {
                    break Some(status);
                }
                let now = Instant::now();
                if now >= deadline {
                    let _ = killpg(process_group, Signal::SIGKILL);
                    child.wait().map_err(wait_error)?;
                    break None;
                }
                std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
            }
        }
    };
    // What the PID namespace's teardown does, as far as a process group
    // reaches.
    let _ = killpg(process_group, Signal::SIGKILL);
    let status = status.ok_or(SandboxError::TimedOut { timeout: spec.timeout.unwrap_or_default() })?;
    match group.as_ref().and_then(|g| g.hit()) {
        Some(hit) if !status.success() => Err(SandboxError::LimitExceeded { hit, status }),
        _ => Ok(status),
    }
}
