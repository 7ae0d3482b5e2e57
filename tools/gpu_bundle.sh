#!/usr/bin/env bash
# Builds what a GPU window runs (the GPU machine has no Rust toolchain) into one folder to
# carry there, with tools/gpu_check.sh:
#   tools/gpu_bundle.sh MNIST_DIR [OUT=target/gpu-bundle]
# then, with the `device` tool: carry OUT and run `tools/gpu_check.sh OUT "$OUT"`.
# MNIST_DIR holds the four IDX files (`descent data fetch mnist --data-dir D` puts them in
# D/mnist); they travel gzipped (about 11 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
mnist=${1:?usage: tools/gpu_bundle.sh MNIST_DIR [OUT]}
out=${2:-target/gpu-bundle}
rm -rf "$out" && mkdir -p "$out/tests" "$out/mnist" "$out/bench"
cargo build --release -p descent 2>&1 | tail -1
cp target/release/descent "$out/"
# The test binaries of the crates with GPU tests, by the names cargo prints for them.
cargo test --release -p descent-cuda --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | while read -r t; do cp "$t" "$out/tests/"; done
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  gzip -c "$mnist/$f" > "$out/mnist/$f.gz"
done
cp ../shared/bench/torch_fast.py "$out/bench/"
strip "$out/descent" "$out"/tests/* 2>/dev/null || true
du -sh "$out"
ls "$out/tests"
