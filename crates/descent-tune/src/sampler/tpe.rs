//! The Tree-structured Parzen Estimator (Bergstra et al. 2011, "Algorithms for
//! Hyper-Parameter Optimization"; Watanabe 2023, "Tree-Structured Parzen Estimator:
//! Understanding Its Algorithm Components"), with Optuna's defaults (`TPESampler`, Optuna
//! 5.0): 10 random startup trials, 24 expected-improvement candidates, the best
//! `min(ceil(0.1 n), 25)` trials as "good", older trials down-weighted once there are more
//! than 25, a prior kernel of weight 1, Optuna's bandwidths (gaps to neighbours, "magic
//! clip"), and joint (multivariate, the default) or per-parameter kernels.
//!
//! Each step: split the finished trials into good (below) and the rest (above), fit a
//! mixture of truncated normals (categoricals: smoothed histograms) to each, draw candidates
//! from the good mixture `l`, and keep the candidate with the largest `l(x) / g(x)`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::Sampler;
use crate::distribution::Distribution;
use crate::error::Result;
use crate::math::{exp_nonpos, norm_cdf, norm_mass, norm_ppf, LN_SQRT_2PI};
use crate::rng::Rng;
use crate::trial::{History, Param, TrialState};

/// TPE's settings; [`TpeConfig::default`] is Optuna's.
#[derive(Clone, Debug, PartialEq)]
pub struct TpeConfig {
    /// Random trials before TPE starts (10).
    pub n_startup_trials: usize,
    /// Candidates drawn from the good mixture per decision (24).
    pub n_ei_candidates: usize,
    /// Model the parameters every complete trial shares jointly instead of one at a time
    /// (true: Optuna 5's default for one objective).
    pub multivariate: bool,
    /// Weight of the prior kernel (1.0).
    pub prior_weight: f64,
    /// Bound bandwidths below by range / min(100, 1 + kernels) (true).
    pub consider_magic_clip: bool,
    /// Let the outermost kernels' bandwidths reach the bounds (false).
    pub consider_endpoints: bool,
    /// The seed.
    pub seed: u64,
}

impl Default for TpeConfig {
    fn default() -> Self {
        TpeConfig {
            n_startup_trials: 10,
            n_ei_candidates: 24,
            multivariate: true,
            prior_weight: 1.0,
            consider_magic_clip: true,
            consider_endpoints: false,
            seed: 0,
        }
    }
}

/// The TPE sampler.
#[derive(Debug)]
pub struct TpeSampler {
    cfg: TpeConfig,
    /// Each parameter's model-space value per finished trial (by trial number): finished
    /// trials never change, so a 1000-trial study reads each value once, not every trial.
    columns: Mutex<HashMap<String, Column>>,
    /// The relative search space so far and the complete trials it was narrowed by.
    intersection: Mutex<Intersection>,
}

/// The parameters (with their distribution) that every complete trial read so far has.
#[derive(Debug, Default)]
struct Intersection {
    space: Option<Vec<(String, Distribution)>>,
    read: std::collections::HashSet<u64>,
}

/// One parameter's cached values, valid for one distribution.
#[derive(Debug)]
struct Column {
    distribution: Distribution,
    /// `Some(Some(x))`: the trial has the parameter in the space, at `x`; `Some(None)`: it
    /// has not; `None`: not read yet.
    values: Vec<Option<Option<f64>>>,
}

impl Clone for TpeSampler {
    fn clone(&self) -> Self {
        TpeSampler::with_config(self.cfg.clone())
    }
}

impl TpeSampler {
    /// Optuna's default TPE with this seed.
    pub fn new(seed: u64) -> Self {
        Self::with_config(TpeConfig {
            seed,
            ..TpeConfig::default()
        })
    }

    /// A TPE sampler with these settings.
    pub fn with_config(cfg: TpeConfig) -> Self {
        TpeSampler {
            cfg,
            columns: Mutex::new(HashMap::new()),
            intersection: Mutex::new(Intersection::default()),
        }
    }

    /// The settings.
    pub fn config(&self) -> &TpeConfig {
        &self.cfg
    }

    /// Optuna's `default_gamma`: how many of `n` finished trials count as good.
    fn n_below(n: usize) -> usize {
        (n.div_ceil(10)).min(25)
    }

