//! `descent optimizers`: every optimizer with its hyperparameters, defaults, update formula and
//! reference.

use anyhow::{bail, Result};
use descent_optim::{catalog, OPTIMIZER_NAMES};

use crate::cli::OptimizersArgs;

pub fn run(args: OptimizersArgs) -> Result<()> {
    let all = catalog();
    let shown: Vec<_> = match &args.name {
        Some(name) => all.into_iter().filter(|o| o.name == name).collect(),
        None => all,
    };
    if shown.is_empty() {
        bail!(
            "no optimizer `{}`: known optimizers: {}",
            args.name.unwrap_or_default(),
            OPTIMIZER_NAMES.join(", ")
        );
    }
    for (i, o) in shown.iter().enumerate() {
        if i > 0 {
            out!("");
        }
        out!("{}: {}", o.name, o.summary);
        let flags: Vec<String> = o
            .defaults
            .iter()
            .map(|(n, v)| format!("--{} {v}", n.replace('_', "-")))
            .collect();
        out!("  defaults: {}", flags.join("  "));
        for line in o.formula.lines() {
            out!("    {line}");
        }
        out!("  reference: {}", o.reference);
    }
    Ok(())
}
