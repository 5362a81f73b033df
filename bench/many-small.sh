#!/usr/bin/env bash
# A cold build of many small derivations: N independent trivial
# derivations and one that depends on them all, from an empty store, drv
# against nix-build (Debian's nix-bin, sandboxed: its store's files live
# elsewhere, which forces Nix's sandbox), both with 2 jobs, in one run.
# Then where drv's time goes: evaluation alone (`drv eval`, which writes
# the .drv files), the toolchain (a build of one derivation), and the rest
# (N+1 builds: sandbox set-up, the builder, registration), of which the
# sandbox alone (drv-sandbox's examples/many_builds: the same builds with
# the same toolchain, without the store around them).
#
#   bench/many-small.sh        # N=200; needs hyperfine and nix-bin
#   BENCH_DIR=/dev/shm/many bench/many-small.sh   # stores on a tmpfs
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-200}
RUNS=${RUNS:-5}
WORK=${BENCH_DIR:-/tmp/drv-bench-many}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --quiet -p drv-cli
cargo build --release --quiet -p drv-sandbox --example many_builds
DRV=$CARGO_TARGET_DIR/release/drv
SANDBOX_ONLY=$CARGO_TARGET_DIR/release/examples/many_builds

rm -rf "$WORK"; mkdir -p "$WORK/recipes" "$WORK/runs"
# Runs are not deleted between measurements (see bench/cache.sh on this
# machine's ext4); all of $WORK goes at the end.
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT

# drv: leaf i writes its number; top depends on every leaf at build time.
cp tests/recipes/drv.lock "$WORK/recipes/"
export DRV_MIRROR_DEBIAN="file://$PWD/tests/fixtures/debian/debian"
export DRV_MIRROR_DEBIAN_SECURITY="file://$PWD/tests/fixtures/debian/debian-security"
deps=""
for i in $(seq 0 $((N - 1))); do
  cat > "$WORK/recipes/leaf$i.toml" <<R
name = "leaf$i"
version = "1"
[toolchain]
debian = ["dash", "coreutils"]
[build]
script = 'echo $i > \$out'
R
  deps="$deps\"leaf$i.toml\", "
done
cat > "$WORK/recipes/top.toml" <<R
name = "top"
version = "1"
[dependencies]
build = [$deps]
[toolchain]
debian = ["dash", "coreutils"]
[build]
script = 'echo done > \$out'
R
cat > "$WORK/recipes/one.toml" <<R
name = "one"
version = "1"
[toolchain]
debian = ["dash", "coreutils"]
[build]
script = 'echo one > \$out'
R

# Nix: the same graph with builtins.derivation (builder /bin/sh from the host).
export NIXREF="$WORK/nixref"
mkdir -p "$NIXREF/conf"
cp tests/fixtures/nix-vectors/nix.conf "$NIXREF/conf/"
echo "sandbox-paths = /bin /lib /lib64 /usr" >> "$NIXREF/conf/nix.conf"
. tests/fixtures/nix-vectors/env.sh
{
  echo "let"
  for i in $(seq 0 $((N - 1))); do
    echo "  leaf$i = derivation { name = \"leaf$i-1\"; system = \"x86_64-linux\"; builder = \"/bin/sh\"; args = [ \"-c\" \"echo $i > \$out\" ]; };"
  done
  printf '  top = derivation { name = "top-1"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo done > $out" ]; deps = "'
  for i in $(seq 0 $((N - 1))); do printf '${leaf%s} ' "$i"; done
  echo '"; };'
  echo "in top"
} > "$WORK/graph.nix"

fresh() { echo "\$(mktemp -d -p $WORK/runs)"; }
drv_cmd="d=$(fresh); $DRV --root \$d build --quiet -j 2 --cores 1 --no-link $WORK/recipes/top.toml > /dev/null"
eval_cmd="d=$(fresh); $DRV --root \$d eval $WORK/recipes/top.toml > /dev/null"
one_cmd="d=$(fresh); $DRV --root \$d build --quiet --no-link $WORK/recipes/one.toml > /dev/null"
nix_cmd="d=$(fresh); nix-build --store \"local?store=/store&state=\$d/state&log=\$d/log&real=\$d/real\" -j 2 --cores 1 --no-out-link $WORK/graph.nix > /dev/null 2>&1"

echo "graph: $N leaves + 1; CPU: $(nproc) cores" >&2
json=$(mktemp)
hyperfine --warmup 1 --runs "$RUNS" --style basic --export-json "$json" --export-markdown "${OUT:-/dev/stdout}" \
  -n "drv build -j 2 (cold, $((N + 1)) derivations)" "$drv_cmd" \
  -n "nix-build -j 2 (cold, sandbox, $((N + 1)) derivations)" "$nix_cmd" \
  -n "drv eval (writes $((N + 1)) .drv files)" "$eval_cmd" \
  -n "drv build of one derivation (toolchain + 1 build)" "$one_cmd"

# The sandbox alone: the same N builds, 2 at a time, with the toolchain a
# measured run made (its stores are still there).
toolchain=$(ls -d "$WORK"/runs/*/store/*-bookworm-toolchain | head -1)
sandbox_line=$(TMPDIR="$WORK" "$SANDBOX_ONLY" "$toolchain" "$N" 2)

python3 - "$json" "$N" "$sandbox_line" <<'PY'
import json, re, sys
rs = {r["command"]: r["median"] for r in json.load(open(sys.argv[1]))["results"]}
n = int(sys.argv[2]) + 1
pick = lambda p: next(v for k, v in rs.items() if k.startswith(p))
drv, nix, ev, one = pick("drv build -j"), pick("nix-build"), pick("drv eval"), pick("drv build of one")
per = (drv - one) / (n - 1) * 1000
print(f"drv: {drv / n * 1000:.1f} ms a derivation all in; nix-build: {nix / n * 1000:.1f} ms; nix/drv = {nix / drv:.2f}x", file=sys.stderr)
print(f"drv's parts: evaluation {ev / n * 1000:.2f} ms a derivation ({ev:.2f} s); toolchain and first build {one:.2f} s; each further build {per:.1f} ms", file=sys.stderr)
wall, cpu = (float(x) for x in re.findall(r"([0-9.]+) ms (?:wall|CPU)", sys.argv[3]))
print(f"of which the sandbox alone: {wall:.1f} ms a build of wall time on 2 threads, {cpu:.1f} ms of CPU ({sys.argv[3]})", file=sys.stderr)
PY
rm -f "$json"
