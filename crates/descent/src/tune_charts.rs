//! The four charts of `descent tune show`: the optimization history, the intermediate values
//! pruning saw, the parameters' importances and parallel coordinates.

use std::collections::BTreeMap;
use std::sync::Arc;

use descent_chart::{Axis, Bar, Chart, Label, Markers, Series};
use descent_tune::importance::MIN_TRIALS;
use descent_tune::{Direction, Distribution, FrozenTrial, TrialState};

const BLUE: (u8, u8, u8) = (31, 119, 180);
const RED: (u8, u8, u8) = (214, 39, 40);
const GREY: (u8, u8, u8) = (160, 160, 160);

/// Why a study has no importances yet, in words.
pub fn no_importances(trials: &[Arc<FrozenTrial>]) -> String {
    let complete = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .count();
    format!(
        "none yet: a parameter needs {MIN_TRIALS} complete trials that drew it, and the study \
         has {complete} complete trial{}",
        if complete == 1 { "" } else { "s" }
    )
}

/// The charts by file name.
pub fn charts(
    trials: &[Arc<FrozenTrial>],
    d: Direction,
    imp: &[(String, f64)],
) -> Vec<(&'static str, Chart)> {
    vec![
        ("history", history(trials, d)),
        ("intermediate", intermediate(trials)),
        ("importances", importances(trials, imp)),
        ("parallel", parallel(trials, d)),
    ]
}

fn history(trials: &[Arc<FrozenTrial>], d: Direction) -> Chart {
    let point = |t: &FrozenTrial| (t.number as f64, t.value.unwrap_or(f64::NAN));
    let of = |s: TrialState| -> Vec<(f64, f64)> {
        trials
            .iter()
            .filter(|t| t.state == s)
            .map(|t| point(t))
            .collect()
    };
    let complete = of(TrialState::Complete);
    let mut best = Vec::new();
    let mut b = f64::NAN;
    for &(x, y) in &complete {
        if b.is_nan() || d.better(y, b) {
            b = y;
        }
        best.push((x, b));
    }
    let mut c = Chart::new(
        "Optimization history",
        Axis::new("trial"),
        Axis::new(format!("objective ({d})")).auto(),
    );
    c.series = vec![
        Series::new("complete", complete)
            .color(BLUE)
            .markers(Markers::Only),
        Series::new("pruned", of(TrialState::Pruned))
            .color(GREY)
            .markers(Markers::Only),
        Series::new("best so far", best)
            .color(RED)
            .markers(Markers::Never),
    ];
    c
}

fn intermediate(trials: &[Arc<FrozenTrial>]) -> Chart {
    let lines_of = |state: TrialState| -> Vec<Vec<(f64, f64)>> {
        trials
            .iter()
            .filter(|t| t.state == state)
            .map(|t| {
                t.intermediate
                    .iter()
                    .map(|(s, v)| (*s as f64, *v))
                    .collect()
            })
            .collect()
    };
    let mut c = Chart::new(
        "Intermediate values",
        Axis::new("step (epoch)"),
        Axis::new("reported value").auto(),
    );
    c.series = vec![
        Series::lines("complete", lines_of(TrialState::Complete))
            .color(BLUE)
            .width(1.5),
        Series::lines("pruned", lines_of(TrialState::Pruned))
            .color(RED)
            .width(1.5),
    ];
    if c.is_empty() {
        c.note = Some("no trial has reported a value yet".into());
    }
    c
}

fn importances(trials: &[Arc<FrozenTrial>], imp: &[(String, f64)]) -> Chart {
    if imp.is_empty() {
        return Chart::new(
            "Parameter importances",
            Axis::new("share of variance explained"),
            Axis::new(""),
        )
        .note(format!("importances: {}", no_importances(trials)));
    }
    let bars = imp
        .iter()
        .map(|(n, v)| Bar {
            name: n.clone(),
            value: *v,
            text: format!("{v:.2}"),
        })
        .collect();
    let mut c = Chart::bar(
        "Parameter importances (main effects)",
        "share of variance explained",
        bars,
    );
    c.x.range = Some((0.0, 1.0));
    c
}

/// Where a parameter's value sits on its axis, 0 to 1 (log parameters on a log scale,
/// choices evenly).
fn unit(dist: &Distribution, x: f64) -> f64 {
    let (lo, hi, log) = match *dist {
        Distribution::Float { low, high, log, .. } => (low, high, log),
        Distribution::Int { low, high, log, .. } => (low as f64, high as f64, log),
        Distribution::Categorical { ref choices } => {
            return if choices.len() < 2 {
                0.5
            } else {
                x / (choices.len() - 1) as f64
            };
        }
    };
    let u = if log {
        (x.ln() - lo.ln()) / (hi.ln() - lo.ln())
    } else {
        (x - lo) / (hi - lo)
    };
    if u.is_finite() {
        u.clamp(0.0, 1.0)
    } else {
        0.5
    }
}

