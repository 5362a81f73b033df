//! Make a closure for the binary-cache benchmark (`bench/cache.sh`): each
//! directory given is added to the store under `--root DIR`, and each path
//! refers to the one before it (the chain of references a real closure
//! has), so the last one printed has all of them in its closure.
//!
//! `cargo run --release -p drv-store --example cache_closure -- --root DIR PART...`

use std::collections::BTreeSet;
use std::path::PathBuf;

use drv_formats::{nar, Sha256, StoreDir, StorePath};
use drv_store::LocalStore;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 || args[0] != "--root" {
        return Err("usage: cache_closure --root DIR PART...".into());
    }
    let root = PathBuf::from(args.remove(1));
    args.remove(0);
    let mut store = LocalStore::open(&root, StoreDir::default())?;
    let mut previous: Option<StorePath> = None;
    for (i, part) in args.iter().enumerate() {
        let staging = store.staging()?;
        let dest = staging.path();
        drv_store::copy_as_nar(std::path::Path::new(part), &dest)?;
        // The reference is written into the tree, as a build would.
        let refs: BTreeSet<StorePath> = previous.iter().cloned().collect();
        if let Some(p) = &previous {
            std::fs::write(dest.join(".drv-previous"), store.display(p))?;
        }
        let nar_hash = nar::hash_path(&dest)?;
        // Input-addressed, like build outputs: the name's hash is arbitrary.
        let digest = Sha256::digest(format!("bench-{i}-{}", nar_hash.sha256).as_bytes());
        let name = drv_formats::nixbase32::encode(&digest.0[..20]);
        let path = StorePath::from_basename(&format!("{name}-part{i}"))?;
        let locks = store.lock_paths([path.clone()])?;
        let mut new = drv_store::NewPath::new(path.clone(), staging, nar_hash);
        new.references = refs;
        store.add_valid(&locks, vec![new], None)?;
        println!("{}", store.display(&path));
        previous = Some(path);
    }
    Ok(())
}
