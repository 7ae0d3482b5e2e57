//! Search-space distributions and parameter values.
//!
//! A trial stores each parameter as an *internal* `f64`: the value itself for floats and
//! integers, the index of the choice for categoricals (as Optuna does). Samplers work on
//! internal values; users see [`ParamValue`]s.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TuneError};

/// A value a parameter takes: a number, a switch or a string.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// A switch.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
}

impl ParamValue {
    /// The value as a number, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            ParamValue::Int(i) => Some(i as f64),
            ParamValue::Float(x) => Some(x),
            _ => None,
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Str(s) => write!(f, "{s}"),
        }
    }
}

impl From<bool> for ParamValue {
    fn from(v: bool) -> Self {
        ParamValue::Bool(v)
    }
}
impl From<i64> for ParamValue {
    fn from(v: i64) -> Self {
        ParamValue::Int(v)
    }
}
impl From<i32> for ParamValue {
    fn from(v: i32) -> Self {
        ParamValue::Int(v.into())
    }
}
impl From<usize> for ParamValue {
    fn from(v: usize) -> Self {
        ParamValue::Int(v as i64)
    }
}
impl From<f64> for ParamValue {
    fn from(v: f64) -> Self {
        ParamValue::Float(v)
    }
}
impl From<&str> for ParamValue {
    fn from(v: &str) -> Self {
        ParamValue::Str(v.to_string())
    }
}
impl From<String> for ParamValue {
    fn from(v: String) -> Self {
        ParamValue::Str(v)
    }
}

/// Where a parameter's values come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Distribution {
    /// Real numbers in `[low, high]`, uniform or log-uniform, optionally on a grid of `step`.
    Float {
        /// Lower bound.
        low: f64,
        /// Upper bound (inclusive).
        high: f64,
        /// Sample `ln x` uniformly instead of `x`.
        log: bool,
        /// Values are `low + k * step`.
        step: Option<f64>,
    },
    /// Integers in `[low, high]`, uniform or log-uniform, on a grid of `step`.
    Int {
        /// Lower bound.
        low: i64,
        /// Upper bound (inclusive).
        high: i64,
        /// Sample on a log scale.
        log: bool,
        /// Values are `low + k * step`.
        step: i64,
    },
    /// One of a list of choices.
    Categorical {
        /// The choices, in order.
        choices: Vec<ParamValue>,
    },
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Distribution::Float {
                low,
                high,
                log,
                step,
            } => {
                write!(f, "float [{low}, {high}]")?;
                if *log {
                    write!(f, " log")?;
                }
                if let Some(s) = step {
                    write!(f, " step {s}")?;
                }
                Ok(())
            }
            Distribution::Int {
                low,
                high,
                log,
                step,
            } => {
                write!(f, "int [{low}, {high}]")?;
                if *log {
                    write!(f, " log")?;
                }
                if *step != 1 {
                    write!(f, " step {step}")?;
                }
                Ok(())
            }
            Distribution::Categorical { choices } => {
                let c: Vec<String> = choices.iter().map(ToString::to_string).collect();
                write!(f, "one of {{{}}}", c.join(", "))
            }
        }
    }
}

impl Distribution {
    /// Uniform floats in `[low, high]`.
    pub fn float(low: f64, high: f64) -> Self {
        Distribution::Float {
            low,
            high,
            log: false,
            step: None,
        }
    }

    /// Log-uniform floats in `[low, high]` (`low > 0`).
    pub fn float_log(low: f64, high: f64) -> Self {
        Distribution::Float {
            low,
            high,
            log: true,
            step: None,
        }
    }

    /// Floats `low, low + step, ...` up to `high`.
    pub fn float_step(low: f64, high: f64, step: f64) -> Self {
        Distribution::Float {
            low,
            high,
            log: false,
            step: Some(step),
        }
    }

    /// Integers in `[low, high]`.
    pub fn int(low: i64, high: i64) -> Self {
        Distribution::Int {
            low,
            high,
            log: false,
            step: 1,
        }
    }

    /// Integers in `[low, high]` on a log scale (`low >= 1`).
    pub fn int_log(low: i64, high: i64) -> Self {
        Distribution::Int {
            low,
            high,
            log: true,
            step: 1,
        }
    }

    /// Integers `low, low + step, ...` up to `high`.
    pub fn int_step(low: i64, high: i64, step: i64) -> Self {
        Distribution::Int {
            low,
            high,
            log: false,
            step,
        }
    }

    /// One of `choices`.
    pub fn categorical<T: Into<ParamValue>>(choices: impl IntoIterator<Item = T>) -> Self {
        Distribution::Categorical {
            choices: choices.into_iter().map(Into::into).collect(),
        }
    }

