//! Learning-rate schedules: pure functions of the step, as `torch.optim.lr_scheduler`
//! computes them, plus the one schedule that is not a function of the step
//! ([`ReduceOnPlateau`], which watches a metric).
//!
//! `lr(t, base)` is the learning rate of step `t` (counting from 0, the rate the first update
//! uses) for a group that started at `base`: PyTorch's value after `t` calls of
//! `scheduler.step()`. Schedules compose with [`Schedule::Sequence`] (PyTorch's
//! `SequentialLR`): warmup for 500 steps, then cosine over the rest.
//!
//! ```
//! use descent_optim::schedule::Schedule;
//!
//! let s = Schedule::warmup_then(500, Schedule::Cosine { t_max: 9_000, eta_min: 0.0 });
//! assert!((s.lr(0, 0.1) - 0.1 / 500.0).abs() < 1e-9);   // warming up
//! assert!((s.lr(500, 0.1) - 0.1).abs() < 1e-9);         // cosine starts at the peak
//! assert!(s.lr(9_500, 0.1).abs() < 1e-9);               // and ends at eta_min
//! ```

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

use crate::OptimError;

/// How one-cycle moves between its points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Anneal {
    /// Half a cosine (PyTorch's default).
    Cos,
    /// A straight line.
    Linear,
}

/// A learning-rate schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Schedule {
    /// The base rate throughout.
    Constant,
    /// `base * gamma^(t / step_size)` (`StepLR`).
    Step {
        /// Steps between decays.
        step_size: u64,
        /// Decay factor.
        gamma: f64,
    },
    /// `base * gamma^(milestones passed)` (`MultiStepLR`).
    MultiStep {
        /// Steps at which the rate decays, increasing.
        milestones: Vec<u64>,
        /// Decay factor.
        gamma: f64,
    },
    /// `base * gamma^t` (`ExponentialLR`).
    Exponential {
        /// Decay factor per step.
        gamma: f64,
    },
    /// `eta_min + (base - eta_min) (1 + cos(pi t / t_max)) / 2` (`CosineAnnealingLR`; past
    /// `t_max` the cosine goes on, as in PyTorch).
    Cosine {
        /// Steps of a half period.
        t_max: u64,
        /// The lowest rate.
        eta_min: f64,
    },
    /// Cosine annealing restarted after `t_0`, then `t_0 * t_mult`, ... steps
    /// (`CosineAnnealingWarmRestarts`, SGDR by Loshchilov & Hutter 2017).
    CosineWarmRestarts {
        /// Steps of the first period.
        t_0: u64,
        /// Growth of the period after each restart.
        t_mult: u64,
        /// The lowest rate.
        eta_min: f64,
    },
    /// `base * (start + (end - start) min(t, total) / total)` (`LinearLR`; a linear warmup
    /// when `start < end = 1`).
    Linear {
        /// Factor at step 0.
        start_factor: f64,
        /// Factor from step `total_iters` on.
        end_factor: f64,
        /// Steps of the ramp.
        total_iters: u64,
    },
    /// `base * (1 - min(t, total) / total)^power` (`PolynomialLR`).
    Polynomial {
        /// Steps until the rate reaches 0.
        total_iters: u64,
        /// Exponent.
        power: f64,
    },
    /// One cycle (Smith & Topin 2017, `OneCycleLR`): the base rate is the peak; it rises from
    /// `base / div_factor` over `pct_start` of the steps, then anneals to
    /// `base / div_factor / final_div_factor`. Momentum moves the other way when cycled.
    OneCycle {
        /// Steps in the cycle; stepping past it is an error in PyTorch, here the rate stays.
        total_steps: u64,
        /// Fraction of the steps spent rising.
        pct_start: f64,
        /// Shape of each phase.
        anneal: Anneal,
        /// Peak over starting rate.
        div_factor: f64,
        /// Starting over final rate.
        final_div_factor: f64,
        /// Three phases (rise, fall to the start, anneal to the end) instead of two.
        three_phase: bool,
        /// `(base_momentum, max_momentum)` to cycle momentum (or beta1) between, or `None`.
        momentum: Option<(f64, f64)>,
    },
    /// Each schedule in turn: schedule `i + 1` takes over at `milestones[i]` and sees steps
    /// counted from there (`SequentialLR`).
    Sequence {
        /// The schedules, one more than the milestones.
        parts: Vec<Schedule>,
        /// Steps at which the next one takes over, increasing.
        milestones: Vec<u64>,
    },
}

