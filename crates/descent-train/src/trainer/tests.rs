//! The training loop on a toy problem: logs, stopping rules, resume, schedules, clipping.

use std::sync::atomic::Ordering;

use super::*;
use descent_data::{parse_idx, Normalize};
use descent_optim::schedule::Schedule;
use descent_optim::{HyperValue, OptimizerConfig, SgdConfig};

/// A small learnable problem: class = which quarter of the 16 pixels is brightest.
fn toy(n: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut img = vec![0, 0, 8, 2];
    img.extend((n as u32).to_be_bytes());
    img.extend(16u32.to_be_bytes());
    let mut lab = vec![0, 0, 8, 1];
    lab.extend((n as u32).to_be_bytes());
    for _ in 0..n {
        let c = rng.below(4) as usize;
        for p in 0..16 {
            let base = if p / 4 == c { 150 } else { 0 };
            img.push((base + rng.below(100)) as u8);
        }
        lab.push(c as u8);
    }
    Dataset::new(
        &parse_idx(&img, "x").unwrap(),
        &parse_idx(&lab, "y").unwrap(),
        Normalize::default(),
        4,
    )
    .unwrap()
}

fn sgd(lr: f32, momentum: f32) -> OptimizerConfig {
    OptimizerConfig::Sgd(SgdConfig {
        lr,
        momentum,
        ..SgdConfig::default()
    })
}

/// An MLP from `inputs` features through `hidden` units to the toy problem's 4 classes.
fn mlp(inputs: usize, hidden: usize, dropout: f32) -> Model {
    Model::mlp(inputs, &[hidden], 4, descent_nn::Activation::Relu, dropout).unwrap()
}

fn cfg() -> TrainConfig {
    TrainConfig {
        optimizer: sgd(0.1, 0.0),
        batch_size: 16,
        epochs: 3,
        log_every: 10,
        threads: 2,
        eval_batch: 64,
        ..TrainConfig::default()
    }
}

#[test]
fn learns_and_logs_like_the_seed() {
    let (train, test) = (toy(1000, 1), toy(200, 2));
    let mut t = Trainer::new(mlp(16, 32, 0.0), &cfg()).unwrap();
    let mut logs = Vec::new();
    let reports = t
        .run(&train, &test, |e| {
            if let Event::Log { epoch, batch, .. } = e {
                logs.push((epoch, batch))
            }
        })
        .unwrap();
    // 1000 / 16 = 63 batches (the last of 8 kept): logs at 10, 20, ..., 60 each epoch.
    assert_eq!(logs.len(), 18);
    assert_eq!(logs[..2], [(1, 10), (1, 20)]);
    assert_eq!(t.steps(), 189);
    assert!(reports[2].test_acc.unwrap() > 95.0, "{reports:?}");
    assert!(reports[2].train_loss < reports[0].train_loss);
}

/// Momentum takes the gradient-buffer path (plain SGD is fused): it learns as well.
#[test]
fn the_unfused_optimizer_path_learns() {
    let (train, test) = (toy(1000, 1), toy(200, 2));
    let mut t = Trainer::new(
        mlp(16, 32, 0.0),
        &TrainConfig {
            optimizer: sgd(0.01, 0.9),
            ..cfg()
        },
    )
    .unwrap();
    let reports = t.run(&train, &test, |_| {}).unwrap();
    assert!(reports[2].test_acc.unwrap() > 95.0, "{reports:?}");
}

#[test]
fn same_seed_and_threads_repeat_exactly() {
    let (train, test) = (toy(500, 3), toy(100, 4));
    let run = |seed| {
        let mut t = Trainer::new(mlp(16, 32, 0.0), &TrainConfig { seed, ..cfg() }).unwrap();
        let mut events = Vec::new();
        t.run(&train, &test, |e| events.push(format!("{e:?}")))
            .unwrap();
        (
            t.params().to_vec(),
            events
                .into_iter()
                .filter(|e| e.starts_with("Log"))
                .collect::<Vec<_>>(),
        )
    };
    let (a, la) = run(5);
    let (b, lb) = run(5);
    assert_eq!(a, b);
    assert_eq!(la, lb);
    assert_ne!(run(6).0, a);
}

#[test]
fn divergence_stops_with_the_step_and_a_hint() {
    let (train, test) = (toy(500, 3), toy(100, 4));
    let mut t = Trainer::new(
        mlp(16, 32, 0.0),
        &TrainConfig {
            optimizer: sgd(1e30, 0.0),
            ..cfg()
        },
    )
    .unwrap();
    let e = t.run(&train, &test, |_| {}).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, TrainError::Diverged { .. }), "{msg}");
    assert!(
        msg.contains("lower the learning rate") && msg.contains("epoch 1"),
        "{msg}"
    );
}

