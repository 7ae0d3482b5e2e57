//! One table of optimizers drives the shared tests: convergence on a quadratic and on
//! Rosenbrock, the state's save/load round trip, and the same input giving the same result on
//! any number of threads.

use descent_optim::{
    HyperValue, Optimizer, OptimizerConfig, OptimizerState, ParamSpec, OPTIMIZER_NAMES,
};

/// A label, an optimizer name, settings that suit small smooth problems, and steps for the
/// quadratic and for Rosenbrock.
type Row = (
    &'static str,
    &'static str,
    &'static [(&'static str, HyperValue)],
    usize,
    usize,
);

/// Every optimizer, some in more than one setting.
const TABLE: &[Row] = {
    use HyperValue::{Flag, Num};
    &[
        ("gd", "gd", &[("lr", Num(0.1))], 300, 20_000),
        ("sgd", "sgd", &[("lr", Num(0.1))], 300, 20_000),
        (
            "sgd_nesterov",
            "sgd",
            &[
                ("lr", Num(0.02)),
                ("momentum", Num(0.9)),
                ("nesterov", Flag(true)),
            ],
            300,
            5_000,
        ),
        ("momentum", "momentum", &[("lr", Num(0.1))], 300, 20_000),
        ("adagrad", "adagrad", &[("lr", Num(0.5))], 500, 20_000),
        ("rmsprop", "rmsprop", &[("lr", Num(0.01))], 1_000, 10_000),
        (
            "rmsprop_centered",
            "rmsprop",
            &[
                ("lr", Num(0.003)),
                ("centered", Flag(true)),
                ("momentum", Num(0.5)),
            ],
            1_000,
            10_000,
        ),
        (
            "seed_adaptive",
            "rmsprop",
            &[("lr", Num(0.01)), ("eps_inside_sqrt", Flag(true))],
            1_000,
            10_000,
        ),
        ("adadelta", "adadelta", &[("lr", Num(10.0))], 2_000, 50_000),
        ("adam", "adam", &[("lr", Num(0.05))], 1_000, 5_000),
        (
            "adam_amsgrad",
            "adam",
            &[("lr", Num(0.05)), ("amsgrad", Flag(true))],
            1_000,
            5_000,
        ),
        (
            "adamw",
            "adamw",
            &[("lr", Num(0.05)), ("weight_decay", Num(0.0))],
            1_000,
            5_000,
        ),
        ("adamax", "adamax", &[("lr", Num(0.05))], 1_000, 5_000),
        ("nadam", "nadam", &[("lr", Num(0.05))], 1_000, 5_000),
        ("radam", "radam", &[("lr", Num(0.05))], 1_000, 30_000),
        ("lion", "lion", &[("lr", Num(0.003))], 2_000, 5_000),
        ("lamb", "lamb", &[("lr", Num(0.02))], 1_000, 20_000),
    ]
};

fn config(name: &str, overrides: &[(&str, HyperValue)]) -> OptimizerConfig {
    let mut c = OptimizerConfig::default_for(name).unwrap();
    for &(k, v) in overrides {
        c.set(k, v).unwrap();
    }
    c.validate().unwrap();
    c
}

#[test]
fn the_table_names_every_optimizer() {
    for name in OPTIMIZER_NAMES {
        assert!(
            TABLE.iter().any(|r| r.1 == name),
            "{name} is not in the table"
        );
    }
}

/// f(x) = 1/2 sum a_i (x_i - c_i)^2 with curvatures from 0.5 to 4.
fn quadratic(x: &[f32], g: &mut [f32]) -> f64 {
    let mut f = 0.0;
    for (i, (x, g)) in x.iter().zip(g.iter_mut()).enumerate() {
        let (a, c) = (0.5 + 0.5 * i as f32, 1.0 - 0.3 * i as f32);
        *g = a * (x - c);
        f += 0.5 * (a * (x - c) * (x - c)) as f64;
    }
    f
}

#[test]
fn every_optimizer_minimizes_a_quadratic() {
    for &(label, name, overrides, steps, _) in TABLE {
        let mut opt = Optimizer::flat(config(name, overrides), 8).unwrap();
        let mut x = vec![2.0f32; 8];
        let mut g = vec![0.0f32; 8];
        let f0 = quadratic(&x, &mut g);
        for _ in 0..steps {
            quadratic(&x, &mut g);
            opt.step(&mut x, &g).unwrap();
        }
        let f = quadratic(&x, &mut g);
        assert!(f < 1e-3 * f0, "{label}: f went from {f0} to {f}");
    }
}

/// Rosenbrock's valley, (1 - x)^2 + 100 (y - x^2)^2, minimum 0 at (1, 1).
fn rosenbrock(p: &[f32], g: &mut [f32]) -> f64 {
    let (x, y) = (p[0] as f64, p[1] as f64);
    g[0] = (-2.0 * (1.0 - x) - 400.0 * x * (y - x * x)) as f32;
    g[1] = (200.0 * (y - x * x)) as f32;
    (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2)
}

