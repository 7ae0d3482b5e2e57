//! The command line's flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// descent: train neural networks and optimize them, fast, on the CPU.
#[derive(Parser, Debug)]
#[command(name = "descent", version, about, args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train an MLP on MNIST (defaults: the seed's model and settings).
    Train(Box<TrainArgs>),
    /// Manage data sets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Print a run directory's epochs as a table and draw its loss and accuracy curves.
    Report(ReportArgs),
    /// Train the seed's model with several optimizers from the same start and compare them.
    Compare(CompareArgs),
    /// Draw the paths optimizers take on a 2-D test function, over its contour lines.
    Viz(VizArgs),
    /// The most likely digits of an image (28x28 PNG) or of the images of an IDX file.
    Predict(PredictArgs),
    /// Evaluate weights on the MNIST test set (loss, accuracy, confusion matrix), or a
    /// language model on a text (--data text:FILE: loss and perplexity).
    Eval(EvalArgs),
    /// Continue a text with a language model trained by `descent train --model gpt`.
    Generate(GenerateArgs),
    /// List the optimizers: hyperparameters, defaults, update formula, reference.
    Optimizers(OptimizersArgs),
    /// List the model presets, or show one model (a preset or a TOML file) layer by layer.
    Models(ModelsArgs),
    /// Measure the engine: GEMM throughput on the seed's shapes, optimizer steps, or whole
    /// epochs.
    Bench(BenchArgs),
    /// Search training hyperparameters (TPE, pruning on validation accuracy) in a SQLite
    /// study; `descent tune show` prints and draws the results.
    Tune(TuneArgs),
}

/// `descent tune`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TuneArgs {
    #[command(subcommand)]
    pub command: Option<TuneCommand>,
    /// Where the study lives: sqlite:PATH (processes on one machine) or
    /// postgresql://USER@HOST:PORT/DB (workers on many machines; password from the URL,
    /// PGPASSWORD or ~/.pgpass). Both hold Optuna's schema: optuna.load_study and
    /// optuna-dashboard open them.
    #[arg(long, default_value = "sqlite:tune.db")]
    pub storage: String,
    /// The study's name: an existing study is resumed.
    #[arg(long, default_value = "mnist")]
    pub study: String,
    /// Run until the study holds this many trials (counting earlier runs; retries of failed
    /// trials do not count).
    #[arg(long, default_value_t = 30)]
    pub trials: u64,
    /// A running trial records a heartbeat this often; one whose heartbeat is older than
    /// twice this is failed by whichever worker notices (0: no heartbeats).
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub heartbeat: f64,
    /// Enqueue the parameters of a trial failed as stale (its worker died) again, at most
    /// this many times along one chain of retries.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retry_failed: u32,
    /// Trials run side by side (threads are shared among them).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Start no new trial after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Epochs per trial (validation accuracy is reported after each).
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// tpe or random.
    #[arg(long, default_value = "tpe")]
    pub sampler: String,
    /// median, percentile:P, sh (successive halving), hyperband or none.
    #[arg(long, default_value = "median")]
    pub pruner: String,
    /// The sampler's seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A search-space parameter: NAME=float:LOW:HIGH[:log|:step=S], NAME=int:LOW:HIGH[:log],
    /// NAME=cat:A,B,C; NAME is a `descent train` flag (lr, batch-size, hidden, momentum, ...).
    #[arg(long, value_name = "SPEC")]
    pub param: Vec<String>,
    /// A TOML file with [params.NAME] tables (type, low, high, log, step, choices) and a
    /// [fixed] table of train flags.
    #[arg(long, value_name = "FILE")]
    pub space: Option<PathBuf>,
    /// A `descent train` flag every trial uses: KEY=VALUE (e.g. --fixed hidden=256).
    #[arg(long, value_name = "KEY=VALUE")]
    pub fixed: Vec<String>,
    /// Fraction of the training set held out to score trials.
    #[arg(long, default_value_t = 0.1)]
    pub val_split: f64,
    /// Where MNIST is (default: the cache directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Threads per trial (default: the cores divided among the jobs).
    #[arg(long, value_parser = threads)]
    pub threads: Option<usize>,
    /// Where the training steps run: cpu (the default), cuda (the first GPU) or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = crate::device::parse, value_name = "DEVICE")]
    pub device: descent_tensor::Device,
    /// Fail instead of downloading MNIST.
    #[arg(long)]
    pub no_fetch: bool,
    /// Write each trial as a TensorBoard run DIR/trial-NNNN (its curves, histograms,
    /// hyperparameters and objective) and the search space as the HParams experiment
    /// (`tensorboard --logdir DIR`, then the HPARAMS tab).
    #[arg(long, value_name = "DIR")]
    pub tensorboard: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum TuneCommand {
    /// The best trial, a top-k table, parameter importances, and charts (history,
    /// intermediate values, importances, parallel coordinates) as PNG and SVG.
    Show(TuneShowArgs),
}

