//! The CUDA backend against the reference backend: every operation on the same inputs (the
//! optimizer updates bit for bit), a model's training step, and 200 steps of SGD and Adam
//! against the CPU engine. Each test skips, saying so in one line, where there is no GPU.

use descent_cuda::{CudaBackend, CudaError};
use descent_nn::{DeviceProgram, Loss, Model, Targets, Workspace};
use descent_optim::{AdamConfig, Optimizer, OptimizerConfig, ParamSpec, SgdConfig};
use descent_tensor::backend::{Act, Backend, DMat, HostBackend, Region, Span, Update};
use descent_tensor::{Pool, Rng};

fn gpu(test: &str) -> Option<CudaBackend> {
    match CudaBackend::open(0) {
        Ok(g) => Some(g),
        Err(e) if e.no_gpu() => {
            println!("skipped {test}: {e}");
            None
        }
        Err(e) => panic!("a GPU is here but cannot be used: {e}"),
    }
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

fn random(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

/// Both backends with the same regions and values.
fn pair(g: &mut CudaBackend, lens: &[(Region, usize)], seed: u64) -> HostBackend {
    let mut rng = Rng::new(seed);
    let mut h = HostBackend::new();
    for &(r, n) in lens {
        let v = random(&mut rng, n);
        h.resize(r, n).unwrap();
        g.resize(r, n).unwrap();
        h.write(Span::new(r, 0, n), &v).unwrap();
        g.write(Span::new(r, 0, n), &v).unwrap();
    }
    h
}

fn whole(r: Region, be: &dyn Backend) -> Span {
    Span::new(r, 0, be.len(r))
}

#[test]
fn missing_devices_are_named() {
    match CudaBackend::open(0) {
        Err(e @ CudaError::Library { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("LD_LIBRARY_PATH") && !msg.contains('\n'),
                "{msg}"
            );
            println!("skipped the GPU half: {msg}");
        }
        Err(e) if e.no_gpu() => println!("skipped: {e}"),
        Err(e) => panic!("{e}"),
        Ok(_) => {
            let e = CudaBackend::open(4096).unwrap_err();
            assert!(
                matches!(e, CudaError::NoDevice { ordinal: 4096, .. }),
                "{e:?}"
            );
            assert!(e.to_string().contains("use cuda:0"), "{e}");
        }
    }
}

#[test]
fn copies_fills_and_products_match_the_reference() {
    let Some(mut g) = gpu("products") else { return };
    let mut h = pair(&mut g, &[(Region::Acts, 4096), (Region::Params, 2048)], 1);
    let acts = whole(Region::Acts, &h);
    assert_eq!(
        g.read(acts).unwrap(),
        h.read(acts).unwrap(),
        "write and read"
    );
    for be in [&mut h as &mut dyn Backend, &mut g] {
        be.fill(Span::new(Region::Acts, 100, 37), 2.5).unwrap();
        be.copy(
            Span::new(Region::Acts, 300, 50),
            Span::new(Region::Params, 7, 50),
        )
        .unwrap();
    }
    assert_eq!(
        g.read(acts).unwrap(),
        h.read(acts).unwrap(),
        "fill and copy"
    );
    // Every transpose pair, a strided C, alpha and beta, and beta 0 over NaN.
    let (m, n, k) = (13, 29, 37);
    for (ta, tb, beta) in [
        (false, false, 0.0),
        (false, true, 1.0),
        (true, false, 0.5),
        (true, true, 0.0),
    ] {
        let a_store = if ta { (k, m) } else { (m, k) };
        let b_store = if tb { (n, k) } else { (k, n) };
        let mut a = DMat::new(Span::new(Region::Params, 0, m * k), a_store.0, a_store.1);
        let mut b = DMat::new(Span::new(Region::Params, 600, n * k), b_store.0, b_store.1);
        if ta {
            a = a.t();
        }
        if tb {
            b = b.t();
        }
        let c = DMat {
            ld: n + 3,
            ..DMat::new(Span::new(Region::Acts, 1000, m * (n + 3)), m, n)
        };
        for be in [&mut h as &mut dyn Backend, &mut g] {
            if beta == 0.0 {
                be.fill(c.span, f32::NAN).unwrap();
            }
            be.gemm(c, a, b, 0.75, beta).unwrap();
        }
        let (hc, gc) = (h.read(c.span).unwrap(), g.read(c.span).unwrap());
        let (hc, gc): (Vec<f32>, Vec<f32>) = hc
            .chunks(n + 3)
            .zip(gc.chunks(n + 3))
            .flat_map(|(x, y)| x[..n].iter().zip(&y[..n]).map(|(a, b)| (*a, *b)))
            .unzip();
        let d = rel_l2(&gc, &hc);
        assert!(d < 1e-6, "gemm ta {ta} tb {tb} beta {beta}: {d}");
    }
}

#[test]
fn element_wise_kernels_match_the_reference() {
    let Some(mut g) = gpu("element-wise") else {
        return;
    };
    let (rows, cols) = (37, 45);
    let n = rows * cols;
    let mut h = pair(
        &mut g,
        &[(Region::Acts, 4 * n), (Region::Params, cols + 5)],
        2,
    );
    let acts = whole(Region::Acts, &h);
    for act in [
        Act::Identity,
        Act::Relu,
        Act::LeakyRelu(0.1),
        Act::Tanh,
        Act::Sigmoid,
    ] {
        let (y, dy) = (Span::new(Region::Acts, 0, n), Span::new(Region::Acts, n, n));
        let bias = Some(Span::new(Region::Params, 5, cols));
        for be in [&mut h as &mut dyn Backend, &mut g] {
            be.bias_act(y, bias, cols, act).unwrap();
            be.act_grad(dy, y, act).unwrap();
            be.col_sum(Span::new(Region::Acts, 2 * n, cols), dy, cols, 0.0)
                .unwrap();
            be.col_sum(Span::new(Region::Acts, 3 * n, cols), y, cols, 0.5)
                .unwrap();
        }
        let (hv, gv) = (h.read(acts).unwrap(), g.read(acts).unwrap());
        // ReLU and identity are exact; tanh and sigmoid differ by expf's last bits.
        let d = rel_l2(&gv, &hv);
        assert!(d < 1e-6, "{act:?}: {d}");
        if matches!(act, Act::Relu | Act::Identity | Act::LeakyRelu(_)) {
            assert_eq!(gv[..2 * n], hv[..2 * n], "{act:?} bit for bit");
        }
    }
}

#[test]
fn softmax_cross_entropy_matches_the_reference() {
    let Some(mut g) = gpu("softmax") else { return };
    for (rows, classes) in [(64, 10), (5, 100), (3, 1)] {
        let n = rows * classes;
        let mut h = pair(&mut g, &[(Region::Acts, 2 * n), (Region::Hyper, 2)], 3);
        let mut rng = Rng::new(4);
        let labels: Vec<f32> = (0..rows)
            .map(|_| rng.below(classes as u64) as f32)
            .collect();
        let (z, dz, st) = (
            Span::new(Region::Acts, 0, n),
            Span::new(Region::Acts, n, n),
            Span::new(Region::Hyper, 0, 2),
        );
        for be in [&mut h as &mut dyn Backend, &mut g] {
            be.resize(Region::Batch, rows).unwrap();
            be.write(Span::new(Region::Batch, 0, rows), &labels)
                .unwrap();
            be.fill(st, 1.0).unwrap();
            let l = Span::new(Region::Batch, 0, rows);
            be.softmax_xent(z, l, dz, classes, 1.0 / rows as f32, st)
                .unwrap();
        }
        let d = rel_l2(&g.read(dz).unwrap(), &h.read(dz).unwrap());
        assert!(d < 1e-6, "{rows}x{classes} gradient: {d}");
        let (gs, hs) = (g.read(st).unwrap(), h.read(st).unwrap());
        assert!(
            (gs[0] - hs[0]).abs() <= 1e-5 * hs[0].abs().max(1.0),
            "{gs:?} {hs:?}"
        );
        assert_eq!(gs[1], hs[1], "{rows}x{classes} correct count");
    }
}

#[test]
fn optimizer_updates_match_the_reference_bit_for_bit() {
    let Some(mut g) = gpu("updates") else { return };
    let rules = [
        Update::Sgd {
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            maximize: false,
        },
        Update::Sgd {
            momentum: 0.9,
            dampening: 0.1,
            weight_decay: 0.01,
            nesterov: false,
            maximize: true,
        },
        Update::Sgd {
            momentum: 0.9,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: true,
            maximize: false,
        },
        Update::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            decoupled: false,
            amsgrad: false,
            maximize: false,
        },
        Update::Adam {
            beta1: 0.8,
            beta2: 0.99,
            eps: 1e-6,
            weight_decay: 0.1,
            decoupled: true,
            amsgrad: true,
            maximize: true,
        },
        Update::Momentum {
            beta: 0.9,
            weight_decay: 0.01,
        },
        Update::Adagrad {
            lr_decay: 0.1,
            eps: 1e-10,
            weight_decay: 0.01,
            initial_accumulator_value: 0.1,
            maximize: true,
        },
        Update::RmsProp {
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.9,
            centered: true,
            eps_inside_sqrt: false,
            maximize: false,
        },
        Update::RmsProp {
            alpha: 0.9,
            eps: 1e-6,
            weight_decay: 0.01,
            momentum: 0.5,
            centered: false,
            eps_inside_sqrt: true,
            maximize: true,
        },
        Update::Adadelta {
            rho: 0.9,
            eps: 1e-6,
            weight_decay: 0.01,
            maximize: false,
        },
        Update::Adamax {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            maximize: true,
        },
        Update::Lion {
            beta1: 0.9,
            beta2: 0.99,
            weight_decay: 0.1,
            maximize: false,
        },
    ];
    let n = 10_007;
    for rule in rules {
        let k = rule.state_buffers();
        let mut h = pair(
            &mut g,
            &[
                (Region::Params, n + 8),
                (Region::Grads, n + 8),
                (Region::State, 3 * (n + 8)),
                (Region::Hyper, Update::HYPER),
            ],
            5,
        );
        // Second moments are not negative.
        let st = whole(Region::State, &h);
        let abs: Vec<f32> = h.read(st).unwrap().iter().map(|v| v.abs()).collect();
        h.write(st, &abs).unwrap();
        g.write(st, &abs).unwrap();
        for t in 1..=4 {
            let hy = rule.hyper(0.01 * t as f32, t);
            let hs = Span::new(Region::Hyper, 0, Update::HYPER);
            for be in [&mut h as &mut dyn Backend, &mut g] {
                be.write(hs, &hy).unwrap();
                let (p, gr) = (
                    Span::new(Region::Params, 3, n),
                    Span::new(Region::Grads, 3, n),
                );
                be.update(&rule, p, gr, Span::new(Region::State, 3, n), n + 8, hs)
                    .unwrap();
            }
        }
        for r in [Region::Params, Region::State] {
            let s = whole(r, &h);
            assert_eq!(
                g.read(s).unwrap(),
                h.read(s).unwrap(),
                "{rule:?} {r:?} ({k} buffers)"
            );
        }
    }
}

fn mlp() -> Model {
    Model::mlp(784, &[512], 10, descent_nn::Activation::Relu, 0.0).unwrap()
}

fn batch(rng: &mut Rng, rows: usize) -> (Vec<f32>, Vec<u32>) {
    let x = (0..rows * 784).map(|_| rng.uniform(0.0, 1.0)).collect();
    let y = (0..rows).map(|_| rng.below(10) as u32).collect();
    (x, y)
}

/// 200 steps on the GPU against 200 on the CPU engine, from the same weights and batches:
/// the weights within 1e-4 relative L2 (the bar).
fn two_hundred_steps(config: OptimizerConfig, what: &str) {
    let Some(mut g) = gpu(what) else { return };
    let m = mlp();
    let loss = Loss::default();
    let cap = 64;
    let mut rng = Rng::new(7);
    let init = m.init_params(&mut rng);
    let n = init.len();
    let specs = [ParamSpec::new("all", &[n])];

    let pool = Pool::new(2).unwrap();
    let mut ws = Workspace::new(&m, cap, 2);
    let mut cpu_p = init.clone();
    let mut grads = vec![0.0; n];
    let mut cpu_opt = Optimizer::new(config, &specs).unwrap();

    let prog = DeviceProgram::new(&m, &loss, cap, "cuda:0").unwrap();
    let mut dev_opt = Optimizer::new(config, &specs).unwrap();
    let k = config.device_update().unwrap().state_buffers();
    for (r, len) in [
        (Region::Params, n),
        (Region::Grads, n),
        (Region::State, k * n),
        (Region::Acts, prog.acts_len()),
        (Region::Batch, prog.batch_len()),
        (Region::Hyper, Update::HYPER + 2),
    ] {
        g.resize(r, len).unwrap();
    }
    g.write(Span::new(Region::Params, 0, n), &init).unwrap();
    let hyper = Span::new(Region::Hyper, 0, Update::HYPER);
    let stats = Span::new(Region::Hyper, Update::HYPER, 2);

    let mut data = Rng::new(8);
    for step in 0..200 {
        let (x, y) = batch(&mut data, cap);
        let t = Targets::Classes(&y);
        m.train_step_grads(&mut cpu_p, &x, t, &loss, &mut grads, &mut ws, &pool)
            .unwrap();
        cpu_opt.step(&mut cpu_p, &grads).unwrap();

        g.write(prog.inputs(cap), &x).unwrap();
        let ids: Vec<f32> = y.iter().map(|&c| c as f32).collect();
        g.write(prog.labels(cap), &ids).unwrap();
        prog.train_step(&m, &mut g, cap, stats).unwrap();
        for group in dev_opt.device_plan().unwrap() {
            g.write(hyper, &group.hyper).unwrap();
            for r in &group.ranges {
                let len = r.len();
                let (p, gr) = (
                    Span::new(Region::Params, r.start, len),
                    Span::new(Region::Grads, r.start, len),
                );
                g.update(
                    &group.update,
                    p,
                    gr,
                    Span::new(Region::State, r.start, len),
                    n,
                    hyper,
                )
                .unwrap();
            }
        }
        dev_opt.fused_step_done();
        if step == 0 {
            let gp = g.read(Span::new(Region::Params, 0, n)).unwrap();
            assert!(rel_l2(&gp, &cpu_p) < 1e-5, "{what}: step 1 already differs");
        }
    }
    let gp = g.read(Span::new(Region::Params, 0, n)).unwrap();
    let d = rel_l2(&gp, &cpu_p);
    println!("{what}: 200 steps, relative L2 to the CPU engine's weights {d:.2e}");
    assert!(d < 1e-4, "{what}: {d}");
    assert!(
        rel_l2(&gp, &init) > 1e-3,
        "{what}: the weights hardly moved"
    );
}

#[test]
fn two_hundred_sgd_steps_match_the_cpu_engine() {
    two_hundred_steps(OptimizerConfig::Sgd(SgdConfig::default()), "sgd");
}

#[test]
fn two_hundred_adam_steps_match_the_cpu_engine() {
    two_hundred_steps(OptimizerConfig::Adam(AdamConfig::default()), "adam");
}
