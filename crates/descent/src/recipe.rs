//! Training recipes that go with a model preset: `descent train --model gpt` trains with the
//! large-model recipe (the one `../shared/bench/torch_gpt.py` and nanoGPT use) unless a flag
//! says otherwise. A recipe is a list of flags put before the command line's, as a `--config`
//! file's are, so that every flag given wins and a run directory records what was used.

/// The recipe of `--model gpt`: AdamW with betas 0.9/0.99 and weight decay 0.1 on matrices
/// only (not on biases or LayerNorm weights), 100 steps of linear warmup then cosine to a
/// tenth of the rate, gradient norms clipped at 1, batches of 32 windows, 2000 steps with the
/// validation loss every 100.
pub const GPT: &[(&str, Option<&str>)] = &[
    ("--optimizer", Some("adamw")),
    ("--lr", Some("0.001")),
    ("--beta2", Some("0.99")),
    ("--weight-decay", Some("0.1")),
    ("--no-bias-decay", None),
    ("--schedule", Some("cosine")),
    ("--warmup-steps", Some("100")),
    ("--eta-min-factor", Some("0.1")),
    ("--clip-norm", Some("1")),
    ("--batch-size", Some("32")),
    ("--max-steps", Some("2000")),
    ("--eval-every", Some("100")),
];

/// Flags of the recipe that belong to its optimizer: left out when another is chosen.
pub const OPTIMIZER_FLAGS: [&str; 3] = ["--lr", "--beta2", "--weight-decay"];
/// Flags of the recipe that belong to its schedule: left out when another is chosen.
pub const SCHEDULE_FLAGS: [&str; 1] = ["--eta-min-factor"];

/// The value of `flag` in `args` (`--flag V` or `--flag=V`), or `Some("")` for a bare switch.
fn given<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            Some(
                args.get(i + 1)
                    .map(String::as_str)
                    .filter(|v| !v.starts_with("--"))
                    .unwrap_or(""),
            )
        } else {
            a.strip_prefix(flag).and_then(|r| r.strip_prefix('='))
        }
    })
}

/// `descent train` arguments (after the command's name) with the recipe of their `--model`
/// put first; a flag the arguments give is not added, nor are the recipe optimizer's (or
/// schedule's) settings when the arguments choose another optimizer (or schedule), nor
/// anything at all for a run resumed or replayed from a study (they carry their own).
pub fn with_recipe(args: Vec<String>) -> Vec<String> {
    with_recipe_except(args, &[])
}

/// [`with_recipe`] without the recipe's flags named in `skip` (a search that sets them
/// itself, or chooses the optimizer or schedule they belong to).
pub fn with_recipe_except(args: Vec<String>, skip: &[&str]) -> Vec<String> {
    if given(&args, "--model") != Some("gpt")
        || given(&args, "--resume").is_some()
        || given(&args, "--from-study").is_some()
    {
        return args;
    }
    let own_optimizer = given(&args, "--optimizer").is_some_and(|o| o != "adamw");
    let own_schedule = given(&args, "--schedule").is_some_and(|s| s != "cosine");
    let mut out = Vec::new();
    for &(flag, value) in GPT {
        if given(&args, flag).is_some()
            || skip.contains(&flag)
            || (own_optimizer && OPTIMIZER_FLAGS.contains(&flag))
            || (own_schedule && SCHEDULE_FLAGS.contains(&flag))
            || (flag == "--eta-min-factor" && given(&args, "--eta-min").is_some())
        {
            continue;
        }
        out.push(flag.to_string());
        out.extend(value.map(str::to_string));
    }
    out.extend(args);
    out
}

/// `argv` (program, command, arguments) with the recipe applied to a `train` command.
pub fn expand(argv: Vec<String>) -> Vec<String> {
    if argv.get(1).map(String::as_str) != Some("train") {
        return argv;
    }
    let mut it = argv.into_iter();
    let head: Vec<String> = it.by_ref().take(2).collect();
    head.into_iter().chain(with_recipe(it.collect())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    fn parse(argv: Vec<String>) -> crate::cli::TrainArgs {
        match crate::cli::Cli::try_parse_from(expand(argv))
            .unwrap()
            .command
        {
            crate::cli::Command::Train(t) => *t,
            _ => panic!("a train command"),
        }
    }

    #[test]
    fn the_gpt_recipe_fills_in_what_the_command_line_leaves_out() {
        let t = parse(words(
            "descent train --model gpt --data text:t.txt --lr 3e-4",
        ));
        assert_eq!(t.optimizer, "adamw");
        assert_eq!(
            (t.lr, t.hyper.beta2, t.hyper.weight_decay),
            (Some(3e-4), Some(0.99), Some(0.1))
        );
        assert!(t.no_bias_decay);
        assert_eq!(
            (t.schedule.warmup_steps, t.schedule.eta_min_factor),
            (100, Some(0.1))
        );
        assert_eq!(
            (t.clip_norm, t.batch_size, t.max_steps),
            (Some(1.0), 32, Some(2000))
        );
        assert_eq!(t.eval_every, Some(100));
        // Another optimizer keeps its own settings; another schedule its own.
        let t = parse(words(
            "descent train --model=gpt --optimizer lion --schedule step --step-size 10",
        ));
        assert_eq!(
            (t.optimizer.as_str(), t.lr, t.hyper.beta2),
            ("lion", None, None)
        );
        assert_eq!(t.schedule.eta_min_factor, None);
        assert_eq!(t.schedule.warmup_steps, 100);
        // Other models, resumed runs: nothing added.
        let plain = words("descent train --model cnn");
        assert_eq!(expand(plain.clone()), plain);
        let resumed = words("descent train --resume runs/a");
        assert_eq!(expand(resumed.clone()), resumed);
    }
}
