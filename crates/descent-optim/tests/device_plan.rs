//! The device form of each optimizer's update (`Optimizer::device_plan` run by the reference
//! backend) gives the CPU optimizer's parameters and state bit for bit, over steps whose
//! learning rate changes and parameter groups with their own settings.

use descent_optim::HyperValue;
use descent_optim::{
    AdamConfig, DecayMode, OptimError, Optimizer, OptimizerConfig, ParamGroup, ParamSpec, SgdConfig,
};
use descent_tensor::backend::{Backend, HostBackend, Region, Span, Update};

fn configs() -> Vec<OptimizerConfig> {
    let sgd = SgdConfig::default();
    vec![
        OptimizerConfig::Sgd(sgd),
        OptimizerConfig::Sgd(SgdConfig {
            momentum: 0.9,
            dampening: 0.1,
            weight_decay: 0.01,
            ..sgd
        }),
        OptimizerConfig::Sgd(SgdConfig {
            momentum: 0.8,
            nesterov: true,
            maximize: true,
            ..sgd
        }),
        OptimizerConfig::Adam(AdamConfig {
            weight_decay: 0.05,
            ..AdamConfig::default()
        }),
        OptimizerConfig::Adam(AdamConfig {
            amsgrad: true,
            decay: DecayMode::Decoupled,
            weight_decay: 0.1,
            ..AdamConfig::default()
        }),
        OptimizerConfig::AdamW(AdamConfig {
            lr: 3e-3,
            maximize: true,
            ..AdamConfig::adamw()
        }),
    ]
    .into_iter()
    .chain(others())
    .collect()
}

/// The other rules with a device update: their defaults, and settings that take each branch.
fn others() -> Vec<OptimizerConfig> {
    let by_name = |name: &str, set: &[(&str, HyperValue)]| {
        let mut c = OptimizerConfig::default_for(name).unwrap();
        for (k, v) in set {
            c.set(k, *v).unwrap();
        }
        c
    };
    use HyperValue::{Flag, Num};
    vec![
        by_name("momentum", &[("weight_decay", Num(0.01))]),
        by_name("adagrad", &[]),
        by_name(
            "adagrad",
            &[
                ("lr_decay", Num(0.1)),
                ("initial_accumulator_value", Num(0.5)),
                ("weight_decay", Num(0.02)),
                ("maximize", Flag(true)),
            ],
        ),
        by_name("rmsprop", &[]),
        by_name(
            "rmsprop",
            &[("centered", Flag(true)), ("momentum", Num(0.9))],
        ),
        by_name(
            "rmsprop",
            &[("momentum", Num(0.5)), ("weight_decay", Num(0.01))],
        ),
        by_name(
            "rmsprop",
            &[("eps_inside_sqrt", Flag(true)), ("centered", Flag(true))],
        ),
        by_name(
            "adadelta",
            &[("weight_decay", Num(0.01)), ("maximize", Flag(true))],
        ),
        by_name("adamax", &[]),
        by_name(
            "adamax",
            &[("weight_decay", Num(0.05)), ("maximize", Flag(true))],
        ),
        by_name("lion", &[]),
        by_name(
            "lion",
            &[("weight_decay", Num(0.1)), ("maximize", Flag(true))],
        ),
    ]
}

#[test]
fn device_plan_gives_the_cpu_step_bit_for_bit() {
    let specs = [
        ParamSpec::new("w", &[4, 3]),
        ParamSpec::new("b", &[4]),
        ParamSpec::new("w2", &[5]),
    ];
    let groups = [ParamGroup {
        params: vec!["b".into()],
        lr: Some(0.02),
        weight_decay: Some(0.0),
    }];
    let n: usize = specs.iter().map(|s| s.len()).sum();
    for config in configs() {
        let mut cpu = Optimizer::with_groups(config, &specs, &groups).unwrap();
        let mut dev = Optimizer::with_groups(config, &specs, &groups).unwrap();
        let update = config.device_update().unwrap();
        let k = update.state_buffers();
        let mut h = HostBackend::new();
        h.resize(Region::Params, n).unwrap();
        h.resize(Region::Grads, n).unwrap();
        h.resize(Region::State, k * n).unwrap();
        h.fill(Span::new(Region::State, 0, k * n), update.state_init())
            .unwrap();
        h.resize(Region::Hyper, Update::HYPER).unwrap();
        let mut p: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        h.write(Span::new(Region::Params, 0, n), &p).unwrap();
        for t in 0..6u32 {
            let g: Vec<f32> = (0..n).map(|i| ((i as u32 * 7 + t) as f32).cos()).collect();
            let lr = 0.01 / (1.0 + t as f32);
            cpu.set_lr(lr);
            dev.set_lr(lr);
            cpu.step(&mut p, &g).unwrap();
            h.write(Span::new(Region::Grads, 0, n), &g).unwrap();
            for group in dev.device_plan().unwrap() {
                let hy = Span::new(Region::Hyper, 0, Update::HYPER);
                h.write(hy, &group.hyper).unwrap();
                for r in &group.ranges {
                    let len = r.len();
                    let ps = Span::new(Region::Params, r.start, len);
                    let gs = Span::new(Region::Grads, r.start, len);
                    let st = Span::new(Region::State, r.start, len);
                    h.update(&group.update, ps, gs, st, n, hy).unwrap();
                }
            }
            dev.fused_step_done();
            let got = h.read(Span::new(Region::Params, 0, n)).unwrap();
            assert_eq!(got, p, "{config:?} step {}", t + 1);
        }
        // The state, laid out as the optimizer's own (buffer after buffer).
        let state = h.read(Span::new(Region::State, 0, k * n)).unwrap();
        let saved = cpu.state();
        for (b, name) in config
            .buffer_names()
            .iter()
            .filter(|s| !s.is_empty())
            .enumerate()
        {
            for (spec, off) in specs.iter().zip([0, 12, 16]) {
                let want = &saved.params[&spec.name].buffers[*name];
                let got = &state[b * n + off..b * n + off + spec.len()];
                assert_eq!(got, &want[..], "{config:?} {name} of {}", spec.name);
            }
        }
    }
}

#[test]
fn optimizers_without_a_device_update_say_which_have_one() {
    let config = OptimizerConfig::default_for("lamb").unwrap();
    let e = Optimizer::flat(config, 3)
        .unwrap()
        .device_plan()
        .unwrap_err();
    assert!(matches!(e, OptimError::NoDeviceUpdate("lamb")), "{e:?}");
    assert!(e.to_string().contains("sgd, momentum, adagrad"), "{e}");
}