    /// Checks the definition for parameter `name`; a float step that does not divide the
    /// range lowers `high` to the last value on the grid (as Optuna does).
    pub fn validated(mut self, name: &str) -> Result<Self> {
        let bad = |reason: String| TuneError::InvalidDistribution {
            name: name.to_string(),
            reason,
        };
        match &mut self {
            Distribution::Float {
                low,
                high,
                log,
                step,
            } => {
                if !low.is_finite() || !high.is_finite() {
                    return Err(bad(format!("bounds must be finite, got [{low}, {high}]")));
                }
                if low > high {
                    return Err(bad(format!("low {low} > high {high}: give low <= high")));
                }
                if *log && *low <= 0.0 {
                    return Err(bad(format!(
                        "a log scale needs low > 0, got low {low}: use a positive lower bound \
                         or a uniform scale"
                    )));
                }
                if let Some(s) = *step {
                    if *log {
                        return Err(bad(
                            "a step and a log scale cannot be combined: drop one".into()
                        ));
                    }
                    if !(s > 0.0 && s.is_finite()) {
                        return Err(bad(format!("step must be > 0, got {s}")));
                    }
                    let k = ((*high - *low) / s + 1e-9).floor();
                    *high = *low + k * s;
                }
            }
            Distribution::Int {
                low,
                high,
                log,
                step,
            } => {
                if low > high {
                    return Err(bad(format!("low {low} > high {high}: give low <= high")));
                }
                if *log && *low < 1 {
                    return Err(bad(format!(
                        "a log scale needs low >= 1, got low {low}: use a positive lower bound \
                         or a uniform scale"
                    )));
                }
                if *step < 1 {
                    return Err(bad(format!("step must be >= 1, got {step}")));
                }
                if *log && *step != 1 {
                    return Err(bad(
                        "a step and a log scale cannot be combined: drop one".into()
                    ));
                }
                *high = *low + (*high - *low) / *step * *step;
            }
            Distribution::Categorical { choices } => {
                if choices.is_empty() {
                    return Err(bad("no choices: give at least one".into()));
                }
                for (i, c) in choices.iter().enumerate() {
                    if let ParamValue::Float(x) = c {
                        if x.is_nan() {
                            return Err(bad("a choice is NaN".into()));
                        }
                    }
                    if choices[..i].contains(c) {
                        return Err(bad(format!("choice {c} is listed twice")));
                    }
                }
            }
        }
        Ok(self)
    }

    /// Whether `other` can stand for the same parameter in one study: same kind, scale, step
    /// and choices (bounds may differ).
    pub fn compatible(&self, other: &Distribution) -> bool {
        match (self, other) {
            (
                Distribution::Float { log, step, .. },
                Distribution::Float {
                    log: l2, step: s2, ..
                },
            ) => log == l2 && step == s2,
            (
                Distribution::Int { log, step, .. },
                Distribution::Int {
                    log: l2, step: s2, ..
                },
            ) => log == l2 && step == s2,
            (Distribution::Categorical { choices }, Distribution::Categorical { choices: c2 }) => {
                choices == c2
            }
            _ => false,
        }
    }

    /// Whether an internal value lies in this distribution.
    pub fn contains(&self, internal: f64) -> bool {
        if !internal.is_finite() {
            return false;
        }
        match self {
            Distribution::Float {
                low, high, step, ..
            } => {
                // A grid's last value may sit an ulp above the computed `high`.
                let slack = 1e-12 * high.abs().max(1.0);
                if internal < *low || internal > *high + slack {
                    return false;
                }
                match step {
                    None => true,
                    Some(s) => {
                        let k = (internal - low) / s;
                        (k - k.round()).abs() < 1e-6
                    }
                }
            }
            Distribution::Int {
                low, high, step, ..
            } => {
                internal.fract() == 0.0
                    && internal >= *low as f64
                    && internal <= *high as f64
                    && (internal as i64 - low) % step == 0
            }
            Distribution::Categorical { choices } => {
                internal.fract() == 0.0 && internal >= 0.0 && (internal as usize) < choices.len()
            }
        }
    }

    /// The value a user sees for an internal value.
    pub fn to_external(&self, internal: f64) -> ParamValue {
        match self {
            Distribution::Float { .. } => ParamValue::Float(internal),
            Distribution::Int { .. } => ParamValue::Int(internal.round() as i64),
            Distribution::Categorical { choices } => {
                choices[(internal.max(0.0) as usize).min(choices.len() - 1)].clone()
            }
        }
    }

