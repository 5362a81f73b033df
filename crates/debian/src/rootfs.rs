//! TODO (rootfs helper): interface stub the store's builtin is written against.
use std::path::{Path, PathBuf};

/// Version of the tree layout: part of every toolchain derivation, so a
/// change in how `.deb`s are assembled changes the toolchain's path.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("not implemented")]
    Todo,
}

pub struct AssembleOptions {
    pub jobs: usize,
}

pub struct PackageId {
    pub name: String,
    pub version: String,
    pub architecture: String,
}

pub struct Assembled {
    pub packages: Vec<PackageId>,
    pub files: u64,
    pub bytes: u64,
}

pub fn assemble(_debs: &[PathBuf], _out: &Path, _options: &AssembleOptions) -> Result<Assembled, RootfsError> {
    Err(RootfsError::Todo)
}
