//! `descent compare --data text:FILE`: optimizers raced on a language model, every run from
//! the same initial weights and windows, ranked by validation loss.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use descent_optim::OptimizerConfig;
use descent_train::checkpoint::write_atomic;
use descent_train::{Event, Trainer};

use super::{create_out, race, run_config, threads_per_run};
use crate::cli::{CompareArgs, TrainArgs};
use crate::progress::Lines as _;
use crate::report::write_chart;
use descent_chart::{Chart, Scale, Series};

/// One run: its validation and training loss at each evaluation, and when it got there.
struct Outcome {
    name: String,
    lr: f32,
    /// (step, validation loss), the last at the run's end.
    val_loss: Vec<(u64, f64)>,
    /// (step, mean training loss since the previous evaluation).
    train_loss: Vec<(u64, f64)>,
    /// Wall-clock seconds from the run's start to each validation loss (evaluations included).
    elapsed: Vec<f64>,
    steps: u64,
}

impl Outcome {
    /// The lowest validation loss and its step.
    fn best(&self) -> (u64, f64) {
        self.val_loss
            .iter()
            .copied()
            .fold((0, f64::INFINITY), |b, x| if x.1 < b.1 { x } else { b })
    }

    fn last(&self) -> f64 {
        self.val_loss.last().map_or(f64::NAN, |v| v.1)
    }

    /// Seconds until the validation loss first reached `target`.
    fn reach(&self, target: f64) -> Option<f64> {
        let i = self.val_loss.iter().position(|&(_, l)| l <= target)?;
        Some(self.elapsed[i])
    }
}

