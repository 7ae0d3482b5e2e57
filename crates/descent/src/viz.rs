//! `descent viz`: the paths optimizers take on 2-D test functions, over contour lines: the
//! seed's section on optimization made visible.

use anyhow::{bail, Result};
use descent_optim::{HyperValue, Optimizer, OptimizerConfig};

use crate::cli::{VizArgs, VizFunction};
use descent_chart::{Axis, Chart, Figure, Mark, Markers, Series, Shape};

/// A 2-D test function: value and gradient, the region drawn, a start, and the learning
/// rates that suit it (plain SGD and momentum; the adaptive methods).
struct Problem {
    name: &'static str,
    f: fn(f64, f64) -> (f64, [f64; 2]),
    x: (f64, f64),
    y: (f64, f64),
    start: (f64, f64),
    sgd_lr: f64,
    adaptive_lr: f64,
    steps: usize,
    /// Contour levels spaced logarithmically (for functions spanning many magnitudes).
    log_levels: bool,
    /// The minimum, where there is one (a saddle has none).
    minimum: Option<(f64, f64)>,
}

/// A path has reached the minimum once its value is within this of the minimum's.
const TOLERANCE: f64 = 1e-3;

fn rosenbrock(x: f64, y: f64) -> (f64, [f64; 2]) {
    let f = (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2);
    (
        f,
        [
            -2.0 * (1.0 - x) - 400.0 * x * (y - x * x),
            200.0 * (y - x * x),
        ],
    )
}

fn beale(x: f64, y: f64) -> (f64, [f64; 2]) {
    let a = 1.5 - x + x * y;
    let b = 2.25 - x + x * y * y;
    let c = 2.625 - x + x * y * y * y;
    let f = a * a + b * b + c * c;
    let gx = 2.0 * a * (y - 1.0) + 2.0 * b * (y * y - 1.0) + 2.0 * c * (y * y * y - 1.0);
    let gy = 2.0 * a * x + 2.0 * b * 2.0 * x * y + 2.0 * c * 3.0 * x * y * y;
    (f, [gx, gy])
}

fn saddle(x: f64, y: f64) -> (f64, [f64; 2]) {
    (x * x - y * y, [2.0 * x, -2.0 * y])
}

fn quadratic(x: f64, y: f64) -> (f64, [f64; 2]) {
    (0.5 * (x * x + 25.0 * y * y), [x, 25.0 * y])
}

fn problem(f: VizFunction) -> Problem {
    match f {
        VizFunction::Rosenbrock => Problem {
            name: "Rosenbrock (1-x)^2 + 100(y-x^2)^2, minimum at (1, 1)",
            f: rosenbrock,
            x: (-2.0, 2.0),
            y: (-1.0, 3.0),
            start: (-1.5, 2.5),
            sgd_lr: 4e-4,
            adaptive_lr: 0.02,
            steps: 1500,
            log_levels: true,
            minimum: Some((1.0, 1.0)),
        },
        VizFunction::Beale => Problem {
            name: "Beale, minimum at (3, 0.5)",
            f: beale,
            x: (-4.5, 4.5),
            y: (-4.5, 4.5),
            start: (1.0, 1.4),
            sgd_lr: 2e-3,
            adaptive_lr: 0.02,
            steps: 1500,
            log_levels: true,
            minimum: Some((3.0, 0.5)),
        },
        VizFunction::Saddle => Problem {
            name: "saddle x^2 - y^2 at (0, 0)",
            f: saddle,
            x: (-2.0, 2.0),
            y: (-2.0, 2.0),
            start: (-1.8, 0.01),
            sgd_lr: 0.02,
            adaptive_lr: 0.02,
            steps: 300,
            log_levels: false,
            minimum: None,
        },
        VizFunction::Quadratic => Problem {
            name: "ill-conditioned quadratic (x^2 + 25 y^2) / 2",
            f: quadratic,
            x: (-5.0, 5.0),
            y: (-2.0, 2.0),
            start: (-4.5, 1.5),
            sgd_lr: 0.03,
            adaptive_lr: 0.1,
            steps: 150,
            log_levels: false,
            minimum: Some((0.0, 0.0)),
        },
    }
}

