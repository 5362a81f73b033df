//! Link `drv` as a position-dependent executable.
//!
//! Why: a command that finds nothing to do is over in a few milliseconds,
//! and a PIE spends a tenth of that applying ~13,000 relative relocations at
//! start-up (and copying the pages they touch). The code is still compiled
//! position-independent; the linker resolves those relocations once.
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
