//! Parameter importances: how much of the objective's spread each parameter explains.
//!
//! For each parameter, the complete trials that have it are grouped by its value (a
//! categorical by choice, a number into up to 8 quantile bins) and the share of the
//! objective's variance between the groups is taken (one-way ANOVA's eta squared); the
//! shares are then scaled to sum to 1. This sees main effects only; Optuna's default
//! (fANOVA over a random forest) also credits interactions.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::distribution::Distribution;
use crate::trial::{FrozenTrial, TrialState};

/// The complete trials a parameter must appear in to be given an importance.
pub const MIN_TRIALS: usize = 4;

/// Importance of each parameter (summing to 1), most important first. Parameters seen in
/// fewer than [`MIN_TRIALS`] complete trials are left out.
pub fn importances(trials: &[Arc<FrozenTrial>]) -> Vec<(String, f64)> {
    let complete: Vec<&FrozenTrial> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete && t.value.is_some_and(f64::is_finite))
        .map(|t| t.as_ref())
        .collect();
    let mut names: BTreeMap<&str, ()> = BTreeMap::new();
    for t in &complete {
        for n in t.params.keys() {
            names.insert(n, ());
        }
    }
    let mut raw: Vec<(String, f64)> = Vec::new();
    for name in names.keys() {
        let pts: Vec<(f64, f64, bool)> = complete
            .iter()
            .filter_map(|t| {
                let p = t.params.get(*name)?;
                let cat = matches!(p.distribution, Distribution::Categorical { .. });
                Some((p.internal, t.value?, cat))
            })
            .collect();
        if pts.len() < MIN_TRIALS {
            continue;
        }
        raw.push((name.to_string(), eta_squared(&pts)));
    }
    let total: f64 = raw.iter().map(|r| r.1).sum();
    if total > 0.0 {
        raw.iter_mut().for_each(|r| r.1 /= total);
    }
    raw.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    raw
}

/// Between-group share of the variance of `y` with groups of `x` (choices, or quantile bins).
fn eta_squared(pts: &[(f64, f64, bool)]) -> f64 {
    let n = pts.len();
    let mean = pts.iter().map(|p| p.1).sum::<f64>() / n as f64;
    let total: f64 = pts.iter().map(|p| (p.1 - mean).powi(2)).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let mut groups: BTreeMap<i64, (f64, usize)> = BTreeMap::new();
    if pts[0].2 {
        for p in pts {
            let g = groups.entry(p.0 as i64).or_default();
            g.0 += p.1;
            g.1 += 1;
        }
    } else {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| pts[a].0.total_cmp(&pts[b].0));
        let bins = (n / 4).clamp(2, 8);
        for (rank, &i) in order.iter().enumerate() {
            let g = groups.entry((rank * bins / n) as i64).or_default();
            g.0 += pts[i].1;
            g.1 += 1;
        }
    }
    let between: f64 = groups
        .values()
        .map(|(s, c)| *c as f64 * (s / *c as f64 - mean).powi(2))
        .sum();
    between / total
}
