//! The update rules, one file each, and the one enum that names them.
//!
//! Each rule is a config struct with PyTorch's defaults (checked by `validate`) and a step
//! struct holding that step's scalars (bias corrections and the like, worked out once in f64
//! as PyTorch does in Python) whose `apply` updates one piece of the flat buffers in a single
//! pass. The walking over tensors, groups, threads and state is [`crate::Optimizer`]'s.

mod adadelta;
mod adagrad;
mod adam;
mod adamax;
mod lamb;
mod lion;
mod momentum;
mod nadam;
mod radam;
mod rmsprop;
mod sgd;

pub use adadelta::AdadeltaConfig;
pub use adagrad::AdagradConfig;
pub use adam::AdamConfig;
pub use adamax::AdamaxConfig;
pub use lamb::LambConfig;
pub use lion::LionConfig;
pub use momentum::MomentumConfig;
pub use nadam::NAdamConfig;
pub use radam::RAdamConfig;
pub use rmsprop::RmsPropConfig;
pub use sgd::SgdConfig;

pub(crate) use lamb::LambStep;

use crate::{par::Bufs, OptimError};

/// How weight decay enters the update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecayMode {
    /// Added to the gradient (`g + wd * p`), PyTorch's `weight_decay` for Adam and most others.
    L2,
    /// Applied to the weights apart from the gradient (`p *= 1 - lr * wd`), as AdamW
    /// (`decoupled_weight_decay=True` in PyTorch's Adam, NAdam and RAdam).
    Decoupled,
}

impl DecayMode {
    /// One step's decay terms for rate `lr` and factor `wd`: what the weights are multiplied
    /// by before the update (`1 - lr * wd` when decoupled, else exactly 1) and the L2
    /// coefficient added to the gradient (`wd` for L2, else 0).
    pub(crate) fn terms(self, lr: f32, wd: f32) -> (f32, f32) {
        match self {
            DecayMode::L2 => (1.0, wd),
            DecayMode::Decoupled => (decay_factor(lr, wd), 0.0),
        }
    }
}

/// The part of a step that Adam, NAdam and RAdam share, for one value: decoupled decay of
/// the weight, the signed gradient plus L2 decay, and the two moments (PyTorch's `lerp` for the
/// first, `mul_` + `addcmul_` for the second).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Moments {
    sign: f32,
    keep: f32,
    l2: f32,
    w1: f32,
    beta2: f32,
    w2: f32,
}

impl Moments {
    pub(crate) fn new(
        maximize: bool,
        decay: DecayMode,
        lr: f32,
        wd: f32,
        beta1: f32,
        beta2: f32,
    ) -> Self {
        let (keep, l2) = decay.terms(lr, wd);
        Self {
            sign: if maximize { -1.0 } else { 1.0 },
            keep,
            l2,
            w1: 1.0 - beta1,
            beta2,
            w2: 1.0 - beta2,
        }
    }

    /// `(p, g, m, v)` after the shared part: the decayed weight, the gradient the update
    /// uses, and the new moments.
    #[inline(always)]
    pub(crate) fn update(&self, p: f32, g: f32, m: f32, v: f32) -> [f32; 4] {
        // p * 1.0 is exact: without decoupled decay the weight is unchanged.
        let p = p * self.keep;
        let g = self.sign * g + self.l2 * p;
        [p, g, lerp(m, g, self.w1), self.beta2 * v + self.w2 * g * g]
    }
}

/// `1 - lr * wd`, worked out in f64 as PyTorch does in Python.
pub(crate) fn decay_factor(lr: f32, wd: f32) -> f32 {
    (1.0 - lr as f64 * wd as f64) as f32
}