/// The optimizers `viz` draws, with their settings for problem `p`.
fn optimizer(name: &str, p: &Problem) -> Result<OptimizerConfig> {
    // On a 2-D function every step sees the whole gradient: gd is sgd.
    let (base, extra) = crate::compare::race_base(if name == "gd" { "sgd" } else { name })?;
    let lr = match base {
        "sgd" => p.sgd_lr,
        // The seed's form averages the gradient instead of summing it: ten times SGD's rate
        // takes the same steps at momentum 0.9.
        "momentum" => p.sgd_lr * 10.0,
        "adagrad" => p.adaptive_lr * 10.0,
        "adadelta" => 1.0,
        // A third of the others, written as people write rates (0.03, not 0.033333335).
        "lion" => p.adaptive_lr * 0.3,
        _ => p.adaptive_lr,
    };
    let mut c = OptimizerConfig::default_for(base).expect("a known optimizer");
    c.set("lr", HyperValue::Num(lr))?;
    if base == "adamw" {
        c.set("weight_decay", HyperValue::Num(0.0))?; // decay would pull towards the origin
    }
    for &(k, v) in extra {
        c.set(k, v)?;
    }
    Ok(c)
}

/// The path of `cfg` from the start, `steps` steps (stopping if it leaves the region far
/// behind or diverges).
fn path(p: &Problem, cfg: OptimizerConfig, steps: usize) -> Result<Vec<(f64, f64)>> {
    let mut opt = Optimizer::flat(cfg, 2)?;
    let mut xy = [p.start.0 as f32, p.start.1 as f32];
    let mut out = vec![p.start];
    for _ in 0..steps {
        let (_, g) = (p.f)(xy[0] as f64, xy[1] as f64);
        opt.step(&mut xy, &[g[0] as f32, g[1] as f32])?;
        let (x, y) = (xy[0] as f64, xy[1] as f64);
        if !x.is_finite() || !y.is_finite() || x.abs() > 1e3 || y.abs() > 1e3 {
            break;
        }
        out.push((x, y));
    }
    Ok(out)
}

/// Contour lines of `f` over the region at `levels`, by marching squares on an n x n grid.
fn contours(p: &Problem, levels: &[f64], n: usize) -> Vec<Vec<(f64, f64)>> {
    let (x0, x1, y0, y1) = (p.x.0, p.x.1, p.y.0, p.y.1);
    let px = |i: usize| x0 + (x1 - x0) * i as f64 / n as f64;
    let py = |j: usize| y0 + (y1 - y0) * j as f64 / n as f64;
    let v: Vec<Vec<f64>> = (0..=n)
        .map(|j| (0..=n).map(|i| (p.f)(px(i), py(j)).0).collect())
        .collect();
    let mut segs = Vec::new();
    for &level in levels {
        for j in 0..n {
            for i in 0..n {
                // Corners counter-clockwise from bottom-left, and the crossing on each edge.
                let c = [
                    (px(i), py(j), v[j][i]),
                    (px(i + 1), py(j), v[j][i + 1]),
                    (px(i + 1), py(j + 1), v[j + 1][i + 1]),
                    (px(i), py(j + 1), v[j + 1][i]),
                ];
                let mut cross = Vec::with_capacity(4);
                for e in 0..4 {
                    let (a, b) = (c[e], c[(e + 1) % 4]);
                    if (a.2 < level) != (b.2 < level) {
                        let t = (level - a.2) / (b.2 - a.2);
                        cross.push((a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1)));
                    }
                }
                // Two crossings: one segment; four (a saddle cell): two, paired in order.
                for pair in cross.chunks_exact(2) {
                    segs.push(vec![pair[0], pair[1]]);
                }
            }
        }
    }
    segs
}