impl Schedule {
    /// Linear warmup from `base / steps` to `base` over `steps` steps, then `then` (counted
    /// from the end of the warmup). No warmup when `steps` is 0.
    pub fn warmup_then(steps: u64, then: Schedule) -> Self {
        if steps == 0 {
            return then;
        }
        Self::Sequence {
            parts: vec![
                Self::Linear {
                    start_factor: 1.0 / steps as f64,
                    end_factor: 1.0,
                    total_iters: steps,
                },
                then,
            ],
            milestones: vec![steps],
        }
    }

    /// One-cycle with PyTorch's defaults over `total_steps`.
    pub fn one_cycle(total_steps: u64) -> Self {
        Self::OneCycle {
            total_steps,
            pct_start: 0.3,
            anneal: Anneal::Cos,
            div_factor: 25.0,
            final_div_factor: 1e4,
            three_phase: false,
            momentum: Some((0.85, 0.95)),
        }
    }

    /// Checks the parameters; the error names the bad one.
    pub fn validate(&self) -> Result<(), OptimError> {
        let bad =
            |name, value: f64, why| Err(OptimError::InvalidHyperparameter { name, value, why });
        let positive = |name, v: u64| {
            if v == 0 {
                bad(name, 0.0, "it must be at least 1")
            } else {
                Ok(())
            }
        };
        let factor = |name, g: f64| {
            if !(g.is_finite() && g > 0.0) {
                bad(name, g, "it must be a finite number > 0")
            } else {
                Ok(())
            }
        };
        match self {
            Self::Constant => Ok(()),
            Self::Step { step_size, gamma } => {
                positive("step_size", *step_size)?;
                factor("gamma", *gamma)
            }
            Self::MultiStep { milestones, gamma } => {
                if milestones.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(OptimError::InvalidCombination(
                        "milestones must be strictly increasing",
                    ));
                }
                factor("gamma", *gamma)
            }
            Self::Exponential { gamma } => factor("gamma", *gamma),
            Self::Cosine { t_max, eta_min } => {
                positive("t_max", *t_max)?;
                nonneg("eta_min", *eta_min)
            }
            Self::CosineWarmRestarts {
                t_0,
                t_mult,
                eta_min,
            } => {
                positive("t_0", *t_0)?;
                positive("t_mult", *t_mult)?;
                nonneg("eta_min", *eta_min)
            }
            Self::Linear {
                start_factor,
                end_factor,
                total_iters,
            } => {
                if !(*start_factor > 0.0 && *start_factor <= 1.0) {
                    return bad("start_factor", *start_factor, "it must be in (0, 1]");
                }
                if !(0.0..=1.0).contains(end_factor) {
                    return bad("end_factor", *end_factor, "it must be in [0, 1]");
                }
                positive("total_iters", *total_iters)
            }
            Self::Polynomial { total_iters, power } => {
                positive("total_iters", *total_iters)?;
                nonneg("power", *power)
            }
            Self::OneCycle {
                total_steps,
                pct_start,
                div_factor,
                final_div_factor,
                momentum,
                ..
            } => {
                positive("total_steps", *total_steps)?;
                if !(0.0..=1.0).contains(pct_start) {
                    return bad("pct_start", *pct_start, "it must be in [0, 1]");
                }
                factor("div_factor", *div_factor)?;
                factor("final_div_factor", *final_div_factor)?;
                if let Some((lo, hi)) = momentum {
                    if !(0.0..1.0).contains(lo) || !(0.0..1.0).contains(hi) {
                        return bad("base_momentum", *lo, "momenta must be in [0, 1)");
                    }
                }
                Ok(())
            }
            Self::Sequence { parts, milestones } => {
                if parts.len() != milestones.len() + 1 {
                    return Err(OptimError::InvalidCombination(
                        "a sequence needs one milestone between each two schedules",
                    ));
                }
                if milestones.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(OptimError::InvalidCombination(
                        "milestones must be strictly increasing",
                    ));
                }
                parts.iter().try_for_each(Schedule::validate)
            }
        }
    }

    /// The learning rate of step `t` (from 0) for a group that started at `base`.
    pub fn lr(&self, t: u64, base: f64) -> f64 {
        let tf = t as f64;
        match self {
            Self::Constant => base,
            Self::Step { step_size, gamma } => base * gamma.powi((t / step_size) as i32),
            Self::MultiStep { milestones, gamma } => {
                let passed = milestones.iter().filter(|&&m| m <= t).count();
                base * gamma.powi(passed as i32)
            }
            Self::Exponential { gamma } => base * gamma.powf(tf),
            Self::Cosine { t_max, eta_min } => {
                eta_min + (base - eta_min) * (1.0 + (PI * tf / *t_max as f64).cos()) / 2.0
            }
            Self::CosineWarmRestarts {
                t_0,
                t_mult,
                eta_min,
            } => {
                let (mut cur, mut len) = (t, *t_0);
                while cur >= len {
                    cur -= len;
                    len *= t_mult;
                }
                eta_min + (base - eta_min) * (1.0 + (PI * cur as f64 / len as f64).cos()) / 2.0
            }
            Self::Linear {
                start_factor,
                end_factor,
                total_iters,
            } => {
                let done = t.min(*total_iters) as f64 / *total_iters as f64;
                base * (start_factor + (end_factor - start_factor) * done)
            }
            Self::Polynomial { total_iters, power } => {
                let done = t.min(*total_iters) as f64 / *total_iters as f64;
                base * (1.0 - done).powf(*power)
            }
            Self::OneCycle { .. } => self.one_cycle_at(t, base).0,
            Self::Sequence { parts, milestones } => {
                let i = milestones.iter().filter(|&&m| m <= t).count();
                let start = if i == 0 { 0 } else { milestones[i - 1] };
                parts[i].lr(t - start, base)
            }
        }
    }

    /// The momentum (or beta1) of step `t` when the schedule cycles it, else `None`.
    pub fn momentum(&self, t: u64) -> Option<f64> {
        match self {
            Self::OneCycle {
                momentum: Some(_), ..
            } => Some(self.one_cycle_at(t, 1.0).1),
            Self::Sequence { parts, milestones } => {
                let i = milestones.iter().filter(|&&m| m <= t).count();
                let start = if i == 0 { 0 } else { milestones[i - 1] };
                parts[i].momentum(t - start)
            }
            _ => None,
        }
    }

    /// Whether any part cycles momentum.
    pub fn cycles_momentum(&self) -> bool {
        self.momentum(0).is_some()
            || matches!(self, Self::Sequence { parts, .. } if parts.iter().any(Schedule::cycles_momentum))
    }

    /// One-cycle's (lr, momentum) at step `t` with peak `max_lr`.
    fn one_cycle_at(&self, t: u64, max_lr: f64) -> (f64, f64) {
        let Self::OneCycle {
            total_steps,
            pct_start,
            anneal,
            div_factor,
            final_div_factor,
            three_phase,
            momentum,
        } = self
        else {
            unreachable!("one_cycle_at on another schedule")
        };
        let initial = max_lr / div_factor;
        let min_lr = initial / final_div_factor;
        let (m_lo, m_hi) = momentum.unwrap_or((0.0, 0.0));
        let total = *total_steps as f64;
        // (end step, start lr, end lr, start momentum, end momentum), as OneCycleLR's phases.
        let phases: Vec<(f64, f64, f64, f64, f64)> = if *three_phase {
            vec![
                (pct_start * total - 1.0, initial, max_lr, m_hi, m_lo),
                (2.0 * pct_start * total - 2.0, max_lr, initial, m_lo, m_hi),
                (total - 1.0, initial, min_lr, m_hi, m_hi),
            ]
        } else {
            vec![
                (pct_start * total - 1.0, initial, max_lr, m_hi, m_lo),
                (total - 1.0, max_lr, min_lr, m_lo, m_hi),
            ]
        };
        let step = (t.min(total_steps.saturating_sub(1))) as f64;
        let f = |a: f64, b: f64, pct: f64| match anneal {
            Anneal::Cos => b + (a - b) / 2.0 * ((PI * pct).cos() + 1.0),
            Anneal::Linear => (b - a) * pct + a,
        };
        let mut start = 0.0;
        for (i, &(end, lr0, lr1, m0, m1)) in phases.iter().enumerate() {
            if step <= end || i == phases.len() - 1 {
                let pct = (step - start) / (end - start);
                return (f(lr0, lr1, pct), f(m0, m1, pct));
            }
            start = end;
        }
        unreachable!("the last phase always answers")
    }
}