    /// Draws the internal values of `space` for trial `number`.
    fn sample(
        &self,
        history: &History,
        number: u64,
        space: &[(&str, &Distribution)],
        key: &str,
    ) -> Vec<f64> {
        let mut rng = Rng::for_trial(self.cfg.seed, number, key);
        let ranked = history.ranked();
        if ranked.len() < self.cfg.n_startup_trials {
            return space.iter().map(|(_, d)| d.from_unit(rng.unit())).collect();
        }
        // Below/above by rank, each then in trial order (weights favour recent trials).
        let n_below = Self::n_below(ranked.len());
        let mut is_below = vec![None; history.trials.len()];
        for (r, &i) in ranked.iter().enumerate() {
            is_below[i] = Some(r < n_below);
        }
        let dims: Vec<Dim> = space.iter().map(|(_, d)| Dim::new(d)).collect();
        let mut below: Vec<Vec<f64>> = vec![Vec::new(); dims.len()];
        let mut above: Vec<Vec<f64>> = vec![Vec::new(); dims.len()];
        let mut columns = self.columns.lock().unwrap_or_else(|e| e.into_inner());
        let mut cols: Vec<&mut Column> = Vec::with_capacity(space.len());
        {
            // Reset the columns whose distribution changed (new bounds); then borrow each.
            for (name, dist) in space {
                let stale = columns.get(*name).is_none_or(|c| &c.distribution != *dist);
                if stale {
                    columns.insert(
                        name.to_string(),
                        Column {
                            distribution: (*dist).clone(),
                            values: Vec::new(),
                        },
                    );
                }
            }
            let mut by_name: HashMap<&str, &mut Column> =
                columns.iter_mut().map(|(n, c)| (n.as_str(), c)).collect();
            for (name, _) in space {
                cols.push(by_name.remove(*name).expect("inserted above"));
            }
        }
        let mut row = vec![0.0; dims.len()];
        'trials: for (t, flag) in history.trials.iter().zip(&is_below) {
            let Some(b) = flag else { continue };
            let number = t.number as usize;
            for (k, (name, dist)) in space.iter().enumerate() {
                let col = &mut cols[k];
                if col.values.len() <= number {
                    col.values.resize(number + 1, None);
                }
                let value = match col.values[number] {
                    Some(v) => v,
                    None => {
                        let v = t
                            .params
                            .get(*name)
                            .filter(|p| {
                                p.distribution.compatible(dist) && dist.contains(p.internal)
                            })
                            .map(|p| dims[k].transform(p.internal));
                        if t.state.is_finished() {
                            col.values[number] = Some(v);
                        }
                        v
                    }
                };
                match value {
                    Some(v) => row[k] = v,
                    None => continue 'trials,
                }
            }
            let side = if *b { &mut below } else { &mut above };
            for (k, v) in row.iter().enumerate() {
                side[k].push(*v);
            }
        }
        drop(cols);
        drop(columns);
        let l = Parzen::fit(&dims, &below, &self.cfg);
        let g = Parzen::fit(&dims, &above, &self.cfg);
        let n_cand = self.cfg.n_ei_candidates.max(1);
        let mut best = (f64::NEG_INFINITY, Vec::new());
        let mut scratch = Vec::new();
        for _ in 0..n_cand {
            let x = l.draw(&dims, &mut rng);
            let score = l.log_pdf(&dims, &x, &mut scratch) - g.log_pdf(&dims, &x, &mut scratch);
            if best.1.is_empty() || score > best.0 {
                best = (score, x);
            }
        }
        best.1
            .iter()
            .zip(&dims)
            .map(|(&x, d)| d.untransform(x))
            .collect()
    }
}

impl Sampler for TpeSampler {
    fn sample_relative(&self, history: &History, number: u64) -> BTreeMap<String, Param> {
        if !self.cfg.multivariate || history.ranked().len() < self.cfg.n_startup_trials {
            return BTreeMap::new();
        }
        // The parameters every complete trial has, with one distribution (complete trials
        // never change: each narrows the space once).
        let mut inter = self.intersection.lock().unwrap_or_else(|e| e.into_inner());
        let inter = &mut *inter;
        for t in history.with_state(TrialState::Complete) {
            if !inter.read.insert(t.id) {
                continue;
            }
            match &mut inter.space {
                None => {
                    inter.space = Some(
                        t.params
                            .iter()
                            .map(|(n, p)| (n.clone(), p.distribution.clone()))
                            .collect(),
                    )
                }
                Some(space) => {
                    space.retain(|(n, d)| t.params.get(n).is_some_and(|p| &p.distribution == d))
                }
            }
        }
        let mut space: Vec<(&str, &Distribution)> = inter
            .space
            .iter()
            .flatten()
            .map(|(n, d)| (n.as_str(), d))
            .collect();
        // A parameter with one possible value needs no model.
        space.retain(|(_, d)| d.cardinality() != Some(1));
        if space.is_empty() {
            return BTreeMap::new();
        }
        let values = self.sample(history, number, &space, "__relative__");
        space
            .iter()
            .zip(values)
            .map(|((n, d), internal)| {
                (
                    n.to_string(),
                    Param {
                        distribution: (*d).clone(),
                        internal,
                    },
                )
            })
            .collect()
    }