/// `descent tune show`.
#[derive(Args, Debug)]
pub struct TuneShowArgs {
    #[arg(long, default_value = "sqlite:tune.db")]
    pub storage: String,
    #[arg(long, default_value = "mnist")]
    pub study: String,
    /// Rows of the top table.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Where the charts go (default: tune-STUDY).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write one self-contained page: the charts, the best and top trials, the
    /// importances and every trial (nothing loaded from the network).
    #[arg(long, value_name = "OUT.html")]
    pub html: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum VizFunction {
    /// (1-x)^2 + 100 (y-x^2)^2: a curved valley.
    Rosenbrock,
    /// Beale's function: flat plateaus and steep walls.
    Beale,
    /// x^2 - y^2: a saddle point at the origin.
    Saddle,
    /// (x^2 + 25 y^2) / 2: an ill-conditioned bowl.
    Quadratic,
}

#[derive(Args, Debug)]
pub struct VizArgs {
    /// The test function.
    #[arg(long, value_enum, default_value = "rosenbrock")]
    pub function: VizFunction,
    /// Optimizers to draw: sgd, sgd-momentum (momentum 0.9), nesterov, momentum (the seed's
    /// averaging form), adagrad, rmsprop, adadelta, adam, adamw, adamax, nadam, radam, lion,
    /// lamb; each at a learning rate that suits the function.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sgd,sgd-momentum,nesterov,rmsprop,adam"
    )]
    pub optimizers: Vec<String>,
    /// Steps per optimizer (default: what suits the function).
    #[arg(long)]
    pub steps: Option<usize>,
    /// The image to write: .png or .svg.
    #[arg(long, value_name = "FILE", default_value = "viz.png")]
    pub out: PathBuf,
    /// Also write an animation of the paths advancing step by step (a looping GIF).
    #[arg(long, value_name = "FILE.gif")]
    pub gif: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A run directory (`descent train --run-dir`).
    pub run_dir: PathBuf,
    /// Where to write loss.{png,svg} and accuracy.{png,svg} (default: the run directory).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also write one self-contained page: the charts, the epochs and the run's settings
    /// (nothing loaded from the network).
    #[arg(long, value_name = "OUT.html")]
    pub html: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sgd,sgd-momentum,nesterov,rmsprop,adam,adamw",
        help = crate::compare::race_help()
    )]
    pub optimizers: Vec<String>,
    /// A TOML file listing the runs instead: `[[run]]` tables with a `name`, an `optimizer`
    /// and any of its hyperparameters (`lr = 0.05`, `momentum = 0.9`, `nesterov = true`).
    #[arg(long, value_name = "FILE", conflicts_with = "optimizers")]
    pub runs: Option<PathBuf>,
    /// Epochs per optimizer.
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Fraction of the training set held out for validation.
    #[arg(long, default_value_t = 0.1)]
    pub val_split: f64,
    /// Runs trained at the same time, sharing the threads (1: one after the other, which
    /// suits two cores best).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Validation accuracy (%) whose time to reach the table reports.
    #[arg(long, default_value_t = 97.0)]
    pub target_acc: f64,
    /// The model every run trains: a preset (mlp, cnn, lenet5, resnet) or a TOML model file.
    #[arg(long, value_name = "NAME|FILE")]
    pub model: Option<String>,
    /// Hidden layer sizes of --model mlp (default 512).
    #[arg(long, value_delimiter = ',', value_name = "N[,N...]")]
    pub hidden: Option<Vec<usize>>,
    /// Examples per batch (default: 64, or the recipe's 32 windows for a text).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// The data: mnist (the default), or text:FILE (a UTF-8 text for --model gpt, the runs
    /// ranked by validation loss).
    #[arg(long, value_name = "SOURCE")]
    pub data: Option<String>,
    /// Stop each run after N optimizer steps (a text's recipe: 2000).
    #[arg(long, value_name = "N")]
    pub max_steps: Option<u64>,
    /// Validation loss (a text) whose time to reach the table reports.
    #[arg(long, value_name = "LOSS")]
    pub target_loss: Option<f64>,
    /// A `descent train` setting every run shares, as `descent tune --fixed` takes it
    /// (`--fixed eval-every=50`, `--fixed layers=2`, `--fixed clip-norm=0.5`); optimizers and
    /// their settings come from --optimizers or --runs.
    #[arg(long, value_name = "KEY=VALUE")]
    pub fixed: Vec<String>,
    /// Seed of the shared initial weights, shuffles and validation split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to write compare.{png,svg}, compare_loss.{png,svg} and compare.csv.
    #[arg(long, value_name = "DIR", default_value = "compare")]
    pub out: PathBuf,
    /// Data root (else $DESCENT_DATA, else ~/.cache/descent).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Engine threads (default: all cores).
    #[arg(long, value_parser = threads)]
    pub threads: Option<usize>,
    /// Where the training steps run: cpu (the default), cuda (the first GPU) or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = crate::device::parse, value_name = "DEVICE")]
    pub device: descent_tensor::Device,
    /// Never download: fail if the data is not on disk.
    #[arg(long)]
    pub no_fetch: bool,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A safetensors weights file (`descent train --save`, a run's weights.safetensors).
    pub weights: PathBuf,
    /// A PNG (white on black, as MNIST; see --invert) or an IDX image file of the model's
    /// image size; for a model trained on a table, a CSV file with its feature columns.
    pub input: PathBuf,
    /// The model, when the weights file does not record it: a preset or a model file.
    #[arg(long, value_name = "NAME|FILE")]
    pub model: Option<String>,
    /// Classes to show per image, most likely first.
    #[arg(long, default_value_t = 3)]
    pub top: usize,
    /// Images (or rows) to show from an IDX (or CSV) file.
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    /// Invert the pixels (for a dark digit on a light background).
    #[arg(long)]
    pub invert: bool,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A safetensors file of weights (saved by `descent train --save`, or by PyTorch).
    pub weights: PathBuf,
    /// The model, when the file does not record it (descent's files do; PyTorch's do not):
    /// a preset (mlp, cnn, lenet5, resnet) or a model file.
    #[arg(long, value_name = "NAME|FILE")]
    pub model: Option<String>,
    /// Hidden sizes, when the file does not record them (descent's files do).
    #[arg(long, value_delimiter = ',', value_name = "N[,N...]")]
    pub hidden: Option<Vec<usize>>,
    /// Activation, when the file does not record it.
    #[arg(long, value_enum)]
    pub activation: Option<ActivationArg>,
    /// Data root (else $DESCENT_DATA, else ~/.cache/descent).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Engine threads (default: all cores).
    #[arg(long, value_parser = threads)]
    pub threads: Option<usize>,
    /// Where the training steps run: cpu (the default), cuda (the first GPU) or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = crate::device::parse, value_name = "DEVICE")]
    pub device: descent_tensor::Device,
    /// Never download: fail if the data is not on disk.
    #[arg(long)]
    pub no_fetch: bool,
    /// The data: mnist (the default), or text:FILE for a language model (every window of
    /// the model's context in the file, read with the vocabulary the weights record).
    #[arg(long, value_name = "SOURCE")]
    pub data: Option<String>,
    /// Evaluate weights holding NaN or infinite values (refused otherwise), to see what a
    /// diverged run left.
    #[arg(long)]
    pub allow_nonfinite: bool,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// A weights file of a language model (`descent train --model gpt --save`).
    pub weights: PathBuf,
    /// The text to continue (every character must be in the model's vocabulary).
    #[arg(long, default_value = "\n")]
    pub prompt: String,
    /// Tokens to generate.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub tokens: usize,
    /// Divides the logits: below 1 sharper, above 1 flatter; 0 always takes the most likely.
    #[arg(long, default_value_t = 0.8, value_name = "T")]
    pub temperature: f32,
    /// Draw from the K most likely tokens only (0: all).
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub top_k: usize,
    /// Draw from the fewest most likely tokens whose probabilities reach P (1: all).
    #[arg(long, default_value_t = 1.0, value_name = "P")]
    pub top_p: f32,
    /// Seed of the draws: the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Args, Debug)]
pub struct ModelsArgs {
    /// Show only this model: a preset (mlp, cnn, lenet5, resnet) or a model file.
    pub name: Option<String>,
}

#[derive(Args, Debug)]
pub struct OptimizersArgs {
    /// Show only this optimizer.
    pub name: Option<String>,
}

/// `--loader`.
#[derive(
    ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum LoaderArg {
    /// A background thread for a streamed set or when a core is left over.
    #[default]
    Auto,
    /// Always a background thread.
    Background,
    /// Always the engine's threads.
    Inline,
}

impl From<LoaderArg> for descent_train::Loader {
    fn from(a: LoaderArg) -> Self {
        match a {
            LoaderArg::Auto => Self::Auto,
            LoaderArg::Background => Self::Background,
            LoaderArg::Inline => Self::Inline,
        }
    }
}

/// `--divergence`: what a loss far above its start does.
#[derive(
    ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum DivergenceArg {
    /// Stop with the diagnosis.
    #[default]
    Stop,
    /// Say so once and go on.
    Warn,
    /// Do not watch.
    Off,
}

impl From<DivergenceArg> for descent_train::Divergence {
    fn from(a: DivergenceArg) -> Self {
        match a {
            DivergenceArg::Stop => Self::Stop,
            DivergenceArg::Warn => Self::Warn,
            DivergenceArg::Off => Self::Off,
        }
    }
}

/// `--threads N`: at most one per core. More threads than cores only wait for each other (and
/// a very large count cannot even be started), so a larger N is capped, with a note.
fn threads(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("`{s}` is not a thread count: give a whole number"))?;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    if n > cores {
        eprintln!(
            "note: --threads {n} is more than this machine's {cores} cores; using {cores} (more \
             threads than cores only wait for each other)"
        );
        return Ok(cores);
    }
    Ok(n)
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Download a data set into the cache and verify its checksums.
    Fetch(FetchArgs),
    /// What a source holds: counts per class, shapes, value ranges, a table's columns, and a
    /// PNG grid of sample pictures for image sets.
    Show(Box<crate::data::ShowArgs>),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetName {
    /// MNIST handwritten digits (4 IDX files, 55 MB).
    Mnist,
    /// Fashion-MNIST, Zalando's 28x28 pictures of clothing in 10 classes (4 IDX files, 55 MB;
    /// from its upstream URLs, else from Debian's dataset-fashion-mnist package).
    FashionMnist,
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// Which data set.
    pub dataset: DatasetName,
    /// Data root (else $DESCENT_DATA, else ~/.cache/descent); a set goes into DIR/NAME
    /// (DIR/mnist, DIR/fashion-mnist) unless DIR already holds its files.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActivationArg {
    Relu,
    Tanh,
    Sigmoid,
    Gelu,
    Silu,
}

impl From<ActivationArg> for descent_nn::Activation {
    fn from(a: ActivationArg) -> Self {
        match a {
            ActivationArg::Relu => Self::Relu,
            ActivationArg::Tanh => Self::Tanh,
            ActivationArg::Sigmoid => Self::Sigmoid,
            ActivationArg::Gelu => Self::Gelu,
            ActivationArg::Silu => Self::Silu,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossArg {
    CrossEntropy,
    Nll,
    Mse,
    L1,
    Huber,
    BceWithLogits,
}

/// `descent train`'s arguments; they serialize (keys are the flags with `_` for `-`), so that
/// `descent tune` sets a trial's values on them as typed values.
#[derive(Args, Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainArgs {
    /// The model: a preset (mlp, cnn, lenet5, resnet) or a TOML model file
    /// (docs/models.md). Default: mlp, or the model recorded in --init-from's file.
    #[arg(long, value_name = "NAME|FILE")]
    pub model: Option<String>,
    /// Hidden layer sizes of --model mlp, comma-separated: 512 (the default), or 256,128.
    #[arg(long, value_delimiter = ',', value_name = "N[,N...]")]
    pub hidden: Option<Vec<usize>>,
    /// Activation after each hidden layer of --model mlp (default relu).
    #[arg(long, value_enum)]
    pub activation: Option<ActivationArg>,
    /// Dropout probability after each hidden activation of --model mlp (default 0).
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub dropout: Option<f32>,
    /// Change one setting of the model's layers, by layer name and field:
    /// conv1.out_channels=16, fc1.out_features=256, layer2.0.conv1.out_channels=48 (repeat the
    /// flag for several; what `descent tune --param model.conv1.out_channels=...` varies).
    #[arg(long = "model-set", value_name = "LAYER.FIELD=VALUE")]
    pub model_set: Vec<String>,
    /// Loss: cross-entropy (the default), nll (on a model ending in log_softmax), mse, l1,
    /// huber, bce-with-logits (these four read the class index as a one-hot target).
    #[arg(long, value_enum, default_value = "cross-entropy")]
    pub loss: LossArg,
    /// Cross-entropy's label smoothing, in [0, 1].
    #[arg(long, value_name = "EPS", allow_negative_numbers = true)]
    pub label_smoothing: Option<f32>,
    /// A weight per class for cross-entropy or nll, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "W[,W...]",
        allow_negative_numbers = true
    )]
    pub class_weights: Option<Vec<f32>>,
    /// Where the huber loss turns linear (default 1).
    #[arg(long, value_name = "DELTA", allow_negative_numbers = true)]
    pub huber_delta: Option<f32>,
    /// L1 penalty on the weight matrices: adds L1 * sign(w) to their gradients.
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "L1",
        allow_negative_numbers = true
    )]
    pub l1: f32,
    /// Optimizer: gd, sgd, momentum, adagrad, rmsprop, adadelta, adam, adamw, adamax, nadam,
    /// radam, lion, lamb (`descent optimizers` shows each with its settings).
    #[arg(long, default_value = "sgd")]
    pub optimizer: String,
    /// Learning rate (default: the optimizer's; 0.01 for sgd, as in the seed).
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    #[command(flatten)]
    #[serde(flatten)]
    pub hyper: HyperArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub schedule: ScheduleArgs,
    /// Clip the gradients' global L2 norm to this before each step.
    #[arg(
        long,
        value_name = "MAX",
        allow_negative_numbers = true,
        help_heading = "Gradients"
    )]
    pub clip_norm: Option<f32>,
    /// Clamp each gradient to [-V, V] before each step.
    #[arg(
        long,
        value_name = "V",
        allow_negative_numbers = true,
        help_heading = "Gradients"
    )]
    pub clip_value: Option<f32>,
    /// Stop with an error when the gradient norm is NaN or infinite (with --clip-norm).
    #[arg(long, help_heading = "Gradients")]
    pub clip_error_nonfinite: bool,
    /// When the training loss rises far above its start and stays there (the median of the
    /// last 10 batches above 1000 times the first batch's loss): stop with a diagnosis, warn
    /// once and go on, or do not watch. A NaN or infinite loss always stops.
    #[arg(long, value_enum, default_value = "stop", help_heading = "Gradients")]
    #[serde(default)]
    pub divergence: DivergenceArg,
    /// With --optimizer gd: stop once the full gradient's norm is below this.
    #[arg(
        long,
        value_name = "TOL",
        allow_negative_numbers = true,
        help_heading = "Gradients"
    )]
    pub grad_tol: Option<f32>,
    /// Hold out this fraction of the training set for validation (chosen by --seed).
    #[arg(
        long,
        value_name = "F",
        conflicts_with = "val_size",
        allow_negative_numbers = true,
        help_heading = "Validation and stopping"
    )]
    pub val_split: Option<f64>,
    /// Hold out this many training examples for validation (chosen by --seed).
    #[arg(long, value_name = "N", help_heading = "Validation and stopping")]
    pub val_size: Option<usize>,
    /// Evaluate the test set only at the end (with a validation set).
    #[arg(long, help_heading = "Validation and stopping")]
    pub val_only: bool,
    /// Stop after N optimizer steps.
    #[arg(long, value_name = "N", help_heading = "Validation and stopping")]
    pub max_steps: Option<u64>,
    /// The epochs a schedule is sized for when they differ from those the run stops at: a
    /// resumed run given another --epochs or --max-steps keeps the span it started with
    /// (written to its args.json; not for users).
    #[arg(long, hide = true, value_name = "N")]
    pub schedule_epochs: Option<usize>,
    /// See `schedule_epochs`: the step limit it was sized for.
    #[arg(long, hide = true, value_name = "N")]
    pub schedule_max_steps: Option<u64>,
    /// Stop after the first epoch whose mean training loss is at or below this.
    #[arg(
        long,
        value_name = "LOSS",
        allow_negative_numbers = true,
        help_heading = "Validation and stopping"
    )]
    pub target_loss: Option<f64>,
    /// Stop when this metric stops improving, keeping the best epoch's weights.
    #[arg(
        long,
        value_enum,
        value_name = "METRIC",
        help_heading = "Validation and stopping"
    )]
    pub early_stop: Option<MonitorArg>,
    /// Epochs without improvement before early stopping.
    #[arg(
        long,
        default_value_t = 5,
        value_name = "N",
        help_heading = "Validation and stopping"
    )]
    pub early_stop_patience: usize,
    /// Smallest change of the metric that counts as an improvement.
    #[arg(
        long,
        default_value_t = 0.0,
        allow_negative_numbers = true,
        help_heading = "Validation and stopping"
    )]
    pub min_delta: f64,
    /// Read flags from a TOML file (`lr = 0.001`, `hidden = [256, 128]`, `nesterov = true`);
    /// flags on the command line win.
    #[arg(long, value_name = "FILE", help_heading = "Runs")]
    pub config: Option<PathBuf>,
    /// Train the best configuration of a `descent tune` study (sqlite:PATH:STUDY); flags on
    /// the command line win.
    #[arg(long, value_name = "STORAGE:STUDY", help_heading = "Runs")]
    pub from_study: Option<String>,
    /// Keep this run in DIR: its command line, metrics.jsonl (every epoch and log line),
    /// checkpoint.safetensors (every --checkpoint-every epochs and on Ctrl-C) and the final
    /// weights.safetensors.
    #[arg(long, value_name = "DIR", help_heading = "Runs")]
    pub run_dir: Option<PathBuf>,
    /// Write TensorBoard event files to DIR: per step the loss, learning rate, gradient norm
    /// and step time; per epoch the losses, accuracies and histograms of every tensor and its
    /// gradient (`tensorboard --logdir DIR`). With --run-dir (or --resume) it defaults to
    /// RUN_DIR/tensorboard.
    #[arg(long, value_name = "DIR", help_heading = "Runs")]
    pub tensorboard: Option<PathBuf>,
    /// Continue the run in DIR from its checkpoint, with its own settings, bit for bit.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "run_dir",
        help_heading = "Runs"
    )]
    pub resume: Option<PathBuf>,
    /// Epochs between checkpoints in the run directory.
    #[arg(long, default_value_t = 1, value_name = "N", help_heading = "Runs")]
    pub checkpoint_every: usize,
    /// Write the final weights (the kept epoch's) to this safetensors file, with PyTorch's
    /// tensor names.
    #[arg(long, value_name = "PATH", help_heading = "Weights")]
    pub save: Option<PathBuf>,
    /// Start from the weights in this safetensors file (e.g. saved by PyTorch) instead of a
    /// fresh initialization.
    #[arg(long, value_name = "PATH", help_heading = "Weights")]
    pub init_from: Option<PathBuf>,
    /// No weight decay on biases (a parameter group of every `*.bias`).
    #[arg(long, help_heading = "Optimizer")]
    pub no_bias_decay: bool,
    /// Examples per batch.
    #[arg(long, default_value_t = 64, help_heading = "Training")]
    pub batch_size: usize,
    /// Passes over the training set.
    #[arg(long, default_value_t = 10, help_heading = "Training")]
    pub epochs: usize,
    /// Seed for the initial weights and the shuffles.
    #[arg(long, default_value_t = 0, help_heading = "Training")]
    pub seed: u64,
    /// Engine threads (default: all cores).
    #[arg(long, value_parser = threads, help_heading = "Training")]
    pub threads: Option<usize>,
    /// Where the training steps run: cpu (the default), cuda (the first GPU) or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = crate::device::parse, value_name = "DEVICE", help_heading = "Training")]
    #[serde(with = "crate::device::as_name", default)]
    pub device: descent_tensor::Device,
    /// Print `[epoch, batch] loss` every N batches (0: never).
    #[arg(
        long,
        default_value_t = 100,
        value_name = "N",
        help_heading = "Training"
    )]
    pub log_every: usize,
    /// Keep file order instead of shuffling each epoch.
    #[arg(long, help_heading = "Training")]
    pub no_shuffle: bool,
    /// Drop the last batch when it is smaller than --batch-size.
    #[arg(long, help_heading = "Training")]
    pub drop_last: bool,
    /// Data root (else $DESCENT_DATA, else ~/.cache/descent).
    #[arg(long, value_name = "DIR", help_heading = "Data")]
    pub data_dir: Option<PathBuf>,
    /// Print only the per-epoch lines.
    #[arg(long, short, help_heading = "Training")]
    pub quiet: bool,
    /// Never download: fail if the data is not on disk.
    #[arg(long, help_heading = "Data")]
    pub no_fetch: bool,
    /// The data: mnist (the default), fashion-mnist, idx:DIR (a directory of IDX files),
    /// csv:FILE (a table with a header), or text:FILE (any UTF-8 file, for --model gpt: every
    /// window of --block-size tokens of its first 90% trains, windows of the rest validate).
    /// docs/data.md describes each.
    #[arg(long, value_name = "SOURCE", help_heading = "Data")]
    pub data: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub table: crate::data::SourceArgs,
    /// What a token of text:FILE is: a character (the file's distinct characters are the
    /// vocabulary) or a byte.
    #[arg(long, value_enum, default_value = "chars", help_heading = "Data")]
    pub tokens: TokensArg,
    /// Validation windows of text:FILE (drawn at random offsets of its last 10%).
    #[arg(long, default_value_t = 640, value_name = "N", help_heading = "Data")]
    pub val_windows: usize,
    /// Transformer blocks of --model gpt.
    #[arg(long, value_name = "N", help_heading = "GPT")]
    pub layers: Option<usize>,
    /// Attention heads of --model gpt.
    #[arg(long, value_name = "N", help_heading = "GPT")]
    pub heads: Option<usize>,
    /// Width (embedding size) of --model gpt.
    #[arg(long, value_name = "N", help_heading = "GPT")]
    pub embd: Option<usize>,
    /// Context length of --model gpt: tokens per window.
    #[arg(long, value_name = "N", help_heading = "GPT")]
    pub block_size: Option<usize>,
    /// Sum the gradients of N batches into each optimizer step (the update of a batch N
    /// times --batch-size).
    #[arg(
        long,
        default_value_t = 1,
        value_name = "N",
        help_heading = "Optimizer"
    )]
    pub grad_accum: usize,
    /// Rows per forward and backward pass: a larger batch runs in chunks of N, their
    /// gradients summed (the same update up to the order of the sums). Default: chunks whose
    /// workspace fits in 100 MB where the batch's would not, except for models with
    /// BatchNorm, class-weighted losses and plain SGD (fused into the backward pass); give
    /// the --batch-size value to run each batch in one pass.
    #[arg(long, value_name = "N", help_heading = "Optimizer")]
    pub micro_batch: Option<usize>,
    /// Evaluate the validation set every N optimizer steps (`step N train_loss X val_loss Y`).
    #[arg(long, value_name = "N", help_heading = "Validation and stopping")]
    pub eval_every: Option<u64>,
    /// Activation recomputation: keep only each residual block's output and run its body
    /// again in the backward pass (the memory report shows the activations it saves; about a
    /// third more compute; the same weights).
    #[arg(long, help_heading = "Model")]
    pub recompute: bool,
    /// Who prepares the training batches: a background thread while the engine computes, the
    /// engine's own threads, or auto (the thread for a streamed set or when a core is left
    /// over).
    #[arg(long, value_enum, default_value = "auto", help_heading = "Data")]
    pub loader: LoaderArg,
    /// Mixed precision: the linear layers' matrix products (forward and both gradients) take
    /// bf16 inputs and sum in f32; weights, gradients, activations and the optimizer's state
    /// stay f32. Native with AVX512-BF16, emulated (slower) on other CPUs.
    #[arg(long, help_heading = "Model")]
    pub bf16: bool,
}

