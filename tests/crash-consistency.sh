#!/usr/bin/env bash
# Crash consistency: SIGKILL drv at random points of a build, a
# substitution (`drv cache fetch` from a file:// cache) and a collection,
# then require `drv store verify --check-contents` to find the store
# consistent, a rerun of the killed command to succeed, and no staging
# directory of a dead process to survive the rerun.
#
#   tests/crash-consistency.sh [ROUNDS]   # or ROUNDS=N; default 20 (about a minute)
#   DRV=path/to/drv tests/crash-consistency.sh
#
# Offline: the toolchain comes from the tests' lock and the miniature
# archive in tests/fixtures/debian. Exits 0 when every round held, 1 at
# the first round that did not (its store is kept and named).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-${ROUNDS:-20}}
DRV=${DRV:-$PWD/target/release/drv}
[ "${DRV#/}" = "$DRV" ] && DRV=$PWD/$DRV
[ -x "$DRV" ] || { echo "no drv binary at $DRV (cargo build --release -p drv-cli)"; exit 2; }
export DRV_MIRROR_DEBIAN="file://$PWD/tests/fixtures/debian/debian"
export DRV_MIRROR_DEBIAN_SECURITY="file://$PWD/tests/fixtures/debian/debian-security"

work=$(mktemp -d)
keep=0
cleanup() { [ $keep = 1 ] || { chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"; }; }
trap cleanup EXIT

# A random delay of 0 to $1 milliseconds.
pause_ms() { sleep "$(awk -v max="$1" -v r="$RANDOM" 'BEGIN { printf "%.3f", (r % (max + 1)) / 1000 }')"; }

fail() {
  keep=1
  echo "FAIL (round $round, $1): store kept at $2"
  exit 1
}

# The store must be consistent and hold no staging directory of a dead
# process once a command that stages has run to completion.
check() {
  local what=$1 root=$2
  "$DRV" --root "$root" store verify --check-contents >"$work/verify.out" 2>&1 ||
    { cat "$work/verify.out"; fail "$what: verify" "$root"; }
  if ls -A "$root/store" 2>/dev/null | grep -q '^\.tmp-'; then
    ls -A "$root/store" | grep '^\.tmp-'
    fail "$what: staging directories left after a successful rerun" "$root"
  fi
}

# Recipes: a chain of four builds, each output a few files.
mkdir -p "$work/recipes" "$work/objs"
cp tests/recipes/drv.lock "$work/recipes/"
for i in 0 1 2 3; do
  dep=""
  [ "$i" -ge 1 ] && dep="build = [\"r$((i - 1)).toml\"]"
  cat >"$work/recipes/r$i.toml" <<R
name = "crash-r$i"
version = "1"
[dependencies]
$dep
[toolchain]
debian = ["dash", "coreutils"]
[build]
script = 'mkdir -p \$out/d; for n in 1 2 3 4 5 6 7 8; do head -c 200000 /dev/zero | tr "\\\\0" "$i" > \$out/d/\$n; done'
R
done
top="$work/recipes/r3.toml"

# A cache to substitute from: ten paths of 2 MB each, pushed once.
"$DRV" key generate --name crash-1 --secret-file "$work/sk" --public-file "$work/pk" >/dev/null
paths=()
for i in $(seq 1 10); do
  mkdir -p "$work/objs/o$i"
  head -c 2000000 /dev/urandom >"$work/objs/o$i/blob"
  paths+=("$("$DRV" --root "$work/src" store add "$work/objs/o$i")")
done
"$DRV" --root "$work/src" cache push --to "file://$work/cache" --key "$work/sk" "${paths[@]}" >/dev/null 2>&1
fetch=(cache fetch --max-downloads 2 --substituters "file://$work/cache" --trusted-public-key "$(cat "$work/pk")" "${paths[@]}")

start=$(date +%s)
for round in $(seq 1 "$ROUNDS"); do
  # 1. A build, killed at a random point, then built again.
  root="$work/build-$round"
  "$DRV" --root "$root" build --quiet --no-link "$top" >/dev/null 2>&1 &
  pid=$!
  pause_ms 1500
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  "$DRV" --root "$root" build --quiet --no-link "$top" >/dev/null 2>"$work/err" ||
    { cat "$work/err"; fail "build rerun" "$root"; }
  check build "$root"

  # 2. A substitution, killed mid-download, then fetched again.
  root="$work/fetch-$round"
  "$DRV" --root "$root" "${fetch[@]}" >/dev/null 2>&1 &
  pid=$!
  pause_ms 400
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  "$DRV" --root "$root" "${fetch[@]}" >/dev/null 2>"$work/err" ||
    { cat "$work/err"; fail "fetch rerun" "$root"; }
  check fetch "$root"

  # 3. A collection of everything the build made (no roots: --no-link),
  # killed at a random point, then run again; the store stays consistent
  # and the rerun deletes every invalid leftover. (Valid paths may stay:
  # a process anywhere on the machine whose environment names the same
  # /store path, such as a build of the same toolchain under another
  # root, is a runtime root, as in Nix.)
  root="$work/build-$round"
  "$DRV" --root "$root" gc >/dev/null 2>&1 &
  pid=$!
  pause_ms 30
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  "$DRV" --root "$root" store verify --check-contents >"$work/verify.out" 2>&1 ||
    { cat "$work/verify.out"; fail "verify after a killed gc" "$root"; }
  "$DRV" --root "$root" gc >/dev/null 2>"$work/err" || { cat "$work/err"; fail "gc rerun" "$root"; }
  check gc "$root"
  for entry in $(ls -A "$root/store"); do
    "$DRV" --root "$root" path-info "$entry" >/dev/null 2>&1 || fail "gc rerun left $entry, which is not valid" "$root"
  done

  chmod -R u+w "$work/fetch-$round" "$work/build-$round" 2>/dev/null || true
  rm -rf "$work/fetch-$round" "$work/build-$round"
done
echo "PASS: $ROUNDS round(s) of kills during build, fetch and gc in $(($(date +%s) - start)) s"