/// An optimizer and its hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerConfig {
    /// Full-batch gradient descent: SGD's update, one step per pass over the data (the
    /// training loop accumulates the whole set's gradient).
    Gd(SgdConfig),
    /// Stochastic gradient descent (`torch.optim.SGD`).
    Sgd(SgdConfig),
    /// The seed's momentum, an exponential moving average of the gradients.
    Momentum(MomentumConfig),
    /// `torch.optim.Adagrad`.
    Adagrad(AdagradConfig),
    /// `torch.optim.RMSprop`, or the seed's adaptive rule with `eps_inside_sqrt`.
    RmsProp(RmsPropConfig),
    /// `torch.optim.Adadelta`.
    Adadelta(AdadeltaConfig),
    /// `torch.optim.Adam`.
    Adam(AdamConfig),
    /// `torch.optim.AdamW` (Adam with decoupled decay; `decay` is ignored).
    AdamW(AdamConfig),
    /// `torch.optim.Adamax`.
    Adamax(AdamaxConfig),
    /// `torch.optim.NAdam`.
    NAdam(NAdamConfig),
    /// `torch.optim.RAdam`.
    RAdam(RAdamConfig),
    /// Lion (Chen et al. 2023).
    Lion(LionConfig),
    /// LAMB (You et al. 2020).
    Lamb(LambConfig),
}

/// An optimizer serializes as its name and every hyperparameter in PyTorch's names:
/// `{"optimizer": "adam", "lr": 0.001, "beta1": 0.9, ...}`. Reading one starts from the
/// optimizer's defaults, so hyperparameters left out keep them; an unknown one is an error.
impl serde::Serialize for OptimizerConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let hyper = self.hyperparameters();
        let mut map = s.serialize_map(Some(hyper.len() + 1))?;
        map.serialize_entry("optimizer", self.name())?;
        for (name, v) in hyper {
            match v {
                // Every number is an f32 (`Field::Num`): written as one, 0.01 stays `0.01`
                // (as f64 it would be 0.009999999776482582) and reads back to the same bits.
                HyperValue::Num(x) => map.serialize_entry(name, &(x as f32))?,
                HyperValue::Flag(b) => map.serialize_entry(name, &b)?,
            }
        }
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for OptimizerConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let map: std::collections::BTreeMap<String, serde_json::Value> =
            serde::Deserialize::deserialize(d)?;
        let name = map
            .get("optimizer")
            .and_then(|v| v.as_str())
            .ok_or_else(|| D::Error::custom("an optimizer needs `optimizer = NAME`"))?;
        let mut c = OptimizerConfig::default_for(name).ok_or_else(|| {
            D::Error::custom(format!(
                "unknown optimizer `{name}`: the optimizers are {}",
                OPTIMIZER_NAMES.join(", ")
            ))
        })?;
        for (k, v) in &map {
            let value = match v {
                _ if k == "optimizer" => continue,
                serde_json::Value::Bool(b) => HyperValue::Flag(*b),
                serde_json::Value::Number(n) => HyperValue::Num(n.as_f64().unwrap_or(f64::NAN)),
                other => {
                    return Err(D::Error::custom(format!(
                        "{k} = {other}: not a number or a switch"
                    )))
                }
            };
            c.set(k, value).map_err(D::Error::custom)?;
        }
        Ok(c)
    }
}

/// Every optimizer's name, as `--optimizer` takes it.
pub const OPTIMIZER_NAMES: [&str; 13] = [
    "gd", "sgd", "momentum", "adagrad", "rmsprop", "adadelta", "adam", "adamw", "adamax", "nadam",
    "radam", "lion", "lamb",
];

/// A hyperparameter's value: a number or a switch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HyperValue {
    /// A number (`lr`, `beta1`, ...).
    Num(f64),
    /// A switch (`nesterov`, `amsgrad`, ...).
    Flag(bool),
}

impl std::fmt::Display for HyperValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Num(v) => {
                let v = *v as f32;
                if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e6) {
                    write!(f, "{v:e}")
                } else {
                    write!(f, "{v}")
                }
            }
            Self::Flag(b) => write!(f, "{b}"),
        }
    }
}

