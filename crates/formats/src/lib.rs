//! drv's formats layer: Nix's data formats, pure.
//!
//! Layer 1 of 6 (docs/architecture.md, "Layers"), with drv-sandbox and
//! drv-python beside it; it uses no drv crate.
//!
//! The bottom layer: store paths and store directories, sha256 and its
//! spellings (nixbase32, base16, SRI), NAR archives, derivations (ATerm and
//! their JSON), narinfo files and signing keys. No I/O but reading and
//! writing the trees being archived ([`nar::dump_path`], [`nar::restore`]).
//! It may use cachix's `nix-derivation`, `nix-archive` and `nix-narinfo`
//! (and is the only crate of drv that does, so a change of those crates
//! stays here), `sha2`, `base64`, `ed25519-dalek`, `getrandom` (new keys),
//! `serde_json`, `thiserror`, and `rustix`'s `fs` calls for the NAR walk;
//! never drv's other crates, SQLite, HTTP, async runtimes or the sandbox
//! (`tests/layers.rs` checks).
//!
//! Everything is re-exported at the root, except the NAR functions, which
//! read best with their module's name: `nar::dump_path`, `nar::restore`.

mod derivation;
mod error;
mod hash;
pub mod nar;
mod narinfo;
mod path;

#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz;

pub use derivation::{Derivation, DerivationBuilder, DerivationHash, DerivationOutput};
pub use error::FormatError;
pub use hash::{nixbase32, HashEncoding, Sha256, Sha256Writer};
pub use nar::NarHash;
pub use narinfo::{canonical_signature, NarInfo, PublicKey, SecretKey, MAX_NARINFO_SIZE};
pub use path::{ContentAddress, NameProblem, StoreDir, StorePath, DEFAULT_STORE_DIR};
