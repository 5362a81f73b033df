#!/usr/bin/env bash
# Unpacking a toolchain's .debs: drv's builtin assembly (drv-debian's
# `assemble` example: unpack, merged /usr, declared links, symlink and
# library checks, manifest) side by side with `dpkg-deb -x` of the same
# files run in parallel into fresh directories, on the same cores, in one run.
#
#   bench/toolchain-unpack.sh [DEB_DIR]
#
# DEB_DIR defaults to the showcase toolchain (gcc, make, coreutils, … and
# their Depends/Pre-Depends closure, bookworm amd64), fetched with
# `apt-get download` from the host's configured sources into a temporary
# directory. JOBS (default: nproc) sets both sides' parallelism; RUNS the
# number of timed runs. Needs: cargo, dpkg-deb; hyperfine if installed
# (else a plain loop). Target: drv <= 1.5x dpkg-deb.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
RUNS=${RUNS:-10}

SHOWCASE="binutils binutils-common binutils-x86-64-linux-gnu bzip2 coreutils cpp cpp-12 dash debianutils
diffutils dpkg findutils gcc gcc-12 gcc-12-base grep gzip install-info libacl1 libasan8 libatomic1 libattr1
libbinutils libbz2-1.0 libc-dev-bin libc6 libc6-dev libcc1-0 libcom-err2 libcrypt-dev libcrypt1 libctf-nobfd0
libctf0 libgcc-12-dev libgcc-s1 libgmp10 libgomp1 libgprofng0 libgssapi-krb5-2 libisl23 libitm1 libjansson4
libk5crypto3 libkeyutils1 libkrb5-3 libkrb5support0 liblsan0 liblzma5 libmd0 libmpc3 libmpfr6 libnsl-dev
libnsl2 libpcre2-8-0 libquadmath0 libselinux1 libssl3 libstdc++6 libtirpc-common libtirpc-dev libtirpc3
libtsan2 libubsan1 libzstd1 linux-libc-dev make mawk rpcsvc-proto sed tar xz-utils zlib1g"

work=$(mktemp -d "${TMPDIR:-/tmp}/drv-unpack-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [ $# -ge 1 ]; then
  DEBS=$(cd "$1" && pwd)
else
  DEBS=$work/debs
  mkdir -p "$DEBS"
  # shellcheck disable=SC2086 # one word per package
  (cd "$DEBS" && apt-get download $SHOWCASE >/dev/null)
fi
count=$(find "$DEBS" -maxdepth 1 -name '*.deb' | wc -l)
[ "$count" -gt 0 ] || { echo "no .deb in $DEBS" >&2; exit 1; }

cargo build --release --quiet -p drv-debian --example assemble
ASSEMBLE=${CARGO_TARGET_DIR:-$PWD/target}/release/examples/assemble

echo "debs: $DEBS, $count files, $(du -sm "$DEBS" | cut -f1) MB; jobs: $JOBS; CPUs: $(nproc)" >&2
"$ASSEMBLE" "$DEBS" "$work/check" "$JOBS" >&2
rm -rf "$work/check"

drv_cmd="rm -rf $work/drv && $ASSEMBLE $DEBS $work/drv $JOBS >/dev/null"
dpkg_cmd="rm -rf $work/dpkg && mkdir $work/dpkg && find $DEBS -maxdepth 1 -name '*.deb' -print0 \
  | xargs -0 -P$JOBS -I{} sh -c 'd=\$(mktemp -d -p $work/dpkg) && dpkg-deb -x \"\$1\" \"\$d\"' sh {}"

if command -v hyperfine >/dev/null; then
  json=$work/results.json
  # Removing the previous run's tree is part of both commands, so that
  # each side pays for it alike. Medians too: on shared cores a single
  # preempted run skews a mean.
  hyperfine --warmup 2 --runs "$RUNS" --style basic --export-json "$json" --export-markdown "${OUT:-/dev/stdout}" \
    -n "drv assemble (-j$JOBS)" "$drv_cmd" \
    -n "dpkg-deb -x (xargs -P$JOBS)" "$dpkg_cmd"
  python3 - "$json" <<'PY'
import json, sys
rs = json.load(open(sys.argv[1]))["results"]
med = [r["median"] for r in rs]
for r in rs:
    print(f"median {r['median'] * 1000:7.0f} ms  {r['command']}", file=sys.stderr)
print(f"drv / dpkg-deb (medians): {med[0] / med[1]:.2f}x (target <= 1.5x)", file=sys.stderr)
PY
else
  for name in drv dpkg; do
    cmd=${name}_cmd
    sh -c "${!cmd}" # warm-up
    start=$(date +%s%N)
    for _ in $(seq "$RUNS"); do sh -c "${!cmd}"; done
    end=$(date +%s%N)
    echo "$name: $(((end - start) / RUNS / 1000000)) ms per run (mean of $RUNS)"
  done
fi
