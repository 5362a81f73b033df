#!/usr/bin/env bash
# Garbage collection, side by side with Nix, in one run.
#
#   bench/gc.sh            # prints a markdown table (hyperfine)
#
# Both stores hold the same paths: CHAINS chains of LEN text paths (each
# referring to the one before) that explicit roots keep alive, and as many
# dead ones, recreated before each measured run (hyperfine --prepare).
# drv's store is made by crates/store/examples/gc_bench_store.rs, Nix's by
# bench/gc-chains.nix (builtins.toFile) with store dir /store and files in a
# scratch folder (tests/fixtures/nix-vectors/README.md). Needs: cargo,
# hyperfine, nix-bin.
set -euo pipefail
cd "$(dirname "$0")/.."
CHAINS=${CHAINS:-100}
LEN=${LEN:-100}
RUNS=${RUNS:-3}
WORK=${BENCH_DIR:-/tmp/drv-bench/gc}

cargo build --release --quiet -p drv-cli
cargo build --release --quiet -p drv-store --example gc_bench_store
DRV=$PWD/target/release/drv
MAKE=$PWD/target/release/examples/gc_bench_store
NIXEXPR=$PWD/bench/gc-chains.nix

rm -rf "$WORK"
mkdir -p "$WORK/nix/conf"
cp tests/fixtures/nix-vectors/nix.conf "$WORK/nix/conf/"
N=$WORK/nix
export NIX_CONF_DIR=$N/conf NIX_STORE_DIR=/store NIX_STATE_DIR=$N/state NIX_LOG_DIR=$N/log \
  NIX_REMOTE= NIX_PATH= XDG_CACHE_HOME=$N/xdgcache
STORE="local?store=/store&state=$N/state&log=$N/log&real=$N/real"
nix_chains() { # PREFIX: prints the heads as JSON
  nix-instantiate --store "$STORE" --eval --strict --read-write-mode --json "$NIXEXPR" \
    --argstr prefix "$1" --arg chains "$CHAINS" --arg len "$LEN"
}

# The live halves, rooted: explicit roots in both.
"$MAKE" "$WORK/drv" live "$CHAINS" "$LEN" --root > "$WORK/drv-heads"
nix_chains live | python3 -c '
import json, os, sys
for c, head in enumerate(json.load(sys.stdin)):
    os.symlink(head, os.path.join(sys.argv[1], f"live-{c}"))' "$N/state/gcroots"
cmp <(sort "$WORK/drv-heads") <(ls -l "$N/state/gcroots" | grep -o '/store/.*' | sort) \
  || { echo "the two stores differ" >&2; exit 1; }

json=$(mktemp)
hyperfine --runs "$RUNS" --style basic --export-json "$json" --export-markdown "${OUT:-/dev/stdout}" \
  -n "drv gc" --prepare "$MAKE $WORK/drv dead $CHAINS $LEN > /dev/null; sync" "$DRV --root $WORK/drv gc" \
  -n "nix-store --gc" --prepare "nix-instantiate --store '$STORE' --eval --strict --read-write-mode --json $NIXEXPR --argstr prefix dead --arg chains $CHAINS --arg len $LEN > /dev/null; sync" \
  "nix-store --store '$STORE' --gc"

# Same result: only the live halves remain.
drv_left=$("$DRV" --root "$WORK/drv" gc --print-live | wc -l)
nix_left=$(nix-store --store "$STORE" --gc --print-live 2>/dev/null | wc -l)
echo "left after collecting: drv $drv_left paths, nix $nix_left paths (expected $((CHAINS * LEN)))" >&2

python3 - "$json" <<'PY'
import json, sys
rs = json.load(open(sys.argv[1]))["results"]
med = {r["command"]: r["median"] * 1000 for r in rs}
for name, m in med.items():
    print(f"median {m:9.1f} ms  {name}", file=sys.stderr)
print(f"nix-store --gc / drv gc (medians): {med['nix-store --gc'] / med['drv gc']:.1f}x (target >= 10x)", file=sys.stderr)
PY
rm -f "$json"
