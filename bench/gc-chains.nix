# CHAINS chains of LEN text paths, each referring to the one before (the
# garbage-collection benchmark, bench/gc.sh); crates/store/examples/
# gc_bench_store.rs makes the same paths, byte for byte, in drv.
{ prefix, chains, len }:
let
  chain = c: builtins.foldl'
    (prev: i: builtins.toFile "${prefix}-${toString c}-${toString i}" "${prefix} ${toString c} ${toString i} ${prev}")
    "" (builtins.genList (i: i) len);
in builtins.genList chain chains
