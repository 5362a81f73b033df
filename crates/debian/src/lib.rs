//! drv's Debian layer: pinned toolchains from Debian's archive.
//!
//! Layer 2 of 6 (docs/architecture.md, "Layers"): it may use drv-python
//! (the Python part of `drv.lock`) and nothing above; no SQLite, no HTTP.
//!
//! Pure parsing and resolution, plus the file-system work of unpacking
//! `.deb`s; nothing here touches the network, the store or the host's dpkg
//! database. The store's builtin builder and `drv lock` sit above it.
//!
//! - [`control`]: deb822 paragraphs (`Packages`, `Release`, `control`),
//!   borrowed from the text.
//! - [`relation`]: `Depends`-style relation fields; versions compare with
//!   dpkg's ordering through `debversion`.
//! - [`release`]: `Release`/`InRelease` files: fields and the sha256 of
//!   each index they list (the signature is the caller's to check).
//! - [`resolve`]: an [`resolve::Index`] of `Packages` stanzas from one or
//!   more repositories, and [`resolve::resolve`], closing requested package
//!   names over `Depends` and `Pre-Depends` into [`lock::LockedPackage`]s.
//! - [`lock`]: the lock file (`drv.lock`): what was resolved, pinned by
//!   sha256; the only thing evaluation reads.
//! - [`deb`]: reading one `.deb` (deb(5): `ar`, `control.tar`,
//!   `data.tar[.gz|.xz|.zst]`): [`deb::Deb::open`] gives the control fields,
//!   [`deb::Deb::data`] streams the uncompressed `data.tar`.
//! - [`rootfs`]: [`rootfs::assemble`] unpacks `.deb`s, in parallel, into a
//!   new toolchain root file system without maintainer scripts (merged
//!   `/usr`, no documentation, the links those scripts would make declared
//!   in [`rootfs::DECLARED_LINKS`]), then checks that every symlink and
//!   every ELF file's libraries resolve inside it.

pub mod control;
pub mod deb;
pub mod lock;
pub mod relation;
pub mod release;
pub mod resolve;
pub mod rootfs;

#[cfg(test)]
mod test_debs;
