//! Derivations read once: what evaluation made, or a `.drv` file read from
//! the store the first time a realisation needs it, shared by every stage
//! after (substitution, planning, each build's inputs, the CLI's report).

use std::collections::BTreeMap;
use std::fs;
use std::sync::{Arc, Mutex};

use drv_formats::{Derivation, StorePath};
use drv_store::{LocalStore, StoreError};

/// Validated derivations by `.drv` path (see [`Derivation`]: outputs
/// known, nothing fallible left to ask). Shared between threads.
#[derive(Debug, Default)]
pub struct Derivations {
    known: Mutex<BTreeMap<StorePath, Arc<Derivation>>>,
}

impl Derivations {
    /// None known yet: each is read from the store when first asked for.
    pub fn new() -> Self {
        Self::default()
    }

    /// Those evaluation made, so that none is read back from disk.
    pub fn from_evaluated(derivations: impl IntoIterator<Item = (StorePath, Derivation)>) -> Self {
        let known = derivations.into_iter().map(|(p, d)| (p, Arc::new(d))).collect();
        Self { known: Mutex::new(known) }
    }

    /// The derivation at `drv_path`, which must be valid in `store`: the
    /// one known, else read from its file and parsed (once).
    ///
    /// # Errors
    /// [`StoreError::NotValid`] if `drv_path` is not valid;
    /// [`StoreError::Io`] or [`StoreError::Format`] if its file cannot be
    /// read or is not a derivation drv supports.
    pub fn get(&self, store: &LocalStore, drv_path: &StorePath) -> Result<Arc<Derivation>, StoreError> {
        if let Some(d) = self.lock().get(drv_path) {
            return Ok(d.clone());
        }
        let drv = Arc::new(read_derivation(store, drv_path)?);
        Ok(self.lock().entry(drv_path.clone()).or_insert(drv).clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<StorePath, Arc<Derivation>>> {
        // A panic elsewhere leaves the map whole: entries are only added.
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Read and parse a `.drv` that is valid in `store` (for one derivation;
/// a realisation goes through [`Derivations`]).
pub fn read_derivation(store: &LocalStore, drv_path: &StorePath) -> Result<Derivation, StoreError> {
    store.require_path_info(drv_path)?;
    let real = store.real_path(drv_path);
    let text = fs::read(&real).map_err(|e| StoreError::io(&real, e))?;
    Ok(Derivation::parse_file(store.store_dir(), drv_path, &text)?)
}
