#!/usr/bin/env bash
# Binary-cache benchmarks, all measured in one run:
#  (1) substituting a closure of many paths from `drv cache serve` on
#      loopback into an empty root, against the floor: curl + zstd -d +
#      NAR unpack of the same NARs, one after another;
#  (2) every narinfo of the closure from `drv cache serve` against the same
#      files from nginx (static files on 127.0.0.1);
#  (3) drv substituting against `nix-store --realise` substituting the same
#      closure from the same cache.
#
#   bench/cache.sh            # TARGET_MB=500 PARTS=50 by default
#
# Needs: cargo, curl, zstd, hyperfine, nginx (apt-get install nginx-light),
# nix-bin. Everything listens on 127.0.0.1 only and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_MB=${TARGET_MB:-500}
PARTS=${PARTS:-50}
RUNS=${RUNS:-3}
WORK=${BENCH_DIR:-/tmp/drv-bench-cache}

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --quiet -p drv-cli
cargo build --release --quiet -p drv-store --example cache_closure
DRV=$CARGO_TARGET_DIR/release/drv
MAKE_CLOSURE=$CARGO_TARGET_DIR/release/examples/cache_closure

mkdir -p "$WORK"
pids=()
# Every measured substitution goes into a new directory here, removed on
# exit (not between runs: see the wait before measuring).
RUNDIR=$WORK/runs
rm -rf "$RUNDIR"; mkdir -p "$RUNDIR"
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$RUNDIR"; }
trap cleanup EXIT

