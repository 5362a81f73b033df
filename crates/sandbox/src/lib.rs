//! drv's sandbox layer: run one builder hermetically in Linux namespaces.
//!
//! Layer 1 of 6 (docs/architecture.md, "Layers"), with drv-formats and
//! drv-python beside it; it uses no drv crate.
//!
//! Below the local store, beside the formats: it knows no store paths,
//! derivations or databases, only the host paths and strings of a
//! [`SandboxSpec`] (the caller turns a derivation into one), so it needs
//! nothing of drv-formats. It may use `nix` and `rustix` (namespaces,
//! mounts, `clone`, `prctl`, cgroups, rlimits) and `thiserror`; never
//! drv-store or a crate above it, SQLite or HTTP (`tests/layers.rs`
//! checks).
//!
//! [`run`] executes a [`SandboxSpec`]'s builder in new user, mount, PID,
//! network, UTS and IPC namespaces, as root or as an unprivileged user
//! (only the caller's own uid and gid are mapped, which needs no
//! privilege). [`check_namespaces`] says up front whether the kernel
//! allows that. [`Isolation::None`] is the explicit `--no-sandbox` mode.
//!
//! # What the builder sees
//!
//! | path | contents |
//! |---|---|
//! | `STORE/<hash>-<name>` per input | the input, bind-mounted read-only from its physical path |
//! | `STORE` (e.g. `/store`) | the caller's scratch store directory, writable: outputs are created here |
//! | `/build` | a fresh tmpfs, writable, mode 0700; the working directory (with [`BuildDirFs::Host`], the caller's build directory instead) |
//! | `/tmp`, `/dev/shm` | fresh tmpfs, each of [`Limits::tmp_size`] |
//! | `/dev` | `null zero full random urandom tty` from the host; `fd`, `stdin`, `stdout`, `stderr` links to `/proc/self/fd` |
//! | `/proc` | a new procfs for the build's PID namespace |
//! | `/etc` | `passwd`, `group` (the build user and `nobody`), `hosts` (localhost); the toolchain's `etc/*` |
//! | `/usr`, `/bin`, `/lib`, … | the toolchain's top-level entries, read-only (its symlinks stay symlinks) |
//!
//! Nothing else of the host exists; the root itself is read-only. The
//! builder runs as uid [`BUILD_UID`] / gid [`BUILD_GID`] ([`BUILD_USER`], as
//! Nix's sandbox does), with no capabilities and `no_new_privs`; the host
//! name is `localhost`, the domain name `(none)`; the network namespace has
//! only `lo`, up. With [`SandboxSpec::network`] (fixed-output fetches) the
//! host's network namespace is shared instead, with the host's
//! `/etc/resolv.conf`, `/etc/hosts`, `/etc/services` and `/etc/ssl/certs`.
//!
//! # Outputs
//!
//! A builder creates each output itself, as a file or a directory, at its
//! logical path (`$out` does not exist beforehand, as in Nix). So the store
//! directory the builder sees must be writable, and it is a bind of one
//! caller-provided, empty **scratch store directory** (put it on the store's
//! file system, e.g. `ROOT/store/.tmp-build-…`, so outputs can be renamed
//! into place). After [`run`] returns, the output with logical path
//! `STORE/<b>` is at `scratch_store/<b>` on the host
//! ([`SandboxSpec::host_path`]), owned by the caller; `run` does not
//! check that the builder created it. Inputs appear in the scratch store
//! only as mount points during the build; `run` removes them afterwards.
//! The builder cannot modify an input (read-only mounts) nor the real
//! store (not mounted); anything else it leaves in the scratch store is a
//! hermeticity violation, and `run` fails with
//! [`SandboxError::StrayStoreEntries`] naming it.
//!
//! # Processes and killing
//!
//! The builder is PID 2; PID 1 is a small init that reaps orphans and
//! exits as soon as the builder does, which kills every process left in the
//! namespace. If the drv process dies (even by SIGKILL), parent-death
//! signals kill the sandbox's processes, and with them the namespace. The
//! process that calls [`run`] must keep the calling thread alive until it
//! returns (the parent-death signal follows the thread).
//!
//! # Limits
//!
//! [`SandboxSpec::limits`] bounds the build's processes, memory and
//! temporary space, through a cgroup per build when drv may create one and
//! rlimits otherwise; [`limit_notes`] says what cannot be applied here and
//! [`limits`'s documentation](Limits) what each mechanism holds. A build
//! that fails after reaching a limit is [`SandboxError::LimitExceeded`].
//!
//! # Pieces for other namespaces
//!
//! [`Step`]s (with [`DEVICES`] and [`DEVICE_LINKS`]) are how a root is
//! assembled here; `drv run`'s mount namespaces (`--root` stores,
//! `--isolated`) plan theirs with them and enter them with [`enter_root`]
//! (a [`RootPlan`]), so the binary has one mount-namespace implementation.

mod cgroup;
mod child;
mod error;
mod limits;
mod plan;
mod run;
mod spec;
mod view;

pub use error::{Result, SandboxError};
pub use limits::{limit_notes, parse_size, LimitHit, Limits, Size, SizeError, DEFAULT_MAX_PROCESSES, DEFAULT_TMP_SIZE};
pub use plan::{Step, DEVICES, DEVICE_LINKS};
pub use run::{check_namespaces, run, MAX_ARG_STRLEN};
pub use view::{enter_root, own_id_maps, RootPlan};
pub use spec::{BuildDirFs, Conditions, Input, Isolation, SandboxSpec, BUILD_DIR, BUILD_GID, BUILD_UID, BUILD_USER};
