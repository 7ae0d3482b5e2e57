//! The optimizers' element-wise updates as a backend runs them, with the scalars of a step.

/// An optimizer's element-wise update, as one pass over a range of the flat parameters.
/// The step's learning rate and bias corrections come from [`Region::Hyper`](super::Region::Hyper) (see
/// [`Update::HYPER`]); the rest is fixed for the run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Update {
    /// `torch.optim.SGD`: `g = ±grad + wd·p; b = g` (first step) or `momentum·b + (1 −
    /// dampening)·g`; `g = nesterov ? g + momentum·b : b; p -= lr·g`.
    Sgd {
        /// Momentum factor (0: no buffer).
        momentum: f32,
        /// Dampening of the momentum.
        dampening: f32,
        /// L2 penalty added to the gradient.
        weight_decay: f32,
        /// Nesterov momentum.
        nesterov: bool,
        /// Ascend.
        maximize: bool,
    },
    /// `torch.optim.Adam` / `AdamW`: `m = β1·m + (1 − β1)·g; v = β2·v + (1 − β2)·g²;
    /// p -= step_size · m / (sqrt(v̂) · inv_bc2_sqrt + eps)`, with L2 decay added to `g` or
    /// decoupled decay `p *= 1 − lr·wd` first.
    Adam {
        /// Decay of the first moment.
        beta1: f32,
        /// Decay of the second moment.
        beta2: f32,
        /// Added to the denominator.
        eps: f32,
        /// Weight decay factor.
        weight_decay: f32,
        /// AdamW's decoupled decay rather than L2.
        decoupled: bool,
        /// Keep the running maximum of `v` (a third state buffer).
        amsgrad: bool,
        /// Ascend.
        maximize: bool,
    },
    /// The seed's momentum: `g = grad + wd·p; v = β·v + (1 − β)·g; p -= lr·v`.
    Momentum {
        /// Averaging factor of the velocity.
        beta: f32,
        /// L2 penalty.
        weight_decay: f32,
    },
    /// `torch.optim.Adagrad`: `g = ±grad + wd·p; s += g²; p -= clr · g / (sqrt(s) + eps)`,
    /// `clr = lr / (1 + (t − 1)·lr_decay)` (the step size of [`Update::HYPER`]).
    Adagrad {
        /// Decay of the learning rate per step.
        lr_decay: f32,
        /// Added to the denominator.
        eps: f32,
        /// L2 penalty.
        weight_decay: f32,
        /// What the sum of squares starts at.
        initial_accumulator_value: f32,
        /// Ascend.
        maximize: bool,
    },
    /// `torch.optim.RMSprop`: `v = α·v + (1 − α)·g²`, centered on the running mean of `g`
    /// when asked, the denominator `sqrt(var) + eps` (or `sqrt(var + eps)`), with momentum
    /// when asked. State: `v`, then the mean when centered, then the momentum buffer.
    RmsProp {
        /// Decay of the mean square.
        alpha: f32,
        /// Added to the denominator.
        eps: f32,
        /// L2 penalty.
        weight_decay: f32,
        /// Momentum factor (0: none).
        momentum: f32,
        /// Divide by the variance rather than the mean square.
        centered: bool,
        /// `sqrt(var + eps)`, the seed's adaptive rule.
        eps_inside_sqrt: bool,
        /// Ascend.
        maximize: bool,
    },
    /// `torch.optim.Adadelta`: `v = ρ·v + (1 − ρ)·g²; d = sqrt(u + eps) / sqrt(v + eps) · g;
    /// u = ρ·u + (1 − ρ)·d²; p -= lr·d`.
    Adadelta {
        /// Decay of the running averages.
        rho: f32,
        /// Added inside the square roots.
        eps: f32,
        /// L2 penalty.
        weight_decay: f32,
        /// Ascend.
        maximize: bool,
    },
    /// `torch.optim.Adamax`: `m = lerp(m, g, 1 − β1); u = max(β2·u, |g| + eps);
    /// p -= lr / (1 − β1^t) · m / u` (the step size of [`Update::HYPER`]).
    Adamax {
        /// Decay of the first moment.
        beta1: f32,
        /// Decay of the infinity norm.
        beta2: f32,
        /// Added to |g|.
        eps: f32,
        /// L2 penalty.
        weight_decay: f32,
        /// Ascend.
        maximize: bool,
    },
    /// Lion (Chen et al. 2023): `p = p·(1 − lr·wd) − lr·sign(β1·m + (1 − β1)·g);
    /// m = β2·m + (1 − β2)·g`.
    Lion {
        /// Interpolation of the update's direction.
        beta1: f32,
        /// Decay of the momentum.
        beta2: f32,
        /// Decoupled weight decay.
        weight_decay: f32,
        /// Ascend.
        maximize: bool,
    },
}

