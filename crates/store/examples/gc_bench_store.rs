//! Fill a store for the garbage-collection benchmark (`bench/gc.sh`):
//! CHAINS chains of LEN text paths, each referring to the one before,
//! byte for byte what `bench/gc-chains.nix` makes with `builtins.toFile`
//! in Nix, so both stores hold the same paths.
//!
//!     gc_bench_store ROOT PREFIX CHAINS LEN [--root]
//!
//! With `--root`, the head of chain `c` becomes the explicit root
//! `PREFIX-c`. Prints the heads.

use std::collections::BTreeSet;
use std::path::Path;

use drv_formats::{StoreDir, StorePath};
use drv_store::LocalStore;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, root, prefix, chains, len, rest @ ..] = args.as_slice() else {
        eprintln!("usage: gc_bench_store ROOT PREFIX CHAINS LEN [--root]");
        std::process::exit(2);
    };
    let (chains, len): (usize, usize) = (chains.parse().unwrap(), len.parse().unwrap());
    let add_roots = rest.iter().any(|a| a == "--root");
    let mut store = LocalStore::open(Path::new(root), StoreDir::default()).unwrap();
    for c in 0..chains {
        let mut prev: Option<StorePath> = None;
        for i in 0..len {
            let prev_text = prev.as_ref().map(|p| store.display(p)).unwrap_or_default();
            let text = format!("{prefix} {c} {i} {prev_text}");
            let refs: BTreeSet<StorePath> = prev.iter().cloned().collect();
            prev = Some(store.add_text(&format!("{prefix}-{c}-{i}"), text.as_bytes(), &refs).unwrap());
        }
        let head = prev.expect("LEN > 0");
        if add_roots {
            store.add_root(&format!("{prefix}-{c}"), &head).unwrap();
        }
        println!("{}", store.display(&head));
    }
}
