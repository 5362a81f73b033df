//! What one build may take of the host: processes, memory, temporary space.
//!
//! - **Temporary space**: `/tmp` and `/dev/shm` are tmpfs mounted with
//!   `size=` ([`Limits::tmp_size`] each; tmpfs(5)). A build that fills one
//!   gets `ENOSPC`.
//! - **Processes and memory**: a cgroup per build, as Nix's `use-cgroups`
//!   does (Nix: `src/libstore/unix/build/linux-derivation-builder.cc`,
//!   `src/libutil/linux/cgroup.cc`): `pids.max`, and `memory.max` with
//!   `memory.swap.max = 0` on cgroup v2, or the v1 `pids` and `memory`
//!   hierarchies (`memory.limit_in_bytes`, `memory.memsw.limit_in_bytes`).
//!   See [`super::cgroup`] for when drv may create one.
//! - **Without a cgroup** the limits fall back to setrlimit(2) on the
//!   builder, which holds less:
//!   - `RLIMIT_NPROC` counts the processes of the builder's host uid *in
//!     the build's user namespace* (since Linux 5.14 the count is per user
//!     namespace), so it bounds exactly the build's processes when drv
//!     runs unprivileged. The kernel exempts uid 0 (`INIT_USER` in
//!     `copy_process`, kernel/fork.c), and a root drv maps the builder to
//!     uid 0: then nothing limits the processes, and
//!     [`limit_notes`] says so.
//!   - `RLIMIT_DATA` bounds each process's private writable memory (heap,
//!     anonymous mappings; Linux 4.7+), not the build's total; allocations
//!     over it fail with `ENOMEM` instead of an out-of-memory kill.
//!     `RLIMIT_AS` is not used: it counts address space that runtimes
//!     (Go, the JVM, sanitizers) reserve without using, and breaks them.
//!
//! A build that reaches a limit and fails is reported as
//! [`super::SandboxError::LimitExceeded`] with the limit it reached.

use std::fmt;

use nix::sys::resource::Resource;

use super::cgroup::{self, Controller};

/// The resources one build may use. `None` is no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Tasks (processes and threads) at once.
    pub processes: Option<u64>,
    /// Bytes of memory, including the pages of its `/tmp` and `/dev/shm`
    /// (and, through a cgroup, no swap).
    pub memory: Option<u64>,
    /// Bytes of each of the `/tmp` and `/dev/shm` tmpfs.
    pub tmp_size: Option<u64>,
    /// Put the build in a cgroup when drv may create one (Nix's
    /// `use-cgroups`); `false` uses only rlimits.
    pub use_cgroups: bool,
}

/// Default [`Limits::processes`]: room for a `make -j` of many compilers,
/// each with its threads; a fork bomb stops long before the host's limit.
pub const DEFAULT_MAX_PROCESSES: u64 = 8192;
/// Default [`Limits::tmp_size`]: `TMPDIR` is `/build`, so `/tmp` and
/// `/dev/shm` are for the odd tool that insists on them.
pub const DEFAULT_TMP_SIZE: u64 = 1 << 30;

impl Default for Limits {
    /// drv's defaults: [`DEFAULT_MAX_PROCESSES`], three quarters of the
    /// host's memory (so the host keeps some), [`DEFAULT_TMP_SIZE`],
    /// cgroups when possible.
    fn default() -> Self {
        let info = rustix::system::sysinfo();
        let ram = (info.totalram as u64).saturating_mul(u64::from(info.mem_unit.max(1)));
        Limits {
            processes: Some(DEFAULT_MAX_PROCESSES),
            memory: (ram > 0).then_some(ram / 4 * 3),
            tmp_size: Some(DEFAULT_TMP_SIZE),
            use_cgroups: true,
        }
    }
}

impl Limits {
    /// No limit at all.
    pub fn none() -> Self {
        Limits { processes: None, memory: None, tmp_size: None, use_cgroups: false }
    }

    /// The rlimits the builder gets for what `covered` (the build's
    /// cgroup) does not limit.
    pub(super) fn rlimits(&self, covered: &[Controller]) -> Vec<(Resource, u64)> {
        let mut out = Vec::new();
        if let (Some(n), false) = (self.processes, covered.contains(&Controller::Pids)) {
            out.push((Resource::RLIMIT_NPROC, n));
        }
        if let (Some(n), false) = (self.memory, covered.contains(&Controller::Memory)) {
            out.push((Resource::RLIMIT_DATA, n));
        }
        out
    }
}

