#!/usr/bin/env bash
# Side-by-side epoch times: descent against PyTorch with the data resident in tensors
# (../shared/bench/torch_fast.py), alternating rounds on the same machine in one session.
#
# Usage: tools/bench_vs_torch.sh MNIST_DIR [ROUNDS] [EPOCHS_PER_ROUND]
#   PYTHON: a python with torch installed (default: python3)
#   TORCH_FAST: the PyTorch reference program (default: ../shared/bench/torch_fast.py)
# Prints every epoch time, then the medians and their ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: tools/bench_vs_torch.sh MNIST_DIR [ROUNDS] [EPOCHS]}
rounds=${2:-3}
epochs=${3:-3}
py=${PYTHON:-python3}
ref=${TORCH_FAST:-../shared/bench/torch_fast.py}
cargo build --release -q -p descent
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
for r in $(seq "$rounds"); do
  "$py" "$ref" "$dir" "$epochs" | sed -n 's/^epoch [0-9]* time \([0-9.]*\)s.*/\1/p' | tee -a "$t/torch" | sed 's/^/torch   /'
  ./target/release/descent bench epoch --data-dir "$dir" --runs "$epochs" \
    | sed -n 's/^epoch [0-9]* time \([0-9.]*\)s.*/\1/p' | tee -a "$t/descent" | sed 's/^/descent /'
done
median() { sort -n "$1" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
td=$(median "$t/descent"); tt=$(median "$t/torch")
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "median epoch: descent ${td}s, PyTorch (torch_fast.py) ${tt}s, ratio $(awk -v a="$td" -v b="$tt" 'BEGIN { printf "%.2f", a / b }')"
