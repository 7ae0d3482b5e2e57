"""Optuna's Parzen estimators on fixed observations, for the parity test of descent's TPE
(crates/descent-tune/tests/fixtures/optuna_parzen.json).

    python tools/tpe_reference.py   # needs `pip install optuna numpy` (Optuna 5.0.0 here)
"""

import json

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator, _ParzenEstimatorParameters
from optuna.samplers._tpe.sampler import default_weights

PARAMS = _ParzenEstimatorParameters(
    prior_weight=1.0, consider_magic_clip=True, consider_endpoints=False,
    weights=default_weights, multivariate=True)


def case(name, space, n_obs, n_points, rng):
    def draw(n):
        cols = {}
        for p, d in space.items():
            if isinstance(d, CategoricalDistribution):
                cols[p] = rng.integers(0, len(d.choices), n).astype(float)
            elif isinstance(d, IntDistribution):
                # Distinct values: numpy orders tied observations in an implementation-defined
                # way (SIMD sorts), which decides which twin gets which bandwidth.
                grid = np.arange(d.low, d.high + 1, d.step)
                cols[p] = rng.choice(grid, n, replace=False).astype(float)
            elif d.log:
                cols[p] = np.exp(rng.uniform(np.log(d.low), np.log(d.high), n))
            else:
                cols[p] = rng.uniform(d.low, d.high, n)
        return cols
    obs = draw(n_obs)
    pts = draw(n_points)
    mpe = _ParzenEstimator(obs, space, PARAMS)
    return {
        "name": name,
        "space": {p: describe(d) for p, d in space.items()},
        "observations": {p: v.tolist() for p, v in obs.items()},
        "points": {p: v.tolist() for p, v in pts.items()},
        "log_pdf": mpe.log_pdf(pts).tolist(),
    }


def describe(d):
    if isinstance(d, CategoricalDistribution):
        return {"type": "categorical", "choices": list(d.choices)}
    if isinstance(d, IntDistribution):
        return {"type": "int", "low": d.low, "high": d.high, "log": d.log, "step": d.step}
    return {"type": "float", "low": d.low, "high": d.high, "log": d.log, "step": d.step}


def main():
    rng = np.random.default_rng(0)
    uniform6 = {f"x{i}": FloatDistribution(0, 1) for i in range(6)}
    mixed = {
        "lr": FloatDistribution(1e-4, 1.0, log=True),
        "width": IntDistribution(16, 256, step=16),
        "opt": CategoricalDistribution(["sgd", "adam", "lion"]),
        "frac": FloatDistribution(0.0, 1.0, step=0.1),
    }
    cases = [
        case("uniform6-n0", uniform6, 0, 5, rng),
        case("uniform6-n1", uniform6, 1, 5, rng),
        case("uniform6-n10", uniform6, 10, 8, rng),
        case("uniform6-n40", uniform6, 40, 8, rng),
        case("mixed-n12", mixed, 12, 8, rng),
        case("x1-n3", {"x": FloatDistribution(-2, 3)}, 3, 6, rng),
    ]
    for p, d in mixed.items():
        cases.append(case(f"{p}-n12", {p: d}, 12, 6, rng))
    out = {"optuna": optuna.__version__, "cases": cases}
    with open("crates/descent-tune/tests/fixtures/optuna_parzen.json", "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
