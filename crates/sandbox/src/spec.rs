//! What a build is run with: the [`SandboxSpec`], its inputs, and the
//! circumstances ([`Conditions`]) the builder sees.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::limits::Limits;

/// The builder's uid inside the sandbox; the caller's uid maps to it.
pub const BUILD_UID: u32 = 1000;
/// The builder's gid inside the sandbox; the caller's gid maps to it.
pub const BUILD_GID: u32 = 100;
/// The builder's user name in the sandbox's `/etc/passwd`.
pub const BUILD_USER: &str = "drvbld";
/// Where the build directory appears, and the builder's working directory.
pub const BUILD_DIR: &str = "/build";

/// The build's circumstances that no derivation names: drv fixes each of
/// them ([`Conditions::default`], see docs/reproducibility.md), so that a
/// build cannot depend on the machine or the caller; `drv build --check
/// --vary` changes them one at a time to find what a build depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conditions {
    /// The build directory's path inside the sandbox (its working
    /// directory): [`BUILD_DIR`].
    pub build_dir: PathBuf,
    /// Which file system holds the build directory.
    pub build_dir_fs: BuildDirFs,
    /// The builder's uid, gid and user name (in `/etc/passwd`).
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    /// The UTS namespace's host and domain names.
    pub hostname: String,
    pub domainname: String,
    /// The builder's umask.
    pub umask: u32,
    /// Run the builder on at most this many of the CPUs the caller may use
    /// (its scheduler affinity, what `nproc` reports); `None`: all of them.
    pub cpus: Option<usize>,
}

impl Default for Conditions {
    fn default() -> Self {
        Conditions {
            build_dir: PathBuf::from(BUILD_DIR),
            build_dir_fs: BuildDirFs::Tmpfs,
            uid: BUILD_UID,
            gid: BUILD_GID,
            user: BUILD_USER.to_owned(),
            hostname: "localhost".to_owned(),
            domainname: "(none)".to_owned(),
            umask: 0o022,
            cpus: None,
        }
    }
}

/// Where the build directory's files live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BuildDirFs {
    /// A fresh tmpfs of the sandbox's own, whatever file system holds the
    /// store: the order in which a directory lists its entries (creation
    /// order on tmpfs, a hash order on ext4, …) is then the same on every
    /// machine with the same kernel. Its files are gone after the build.
    #[default]
    Tmpfs,
    /// The caller's [`SandboxSpec::build_dir`] itself, on whatever file
    /// system holds it; what is left there survives the build
    /// (`--keep-failed`).
    Host,
}

/// How a build is isolated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Isolation {
    /// Linux namespaces and a fresh root (the default).
    #[default]
    Namespaces,
    /// No isolation (`--no-sandbox`): the builder runs on the host with the
    /// same clean environment, in the physical build directory, and sees
    /// the physical paths of inputs and outputs; the caller must compose
    /// the arguments and environment with [`SandboxSpec::host_path`]. The
    /// builder path is translated the same way. Never chosen implicitly.
    None,
}

/// A store path the build reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// Where its files are on the host (`ROOT/store/<hash>-<name>`).
    pub physical: PathBuf,
    /// Its path in the logical store directory (`/store/<hash>-<name>`).
    pub logical: PathBuf,
}

/// One build to run. See the module documentation for the file system
/// the builder sees and the outputs contract.
#[derive(Clone, Debug)]
pub struct SandboxSpec {
    /// The program to execute, as the builder sees it (an absolute path
    /// inside the sandbox, e.g. `/store/…-bash/bin/bash` or `/bin/sh`).
    pub builder: PathBuf,
    /// Arguments after argv\[0\] (which is `builder`).
    pub args: Vec<OsString>,
    /// The builder's entire environment, in this order; nothing is added
    /// (not even `PATH` or `HOME`) and nothing of the host's leaks in.
    pub env: Vec<(OsString, OsString)>,
    /// The logical store directory (`/store`); every input and output is a
    /// direct child of it.
    pub store_dir: PathBuf,
    /// Store paths visible read-only: the closure of the build's inputs.
    pub inputs: Vec<Input>,
    /// Logical paths of the outputs the builder creates.
    pub outputs: Vec<PathBuf>,
    /// An existing, empty host directory that the builder sees as the
    /// store directory, writable; the outputs are found here afterwards.
    pub scratch_store: PathBuf,
    /// An existing host directory, which the caller creates and removes.
    /// With [`BuildDirFs::Host`] it is the build directory the builder
    /// sees, so what the build leaves there survives it; with the default
    /// [`BuildDirFs::Tmpfs`] it only serves as the sandbox's mount point.
    pub build_dir: PathBuf,
    /// A tree (usually a store path) with `usr/`, `bin -> usr/bin`, `lib`,
    /// `etc/`…, whose top-level entries appear read-only at `/`. Entries
    /// named `build`, `tmp`, `dev`, `proc`, `homeless-shelter` or like the
    /// store directory's first component are not used; `etc/` is merged
    /// one level deep under the sandbox's own `/etc` files.
    pub toolchain: Option<PathBuf>,
    /// Share the host's network (fixed-output fetches only).
    pub network: bool,
    pub isolation: Isolation,
    /// Kill the build after this long ([`SandboxError::TimedOut`]).
    pub timeout: Option<Duration>,
    /// What the build may take of the host (see [`Limits`]).
    pub limits: Limits,
    /// The circumstances the builder sees (namespaced builds only).
    pub conditions: Conditions,
}

impl SandboxSpec {
    /// A spec with no arguments, environment, inputs, outputs or toolchain,
    /// no network, namespaced, without timeout, with drv's default
    /// [`Limits`].
    pub fn new(
        builder: impl Into<PathBuf>,
        store_dir: impl Into<PathBuf>,
        scratch_store: impl Into<PathBuf>,
        build_dir: impl Into<PathBuf>,
    ) -> Self {
        SandboxSpec {
            builder: builder.into(),
            args: Vec::new(),
            env: Vec::new(),
            store_dir: store_dir.into(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            scratch_store: scratch_store.into(),
            build_dir: build_dir.into(),
            toolchain: None,
            network: false,
            isolation: Isolation::Namespaces,
            timeout: None,
            limits: Limits::default(),
            conditions: Conditions::default(),
        }
    }

    /// Where a path the builder sees is on the host: inside an input, its
    /// physical path; inside an output, under `scratch_store`; the build
    /// directory's path under `build_dir`; anything else unchanged.
    pub fn host_path(&self, path: &Path) -> PathBuf {
        for input in &self.inputs {
            if let Ok(rest) = path.strip_prefix(&input.logical) {
                return join_rest(&input.physical, rest);
            }
        }
        for output in &self.outputs {
            if let (Ok(rest), Some(name)) = (path.strip_prefix(output), output.file_name()) {
                return join_rest(&self.scratch_store.join(name), rest);
            }
        }
        if let Ok(rest) = path.strip_prefix(&self.conditions.build_dir) {
            return join_rest(&self.build_dir, rest);
        }
        path.to_owned()
    }
}

fn join_rest(base: &Path, rest: &Path) -> PathBuf {
    if rest.as_os_str().is_empty() {
        base.to_owned()
    } else {
        base.join(rest)
    }
}
