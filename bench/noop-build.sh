#!/usr/bin/env bash
# No-op build of a 50-derivation graph: `drv build` against `nix-build` of
# an equivalent Nix expression (Debian's nix-bin, store dir /store), both
# after a first build made everything valid, in one run.
#
#   bench/noop-build.sh        # needs hyperfine and nix-bin
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-50}
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cargo build --release --quiet -p drv-cli
DRV=$PWD/target/release/drv

# drv: recipe i depends on i-1 and i-2 (a DAG, not just a chain); the
# toolchain (dash, coreutils) pinned by the tests' lock and fetched from the
# miniature archive in tests/fixtures/debian.
mkdir -p "$work/recipes"
cp tests/recipes/drv.lock "$work/recipes/"
export DRV_MIRROR_DEBIAN="file://$PWD/tests/fixtures/debian/debian"
export DRV_MIRROR_DEBIAN_SECURITY="file://$PWD/tests/fixtures/debian/debian-security"
for i in $(seq 0 $((N - 1))); do
  deps=""
  [ "$i" -ge 1 ] && deps="\"r$((i - 1)).toml\""
  [ "$i" -ge 2 ] && deps="$deps, \"r$((i - 2)).toml\""
  cat > "$work/recipes/r$i.toml" <<R
name = "r$i"
version = "1"
[dependencies]
build = [$deps]
[toolchain]
debian = ["dash", "coreutils"]
[build]
script = 'echo $i > \$out'
R
done
top="$work/recipes/r$((N - 1)).toml"
"$DRV" --root "$work/drv" build --quiet -o "$work/drv-result" "$top" >/dev/null

# Nix: the same graph with builtins.derivation (builder /bin/sh from the host).
export NIXREF="$work/nix"
mkdir -p "$NIXREF/conf"
cp tests/fixtures/nix-vectors/nix.conf "$NIXREF/conf/"
# A store whose files live elsewhere forces Nix's sandbox: give it the host's /bin/sh.
echo "sandbox-paths = /bin /lib /lib64 /usr" >> "$NIXREF/conf/nix.conf"
. tests/fixtures/nix-vectors/env.sh
store="local?store=/store&state=$NIXREF/state&log=$NIXREF/log&real=$NIXREF/real"
{
  echo "let"
  for i in $(seq 0 $((N - 1))); do
    deps=""
    [ "$i" -ge 1 ] && deps="\${r$((i - 1))}"
    [ "$i" -ge 2 ] && deps="$deps \${r$((i - 2))}"
    echo "  r$i = derivation { name = \"r$i-1\"; system = \"x86_64-linux\"; builder = \"/bin/sh\"; args = [ \"-c\" \"echo $i > \$out\" ]; deps = \"$deps\"; };"
  done
  echo "in r$((N - 1))"
} > "$work/graph.nix"
nix_build=(nix-build --store "$store" "$work/graph.nix" -o "$work/nix-result")
"${nix_build[@]}" >/dev/null 2>&1

echo "graph: $N derivations; CPU: $(nproc) cores" >&2
hyperfine -N --warmup 3 --runs "${RUNS:-30}" --style basic --export-markdown "${OUT:-/dev/stdout}" \
  -n "drv build (no-op)" "$DRV --root $work/drv build --quiet -o $work/drv-result $top" \
  -n "nix-build (no-op)" "${nix_build[*]}"