impl Update {
    /// Scalars of a step in [`Region::Hyper`](super::Region::Hyper), in this order: the learning rate; whether
    /// this is the first step (1) or not (0), for SGD's momentum buffer; Adam's step size
    /// `lr / (1 − β1^t)`; Adam's `1 / sqrt(1 − β2^t)`; the decoupled decay's factor
    /// `1 − lr·wd` (1 without it), worked out in f64 as PyTorch does in Python.
    pub const HYPER: usize = 5;

    /// State buffers of the parameters' length it keeps.
    pub fn state_buffers(&self) -> usize {
        match *self {
            Update::Sgd { momentum, .. } => usize::from(momentum != 0.0),
            Update::Adam { amsgrad, .. } => 2 + usize::from(amsgrad),
            Update::Momentum { .. } | Update::Adagrad { .. } | Update::Lion { .. } => 1,
            Update::RmsProp {
                centered, momentum, ..
            } => 1 + usize::from(centered) + usize::from(momentum > 0.0),
            Update::Adadelta { .. } | Update::Adamax { .. } => 2,
        }
    }

    /// What the state buffers start at (Adagrad's initial accumulator; 0 for the rest).
    pub fn state_init(&self) -> f32 {
        match *self {
            Update::Adagrad {
                initial_accumulator_value,
                ..
            } => initial_accumulator_value,
            _ => 0.0,
        }
    }

    /// The step's scalars for step `t` (from 1) at learning rate `lr`, laid out as
    /// [`Update::HYPER`] says.
    pub fn hyper(&self, lr: f32, t: u64) -> [f32; Update::HYPER] {
        let first = if t <= 1 { 1.0 } else { 0.0 };
        match *self {
            Update::Sgd { .. }
            | Update::Momentum { .. }
            | Update::RmsProp { .. }
            | Update::Adadelta { .. } => [lr, first, 0.0, 0.0, 1.0],
            Update::Adagrad { lr_decay, .. } => {
                let clr = lr as f64 / (1.0 + (t as f64 - 1.0) * lr_decay as f64);
                [lr, first, clr as f32, 0.0, 1.0]
            }
            Update::Adamax { beta1, .. } => {
                let bc = 1.0 - (beta1 as f64).powf(t as f64);
                [lr, first, (lr as f64 / bc) as f32, 0.0, 1.0]
            }
            Update::Lion { weight_decay, .. } => {
                let keep = (1.0 - lr as f64 * weight_decay as f64) as f32;
                [lr, first, 0.0, 0.0, keep]
            }
            Update::Adam {
                beta1,
                beta2,
                weight_decay,
                decoupled,
                ..
            } => {
                let t = t as f64;
                let bc1 = 1.0 - (beta1 as f64).powf(t);
                let bc2 = 1.0 - (beta2 as f64).powf(t);
                let keep = match decoupled {
                    true => (1.0 - lr as f64 * weight_decay as f64) as f32,
                    false => 1.0,
                };
                [
                    lr,
                    first,
                    (lr as f64 / bc1) as f32,
                    (1.0 / bc2.sqrt()) as f32,
                    keep,
                ]
            }
        }
    }