pub fn run(args: VizArgs) -> Result<()> {
    let p = problem(args.function);
    let steps = args.steps.unwrap_or(p.steps);
    if steps == 0 {
        bail!("invalid --steps 0: take at least one step");
    }
    let ext = args
        .out
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ext != "png" && ext != "svg" {
        bail!(
            "invalid --out {}: name a .png or .svg file",
            args.out.display()
        );
    }
    let f_min = p.minimum.map(|(x, y)| (p.f)(x, y).0);
    let mut series = Vec::new();
    let mut losses = Vec::new();
    let mut ends = Vec::new();
    for name in &args.optimizers {
        let cfg = optimizer(name, &p)?;
        let points = path(&p, cfg, steps)?;
        let (last_x, last_y) = *points.last().expect("the start");
        let values: Vec<f64> = points.iter().map(|&(x, y)| (p.f)(x, y).0).collect();
        let reached = f_min.and_then(|m| values.iter().position(|v| v - m <= TOLERANCE));
        let outcome = match (f_min, reached) {
            (Some(_), Some(k)) => format!("within {TOLERANCE:e} of the minimum in {k} steps"),
            (Some(_), None) => format!("not within {TOLERANCE:e} in {} steps", points.len() - 1),
            (None, _) => format!(
                "f = {:.3} after {} steps",
                values.last().unwrap_or(&f64::NAN),
                points.len() - 1
            ),
        };
        out!(
            "{name:>9} (lr {}): {} steps, ends at ({last_x:.4}, {last_y:.4}), f = {:.3e}; {outcome}",
            cfg.lr(),
            points.len() - 1,
            (p.f)(last_x, last_y).0
        );
        let label = format!("{name} (lr {})", cfg.lr());
        // The loss panel: the gap to the minimum on a log axis (the value itself for a saddle).
        let gap: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .map(|(k, v)| (k as f64, f_min.map_or(*v, |m| (v - m).max(1e-12))))
            .collect();
        losses.push(
            Series::new(label.clone(), gap)
                .markers(Markers::Never)
                .unlisted(),
        );
        ends.push((last_x, last_y));
        series.push(
            Series::new(format!("{label}: {outcome}"), points)
                .markers(Markers::Never)
                .width(1.8),
        );
    }
    // Levels: evenly spaced, or logarithmically for functions spanning many magnitudes.
    let samples: Vec<f64> = (0..=40)
        .flat_map(|j| (0..=40).map(move |i| (i, j)))
        .map(|(i, j)| {
            let x = p.x.0 + (p.x.1 - p.x.0) * i as f64 / 40.0;
            let y = p.y.0 + (p.y.1 - p.y.0) * j as f64 / 40.0;
            (p.f)(x, y).0
        })
        .collect();
    let (lo, hi) = samples
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let levels: Vec<f64> = if p.log_levels {
        let (a, b) = ((lo.max(1e-3)).ln(), hi.ln());
        (1..16)
            .map(|k| (a + (b - a) * k as f64 / 16.0).exp())
            .collect()
    } else {
        (1..16).map(|k| lo + (hi - lo) * k as f64 / 16.0).collect()
    };
    let mut chart = Chart::lines(p.name, "x", "y", series);
    chart.x.range = Some(p.x);
    chart.y.range = Some(p.y);
    chart.background = contours(&p, &levels, 120);
    chart.marks.push(Mark {
        at: p.start,
        shape: Shape::Ring,
        color: (20, 20, 20),
        label: Some("start".into()),
    });
    // Each path's end, a square in its colour (the curves' colours, in order).
    let colors = descent_chart::colors(chart.series.len());
    for (i, &end) in ends.iter().enumerate() {
        chart.marks.push(Mark {
            at: end,
            shape: Shape::Square,
            color: colors[i],
            label: None,
        });
    }
    // The minimum over the ends that reached it.
    if let Some(m) = p.minimum {
        chart.marks.push(Mark {
            at: m,
            shape: Shape::Star,
            color: (255, 200, 0),
            label: Some(format!("minimum ({}, {})", m.0, m.1)),
        });
    }
    let mut loss = Chart::new(
        "loss along each path",
        Axis::new("step"),
        Axis::new(if f_min.is_some() {
            "f - f(minimum)"
        } else {
            "f"
        })
        .auto(),
    );
    loss.series = losses;
    if let Some(gif) = &args.gif {
        if gif.extension().and_then(|e| e.to_str()) != Some("gif") {
            bail!("invalid --gif {}: name a .gif file", gif.display());
        }
        descent_train::checkpoint::write_atomic(gif, &animate(&chart, p.x, p.y, FRAMES)?)?;
        out!("wrote {} ({FRAMES} frames)", gif.display());
    }
    let figure = Figure::row(vec![chart, loss]);
    let bytes = if ext == "png" {
        figure.png()?
    } else {
        figure.svg().into_bytes()
    };
    descent_train::checkpoint::write_atomic(&args.out, &bytes)?;
    out!("wrote {}", args.out.display());
    Ok(())
}

/// Frames of `--gif`.
const FRAMES: usize = 48;