pub fn run(
    args: &CompareArgs,
    base: &TrainArgs,
    path: &Path,
    configs: &[(String, OptimizerConfig)],
) -> Result<()> {
    let corpus = crate::data::read_text(path, base.tokens.into())?;
    let (text, spec) = crate::data::text_run(base, &corpus)?;
    // Steps, not epochs, end a text's runs.
    let mut base = base.clone();
    base.epochs = crate::data::epochs_for_steps(&base, text.train.len());
    let base = &base;
    create_out(args)?;
    let (jobs, threads) = threads_per_run(args, configs.len());
    let model = crate::models::build(&spec)?;
    let model_name = crate::models::describe(base.model.as_deref(), &model);
    let probe = run_config(base, configs[0].1, text.train.len(), &model, threads)?;
    eprintln!(
        "text {}: {} tokens; {model_name}; batch {} x {} tokens, {} steps{}, seed {}",
        path.display(),
        corpus.ids.len(),
        probe.batch_size,
        descent_nn::numel(&spec.input),
        probe.max_steps.map_or("all".into(), |m| m.to_string()),
        probe
            .eval_every
            .map_or(String::new(), |e| format!(", validation loss every {e}")),
        args.seed
    );
    // Progress on a terminal: steps of all runs, and which run is where.
    let steps = probe.max_steps.unwrap_or(0) as u64;
    let bar = crate::progress::CountBar::new("steps", steps * configs.len() as u64);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let runs = configs.len();
    let train_one = |name: &str, optimizer: OptimizerConfig| -> Result<Outcome> {
        let model = crate::models::build(&spec)?;
        let cfg = run_config(base, optimizer, text.train.len(), &model, threads)?;
        let mut last = 0;
        let mut trainer = Trainer::new(model, &cfg).map_err(crate::train::cli_error)?;
        crate::device::attach(&mut trainer, base.device)?;
        let mut o = Outcome {
            name: name.to_string(),
            lr: cfg.lr(),
            val_loss: vec![],
            train_loss: vec![],
            elapsed: vec![],
            steps: 0,
        };
        let start = Instant::now();
        let summary = trainer.run_split(&text.train, Some(&text.val), &text.val, |e| {
            if let Event::StepEval {
                step,
                train_loss,
                eval,
            } = e
            {
                let t = start.elapsed().as_secs_f64();
                bar.eprintln(&format!(
                    "{name:>9} step {step}: train_loss {train_loss:.4} val_loss {:.4} time {t:.1}s",
                    eval.loss
                ));
                bar.advance_by(
                    step - last,
                    format!(
                        "({} of {runs} runs done; {name} at step {step})",
                        done.load(std::sync::atomic::Ordering::Relaxed)
                    ),
                );
                last = step;
                o.val_loss.push((step, eval.loss));
                o.train_loss.push((step, train_loss));
                o.elapsed.push(t);
            }
        })?;
        o.steps = trainer.steps();
        if o.val_loss.last().map(|v| v.0) != Some(o.steps) {
            o.val_loss.push((o.steps, summary.test.loss));
            o.elapsed.push(start.elapsed().as_secs_f64());
        }
        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(o)
    };
    let outcomes = race(configs, jobs, train_one);
    bar.finish();
    let mut outcomes = outcomes?;
    outcomes.sort_by(|a, b| a.best().1.total_cmp(&b.best().1));
    let target = args
        .target_loss
        .map(|t| format!("time to {t}"))
        .unwrap_or_default();
    let nw = super::name_width(outcomes.iter().map(|o| o.name.as_str()));
    let header = format!(
        "{:<nw$} {:>8} {:>9} {:>17} {:>10} {:>8} {:>14}",
        "optimizer", "lr", "final val", "best val (step)", "train_loss", "time", target
    );
    out!("{}", header.trim_end());
    let mut csv = String::from(
        "optimizer,lr,steps,final_val_loss,best_val_loss,best_step,final_train_loss,seconds,seconds_to_target\n",
    );
    for o in &outcomes {
        let (bs, bv) = o.best();
        let train = o.train_loss.last().map_or(f64::NAN, |t| t.1);
        let time = o.elapsed.last().copied().unwrap_or(0.0);
        let to = args.target_loss.and_then(|t| o.reach(t));
        let line = format!(
            "{:<nw$} {:>8} {:>9.4} {:>9.4} ({:>5}) {:>10.4} {:>7.1}s {:>14}",
            o.name,
            o.lr,
            o.last(),
            bv,
            bs,
            train,
            time,
            match (args.target_loss, to) {
                (None, _) => String::new(),
                (Some(_), None) => "-".into(),
                (Some(_), Some(t)) => format!("{t:.1}s"),
            }
        );
        out!("{}", line.trim_end());
        let _ = writeln!(
            csv,
            "{},{},{},{:.6},{bv:.6},{bs},{train:.6},{time:.3},{}",
            o.name,
            o.lr,
            o.steps,
            o.last(),
            to.map_or(String::new(), |t| format!("{t:.3}"))
        );
    }
    let series = |pick: fn(&Outcome) -> &Vec<(u64, f64)>| -> Vec<Series> {
        outcomes
            .iter()
            .map(|o| {
                Series::new(
                    format!("{} (lr {})", o.name, o.lr),
                    pick(o).iter().map(|&(s, v)| (s as f64, v)).collect(),
                )
            })
            .collect()
    };
    let mut val = Chart::lines(
        format!("validation loss of the language model, seed {}", args.seed),
        "step",
        "validation loss (nats per token)",
        series(|o| &o.val_loss),
    );
    val.y.scale = Scale::Auto;
    let mut train = Chart::lines(
        "training loss (mean between evaluations)",
        "step",
        "cross-entropy (nats per token)",
        series(|o| &o.train_loss),
    );
    train.y.scale = Scale::Auto;
    write_chart(&args.out, "compare", &val)?;
    write_chart(&args.out, "compare_loss", &train)?;
    write_atomic(&args.out.join("compare.csv"), csv.as_bytes())?;
    out!(
        "wrote {0}/compare.png, {0}/compare.svg, {0}/compare_loss.png, {0}/compare_loss.svg, {0}/compare.csv",
        args.out.display()
    );
    Ok(())
}
