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
        }
    }

    /// The step's scalars for step `t` (from 1) at learning rate `lr`, laid out as
    /// [`Update::HYPER`] says.
    pub fn hyper(&self, lr: f32, t: u64) -> [f32; Update::HYPER] {
        let first = if t <= 1 { 1.0 } else { 0.0 };
        match *self {
            Update::Sgd { .. } => [lr, first, 0.0, 0.0, 1.0],
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