/// What a token of a text is.
#[derive(
    ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize,
)]
pub enum TokensArg {
    /// A Unicode character.
    #[default]
    Chars,
    /// A byte.
    Bytes,
}

impl From<TokensArg> for descent_data::TokenKind {
    fn from(t: TokensArg) -> Self {
        match t {
            TokensArg::Chars => descent_data::TokenKind::Chars,
            TokensArg::Bytes => descent_data::TokenKind::Bytes,
        }
    }
}

/// Hyperparameters, in PyTorch's names; each optimizer takes the ones it has (`descent
/// optimizers NAME`), and a flag it does not take is an error.
#[derive(Args, Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[command(next_help_heading = "Optimizer")]
pub struct HyperArgs {
    /// Momentum factor (sgd, rmsprop).
    #[arg(long, allow_negative_numbers = true)]
    pub momentum: Option<f64>,
    /// Dampening of momentum (sgd).
    #[arg(long, allow_negative_numbers = true)]
    pub dampening: Option<f64>,
    /// Nesterov momentum (sgd; needs --momentum and no dampening).
    #[arg(long)]
    pub nesterov: bool,
    /// Weight decay factor.
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
    /// Decouple weight decay from the gradient, as AdamW (adam, nadam, radam).
    #[arg(long)]
    pub decoupled_weight_decay: bool,
    /// Ascend instead of descend.
    #[arg(long)]
    pub maximize: bool,
    /// Averaging factor of the seed's momentum (momentum).
    #[arg(long, allow_negative_numbers = true)]
    pub beta: Option<f64>,
    /// First-moment decay (adam family, lion, lamb).
    #[arg(long, allow_negative_numbers = true)]
    pub beta1: Option<f64>,
    /// Second-moment decay (adam family, lion, lamb).
    #[arg(long, allow_negative_numbers = true)]
    pub beta2: Option<f64>,
    /// Term added for numerical stability.
    #[arg(long, allow_negative_numbers = true)]
    pub eps: Option<f64>,
    /// Keep the maximum of the second moment (adam, adamw).
    #[arg(long)]
    pub amsgrad: bool,
    /// Normalize by the gradient's variance (rmsprop).
    #[arg(long)]
    pub centered: bool,
    /// eps inside the square root, the seed's adaptive rule (rmsprop).
    #[arg(long)]
    pub eps_inside_sqrt: bool,
    /// Squared-gradient smoothing (rmsprop).
    #[arg(long, allow_negative_numbers = true)]
    pub alpha: Option<f64>,
    /// Averaging factor (adadelta).
    #[arg(long, allow_negative_numbers = true)]
    pub rho: Option<f64>,
    /// Learning-rate decay per step (adagrad).
    #[arg(long, allow_negative_numbers = true)]
    pub lr_decay: Option<f64>,
    /// Starting sum of squares (adagrad).
    #[arg(long, allow_negative_numbers = true)]
    pub initial_accumulator_value: Option<f64>,
    /// Speed of the momentum schedule (nadam).
    #[arg(long, allow_negative_numbers = true)]
    pub momentum_decay: Option<f64>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleName {
    /// The base rate throughout.
    Constant,
    /// Multiply by --gamma every --step-size steps.
    Step,
    /// Multiply by --gamma at each of --milestones.
    Multistep,
    /// Multiply by --gamma every step.
    Exponential,
    /// Cosine annealing to --eta-min over --t-max steps.
    Cosine,
    /// Cosine annealing restarted after --t0 steps, periods growing by --t-mult.
    CosineRestarts,
    /// Linear from --start-factor to --end-factor of the rate over --total-iters steps.
    Linear,
    /// (1 - t / --total-iters)^--power.
    Polynomial,
    /// One cycle up to --lr and down, momentum cycled the other way.
    Onecycle,
    /// Divide by 1/--factor when the epoch's training loss stalls for --patience epochs.
    Plateau,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MonitorArg {
    /// Validation loss (lower is better).
    ValLoss,
    /// Validation accuracy (higher is better).
    ValAcc,
    /// The epoch's training loss (lower is better).
    TrainLoss,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnnealArg {
    Cos,
    Linear,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ThresholdMode {
    Rel,
    Abs,
}

/// The learning-rate schedule. Steps are optimizer steps (batches; epochs for gd); lengths
/// left out default to the whole run after the warmup.
#[derive(Args, Debug, Clone, serde::Serialize, serde::Deserialize)]
#[command(next_help_heading = "Schedule")]
pub struct ScheduleArgs {
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value = "constant")]
    pub schedule: ScheduleName,
    /// Linear warmup from lr/N to lr over the first N steps, then the schedule.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub warmup_steps: u64,
    /// Steps between decays (step).
    #[arg(long, value_name = "N")]
    pub step_size: Option<u64>,
    /// Decay factor (step, multistep: default 0.1; exponential).
    #[arg(long, allow_negative_numbers = true)]
    pub gamma: Option<f64>,
    /// Steps at which the rate decays (multistep).
    #[arg(long, value_delimiter = ',', value_name = "N[,N...]")]
    pub milestones: Option<Vec<u64>>,
    /// Half period in steps (cosine; default: the rest of the run).
    #[arg(long, value_name = "N")]
    pub t_max: Option<u64>,
    /// Lowest rate (cosine, cosine-restarts; default 0).
    #[arg(long, allow_negative_numbers = true)]
    pub eta_min: Option<f64>,
    /// Lowest rate as a fraction of --lr (cosine, cosine-restarts; 0.1: a tenth of the
    /// rate, as nanoGPT decays to).
    #[arg(long, value_name = "F", conflicts_with = "eta_min")]
    pub eta_min_factor: Option<f64>,
    /// First period in steps (cosine-restarts).
    #[arg(long, value_name = "N")]
    pub t0: Option<u64>,
    /// Period growth after each restart (cosine-restarts; default 1).
    #[arg(long, value_name = "N")]
    pub t_mult: Option<u64>,
    /// Starting factor (linear; default 1/3).
    #[arg(long, allow_negative_numbers = true)]
    pub start_factor: Option<f64>,
    /// Final factor (linear; default 1).
    #[arg(long, allow_negative_numbers = true)]
    pub end_factor: Option<f64>,
    /// Steps of the ramp (linear, polynomial; default: the rest of the run).
    #[arg(long, value_name = "N")]
    pub total_iters: Option<u64>,
    /// Exponent (polynomial; default 1).
    #[arg(long, allow_negative_numbers = true)]
    pub power: Option<f64>,
    /// Fraction of the cycle spent rising (onecycle; default 0.3).
    #[arg(long, allow_negative_numbers = true)]
    pub pct_start: Option<f64>,
    /// Shape of the phases (onecycle; default cos).
    #[arg(long, value_enum)]
    pub anneal: Option<AnnealArg>,
    /// Peak over starting rate (onecycle; default 25).
    #[arg(long, allow_negative_numbers = true)]
    pub div_factor: Option<f64>,
    /// Starting over final rate (onecycle; default 1e4).
    #[arg(long, allow_negative_numbers = true)]
    pub final_div_factor: Option<f64>,
    /// Rise, fall back, then anneal (onecycle).
    #[arg(long)]
    pub three_phase: bool,
    /// Leave momentum alone (onecycle).
    #[arg(long)]
    pub no_cycle_momentum: bool,
    /// Lowest cycled momentum (onecycle; default 0.85).
    #[arg(long, allow_negative_numbers = true)]
    pub base_momentum: Option<f64>,
    /// Highest cycled momentum (onecycle; default 0.95).
    #[arg(long, allow_negative_numbers = true)]
    pub max_momentum: Option<f64>,
    /// Epochs without improvement before the rate drops (plateau; default 10).
    #[arg(long, value_name = "N")]
    pub patience: Option<u64>,
    /// Factor applied on a plateau (plateau; default 0.1).
    #[arg(long, allow_negative_numbers = true)]
    pub factor: Option<f64>,
    /// Smallest improvement that counts (plateau; default 1e-4).
    #[arg(long, allow_negative_numbers = true)]
    pub threshold: Option<f64>,
    /// Whether --threshold is relative or absolute (plateau; default rel).
    #[arg(long, value_enum)]
    pub threshold_mode: Option<ThresholdMode>,
    /// Epochs to wait after a drop (plateau; default 0).
    #[arg(long, value_name = "N")]
    pub cooldown: Option<u64>,
    /// Lowest rate (plateau; default 0).
    #[arg(long, allow_negative_numbers = true)]
    pub min_lr: Option<f64>,
}

impl TrainArgs {
    /// The schedule as the run's header names it: `cosine`, `warmup 500 + cosine`.
    pub fn schedule_label(&self) -> String {
        let name = self
            .schedule
            .schedule
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default();
        match self.schedule.warmup_steps {
            0 => name,
            w => format!("warmup {w} + {name}"),
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchWhat {
    /// GEMM on the seed model's shapes: naive, one thread, the engine's split.
    Gemm,
    /// One step of every optimizer on the seed model's 407 050 parameters, against a
    /// training step.
    Optim,
    /// Whole epochs of the seed workload on MNIST (median epoch time); --model for others.
    Epoch,
    /// Forward and backward time and GFLOP/s of each layer of --model, per training step.
    Layers,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// What to measure.
    pub what: BenchWhat,
    /// Engine threads (default: all cores).
    #[arg(long, value_parser = threads)]
    pub threads: Option<usize>,
    /// Where the training steps run: cpu (the default), cuda (the first GPU) or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = crate::device::parse, value_name = "DEVICE")]
    pub device: descent_tensor::Device,
    /// Epochs to time (epoch) or timed repetitions per shape (gemm).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Data root, for `epoch`.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Optimizer for `epoch`, with its defaults (sgd: the seed's plain SGD, fused).
    #[arg(long, default_value = "sgd")]
    pub optimizer: String,
    /// Model for `epoch` and `layers` (a preset: mlp, cnn, lenet5, resnet, or a model file), and
    /// for `gemm` whose products to time: the seed's and the cnn's (the default) or gpt's.
    #[arg(long, value_name = "NAME|FILE")]
    pub model: Option<String>,
    /// Examples per batch for `epoch` and `layers`.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// epoch: the data (mnist, the default, or any training source but text:FILE).
    #[arg(long, value_name = "SOURCE")]
    pub data: Option<String>,
    /// epoch: who prepares the batches (see `descent train --loader`).
    #[arg(long, value_enum, default_value = "auto")]
    pub loader: LoaderArg,
    #[command(flatten)]
    pub source: crate::data::SourceArgs,
}
