#!/usr/bin/env bash
# NAR dump+hash throughput, side by side with Nix, in one run.
#
#   bench/nar-hash.sh            # prints a markdown table (hyperfine)
#
# The tree is a copy of a Python installation's standard library (with its
# bytecode caches): many small files plus a few large ones, topped up to
# about 200 MB with further copies. Needs: cargo, hyperfine, nix-bin, openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
TREE=${BENCH_TREE:-/tmp/drv-bench/python-tree}
TARGET_MB=${TARGET_MB:-200}

cargo build --release --quiet -p drv-cli
DRV=$PWD/target/release/drv

if [ ! -d "$TREE" ]; then
  stdlib=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
  mkdir -p "$TREE"
  i=0
  while [ "$(du -sm "$TREE" | cut -f1)" -lt "$TARGET_MB" ]; do
    # the standard library without third-party packages, copy by copy
    rsync -a --exclude site-packages --exclude dist-packages "$stdlib/" "$TREE/copy$i/" 2>/dev/null \
      || { mkdir -p "$TREE/copy$i"; (cd "$stdlib" && tar cf - --exclude=site-packages --exclude=dist-packages .) | (cd "$TREE/copy$i" && tar xf -); }
    i=$((i + 1))
  done
fi
files=$(find "$TREE" -type f | wc -l)
size=$(du -sm "$TREE" | cut -f1)
nar=$(dirname "$TREE")/tree.nar
"$DRV" store dump "$TREE" > "$nar"
echo "tree: $TREE, $size MB on disk, $files files, NAR $(($(stat -c %s "$nar") / 1048576)) MiB" >&2
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), SHA extensions: $(grep -qw sha_ni /proc/cpuinfo && echo yes || echo no)" >&2

# All from the page cache: each command runs warm. Medians are printed too:
# on two shared cores a single preempted run skews a mean.
json=$(mktemp)
hyperfine --warmup 3 --runs "${RUNS:-30}" --style basic --export-json "$json" --export-markdown "${OUT:-/dev/stdout}" \
  -n 'drv hash path' "$DRV hash path $TREE" \
  -n 'nix-hash --type sha256' "nix-hash --type sha256 $TREE" \
  -n 'drv store dump | sha256sum' "$DRV store dump $TREE | sha256sum" \
  -n 'nix-store --dump | sha256sum' "nix-store --dump $TREE | sha256sum" \
  -n 'openssl dgst -sha256 (NAR file; hashing floor)' "openssl dgst -sha256 $nar"

python3 - "$json" <<'PY'
import json, sys
rs = json.load(open(sys.argv[1]))["results"]
med = {r["command"]: r["median"] * 1000 for r in rs}
for name, m in med.items():
    print(f"median {m:7.1f} ms  {name}", file=sys.stderr)
ratio = med["drv hash path"] / med["nix-hash --type sha256"]
print(f"drv hash path / nix-hash (medians): {ratio:.2f}x (target <= 0.60x)", file=sys.stderr)
PY
rm -f "$json"
