//! Time importing host packages as a toolchain into a temporary store:
//! `cargo run --release -p drv-store --example import_toolchain -- gcc-12 make`.
//! Prints the path, the cold and cached times, and the tree's size.
//! `--root DIR` imports into the store under DIR instead of a temporary one
//! (to look at the tree or `chroot` into it afterwards).

use std::time::Instant;

use drv_store::{import_toolchain, DebianPackages, LocalStore, StoreDir};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut names: Vec<String> = std::env::args().skip(1).collect();
    let temp = tempfile::tempdir()?;
    let root = match names.iter().position(|a| a == "--root") {
        Some(i) if i + 1 < names.len() => names.drain(i..i + 2).nth(1).map(std::path::PathBuf::from),
        Some(_) => return Err("--root needs a directory".into()),
        None => None,
    };
    let mut store = LocalStore::open(root.as_deref().unwrap_or(temp.path()), StoreDir::default())?;
    let pkgs = DebianPackages::host();

    let started = Instant::now();
    let resolved = pkgs.resolve(&names)?;
    let resolve_time = started.elapsed();

    let started = Instant::now();
    let path = import_toolchain(&mut store, &pkgs, &names)?;
    let cold = started.elapsed();

    let started = Instant::now();
    let again = import_toolchain(&mut store, &pkgs, &names)?;
    let cached = started.elapsed();
    assert_eq!(again, path);

    let info = store.require_path_info(&path)?;
    println!("{}", store.real_path(&path).display());
    println!("packages: {}", resolved.len());
    println!("resolve:  {resolve_time:?}");
    println!("cold:     {cold:?}");
    println!("cached:   {cached:?}");
    println!("NAR size: {:.1} MiB", info.nar_size as f64 / (1 << 20) as f64);
    Ok(())
}