fn nonneg(name: &'static str, v: f64) -> Result<(), OptimError> {
    if !(v.is_finite() && v >= 0.0) {
        return Err(OptimError::InvalidHyperparameter {
            name,
            value: v,
            why: "it must be a finite number >= 0",
        });
    }
    Ok(())
}

/// Whether a smaller or a larger metric is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlateauMode {
    /// Lower is better (a loss).
    Min,
    /// Higher is better (an accuracy).
    Max,
}

/// `ReduceLROnPlateau`'s settings, with PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlateauConfig {
    /// Min or max.
    pub mode: PlateauMode,
    /// Factor applied to the rate on a plateau.
    pub factor: f64,
    /// Evaluations without improvement before the rate drops.
    pub patience: u64,
    /// Smallest change that counts as an improvement.
    pub threshold: f64,
    /// Whether `threshold` is relative (`true`, PyTorch's `rel`) or absolute.
    pub relative: bool,
    /// Evaluations to wait after a drop before counting again.
    pub cooldown: u64,
    /// The rate never drops below this.
    pub min_lr: f64,
    /// Drops smaller than this are skipped.
    pub eps: f64,
}

impl Default for PlateauConfig {
    fn default() -> Self {
        Self {
            mode: PlateauMode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            relative: true,
            cooldown: 0,
            min_lr: 0.0,
            eps: 1e-8,
        }
    }
}

