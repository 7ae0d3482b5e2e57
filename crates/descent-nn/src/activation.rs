//! Element-wise activations (PyTorch's `nn.ReLU`, `nn.LeakyReLU`, `nn.GELU`, `nn.SiLU`,
//! `nn.Tanh`, `nn.Sigmoid`), as a function pair and as a [`Layer`].
//!
//! ReLU, leaky ReLU (positive slope), tanh and sigmoid have derivatives that are functions of
//! their output, so they can be fused onto the layer before them (Linear, Conv2d) and run in
//! place; GELU and SiLU need their input and stay separate layers.

use descent_tensor::backend::{Act, Backend, BackendError, Span};

use crate::layer::{numel, Backward, DeviceIo, Forward, Layer};

/// An element-wise nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// `max(x, 0)`; its derivative at 0 is taken as 0, as PyTorch does.
    Relu,
    /// `x` for `x > 0`, `slope * x` otherwise (PyTorch's default slope 0.01).
    LeakyRelu(f32),
    /// `x * Φ(x)`, Φ the standard normal CDF (PyTorch's `approximate='none'`; erf as
    /// PyTorch's vectorized CPU kernel computes it, `descent_tensor::vmath`).
    Gelu,
    /// `0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x³)))` (`approximate='tanh'`).
    GeluTanh,
    /// `x * sigmoid(x)` (also called swish).
    Silu,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Activation {
    /// The name used on the command line and in model files (`relu`, `leaky_relu`, `gelu`,
    /// `gelu_tanh`, `silu`, `tanh`, `sigmoid`).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::LeakyRelu(_) => "leaky_relu",
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_tanh",
            Activation::Silu => "silu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
        }
    }

    /// PyTorch's class name.
    pub fn torch_name(self) -> &'static str {
        match self {
            Activation::Relu => "ReLU",
            Activation::LeakyRelu(_) => "LeakyReLU",
            Activation::Gelu | Activation::GeluTanh => "GELU",
            Activation::Silu => "SiLU",
            Activation::Tanh => "Tanh",
            Activation::Sigmoid => "Sigmoid",
        }
    }

    /// Parses a name as printed by [`Activation::name`] (leaky ReLU with slope 0.01).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "relu" => Some(Activation::Relu),
            "leaky_relu" => Some(Activation::LeakyRelu(0.01)),
            "gelu" => Some(Activation::Gelu),
            "gelu_tanh" => Some(Activation::GeluTanh),
            "silu" => Some(Activation::Silu),
            "tanh" => Some(Activation::Tanh),
            "sigmoid" => Some(Activation::Sigmoid),
            _ => None,
        }
    }

    /// Whether the derivative is a function of the output alone, so that the activation can
    /// run in place, fused onto the layer before it.
    pub fn fusable(self) -> bool {
        match self {
            Activation::Relu | Activation::Tanh | Activation::Sigmoid => true,
            Activation::LeakyRelu(s) => s > 0.0,
            Activation::Gelu | Activation::GeluTanh | Activation::Silu => false,
        }
    }

    /// The backend's form of a [`fusable`](Activation::fusable) activation (one whose
    /// device pass needs only its output); `None` for the others.
    pub fn device(self) -> Option<Act> {
        match self {
            Activation::Relu => Some(Act::Relu),
            Activation::Tanh => Some(Act::Tanh),
            Activation::Sigmoid => Some(Act::Sigmoid),
            Activation::LeakyRelu(s) if s > 0.0 => Some(Act::LeakyRelu(s)),
            _ => None,
        }
    }

    /// `f(x)` for one value.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu(s) => {
                if x > 0.0 {
                    x
                } else {
                    s * x
                }
            }
            Activation::Gelu => {
                let mut v = [x];
                descent_tensor::vmath::gelu(&mut v);
                v[0]
            }
            Activation::GeluTanh => {
                0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh())
            }
            Activation::Silu => x * sigmoid(x),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => sigmoid(x),
        }
    }

    /// `f'(x)` for one value, from the input `x` and the output `y`.
    fn derivative(self, x: f32, y: f32) -> f32 {
        match self {
            Activation::Relu => f32::from(y > 0.0),
            // From the input: with a negative slope, y > 0 for x < 0 too.
            Activation::LeakyRelu(s) => {
                if x > 0.0 {
                    1.0
                } else {
                    s
                }
            }
            Activation::Gelu => {
                let mut d = [0.0];
                descent_tensor::vmath::gelu_backward(&[x], &[1.0], &mut d);
                d[0]
            }
            Activation::GeluTanh => {
                let inner = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
                let t = inner.tanh();
                let dinner = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dinner
            }
            Activation::Silu => {
                let s = sigmoid(x);
                s * (1.0 + x * (1.0 - s))
            }
            Activation::Tanh => 1.0 - y * y,
            Activation::Sigmoid => y * (1.0 - y),
        }
    }

    // x is any shape; the result overwrites x: y = f(x)
    /// Forward, in place.
    pub fn forward(self, x: &mut [f32]) {
        match self {
            Activation::Relu => x.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Gelu => descent_tensor::vmath::gelu(x),
            Activation::Tanh => x.iter_mut().for_each(|v| *v = v.tanh()),
            Activation::Sigmoid => x.iter_mut().for_each(|v| *v = sigmoid(*v)),
            a => x.iter_mut().for_each(|v| *v = a.apply(*v)),
        }
    }

    /// `y = f(x)`, out of place (GELU in one pass over both; the rest copy, then run in place).
    pub fn forward_into(self, x: &[f32], y: &mut [f32]) {
        match self {
            Activation::Gelu => descent_tensor::vmath::gelu_into(x, y),
            a => {
                y.copy_from_slice(x);
                a.forward(y)
            }
        }
    }

    // dy and y have the same shape; the result overwrites dy: dx = dy * f'(x)
    /// Backward, in place, for a [`fusable`](Activation::fusable) activation: turns the
    /// gradient w.r.t. the output into the gradient w.r.t. the input, given the output `y`.
    pub fn backward(self, y: &[f32], dy: &mut [f32]) {
        debug_assert!(self.fusable(), "{} needs its input", self.name());
        debug_assert_eq!(y.len(), dy.len());
        match self {
            // A select rather than a branch, so that it vectorizes.
            Activation::Relu => dy
                .iter_mut()
                .zip(y)
                .for_each(|(d, y)| *d = if *y > 0.0 { *d } else { 0.0 }),
            Activation::Tanh => dy.iter_mut().zip(y).for_each(|(d, y)| *d *= 1.0 - y * y),
            Activation::Sigmoid => dy.iter_mut().zip(y).for_each(|(d, y)| *d *= y * (1.0 - y)),
            // A positive slope keeps the sign: y > 0 exactly when x > 0.
            Activation::LeakyRelu(s) => dy
                .iter_mut()
                .zip(y)
                .for_each(|(d, y)| *d *= if *y > 0.0 { 1.0 } else { s }),
            _ => unreachable!("only fusable activations run in place"),
        }
    }

    // x, y, dy, dx have the same shape: dx = dy * f'(x)
    /// Backward from the input and the output, for every activation.
    pub fn backward_from_input(self, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
        if self == Activation::Gelu {
            return descent_tensor::vmath::gelu_backward(x, dy, dx);
        }
        for (((d, &g), &x), &y) in dx.iter_mut().zip(dy).zip(x).zip(y) {
            *d = g * self.derivative(x, y);
        }
    }
}

