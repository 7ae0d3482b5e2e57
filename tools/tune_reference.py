"""Optuna's numbers for docs/tuning.md: median regret after N trials over S seeds on Branin and
Hartmann-6 (inputs in [0, 1], as ../shared/ANCHORS.md), and TPE's time per trial.

    python tools/tune_reference.py [SEEDS] [TRIALS]   # needs `pip install optuna numpy`
"""

import math
import statistics
import sys
import time

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)

ALPHA = [1.0, 1.2, 3.0, 3.2]
A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8],
     [17, 8, 0.05, 10, 0.1, 14]]
P = [[0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
     [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
     [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
     [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381]]


def branin(x):
    x1, x2 = 15 * x[0] - 5, 15 * x[1]
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def hartmann6(x):
    return -sum(ALPHA[i] * math.exp(-sum(A[i][j] * (x[j] - P[i][j]) ** 2 for j in range(6)))
                for i in range(4))


FUNCS = [("branin", branin, 2, 0.397887357729738), ("hartmann6", hartmann6, 6, -3.322368011391339)]


def run(f, dim, sampler, n):
    study = optuna.create_study(sampler=sampler)
    start = time.perf_counter()
    study.optimize(lambda t: f([t.suggest_float(f"x{i}", 0, 1) for i in range(dim)]), n_trials=n)
    return study.best_value, (time.perf_counter() - start) / n


def main():
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    trials = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    print(f"optuna {optuna.__version__}, {seeds} seeds x {trials} trials")
    for name, f, dim, fmin in FUNCS:
        for sname, make in [("random", lambda s: optuna.samplers.RandomSampler(seed=s)),
                            ("tpe", lambda s: optuna.samplers.TPESampler(seed=s))]:
            regrets, times = [], []
            for seed in range(seeds):
                best, t = run(f, dim, make(seed), trials)
                regrets.append(best - fmin)
                times.append(t)
            print(f"{name:<10} {sname:<8} median regret {statistics.median(regrets):.4f}  "
                  f"{statistics.median(times) * 1e3:.2f} ms per trial")
    if len(sys.argv) > 3:
        return
    _, t = run(hartmann6, 6, optuna.samplers.TPESampler(seed=0), 1000)
    print(f"hartmann6 tpe 1000 trials: {t * 1e3:.2f} ms per trial")


if __name__ == "__main__":
    main()