/// A mutable view of one hyperparameter field.
pub(crate) enum Field<'a> {
    Num(&'a mut f32),
    Flag(&'a mut bool),
    /// `decoupled_weight_decay`, a switch over [`DecayMode`].
    Decay(&'a mut DecayMode),
}

/// What `descent optimizers` prints about one optimizer.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerInfo {
    /// `--optimizer` name.
    pub name: &'static str,
    /// One line on what it is.
    pub summary: &'static str,
    /// The update rule.
    pub formula: &'static str,
    /// Paper and reference implementation.
    pub reference: &'static str,
    /// Hyperparameters with their defaults, in PyTorch's names.
    pub defaults: Vec<(&'static str, HyperValue)>,
}

/// Every optimizer, with its defaults, formula and reference.
pub fn catalog() -> Vec<OptimizerInfo> {
    OPTIMIZER_NAMES
        .iter()
        .map(|&name| {
            let cfg = OptimizerConfig::default_for(name).expect("a listed name");
            let (summary, formula, reference) = match cfg {
                OptimizerConfig::Gd(_) => (
                    "full-batch gradient descent: SGD's update once per pass over the data",
                    sgd::FORMULA,
                    "Cauchy 1847; the gradient is the mean over the whole training set",
                ),
                OptimizerConfig::Sgd(_) => (
                    "stochastic gradient descent with momentum, Nesterov, weight decay",
                    sgd::FORMULA,
                    "Robbins & Monro 1951; Sutskever et al. 2013; torch.optim.SGD",
                ),
                OptimizerConfig::Momentum(_) => (
                    "the seed's momentum: an exponential moving average of the gradients \
                     (steady state: lr = lr_torch / (1 - beta))",
                    momentum::FORMULA,
                    "Polyak 1964; the seed's formula",
                ),
                OptimizerConfig::Adagrad(_) => (
                    "per-weight rates from the sum of squared gradients",
                    adagrad::FORMULA,
                    "Duchi, Hazan & Singer 2011; torch.optim.Adagrad",
                ),
                OptimizerConfig::RmsProp(_) => (
                    "per-weight rates from a moving average of squared gradients \
                     (eps_inside_sqrt: the seed's adaptive rule)",
                    rmsprop::FORMULA,
                    "Hinton, Coursera 6e 2012; torch.optim.RMSprop",
                ),
                OptimizerConfig::Adadelta(_) => (
                    "RMSprop with the step scaled by a moving average of past steps",
                    adadelta::FORMULA,
                    "Zeiler 2012; torch.optim.Adadelta",
                ),
                OptimizerConfig::Adam(_) => (
                    "moving averages of the gradient and its square, bias-corrected",
                    adam::FORMULA,
                    "Kingma & Ba 2015; Reddi et al. 2018 (amsgrad); torch.optim.Adam",
                ),
                OptimizerConfig::AdamW(_) => (
                    "Adam with decoupled weight decay",
                    adam::FORMULA,
                    "Loshchilov & Hutter 2019; torch.optim.AdamW",
                ),
                OptimizerConfig::Adamax(_) => (
                    "Adam with the infinity norm in place of the second moment",
                    adamax::FORMULA,
                    "Kingma & Ba 2015, section 7.1; torch.optim.Adamax",
                ),
                OptimizerConfig::NAdam(_) => (
                    "Adam with Nesterov momentum and a momentum schedule",
                    nadam::FORMULA,
                    "Dozat 2016; torch.optim.NAdam",
                ),
                OptimizerConfig::RAdam(_) => (
                    "Adam with the adaptive step rectified while its variance is large",
                    radam::FORMULA,
                    "Liu et al. 2020; torch.optim.RAdam",
                ),
                OptimizerConfig::Lion(_) => (
                    "the sign of an interpolated momentum; use a 3-10x smaller lr than AdamW",
                    lion::FORMULA,
                    "Chen et al. 2023, Algorithm 2",
                ),
                OptimizerConfig::Lamb(_) => (
                    "Adam's direction scaled per tensor by the trust ratio ||p|| / ||u||",
                    lamb::FORMULA,
                    "You et al. 2020, Algorithm 2 (with bias correction, as tinygrad and timm)",
                ),
            };
            OptimizerInfo {
                name,
                summary,
                formula,
                reference,
                defaults: cfg.hyperparameters(),
            }
        })
        .collect()
}

impl OptimizerConfig {
    fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
        match self {
            Self::Gd(c) | Self::Sgd(c) => c.fields(),
            Self::Momentum(c) => c.fields(),
            Self::Adagrad(c) => c.fields(),
            Self::RmsProp(c) => c.fields(),
            Self::Adadelta(c) => c.fields(),
            Self::Adam(c) => c.fields(),
            Self::AdamW(c) => {
                let mut f = c.fields();
                f.retain(|(n, _)| *n != "decoupled_weight_decay");
                f
            }
            Self::Adamax(c) => c.fields(),
            Self::NAdam(c) => c.fields(),
            Self::RAdam(c) => c.fields(),
            Self::Lion(c) => c.fields(),
            Self::Lamb(c) => c.fields(),
        }
    }

    /// Every hyperparameter and its value, in PyTorch's names.
    pub fn hyperparameters(&self) -> Vec<(&'static str, HyperValue)> {
        let mut c = *self;
        c.fields()
            .into_iter()
            .map(|(n, f)| {
                let v = match f {
                    Field::Num(x) => HyperValue::Num(*x as f64),
                    Field::Flag(b) => HyperValue::Flag(*b),
                    Field::Decay(d) => HyperValue::Flag(*d == DecayMode::Decoupled),
                };
                (n, v)
            })
            .collect()
    }

    /// Sets the hyperparameter `name` (PyTorch's name; `betas` is `beta1` and `beta2`). An
    /// error when this optimizer has no such setting or the value is of the wrong kind; call
    /// [`OptimizerConfig::validate`] after the last one.
    pub fn set(&mut self, name: &str, value: HyperValue) -> Result<(), OptimError> {
        let optimizer = self.name();
        let mut fields = self.fields();
        let known: Vec<&'static str> = fields.iter().map(|(n, _)| *n).collect();
        let Some((_, field)) = fields.iter_mut().find(|(n, _)| *n == name) else {
            return Err(OptimError::UnknownHyperparameter {
                optimizer,
                name: name.to_string(),
                known: known.join(", "),
            });
        };
        match (field, value) {
            (Field::Num(x), HyperValue::Num(v)) => **x = v as f32,
            (Field::Flag(x), HyperValue::Flag(v)) => **x = v,
            (Field::Decay(x), HyperValue::Flag(v)) => {
                **x = if v {
                    DecayMode::Decoupled
                } else {
                    DecayMode::L2
                }
            }
            _ => {
                return Err(OptimError::UnknownHyperparameter {
                    optimizer,
                    name: format!(
                        "{name} (given a {})",
                        match value {
                            HyperValue::Num(_) => "number, but it is a switch",
                            HyperValue::Flag(_) => "switch, but it is a number",
                        }
                    ),
                    known: known.join(", "),
                })
            }
        }
        Ok(())
    }

    /// The optimizer `name` with its defaults; `None` for an unknown name.
    pub fn default_for(name: &str) -> Option<Self> {
        Some(match name {
            "gd" => Self::Gd(SgdConfig::default()),
            "sgd" => Self::Sgd(SgdConfig::default()),
            "momentum" => Self::Momentum(MomentumConfig::default()),
            "adagrad" => Self::Adagrad(AdagradConfig::default()),
            "rmsprop" => Self::RmsProp(RmsPropConfig::default()),
            "adadelta" => Self::Adadelta(AdadeltaConfig::default()),
            "adam" => Self::Adam(AdamConfig::default()),
            "adamw" => Self::AdamW(AdamConfig::adamw()),
            "adamax" => Self::Adamax(AdamaxConfig::default()),
            "nadam" => Self::NAdam(NAdamConfig::default()),
            "radam" => Self::RAdam(RAdamConfig::default()),
            "lion" => Self::Lion(LionConfig::default()),
            "lamb" => Self::Lamb(LambConfig::default()),
            _ => return None,
        })
    }

    /// The name, as `--optimizer` takes it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Gd(_) => "gd",
            Self::Sgd(_) => "sgd",
            Self::Momentum(_) => "momentum",
            Self::Adagrad(_) => "adagrad",
            Self::RmsProp(_) => "rmsprop",
            Self::Adadelta(_) => "adadelta",
            Self::Adam(_) => "adam",
            Self::AdamW(_) => "adamw",
            Self::Adamax(_) => "adamax",
            Self::NAdam(_) => "nadam",
            Self::RAdam(_) => "radam",
            Self::Lion(_) => "lion",
            Self::Lamb(_) => "lamb",
        }
    }

    /// Checks every hyperparameter; the error names the bad one and its valid range.
    pub fn validate(&self) -> Result<(), OptimError> {
        match self {
            Self::Gd(c) | Self::Sgd(c) => c.validate(),
            Self::Momentum(c) => c.validate(),
            Self::Adagrad(c) => c.validate(),
            Self::RmsProp(c) => c.validate(),
            Self::Adadelta(c) => c.validate(),
            Self::Adam(c) | Self::AdamW(c) => c.validate(),
            Self::Adamax(c) => c.validate(),
            Self::NAdam(c) => c.validate(),
            Self::RAdam(c) => c.validate(),
            Self::Lion(c) => c.validate(),
            Self::Lamb(c) => c.validate(),
        }
    }

    /// The learning rate.
    pub fn lr(&self) -> f32 {
        match self {
            Self::Gd(c) | Self::Sgd(c) => c.lr,
            Self::Momentum(c) => c.lr,
            Self::Adagrad(c) => c.lr,
            Self::RmsProp(c) => c.lr,
            Self::Adadelta(c) => c.lr,
            Self::Adam(c) | Self::AdamW(c) => c.lr,
            Self::Adamax(c) => c.lr,
            Self::NAdam(c) => c.lr,
            Self::RAdam(c) => c.lr,
            Self::Lion(c) => c.lr,
            Self::Lamb(c) => c.lr,
        }
    }

    /// Sets the learning rate.
    pub fn set_lr(&mut self, lr: f32) {
        *self.lr_mut() = lr;
    }

    fn lr_mut(&mut self) -> &mut f32 {
        match self {
            Self::Gd(c) | Self::Sgd(c) => &mut c.lr,
            Self::Momentum(c) => &mut c.lr,
            Self::Adagrad(c) => &mut c.lr,
            Self::RmsProp(c) => &mut c.lr,
            Self::Adadelta(c) => &mut c.lr,
            Self::Adam(c) | Self::AdamW(c) => &mut c.lr,
            Self::Adamax(c) => &mut c.lr,
            Self::NAdam(c) => &mut c.lr,
            Self::RAdam(c) => &mut c.lr,
            Self::Lion(c) => &mut c.lr,
            Self::Lamb(c) => &mut c.lr,
        }
    }

    /// The weight decay factor.
    pub fn weight_decay(&self) -> f32 {
        let mut c = *self;
        *c.weight_decay_mut()
    }

    /// Sets the weight decay factor.
    pub fn set_weight_decay(&mut self, wd: f32) {
        *self.weight_decay_mut() = wd;
    }

    fn weight_decay_mut(&mut self) -> &mut f32 {
        match self {
            Self::Gd(c) | Self::Sgd(c) => &mut c.weight_decay,
            Self::Momentum(c) => &mut c.weight_decay,
            Self::Adagrad(c) => &mut c.weight_decay,
            Self::RmsProp(c) => &mut c.weight_decay,
            Self::Adadelta(c) => &mut c.weight_decay,
            Self::Adam(c) | Self::AdamW(c) => &mut c.weight_decay,
            Self::Adamax(c) => &mut c.weight_decay,
            Self::NAdam(c) => &mut c.weight_decay,
            Self::RAdam(c) => &mut c.weight_decay,
            Self::Lion(c) => &mut c.weight_decay,
            Self::Lamb(c) => &mut c.weight_decay,
        }
    }

    /// The momentum-like factor a one-cycle schedule cycles (`momentum` of SGD and RMSprop,
    /// `beta` of the seed's momentum, `beta1` of the Adam family); `None` when there is none.
    pub fn momentum(&self) -> Option<f32> {
        let mut c = *self;
        c.momentum_mut().map(|m| *m)
    }

    /// Sets what [`OptimizerConfig::momentum`] reads; an error for optimizers without one.
    pub fn set_momentum(&mut self, m: f32) -> Result<(), OptimError> {
        let name = self.name();
        match self.momentum_mut() {
            Some(x) => {
                *x = m;
                Ok(())
            }
            None => Err(OptimError::NoMomentum(name)),
        }
    }

    fn momentum_mut(&mut self) -> Option<&mut f32> {
        match self {
            Self::Gd(c) | Self::Sgd(c) => Some(&mut c.momentum),
            Self::Momentum(c) => Some(&mut c.beta),
            Self::RmsProp(c) => Some(&mut c.momentum),
            Self::Adam(c) | Self::AdamW(c) => Some(&mut c.beta1),
            Self::Adamax(c) => Some(&mut c.beta1),
            Self::NAdam(c) => Some(&mut c.beta1),
            Self::RAdam(c) => Some(&mut c.beta1),
            Self::Lion(c) => Some(&mut c.beta1),
            Self::Lamb(c) => Some(&mut c.beta1),
            Self::Adagrad(_) | Self::Adadelta(_) => None,
        }
    }

    /// When the update is exactly `p -= lr * grad`, that `lr`.
    pub fn plain_sgd_lr(&self) -> Option<f32> {
        match self {
            Self::Gd(c) | Self::Sgd(c) if c.is_plain() => Some(c.lr),
            _ => None,
        }
    }

    /// The per-parameter buffers this configuration keeps, in PyTorch's state names (at most
    /// three; the order is the order of [`Bufs`]).
    pub fn buffer_names(&self) -> &'static [&'static str] {
        match self {
            Self::Gd(c) | Self::Sgd(c) if c.momentum != 0.0 => &["momentum_buffer"],
            Self::Gd(_) | Self::Sgd(_) => &[],
            Self::Momentum(_) => &["velocity"],
            Self::Adagrad(_) => &["sum"],
            Self::RmsProp(c) => match (c.centered, c.momentum > 0.0) {
                (false, false) => &["square_avg"],
                (true, false) => &["square_avg", "grad_avg"],
                (false, true) => &["square_avg", "", "momentum_buffer"],
                (true, true) => &["square_avg", "grad_avg", "momentum_buffer"],
            },
            Self::Adadelta(_) => &["square_avg", "acc_delta"],
            Self::Adam(c) | Self::AdamW(c) if c.amsgrad => {
                &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
            }
            Self::Adam(_) | Self::AdamW(_) => &["exp_avg", "exp_avg_sq"],
            Self::Adamax(_) => &["exp_avg", "exp_inf"],
            Self::NAdam(_) | Self::RAdam(_) | Self::Lamb(_) => &["exp_avg", "exp_avg_sq"],
            Self::Lion(_) => &["exp_avg"],
        }
    }

    /// The value a buffer starts at.
    pub(crate) fn buffer_init(&self) -> f32 {
        match self {
            Self::Adagrad(c) => c.initial_accumulator_value,
            _ => 0.0,
        }
    }

    /// AdamW is Adam with its decay decoupled, whatever `decay` says.
    fn normalized(self) -> Self {
        match self {
            Self::AdamW(c) => Self::AdamW(AdamConfig {
                decay: DecayMode::Decoupled,
                ..c
            }),
            other => other,
        }
    }

    /// This step's kernel. `t` counts from 1; `first` is true when the buffers were just
    /// created; `mu_product` is NAdam's running product (already including step `t`).
    pub(crate) fn kernel(self, t: u64, first: bool, mu_product: f32) -> Kernel {
        match self.normalized() {
            Self::Gd(c) | Self::Sgd(c) => Kernel::Sgd(sgd::SgdStep { c, first }),
            Self::Momentum(c) => Kernel::Momentum(momentum::MomentumStep(c)),
            Self::Adagrad(c) => Kernel::Adagrad(adagrad::AdagradStep::new(c, t)),
            Self::RmsProp(c) => Kernel::RmsProp(rmsprop::RmsPropStep(c)),
            Self::Adadelta(c) => Kernel::Adadelta(adadelta::AdadeltaStep(c)),
            Self::Adam(c) | Self::AdamW(c) => Kernel::Adam(adam::AdamStep::new(c, t)),
            Self::Adamax(c) => Kernel::Adamax(adamax::AdamaxStep::new(c, t)),
            Self::NAdam(c) => Kernel::NAdam(nadam::NAdamStep::new(c, t, mu_product)),
            Self::RAdam(c) => Kernel::RAdam(radam::RAdamStep::new(c, t)),
            Self::Lion(c) => Kernel::Lion(lion::LionStep::new(c)),
            Self::Lamb(c) => Kernel::Lamb(LambStep::new(c, t)),
        }
    }
}

