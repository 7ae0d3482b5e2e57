//! The optimizer: a rule from [`crate::rules`] run over named tensors in one flat buffer, with
//! parameter groups, lazily created state buffers and state saved by name.

use std::collections::{BTreeMap, BTreeSet};

use crate::par::{par_for, par_sum, Bufs, Parallel, RayonPool};
use crate::rules::{Kernel, LambStep, OptimizerConfig};
use crate::{DeviceGroup, OptimError, OptimizerState, ParamState};

/// One parameter tensor in the flat buffer: its name (`fc1.weight`) and shape. Tensors lie in
/// the buffer one after the other in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    /// The tensor's name, unique in the model.
    pub name: String,
    /// Its shape; it holds the product of the dimensions.
    pub shape: Vec<usize>,
}

impl ParamSpec {
    /// A tensor named `name` of `shape`.
    pub fn new(name: impl Into<String>, shape: &[usize]) -> Self {
        Self {
            name: name.into(),
            shape: shape.to_vec(),
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Tensors that take their own learning rate or weight decay (PyTorch's parameter groups).
/// Tensors in no group use the optimizer's settings.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ParamGroup {
    /// Names of the tensors in the group.
    pub params: Vec<String>,
    /// The group's learning rate (schedules scale it like the main one).
    pub lr: Option<f32>,
    /// The group's weight decay (e.g. 0 for biases).
    pub weight_decay: Option<f32>,
}

#[derive(Clone, Debug)]
struct Group {
    config: OptimizerConfig,
    /// The learning rate the group started with; schedules are functions of it.
    base_lr: f32,
}

/// Runs one optimizer over a model's flat parameters.
///
/// ```
/// use descent_optim::{AdamConfig, Optimizer, OptimizerConfig, ParamSpec};
///
/// let specs = [ParamSpec::new("w", &[2, 2]), ParamSpec::new("b", &[2])];
/// let mut opt = Optimizer::new(OptimizerConfig::Adam(AdamConfig::default()), &specs).unwrap();
/// let mut params = vec![1.0f32; 6];
/// opt.step(&mut params, &[0.5; 6]).unwrap();
/// // Adam's first step moves every weight by lr against the gradient's sign.
/// assert!(params.iter().all(|&p| (p - 0.999).abs() < 1e-6));
/// let state = opt.state();
/// assert_eq!(state.params["w"].buffers["exp_avg"].len(), 4);
/// ```
#[derive(Clone, Debug)]
pub struct Optimizer {
    specs: Vec<ParamSpec>,
    offsets: Vec<usize>,
    len: usize,
    groups: Vec<Group>,
    group_of: Vec<usize>,
    step: u64,
    bufs: [Vec<f32>; 3],
    mu_product: f32,
}

impl Optimizer {
    /// An optimizer over tensors `specs` (laid out in that order) with one set of settings.
    pub fn new(config: OptimizerConfig, specs: &[ParamSpec]) -> Result<Self, OptimError> {
        Self::with_groups(config, specs, &[])
    }

    /// An optimizer over one unnamed buffer of `len` values (named `params`).
    pub fn flat(config: OptimizerConfig, len: usize) -> Result<Self, OptimError> {
        Self::new(config, &[ParamSpec::new("params", &[len])])
    }

    /// An optimizer whose `groups` override the learning rate or weight decay of some tensors.
    pub fn with_groups(
        config: OptimizerConfig,
        specs: &[ParamSpec],
        groups: &[ParamGroup],
    ) -> Result<Self, OptimError> {
        config.validate()?;
        let mut seen = BTreeSet::new();
        let mut offsets = Vec::with_capacity(specs.len());
        let mut len = 0;
        for s in specs {
            if !seen.insert(s.name.as_str()) {
                return Err(OptimError::Layout(format!(
                    "two tensors are named `{}`; names must be unique",
                    s.name
                )));
            }
            offsets.push(len);
            len += s.len();
        }
        let mut all = vec![Group {
            config,
            base_lr: config.lr(),
        }];
        let mut group_of = vec![0; specs.len()];
        for (gi, g) in groups.iter().enumerate() {
            let mut c = config;
            if let Some(lr) = g.lr {
                c.set_lr(lr);
            }
            if let Some(wd) = g.weight_decay {
                c.set_weight_decay(wd);
            }
            c.validate()?;
            for name in &g.params {
                let Some(i) = specs.iter().position(|s| &s.name == name) else {
                    return Err(OptimError::Layout(format!(
                        "parameter group {gi} names `{name}`, which the model does not have \
                         (it has {})",
                        names(specs)
                    )));
                };
                if group_of[i] != 0 {
                    return Err(OptimError::Layout(format!(
                        "`{name}` is in two parameter groups"
                    )));
                }
                group_of[i] = gi + 1;
            }
            all.push(Group {
                config: c,
                base_lr: c.lr(),
            });
        }
        Ok(Self {
            specs: specs.to_vec(),
            offsets,
            len,
            groups: all,
            group_of,
            step: 0,
            bufs: Default::default(),
            mu_product: 1.0,
        })
    }

    /// The optimizer's name (`adam`, ...).
    pub fn name(&self) -> &'static str {
        self.groups[0].config.name()
    }

    /// The settings of tensors in no group.
    pub fn config(&self) -> &OptimizerConfig {
        &self.groups[0].config
    }

    /// The tensors, in buffer order.
    pub fn specs(&self) -> &[ParamSpec] {
        &self.specs
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The learning rate of tensors in no group.
    pub fn lr(&self) -> f32 {
        self.groups[0].config.lr()
    }

    /// The learning rates of the parameter groups, in their order (empty without groups).
    pub fn group_lrs(&self) -> Vec<f32> {
        self.groups[1..].iter().map(|g| g.config.lr()).collect()
    }

    /// Sets the learning rate; groups with their own rate keep their ratio to it.
    pub fn set_lr(&mut self, lr: f32) {
        let factor = lr / self.groups[0].base_lr;
        for g in &mut self.groups {
            g.config.set_lr(g.base_lr * factor);
        }
        self.groups[0].config.set_lr(lr);
    }

    /// Sets every group's learning rate to `f(its starting rate)`: how schedules apply.
    pub fn set_lr_with(&mut self, f: impl Fn(f32) -> f32) {
        for g in &mut self.groups {
            g.config.set_lr(f(g.base_lr));
        }
    }

    /// Sets the momentum (or beta1) of every group; an error for optimizers without one.
    pub fn set_momentum(&mut self, m: f32) -> Result<(), OptimError> {
        for g in &mut self.groups {
            let mut c = g.config;
            c.set_momentum(m)?;
            c.validate()?;
            g.config = c;
        }
        Ok(())
    }

    /// When the next update is exactly `p -= lr * grad` for every parameter (plain SGD in one
    /// group), returns that `lr`, so that an engine may apply the step inside its backward
    /// pass instead of calling [`Optimizer::step`]. It must then call
    /// [`Optimizer::fused_step_done`].
    pub fn plain_sgd_lr(&self) -> Option<f32> {
        let lr = self.groups[0].config.plain_sgd_lr()?;
        self.groups
            .iter()
            .all(|g| g.config.plain_sgd_lr() == Some(lr))
            .then_some(lr)
    }

    /// Records a step that the engine applied itself after [`Optimizer::plain_sgd_lr`].
    pub fn fused_step_done(&mut self) {
        self.step += 1;
    }

    /// Updates `params` from `grads`, both laid out as the specs say. Large tensors are split
    /// over rayon's current pool.
    pub fn step(&mut self, params: &mut [f32], grads: &[f32]) -> Result<(), OptimError> {
        self.step_on(&RayonPool, params, grads)
    }

    /// [`Optimizer::step`] with the pieces of large tensors run by `exec` (descent's engine
    /// passes its own thread pool, so that two pools do not fight over the cores).
    pub fn step_on(
        &mut self,
        exec: &dyn Parallel,
        params: &mut [f32],
        grads: &[f32],
    ) -> Result<(), OptimError> {
        if params.len() != self.len || grads.len() != self.len {
            return Err(OptimError::LengthMismatch {
                expected: self.len,
                params: params.len(),
                grads: grads.len(),
            });
        }
        let t = self.step + 1;
        let config = self.groups[0].config;
        let mut first = false;
        for (slot, name) in config.buffer_names().iter().enumerate() {
            if !name.is_empty() && self.bufs[slot].len() != self.len {
                self.bufs[slot] = vec![config.buffer_init(); self.len];
                first = true;
            }
        }
        if let OptimizerConfig::NAdam(c) = config {
            self.mu_product *= c.mu(t) as f32;
        }
        for (i, spec) in self.specs.iter().enumerate() {
            let range = self.offsets[i]..self.offsets[i] + spec.len();
            let kernel = self.groups[self.group_of[i]]
                .config
                .kernel(t, first, self.mu_product);
            let [a, b, c] = &mut self.bufs;
            let bufs: Bufs<'_> = [
                slice_or_empty(a, &range),
                slice_or_empty(b, &range),
                slice_or_empty(c, &range),
            ];
            let (p, g) = (&mut params[range.clone()], &grads[range]);
            match &kernel {
                Kernel::Lamb(k) => lamb_step(exec, k, p, g, bufs),
                k => par_for(exec, p, g, bufs, &|p, g, b| k.apply(p, g, b)),
            }
        }
        self.step = t;
        Ok(())
    }

    /// The next step as a device runs it: per parameter group, its element-wise rule, the
    /// ranges it covers and the step's scalars (for step `steps() + 1`, at the groups'
    /// current learning rates). The device keeps the state buffers (each as long as the flat
    /// parameters, as [`Optimizer::state`] lays them out) and, after running the step, the
    /// engine calls [`Optimizer::fused_step_done`]. An error for optimizers without a device
    /// rule.
    pub fn device_plan(&self) -> Result<Vec<DeviceGroup>, OptimError> {
        let t = self.step + 1;
        let mut out: Vec<DeviceGroup> = Vec::with_capacity(self.groups.len());
        for (gi, g) in self.groups.iter().enumerate() {
            let update = g.config.device_update()?;
            let ranges: Vec<_> = (0..self.specs.len())
                .filter(|&i| self.group_of[i] == gi)
                .map(|i| self.offsets[i]..self.offsets[i] + self.specs[i].len())
                .collect();
            if ranges.is_empty() {
                continue;
            }
            let hyper = update.hyper(g.config.lr(), t);
            out.push(DeviceGroup {
                update,
                ranges,
                hyper,
            });
        }
        Ok(out)
    }

    /// f32 values of state the optimizer holds once it steps (its buffers, one value per
    /// parameter each: Adam's two moments, SGD with momentum's one), for memory reports.
    pub fn state_len(&self) -> usize {
        let slots = self.groups[0].config.buffer_names();
        slots.iter().filter(|n| !n.is_empty()).count() * self.len
    }

    /// A copy of everything the next steps depend on besides the hyperparameters, keyed by
    /// tensor name.
    pub fn state(&self) -> OptimizerState {
        let names = self.groups[0].config.buffer_names();
        let mut params = BTreeMap::new();
        for (i, spec) in self.specs.iter().enumerate() {
            let range = self.offsets[i]..self.offsets[i] + spec.len();
            let mut buffers = BTreeMap::new();
            for (slot, name) in names.iter().enumerate() {
                if !name.is_empty() && self.bufs[slot].len() == self.len {
                    buffers.insert(name.to_string(), self.bufs[slot][range.clone()].to_vec());
                }
            }
            params.insert(
                spec.name.clone(),
                ParamState {
                    shape: spec.shape.clone(),
                    buffers,
                },
            );
        }
        let mut scalars = BTreeMap::new();
        if matches!(self.groups[0].config, OptimizerConfig::NAdam(_)) {
            scalars.insert("mu_product".into(), self.mu_product as f64);
        }
        OptimizerState {
            optimizer: self.name().into(),
            step: self.step,
            scalars,
            params,
        }
    }

    /// Restores a state saved by [`Optimizer::state`] from the same optimizer over tensors of
    /// the same names and shapes. On error nothing changes.
    pub fn load_state(&mut self, state: &OptimizerState) -> Result<(), OptimError> {
        let mismatch = |why: String| Err(OptimError::StateMismatch(why));
        if state.optimizer != self.name() {
            return mismatch(format!(
                "it was saved by `{}`, not `{}`; load it into the same optimizer \
                 (--optimizer {})",
                state.optimizer,
                self.name(),
                state.optimizer
            ));
        }
        let missing: Vec<&str> = self
            .specs
            .iter()
            .map(|s| s.name.as_str())
            .filter(|n| !state.params.contains_key(*n))
            .collect();
        let unexpected: Vec<&str> = state
            .params
            .keys()
            .map(String::as_str)
            .filter(|n| !self.specs.iter().any(|s| s.name == *n))
            .collect();
        if !missing.is_empty() || !unexpected.is_empty() {
            return mismatch(format!(
                "the saved tensors do not match the model's: missing {}; unexpected {} \
                 (the model has {})",
                list(&missing),
                list(&unexpected),
                names(&self.specs)
            ));
        }
        let expected: Vec<(usize, &str)> = self
            .groups
            .first()
            .map(|g| g.config.buffer_names())
            .unwrap_or_default()
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, n)| !n.is_empty())
            .collect();
        let mut bufs: [Vec<f32>; 3] = Default::default();
        let any_buffers = state.params.values().any(|p| !p.buffers.is_empty());
        for (i, spec) in self.specs.iter().enumerate() {
            let saved = &state.params[&spec.name];
            if saved.shape != spec.shape {
                return mismatch(format!(
                    "`{}` was saved with shape {:?} but the model's is {:?}",
                    spec.name, saved.shape, spec.shape
                ));
            }
            if !any_buffers {
                continue;
            }
            if let Some(other) = saved
                .buffers
                .keys()
                .find(|k| !expected.iter().any(|(_, n)| n == k))
            {
                return mismatch(format!(
                    "`{}` has a buffer `{other}` that {} with these settings does not keep \
                     (it keeps {}); was it saved with other settings (momentum, centered, \
                     amsgrad)?",
                    spec.name,
                    self.name(),
                    list(&expected.iter().map(|(_, n)| *n).collect::<Vec<_>>())
                ));
            }
            for &(slot, name) in &expected {
                let Some(values) = saved.buffers.get(name) else {
                    return mismatch(format!(
                        "`{}` has no `{name}` buffer; was it saved with other settings?",
                        spec.name
                    ));
                };
                if values.len() != spec.len() {
                    return mismatch(format!(
                        "`{}`'s `{name}` holds {} values but the tensor has {}",
                        spec.name,
                        values.len(),
                        spec.len()
                    ));
                }
                if bufs[slot].is_empty() {
                    bufs[slot] = vec![0.0; self.len];
                }
                bufs[slot][self.offsets[i]..self.offsets[i] + spec.len()].copy_from_slice(values);
            }
        }
        let mu_product = match self.groups[0].config {
            OptimizerConfig::NAdam(_) if state.step > 0 => match state.scalars.get("mu_product") {
                Some(&m) => m as f32,
                None => return mismatch("NAdam's state has no `mu_product`".into()),
            },
            _ => 1.0,
        };
        self.bufs = bufs;
        self.step = state.step;
        self.mu_product = mu_product;
        Ok(())
    }
}

fn slice_or_empty<'a>(v: &'a mut [f32], range: &std::ops::Range<usize>) -> &'a mut [f32] {
    if v.is_empty() {
        &mut []
    } else {
        &mut v[range.clone()]
    }
}

fn lamb_step(exec: &dyn Parallel, k: &LambStep, p: &mut [f32], g: &[f32], bufs: Bufs<'_>) {
    let [a, b, c] = bufs;
    let sums = par_sum(exec, p, g, [&mut *a, &mut *b, &mut *c], &|p, g, bf| {
        k.moments_dispatch(p, g, bf)
    });
    let ratio = LambStep::ratio(sums);
    par_for(exec, p, g, [a, b, c], &|p, _, bf| {
        k.apply_dispatch(ratio, p, bf)
    });
}

fn names(specs: &[ParamSpec]) -> String {
    list(&specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>())
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
