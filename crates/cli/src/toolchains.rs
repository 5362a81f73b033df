//! The host's toolchains for evaluation: Debian packages imported into the
//! store (see `drv_store::toolchain`), cached by their exact versions.

use drv_eval::ToolchainProvider;
use drv_store::{import_toolchain, DebianPackages, LocalStore, StorePath};

pub struct HostToolchains {
    packages: DebianPackages,
}

impl Default for HostToolchains {
    fn default() -> Self {
        Self { packages: DebianPackages::host() }
    }
}

impl ToolchainProvider for HostToolchains {
    fn toolchain(&mut self, store: &mut LocalStore, packages: &[String]) -> Result<StorePath, String> {
        import_toolchain(store, &self.packages, packages).map_err(|e| e.to_string())
    }
}