/// An activation as a layer of its own: its output in a new buffer, its input kept for the
/// backward pass (GELU and SiLU need it).
#[derive(Clone, Debug)]
pub struct ActivationLayer {
    /// The function.
    pub act: Activation,
    shape: Vec<usize>,
}

impl ActivationLayer {
    /// `act` on inputs of `shape`.
    pub fn new(act: Activation, shape: Vec<usize>) -> Self {
        Self { act, shape }
    }
}

/// Values per thread below which an element-wise pass is not split.
const MIN_PER_THREAD: usize = 1 << 14;

impl Layer for ActivationLayer {
    fn kind(&self) -> &'static str {
        self.act.torch_name()
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    fn on_device(&self) -> Result<(), String> {
        match self.act.device() {
            Some(_) => Ok(()),
            None => Err(format!(
                "{} has no device program yet",
                self.act.torch_name()
            )),
        }
    }

    // x and y are (B, *shape)
    fn device_forward(
        &self,
        be: &mut dyn Backend,
        batch: usize,
        x: Span,
        y: Span,
    ) -> Result<(), BackendError> {
        let n = batch * numel(&self.shape);
        let act = self.act.device().expect("on_device checked it");
        be.copy(y.sub(0, n), x.sub(0, n))?;
        be.bias_act(y.sub(0, n), None, n.max(1), act)
    }

    // dy, dx are (B, *shape); dx = dy * f'(y)
    fn device_backward(
        &self,
        be: &mut dyn Backend,
        batch: usize,
        io: DeviceIo,
    ) -> Result<(), BackendError> {
        let Some(dx) = io.dx else { return Ok(()) };
        let n = batch * numel(&self.shape);
        let act = self.act.device().expect("on_device checked it");
        be.copy(dx.sub(0, n), io.dy.sub(0, n))?;
        be.act_grad(dx.sub(0, n), io.y.sub(0, n), act)
    }

