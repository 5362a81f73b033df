#!/usr/bin/env bash
# Realising flask's environment (recipes/flask.toml: the seven packages of
# recipes/requirements/flask.txt, each installed into its own store path,
# and the environment joining them) when the distributions and the
# interpreter are in the store already, against installing the same seven
# files into a fresh environment, all in one run:
#   - drv   `drv build recipes/flask.toml` in a root holding only CPython's
#           closure and the seven downloads (evaluation, seven sandboxed
#           installs with hash-checked byte code, the environment);
#   - pip   `pip install --no-index --find-links DIR flask` into a fresh
#           venv (pip compiles byte code by default);
#   - uv    `uv pip install --offline --no-index --find-links DIR flask`
#           into a fresh venv, with an empty cache, without and with
#           `--compile-bytecode`, and with the cache warm (uv's usual case).
# Goal (issue 15): faster than pip, within 2x of uv.
#
#   bench/python-env.sh                     # builds the showcase into $WORK/root if needed
#   SHOWCASE_ROOT=/path bench/python-env.sh # a root where it is built already
#
# Needs: cargo, hyperfine, python3 with venv and pip; uv is installed from
# the Python index (pinned) into $WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10}
WORK=${BENCH_DIR:-/tmp/drv-bench-python}
UV_VERSION=0.13.9
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --quiet -p drv-cli
DRV=$CARGO_TARGET_DIR/release/drv
ROOT=${SHOWCASE_ROOT:-$WORK/root}
mkdir -p "$WORK"

"$DRV" --root "$ROOT" build --no-link recipes/flask.toml >/dev/null 2>&1
CPYTHON=$("$DRV" --root "$ROOT" build --no-link recipes/cpython.toml 2>/dev/null | grep -v -- '-debug$')
WHEELS=$("$DRV" --root "$ROOT" eval --json recipes/flask.toml |
  python3 -c 'import json,sys; print(" ".join(sorted(p for d in json.load(sys.stdin)["derivations"].values() for p in d["outputs"].values() if p.endswith(".whl"))))')
echo "interpreter $CPYTHON; $(echo $WHEELS | wc -w) wheels" >&2

# The same seven files, under their own names, for pip and uv.
rm -rf "$WORK/wheels" "$WORK/cache"; mkdir -p "$WORK/wheels"
for w in $WHEELS; do cp "$ROOT/store/${w#/store/}" "$WORK/wheels/${w#/store/*-}"; done
# Everything the environment's builds use but the builds themselves: the
# interpreter's closure, the seven downloads, the C library and patchelf's
# toolchain (markupsafe's RUNPATH). Each drv run starts from a fresh root
# holding exactly that, substituted from a cache.
SEED=$("$DRV" --root "$ROOT" show-derivation -r recipes/flask.toml |
  python3 -c 'import json,sys
drvs = json.load(sys.stdin)
ours = {p for p, d in drvs.items() if d["env"]["name"].startswith("python3.11-") or d["env"]["name"] == "flask-3.1.3"}
inputs = {i for p in ours for i in drvs[p]["inputDrvs"]} - ours
print(" ".join(sorted(drvs[i]["outputs"]["out"]["path"] for i in inputs)))')
"$DRV" --root "$ROOT" cache push --to "file://$WORK/cache" $SEED >/dev/null 2>&1
CACHE="file://$WORK/cache?trusted=1"

if [ ! -x "$WORK/uv/bin/uv" ]; then
  python3 -m pip install --quiet --disable-pip-version-check --target "$WORK/uv" "uv==$UV_VERSION"
fi
UV=$WORK/uv/bin/uv
PY=$(command -v python3)
echo "pip: $(python3 -m pip --version | cut -d' ' -f1-2), $($UV --version), host $($PY --version)" >&2

hyperfine --runs "$RUNS" --export-markdown "$WORK/result.md" \
  --prepare "rm -rf $WORK/r && $DRV --root $WORK/r cache fetch --substituters '$CACHE' $SEED >/dev/null 2>&1" \
  -n drv "$DRV --root $WORK/r build --no-link recipes/flask.toml" \
  --prepare "rm -rf $WORK/venv && $PY -m venv $WORK/venv" \
  -n pip "$WORK/venv/bin/pip install --quiet --disable-pip-version-check --no-index --find-links $WORK/wheels flask" \
  --prepare "rm -rf $WORK/uvenv $WORK/uvcache && $UV venv -q --python $PY $WORK/uvenv" \
  -n "uv (cold cache)" "$UV pip install -q --offline --no-index --find-links $WORK/wheels --cache-dir $WORK/uvcache --python $WORK/uvenv/bin/python flask" \
  --prepare "rm -rf $WORK/uvenv $WORK/uvcache && $UV venv -q --python $PY $WORK/uvenv" \
  -n "uv --compile-bytecode (cold cache)" "$UV pip install -q --offline --no-index --find-links $WORK/wheels --cache-dir $WORK/uvcache --compile-bytecode --python $WORK/uvenv/bin/python flask" \
  --prepare "rm -rf $WORK/uvenv && $UV venv -q --python $PY $WORK/uvenv" \
  -n "uv --compile-bytecode (warm cache)" "$UV pip install -q --offline --no-index --find-links $WORK/wheels --cache-dir $WORK/uvcache --compile-bytecode --python $WORK/uvenv/bin/python flask"
cat "$WORK/result.md"