    /// One element's update (the reference every backend's kernel is tested against, and
    /// the CPU optimizer's arithmetic, operation for operation): `p`, its gradient, its state
    /// values (as many as [`Update::state_buffers`]) and the step's scalars.
    pub fn apply(&self, p: &mut f32, g: f32, state: &mut [f32], h: &[f32; Update::HYPER]) {
        let [lr, first, step_size, inv_bc2_sqrt, keep] = *h;
        let sign = |maximize: bool| if maximize { -1.0 } else { 1.0 };
        match *self {
            Update::Sgd {
                momentum,
                dampening,
                weight_decay,
                nesterov,
                maximize,
            } => {
                let g = sign(maximize) * g;
                let d = if weight_decay != 0.0 {
                    g + weight_decay * *p
                } else {
                    g
                };
                if momentum == 0.0 {
                    *p -= lr * d;
                    return;
                }
                let b = &mut state[0];
                *b = if first != 0.0 {
                    d
                } else {
                    momentum * *b + (1.0 - dampening) * d
                };
                let u = if nesterov { d + momentum * *b } else { *b };
                *p -= lr * u;
            }
            Update::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled,
                amsgrad,
                maximize,
            } => {
                let l2 = if decoupled { 0.0 } else { weight_decay };
                let pi = *p * keep;
                let g = sign(maximize) * g + l2 * pi;
                let m = lerp(state[0], g, 1.0 - beta1);
                let v = beta2 * state[1] + (1.0 - beta2) * g * g;
                state[0] = m;
                state[1] = v;
                let second = if amsgrad {
                    state[2] = state[2].max(v);
                    state[2]
                } else {
                    v
                };
                let den = second.sqrt() * inv_bc2_sqrt + eps;
                *p = pi + -step_size * (m / den);
            }
            Update::Momentum { beta, weight_decay } => {
                let gi = g + weight_decay * *p;
                state[0] = beta * state[0] + (1.0 - beta) * gi;
                *p -= lr * state[0];
            }
            Update::Adagrad {
                eps,
                weight_decay,
                maximize,
                ..
            } => {
                let gi = sign(maximize) * g + weight_decay * *p;
                let si = state[0] + gi * gi;
                *p += -step_size * (gi / (si.sqrt() + eps));
                state[0] = si;
            }
            Update::RmsProp {
                alpha,
                eps,
                weight_decay,
                momentum,
                centered,
                eps_inside_sqrt,
                maximize,
            } => {
                let w = 1.0 - alpha;
                let gi = sign(maximize) * g + weight_decay * *p;
                let vi = alpha * state[0] + w * gi * gi;
                state[0] = vi;
                let var = if centered {
                    state[1] = lerp(state[1], gi, w);
                    vi + (-state[1]) * state[1]
                } else {
                    vi
                };
                let den = if eps_inside_sqrt {
                    (var + eps).sqrt()
                } else {
                    var.sqrt() + eps
                };
                if momentum > 0.0 {
                    let b = &mut state[1 + usize::from(centered)];
                    *b = momentum * *b + gi / den;
                    *p += -lr * *b;
                } else {
                    *p += -lr * (gi / den);
                }
            }
            Update::Adadelta {
                rho,
                eps,
                weight_decay,
                maximize,
            } => {
                let w = 1.0 - rho;
                let gi = sign(maximize) * g + weight_decay * *p;
                let vi = rho * state[0] + w * gi * gi;
                let d = (state[1] + eps).sqrt() / (vi + eps).sqrt() * gi;
                state[1] = rho * state[1] + w * d * d;
                state[0] = vi;
                *p += -lr * d;
            }
            Update::Adamax {
                beta1,
                beta2,
                eps,
                weight_decay,
                maximize,
            } => {
                let gi = sign(maximize) * g + weight_decay * *p;
                let mi = lerp(state[0], gi, 1.0 - beta1);
                let ui = (state[1] * beta2).max(gi.abs() + eps);
                *p += -step_size * (mi / ui);
                state[0] = mi;
                state[1] = ui;
            }
            Update::Lion {
                beta1,
                beta2,
                maximize,
                ..
            } => {
                let gi = sign(maximize) * g;
                let d = state[0] * beta1 + gi * (1.0 - beta1);
                // sign(d), with sign(0) = 0 as torch.sign.
                let s = (d > 0.0) as i32 as f32 - (d < 0.0) as i32 as f32;
                *p = *p * keep - lr * s;
                state[0] = state[0] * beta2 + gi * (1.0 - beta2);
            }
        }
    }
}

/// PyTorch's `lerp`: `a + w·(b − a)`, written from `b` when `w` is large (`w >= 0.5`), as
/// PyTorch rounds it.
#[inline(always)]
pub fn lerp(a: f32, b: f32, w: f32) -> f32 {
    if w.abs() < 0.5 {
        a + w * (b - a)
    } else {
        b - (b - a) * (1.0 - w)
    }
}
