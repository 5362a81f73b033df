#!/usr/bin/env bash
# Run every parser's fuzz target for MINUTES minutes each (fractions are
# fine: 0.25 is 15 s). Each target is a property test over fresh random,
# near-valid inputs: anything parsed must render to bytes that parse to the
# same value, or be refused; nothing may panic. A failure prints the
# shrunk input and makes this script fail.
#
#   bench/fuzz.sh 5        # five minutes per target (what docs/fuzzing.md reports)
#   bench/fuzz.sh 0.1      # a smoke run (what .ci/run does)
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:?usage: bench/fuzz.sh MINUTES}
export DRV_FUZZ_SECONDS
DRV_FUZZ_SECONDS=$(python3 -c "import sys; print(max(1, round(float(sys.argv[1]) * 60)))" "$minutes")

# The debug test build: the one the fast suite already made.
run() { cargo test --locked -q -p "$1" --lib "$2" -- --exact --nocapture --test-threads=1 2>&1 | grep -E '^fuzz |panicked|FAILED|error' || true; }
status=0
for target in \
  "drv-formats fuzz::fuzz_narinfo" \
  "drv-formats fuzz::fuzz_aterm" \
  "drv-formats fuzz::fuzz_nar" \
  "drv-formats fuzz::fuzz_store_path" \
  "drv-debian lock::proptests::fuzz_lock" \
  "drv-eval recipe::proptests::fuzz_recipe"; do
  set -- $target
  out=$(run "$1" "$2")
  echo "$out"
  echo "$out" | grep -q '^fuzz .*no failure' || status=1
done
exit $status
