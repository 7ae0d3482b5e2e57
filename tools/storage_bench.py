#!/usr/bin/env python3
"""Trials per second that worker processes get from one database: descent's against Optuna's
RDBStorage, side by side in one run, on the same server.

    pip install optuna psycopg2-binary
    cargo build --release -p descent-tune --example storage_bench
    python tools/storage_bench.py target/release/examples/storage_bench URL [TRIALS] [WORKERS] [ROUNDS]

URL is a PostgreSQL URL (postgresql://USER:PASSWORD@HOST:PORT/DB) or sqlite:///PATH. Each
round runs a fresh study of TRIALS (800) trials with WORKERS (8) processes, first descent's
then Optuna's, with a random sampler and a free objective (a log float, an int and a
categorical; the value 0), so all the time is the storage's. Prints each round and the
medians.
"""

import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)


def objective(trial):
    trial.suggest_float("lr", 1e-5, 1.0, log=True)
    trial.suggest_int("width", 16, 1024)
    trial.suggest_categorical("opt", ["sgd", "adam", "lion"])
    return 0.0


def optuna_worker(url, name, total, seed):
    study = optuna.load_study(
        study_name=name, storage=url, sampler=optuna.samplers.RandomSampler(seed=seed)
    )
    study.optimize(
        objective,
        callbacks=[optuna.study.MaxTrialsCallback(total, states=None)],
    )


def optuna_round(url, name, total, workers):
    optuna.create_study(study_name=name, storage=url)
    start = time.perf_counter()
    procs = [
        mp.Process(target=optuna_worker, args=(url, name, total, i)) for i in range(workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            sys.exit(f"an Optuna worker failed ({p.exitcode})")
    secs = time.perf_counter() - start
    n = len(optuna.load_study(study_name=name, storage=url).trials)
    return n / secs, n


def descent_round(exe, url, name, total, workers):
    out = subprocess.run(
        [exe, url, name, str(total), str(workers)], check=True, capture_output=True, text=True
    ).stdout
    # "8 workers: 800 trials in 0.52 s: 1538 trials/s"
    words = out.split()
    return float(words[-2]), int(words[2])


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    exe, url = sys.argv[1], sys.argv[2]
    total = int(sys.argv[3]) if len(sys.argv) > 3 else 800
    workers = int(sys.argv[4]) if len(sys.argv) > 4 else 8
    rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    py_url = url
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        py_url = "postgresql+psycopg2://" + url.split("://", 1)[1]
    tag = os.getpid()
    d, o = [], []
    for r in range(rounds):
        rate, n = descent_round(exe, py_url, f"bench-d-{tag}-{r}", total, workers)
        d.append(rate)
        print(f"round {r}: descent {rate:8.1f} trials/s ({n} trials)", flush=True)
        rate, n = optuna_round(py_url, f"bench-o-{tag}-{r}", total, workers)
        o.append(rate)
        print(f"round {r}: optuna  {rate:8.1f} trials/s ({n} trials)", flush=True)
    md, mo = statistics.median(d), statistics.median(o)
    print(
        f"median of {rounds}, {workers} workers, {total} trials: descent {md:.1f} trials/s, "
        f"Optuna {optuna.__version__} {mo:.1f} trials/s: {md / mo:.1f}x"
    )


if __name__ == "__main__":
    mp.set_start_method("spawn")
    main()