# --- the closure: the Python standard library, copied until TARGET_MB,
# split into PARTS directories chained by references.
SRC=$WORK/src
if [ ! -f "$WORK/top" ]; then
  rm -rf "$SRC" "$WORK/root"
  stdlib=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
  mkdir -p "$SRC/all"
  i=0
  while [ "$(du -sm "$SRC/all" | cut -f1)" -lt "$TARGET_MB" ]; do
    mkdir -p "$SRC/all/copy$i"
    (cd "$stdlib" && tar cf - --exclude=site-packages --exclude=dist-packages .) | (cd "$SRC/all/copy$i" && tar xf -)
    i=$((i + 1))
  done
  # Deal the top-level entries of all copies into PARTS directories.
  n=0
  for e in "$SRC"/all/copy*/*; do
    d="$SRC/part$((n % PARTS))"
    mkdir -p "$d"
    mv "$e" "$d/$(basename "$(dirname "$e")")-$(basename "$e")"
    n=$((n + 1))
  done
  rm -rf "$SRC/all"
  "$MAKE_CLOSURE" --root "$WORK/root" $(ls -d "$SRC"/part* | sort -V) | tail -1 > "$WORK/top"
  rm -rf "$SRC"
fi
TOP=$(cat "$WORK/top")
nar_bytes=$(sqlite3 "$WORK/root/var/drv/db/db.sqlite" 'select sum(narSize) from ValidPaths' 2>/dev/null || echo "?")
paths=$(sqlite3 "$WORK/root/var/drv/db/db.sqlite" 'select count(*) from ValidPaths' 2>/dev/null || echo "?")
echo "closure: $paths paths, NAR total $((nar_bytes / 1048576)) MiB" >&2

# --- a key and the server
rm -f "$WORK/key.sec" "$WORK/key.pub"
"$DRV" key generate --name bench-1 --secret-file "$WORK/key.sec" --public-file "$WORK/key.pub"
PK=$(cat "$WORK/key.pub")
"$DRV" --root "$WORK/root" cache serve --listen 127.0.0.1:0 --key "$WORK/key.sec" > "$WORK/serve.out" &
pids+=($!)
for _ in $(seq 50); do grep -q listening "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' "$WORK/serve.out")
echo "server: $URL" >&2

# The narinfos and NAR URLs, as a client sees them.
hashes=$(sqlite3 "$WORK/root/var/drv/db/db.sqlite" 'select path from ValidPaths' | sed 's|^/store/||; s|-.*||')
: > "$WORK/nar-urls"
for h in $hashes; do
  curl -fsS "$URL/$h.narinfo" | sed -n "s|^URL: |$URL/|p" >> "$WORK/nar-urls"
done

# --- (1) substitution vs. the curl + zstd -d + unpack floor
fetch_cmd="d=\$(mktemp -d -p $RUNDIR); $DRV --root \$d cache fetch --substituters $URL --trusted-public-key '$PK' $TOP > /dev/null 2>&1"
floor_cmd="d=\$(mktemp -d -p $RUNDIR); n=0; while read u; do n=\$((n+1)); curl -fsS \$u | zstd -dq | $DRV store restore \$d/\$n; done < $WORK/nar-urls"

# --- (2) narinfos: drv cache serve vs nginx over the same files
STATIC=$WORK/static
rm -rf "$STATIC"; mkdir -p "$STATIC"
for h in $hashes; do curl -fsS "$URL/$h.narinfo" > "$STATIC/$h.narinfo"; done
cat > "$WORK/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 256; }
http {
  access_log off;
  server {
    listen 127.0.0.1:18781;
    root $STATIC;
    default_type text/x-nix-narinfo;
  }
}
EOF
nginx -c "$WORK/nginx.conf" -p "$WORK" &
pids+=($!)
sleep 0.5
# Each narinfo 20 times over one keep-alive connection per curl.
: > "$WORK/drv-urls"; : > "$WORK/nginx-urls"
for r in $(seq 20); do
  for h in $hashes; do
    echo "url = \"$URL/$h.narinfo\"" >> "$WORK/drv-urls"
    echo "url = \"http://127.0.0.1:18781/$h.narinfo\"" >> "$WORK/nginx-urls"
  done
done
requests=$(wc -l < "$WORK/drv-urls")

# --- (3) Nix substituting the same closure from the same server
nix_cmd="NIXD=\$(mktemp -d -p $RUNDIR); mkdir -p \$NIXD/conf; cp tests/fixtures/nix-vectors/nix.conf \$NIXD/conf/; NIX_CONF_DIR=\$NIXD/conf NIX_STORE_DIR=/store NIX_STATE_DIR=\$NIXD/state NIX_LOG_DIR=\$NIXD/log NIX_REMOTE= XDG_CACHE_HOME=\$NIXD/xdg nix-store --store \"local?store=/store&state=\$NIXD/state&log=\$NIXD/log&real=\$NIXD/real\" --realise $TOP --option substituters $URL --option trusted-public-keys '$PK' > /dev/null 2>&1"

# This machine's ext4 has no journal, and without one ext4 will not reuse an
# inode freed in the last minute (five, while its table block is dirty): it
# scans past every such inode for each file it creates. Deleting the previous
# run's 15,000 files before each run made every tool pay that scan (8 of its
# 10 s were system time). So nothing is deleted between runs, and the
# measuring starts a while after the last deletion.
sync
sleep "${SETTLE:-120}"

json=$(mktemp)
hyperfine --runs "$RUNS" --warmup 1 --style basic --export-json "$json" --export-markdown "${OUT:-/dev/stdout}" \
  -n 'drv cache fetch (from drv cache serve)' "$fetch_cmd" \
  -n 'floor: curl | zstd -d | drv store restore' "$floor_cmd" \
  -n "narinfos x$requests from drv cache serve (curl)" "curl -fsS -K $WORK/drv-urls > /dev/null" \
  -n "narinfos x$requests from nginx (curl)" "curl -fsS -K $WORK/nginx-urls > /dev/null" \
  -n 'nix-store --realise (from drv cache serve)' "$nix_cmd"

python3 - "$json" <<'PY'
import json, sys
rs = {r["command"]: r["median"] for r in json.load(open(sys.argv[1]))["results"]}
def pick(prefix): return next(v for k, v in rs.items() if k.startswith(prefix))
fetch, floor = pick("drv cache fetch"), pick("floor")
drv_ni, nginx_ni = pick("narinfos") , [v for k, v in rs.items() if "nginx" in k][0]
drv_ni = [v for k, v in rs.items() if "drv cache serve (curl)" in k][0]
nix = pick("nix-store")
print(f"(1) substitution / floor: {fetch/floor:.2f}x (target <= 1.3x)", file=sys.stderr)
print(f"(2) narinfos drv serve / nginx: {drv_ni/nginx_ni:.2f}x (target <= 1.2x)", file=sys.stderr)
print(f"(3) drv / nix-store --realise: {fetch/nix:.2f}x (target < 1)", file=sys.stderr)
PY
rm -f "$json"
