"""Reference trajectories of torch.optim and torch.optim.lr_scheduler for descent's parity tests.

Optimizers: for each setting, runs PyTorch on a small two-tensor model ("weight" [2, 3] and
"bias" [2]) with a non-quadratic loss for STEPS steps, recording the gradient at every step
(before any clipping) and the parameters after it. The Rust tests replay the recorded gradients
through descent's optimizer and compare every step (f32, 1e-5 relative), so the comparison
tests the update rule, clipping and parameter groups and nothing else.

PyTorch has no Lion or LAMB and does not write the seed's rules (momentum as an exponential
moving average, RMSprop with eps inside the root); for those, the classes below write the
published update in torch operations (Lion: Chen et al. 2023, Algorithm 2; LAMB: You et al.
2020, Algorithm 2 with Adam's bias correction, as tinygrad and timm).

Schedules: the learning rate (and momentum where cycled) that each scheduler gives at steps
0..STEPS-1, stepping once per optimizer step; ReduceLROnPlateau fed a fixed metric sequence.

Usage:
  python tools/optim_reference.py optimizers > crates/descent-optim/tests/fixtures/torch_optimizers.json
  python tools/optim_reference.py schedules  > crates/descent-optim/tests/fixtures/torch_schedules.json
Needs: pip install torch (CPU is enough). CI does not run this; the JSON is committed.
"""
import json, math, sys
import torch

STEPS = 50


