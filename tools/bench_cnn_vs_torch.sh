#!/usr/bin/env bash
# Side-by-side epoch times of the cnn preset: descent against PyTorch's examples/mnist Net
# (../shared/bench/torch_cnn.py: Adadelta lr 1, batch 64, 2 threads), alternating one-epoch
# rounds on the same machine in one session, and each side's peak RSS.
#
# Usage: tools/bench_cnn_vs_torch.sh MNIST_DIR [ROUNDS]
#   PYTHON: a python with torch installed (default: python3)
#   TORCH_CNN: the PyTorch reference program (default: ../shared/bench/torch_cnn.py)
# Prints every epoch time, then the medians, their ratio and the peak RSS of each.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: tools/bench_cnn_vs_torch.sh MNIST_DIR [ROUNDS]}
rounds=${2:-2}
py=${PYTHON:-python3}
ref=${TORCH_CNN:-../shared/bench/torch_cnn.py}
cargo build --release -q -p descent
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
rss() { sed -n 's/.*Maximum resident set size (kbytes): \([0-9]*\)/\1/p' "$1" | awk '{ printf "%d MB", $1 / 1024 }'; }
for r in $(seq "$rounds"); do
  /usr/bin/time -v "$py" "$ref" "$dir" 1 2 2> "$t/torch.time" \
    | sed -n 's/^epoch [0-9]* time \([0-9.]*\)s.*/\1/p' | tee -a "$t/torch" | sed 's/^/torch   /'
  /usr/bin/time -v ./target/release/descent train --model cnn --optimizer adadelta --lr 1 \
    --epochs 1 --threads 2 --data-dir "$dir" --no-fetch --quiet 2> "$t/descent.time" \
    | sed -n 's/^epoch [0-9]*: .* time \([0-9.]*\)s.*/\1/p' | tee -a "$t/descent" | sed 's/^/descent /'
done
median() { sort -n "$1" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
td=$(median "$t/descent"); tt=$(median "$t/torch")
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "median epoch: descent ${td}s, PyTorch (torch_cnn.py) ${tt}s, ratio $(awk -v a="$td" -v b="$tt" 'BEGIN { printf "%.2f", a / b }')"
echo "peak RSS: descent $(rss "$t/descent.time"), PyTorch $(rss "$t/torch.time")"
