#!/usr/bin/env bash
# Realising the showcase's toolchain from .debs already in the store
# (`drv build` of its builtin:debian-rootfs derivation: unpack every .deb,
# merged /usr, declared links, symlink and library checks, canonicalise,
# NAR hash, register), side by side with `dpkg-deb -x` of the same .deb
# files run in parallel into fresh directories, on the same cores, in one
# run.
#
#   bench/toolchain-unpack.sh [RECIPE]
#
# RECIPE defaults to recipes/hello.toml (the showcase's toolchain: gcc,
# make, coreutils, … 71 packages of recipes/drv.lock). The .debs are
# downloaded once, through the machine's mirrors, into a temporary store
# and kept there by GC roots; before each timed drv run the toolchain is
# collected (not timed). JOBS (default: nproc) sets dpkg-deb's parallelism
# (drv uses all cores, as `--cores 0`); RUNS the number of timed runs.
# Needs: cargo, dpkg-deb, hyperfine (`apt-get install hyperfine`).
# Target: drv <= 1.5x dpkg-deb.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
RUNS=${RUNS:-10}
RECIPE=${1:-recipes/hello.toml}

work=$(mktemp -d "${TMPDIR:-/tmp}/drv-unpack-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

cargo build --release --quiet -p drv-cli
drv="$PWD/target/release/drv --root $work/root"

# The toolchain's derivation and its .deb downloads, from the evaluation.
$drv eval --json "$RECIPE" > "$work/eval.json"
python3 - "$work/eval.json" > "$work/toolchain" <<'PY'
import json, sys
ds = json.load(open(sys.argv[1]))["derivations"]
[t] = [p for p, d in ds.items() if d["name"].endswith("-toolchain")]
print(t)
for p, d in ds.items():
    if d["name"].endswith(".deb"):
        print(d["outputs"]["out"])
PY
toolchain=$(head -1 "$work/toolchain")
$drv build --no-link "$toolchain" >/dev/null 2>&1
$drv root add toolchain-drv "$toolchain" >/dev/null
i=0
for deb in $(tail -n +2 "$work/toolchain"); do
  $drv root add "deb-$i" "$deb" >/dev/null; i=$((i + 1))
done
real_debs=$(tail -n +2 "$work/toolchain" | sed "s|^|$work/root|")
echo "$i .debs, $(du -cm $real_debs | tail -1 | cut -f1) MB; CPUs: $(nproc)" >&2

dpkg_cmd="rm -rf $work/dpkg && mkdir $work/dpkg && printf '%s\n' $(echo $real_debs) \
  | xargs -P$JOBS -I{} sh -c 'd=\$(mktemp -d -p $work/dpkg) && dpkg-deb -x \"\$1\" \"\$d\"' sh {}"

json=$work/results.json
# Medians: on shared cores a single preempted run skews a mean.
hyperfine --warmup 1 --runs "$RUNS" --style basic --export-json "$json" --export-markdown "${OUT:-/dev/stdout}" \
  --prepare "$drv gc >/dev/null 2>&1" -n "drv build (toolchain, .debs in the store)" "$drv build --no-link $toolchain" \
  --prepare "true" -n "dpkg-deb -x (xargs -P$JOBS)" "$dpkg_cmd"
python3 - "$json" <<'PY'
import json, sys
rs = json.load(open(sys.argv[1]))["results"]
med = [r["median"] for r in rs]
for r in rs:
    print(f"median {r['median'] * 1000:7.0f} ms  {r['command']}", file=sys.stderr)
print(f"drv / dpkg-deb (medians): {med[0] / med[1]:.2f}x (target <= 1.5x)", file=sys.stderr)
PY
