//! The host's toolchains for evaluation: Debian packages imported into the
//! store (see `drv_store::toolchain`), cached by their exact versions.

use std::collections::BTreeMap;

use drv_eval::ToolchainProvider;
use drv_store::{import_toolchain, DebianPackages, LocalStore, StorePath};

pub struct HostToolchains {
    packages: DebianPackages,
    /// Recipes of one evaluation mostly share their toolchain.
    seen: BTreeMap<Vec<String>, StorePath>,
}

impl Default for HostToolchains {
    fn default() -> Self {
        Self { packages: DebianPackages::host(), seen: BTreeMap::new() }
    }
}

impl ToolchainProvider for HostToolchains {
    fn toolchain(&mut self, store: &mut LocalStore, packages: &[String]) -> Result<StorePath, String> {
        if let Some(p) = self.seen.get(packages) {
            return Ok(p.clone());
        }
        let p = import_toolchain(store, &self.packages, packages).map_err(|e| e.to_string())?;
        self.seen.insert(packages.to_vec(), p.clone());
        Ok(p)
    }
}
