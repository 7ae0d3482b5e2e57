#!/usr/bin/env bash
# Runs every fuzz target for RUNS executions (default 10 million), JOBS at a time (default 2),
# with libFuzzer's allocation limit at LIMIT_MB (default 64: no input of at most 4096 bytes
# justifies more), and prints one line per target: executions, seconds, result.
# Logs go to fuzz/logs/NAME.log, anything found to fuzz/artifacts/NAME/.
# Usage: fuzz/run_all.sh [TARGET...]   (needs nightly and cargo-fuzz; builds first)
set -euo pipefail
cd "$(dirname "$0")"
RUNS=${RUNS:-10000000} JOBS=${JOBS:-2} LIMIT_MB=${LIMIT_MB:-64}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(checkpoint npy csv png safetensors npz model_toml idx) # slowest first
cargo +nightly fuzz build -O -a >/dev/null # -a: overflow checks and debug assertions on
bin=target/x86_64-unknown-linux-gnu/release
mkdir -p logs
# The readers take paths: their scratch files go to memory when /dev/shm exists.
[ -d /dev/shm ] && export TMPDIR=/dev/shm
one() {
  t=$1
  mkdir -p "corpus-run/$t" "artifacts/$t"
  start=$(date +%s)
  if "$bin/$t" "corpus-run/$t" "corpus/$t" -runs="$RUNS" -max_len=4096 \
      -rss_limit_mb=2048 -malloc_limit_mb="$LIMIT_MB" -timeout=10 \
      -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"logs/$t.log" 2>&1; then
    result=clean
  else
    result="FAILED (see fuzz/logs/$t.log)"
  fi
  done_line=$(grep -E '^Done [0-9]+ runs' "logs/$t.log" | tail -1 || true)
  echo "$t: ${done_line:-no Done line} ($(( $(date +%s) - start )) s wall): $result"
}
export -f one
export bin RUNS LIMIT_MB
printf '%s\n' "${targets[@]}" | xargs -P "$JOBS" -I{} bash -c 'one {}'
