//! Writes a small TensorBoard log directory for `tools/tensorboard_check.py`:
//! `cargo run -p descent-board --example tb_sample DIR`. DIR gets an HParams experiment and a
//! run `trial-0` with 100 steps of `train/loss` (1/step), `val/loss` every 10 steps (2/step),
//! a histogram of 0..1000 at step 100, and a session of lr=0.01, optimizer=adam.

use std::collections::BTreeMap;

use descent_board::{write_experiment, Domain, ExperimentInfo, HParam, Status, SummaryWriter};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: tb_sample DIR")?;
    let dir = std::path::Path::new(&dir);
    write_experiment(
        dir,
        &ExperimentInfo {
            name: "sample".into(),
            description: "a sample study".into(),
            hparams: vec![
                ("lr".into(), Domain::Interval(1e-4, 0.3)),
                (
                    "optimizer".into(),
                    Domain::Choices(vec![
                        HParam::Text("sgd".into()),
                        HParam::Text("adam".into()),
                    ]),
                ),
            ],
            metrics: vec!["val/loss".into()],
        },
    )?;
    let tb = SummaryWriter::create(dir.join("trial-0"))?;
    let hp = BTreeMap::from([
        ("lr".to_string(), HParam::Number(0.01)),
        ("optimizer".to_string(), HParam::Text("adam".into())),
    ]);
    tb.session_start(&hp, "trial-0");
    for step in 1..=100u64 {
        tb.scalar("train/loss", step, 1.0 / step as f64);
        if step % 10 == 0 {
            tb.scalar("val/loss", step, 2.0 / step as f64);
        }
    }
    tb.histogram("weights/w", 100, (0..1000).map(|i| i as f32).collect());
    tb.session_end(Status::Success, 100);
    tb.close()?;
    Ok(())
}