#[test]
fn every_optimizer_trains_the_toy_problem() {
    let (train, test) = (toy(1000, 1), toy(200, 2));
    for name in descent_optim::OPTIMIZER_NAMES {
        let mut optimizer = OptimizerConfig::default_for(name).unwrap();
        let lr = match name {
            "gd" => 0.5,
            "sgd" | "momentum" | "adadelta" => optimizer.lr() as f64 * 10.0,
            "lion" => 0.003,
            _ => optimizer.lr() as f64 * 3.0,
        };
        optimizer.set("lr", HyperValue::Num(lr)).unwrap();
        let c = TrainConfig {
            optimizer,
            epochs: if name == "gd" { 30 } else { 3 },
            ..cfg()
        };
        let mut t = Trainer::new(mlp(16, 32, 0.0), &c).unwrap();
        let reports = t.run(&train, &test, |_| {}).unwrap();
        let last = reports.last().unwrap();
        assert!(last.test_acc.unwrap() > 90.0, "{name}: {last:?}");
        let steps = if name == "gd" { 30 } else { 3 * 63 };
        assert_eq!(t.steps(), steps, "{name}");
    }
}

#[test]
fn full_batch_descent_stops_at_the_gradient_tolerance() {
    let (train, test) = (toy(500, 3), toy(100, 4));
    let c = TrainConfig {
        optimizer: OptimizerConfig::Gd(SgdConfig {
            lr: 0.5,
            ..SgdConfig::default()
        }),
        grad_tol: Some(0.05),
        epochs: 500,
        ..cfg()
    };
    let mut t = Trainer::new(mlp(16, 32, 0.0), &c).unwrap();
    let summary = t.run_split(&train, None, &test, |_| {}).unwrap();
    let StopReason::Converged { grad_norm } = summary.stop else {
        panic!("converged before 500 epochs: {:?}", summary.stop);
    };
    let epoch = summary.epochs.len();
    assert!(grad_norm < 0.05 && epoch < 500);
    assert_eq!(t.steps() as usize, epoch - 1, "no step after converging");
}

#[test]
fn max_steps_stops_mid_epoch_and_target_loss_after_the_epoch() {
    let (train, test) = (toy(500, 3), toy(100, 4));
    let c = TrainConfig {
        max_steps: Some(40),
        ..cfg()
    };
    let mut t = Trainer::new(mlp(16, 32, 0.0), &c).unwrap();
    let s = t.run_split(&train, None, &test, |_| {}).unwrap();
    // 32 batches per epoch: the second epoch stops after 8 steps.
    assert_eq!((t.steps(), s.epochs.len()), (40, 2));
    assert_eq!(s.stop, StopReason::MaxSteps(40));
    let c = TrainConfig {
        target_loss: Some(0.5),
        epochs: 50,
        ..cfg()
    };
    let mut t = Trainer::new(mlp(16, 32, 0.0), &c).unwrap();
    let s = t.run_split(&train, None, &test, |_| {}).unwrap();
    let last = s.epochs.last().unwrap();
    assert!(matches!(s.stop, StopReason::TargetLoss { .. }) && last.train_loss <= 0.5);
    assert!(s.epochs[..s.epochs.len() - 1]
        .iter()
        .all(|r| r.train_loss > 0.5));
}

#[test]
fn early_stopping_restores_the_best_validation_weights() {
    let (mut train, test) = (toy(600, 3), toy(100, 4));
    let val = train.split_off_random(100, 9).unwrap();
    // A rate that makes validation loss wander, so that it stops improving.
    let c = TrainConfig {
        optimizer: sgd(0.8, 0.9),
        early_stop: Some(crate::EarlyStop {
            monitor: crate::Monitor::ValLoss,
            patience: 2,
            min_delta: 0.0,
        }),
        val_only: true,
        epochs: 40,
        ..cfg()
    };
    let mut t = Trainer::new(mlp(16, 32, 0.0), &c).unwrap();
    let s = t.run_split(&train, Some(&val), &test, |_| {}).unwrap();
    let StopReason::EarlyStopping {
        best_epoch, best, ..
    } = s.stop
    else {
        panic!("should stop early: {:?}", s.stop);
    };
    let best_seen = s
        .epochs
        .iter()
        .map(|r| r.val.unwrap().loss)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(best, best_seen);
    assert_eq!(s.kept_epoch, best_epoch);
    assert_eq!(
        s.epochs.len(),
        best_epoch + 3,
        "patience 2: three epochs without improvement"
    );
    // The weights held now are the best epoch's: their validation loss is the best one.
    let now = Metrics::from(t.evaluate(&val).unwrap());
    assert_eq!(now.loss, best);
    assert!(s.epochs.iter().all(|r| r.test_acc.is_none()), "val_only");
    assert!(s.test.acc > 0.0);
}

