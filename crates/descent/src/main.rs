//! `descent`: train the seed's MNIST model, fetch data, benchmark the engine.
//!
//! ```text
//! descent train                      # MLP 784-512-10, SGD lr 0.01, batch 64, 10 epochs
//! descent train --hidden 256,128 --activation tanh --epochs 3
//! descent train --optimizer adamw --lr 1e-3 --schedule cosine --warmup-steps 500
//! descent train --val-split 0.1 --early-stop val-loss --save model.safetensors
//! descent eval model.safetensors
//! descent optimizers [NAME]
//! descent data fetch mnist [--data-dir DIR]
//! descent bench gemm | optim | epoch
//! descent tune --trials 30 --epochs 3 && descent tune show
//! descent train --from-study sqlite:tune.db:mnist
//! ```

/// `println!` for the command's output, which stops the program quietly when the reader has
/// gone (`descent train | head`) instead of panicking on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!($($arg)*))
    };
}

mod bench;
mod board;
mod cli;
mod compare;
mod config_file;
mod data;
mod device;
mod eval;
mod generate;
mod html;
mod model_list;
mod models;
mod optimizers;
mod predict;
mod progress;
mod recipe;
mod report;
mod train;
mod tune;
mod tune_charts;
mod viz;

use clap::Parser;

/// `DESCENT_ISA=avx512|avx2|portable` makes every matrix product use that instruction set's
/// kernels (results differ in the last bits between them; a run can then match one made on
/// another machine).
fn isa_from_env() -> anyhow::Result<()> {
    let Ok(name) = std::env::var("DESCENT_ISA") else {
        return Ok(());
    };
    let isa = match name.as_str() {
        "avx512" => descent_tensor::Isa::Avx512,
        "avx2" => descent_tensor::Isa::Avx2,
        "portable" => descent_tensor::Isa::Portable,
        other => anyhow::bail!(
            "DESCENT_ISA={other:?} is not an instruction set: use avx512, avx2 or portable \
             (this CPU's best is {})",
            descent_tensor::Isa::best().name()
        ),
    };
    descent_tensor::set_isa(isa).map_err(|e| anyhow::anyhow!("DESCENT_ISA={name}: {e}"))
}

fn main() {
    if let Err(e) = isa_from_env() {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
    let argv =
        // The recipe goes in before a study's trial is replayed: the trial's recorded flags
        // hold the recipe as the trial had it.
        match config_file::expand(std::env::args().collect())
            .map(recipe::expand)
            .and_then(tune::expand_from_study)
        {
            Ok(argv) => argv,
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(2);
            }
        };
    let _ = ARGV.set(argv.clone());
    let from_config = std::env::args().any(|a| a == "--config" || a.starts_with("--config="));
    let cli = match cli::Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) if from_config && e.use_stderr() => {
            let _ = e.print();
            eprintln!(
                "note: flags were read from the --config file: its keys are `descent train` flag \
                 names (see descent train --help)"
            );
            std::process::exit(2);
        }
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        cli::Command::Train(args) => train::run(*args),
        cli::Command::Data(cli::DataCommand::Fetch(args)) => data::fetch(args),
        cli::Command::Data(cli::DataCommand::Show(args)) => data::show(*args),
        cli::Command::Eval(args) => eval::run(args),
        cli::Command::Generate(args) => generate::run(args),
        cli::Command::Predict(args) => predict::run(args),
        cli::Command::Report(args) => report::run(args),
        cli::Command::Viz(args) => viz::run(args),
        cli::Command::Compare(args) => compare::run(args),
        cli::Command::Optimizers(args) => optimizers::run(args),
        cli::Command::Models(args) => model_list::run(args),
        cli::Command::Bench(args) => bench::run(args),
        cli::Command::Tune(args) => tune::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// The command line after `--config` was expanded: what a run directory records.
static ARGV: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// The expanded command line (program name first).
pub fn argv() -> Vec<String> {
    ARGV.get()
        .cloned()
        .unwrap_or_else(|| std::env::args().collect())
}

/// Writes one line to stdout; on a closed pipe, exits as a process killed by SIGPIPE would.
fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}