/// What a build with `limits` would not have limited as asked, in words,
/// one note per limit; empty when every limit holds as set. Creates and
/// removes a probe cgroup.
pub fn limit_notes(limits: &Limits) -> Vec<String> {
    let wanted = wanted_controllers(limits);
    let (covered, why) = match cgroup::BuildCgroup::create(limits, &wanted) {
        Ok(Some(group)) => (group.controllers(), String::new()),
        Ok(None) => (Vec::new(), "cgroups are not used (use-cgroups = false)".to_owned()),
        Err(e) => (Vec::new(), format!("no cgroup for builds: {e}")),
    };
    let mut notes = Vec::new();
    if let (Some(n), false) = (limits.processes, covered.contains(&Controller::Pids)) {
        if nix::unistd::getuid().is_root() {
            notes.push(format!(
                "the process limit ({n}) cannot be applied: {why}, and RLIMIT_NPROC does not apply to root's builds"
            ));
        } else {
            notes.push(format!("processes are limited to {n} by RLIMIT_NPROC, as {why}"));
        }
    }
    if let (Some(n), false) = (limits.memory, covered.contains(&Controller::Memory)) {
        notes.push(format!(
            "memory is limited to {} per process (RLIMIT_DATA), not per build, as {why}",
            Size(n)
        ));
    }
    notes
}

/// The controllers `limits` needs.
pub(super) fn wanted_controllers(limits: &Limits) -> Vec<Controller> {
    let mut wanted = Vec::new();
    if limits.use_cgroups && limits.processes.is_some() {
        wanted.push(Controller::Pids);
    }
    if limits.use_cgroups && limits.memory.is_some() {
        wanted.push(Controller::Memory);
    }
    wanted
}

/// A limit a failed build reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitHit {
    /// A fork or clone failed at the process limit (`pids.max`).
    Processes { max: u64 },
    /// The kernel killed a process of the build for want of memory.
    Memory { max: u64 },
    /// `/tmp` or `/dev/shm` was full when the builder exited.
    TmpSpace { mount: String, size: u64 },
}

impl fmt::Display for LimitHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitHit::Processes { max } => write!(
                f,
                "reached the limit of {max} processes and threads; raise it with `drv build --max-processes N` or \
                 `max-processes` in drv's configuration"
            ),
            LimitHit::Memory { max } => write!(
                f,
                "ran out of memory: a process was killed at the build's limit of {}; raise it with \
                 `drv build --max-memory SIZE` or `max-memory` in drv's configuration",
                Size(*max)
            ),
            LimitHit::TmpSpace { mount, size } => write!(
                f,
                "filled {mount} (no space left on device: a tmpfs of {}); raise it with `drv build --tmp-size SIZE` \
                 or `tmp-size` in drv's configuration, or write to $TMPDIR (/build)",
                Size(*size)
            ),
        }
    }
}

/// Bytes, shown in the largest binary unit that divides them, as
/// [`parse_size`] reads them back (`64M`, `1G`, `1000`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

const UNITS: [(char, u32); 4] = [('T', 40), ('G', 30), ('M', 20), ('K', 10)];

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, shift) in UNITS {
            if self.0 != 0 && self.0.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{} bytes", self.0)
    }
}

/// Why a size does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{value:?} is not a size: a number of bytes, optionally followed by K, M, G or T (powers of 1024)")]
pub struct SizeError {
    pub value: String,
}

/// A size in bytes: `1073741824`, `512M`, `1G` (also `1GiB`, `1g`).
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let error = || SizeError { value: text.to_owned() };
    let trimmed = text.trim();
    let digits = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits);
    let number: u64 = number.parse().map_err(|_| error())?;
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit.strip_suffix("IB").or_else(|| unit.strip_suffix('B')).unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        _ => UNITS.iter().find(|(u, _)| unit.len() == 1 && unit.starts_with(*u)).ok_or_else(error)?.1,
    };
    number.checked_mul(1 << shift).ok_or_else(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("2 g").unwrap(), 2 << 30);
        assert_eq!(parse_size("3KB").unwrap(), 3 << 10);
        for bad in ["", "M", "1X", "-1", "1.5G", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(Size(64 << 20).to_string(), "64M");
        assert_eq!(Size(1 << 30).to_string(), "1G");
        assert_eq!(Size(1000).to_string(), "1000 bytes");
        assert_eq!(parse_size(&Size(5 << 40).to_string()).unwrap(), 5 << 40);
    }

    #[test]
    fn rlimits_cover_only_what_the_cgroup_does_not() {
        let limits = Limits { processes: Some(10), memory: Some(1 << 20), tmp_size: None, use_cgroups: true };
        assert_eq!(limits.rlimits(&[Controller::Pids, Controller::Memory]), vec![]);
        assert_eq!(limits.rlimits(&[Controller::Memory]), vec![(Resource::RLIMIT_NPROC, 10)]);
        assert_eq!(
            limits.rlimits(&[]),
            vec![(Resource::RLIMIT_NPROC, 10), (Resource::RLIMIT_DATA, 1 << 20)]
        );
        assert_eq!(Limits::none().rlimits(&[]), vec![]);
        assert!(wanted_controllers(&Limits { use_cgroups: false, ..limits }).is_empty());
    }
}