#[test]
fn an_interrupted_run_resumes_bit_identically_from_its_checkpoint() {
    let (mut train, test) = (toy(600, 3), toy(100, 4));
    let val = train.split_off_random(100, 9).unwrap();
    let c = TrainConfig {
        optimizer: OptimizerConfig::default_for("adam").unwrap(),
        schedule: Schedule::warmup_then(
            10,
            Schedule::Cosine {
                t_max: 90,
                eta_min: 0.0,
            },
        ),
        early_stop: Some(crate::EarlyStop {
            monitor: crate::Monitor::ValAcc,
            patience: 10,
            min_delta: 0.0,
        }),
        epochs: 3,
        ..cfg()
    };
    let mut whole = Trainer::new(mlp(16, 32, 0.0), &c).unwrap();
    let want = whole.run_split(&train, Some(&val), &test, |_| {}).unwrap();

    // Interrupt in epoch 2 after batch 10, save, and finish in a fresh trainer.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    let flag = Arc::new(AtomicBool::new(false));
    let mut first = Trainer::new(mlp(16, 32, 0.0), &c).unwrap();
    first.set_interrupt(flag.clone());
    let f2 = flag.clone();
    let stopped = first
        .run_split(&train, Some(&val), &test, |e| {
            if let Event::Progress {
                epoch: 2,
                batch: 10,
                ..
            } = e
            {
                f2.store(true, Ordering::SeqCst);
            }
        })
        .unwrap();
    assert_eq!(
        stopped.stop,
        StopReason::Interrupted {
            epoch: 2,
            batch: 10
        }
    );
    first.save_checkpoint(&path).unwrap();
    let mut second = Trainer::new(mlp(16, 32, 0.0), &c).unwrap();
    second.load_checkpoint(&path).unwrap();
    let got = second.run_split(&train, Some(&val), &test, |_| {}).unwrap();
    assert!(
        whole
            .params()
            .iter()
            .zip(second.params())
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "the resumed run's weights differ"
    );
    assert_eq!(want.stop, got.stop);
    let strip = |r: &EpochReport| EpochReport {
        seconds: 0.0,
        data_wait: 0.0,
        ..r.clone()
    };
    assert_eq!(
        want.epochs.iter().map(strip).collect::<Vec<_>>(),
        got.epochs.iter().map(strip).collect::<Vec<_>>()
    );
    assert_eq!(whole.optimizer().state(), second.optimizer().state());

    // Checkpoints of another model, or damaged ones, are refused and change nothing.
    let mut wrong = Trainer::new(mlp(16, 16, 0.0), &c).unwrap();
    let before = wrong.params().to_vec();
    let e = wrong.load_checkpoint(&path).unwrap_err().to_string();
    assert!(
        e.contains("model.fc1.weight") && e.contains("[32, 16]"),
        "{e}"
    );
    assert_eq!(wrong.params(), &before[..]);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = Trainer::new(mlp(16, 32, 0.0), &c)
        .unwrap()
        .load_checkpoint(&path)
        .unwrap_err();
    assert!(
        e.to_string().contains("not a readable safetensors file"),
        "{e}"
    );
    let sgd_cfg = TrainConfig {
        optimizer: sgd(0.1, 0.9),
        ..c.clone()
    };
    let mut t = Trainer::new(mlp(16, 32, 0.0), &sgd_cfg).unwrap();
    first.save_checkpoint(&path).unwrap();
    let e = t.load_checkpoint(&path).unwrap_err().to_string();
    assert!(e.contains("saved by `adam`"), "{e}");
}

