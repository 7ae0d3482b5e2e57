//! `descent`: train the seed's MNIST model, fetch data, benchmark the engine.
//!
//! ```text
//! descent train                      # MLP 784-512-10, SGD lr 0.01, batch 64, 10 epochs
//! descent train --hidden 256,128 --activation tanh --epochs 3
//! descent data fetch mnist [--data-dir DIR]
//! descent bench gemm | epoch
//! ```

mod bench;
mod cli;
mod data;
mod progress;
mod train;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Train(args) => train::run(args),
        cli::Command::Data(cli::DataCommand::Fetch(args)) => data::fetch(args),
        cli::Command::Bench(args) => bench::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