/// One step of one rule, ready to run over pieces of the buffers.
pub(crate) enum Kernel {
    Sgd(sgd::SgdStep),
    Momentum(momentum::MomentumStep),
    Adagrad(adagrad::AdagradStep),
    RmsProp(rmsprop::RmsPropStep),
    Adadelta(adadelta::AdadeltaStep),
    Adam(adam::AdamStep),
    Adamax(adamax::AdamaxStep),
    NAdam(nadam::NAdamStep),
    RAdam(radam::RAdamStep),
    Lion(lion::LionStep),
    /// Two passes per tensor; run by the optimizer, not by [`Kernel::apply`].
    Lamb(LambStep),
}

impl Kernel {
    /// Updates one piece in one pass (every rule but LAMB), with AVX2 where the CPU has it.
    /// The loops are element-wise, so the vector and scalar builds round alike.
    pub(crate) fn apply(&self, p: &mut [f32], g: &[f32], b: Bufs<'_>) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { self.apply_avx2(p, g, b) };
        }
        self.apply_inline(p, g, b)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn apply_avx2(&self, p: &mut [f32], g: &[f32], b: Bufs<'_>) {
        self.apply_inline(p, g, b)
    }

    #[inline(always)]
    fn apply_inline(&self, p: &mut [f32], g: &[f32], b: Bufs<'_>) {
        match self {
            Self::Sgd(k) => k.apply(p, g, b),
            Self::Momentum(k) => k.apply(p, g, b),
            Self::Adagrad(k) => k.apply(p, g, b),
            Self::RmsProp(k) => k.apply(p, g, b),
            Self::Adadelta(k) => k.apply(p, g, b),
            Self::Adam(k) => k.apply(p, g, b),
            Self::Adamax(k) => k.apply(p, g, b),
            Self::NAdam(k) => k.apply(p, g, b),
            Self::RAdam(k) => k.apply(p, g, b),
            Self::Lion(k) => k.apply(p, g, b),
            Self::Lamb(_) => unreachable!("LAMB runs in two passes"),
        }
    }
}