class EmaMomentum(torch.optim.Optimizer):
    """The seed's momentum: v = beta v + (1 - beta) g, p -= lr v."""

    def __init__(self, params, lr=0.1, beta=0.9, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, beta=beta, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if group["weight_decay"] != 0:
                    g = g.add(p, alpha=group["weight_decay"])
                st = self.state[p]
                if "velocity" not in st:
                    st["velocity"] = torch.zeros_like(p)
                v = st["velocity"]
                v.mul_(group["beta"]).add_(g, alpha=1 - group["beta"])
                p.add_(v, alpha=-group["lr"])


class SeedAdaptive(torch.optim.Optimizer):
    """RMSprop with eps inside the root (the seed's rule): v = a v + (1 - a) g², p -= lr g / sqrt(v + eps)."""

    def __init__(self, params, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if group["weight_decay"] != 0:
                    g = g.add(p, alpha=group["weight_decay"])
                st = self.state[p]
                if "square_avg" not in st:
                    st["square_avg"] = torch.zeros_like(p)
                v = st["square_avg"]
                v.mul_(group["alpha"]).addcmul_(g, g, value=1 - group["alpha"])
                p.addcdiv_(g, v.add(group["eps"]).sqrt(), value=-group["lr"])


class Lion(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay, maximize=maximize))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                g = -p.grad if group["maximize"] else p.grad
                st = self.state[p]
                if "exp_avg" not in st:
                    st["exp_avg"] = torch.zeros_like(p)
                m = st["exp_avg"]
                p.mul_(1 - group["lr"] * group["weight_decay"])
                update = (m * b1 + g * (1 - b1)).sign()
                p.add_(update, alpha=-group["lr"])
                m.mul_(b2).add_(g * (1 - b2))


class Lamb(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                g = -p.grad if group["maximize"] else p.grad
                st = self.state[p]
                if "exp_avg" not in st:
                    st["step"] = 0
                    st["exp_avg"] = torch.zeros_like(p)
                    st["exp_avg_sq"] = torch.zeros_like(p)
                st["step"] += 1
                t = st["step"]
                m, v = st["exp_avg"], st["exp_avg_sq"]
                m.mul_(b1).add_(g * (1 - b1))
                v.mul_(b2).add_(g * g * (1 - b2))
                bc1 = 1 - b1 ** t
                bc2 = 1 - b2 ** t
                u = (m / bc1) / ((v / bc2).sqrt() + group["eps"]) + group["weight_decay"] * p
                r1 = p.double().norm()
                r2 = u.double().norm()
                ratio = (r1 / r2).item() if r1 > 0 and r2 > 0 else 1.0
                p.add_(u, alpha=-group["lr"] * ratio)


OPTIMIZERS = {
    "sgd": torch.optim.SGD,
    "momentum": EmaMomentum,
    "adagrad": torch.optim.Adagrad,
    "rmsprop": torch.optim.RMSprop,
    "seed_adaptive": SeedAdaptive,
    "adadelta": torch.optim.Adadelta,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adamax": torch.optim.Adamax,
    "nadam": torch.optim.NAdam,
    "radam": torch.optim.RAdam,
    "lion": Lion,
    "lamb": Lamb,
}

# (optimizer, case name, hyperparameters, extras). Extras: "groups" (bias in its own group
# with these settings), "clip_norm" (clip the gradients' global norm before each step).
CASES = [
    ("sgd", "plain", dict(lr=0.05), {}),
    ("sgd", "weight_decay", dict(lr=0.05, weight_decay=0.1), {}),
    ("sgd", "momentum", dict(lr=0.02, momentum=0.9), {}),
    ("sgd", "dampening", dict(lr=0.02, momentum=0.9, dampening=0.3), {}),
    ("sgd", "nesterov", dict(lr=0.02, momentum=0.8, nesterov=True, weight_decay=0.01), {}),
    ("sgd", "maximize", dict(lr=0.02, momentum=0.5, weight_decay=0.05, maximize=True), {}),
    ("sgd", "groups", dict(lr=0.02, momentum=0.9, weight_decay=0.05), {"groups": dict(lr=0.05, weight_decay=0.0)}),
    ("sgd", "clip_norm", dict(lr=0.05, momentum=0.9), {"clip_norm": 1.0}),
    ("momentum", "ema", dict(lr=0.1, beta=0.9), {}),
    ("momentum", "weight_decay", dict(lr=0.05, beta=0.8, weight_decay=0.1), {}),
    ("adagrad", "default", dict(lr=0.1), {}),
    ("adagrad", "lr_decay_init", dict(lr=0.2, lr_decay=0.01, initial_accumulator_value=0.1, eps=1e-6), {}),
    ("adagrad", "weight_decay_maximize", dict(lr=0.1, weight_decay=0.1, maximize=True), {}),
    ("rmsprop", "default", dict(lr=0.01), {}),
    ("rmsprop", "centered", dict(lr=0.01, alpha=0.9, centered=True), {}),
    ("rmsprop", "momentum", dict(lr=0.005, momentum=0.9, weight_decay=0.01), {}),
    ("rmsprop", "centered_momentum_maximize", dict(lr=0.005, momentum=0.5, centered=True, maximize=True), {}),
    ("seed_adaptive", "eps_inside", dict(lr=0.01, alpha=0.9, eps=1e-4), {}),
    ("adadelta", "default", dict(lr=1.0), {}),
    ("adadelta", "rho_weight_decay", dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.1), {}),
    ("adadelta", "maximize", dict(lr=1.0, maximize=True), {}),
    ("adam", "default", dict(lr=0.01), {}),
    ("adam", "betas", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6), {}),
    ("adam", "beta1_above_half", dict(lr=0.02, betas=(0.3, 0.9)), {}),
    ("adam", "weight_decay", dict(lr=0.01, weight_decay=0.1), {}),
    ("adam", "amsgrad", dict(lr=0.01, amsgrad=True), {}),
    ("adam", "decoupled_maximize", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True), {}),
    ("adam", "groups", dict(lr=0.01, weight_decay=0.05), {"groups": dict(lr=0.003, weight_decay=0.0)}),
    ("adam", "clip_norm", dict(lr=0.01), {"clip_norm": 0.5}),
    ("adamw", "default", dict(lr=0.01), {}),
    ("adamw", "weight_decay_amsgrad", dict(lr=0.01, weight_decay=0.1, amsgrad=True), {}),
    ("adamw", "groups", dict(lr=0.01, weight_decay=0.1), {"groups": dict(weight_decay=0.0)}),
    ("adamax", "default", dict(lr=0.02), {}),
    ("adamax", "weight_decay_maximize", dict(lr=0.02, betas=(0.8, 0.99), weight_decay=0.1, maximize=True), {}),
    ("nadam", "default", dict(lr=0.01), {}),
    ("nadam", "momentum_decay_weight_decay", dict(lr=0.01, momentum_decay=0.01, weight_decay=0.1), {}),
    ("nadam", "decoupled_maximize", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True), {}),
    ("radam", "default", dict(lr=0.01), {}),
    ("radam", "weight_decay", dict(lr=0.01, betas=(0.9, 0.9), weight_decay=0.1), {}),
    ("radam", "decoupled_maximize", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True), {}),
    ("lion", "default", dict(lr=0.003), {}),
    ("lion", "weight_decay", dict(lr=0.003, betas=(0.95, 0.98), weight_decay=0.5), {}),
    ("lamb", "default", dict(lr=0.01), {}),
    ("lamb", "weight_decay", dict(lr=0.01, weight_decay=0.1, eps=1e-8), {}),
]


def loss_fn(w, b):
    # Non-trivial, parameter-dependent gradients: an ill-conditioned quadratic plus a coupling
    # term and a sine ripple over the eight values.
    p = torch.cat([w.reshape(-1), b])
    scales = torch.linspace(0.5, 5.0, p.numel())
    return (scales * p * p).sum() + 0.3 * (p[:-1] * p[1:]).sum() + 0.2 * torch.sin(3 * p).sum()