    /// The internal value of a user's value, if the distribution holds it.
    pub fn to_internal(&self, value: &ParamValue) -> Option<f64> {
        let internal = match self {
            Distribution::Float { .. } | Distribution::Int { .. } => value.as_f64()?,
            Distribution::Categorical { choices } => choices
                .iter()
                .position(|c| c == value || c.as_f64().is_some_and(|x| Some(x) == value.as_f64()))?
                as f64,
        };
        self.contains(internal).then_some(internal)
    }

    /// The number of values, for discrete distributions.
    pub fn cardinality(&self) -> Option<u64> {
        match self {
            Distribution::Float { step: None, .. } => None,
            Distribution::Float {
                low,
                high,
                step: Some(s),
                ..
            } => Some(((high - low) / s + 1e-9).floor() as u64 + 1),
            Distribution::Int {
                low, high, step, ..
            } => Some(((high - low) / step) as u64 + 1),
            Distribution::Categorical { choices } => Some(choices.len() as u64),
        }
    }

    /// Maps a uniform `u` in `[0, 1)` into the distribution (its scale respected): what
    /// random sampling draws.
    pub fn from_unit(&self, u: f64) -> f64 {
        match self {
            Distribution::Float {
                low,
                high,
                log,
                step,
            } => match (log, step) {
                (true, _) => (low.ln() + u * (high.ln() - low.ln()))
                    .exp()
                    .clamp(*low, *high),
                (false, Some(s)) => {
                    let n = self.cardinality().unwrap_or(1) as f64;
                    low + (u * n).floor().min(n - 1.0) * s
                }
                (false, None) => (low + u * (high - low)).clamp(*low, *high),
            },
            Distribution::Int {
                low,
                high,
                log,
                step,
            } => {
                if *log {
                    let lo = (*low as f64 - 0.5).ln();
                    let hi = (*high as f64 + 0.5).ln();
                    ((lo + u * (hi - lo)).exp().round()).clamp(*low as f64, *high as f64)
                } else {
                    let n = self.cardinality().unwrap_or(1) as f64;
                    *low as f64 + (u * n).floor().min(n - 1.0) * *step as f64
                }
            }
            Distribution::Categorical { choices } => {
                let n = choices.len() as f64;
                (u * n).floor().min(n - 1.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_definitions_name_the_parameter_and_the_fix() {
        let cases: Vec<(Distribution, &str)> = vec![
            (Distribution::float(1.0, 0.0), "low 1 > high 0"),
            (Distribution::float_log(0.0, 1.0), "log scale needs low > 0"),
            (Distribution::float_step(0.0, 1.0, 0.0), "step must be > 0"),
            (Distribution::int(5, 2), "low 5 > high 2"),
            (Distribution::int_log(0, 8), "needs low >= 1"),
            (Distribution::int_step(0, 8, 0), "step must be >= 1"),
            (Distribution::Categorical { choices: vec![] }, "no choices"),
            (Distribution::float(f64::NAN, 1.0), "finite"),
        ];
        for (d, want) in cases {
            let e = d.clone().validated("lr").unwrap_err().to_string();
            assert!(e.contains("`lr`") && e.contains(want), "{d:?}: {e}");
        }
    }

    #[test]
    fn float_step_lowers_high_to_the_grid() {
        let d = Distribution::float_step(0.0, 1.0, 0.3)
            .validated("x")
            .unwrap();
        assert_eq!(d.cardinality(), Some(4));
        assert!(d.contains(0.9) && !d.contains(1.0) && !d.contains(0.5));
    }

    #[test]
    fn internal_and_external_values_round_trip() {
        let c = Distribution::categorical(["sgd", "adam"]);
        assert_eq!(c.to_internal(&"adam".into()), Some(1.0));
        assert_eq!(c.to_external(1.0), ParamValue::from("adam"));
        assert_eq!(c.to_internal(&"lion".into()), None);
        let i = Distribution::int_step(2, 10, 2);
        assert_eq!(i.to_internal(&ParamValue::Int(6)), Some(6.0));
        assert_eq!(i.to_internal(&ParamValue::Int(5)), None);
        let l = Distribution::float_log(1e-4, 1.0);
        for k in 0..100 {
            let x = l.from_unit(k as f64 / 100.0);
            assert!(l.contains(x), "{x}");
        }
    }

    #[test]
    fn compatibility_ignores_bounds_but_not_kind_scale_or_choices() {
        assert!(Distribution::float(0.0, 1.0).compatible(&Distribution::float(0.0, 2.0)));
        assert!(!Distribution::float(0.1, 1.0).compatible(&Distribution::float_log(0.1, 1.0)));
        assert!(!Distribution::float(0.0, 1.0).compatible(&Distribution::int(0, 1)));
        assert!(!Distribution::categorical([1, 2]).compatible(&Distribution::categorical([1, 3])));
    }
}