    fn sample_independent(
        &self,
        history: &History,
        number: u64,
        name: &str,
        distribution: &Distribution,
    ) -> Result<f64> {
        Ok(self.sample(history, number, &[(name, distribution)], name)[0])
    }
}

/// One dimension in the space the kernels live in: log parameters in log space, integers
/// and stepped floats as a grid (log integers as a continuum rounded afterwards, as Optuna).
#[derive(Clone, Debug)]
enum Dim {
    Numeric {
        low: f64,
        high: f64,
        /// The grid spacing, for discrete dimensions.
        step: Option<f64>,
        log: bool,
        /// Round back to an integer.
        int: bool,
        /// Bounds of the original values.
        bounds: (f64, f64),
    },
    Categorical(usize),
}

impl Dim {
    fn new(d: &Distribution) -> Dim {
        match *d {
            Distribution::Float {
                low,
                high,
                log,
                step,
            } => Dim::Numeric {
                low: if log { low.ln() } else { low },
                high: if log { high.ln() } else { high },
                step,
                log,
                int: false,
                bounds: (low, high),
            },
            Distribution::Int {
                low,
                high,
                log,
                step,
            } => {
                let (lo, hi) = (low as f64, high as f64);
                if log {
                    Dim::Numeric {
                        low: (lo - 0.5).ln(),
                        high: (hi + 0.5).ln(),
                        step: None,
                        log: true,
                        int: true,
                        bounds: (lo, hi),
                    }
                } else {
                    Dim::Numeric {
                        low: lo,
                        high: hi,
                        step: Some(step as f64),
                        log: false,
                        int: true,
                        bounds: (lo, hi),
                    }
                }
            }
            Distribution::Categorical { ref choices } => Dim::Categorical(choices.len()),
        }
    }

    fn transform(&self, internal: f64) -> f64 {
        match self {
            Dim::Numeric { log: true, .. } => internal.ln(),
            _ => internal,
        }
    }

    fn untransform(&self, x: f64) -> f64 {
        match *self {
            Dim::Numeric {
                low,
                step,
                log,
                int,
                bounds,
                ..
            } => {
                let mut v = if log { x.exp() } else { x };
                if let Some(s) = step {
                    v = low + ((v - low) / s).round() * s;
                }
                if int {
                    v = v.round();
                }
                v.clamp(bounds.0, bounds.1)
            }
            Dim::Categorical(n) => x.clamp(0.0, n as f64 - 1.0),
        }
    }
}

/// The kernels of one dimension.
#[derive(Debug)]
enum Kernels {
    Numeric {
        mus: Vec<f64>,
        sigmas: Vec<f64>,
        inv_sigmas: Vec<f64>,
        /// Per kernel: -ln(sigma) - ln(sqrt(2 pi)) - ln(Z) (continuous) or -ln(Z) (discrete),
        /// Z the kernel's mass inside the bounds.
        log_norm: Vec<f64>,
    },
    /// Per kernel, ln of each choice's probability.
    Categorical(Vec<Vec<f64>>),
}

/// A mixture over the space: kernel `k` is the product of each dimension's kernel `k`.
#[derive(Debug)]
struct Parzen {
    weights: Vec<f64>,
    log_weights: Vec<f64>,
    dims: Vec<Kernels>,
}

/// Optuna's `default_weights`: 1 for the newest 25 observations, a ramp from 1/n for older.
fn observation_weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp = n - 25;
    let mut w: Vec<f64> = (0..ramp)
        .map(|i| {
            if ramp == 1 {
                1.0 / n as f64
            } else {
                1.0 / n as f64 + (1.0 - 1.0 / n as f64) * i as f64 / (ramp - 1) as f64
            }
        })
        .collect();
    w.extend(std::iter::repeat_n(1.0, 25));
    w
}