#[test]
fn dropout_and_l1_train_and_resume_identically() {
    let (train, test) = (toy(600, 3), toy(100, 4));
    let c = TrainConfig {
        l1: 1e-4,
        optimizer: sgd(0.1, 0.9),
        epochs: 2,
        ..cfg()
    };
    let mut whole = Trainer::new(mlp(16, 32, 0.3), &c).unwrap();
    let s = whole.run_split(&train, None, &test, |_| {}).unwrap();
    assert!(s.test.acc > 90.0, "{s:?}");
    let plain = TrainConfig {
        l1: 0.0,
        ..c.clone()
    };
    let mut other = Trainer::new(mlp(16, 32, 0.0), &plain).unwrap();
    other.run_split(&train, None, &test, |_| {}).unwrap();
    assert_ne!(
        whole.params(),
        other.params(),
        "dropout and L1 change the run"
    );
    // Interrupted in epoch 2 and resumed: the same masks, the same weights.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.safetensors");
    let flag = Arc::new(AtomicBool::new(false));
    let mut first = Trainer::new(mlp(16, 32, 0.3), &c).unwrap();
    first.set_interrupt(flag.clone());
    first
        .run_split(&train, None, &test, |e| {
            if let Event::Progress {
                epoch: 2, batch: 5, ..
            } = e
            {
                flag.store(true, Ordering::SeqCst);
            }
        })
        .unwrap();
    first.save_checkpoint(&path).unwrap();
    let mut second = Trainer::new(mlp(16, 32, 0.3), &c).unwrap();
    second.load_checkpoint(&path).unwrap();
    second.run_split(&train, None, &test, |_| {}).unwrap();
    assert_eq!(whole.params(), second.params());
}

#[test]
fn validation_rules_need_a_validation_set() {
    let (train, test) = (toy(100, 3), toy(50, 4));
    let c = TrainConfig {
        val_only: true,
        ..cfg()
    };
    let e = Trainer::new(mlp(16, 32, 0.0), &c)
        .unwrap()
        .run_split(&train, None, &test, |_| {})
        .unwrap_err();
    assert!(e.to_string().contains("`val_split`"), "{e}");
}

#[test]
fn the_schedule_sets_the_rate_of_every_step() {
    let (train, test) = (toy(320, 3), toy(100, 4));
    let schedule = Schedule::warmup_then(
        5,
        Schedule::Cosine {
            t_max: 15,
            eta_min: 0.0,
        },
    );
    let c = TrainConfig {
        schedule: schedule.clone(),
        epochs: 1,
        ..cfg()
    };
    // 320 / 16 = 20 steps: the last (step 19) used the schedule's rate of step 19.
    let mut t = Trainer::new(mlp(16, 32, 0.0), &c).unwrap();
    t.run(&train, &test, |_| {}).unwrap();
    assert_eq!(t.steps(), 20);
    assert_eq!(t.optimizer().lr(), schedule.lr(19, 0.1) as f32);
}

#[test]
fn one_cycle_cycles_adams_beta1() {
    let (train, test) = (toy(320, 3), toy(100, 4));
    let schedule = Schedule::one_cycle(20);
    let c = TrainConfig {
        optimizer: OptimizerConfig::default_for("adam").unwrap(),
        schedule: schedule.clone(),
        epochs: 1,
        ..cfg()
    };
    let mut t = Trainer::new(mlp(16, 32, 0.0), &c).unwrap();
    t.run(&train, &test, |_| {}).unwrap();
    // The last of 20 steps ran with the schedule's momentum and rate of step 19.
    let beta1 = t.optimizer().config().momentum().unwrap();
    assert_eq!(beta1, schedule.momentum(19).unwrap() as f32);
    assert_eq!(t.optimizer().lr(), schedule.lr(19, 1e-3f32 as f64) as f32);
    assert!(
        beta1 > 0.9,
        "momentum rises again as the rate falls: {beta1}"
    );
}

#[test]
fn clipping_keeps_training_and_a_nonfinite_norm_can_stop_it() {
    let (train, test) = (toy(500, 3), toy(100, 4));
    let c = TrainConfig {
        clip_norm: Some(0.5),
        clip_value: Some(0.1),
        ..cfg()
    };
    let reports = Trainer::new(mlp(16, 32, 0.0), &c)
        .unwrap()
        .run(&train, &test, |_| {})
        .unwrap();
    assert!(reports[2].test_acc.unwrap() > 90.0, "{reports:?}");
    let c = TrainConfig {
        optimizer: sgd(1e30, 0.0),
        clip_norm: Some(1.0),
        clip_error_nonfinite: true,
        ..cfg()
    };
    let e = Trainer::new(mlp(16, 32, 0.0), &c)
        .unwrap()
        .run(&train, &test, |_| {})
        .unwrap_err();
    assert!(
        matches!(
            e,
            TrainError::NonFiniteGradient { .. } | TrainError::Diverged { .. }
        ),
        "{e}"
    );
}

#[test]
fn data_that_does_not_fit_the_model_is_refused() {
    let mut t = Trainer::new(mlp(8, 32, 0.0), &cfg()).unwrap();
    let d = toy(10, 1);
    assert!(matches!(t.run(&d, &d, |_| {}), Err(TrainError::Data(_))));
}