    // x and y are (B, *shape)
    fn forward(&self, f: &mut Forward<'_>, x: &[f32], y: &mut [f32], _ws: &mut [f32]) {
        let n = f.batch * numel(&self.shape);
        let (act, x) = (self.act, &x[..n]);
        f.pool
            .split_slice(&mut y[..n], 16, MIN_PER_THREAD, |off, chunk| {
                act.forward_into(&x[off..off + chunk.len()], chunk)
            });
    }

    // dy, dx are (B, *shape)
    fn backward(
        &self,
        b: &mut Backward<'_>,
        x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        _ws: &mut [f32],
    ) {
        let Some(dx) = dx else { return };
        let n = b.batch * numel(&self.shape);
        let act = self.act;
        let (x, y, dy) = (&x[..n], &y[..n], &dy[..n]);
        b.pool
            .split_slice(&mut dx[..n], 16, MIN_PER_THREAD, |off, chunk| {
                let r = off..off + chunk.len();
                act.backward_from_input(&x[r.clone()], &y[r.clone()], &dy[r], chunk)
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Activation; 7] = [
        Activation::Relu,
        Activation::LeakyRelu(0.1),
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::Silu,
        Activation::Tanh,
        Activation::Sigmoid,
    ];

    /// Central finite differences of L(x) = sum_i w_i f(x_i), in f64 around f32 values, for
    /// the in-place and the from-input backward passes.
    #[test]
    fn backward_matches_finite_differences() {
        let xs: Vec<f32> = (0..41).map(|i| -2.0 + 0.1 * i as f32 + 0.0137).collect();
        let ws: Vec<f32> = (0..41).map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0).collect();
        for act in ALL {
            let mut y = xs.clone();
            act.forward(&mut y);
            let mut d = vec![0.0; xs.len()];
            act.backward_from_input(&xs, &y, &ws, &mut d);
            if act.fusable() {
                let mut d2 = ws.clone();
                act.backward(&y, &mut d2);
                assert_eq!(d, d2, "{act:?}");
            }
            let eps = 1e-3f32;
            for i in 0..xs.len() {
                let f = |x: f32| act.apply(x) as f64 * ws[i] as f64;
                let num = (f(xs[i] + eps) - f(xs[i] - eps)) / (2.0 * eps as f64);
                assert!(
                    (num - d[i] as f64).abs() < 2e-3,
                    "{act:?} at x={}: analytic {} numeric {num}",
                    xs[i],
                    d[i]
                );
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for a in ALL {
            let b = Activation::from_name(a.name()).unwrap();
            assert_eq!(b.name(), a.name());
        }
        assert_eq!(Activation::from_name("swish"), None);
    }
}

/// `log_softmax` over the last dimension (PyTorch's `nn.LogSoftmax(dim=-1)`): the output of
/// a classifier trained with the NLL loss.
#[derive(Clone, Debug)]
pub struct LogSoftmax {
    shape: Vec<usize>,
}

impl LogSoftmax {
    /// On inputs of `shape`.
    pub fn new(shape: Vec<usize>) -> Self {
        Self { shape }
    }
}

impl Layer for LogSoftmax {
    fn kind(&self) -> &'static str {
        "LogSoftmax"
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    // x and y are (R, D), D the last dimension: y = x - logsumexp(x).
    fn forward(&self, f: &mut Forward<'_>, x: &[f32], y: &mut [f32], _ws: &mut [f32]) {
        let d = *self.shape.last().expect("shapes are not empty");
        let n = f.batch * numel(&self.shape);
        for (xr, yr) in x[..n].chunks_exact(d).zip(y[..n].chunks_exact_mut(d)) {
            let max = xr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lse = xr.iter().map(|v| (v - max).exp()).sum::<f32>().ln() + max;
            yr.iter_mut().zip(xr).for_each(|(y, x)| *y = x - lse);
        }
    }

    // dx = dy - softmax(x) · Σ dy, with softmax(x) = exp(y).
    fn backward(
        &self,
        b: &mut Backward<'_>,
        _x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        _ws: &mut [f32],
    ) {
        let Some(dx) = dx else { return };
        let d = *self.shape.last().expect("shapes are not empty");
        let n = b.batch * numel(&self.shape);
        for ((dxr, dyr), yr) in dx[..n]
            .chunks_exact_mut(d)
            .zip(dy[..n].chunks_exact(d))
            .zip(y[..n].chunks_exact(d))
        {
            let s: f32 = dyr.iter().sum();
            for ((o, g), y) in dxr.iter_mut().zip(dyr).zip(yr) {
                *o = g - y.exp() * s;
            }
        }
    }
}