/// The labels along a parameter's axis: its choices, or its ends and middle.
fn axis_labels(i: usize, dist: &Distribution) -> Vec<Label> {
    let at = |u: f64, text: String| Label {
        at: (i as f64, u),
        text,
    };
    let num = |v: f64| {
        if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e5) {
            format!("{v:.0e}")
        } else {
            format!("{}", (v * 1e4).round() / 1e4)
        }
    };
    match *dist {
        Distribution::Categorical { ref choices } => choices
            .iter()
            .enumerate()
            .map(|(k, c)| at(unit(dist, k as f64), c.to_string()))
            .collect(),
        Distribution::Float { low, high, log, .. } => {
            let mid = if log {
                (low * high).sqrt()
            } else {
                (low + high) / 2.0
            };
            vec![at(0.0, num(low)), at(0.5, num(mid)), at(1.0, num(high))]
        }
        Distribution::Int { low, high, log, .. } => {
            let (l, h) = (low as f64, high as f64);
            let mid = if log { (l * h).sqrt() } else { (l + h) / 2.0 };
            vec![
                at(0.0, low.to_string()),
                at(0.5, format!("{}", mid.round())),
                at(1.0, high.to_string()),
            ]
        }
    }
}

/// Each complete trial across its parameters and then its objective, every axis scaled to
/// its own range and labelled with its values; a trial that did not draw a parameter (Adam's
/// trials have no momentum) is broken there instead of crossing that axis. The best tenth
/// is highlighted.
fn parallel(trials: &[Arc<FrozenTrial>], d: Direction) -> Chart {
    let mut names: Vec<String> = Vec::new();
    let mut dists: BTreeMap<String, Distribution> = BTreeMap::new();
    for t in trials {
        for (n, p) in &t.params {
            if !names.contains(n) {
                names.push(n.clone());
            }
            dists
                .entry(n.clone())
                .or_insert_with(|| p.distribution.clone());
        }
    }
    let complete: Vec<(&FrozenTrial, f64)> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .filter_map(|t| Some((t.as_ref(), t.value.filter(|v| v.is_finite())?)))
        .collect();
    let (vmin, vmax) = complete
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &(_, v)| (a.min(v), b.max(v)));
    let mut sorted: Vec<f64> = complete.iter().map(|c| c.1).collect();
    sorted.sort_by(|a, b| d.loss(*a).total_cmp(&d.loss(*b)));
    let cut = sorted
        .get((sorted.len() / 10).max(1) - 1)
        .copied()
        .unwrap_or(f64::NAN);
    let objective = |v: f64| {
        if vmax > vmin {
            (v - vmin) / (vmax - vmin)
        } else {
            0.5
        }
    };
    let (mut top, mut rest) = (Vec::new(), Vec::new());
    for &(t, v) in &complete {
        let mut line: Vec<(f64, f64)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| match t.params.get(n) {
                Some(p) => (i as f64, unit(&dists[n], p.internal)),
                None => (f64::NAN, f64::NAN),
            })
            .collect();
        line.push((names.len() as f64, objective(v)));
        if !d.better(cut, v) {
            top.push(line);
        } else {
            rest.push(line);
        }
    }
    let mut axes = names.clone();
    axes.push("objective".into());
    let mut c = Chart::new(
        "Parallel coordinates",
        Axis::new("")
            .names(axes)
            .range(-0.15, names.len() as f64 + 0.6),
        Axis::new("").names(Vec::new()).range(-0.05, 1.05),
    );
    c.series = vec![
        Series::lines("other trials", rest)
            .color(GREY)
            .width(1.0)
            .markers(Markers::Never),
        Series::lines("best tenth", top)
            .color(RED)
            .width(2.0)
            .markers(Markers::Never),
    ];
    for (i, n) in names.iter().enumerate() {
        c.labels.extend(axis_labels(i, &dists[n]));
    }
    if !complete.is_empty() {
        let num = |v: f64| format!("{}", (v * 1e4).round() / 1e4);
        c.labels.push(Label {
            at: (names.len() as f64, 0.0),
            text: num(vmin),
        });
        c.labels.push(Label {
            at: (names.len() as f64, 1.0),
            text: num(vmax),
        });
    } else {
        c.note = Some("no complete trial yet".into());
    }
    c
}