/// `a + w (b - a)` rounded as PyTorch's `lerp` rounds it (the other form for w >= 0.5); the
/// device updates share it.
pub(crate) use descent_tensor::backend::lerp;

pub(crate) fn check_lr(lr: f32) -> Result<(), OptimError> {
    if !(lr.is_finite() && lr > 0.0) {
        return Err(OptimError::InvalidHyperparameter {
            name: "lr",
            value: lr as f64,
            why: "the learning rate must be a finite number > 0",
        });
    }
    Ok(())
}

pub(crate) fn check_nonneg(name: &'static str, value: f32) -> Result<(), OptimError> {
    if !value.is_finite() || value < 0.0 {
        return Err(OptimError::InvalidHyperparameter {
            name,
            value: value as f64,
            why: "it must be a finite number >= 0",
        });
    }
    Ok(())
}

pub(crate) fn check_beta(name: &'static str, value: f32) -> Result<(), OptimError> {
    if !(0.0..1.0).contains(&value) {
        return Err(OptimError::InvalidHyperparameter {
            name,
            value: value as f64,
            why: "it must be in [0, 1)",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX2 build of every kernel rounds exactly as the plain build: the loops are
    /// element-wise, and Rust never fuses a multiply and an add on its own.
    #[test]
    fn the_vector_build_matches_the_plain_build_bit_for_bit() {
        let n = 1003;
        let wave = |k: usize, s: f32| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * k) % 97) as f32 / 97.0 * s - s / 2.0)
                .collect()
        };
        for name in OPTIMIZER_NAMES {
            let mut cfg = OptimizerConfig::default_for(name).unwrap();
            if cfg.momentum() == Some(0.0) {
                cfg.set_momentum(0.9).unwrap();
            }
            let _ = cfg.set("weight_decay", HyperValue::Num(0.01));
            let _ = cfg.set("centered", HyperValue::Flag(true));
            let _ = cfg.set("amsgrad", HyperValue::Flag(true));
            let kernel = cfg.kernel(3, false, 0.7);
            if matches!(kernel, Kernel::Lamb(_)) {
                continue;
            }
            let (g, p0) = (wave(7, 0.2), wave(13, 2.0));
            let run = |vector: bool| {
                let mut p = p0.clone();
                let (mut a, mut b, mut c) = (wave(3, 0.1), wave(5, 0.1), wave(11, 0.1));
                for buf in [&mut b, &mut c, &mut a] {
                    buf.iter_mut().for_each(|x| *x = x.abs());
                }
                let bufs = [&mut a[..], &mut b[..], &mut c[..]];
                if vector {
                    kernel.apply(&mut p, &g, bufs);
                } else {
                    kernel.apply_inline(&mut p, &g, bufs);
                }
                [p, a, b, c]
            };
            let (v, s) = (run(true), run(false));
            for (x, y) in v.iter().zip(&s) {
                assert!(
                    x.iter().zip(y).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{name}: the AVX2 and plain builds differ"
                );
            }
        }
    }
}

