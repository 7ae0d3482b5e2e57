#!/usr/bin/env bash
# One GPU window: the GPU tests and the benchmarks, every result in one folder.
#   tools/gpu_check.sh BUNDLE OUT
# BUNDLE is what tools/gpu_bundle.sh built. Writes to OUT: env.txt (GPU, driver, libraries),
# tests.txt (every GPU test, with the 200-step distances), bench_mlp.txt (descent's seed MLP
# epochs on the GPU), torch_mlp.txt (PyTorch eager on the same GPU in the same window),
# bench_mlp_cpu.txt (descent's CPU engine on this machine), summary.txt. (The CNN's layers
# have no device programs yet: it is not timed here.)
set -uo pipefail
bundle=$(cd "${1:?usage: tools/gpu_check.sh BUNDLE OUT}" && pwd)
out=${2:?usage: tools/gpu_check.sh BUNDLE OUT}
mkdir -p "$out"
# cuBLAS and NVRTC come with PyTorch's pip packages here.
libs=$(find / -name 'libcublas.so*' -not -path '*/proc/*' 2>/dev/null | head -1 | xargs -r dirname)
nvrtc=$(find / -name 'libnvrtc.so*' -not -path '*/proc/*' 2>/dev/null | head -1 | xargs -r dirname)
export LD_LIBRARY_PATH="${libs}:${nvrtc}:${LD_LIBRARY_PATH:-}"
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  echo "cuBLAS from: $libs"; echo "NVRTC from: $nvrtc"
} > "$out/env.txt"
data=$(mktemp -d)
mkdir -p "$data/mnist"
for f in "$bundle"/mnist/*.gz; do gunzip -c "$f" > "$data/mnist/$(basename "$f" .gz)"; done
status=0
: > "$out/tests.txt"
for t in "$bundle"/tests/*; do
  echo "== $(basename "$t")" >> "$out/tests.txt"
  timeout 300 "$t" --nocapture --test-threads 1 >> "$out/tests.txt" 2>&1 || status=1
done
# The Python that has PyTorch (the one whose packages hold cuBLAS, else any on the PATH).
py=
for c in "$libs/../../../../../../bin/python3" python3 python; do
  if "$c" -c 'import torch' 2>/dev/null; then py=$c; break; fi
done
[ -n "$py" ] || py=python3
timeout 120 "$bundle/descent" bench epoch --device cuda --runs 5 --data-dir "$data" > "$out/bench_mlp.txt" 2>&1 || status=1
timeout 120 "$py" "$bundle/bench/torch_fast.py" "$data/mnist" 5 sgd cuda > "$out/torch_mlp.txt" 2>&1 || status=1
# The same epochs on the CPU engine, for the side-by-side (and to show the CPU path unchanged).
timeout 120 "$bundle/descent" bench epoch --runs 3 --data-dir "$data" > "$out/bench_mlp_cpu.txt" 2>&1 || status=1
{
  grep -E "^test result|FAILED|panicked|relative L2|skipped" "$out/tests.txt"
  for f in bench_mlp torch_mlp bench_mlp_cpu; do echo "== $f"; tail -3 "$out/$f.txt"; done
} > "$out/summary.txt"
cat "$out/summary.txt"
rm -rf "$data"
exit $status
