#!/usr/bin/env python3
"""The seed run's epoch time with and without --tensorboard, side by side.

    python tools/tensorboard_overhead.py target/release/descent [ROUNDS] [EPOCHS] [TRAIN FLAGS...]

Alternates `descent train --epochs EPOCHS` without and with `--tensorboard DIR` for ROUNDS
rounds (default 6 rounds of 4 epochs; the order swaps every round, so neither side always
runs first), takes every epoch's time but each run's first (which
also warms the caches), and prints each side's median and their ratio. Machines are noisy:
read the ratio of medians measured in the same run, not one epoch.
"""

import os
import re
import statistics
import subprocess
import sys
import tempfile


def epochs(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    times = [float(t) for t in re.findall(r"^epoch \d+: .* time ([0-9.]+)s", out, re.M)]
    return times[1:]


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: tensorboard_overhead.py DESCENT [ROUNDS] [EPOCHS] [TRAIN FLAGS...]")
    descent = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 6
    n = sys.argv[3] if len(sys.argv) > 3 else "4"
    extra = sys.argv[4:]
    plain, logged = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            base = [descent, "train", "--epochs", n, *extra]
            with_log = base + ["--tensorboard", os.path.join(tmp, f"tb{r}")]
            if r % 2 == 0:
                plain += epochs(base)
                logged += epochs(with_log)
            else:
                logged += epochs(with_log)
                plain += epochs(base)
            print(f"round {r + 1}: without {statistics.median(plain):.3f} s, "
                  f"with {statistics.median(logged):.3f} s", flush=True)
    a, b = statistics.median(plain), statistics.median(logged)
    print(f"epochs: {len(plain)} without, {len(logged)} with --tensorboard")
    q = lambda xs: statistics.quantiles(xs, n=4)
    print(f"quartiles without {q(plain)}, with {q(logged)}")
    print(f"median epoch: {a:.3f} s without, {b:.3f} s with: ratio {b / a:.3f}")


if __name__ == "__main__":
    main()