/// The paths of `chart` advancing: frame `f` of `frames` shows each path up to step
/// `(f / frames)^2` of the longest (more frames early, where paths move most), its head
/// marked; the last frame holds. A looping GIF.
fn animate(chart: &Chart, x: (f64, f64), y: (f64, f64), frames: usize) -> Result<Vec<u8>> {
    let longest = chart
        .series
        .iter()
        .map(|s| s.points.len())
        .max()
        .unwrap_or(1);
    let colors = descent_chart::colors(chart.series.len());
    let mut out = Vec::new();
    let (w, h, _) = chart.rgba(1.0)?;
    let (w16, h16) = (u16::try_from(w)?, u16::try_from(h)?);
    {
        let mut enc = gif::Encoder::new(&mut out, w16, h16, &[])?;
        enc.set_repeat(gif::Repeat::Infinite)?;
        for f in 1..=frames {
            let t = f as f64 / frames as f64;
            let upto = ((longest - 1) as f64 * t * t).round() as usize + 1;
            let mut c = chart.clone();
            c.marks.retain(|m| m.shape != Shape::Square);
            for (s, &color) in c.series.iter_mut().zip(&colors) {
                s.points.truncate(upto);
                if let Some(&head) = s.points.last() {
                    c.marks.push(Mark {
                        at: head,
                        shape: Shape::Square,
                        color,
                        label: None,
                    });
                }
            }
            c.labels.push(descent_chart::Label {
                at: (x.0 + 0.02 * (x.1 - x.0), y.1 - 0.05 * (y.1 - y.0)),
                text: format!("step {}", upto - 1),
            });
            let (fw, fh, mut rgba) = c.rgba(1.0)?;
            if (fw, fh) != (w, h) {
                bail!("frame {f} is {fw}x{fh}, not {w}x{h}");
            }
            let mut frame = gif::Frame::from_rgba_speed(w16, h16, &mut rgba, 20);
            frame.delay = if f == frames { 300 } else { 8 };
            enc.write_frame(&frame)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradients_match_finite_differences() {
        for f in [rosenbrock, beale, saddle, quadratic] {
            for &(x, y) in &[(0.3, -0.7), (1.2, 0.4), (-1.1, 1.3)] {
                let (_, g) = f(x, y);
                let h = 1e-6;
                let nx = (f(x + h, y).0 - f(x - h, y).0) / (2.0 * h);
                let ny = (f(x, y + h).0 - f(x, y - h).0) / (2.0 * h);
                assert!((g[0] - nx).abs() < 1e-4 * (1.0 + nx.abs()), "{g:?} vs {nx}");
                assert!((g[1] - ny).abs() < 1e-4 * (1.0 + ny.abs()), "{g:?} vs {ny}");
            }
        }
    }

    /// `--gif`: every frame the same size, the paths growing from frame to frame, and the
    /// last frame showing each path in its colour.
    #[test]
    fn the_animation_shows_the_paths_advancing() {
        let p = problem(VizFunction::Quadratic);
        let series: Vec<Series> = ["sgd", "adam"]
            .iter()
            .map(|n| Series::new(*n, path(&p, optimizer(n, &p).unwrap(), 60).unwrap()))
            .collect();
        let mut chart = Chart::lines(p.name, "x", "y", series);
        chart.x.range = Some(p.x);
        chart.y.range = Some(p.y);
        let bytes = animate(&chart, p.x, p.y, 6).unwrap();
        let mut opts = gif::DecodeOptions::new();
        opts.set_color_output(gif::ColorOutput::RGBA);
        let mut dec = opts.read_info(std::io::Cursor::new(&bytes)).unwrap();
        let (w, h) = (dec.width(), dec.height());
        let colors = descent_chart::colors(2);
        let mut counts = Vec::new();
        while let Some(frame) = dec.read_next_frame().unwrap() {
            assert_eq!((frame.width, frame.height), (w, h));
            let near = |px: &[u8], c: (u8, u8, u8)| {
                (i32::from(px[0]) - i32::from(c.0)).abs()
                    + (i32::from(px[1]) - i32::from(c.1)).abs()
                    + (i32::from(px[2]) - i32::from(c.2)).abs()
                    < 40
            };
            let per: Vec<usize> = colors
                .iter()
                .map(|&c| frame.buffer.chunks(4).filter(|px| near(px, c)).count())
                .collect();
            counts.push(per);
        }
        assert_eq!(counts.len(), 6);
        for k in 0..2 {
            assert!(
                counts[5][k] > counts[0][k] + 50,
                "path {k} grows: {counts:?}"
            );
        }
    }

    #[test]
    fn a_circle_has_one_closed_contour() {
        let p = Problem {
            name: "bowl",
            f: |x, y| (x * x + y * y, [2.0 * x, 2.0 * y]),
            x: (-2.0, 2.0),
            y: (-2.0, 2.0),
            start: (1.0, 1.0),
            sgd_lr: 0.1,
            adaptive_lr: 0.1,
            steps: 10,
            log_levels: false,
            minimum: Some((0.0, 0.0)),
        };
        let segs = contours(&p, &[1.0], 40);
        assert!(segs.len() > 20);
        for s in &segs {
            for &(x, y) in s {
                assert!(
                    ((x * x + y * y).sqrt() - 1.0).abs() < 0.02,
                    "({x}, {y}) is off the circle"
                );
            }
        }
        // Adam reaches the bowl's bottom.
        let cfg = optimizer("adam", &p).unwrap();
        let end = *path(&p, cfg, 500).unwrap().last().unwrap();
        assert!(end.0.abs() < 0.05 && end.1.abs() < 0.05, "{end:?}");
    }
}
