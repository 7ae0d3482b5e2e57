"""Reference trajectories of torch.optim for descent's optimizer parity tests.

For each optimizer setting, runs PyTorch on a small non-quadratic problem for STEPS steps and
records the gradient fed in at every step and the parameters after it. The Rust tests replay
the recorded gradients through descent's optimizer and compare every step (f32, 1e-5
relative), so the comparison tests the update rule and nothing else.

Usage: python tools/optim_reference.py > crates/descent-optim/tests/fixtures/torch_sgd.json
Needs: pip install torch (CPU is enough). CI does not run this; the JSON is committed.
"""
import json, math, sys
import torch

STEPS = 60
N = 8

SETTINGS = [
    ("plain", dict(lr=0.05)),
    ("weight_decay", dict(lr=0.05, weight_decay=0.1)),
    ("momentum", dict(lr=0.02, momentum=0.9)),
    ("dampening", dict(lr=0.02, momentum=0.9, dampening=0.3)),
    ("nesterov", dict(lr=0.02, momentum=0.8, nesterov=True, weight_decay=0.01)),
    ("maximize", dict(lr=0.02, momentum=0.5, weight_decay=0.05, maximize=True)),
]


def loss_fn(p):
    # Non-trivial, parameter-dependent gradients: an ill-conditioned quadratic plus a
    # coupling term and a sine ripple.
    scales = torch.linspace(0.5, 5.0, N)
    return (scales * p * p).sum() + 0.3 * (p[:-1] * p[1:]).sum() + 0.2 * torch.sin(3 * p).sum()


def run(kwargs):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.linspace(-1.5, 1.7, N))
    opt = torch.optim.SGD([p], **kwargs)
    start = p.detach().clone().tolist()
    grads, params = [], []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = loss_fn(p)
        if kwargs.get("maximize"):
            loss = -loss
        loss.backward()
        grads.append(p.grad.detach().clone().tolist())
        opt.step()
        params.append(p.detach().clone().tolist())
    return dict(start=start, grads=grads, params=params)


def f32(values):
    # 9 significant digits round-trip every f32 exactly and keep the file small.
    return [float("%.9g" % v) for v in values]


def compact(case):
    return dict(start=f32(case["start"]), grads=[f32(g) for g in case["grads"]], params=[f32(q) for q in case["params"]])


out = dict(
    torch_version=torch.__version__,
    optimizer="sgd",
    cases=[dict(name=name, hyperparameters=kw, **compact(run(kw))) for name, kw in SETTINGS],
)
json.dump(out, sys.stdout, indent=None, separators=(",", ":"))
sys.stdout.write("\n")
