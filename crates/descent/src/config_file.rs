//! `descent train --config run.toml`: a TOML file of flags. Each key is a flag's name
//! (`lr`, `warmup_steps` or `warmup-steps`, ...), each value its value: numbers and strings
//! as given, `true` for switches, arrays for lists (`hidden = [256, 128]`). The file's flags go
//! before the command line's, so flags given on the command line win.

use std::path::Path;

use anyhow::{anyhow, bail, Result};

/// Replaces `--config FILE` (or `--config=FILE`) in `argv` by the flags the file holds.
pub fn expand(argv: Vec<String>) -> Result<Vec<String>> {
    let Some(i) = argv
        .iter()
        .position(|a| a == "--config" || a.starts_with("--config="))
    else {
        return Ok(argv);
    };
    if argv.get(1).map(String::as_str) != Some("train") {
        bail!("--config is a setting of `descent train`");
    }
    let (path, used) = match argv[i].strip_prefix("--config=") {
        Some(p) => (p.to_string(), 1),
        None => (
            argv.get(i + 1)
                .cloned()
                .ok_or_else(|| anyhow!("--config needs a file: --config run.toml"))?,
            2,
        ),
    };
    let flags = flags_from_file(Path::new(&path))?;
    let mut out: Vec<String> = argv[..2].to_vec();
    out.extend(flags);
    out.extend(argv[2..i].iter().cloned());
    out.extend(argv[i + used..].iter().cloned());
    Ok(out)
}

/// The flags a TOML file holds (by key; each flag is set once, so the order does not matter).
fn flags_from_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("invalid --config {}: cannot read it: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| anyhow!("invalid --config {}: {e}", path.display()))?;
    for key in ["config", "resume"] {
        if table.contains_key(key) {
            bail!(
                "invalid --config {}: `{key}` cannot be set in a config file",
                path.display()
            );
        }
    }
    table_flags(&table, &format!("--config {}", path.display()))
}

/// `descent train` flags from a TOML table: each key a flag's name (`warmup_steps` or
/// `warmup-steps`), `true` a bare switch, `false` nothing, a list its items joined by commas.
/// `origin` names where the table came from, for errors.
pub fn table_flags(table: &toml::Table, origin: &str) -> Result<Vec<String>> {
    let mut flags = Vec::new();
    for (key, value) in table {
        let flag = format!("--{}", key.replace('_', "-"));
        let scalar = |v: &toml::Value| -> Result<String> {
            match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(n) => Ok(n.to_string()),
                toml::Value::Float(x) => Ok(x.to_string()),
                other => bail!(
                    "invalid {origin}: `{key}` = {other:?} is not a number, string or list of them"
                ),
            }
        };
        match value {
            toml::Value::Boolean(true) => flags.push(flag),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                let parts = items.iter().map(scalar).collect::<Result<Vec<_>>>()?;
                flags.push(flag);
                flags.push(parts.join(","));
            }
            v => {
                flags.push(flag);
                flags.push(scalar(v)?);
            }
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_file_becomes_flags_that_the_command_line_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("run.toml");
        std::fs::write(
            &f,
            "optimizer = \"adamw\"\nlr = 0.001\nhidden = [256, 128]\nwarmup_steps = 500\nno_bias_decay = true\namsgrad = false\n",
        )
        .unwrap();
        let got = expand(argv(&[
            "descent",
            "train",
            "--epochs",
            "3",
            "--config",
            f.to_str().unwrap(),
            "--lr",
            "0.01",
        ]))
        .unwrap();
        let want = "descent train --hidden 256,128 --lr 0.001 --no-bias-decay --optimizer adamw \
                    --warmup-steps 500 --epochs 3 --lr 0.01";
        assert_eq!(got, want.split_whitespace().collect::<Vec<_>>());
        let cli = crate::cli::Cli::try_parse_from(&got).unwrap();
        let crate::cli::Command::Train(t) = cli.command else {
            panic!()
        };
        assert_eq!(
            (t.lr, t.hidden.clone(), t.optimizer.as_str()),
            (Some(0.01), Some(vec![256, 128]), "adamw")
        );
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.toml");
        std::fs::write(&f, "lr = = 1").unwrap();
        let e = expand(argv(&["descent", "train", "--config", f.to_str().unwrap()])).unwrap_err();
        assert!(e.to_string().contains("invalid --config"), "{e}");
        let e = expand(argv(&["descent", "train", "--config", "/no/such.toml"])).unwrap_err();
        assert!(e.to_string().contains("cannot read it"), "{e}");
        std::fs::write(&f, "resume = \"runs/x\"").unwrap();
        assert!(expand(argv(&["descent", "train", "--config", f.to_str().unwrap()])).is_err());
        assert!(expand(argv(&["descent", "train", "--config"])).is_err());
    }
}
