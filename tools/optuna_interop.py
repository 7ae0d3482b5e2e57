#!/usr/bin/env python3
"""descent's studies in Optuna's ecosystem, checked with Optuna itself.

    pip install optuna optuna-dashboard psycopg2-binary
    cargo build --release -p descent-tune --example study_worker
    python tools/optuna_interop.py target/release/examples/study_worker \
        sqlite:///tmp/interop.db [postgresql://USER:PASSWORD@HOST:PORT/DB]

For each storage URL (Optuna's spelling; descent reads it too):
1. descent -> Optuna: the descent worker runs a study (a mixed space with a conditional
   parameter, intermediate values, user attributes, failed and pruned trials); Optuna's
   `load_study` must see the same trials, states, parameters, distributions, values and
   intermediate values as descent reads back.
2. Optuna -> descent: Optuna runs trials of the same space and enqueues one; the descent
   worker continues the study: it claims the enqueued trial with its values, reads Optuna's
   trials with their distributions (the history its TPE samples from) and numbers its own
   after them; Optuna then continues with TPE over all of them, every number once.
3. optuna-dashboard serves the storage: its /api/studies lists both studies by name.
Prints one line per check and exits non-zero on the first failure.
"""

import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.request

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)
STATES = {
    "complete": optuna.trial.TrialState.COMPLETE,
    "pruned": optuna.trial.TrialState.PRUNED,
    "fail": optuna.trial.TrialState.FAIL,
    "running": optuna.trial.TrialState.RUNNING,
    "waiting": optuna.trial.TrialState.WAITING,
}


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        sys.exit(1)


def same_float(a, b):
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b


def run_worker(worker, url, study, trials, seed):
    out = subprocess.run(
        [worker, url, study, str(trials), str(seed)], check=True, capture_output=True, text=True
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def objective(trial):
    x = trial.suggest_float("x", 1e-3, 10.0, log=True)
    n = trial.suggest_int("n", 2, 20, step=2)
    kind = trial.suggest_categorical("kind", ["a", "b", "c"])
    extra = trial.suggest_float("extra", -1.0, 1.0) if kind == "a" else 0.0
    value = math.log(x) ** 2 + (n - 8) ** 2 / 10 + abs(extra)
    for step in range(3):
        trial.report(value + 2 - step, step)
    trial.set_user_attr("kind", kind)
    return value


def descent_to_optuna(worker, url, name):
    dumped = run_worker(worker, url, name, 14, 3)
    study = optuna.load_study(study_name=name, storage=url)
    trials = study.get_trials(deepcopy=False)
    check(len(trials) == len(dumped) == 14, f"{name}: Optuna loads the 14 trials descent wrote")
    check(study.direction == optuna.study.StudyDirection.MINIMIZE, f"{name}: direction")
    for d, t in zip(dumped, trials):
        n = t.number
        check(d["number"] == n, f"{name}: trial {n} number")
        check(STATES[d["state"]] == t.state, f"{name}: trial {n} state {t.state.name}")
        check(same_float(d["value"], t.value), f"{name}: trial {n} value {t.value}")
        check(d["params"] == t.params, f"{name}: trial {n} params {t.params}")
        iv = {str(k): v for k, v in t.intermediate_values.items()}
        check(
            iv.keys() == d["intermediate"].keys()
            and all(same_float(d["intermediate"][k], v) for k, v in iv.items()),
            f"{name}: trial {n} intermediate values",
        )
        check(d["user_attrs"] == t.user_attrs, f"{name}: trial {n} user attributes")
        dist = t.distributions
        check(
            dist["x"] == optuna.distributions.FloatDistribution(1e-3, 10.0, log=True)
            and dist["n"] == optuna.distributions.IntDistribution(2, 20, step=2)
            and dist["kind"] == optuna.distributions.CategoricalDistribution(["a", "b", "c"])
            and ("extra" in dist) == (t.params["kind"] == "a"),
            f"{name}: trial {n} distributions",
        )
    best = min((d for d in dumped if d["state"] == "complete"), key=lambda d: d["value"])
    check(study.best_trial.number == best["number"], f"{name}: best trial {best['number']}")


def optuna_to_descent(worker, url, name):
    study = optuna.create_study(
        study_name=name, storage=url, sampler=optuna.samplers.TPESampler(seed=1)
    )
    study.optimize(objective, n_trials=8)
    study.enqueue_trial({"x": 0.5, "n": 4, "kind": "b"})
    dumped = run_worker(worker, url, name, 5, 4)
    check(len(dumped) == 13, f"{name}: descent continues Optuna's 9 trials with 5 (13 in all)")
    optuna_trials = study.get_trials(deepcopy=False)[:8]
    for d, t in zip(dumped, optuna_trials):
        check(
            d["params"] == t.params and same_float(d["value"], t.value),
            f"{name}: descent reads Optuna's trial {t.number} as Optuna wrote it",
        )
    enq = dumped[8]
    check(
        enq["params"] == {"x": 0.5, "n": 4, "kind": "b"} and enq["state"] == "complete",
        f"{name}: descent ran the trial Optuna enqueued with its values: {enq['params']}",
    )
    study.optimize(objective, n_trials=3)
    trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    check(numbers == list(range(16)), f"{name}: 16 trials numbered 0-15 once each")
    check(
        all(t.state.is_finished() for t in trials),
        f"{name}: every trial finished ({len(trials)})",
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dashboard(url, names):
    exe = os.path.join(os.path.dirname(sys.executable), "optuna-dashboard")
    port = free_port()
    proc = subprocess.Popen(
        [exe, url, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        body = None
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies") as r:
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(0.1)
        check(body is not None, "optuna-dashboard answers on /api/studies")
        listed = [s["study_name"] for s in json.loads(body)["study_summaries"]]
        check(all(n in listed for n in names), f"optuna-dashboard lists {names}: {listed}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/dashboard") as r:
            check(r.status == 200, "optuna-dashboard serves its page")
    finally:
        proc.terminate()
        proc.wait()


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    worker = sys.argv[1]
    tag = f"{os.getpid()}"
    for url in sys.argv[2:]:
        # SQLAlchemy's default PostgreSQL driver is psycopg 3; name psycopg2 (descent reads
        # Optuna's spelling too).
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg2://" + url.split("://", 1)[1]
        shown = url.split("@")[-1] if "@" in url else url
        print(f"== {shown}")
        a, b = f"descent-{tag}", f"optuna-{tag}"
        descent_to_optuna(worker, url, a)
        optuna_to_descent(worker, url, b)
        dashboard(url, [a, b])
    print("interop: all checks passed")


if __name__ == "__main__":
    main()
