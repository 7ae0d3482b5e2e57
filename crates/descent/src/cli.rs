//! The command line's flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// descent: train neural networks and optimize them, fast, on the CPU.
#[derive(Parser, Debug)]
#[command(name = "descent", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train an MLP on MNIST (defaults: the seed's model and settings).
    Train(TrainArgs),
    /// Manage data sets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Measure the engine: GEMM throughput on the seed's shapes, or whole epochs.
    Bench(BenchArgs),
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Download a data set into the cache and verify its checksums.
    Fetch(FetchArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetName {
    /// MNIST handwritten digits (4 IDX files, 55 MB).
    Mnist,
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// Which data set.
    pub dataset: DatasetName,
    /// Data root (else $DESCENT_DATA, else ~/.cache/descent); MNIST goes into DIR/mnist
    /// unless DIR already holds its files.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationArg {
    Relu,
    Tanh,
    Sigmoid,
}

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Hidden layer sizes, comma-separated: 512, or 256,128 for a deeper MLP.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "512",
        value_name = "N[,N...]"
    )]
    pub hidden: Vec<usize>,
    /// Activation after each hidden layer.
    #[arg(long, value_enum, default_value = "relu")]
    pub activation: ActivationArg,
    /// Optimizer.
    #[arg(long, default_value = "sgd")]
    pub optimizer: String,
    /// Learning rate.
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
    pub lr: f32,
    /// Momentum for SGD (0 = plain SGD).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub momentum: f32,
    /// Examples per batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Passes over the training set.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Seed for the initial weights and the shuffles.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Engine threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print `[epoch, batch] loss` every N batches (0: never).
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub log_every: usize,
    /// Keep file order instead of shuffling each epoch.
    #[arg(long)]
    pub no_shuffle: bool,
    /// Drop the last batch when it is smaller than --batch-size.
    #[arg(long)]
    pub drop_last: bool,
    /// Data root (else $DESCENT_DATA, else ~/.cache/descent).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print only the per-epoch lines.
    #[arg(long, short)]
    pub quiet: bool,
    /// Never download: fail if the data is not on disk.
    #[arg(long)]
    pub no_fetch: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchWhat {
    /// GEMM on the seed model's shapes: naive, one thread, the engine's split.
    Gemm,
    /// Whole epochs of the seed workload on MNIST (median epoch time).
    Epoch,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// What to measure.
    pub what: BenchWhat,
    /// Engine threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Epochs to time (epoch) or timed repetitions per shape (gemm).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Data root, for `epoch`.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}
