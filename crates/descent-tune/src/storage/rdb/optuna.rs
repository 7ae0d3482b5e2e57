//! How Optuna's RDB schema spells descent's values: distributions as Optuna's JSON, trial
//! states and study directions as its enum labels, objective values with their type.

use serde_json::{json, Value as Json};

use crate::distribution::{Distribution, ParamValue};
use crate::trial::{Direction, TrialState};

/// Optuna's schema version (`version_info.schema_version`) that this build writes and reads.
pub(crate) const SCHEMA_VERSION: i64 = 12;
/// Optuna's alembic revision of that schema (`alembic_version.version_num`).
pub(crate) const ALEMBIC_REVISION: &str = "v3.2.0.a";

/// The `fixed_params` system attribute: an enqueued trial's parameters, as Optuna writes it.
pub(crate) const FIXED_PARAMS: &str = "fixed_params";
/// The system attribute of a failed trial's reason, as Optuna writes it.
pub(crate) const FAIL_REASON: &str = "fail_reason";
/// descent's message for a trial that did not fail (a system attribute).
pub(crate) const MESSAGE: &str = "descent:message";
/// Which process runs a trial (`host:pid`), a system attribute.
pub(crate) const OWNER: &str = "descent:owner";
pub(crate) fn state_label(s: TrialState) -> &'static str {
    match s {
        TrialState::Waiting => "WAITING",
        TrialState::Running => "RUNNING",
        TrialState::Complete => "COMPLETE",
        TrialState::Pruned => "PRUNED",
        TrialState::Fail => "FAIL",
    }
}

pub(crate) fn parse_state(s: &str) -> Option<TrialState> {
    Some(match s {
        "WAITING" => TrialState::Waiting,
        "RUNNING" => TrialState::Running,
        "COMPLETE" => TrialState::Complete,
        "PRUNED" => TrialState::Pruned,
        "FAIL" => TrialState::Fail,
        _ => return None,
    })
}

pub(crate) fn direction_label(d: Direction) -> &'static str {
    match d {
        Direction::Minimize => "MINIMIZE",
        Direction::Maximize => "MAXIMIZE",
    }
}

pub(crate) fn parse_direction(s: &str) -> Option<Direction> {
    match s {
        "MINIMIZE" => Some(Direction::Minimize),
        "MAXIMIZE" => Some(Direction::Maximize),
        _ => None,
    }
}

/// An objective value as Optuna stores it: infinities as a type with no number.
pub(crate) fn value_repr(v: f64) -> (Option<f64>, &'static str) {
    if v == f64::INFINITY {
        (None, "INF_POS")
    } else if v == f64::NEG_INFINITY {
        (None, "INF_NEG")
    } else if v.is_nan() {
        (None, "NAN")
    } else {
        (Some(v), "FINITE")
    }
}

/// The value of a stored `(value, value_type)`.
pub(crate) fn value_from(v: Option<f64>, kind: &str) -> Option<f64> {
    match kind {
        "INF_POS" => Some(f64::INFINITY),
        "INF_NEG" => Some(f64::NEG_INFINITY),
        "NAN" => Some(f64::NAN),
        _ => v,
    }
}

fn choice_json(c: &ParamValue) -> Json {
    match c {
        ParamValue::Bool(b) => json!(b),
        ParamValue::Int(i) => json!(i),
        ParamValue::Float(x) => json!(x),
        ParamValue::Str(s) => json!(s),
    }
}

/// A distribution in Optuna's JSON (`distribution_to_json`).
pub(crate) fn distribution_json(d: &Distribution) -> String {
    let v = match d {
        Distribution::Float {
            low,
            high,
            log,
            step,
        } => json!({"name": "FloatDistribution",
                    "attributes": {"step": step, "low": low, "high": high, "log": log}}),
        Distribution::Int {
            low,
            high,
            log,
            step,
        } => json!({"name": "IntDistribution",
                    "attributes": {"log": log, "step": step, "low": low, "high": high}}),
        Distribution::Categorical { choices } => json!({"name": "CategoricalDistribution",
            "attributes": {"choices": choices.iter().map(choice_json).collect::<Vec<_>>()}}),
    };
    v.to_string()
}