/// Lowers the learning rate when a metric stops improving (`ReduceLROnPlateau`). Its state is
/// serializable and belongs in a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReduceOnPlateau {
    /// The settings.
    pub config: PlateauConfig,
    /// The best metric so far.
    pub best: f64,
    /// Evaluations since the best.
    pub bad: u64,
    /// Evaluations of cooldown left.
    pub cooldown_left: u64,
    /// The current rate.
    pub lr: f64,
}

impl ReduceOnPlateau {
    /// Starts at rate `lr`.
    pub fn new(config: PlateauConfig, lr: f64) -> Result<Self, OptimError> {
        if !(config.factor > 0.0 && config.factor < 1.0) {
            return Err(OptimError::InvalidHyperparameter {
                name: "factor",
                value: config.factor,
                why: "the plateau factor must be in (0, 1)",
            });
        }
        nonneg("threshold", config.threshold)?;
        nonneg("min_lr", config.min_lr)?;
        Ok(Self {
            best: match config.mode {
                PlateauMode::Min => f64::INFINITY,
                PlateauMode::Max => f64::NEG_INFINITY,
            },
            config,
            bad: 0,
            cooldown_left: 0,
            lr,
        })
    }

    fn is_better(&self, x: f64) -> bool {
        let c = &self.config;
        match (c.mode, c.relative) {
            (PlateauMode::Min, true) => x < self.best * (1.0 - c.threshold),
            (PlateauMode::Min, false) => x < self.best - c.threshold,
            (PlateauMode::Max, true) => x > self.best * (1.0 + c.threshold),
            (PlateauMode::Max, false) => x > self.best + c.threshold,
        }
    }

    /// Records one evaluation of the metric and returns the rate to use from now on.
    pub fn observe(&mut self, metric: f64) -> f64 {
        if self.is_better(metric) {
            self.best = metric;
            self.bad = 0;
        } else {
            self.bad += 1;
        }
        if self.cooldown_left > 0 {
            self.cooldown_left -= 1;
            self.bad = 0;
        }
        if self.bad > self.config.patience {
            let new = (self.lr * self.config.factor).max(self.config.min_lr);
            if self.lr - new > self.config.eps {
                self.lr = new;
            }
            self.cooldown_left = self.config.cooldown;
            self.bad = 0;
        }
        self.lr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_restarts_restart() {
        let s = Schedule::CosineWarmRestarts {
            t_0: 4,
            t_mult: 2,
            eta_min: 0.0,
        };
        let lrs: Vec<f64> = (0..13).map(|t| s.lr(t, 1.0)).collect();
        assert_eq!(lrs[0], 1.0);
        assert_eq!(lrs[4], 1.0); // first restart after 4 steps
        assert_eq!(lrs[12], 1.0); // then after 8 more
        assert!(lrs[3] < 0.2 && lrs[11] < 0.1);
    }

    #[test]
    fn one_cycle_peaks_at_pct_start_and_cycles_momentum_the_other_way() {
        let s = Schedule::one_cycle(100);
        assert!((s.lr(0, 1.0) - 0.04).abs() < 1e-12);
        assert!((s.lr(29, 1.0) - 1.0).abs() < 1e-12);
        assert!((s.lr(99, 1.0) - 0.04 / 1e4).abs() < 1e-12);
        assert_eq!(s.momentum(0), Some(0.95));
        assert!((s.momentum(29).unwrap() - 0.85).abs() < 1e-12);
        assert!(s.cycles_momentum());
        assert!(!Schedule::Constant.cycles_momentum());
    }

    #[test]
    fn plateau_waits_for_patience_then_drops_and_cools_down() {
        let cfg = PlateauConfig {
            patience: 2,
            cooldown: 1,
            factor: 0.5,
            ..PlateauConfig::default()
        };
        let mut p = ReduceOnPlateau::new(cfg, 1.0).unwrap();
        let lrs: Vec<f64> = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5]
            .iter()
            .map(|&m| p.observe(m))
            .collect();
        assert_eq!(lrs, vec![1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5]);
        assert!(ReduceOnPlateau::new(PlateauConfig { factor: 1.5, ..cfg }, 1.0).is_err());
    }

    #[test]
    fn bad_parameters_are_named() {
        let e = Schedule::Step {
            step_size: 0,
            gamma: 0.1,
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("step_size"), "{e}");
        assert!(Schedule::Sequence {
            parts: vec![Schedule::Constant],
            milestones: vec![3]
        }
        .validate()
        .is_err());
    }
}
