#!/usr/bin/env bash
# docs/data.md's CSV comparison: descent and PyTorch (tools/table_vs_torch.py) train the same
# MLP (F-64-K ReLU, Adam 1e-3 annealed along a cosine, batch 64) on the tables that
# tools/make_tables.py writes, over SEEDS seeds each; prints every result and the medians.
# Usage: tools/tables_vs_torch.sh TABLE_DIR [EPOCHS] [SEEDS]   (env PYTHON, DESCENT)
set -euo pipefail
dir=$1; epochs=${2:-30}; seeds=${3:-5}
py=${PYTHON:-python3}; descent=${DESCENT:-target/release/descent}
[ -f "$dir/classes_train.csv" ] || "$py" "$(dirname "$0")/make_tables.py" "$dir"
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
for task in classify regress; do
  name=$([ $task = classify ] && echo classes || echo regress)
  : > /tmp/tvt_torch; : > /tmp/tvt_descent
  for s in $(seq 0 $((seeds - 1))); do
    "$py" "$(dirname "$0")/table_vs_torch.py" "$dir/${name}_train.csv" "$dir/${name}_test.csv" \
      $task "$epochs" "$s" | awk '{print $2}' >> /tmp/tvt_torch
    "$descent" train --data "csv:$dir/${name}_train.csv" --test-data "$dir/${name}_test.csv" \
      --task $task --hidden 64 --optimizer adam --lr 1e-3 --schedule cosine --epochs "$epochs" \
      --seed "$s" --save /tmp/tvt.safetensors --quiet > /dev/null 2>&1
    "$descent" eval /tmp/tvt.safetensors | head -1 \
      | sed -E 's/.*test_acc ([0-9.]+)%.*/\1/; s/.*test_loss ([0-9.]+) \(mse\).*/\1/' >> /tmp/tvt_descent
  done
  metric=$([ $task = classify ] && echo "test accuracy %" || echo "test MSE")
  echo "$task ($metric), $seeds seeds, $epochs epochs"
  echo "  pytorch: $(tr '\n' ' ' < /tmp/tvt_torch) median $(median < /tmp/tvt_torch)"
  echo "  descent: $(tr '\n' ' ' < /tmp/tvt_descent) median $(median < /tmp/tvt_descent)"
done