impl Parzen {
    /// Fits the mixture to `obs` (per dimension, one value per observation, in trial order).
    fn fit(dims: &[Dim], obs: &[Vec<f64>], cfg: &TpeConfig) -> Parzen {
        let n = obs.first().map_or(0, Vec::len);
        let mut weights = observation_weights(n);
        weights.push(if n == 0 { 1.0 } else { cfg.prior_weight });
        let total: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= total);
        // Most weights are equal (the newest 25 and the flat part): one log each run of them.
        let mut last = (f64::NAN, f64::NAN);
        let log_weights = weights
            .iter()
            .map(|&w| {
                if w != last.0 {
                    last = (w, w.ln());
                }
                last.1
            })
            .collect();
        let kernels = dims
            .iter()
            .zip(obs)
            .map(|(d, o)| Self::fit_dim(d, o, cfg))
            .collect();
        Parzen {
            weights,
            log_weights,
            dims: kernels,
        }
    }

    fn fit_dim(dim: &Dim, obs: &[f64], cfg: &TpeConfig) -> Kernels {
        let n = obs.len();
        match *dim {
            Dim::Categorical(c) => {
                let n_kernels = n + 1;
                let mut rows = Vec::with_capacity(n_kernels);
                for &o in obs {
                    let mut row = vec![cfg.prior_weight / n_kernels as f64; c];
                    row[(o as usize).min(c - 1)] += 1.0;
                    let s: f64 = row.iter().sum();
                    rows.push(row.iter().map(|p| (p / s).ln()).collect());
                }
                rows.push(vec![-(c as f64).ln(); c]);
                Kernels::Categorical(rows)
            }
            Dim::Numeric {
                low, high, step, ..
            } => {
                let s = step.unwrap_or(0.0);
                let range = high - low + s;
                let mut sigmas = Self::neighbour_sigmas(obs, low, high, s, cfg.consider_endpoints);
                let max_sigma = range;
                let min_sigma = if cfg.consider_magic_clip {
                    range / (100f64).min(1.0 + (n + 1) as f64)
                } else {
                    f64::EPSILON
                };
                sigmas
                    .iter_mut()
                    .for_each(|x| *x = x.clamp(min_sigma, max_sigma));
                let mut mus = obs.to_vec();
                mus.push(0.5 * (low + high));
                sigmas.push(range);
                let (a, b) = (low - s / 2.0, high + s / 2.0);
                let log_norm = mus
                    .iter()
                    .zip(&sigmas)
                    .map(|(&mu, &sg)| {
                        let z = norm_mass((a - mu) / sg, (b - mu) / sg).max(1e-300);
                        if step.is_some() {
                            -z.ln()
                        } else {
                            -(sg * z).ln() - LN_SQRT_2PI
                        }
                    })
                    .collect();
                let inv_sigmas = sigmas.iter().map(|s| 1.0 / s).collect();
                Kernels::Numeric {
                    mus,
                    sigmas,
                    inv_sigmas,
                    log_norm,
                }
            }
        }
    }

    /// Optuna's bandwidths: each observation's larger gap to a neighbour among the sorted
    /// observations and the bounds (the outermost take their inner gap unless
    /// `consider_endpoints`).
    fn neighbour_sigmas(obs: &[f64], low: f64, high: f64, s: f64, endpoints: bool) -> Vec<f64> {
        let n = obs.len();
        if n == 0 {
            return Vec::new();
        }
        let mut order: Vec<(f64, usize)> = obs.iter().copied().zip(0..).collect();
        order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let at = |i: usize| -> f64 {
            if i == 0 {
                low - s / 2.0
            } else if i == n + 1 {
                high + s / 2.0
            } else {
                order[i - 1].0
            }
        };
        let mut sorted_sigmas: Vec<f64> = (1..=n)
            .map(|i| (at(i) - at(i - 1)).max(at(i + 1) - at(i)))
            .collect();
        if !endpoints && n + 2 >= 4 {
            sorted_sigmas[0] = at(2) - at(1);
            sorted_sigmas[n - 1] = at(n) - at(n - 1);
        }
        let mut sigmas = vec![0.0; n];
        for (j, &(_, i)) in order.iter().enumerate() {
            sigmas[i] = sorted_sigmas[j];
        }
        sigmas
    }

    /// One draw: a kernel by weight, then each dimension from that kernel.
    fn draw(&self, dims: &[Dim], rng: &mut Rng) -> Vec<f64> {
        let k = rng.weighted(&self.weights);
        dims.iter()
            .zip(&self.dims)
            .map(|(dim, kern)| match (dim, kern) {
                (
                    &Dim::Numeric {
                        low, high, step, ..
                    },
                    Kernels::Numeric { mus, sigmas, .. },
                ) => {
                    let s = step.unwrap_or(0.0);
                    let (a, b) = (low - s / 2.0, high + s / 2.0);
                    let (mu, sg) = (mus[k], sigmas[k]);
                    let (pa, pb) = (norm_cdf((a - mu) / sg), norm_cdf((b - mu) / sg));
                    let u = pa + rng.unit() * (pb - pa);
                    let x = (mu + sg * norm_ppf(u)).clamp(a, b);
                    match step {
                        Some(st) => (low + ((x - low) / st).round() * st).clamp(low, high),
                        None => x.clamp(low, high),
                    }
                }
                (Dim::Categorical(_), Kernels::Categorical(rows)) => {
                    let p: Vec<f64> = rows[k].iter().map(|l| l.exp()).collect();
                    rng.weighted(&p) as f64
                }
                _ => unreachable!("kernels are fitted per dimension"),
            })
            .collect()
    }

    /// ln of the mixture's density (mass, for discrete dimensions) at `x`.
    fn log_pdf(&self, dims: &[Dim], x: &[f64], acc: &mut Vec<f64>) -> f64 {
        acc.clear();
        acc.extend_from_slice(&self.log_weights);
        for ((dim, kern), &xv) in dims.iter().zip(&self.dims).zip(x) {
            match (dim, kern) {
                (
                    Dim::Numeric { step: None, .. },
                    Kernels::Numeric {
                        mus,
                        inv_sigmas,
                        log_norm,
                        ..
                    },
                ) => {
                    for (((a, &mu), &is), &ln) in
                        acc.iter_mut().zip(mus).zip(inv_sigmas).zip(log_norm)
                    {
                        let z = (xv - mu) * is;
                        *a += ln - 0.5 * z * z;
                    }
                }
                (
                    Dim::Numeric { step: Some(s), .. },
                    Kernels::Numeric {
                        mus,
                        inv_sigmas,
                        log_norm,
                        ..
                    },
                ) => {
                    let (lo, hi) = (xv - s / 2.0, xv + s / 2.0);
                    for (((a, &mu), &is), &ln) in
                        acc.iter_mut().zip(mus).zip(inv_sigmas).zip(log_norm)
                    {
                        let mass = norm_mass((lo - mu) * is, (hi - mu) * is);
                        let lm = if mass > 0.0 {
                            mass.ln()
                        } else {
                            // Far in a tail: the density at x times the cell's width.
                            let z = (xv - mu) * is;
                            -0.5 * z * z - LN_SQRT_2PI + (s * is).ln()
                        };
                        *a += ln + lm;
                    }
                }
                (Dim::Categorical(_), Kernels::Categorical(rows)) => {
                    let c = xv as usize;
                    for (a, row) in acc.iter_mut().zip(rows) {
                        *a += row[c];
                    }
                }
                _ => unreachable!("kernels are fitted per dimension"),
            }
        }
        // Four independent lanes so that the max and the exponentials vectorize.
        let mut mx = [f64::NEG_INFINITY; 4];
        let chunks = acc.chunks_exact(4);
        let tail = chunks.remainder();
        for c in chunks {
            for j in 0..4 {
                mx[j] = if c[j] > mx[j] { c[j] } else { mx[j] };
            }
        }
        let mut m = mx[0].max(mx[1]).max(mx[2].max(mx[3]));
        for &v in tail {
            m = m.max(v);
        }
        if m == f64::NEG_INFINITY {
            return m;
        }
        let mut sums = [0.0f64; 4];
        let chunks = acc.chunks_exact(4);
        for c in chunks {
            for j in 0..4 {
                sums[j] += exp_nonpos(c[j] - m);
            }
        }
        let mut s = (sums[0] + sums[1]) + (sums[2] + sums[3]);
        for &v in tail {
            s += exp_nonpos(v - m);
        }
        m + s.ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_ramp_up_to_the_newest_25() {
        assert_eq!(observation_weights(3), vec![1.0; 3]);
        let w = observation_weights(30);
        assert_eq!(w.len(), 30);
        assert!((w[0] - 1.0 / 30.0).abs() < 1e-12);
        assert!(w.windows(2).all(|p| p[0] <= p[1]));
        assert_eq!(w[5..], [1.0; 25]);
    }

    #[test]
    fn neighbour_bandwidths_follow_optuna() {
        // Observations 0.3, 0.1, 0.6 in [0, 1]: sorted 0.1, 0.3, 0.6 between the bounds.
        // Gaps: 0.1|0.2|0.3|0.4. With endpoints each takes its larger gap; without, the
        // outermost take their inner gap.
        let s = Parzen::neighbour_sigmas(&[0.3, 0.1, 0.6], 0.0, 1.0, 0.0, true);
        let want = [0.3, 0.2, 0.4];
        assert!(
            s.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{s:?}"
        );
        let s = Parzen::neighbour_sigmas(&[0.3, 0.1, 0.6], 0.0, 1.0, 0.0, false);
        let want = [0.3, 0.2, 0.3];
        assert!(
            s.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{s:?}"
        );
    }

    #[test]
    fn densities_integrate_to_one() {
        let cfg = TpeConfig::default();
        let d = Distribution::float(-1.0, 2.0);
        let dims = vec![Dim::new(&d)];
        let p = Parzen::fit(&dims, &[vec![0.0, 0.1, 1.5, -0.9]], &cfg);
        let mut acc = Vec::new();
        let n = 20_000;
        let h = 3.0 / n as f64;
        let total: f64 = (0..n)
            .map(|i| {
                p.log_pdf(&dims, &[-1.0 + (i as f64 + 0.5) * h], &mut acc)
                    .exp()
                    * h
            })
            .sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        // A discrete dimension's masses sum to one.
        let d = Distribution::int(0, 9);
        let dims = vec![Dim::new(&d)];
        let p = Parzen::fit(&dims, &[vec![2.0, 3.0, 9.0]], &cfg);
        let total: f64 = (0..10)
            .map(|i| p.log_pdf(&dims, &[i as f64], &mut acc).exp())
            .sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        // Joint categorical x float.
        let ds = [
            Distribution::categorical(["a", "b", "c"]),
            Distribution::float(0.0, 1.0),
        ];
        let dims: Vec<Dim> = ds.iter().map(Dim::new).collect();
        let p = Parzen::fit(&dims, &[vec![0.0, 2.0], vec![0.2, 0.9]], &cfg);
        let total: f64 = (0..3)
            .map(|c| {
                (0..2000)
                    .map(|i| {
                        p.log_pdf(&dims, &[c as f64, (i as f64 + 0.5) / 2000.0], &mut acc)
                            .exp()
                            / 2000.0
                    })
                    .sum::<f64>()
            })
            .sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
    }

    /// The mixture's log density on fixed observations and points equals Optuna's
    /// (`tools/tpe_reference.py` wrote the fixture with Optuna 5.0.0).
    #[test]
    fn log_densities_match_optuna() {
        let text = include_str!("../../tests/fixtures/optuna_parzen.json");
        let fixture: serde_json::Value = serde_json::from_str(text).unwrap();
        let cfg = TpeConfig::default();
        for case in fixture["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let space = case["space"].as_object().unwrap();
            let dists: Vec<Distribution> = space
                .values()
                .map(|d| serde_json::from_value(d.clone()).unwrap())
                .collect();
            let dims: Vec<Dim> = dists.iter().map(Dim::new).collect();
            let column = |key: &str, p: &str| -> Vec<f64> {
                case[key][p]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect()
            };
            let obs: Vec<Vec<f64>> = space
                .keys()
                .zip(&dims)
                .map(|(p, d)| {
                    column("observations", p)
                        .iter()
                        .map(|&v| d.transform(v))
                        .collect()
                })
                .collect();
            let pts: Vec<Vec<f64>> = space
                .keys()
                .zip(&dims)
                .map(|(p, d)| {
                    column("points", p)
                        .iter()
                        .map(|&v| d.transform(v))
                        .collect()
                })
                .collect();
            let parzen = Parzen::fit(&dims, &obs, &cfg);
            let want = case["log_pdf"].as_array().unwrap();
            let mut acc = Vec::new();
            for (i, w) in want.iter().enumerate() {
                let x: Vec<f64> = pts.iter().map(|c| c[i]).collect();
                let got = parzen.log_pdf(&dims, &x, &mut acc);
                let w = w.as_f64().unwrap();
                assert!(
                    (got - w).abs() <= 1e-9 * w.abs().max(1.0),
                    "{name} point {i}: {got} vs optuna {w}"
                );
            }
        }
    }
}
