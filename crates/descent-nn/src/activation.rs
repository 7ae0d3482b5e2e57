//! Element-wise activations, in place. The backward pass needs only the forward's output `y`.

/// An element-wise nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `max(x, 0)`; its derivative at 0 is taken as 0, as PyTorch does.
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
}

impl Activation {
    /// The name used on the command line and in PyTorch (`relu`, `tanh`, `sigmoid`).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
        }
    }

    /// Parses a name as printed by [`Activation::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "relu" => Some(Activation::Relu),
            "tanh" => Some(Activation::Tanh),
            "sigmoid" => Some(Activation::Sigmoid),
            _ => None,
        }
    }

    // x is any shape; the result overwrites x: y = f(x)
    /// Forward, in place.
    pub fn forward(self, x: &mut [f32]) {
        match self {
            Activation::Relu => x.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Tanh => x.iter_mut().for_each(|v| *v = v.tanh()),
            Activation::Sigmoid => x.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
        }
    }

    // dy and y have the same shape; the result overwrites dy: dx = dy * f'(x), written in y
    /// Backward, in place: turns the gradient w.r.t. the output into the gradient w.r.t. the
    /// input, given the forward's output `y`.
    pub fn backward(self, y: &[f32], dy: &mut [f32]) {
        debug_assert_eq!(y.len(), dy.len());
        match self {
            // A select rather than a branch, so that it vectorizes.
            Activation::Relu => dy
                .iter_mut()
                .zip(y)
                .for_each(|(d, y)| *d = if *y > 0.0 { *d } else { 0.0 }),
            Activation::Tanh => dy.iter_mut().zip(y).for_each(|(d, y)| *d *= 1.0 - y * y),
            Activation::Sigmoid => dy.iter_mut().zip(y).for_each(|(d, y)| *d *= y * (1.0 - y)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central finite differences of L(x) = sum_i w_i f(x_i), in f64 around f32 values.
    #[test]
    fn backward_matches_finite_differences() {
        let xs: Vec<f32> = (0..41).map(|i| -2.0 + 0.1 * i as f32 + 0.0137).collect();
        let ws: Vec<f32> = (0..41).map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0).collect();
        for act in [Activation::Relu, Activation::Tanh, Activation::Sigmoid] {
            let mut y = xs.clone();
            act.forward(&mut y);
            let mut d = ws.clone();
            act.backward(&y, &mut d);
            let eps = 1e-3f32;
            for i in 0..xs.len() {
                let f = |x: f32| {
                    let mut v = [x];
                    act.forward(&mut v);
                    v[0] as f64 * ws[i] as f64
                };
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
        for a in [Activation::Relu, Activation::Tanh, Activation::Sigmoid] {
            assert_eq!(Activation::from_name(a.name()), Some(a));
        }
        assert_eq!(Activation::from_name("gelu"), None);
    }
}