def run(optimizer, kwargs, extras):
    torch.manual_seed(0)
    start = torch.linspace(-1.5, 1.7, 8)
    w = torch.nn.Parameter(start[:6].reshape(2, 3).clone())
    b = torch.nn.Parameter(start[6:].clone())
    if "groups" in extras:
        params = [dict(params=[w]), dict(params=[b], **extras["groups"])]
    else:
        params = [w, b]
    opt = OPTIMIZERS[optimizer](params, **kwargs)
    grads, out = [], []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = loss_fn(w, b)
        if kwargs.get("maximize"):
            loss = -loss
        loss.backward()
        grads.append(torch.cat([w.grad.reshape(-1), b.grad]).tolist())
        if "clip_norm" in extras:
            torch.nn.utils.clip_grad_norm_([w, b], extras["clip_norm"])
        opt.step()
        out.append(torch.cat([w.detach().reshape(-1), b.detach()]).tolist())
    return dict(start=start.tolist(), grads=grads, params=out)


def f32(values):
    # 9 significant digits round-trip every f32 exactly and keep the file small.
    return [float("%.9g" % v) for v in values]


def optimizers():
    cases = []
    for optimizer, name, kw, extras in CASES:
        r = run(optimizer, kw, extras)
        hp = {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}
        case = dict(optimizer=optimizer, name=name, hyperparameters=hp, **extras)
        case.update(start=f32(r["start"]), grads=[f32(g) for g in r["grads"]], params=[f32(p) for p in r["params"]])
        cases.append(case)
    return dict(torch_version=torch.__version__, tensors=[["weight", [2, 3]], ["bias", [2]]], cases=cases)


S = torch.optim.lr_scheduler

SCHEDULES = [
    ("step", dict(step_size=7, gamma=0.5), lambda o, k: S.StepLR(o, **k)),
    ("multistep", dict(milestones=[5, 12, 30], gamma=0.3), lambda o, k: S.MultiStepLR(o, **k)),
    ("exponential", dict(gamma=0.95), lambda o, k: S.ExponentialLR(o, **k)),
    ("cosine", dict(T_max=40, eta_min=0.001), lambda o, k: S.CosineAnnealingLR(o, **k)),
    ("cosine_restarts", dict(T_0=5, T_mult=2, eta_min=0.002), lambda o, k: S.CosineAnnealingWarmRestarts(o, **k)),
    ("linear", dict(start_factor=0.1, end_factor=1.0, total_iters=20), lambda o, k: S.LinearLR(o, **k)),
    ("polynomial", dict(total_iters=40, power=2.0), lambda o, k: S.PolynomialLR(o, **k)),
    ("onecycle", dict(max_lr=0.1, total_steps=STEPS), lambda o, k: S.OneCycleLR(o, **k)),
    ("onecycle_three_phase_linear", dict(max_lr=0.1, total_steps=STEPS, pct_start=0.25, anneal_strategy="linear", three_phase=True, div_factor=10.0, final_div_factor=100.0, base_momentum=0.8, max_momentum=0.9), lambda o, k: S.OneCycleLR(o, **k)),
    ("warmup_cosine", dict(warmup=10, T_max=40), lambda o, k: S.SequentialLR(o, [S.LinearLR(o, start_factor=1.0 / k["warmup"], total_iters=k["warmup"]), S.CosineAnnealingLR(o, T_max=k["T_max"])], milestones=[k["warmup"]])),
]

PLATEAU_METRICS = [1.0 / (1 + t) if t < 12 else 0.08 + 0.001 * math.sin(t) for t in range(STEPS)]


def schedules():
    cases = []
    for name, kw, make in SCHEDULES:
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
        sched = make(opt, kw)
        lrs, moms = [], []
        for _ in range(STEPS):
            lrs.append(opt.param_groups[0]["lr"])
            moms.append(opt.param_groups[0]["momentum"])
            opt.step()
            sched.step()
        case = dict(name=name, parameters=kw, base_lr=0.1, lrs=lrs)
        if name.startswith("onecycle"):
            case["momenta"] = moms
        cases.append(case)
    plateau = []
    for name, kw in [("plateau", dict(patience=3, factor=0.5)), ("plateau_abs_cooldown", dict(patience=2, factor=0.3, threshold=0.01, threshold_mode="abs", cooldown=2, min_lr=0.002))]:
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=0.1)
        sched = S.ReduceLROnPlateau(opt, **kw)
        lrs = []
        for m in PLATEAU_METRICS:
            sched.step(m)
            lrs.append(opt.param_groups[0]["lr"])
        plateau.append(dict(name=name, parameters=kw, base_lr=0.1, metrics=PLATEAU_METRICS, lrs=lrs))
    return dict(torch_version=torch.__version__, cases=cases, plateau=plateau)


what = sys.argv[1] if len(sys.argv) > 1 else "optimizers"
out = optimizers() if what == "optimizers" else schedules()
json.dump(out, sys.stdout, indent=None, separators=(",", ":"))
sys.stdout.write("\n")