/// Reads Optuna's JSON of a distribution, its abbreviated form, or one of its classes before
/// 3.0 (`UniformDistribution`, `LogUniformDistribution`, ...).
pub(crate) fn parse_distribution(text: &str) -> Result<Distribution, String> {
    let v: Json = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let Some(name) = v.get("name").and_then(Json::as_str) else {
        // The abbreviated form is descent's own serde form.
        return serde_json::from_value(v).map_err(|e| e.to_string());
    };
    let a = v.get("attributes").cloned().unwrap_or(Json::Null);
    let f = |k: &str| {
        a.get(k)
            .and_then(Json::as_f64)
            .ok_or_else(|| format!("{name} has no number `{k}`"))
    };
    let i = |k: &str| {
        a.get(k)
            .and_then(Json::as_i64)
            .ok_or_else(|| format!("{name} has no integer `{k}`"))
    };
    let flag = |k: &str| a.get(k).and_then(Json::as_bool).unwrap_or(false);
    let int_step = || a.get("step").and_then(Json::as_i64).unwrap_or(1);
    Ok(match name {
        "FloatDistribution" => Distribution::Float {
            low: f("low")?,
            high: f("high")?,
            log: flag("log"),
            step: a.get("step").and_then(Json::as_f64),
        },
        "UniformDistribution" => Distribution::Float {
            low: f("low")?,
            high: f("high")?,
            log: false,
            step: None,
        },
        "LogUniformDistribution" => Distribution::Float {
            low: f("low")?,
            high: f("high")?,
            log: true,
            step: None,
        },
        "DiscreteUniformDistribution" => Distribution::Float {
            low: f("low")?,
            high: f("high")?,
            log: false,
            step: Some(f("q")?),
        },
        "IntDistribution" | "IntUniformDistribution" | "IntLogUniformDistribution" => {
            Distribution::Int {
                low: i("low")?,
                high: i("high")?,
                log: flag("log") || name == "IntLogUniformDistribution",
                step: int_step(),
            }
        }
        "CategoricalDistribution" => {
            let choices = a
                .get("choices")
                .and_then(Json::as_array)
                .ok_or_else(|| format!("{name} has no list `choices`"))?;
            let choices = choices
                .iter()
                .map(|c| {
                    serde_json::from_value::<ParamValue>(c.clone())
                        .map_err(|_| format!("a choice {c} is not a number, a switch or a string"))
                })
                .collect::<Result<_, _>>()?;
            Distribution::Categorical { choices }
        }
        other => return Err(format!("unknown distribution `{other}`")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_round_trip_in_optunas_json() {
        for d in [
            Distribution::Float {
                low: 1e-4,
                high: 0.3,
                log: true,
                step: None,
            },
            Distribution::Float {
                low: 0.0,
                high: 1.0,
                log: false,
                step: Some(0.25),
            },
            Distribution::Int {
                low: 1,
                high: 100,
                log: true,
                step: 1,
            },
            Distribution::Categorical {
                choices: vec!["p".into(), ParamValue::Int(3), ParamValue::Bool(true)],
            },
        ] {
            assert_eq!(parse_distribution(&distribution_json(&d)), Ok(d));
        }
    }

    #[test]
    fn reads_what_optuna_wrote() {
        // Copied from a study written by Optuna 5.1 and from one written before Optuna 3.0.
        let int = r#"{"name": "IntDistribution", "attributes": {"log": true, "step": 1, "low": 1, "high": 100}}"#;
        assert_eq!(
            parse_distribution(int),
            Ok(Distribution::Int {
                low: 1,
                high: 100,
                log: true,
                step: 1
            })
        );
        let old = r#"{"name": "DiscreteUniformDistribution", "attributes": {"low": 0.0, "high": 1.0, "q": 0.1}}"#;
        assert_eq!(
            parse_distribution(old),
            Ok(Distribution::Float {
                low: 0.0,
                high: 1.0,
                log: false,
                step: Some(0.1)
            })
        );
        let none = r#"{"name": "CategoricalDistribution", "attributes": {"choices": [null, 1]}}"#;
        assert!(parse_distribution(none).unwrap_err().contains("null"));
        assert!(parse_distribution(r#"{"name": "Weird", "attributes": {}}"#)
            .unwrap_err()
            .contains("Weird"));
    }

    #[test]
    fn infinities_are_types() {
        assert_eq!(value_repr(f64::INFINITY), (None, "INF_POS"));
        assert_eq!(value_from(None, "INF_NEG"), Some(f64::NEG_INFINITY));
        assert_eq!(value_from(Some(2.5), "FINITE"), Some(2.5));
        assert!(value_from(None, "NAN").unwrap().is_nan());
    }
}