#[cfg(test)]
mod serde_tests {
    use super::*;

    /// Every optimizer's settings go to JSON and back unchanged; left-out settings keep their
    /// defaults; unknown names are refused.
    #[test]
    fn configs_round_trip_through_json() {
        for name in OPTIMIZER_NAMES {
            let mut c = OptimizerConfig::default_for(name).unwrap();
            c.set("lr", HyperValue::Num(0.125)).unwrap();
            let text = serde_json::to_string(&c).unwrap();
            let back: OptimizerConfig = serde_json::from_str(&text).unwrap();
            assert_eq!(back, c, "{text}");
        }
        let c: OptimizerConfig =
            serde_json::from_str(r#"{"optimizer": "sgd", "momentum": 0.9, "nesterov": true}"#)
                .unwrap();
        let mut want = OptimizerConfig::default_for("sgd").unwrap();
        want.set("momentum", HyperValue::Num(0.9)).unwrap();
        want.set("nesterov", HyperValue::Flag(true)).unwrap();
        assert_eq!(c, want);
        for bad in [
            r#"{"optimizer": "adamx"}"#,
            r#"{"optimizer": "sgd", "beta1": 0.9}"#,
            r#"{"lr": 0.1}"#,
            r#"{"optimizer": "sgd", "lr": "fast"}"#,
        ] {
            assert!(
                serde_json::from_str::<OptimizerConfig>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