/// A text of repeating phrases for a tiny GPT: windows of 8 characters.
fn phrases() -> (descent_data::TextCorpus, Dataset, Dataset) {
    let text = "the cat sat on the mat. a dog ran in the fog. ".repeat(40);
    let c =
        descent_data::TextCorpus::from_bytes(text.as_bytes(), descent_data::TokenKind::Chars, "t")
            .unwrap();
    let (train, val) = c.split(0.9);
    let tw = c.windows(train, 8).unwrap();
    let vw = c.sampled_windows(val, 8, 40, 1).unwrap();
    (c, tw, vw)
}

fn tiny_gpt(vocab: usize) -> Model {
    descent_nn::ModelSpec::gpt(
        vocab,
        descent_nn::GptSize {
            layers: 1,
            heads: 2,
            width: 16,
            block: 8,
        },
    )
    .build()
    .unwrap()
}

fn adamw() -> OptimizerConfig {
    let mut o = OptimizerConfig::default_for("adamw").unwrap();
    o.set("lr", HyperValue::Num(1e-2)).unwrap();
    o
}

/// A GPT learns a text from its windows (a target per position), and evaluates every few
/// steps on held-out windows.
#[test]
fn a_gpt_learns_windows_of_text_and_evaluates_by_step() {
    let (c, train, val) = phrases();
    let cfg = TrainConfig {
        optimizer: adamw(),
        batch_size: 16,
        epochs: 3,
        max_steps: Some(150),
        eval_every: Some(50),
        log_every: 0,
        threads: 2,
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(tiny_gpt(c.vocab.len()), &cfg).unwrap();
    let mut evals = Vec::new();
    let summary = t
        .run_split(&train, None, &val, |e| {
            if let Event::StepEval { step, eval, .. } = e {
                evals.push((step, eval.loss));
            }
        })
        .unwrap();
    assert_eq!(summary.stop, StopReason::MaxSteps(150));
    assert_eq!(
        evals.iter().map(|e| e.0).collect::<Vec<_>>(),
        [50, 100, 150]
    );
    // The phrases repeat: well under a third of a uniform guess's ln(vocab), and falling.
    assert!(evals[2].1 < (c.vocab.len() as f64).ln() / 3.0, "{evals:?}");
    assert!(evals[2].1 < evals[0].1, "{evals:?}");
    assert!(summary.test.acc > 70.0, "{:?}", summary.test);
}

/// Four batches of 8 summed into a step give the weights of one batch of 32: the same
/// examples, the mean over the 32 (SGD with momentum, clipping, 12 steps). (Adam's first
/// steps move a weight by about the learning rate whatever the size of its gradient, so a
/// gradient that is zero up to rounding moves it by the sign of the rounding: it cannot show
/// equality to 1e-5.)
#[test]
fn gradient_accumulation_matches_a_larger_batch() {
    let (c, train, val) = phrases();
    let run = |batch: usize, accum: usize| {
        let cfg = TrainConfig {
            optimizer: sgd(0.1, 0.9),
            batch_size: batch,
            grad_accum: accum,
            clip_norm: Some(1.0),
            epochs: 1,
            max_steps: Some(12),
            log_every: 0,
            threads: 2,
            ..TrainConfig::default()
        };
        let mut t = Trainer::new(tiny_gpt(c.vocab.len()), &cfg).unwrap();
        t.run_split(&train, None, &val, |_| {}).unwrap();
        assert_eq!(t.steps(), 12);
        t.params().to_vec()
    };
    let (big, small) = (run(32, 1), run(8, 4));
    let diff: f64 = big
        .iter()
        .zip(&small)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let norm: f64 = big.iter().map(|a| (*a as f64).powi(2)).sum();
    let rel = (diff / norm).sqrt();
    assert!(rel < 1e-5, "relative L2 {rel:.2e}");
    assert!(rel > 0.0 || big == small);
    let start = tiny_gpt(c.vocab.len()).init_params(&mut Rng::new(0));
    assert_ne!(start, big, "it trained");
}

/// The memory report counts what the trainer holds (AdamW: two moments per parameter; plain
/// SGD: no gradient buffer), and recomputation trains to the same weights bit for bit while
/// holding less than half the activations of two blocks; a model without residual blocks
/// refuses it.
#[test]
fn memory_report_and_recomputation() {
    let (c, train, val) = phrases();
    let two_blocks = || {
        descent_nn::ModelSpec::gpt(
            c.vocab.len(),
            descent_nn::GptSize {
                layers: 2,
                heads: 2,
                width: 16,
                block: 8,
            },
        )
        .build()
        .unwrap()
    };
    let run = |recompute: bool| {
        let cfg = TrainConfig {
            optimizer: adamw(),
            batch_size: 16,
            epochs: 1,
            max_steps: Some(5),
            log_every: 0,
            threads: 2,
            recompute,
            ..TrainConfig::default()
        };
        let mut t = Trainer::new(two_blocks(), &cfg).unwrap();
        let m = t.memory();
        t.run_split(&train, None, &val, |_| {}).unwrap();
        (m, t.params().to_vec())
    };
    let (plain, p0) = run(false);
    let (less, p1) = run(true);
    let n = two_blocks().param_count() * 4;
    assert_eq!((plain.params, plain.grads, plain.optimizer), (n, n, 2 * n));
    assert_eq!(plain.total(), 4 * n + plain.activations + plain.eval);
    assert!(
        2 * less.activations <= plain.activations,
        "{} against {}",
        less.activations,
        plain.activations
    );
    assert_eq!(p0, p1, "the same weights");
    let sgd_cfg = TrainConfig {
        optimizer: sgd(0.1, 0.0),
        ..TrainConfig::default()
    };
    let t = Trainer::new(mlp(4, 8, 0.0), &sgd_cfg).unwrap();
    assert_eq!((t.memory().grads, t.memory().optimizer), (0, 0));
    let refused = Trainer::new(
        mlp(4, 8, 0.0),
        &TrainConfig {
            recompute: true,
            ..TrainConfig::default()
        },
    );
    assert!(
        matches!(refused, Err(TrainError::Setting { ref name, .. }) if name == "recompute"),
        "{:?}",
        refused.err()
    );
}

/// SGD's learning rate that blows the toy MLP's loss past a thousandfold within ten batches
/// (1000 does too; at 100 the median stays under the factor).
const LR_TOO_LARGE: f32 = 10000.0;

#[test]
fn a_loss_far_above_its_start_stops_or_warns_and_a_bad_start_is_named() {
    let (train, test) = (toy(500, 3), toy(100, 4));
    let diverging = |divergence| TrainConfig {
        optimizer: sgd(LR_TOO_LARGE, 0.0),
        divergence,
        epochs: 1,
        ..cfg()
    };
    let mut t = Trainer::new(mlp(16, 32, 0.0), &diverging(crate::Divergence::Stop)).unwrap();
    let e = t.run(&train, &test, |_| {}).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, TrainError::LossRose { .. }), "{msg}");
    assert!(
        msg.contains(&format!("sgd's learning rate {LR_TOO_LARGE} is too large")),
        "{msg}"
    );
    // Warned once, and the run goes on to its end.
    let mut t = Trainer::new(mlp(16, 32, 0.0), &diverging(crate::Divergence::Warn)).unwrap();
    let mut warnings = 0;
    let run = t.run(&train, &test, |e| {
        if let Event::Diverging { diagnosis } = e {
            assert!(diagnosis.contains("rose from"), "{diagnosis}");
            warnings += 1;
        }
    });
    assert!(run.is_ok() || matches!(run, Err(TrainError::Diverged { .. })));
    assert_eq!(warnings, 1);
    // The same run without the watch says nothing.
    let mut t = Trainer::new(mlp(16, 32, 0.0), &diverging(crate::Divergence::Off)).unwrap();
    let mut events = 0;
    let _ = t.run(&train, &test, |e| {
        events += matches!(e, Event::Diverging { .. }) as usize
    });
    assert_eq!(events, 0);
    // The default settings never fire on the toy problem.
    let mut t = Trainer::new(mlp(16, 32, 0.0), &cfg()).unwrap();
    t.run(&train, &test, |_| {}).unwrap();

    // Weights that are not finite: the first batch's loss is NaN before any update.
    let mut t = Trainer::new(mlp(16, 32, 0.0), &cfg()).unwrap();
    let mut p = t.params().to_vec();
    // The output layer's last bias: a NaN in the first layer could vanish in a ReLU.
    *p.last_mut().unwrap() = f32::NAN;
    t.set_params(&p).unwrap();
    let e = t.run(&train, &test, |_| {}).unwrap_err();
    assert!(matches!(e, TrainError::BadStart { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("the start is bad, not the learning rate"),
        "{e}"
    );
}

#[test]
fn a_resumed_position_past_the_end_of_an_epoch_is_refused() {
    let (train, test) = (toy(100, 3), toy(50, 4));
    let mut t = Trainer::new(mlp(16, 8, 0.0), &cfg()).unwrap();
    // 100 examples in batches of 16: 7 batches an epoch.
    t.pos = LoopState {
        epoch: 1,
        batch: 8,
        ..LoopState::default()
    };
    let e = t.run(&train, &test, |_| {}).unwrap_err().to_string();
    assert!(
        e.contains("epoch 1, batch 8") && e.contains("has 7 batches"),
        "{e}"
    );
    t.pos.batch = 7;
    t.run(&train, &test, |_| {}).unwrap();
}

/// Every optimizer step sends one `Event::Step`: steps counted from 1, the mean of its
/// batches' losses, the rate it used, the gradient's norm where measured and held (not under
/// fused plain SGD), and accumulation's steps of several batches.
#[test]
fn each_step_is_reported_with_its_loss_rate_and_gradient_norm() {
    let (train, test) = (toy(320, 1), toy(64, 2));
    let run = |cfg: &TrainConfig, measure: bool| {
        let mut t = Trainer::new(mlp(16, 8, 0.0), cfg).unwrap();
        t.measure_grad_norm(measure);
        let (mut steps, mut logs) = (Vec::new(), Vec::new());
        t.run(&train, &test, |e| match e {
            Event::Step {
                step,
                epoch,
                loss,
                lr,
                grad_norm,
                seconds,
                ..
            } => steps.push((step, epoch, loss, lr, grad_norm, seconds)),
            Event::Log { loss, .. } => logs.push(loss),
            _ => {}
        })
        .unwrap();
        (steps, logs)
    };
    // 320 examples in batches of 16: 20 steps an epoch, 2 epochs; a log line per step.
    let mut c = TrainConfig {
        epochs: 2,
        log_every: 1,
        schedule: Schedule::Step {
            step_size: 10,
            gamma: 0.5,
        },
        ..cfg()
    };
    let (steps, logs) = run(&c, true);
    assert_eq!(steps.len(), 40);
    for (i, s) in steps.iter().enumerate() {
        assert_eq!((s.0, s.1), (i as u64 + 1, i / 20 + 1));
        assert_eq!(s.2, logs[i], "the step's loss is its batch's");
        let want = 0.1 * 0.5f32.powi(i as i32 / 10);
        assert!(
            (s.3 - want).abs() < 1e-7,
            "step {}: lr {} not {want}",
            s.0,
            s.3
        );
        assert!(s.5 > 0.0);
    }
    assert!(
        steps.iter().all(|s| s.4.is_none()),
        "fused SGD holds no gradient"
    );

    c.clip_norm = Some(1e6);
    let (clipped, _) = run(&c, true);
    assert!(clipped
        .iter()
        .all(|s| s.4.is_some_and(|n| n > 0.0 && n.is_finite())));
    let (unmeasured, _) = run(&c, false);
    assert!(unmeasured.iter().all(|s| s.4.is_none()));
    // The norm clipping computes is the one reported, before clipping: the first step's (same
    // weights) is the norm a step without norm clipping measures itself, also where it clips.
    let own = run(
        &TrainConfig {
            clip_norm: None,
            clip_value: Some(1e6),
            ..c.clone()
        },
        true,
    )
    .0[0]
        .4
        .unwrap();
    assert_eq!(clipped[0].4, Some(own));
    let tight = run(
        &TrainConfig {
            clip_norm: Some(own / 4.0),
            ..c.clone()
        },
        true,
    )
    .0;
    assert_eq!(tight[0].4, Some(own), "the norm before clipping");
    assert_ne!(tight[1].4, clipped[1].4, "the clipped step moved less");

    c.grad_accum = 4;
    c.log_every = 4;
    let (accum, logs) = run(&c, true);
    assert_eq!(accum.len(), 10, "20 batches in steps of 4, 2 epochs");
    for (s, l) in accum.iter().zip(&logs) {
        assert!(
            (s.2 - l).abs() < 1e-12,
            "a step's loss is the mean of its 4 batches"
        );
    }
}

/// `Event::Tensors` after each epoch's report: every trainable tensor by name, the weights as
/// they are then, and the last step's gradient where one is held.
#[test]
fn epochs_end_with_tensor_snapshots_when_asked() {
    let (train, test) = (toy(160, 1), toy(32, 2));
    let run = |cfg: &TrainConfig| {
        let mut t = Trainer::new(mlp(16, 8, 0.0), cfg).unwrap();
        t.snapshot_tensors(true);
        let mut got = Vec::new();
        let mut order = Vec::new();
        t.run(&train, &test, |e| match e {
            Event::Tensors {
                step,
                epoch,
                tensors,
            } => {
                order.push("tensors");
                got.push((step, epoch, tensors));
            }
            Event::EpochEnd(_) => order.push("epoch"),
            _ => {}
        })
        .unwrap();
        assert_eq!(order, ["epoch", "tensors", "epoch", "tensors"]);
        (got, t.params().to_vec(), t.net().layout().clone())
    };
    let c = TrainConfig { epochs: 2, ..cfg() };
    let (got, params, layout) = run(&c);
    assert_eq!((got[0].0, got[0].1, got[1].0, got[1].1), (10, 1, 20, 2));
    let names: Vec<&str> = got[1].2.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
    for t in &got[1].2 {
        let v = layout.get(&t.name).unwrap();
        assert_eq!(t.weights, params[v.offset..v.offset + v.len()]);
        assert!(t.grad.is_none(), "fused SGD holds no gradient");
    }
    assert_ne!(got[0].2[0].weights, got[1].2[0].weights);
    let adam = TrainConfig {
        optimizer: adamw(),
        ..c
    };
    let (got, _, _) = run(&adam);
    for t in &got[1].2 {
        let g = t.grad.as_ref().unwrap();
        assert_eq!(g.len(), t.weights.len());
        assert!(g.iter().any(|&x| x != 0.0));
    }
}

/// The device path on the reference backend trains as the CPU engine does: the same batches,
/// the same logged losses and accuracy within rounding, the weights within 1e-5 (SGD fused
/// and with momentum, AdamW), and the host's weights up to date at the end.
#[test]
fn a_backend_trains_like_the_cpu_engine() {
    use descent_optim::AdamConfig;
    use descent_tensor::backend::HostBackend;
    let (train, test) = (toy(300, 1), toy(100, 2));
    for optimizer in [
        sgd(0.1, 0.0),
        sgd(0.05, 0.9),
        OptimizerConfig::AdamW(AdamConfig {
            lr: 3e-3,
            ..AdamConfig::adamw()
        }),
        {
            // Its state starts at 0.5, not 0.
            let mut c = OptimizerConfig::default_for("adagrad").unwrap();
            c.set("initial_accumulator_value", HyperValue::Num(0.5))
                .unwrap();
            c
        },
    ] {
        let c = TrainConfig {
            optimizer,
            epochs: 2,
            ..cfg()
        };
        let run = |device: bool| {
            let mut t = Trainer::new(mlp(16, 24, 0.0), &c).unwrap();
            if device {
                t.set_backend(Box::new(HostBackend::new())).unwrap();
            }
            let mut logs = Vec::new();
            let reports = t
                .run(&train, &test, |e| {
                    if let Event::Log { loss, .. } = e {
                        logs.push(loss)
                    }
                })
                .unwrap();
            (t.params().to_vec(), logs, reports, t.steps())
        };
        let (cpu, cpu_logs, cpu_rep, cpu_steps) = run(false);
        let (dev, dev_logs, dev_rep, dev_steps) = run(true);
        assert_eq!(cpu_steps, dev_steps);
        assert_eq!(cpu_logs.len(), dev_logs.len());
        for (a, b) in cpu_logs.iter().zip(&dev_logs) {
            assert!(
                (a - b).abs() < 1e-5 * a.abs().max(1.0),
                "{optimizer:?}: {a} {b}"
            );
        }
        let num: f64 = cpu
            .iter()
            .zip(&dev)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum();
        let den: f64 = cpu.iter().map(|a| (*a as f64).powi(2)).sum();
        assert!(
            (num / den).sqrt() < 1e-5,
            "{optimizer:?}: {}",
            (num / den).sqrt()
        );
        assert_eq!(cpu_rep[1].test_acc, dev_rep[1].test_acc, "{optimizer:?}");
    }
}

#[test]
fn what_a_backend_cannot_run_yet_is_refused_by_name() {
    use descent_tensor::backend::HostBackend;
    let accum = TrainConfig {
        grad_accum: 2,
        ..cfg()
    };
    let mut t = Trainer::new(mlp(16, 8, 0.0), &accum).unwrap();
    let e = t.set_backend(Box::new(HostBackend::new())).unwrap_err();
    assert!(e.to_string().contains("gradient accumulation"), "{e}");
    let lamb = TrainConfig {
        optimizer: OptimizerConfig::default_for("lamb").unwrap(),
        ..cfg()
    };
    let mut t = Trainer::new(mlp(16, 8, 0.0), &lamb).unwrap();
    let e = t.set_backend(Box::new(HostBackend::new())).unwrap_err();
    assert!(e.to_string().contains("lamb has no device update"), "{e}");
    let mut t = Trainer::new(mlp(16, 8, 0.5), &cfg()).unwrap();
    let e = t.set_backend(Box::new(HostBackend::new())).unwrap_err();
    assert!(e.to_string().contains("Dropout"), "{e}");
}
