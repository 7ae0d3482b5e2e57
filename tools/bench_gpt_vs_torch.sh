#!/usr/bin/env bash
# Side-by-side step times of the GPT preset: descent in f32 and with --bf16 against
# ../shared/bench/torch_gpt.py (4 layers, 4 heads, 128 wide, block 128, batch 32, AdamW,
# 2 threads), alternating rounds on the same machine in one session, and peak RSS.
#
# Usage: tools/bench_gpt_vs_torch.sh TEXT_FILE [ROUNDS] [STEPS]
#   PYTHON: a python with torch installed (default: python3)
#   TORCH_GPT: the PyTorch reference program (default: ../shared/bench/torch_gpt.py)
#   BASELINE: another descent binary (an earlier build) to time in the same rounds
# descent's time per step is its training seconds over STEPS (the first steps included);
# PyTorch's is the median of its steps after the tenth, as torch_gpt.py prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
text=${1:?usage: tools/bench_gpt_vs_torch.sh TEXT_FILE [ROUNDS] [STEPS]}
rounds=${2:-3}
steps=${3:-60}
py=${PYTHON:-python3}
ref=${TORCH_GPT:-../shared/bench/torch_gpt.py}
cargo build --release -q -p descent
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
rss() { sed -n 's/.*Maximum resident set size (kbytes): \([0-9]*\)/\1/p' "$1" | awk '{ printf "%d MB", $1 / 1024 }'; }
descent() { # name, flags...
  local name=$1; shift
  local bin=./target/release/descent
  case $name in base-*) bin=$BASELINE ;; esac
  /usr/bin/time -v "$bin" train --model gpt --data "text:$text" \
    --max-steps "$steps" --eval-every 100000 --val-windows 32 --threads 2 --quiet "$@" \
    2> "$t/$name.time" | sed -n 's/^epoch 1: .* time \([0-9.]*\)s.*/\1/p' |
    awk -v n="$steps" '{ printf "%.1f\n", 1000 * $1 / n }' | tee -a "$t/$name" | sed "s/^/$name /"
}
for r in $(seq "$rounds"); do
  /usr/bin/time -v "$py" "$ref" "$text" "$steps" 2 2> "$t/torch.time" |
    sed -n 's/^median \([0-9.]*\) ms per step.*/\1/p' | tee -a "$t/torch" | sed 's/^/torch /'
  descent f32
  descent bf16 --bf16
  if [ -n "${BASELINE:-}" ]; then
    descent base-f32
    descent base-bf16 --bf16
  fi
done
median() { sort -n "$1" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
tt=$(median "$t/torch"); tf=$(median "$t/f32"); tb=$(median "$t/bf16")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
echo "median ms per step: PyTorch ${tt}, descent f32 ${tf} (x$(ratio "$tf" "$tt")), descent bf16 ${tb} (x$(ratio "$tb" "$tt"))"
if [ -n "${BASELINE:-}" ]; then
  bf=$(median "$t/base-f32"); bb=$(median "$t/base-bf16")
  echo "baseline $BASELINE: f32 ${bf} (x$(ratio "$bf" "$tt")), bf16 ${bb} (x$(ratio "$bb" "$tt")); this build against it: f32 x$(ratio "$tf" "$bf"), bf16 x$(ratio "$tb" "$bb")"
fi
echo "peak RSS: PyTorch $(rss "$t/torch.time"), descent f32 $(rss "$t/f32.time"), bf16 $(rss "$t/bf16.time")"
