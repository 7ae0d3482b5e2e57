//! Stochastic gradient descent, PyTorch's `torch.optim.SGD`:
//!
//! ```text
//! g = grad + weight_decay * p          (negated first when maximize)
//! b = g                                 on the first step with momentum
//! b = momentum * b + (1 - dampening) g  afterwards
//! g = nesterov ? g + momentum * b : b
//! p = p - lr * g
//! ```

use rayon::prelude::*;

use crate::{check_finite_nonneg, check_lengths, OptimError, Optimizer, OptimizerState, PAR_CHUNK};

/// Hyperparameters of [`Sgd`], with PyTorch's defaults (`lr` 0.01 as in the seed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0 = none).
    pub momentum: f32,
    /// Dampening for momentum.
    pub dampening: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self {
            lr: 0.01,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            maximize: false,
        }
    }
}

/// SGD with optional momentum, Nesterov, weight decay and maximize.
#[derive(Clone, Debug)]
pub struct Sgd {
    cfg: SgdConfig,
    step: u64,
    momentum_buffer: Vec<f32>,
}

impl Sgd {
    /// Checks the settings and builds the optimizer.
    pub fn new(cfg: SgdConfig) -> Result<Self, OptimError> {
        if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
            return Err(OptimError::InvalidHyperparameter {
                name: "lr",
                value: cfg.lr as f64,
                why: "the learning rate must be a finite number > 0",
            });
        }
        check_finite_nonneg("momentum", cfg.momentum)?;
        check_finite_nonneg("dampening", cfg.dampening)?;
        check_finite_nonneg("weight_decay", cfg.weight_decay)?;
        if cfg.nesterov && (cfg.momentum <= 0.0 || cfg.dampening != 0.0) {
            return Err(OptimError::InvalidCombination(
                "nesterov needs momentum > 0 and dampening = 0",
            ));
        }
        Ok(Self {
            cfg,
            step: 0,
            momentum_buffer: Vec::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> SgdConfig {
        self.cfg
    }
}

fn update_plain(p: &mut [f32], g: &[f32], c: SgdConfig) {
    let lr = if c.maximize { -c.lr } else { c.lr };
    if c.weight_decay == 0.0 {
        p.iter_mut().zip(g).for_each(|(p, g)| *p -= lr * g);
    } else {
        let wd = if c.maximize {
            -c.weight_decay
        } else {
            c.weight_decay
        };
        p.iter_mut()
            .zip(g)
            .for_each(|(p, g)| *p -= lr * (g + wd * *p));
    }
}

fn update_momentum(p: &mut [f32], g: &[f32], b: &mut [f32], c: SgdConfig, first: bool) {
    let sign = if c.maximize { -1.0 } else { 1.0 };
    for ((p, g), b) in p.iter_mut().zip(g).zip(b.iter_mut()) {
        let d = sign * g + c.weight_decay * *p;
        *b = if first {
            d
        } else {
            c.momentum * *b + (1.0 - c.dampening) * d
        };
        let u = if c.nesterov { d + c.momentum * *b } else { *b };
        *p -= c.lr * u;
    }
}

impl Optimizer for Sgd {
    fn name(&self) -> &'static str {
        "sgd"
    }

    fn step(&mut self, params: &mut [f32], grads: &[f32]) -> Result<(), OptimError> {
        check_lengths(params, grads)?;
        let c = self.cfg;
        if c.momentum == 0.0 {
            params
                .par_chunks_mut(PAR_CHUNK)
                .zip(grads.par_chunks(PAR_CHUNK))
                .for_each(|(p, g)| update_plain(p, g, c));
        } else {
            let first = self.momentum_buffer.is_empty();
            if first {
                self.momentum_buffer = vec![0.0; params.len()];
            } else if self.momentum_buffer.len() != params.len() {
                return Err(OptimError::StateMismatch(format!(
                    "the momentum buffer holds {} values but the model has {} parameters",
                    self.momentum_buffer.len(),
                    params.len()
                )));
            }
            params
                .par_chunks_mut(PAR_CHUNK)
                .zip(grads.par_chunks(PAR_CHUNK))
                .zip(self.momentum_buffer.par_chunks_mut(PAR_CHUNK))
                .for_each(|((p, g), b)| update_momentum(p, g, b, c, first));
        }
        self.step += 1;
        Ok(())
    }

    fn plain_sgd_lr(&self) -> Option<f32> {
        let c = self.cfg;
        (c.momentum == 0.0 && c.weight_decay == 0.0 && !c.maximize).then_some(c.lr)
    }

    fn fused_step_done(&mut self) {
        self.step += 1;
    }

    fn lr(&self) -> f32 {
        self.cfg.lr
    }

    fn set_lr(&mut self, lr: f32) {
        self.cfg.lr = lr;
    }

    fn state(&self) -> OptimizerState {
        let mut s = OptimizerState {
            optimizer: self.name().into(),
            step: self.step,
            ..OptimizerState::default()
        };
        if !self.momentum_buffer.is_empty() {
            s.buffers
                .insert("momentum_buffer".into(), self.momentum_buffer.clone());
        }
        s
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<(), OptimError> {
        state.expect_optimizer(self.name())?;
        if let Some(other) = state.buffers.keys().find(|k| *k != "momentum_buffer") {
            return Err(OptimError::StateMismatch(format!(
                "unknown buffer `{other}` for sgd"
            )));
        }
        self.step = state.step;
        self.momentum_buffer = state
            .buffers
            .get("momentum_buffer")
            .cloned()
            .unwrap_or_default();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The update rule written out by hand, one element at a time, in f64.
    fn reference(c: SgdConfig, p0: f64, grads: &[f64]) -> f64 {
        let (mut p, mut b) = (p0, 0.0);
        for (t, &g) in grads.iter().enumerate() {
            let mut d = if c.maximize { -g } else { g };
            d += c.weight_decay as f64 * p;
            if c.momentum != 0.0 {
                b = if t == 0 {
                    d
                } else {
                    c.momentum as f64 * b + (1.0 - c.dampening as f64) * d
                };
                d = if c.nesterov {
                    d + c.momentum as f64 * b
                } else {
                    b
                };
            }
            p -= c.lr as f64 * d;
        }
        p
    }

    #[test]
    fn follows_the_pytorch_rule() {
        let grads = [0.3, -1.2, 0.5, 2.0, -0.7];
        let configs = [
            SgdConfig::default(),
            SgdConfig {
                lr: 0.1,
                weight_decay: 0.01,
                ..SgdConfig::default()
            },
            SgdConfig {
                lr: 0.1,
                momentum: 0.9,
                ..SgdConfig::default()
            },
            SgdConfig {
                lr: 0.05,
                momentum: 0.9,
                dampening: 0.3,
                ..SgdConfig::default()
            },
            SgdConfig {
                lr: 0.05,
                momentum: 0.8,
                nesterov: true,
                weight_decay: 0.1,
                ..SgdConfig::default()
            },
            SgdConfig {
                lr: 0.05,
                momentum: 0.5,
                maximize: true,
                weight_decay: 0.1,
                ..SgdConfig::default()
            },
        ];
        for c in configs {
            let mut opt = Sgd::new(c).unwrap();
            let mut p = [1.5f32];
            for g in grads {
                opt.step(&mut p, &[g as f32]).unwrap();
            }
            let want = reference(c, 1.5, &grads);
            assert!(
                (p[0] as f64 - want).abs() < 1e-6,
                "{c:?}: {} vs {want}",
                p[0]
            );
        }
    }

    #[test]
    fn state_round_trip_continues_identically() {
        let c = SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            ..SgdConfig::default()
        };
        let n = 100_000;
        let grads: Vec<f32> = (0..n).map(|i| ((i % 13) as f32 - 6.0) * 0.1).collect();
        let mut a = Sgd::new(c).unwrap();
        let mut pa = vec![0.5f32; n];
        a.step(&mut pa, &grads).unwrap();
        let mut b = Sgd::new(c).unwrap();
        b.load_state(&a.state()).unwrap();
        let mut pb = pa.clone();
        a.step(&mut pa, &grads).unwrap();
        b.step(&mut pb, &grads).unwrap();
        assert_eq!(pa, pb);
        assert_eq!(b.state().step, 2);
    }

    #[test]
    fn only_plain_sgd_offers_the_fused_step() {
        assert_eq!(
            Sgd::new(SgdConfig {
                lr: 0.1,
                ..SgdConfig::default()
            })
            .unwrap()
            .plain_sgd_lr(),
            Some(0.1)
        );
        for c in [
            SgdConfig {
                momentum: 0.9,
                ..SgdConfig::default()
            },
            SgdConfig {
                weight_decay: 1e-4,
                ..SgdConfig::default()
            },
            SgdConfig {
                maximize: true,
                ..SgdConfig::default()
            },
        ] {
            assert_eq!(Sgd::new(c).unwrap().plain_sgd_lr(), None, "{c:?}");
        }
        let mut s = Sgd::new(SgdConfig::default()).unwrap();
        s.fused_step_done();
        assert_eq!(s.state().step, 1);
    }

    #[test]
    fn bad_settings_are_refused() {
        for lr in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            assert!(matches!(
                Sgd::new(SgdConfig {
                    lr,
                    ..SgdConfig::default()
                }),
                Err(OptimError::InvalidHyperparameter { name: "lr", .. })
            ));
        }
        assert!(Sgd::new(SgdConfig {
            nesterov: true,
            ..SgdConfig::default()
        })
        .is_err());
        assert!(Sgd::new(SgdConfig {
            momentum: -0.1,
            ..SgdConfig::default()
        })
        .is_err());
        let mut opt = Sgd::new(SgdConfig::default()).unwrap();
        assert!(matches!(
            opt.step(&mut [0.0; 3], &[0.0; 2]),
            Err(OptimError::LengthMismatch {
                params: 3,
                grads: 2
            })
        ));
        let other = OptimizerState {
            optimizer: "adam".into(),
            ..OptimizerState::default()
        };
        assert!(matches!(
            opt.load_state(&other),
            Err(OptimError::StateMismatch(_))
        ));
    }
}