#[test]
fn every_optimizer_walks_down_rosenbrocks_valley() {
    let mut failed = vec![];
    for &(label, name, overrides, _, steps) in TABLE {
        // Rosenbrock's curvature reaches ~1000: plain steps need a small rate.
        let mut cfg = config(name, overrides);
        if matches!(name, "gd" | "sgd" | "momentum") {
            cfg.set_lr(if name == "momentum" { 0.01 } else { 0.001 });
        }
        match label {
            "sgd_nesterov" => cfg.set_lr(0.0005),
            // RAdam takes plain momentum steps until its variance estimate settles: with
            // gradients of ~200 that needs a small rate.
            "radam" => cfg.set_lr(0.001),
            // LAMB's step is lr * ||p|| whatever the gradient: it settles within ~lr of the
            // bottom.
            "lamb" => cfg.set_lr(0.002),
            // Adadelta's steps never shrink below ~sqrt(eps) scale, so it rattles in the valley:
            // it gets within 1/100 of the start, not to the bottom.
            "adadelta" => {
                cfg.set_lr(0.3);
                cfg.set("rho", HyperValue::Num(0.99)).unwrap();
            }
            _ => {}
        }
        let mut opt = Optimizer::flat(cfg, 2).unwrap();
        let mut p = vec![-1.2f32, 1.0];
        let mut g = vec![0.0f32; 2];
        let f0 = rosenbrock(&p, &mut g);
        for _ in 0..steps {
            rosenbrock(&p, &mut g);
            opt.step(&mut p, &g).unwrap();
        }
        let f = rosenbrock(&p, &mut g);
        let (fmax, xtol) = if name == "adadelta" {
            (0.25, 0.3)
        } else {
            (0.05, 0.25)
        };
        if !(f < fmax && (p[0] - 1.0).abs() < xtol) {
            failed.push(format!("{label}: f went from {f0} to {f} at {p:?}"));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

/// Gradients that look like a network's: a seeded pseudo-random pattern plus a pull to 0.
fn grads_at(step: u64, params: &[f32], out: &mut [f32]) {
    let mut s = 0x9E37_79B9_7F4A_7C15u64 ^ step;
    for (g, &p) in out.iter_mut().zip(params) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        *g = ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2 + 0.1 * p;
    }
}

fn specs(n: usize) -> Vec<ParamSpec> {
    vec![
        ParamSpec::new("fc1.weight", &[n / 100, 100]),
        ParamSpec::new("fc1.bias", &[17]),
    ]
}

fn run(opt: &mut Optimizer, params: &mut [f32], from: u64, to: u64) {
    let mut g = vec![0.0; params.len()];
    for t in from..to {
        grads_at(t, params, &mut g);
        opt.step(params, &g).unwrap();
    }
}

#[test]
fn saved_state_continues_bit_identically_in_a_fresh_optimizer() {
    let n = 70_000; // more than one parallel piece
    for &(label, name, overrides, _, _) in TABLE {
        let cfg = config(name, overrides);
        let mut a = Optimizer::new(cfg, &specs(n)).unwrap();
        let mut pa: Vec<f32> = (0..n + 17).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
        run(&mut a, &mut pa, 0, 5);
        let saved = serde_json::to_string(&a.state()).unwrap();
        let mut pb = pa.clone();
        run(&mut a, &mut pa, 5, 12);

        let mut b = Optimizer::new(cfg, &specs(n)).unwrap();
        b.load_state(&serde_json::from_str::<OptimizerState>(&saved).unwrap())
            .unwrap();
        assert_eq!(b.steps(), 5, "{label}");
        run(&mut b, &mut pb, 5, 12);
        assert!(
            pa.iter().zip(&pb).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{label}: the resumed run differs"
        );
        assert_eq!(a.state(), b.state(), "{label}");
    }
}

#[test]
fn state_from_another_model_or_optimizer_is_refused_by_name() {
    let cfg = OptimizerConfig::default_for("adam").unwrap();
    let mut a = Optimizer::new(cfg, &specs(1000)).unwrap();
    let mut p = vec![0.5; 1017];
    run(&mut a, &mut p, 0, 2);
    let state = a.state();

    let renamed = [
        ParamSpec::new("fc1.weight", &[10, 100]),
        ParamSpec::new("fc2.bias", &[17]),
    ];
    let err = Optimizer::new(cfg, &renamed)
        .unwrap()
        .load_state(&state)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing `fc2.bias`") && err.contains("unexpected `fc1.bias`"),
        "{err}"
    );

    let reshaped = [
        ParamSpec::new("fc1.weight", &[100, 10]),
        ParamSpec::new("fc1.bias", &[17]),
    ];
    let err = Optimizer::new(cfg, &reshaped)
        .unwrap()
        .load_state(&state)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`fc1.weight` was saved with shape [10, 100]"),
        "{err}"
    );

    let sgd = OptimizerConfig::default_for("sgd").unwrap();
    let err = Optimizer::new(sgd, &specs(1000))
        .unwrap()
        .load_state(&state)
        .unwrap_err()
        .to_string();
    assert!(err.contains("saved by `adam`, not `sgd`"), "{err}");

    let mut ams = cfg;
    ams.set("amsgrad", HyperValue::Flag(true)).unwrap();
    let mut b = Optimizer::new(ams, &specs(1000)).unwrap();
    let before = b.state();
    let err = b.load_state(&state).unwrap_err().to_string();
    assert!(err.contains("no `max_exp_avg_sq`"), "{err}");
    assert_eq!(b.state(), before, "a failed load changes nothing");
}

#[test]
fn same_input_gives_the_same_result_on_any_number_of_threads() {
    let n = 200_000;
    for &(label, name, overrides, _, _) in TABLE {
        let cfg = config(name, overrides);
        let result = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut opt = Optimizer::new(cfg, &specs(n)).unwrap();
            let mut p: Vec<f32> = (0..n + 17).map(|i| (i % 11) as f32 * 0.05).collect();
            pool.install(|| run(&mut opt, &mut p, 0, 4));
            p
        };
        let one = result(1);
        assert_eq!(one, result(1), "{label}: two runs differ");
        assert_eq!(one, result(3), "{label}: 1 and 3 threads differ");
    }
}
