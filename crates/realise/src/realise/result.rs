//! What a realisation did, derivation by derivation, in Nix's terms.

use std::collections::BTreeMap;

use drv_formats::StorePath;

use super::BuildError;
use crate::vary::VaryReport;

/// How the realisation of one derivation ended: the statuses of Nix's
/// `BuildResult` (src/libstore/build-result.hh) that drv has, spelled as
/// Nix spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum BuildStatus {
    /// Built (or, for a download, fetched) by this realisation.
    Built,
    /// Its outputs were taken from a binary cache.
    Substituted,
    /// Its outputs were valid before; nothing was done.
    AlreadyValid,
    /// Its build failed.
    Failed,
    /// Not started: a derivation it needs failed.
    DependencyFailed,
    /// `--check`: a rebuild gave other bits than the registered outputs.
    NotDeterministic,
}

impl BuildStatus {
    /// Whether the derivation's outputs are valid afterwards.
    pub fn is_success(self) -> bool {
        matches!(self, BuildStatus::Built | BuildStatus::Substituted | BuildStatus::AlreadyValid)
    }

    /// The status a failure `error` gives.
    pub(crate) fn of_error(error: &BuildError) -> Self {
        match error {
            BuildError::DependencyFailed { .. } => BuildStatus::DependencyFailed,
            BuildError::NotDeterministic { .. } | BuildError::NotReproducible { .. } => BuildStatus::NotDeterministic,
            _ => BuildStatus::Failed,
        }
    }
}

impl std::fmt::Display for BuildStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// The result of one derivation of a realisation.
#[derive(Debug)]
pub struct BuildResult {
    pub drv_path: StorePath,
    pub status: BuildStatus,
    /// Its outputs by name: those that were wanted of a derivation found
    /// valid (a target's: all); all of one that was built (a build makes
    /// every output) or failed.
    pub outputs: BTreeMap<String, StorePath>,
    /// Why it failed, for the failing statuses.
    pub error: Option<BuildError>,
}

/// What a realisation did: one [`BuildResult`] per derivation it looked
/// at (the targets and, below them, every derivation whose outputs were
/// not valid), in the order they were decided. Nix's
/// `buildPathsWithResults` returns the same list; Nix's word
/// "realisation" names another thing (a content-addressed output's path).
#[derive(Debug, Default)]
pub struct BuildResults {
    pub results: Vec<BuildResult>,
    /// Store paths downloaded from binary caches (more than the
    /// derivations marked [`BuildStatus::Substituted`]: their closures).
    pub substituted_paths: usize,
    /// With `check` and `vary`: what each rebuilt derivation depends on,
    /// in the order of their derivation paths.
    pub vary_reports: Vec<VaryReport>,
}

impl BuildResults {
    /// The results with `status`.
    pub fn with_status(&self, status: BuildStatus) -> impl Iterator<Item = &BuildResult> {
        self.results.iter().filter(move |r| r.status == status)
    }

    /// How many results have `status`.
    pub fn count(&self, status: BuildStatus) -> usize {
        self.with_status(status).count()
    }

    /// The results that failed, in order.
    pub fn failures(&self) -> impl Iterator<Item = &BuildResult> {
        self.results.iter().filter(|r| !r.status.is_success())
    }

    /// The result of `drv_path`, if it was looked at.
    pub fn result(&self, drv_path: &StorePath) -> Option<&BuildResult> {
        self.results.iter().find(|r| &r.drv_path == drv_path)
    }
}
