//! Tables from CSV files with a header: numeric feature columns and a target column, class
//! labels (strings or integers) mapped to indices, or numbers for regression. Every refusal
//! names the file, the line and the column.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{DataError, Dataset};

/// What a model learns from a table's target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// The target's distinct values are classes.
    Classify,
    /// The target is a number to predict.
    Regress,
}

/// What to do with a missing cell (empty, `NA`, `N/A`, `NaN`, `null`, `?`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Na {
    /// Refuse the file, naming the first missing cell.
    #[default]
    Refuse,
    /// Leave out every row with a missing cell.
    Drop,
    /// Keep rows with missing features (NaN, filled later with the training means, see
    /// [`crate::MeanImpute`]); a row whose target is missing is left out.
    Mean,
}

/// How to read a table.
#[derive(Clone, Debug, Default)]
pub struct CsvOptions {
    /// The target column's name; `None`: the last column.
    pub target: Option<String>,
    /// The feature columns' names; `None`: every column but the target.
    pub features: Option<Vec<String>>,
    /// The task; `None`: classify when the target has a non-numeric value or only integers
    /// of at most [`AUTO_CLASSES`] distinct values, regress otherwise.
    pub task: Option<Task>,
    /// Missing cells.
    pub na: Na,
}

/// The most distinct integer targets that an unstated task reads as classes.
pub const AUTO_CLASSES: usize = 32;

/// What a table's columns mean, kept with a model so that new rows are read the same way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    /// The feature columns, in the model's input order.
    pub features: Vec<String>,
    /// The target column.
    pub target: String,
    /// Classification or regression.
    pub task: Task,
    /// The class names by index (empty for regression).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// A table read from a file.
#[derive(Clone, Debug)]
pub struct Table {
    /// The rows (missing features as NaN when read with [`Na::Mean`]).
    pub data: Dataset,
    /// What the columns mean.
    pub schema: TableSchema,
    /// Rows left out for missing cells.
    pub dropped: usize,
    /// Missing feature cells kept (to impute).
    pub missing: usize,
}

/// New rows read with a model's schema: their features, and their targets when the file
/// has the target column.
#[derive(Clone, Debug)]
pub struct Rows {
    /// `len x features` values (missing ones as NaN when read with [`Na::Mean`]).
    pub x: Vec<f32>,
    /// Class indices (classification) or values (regression), if the file has the target.
    pub targets: Option<Targets>,
    /// The file's line of each row (1 is the header).
    pub lines: Vec<u64>,
}

/// A target column's values.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// Class indices of the schema's labels.
    Classes(Vec<u32>),
    /// Numbers.
    Values(Vec<f32>),
}

fn is_missing(cell: &str) -> bool {
    matches!(
        cell.trim(),
        "" | "NA" | "N/A" | "na" | "n/a" | "NaN" | "nan" | "NAN" | "null" | "NULL" | "?"
    )
}

/// A cell as a finite number: `Ok(None)` when missing, an error text when not a number.
fn number(cell: &str) -> Result<Option<f32>, String> {
    if is_missing(cell) {
        return Ok(None);
    }
    match cell.trim().parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        Ok(v) => Err(format!("`{}` is {v}: values must be finite", cell.trim())),
        Err(_) => Err(format!("`{}` is not a number", cell.trim())),
    }
}

fn err(path: &Path, why: String) -> DataError {
    DataError::Text {
        what: path.display().to_string(),
        why,
    }
}

/// The header and a reader positioned after it.
fn open(path: &Path) -> Result<(Vec<String>, csv::Reader<std::fs::File>), DataError> {
    let file = std::fs::File::open(path).map_err(DataError::io("reading", path))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(file);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| err(path, format!("cannot read the header: {e}")))?
        .iter()
        .map(|s| s.to_string())
        .collect();
    if header.iter().all(|h| h.is_empty()) {
        return Err(err(
            path,
            "the file is empty: a CSV table needs a header row naming its columns, then rows"
                .into(),
        ));
    }
    let mut seen = HashMap::new();
    for (i, h) in header.iter().enumerate() {
        if let Some(j) = seen.insert(h.as_str(), i) {
            return Err(err(
                path,
                format!("columns {} and {} are both named `{h}`", j + 1, i + 1),
            ));
        }
    }
    Ok((header, reader))
}

fn column(path: &Path, header: &[String], name: &str, what: &str) -> Result<usize, DataError> {
    header.iter().position(|h| h == name).ok_or_else(|| {
        err(
            path,
            format!(
                "the header has no {what} column `{name}` (its columns: {})",
                header.join(", ")
            ),
        )
    })
}

/// Calls `each(line, cells)` for every data row, after checking it has the header's width.
fn for_rows(
    path: &Path,
    reader: &mut csv::Reader<std::fs::File>,
    width: usize,
    mut each: impl FnMut(u64, &csv::StringRecord) -> Result<(), DataError>,
) -> Result<usize, DataError> {
    let mut record = csv::StringRecord::new();
    let mut rows = 0;
    loop {
        let more = reader.read_record(&mut record).map_err(|e| {
            let at = e
                .position()
                .map_or(String::new(), |p| format!("line {}: ", p.line()));
            err(path, format!("{at}{e}"))
        })?;
        if !more {
            break;
        }
        let line = record.position().map_or(0, |p| p.line());
        if record.len() == 1 && record[0].is_empty() {
            continue; // a blank line
        }
        if record.len() != width {
            return Err(err(
                path,
                format!(
                    "line {line} has {} fields, the header has {width}: every row needs one \
                     value per column",
                    record.len()
                ),
            ));
        }
        each(line, &record)?;
        rows += 1;
    }
    Ok(rows)
}

/// Reads a CSV table for training: its features, its target, and what they mean.
pub fn read_csv(path: &Path, opts: &CsvOptions) -> Result<Table, DataError> {
    let (header, mut reader) = open(path)?;
    let target = match &opts.target {
        Some(t) => column(path, &header, t, "target")?,
        None if header.len() < 2 => {
            return Err(err(
                path,
                format!(
                    "the header names {} column: a table needs feature columns and a target",
                    header.len()
                ),
            ))
        }
        None => header.len() - 1,
    };
    let features: Vec<usize> = match &opts.features {
        Some(names) => names
            .iter()
            .map(|n| column(path, &header, n, "feature"))
            .collect::<Result<_, _>>()?,
        None => (0..header.len()).filter(|&j| j != target).collect(),
    };
    if features.is_empty() {
        return Err(err(
            path,
            "no feature column is left besides the target".into(),
        ));
    }
    if let Some(&j) = features.iter().find(|&&j| j == target) {
        return Err(err(
            path,
            format!("`{}` is both the target and a feature", header[j]),
        ));
    }
    let (mut x, mut raw_targets) = (Vec::new(), Vec::<String>::new());
    let (mut dropped, mut missing) = (0, 0);
    let mut row = Vec::with_capacity(features.len());
    let rows = for_rows(path, &mut reader, header.len(), |line, rec| {
        row.clear();
        let mut gap = false;
        for &j in &features {
            match number(&rec[j]) {
                Ok(Some(v)) => row.push(v),
                Ok(None) if opts.na == Na::Refuse => {
                    return Err(err(
                        path,
                        format!(
                            "line {line}, column `{}`: the value is missing (drop such rows or \
                             fill them with the column's mean)",
                            header[j]
                        ),
                    ))
                }
                Ok(None) => {
                    gap = true;
                    row.push(f32::NAN);
                }
                Err(why) => {
                    return Err(err(
                        path,
                        format!(
                            "line {line}, column `{}`: {why} (feature columns must be numeric)",
                            header[j]
                        ),
                    ))
                }
            }
        }
        let t = rec[target].trim();
        if is_missing(t) {
            if opts.na == Na::Refuse {
                return Err(err(
                    path,
                    format!(
                        "line {line}, column `{}`: the target is missing (drop such rows)",
                        header[target]
                    ),
                ));
            }
            dropped += 1;
            return Ok(());
        }
        if gap && opts.na == Na::Drop {
            dropped += 1;
            return Ok(());
        }
        missing += row.iter().filter(|v| v.is_nan()).count();
        x.extend_from_slice(&row);
        raw_targets.push(t.to_string());
        Ok(())
    })?;
    if raw_targets.is_empty() {
        return Err(err(
            path,
            match rows {
                0 => "the file has a header but no rows".to_string(),
                n => format!("all {n} rows have missing cells and were left out"),
            },
        ));
    }
    let numbers: Option<Vec<f64>> = raw_targets.iter().map(|t| t.parse().ok()).collect();
    let integral = numbers
        .as_ref()
        .is_some_and(|v| v.iter().all(|n| n.fract() == 0.0 && n.abs() < 1e15));
    let task = opts.task.unwrap_or_else(|| {
        let few = || {
            let mut d: Vec<i64> = numbers.iter().flatten().map(|&n| n as i64).collect();
            d.sort_unstable();
            d.dedup();
            d.len() <= AUTO_CLASSES
        };
        match numbers.is_none() || integral && few() {
            true => Task::Classify,
            false => Task::Regress,
        }
    });
    let shape = [features.len()];
    let names: Vec<String> = features.iter().map(|&j| header[j].clone()).collect();
    let keep_missing = opts.na == Na::Mean;
    let (data, labels) = match task {
        Task::Regress => {
            let Some(values) = numbers else {
                let (i, bad) = raw_targets
                    .iter()
                    .enumerate()
                    .find(|(_, t)| t.parse::<f64>().is_err())
                    .expect("a non-number");
                return Err(err(
                    path,
                    format!(
                        "target `{}` of data row {}: `{bad}` is not a number, so the table \
                         cannot be a regression (is it a classification?)",
                        header[target],
                        i + 1
                    ),
                ));
            };
            if let Some(i) = values.iter().position(|v| !(*v as f32).is_finite()) {
                return Err(err(
                    path,
                    format!(
                        "target `{}` of data row {} is {}: targets must be finite",
                        header[target],
                        i + 1,
                        values[i]
                    ),
                ));
            }
            let y = values.iter().map(|&v| v as f32).collect();
            (
                Dataset::regression(&shape, x, y, 1, keep_missing)?,
                Vec::new(),
            )
        }
        Task::Classify => {
            let mut labels: Vec<String> = raw_targets.clone();
            if integral {
                labels.sort_by_key(|t| t.parse::<f64>().map_or(0, |n| n as i64));
            } else {
                labels.sort();
            }
            labels.dedup();
            if labels.len() > AUTO_CLASSES && labels.len() * 2 > raw_targets.len() {
                return Err(err(
                    path,
                    format!(
                        "target `{}` has {} distinct values in {} rows: fewer than two rows a \
                         class is not a classification (is it a regression?)",
                        header[target],
                        labels.len(),
                        raw_targets.len()
                    ),
                ));
            }
            if labels.len() < 2 {
                return Err(err(
                    path,
                    format!(
                        "target `{}` has a single class (`{}`): a classifier needs two or more",
                        header[target], labels[0]
                    ),
                ));
            }
            let index: HashMap<&str, u32> = labels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.as_str(), i as u32))
                .collect();
            let y = raw_targets.iter().map(|t| index[t.as_str()]).collect();
            let classes = labels.len();
            (
                Dataset::classes_with_missing(&shape, x, y, classes, keep_missing)?,
                labels,
            )
        }
    };
    Ok(Table {
        data,
        schema: TableSchema {
            features: names,
            target: header[target].clone(),
            task,
            labels,
        },
        dropped,
        missing,
    })
}

/// Reads new rows with `schema`'s feature columns (in any order, other columns ignored) and
/// its target when present. Missing features become NaN with [`Na::Mean`] (the caller fills
/// them), are refused otherwise; an unknown class label is refused.
pub fn read_csv_rows(path: &Path, schema: &TableSchema, na: Na) -> Result<Rows, DataError> {
    let (header, mut reader) = open(path)?;
    let features: Vec<usize> = schema
        .features
        .iter()
        .map(|n| column(path, &header, n, "feature"))
        .collect::<Result<_, _>>()?;
    let target = header.iter().position(|h| *h == schema.target);
    let index: HashMap<&str, u32> = schema
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i as u32))
        .collect();
    let mut out = Rows {
        x: Vec::new(),
        targets: target.map(|_| match schema.task {
            Task::Classify => Targets::Classes(Vec::new()),
            Task::Regress => Targets::Values(Vec::new()),
        }),
        lines: Vec::new(),
    };
    for_rows(path, &mut reader, header.len(), |line, rec| {
        for &j in &features {
            let v = number(&rec[j])
                .map_err(|why| err(path, format!("line {line}, column `{}`: {why}", header[j])))?;
            match v {
                Some(v) => out.x.push(v),
                None if na == Na::Mean => out.x.push(f32::NAN),
                None => {
                    return Err(err(
                        path,
                        format!("line {line}, column `{}`: the value is missing", header[j]),
                    ))
                }
            }
        }
        if let (Some(t), Some(targets)) = (target, &mut out.targets) {
            let cell = rec[t].trim();
            match targets {
                Targets::Classes(c) => c.push(*index.get(cell).ok_or_else(|| {
                    err(
                        path,
                        format!(
                            "line {line}: `{cell}` is not one of the model's classes ({})",
                            schema.labels.join(", ")
                        ),
                    )
                })?),
                Targets::Values(v) => v.push(number(cell).ok().flatten().ok_or_else(|| {
                    err(
                        path,
                        format!("line {line}: target `{cell}` is not a finite number"),
                    )
                })?),
            }
        }
        out.lines.push(line);
        Ok(())
    })?;
    if out.lines.is_empty() {
        return Err(err(path, "the file has a header but no rows".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    fn read(text: &str, opts: &CsvOptions) -> Result<Table, String> {
        let f = write(text);
        read_csv(f.path(), opts).map_err(|e| e.to_string())
    }

    #[test]
    fn string_labels_become_sorted_classes_and_every_value_round_trips() {
        let t = read(
            "a,b,kind\n1,2.5,cat\n-3,4e1,dog\n5,6,cat\n0.25,-0,bird\n",
            &CsvOptions::default(),
        )
        .unwrap();
        assert_eq!(t.schema.task, Task::Classify);
        assert_eq!(t.schema.labels, ["bird", "cat", "dog"]);
        assert_eq!(t.schema.features, ["a", "b"]);
        assert_eq!(
            t.data.images(),
            &[1.0, 2.5, -3.0, 40.0, 5.0, 6.0, 0.25, 0.0]
        );
        assert_eq!(t.data.labels(), &[1, 2, 1, 0]);
        assert_eq!(t.data.shape(), &[2]);
    }

    #[test]
    fn integer_labels_sort_numerically_and_floats_regress() {
        let t = read("x,y\n1,10\n2,2\n3,10\n4,-1\n", &CsvOptions::default()).unwrap();
        assert_eq!(t.schema.labels, ["-1", "2", "10"]);
        assert_eq!(t.data.labels(), &[2, 1, 2, 0]);
        let t = read("x,y\n1,0.5\n2,1.5\n", &CsvOptions::default()).unwrap();
        assert_eq!(t.schema.task, Task::Regress);
        assert_eq!(t.data.values(), &[0.5, 1.5]);
        // Asked to regress, integers are values; the target and features are chosen by name.
        let opts = CsvOptions {
            target: Some("x".into()),
            features: Some(vec!["z".into()]),
            task: Some(Task::Regress),
            ..Default::default()
        };
        let t = read("x,y,z\n1,a,7\n2,b,8\n", &opts).unwrap();
        assert_eq!(
            (t.data.values(), t.data.images()),
            (&[1.0, 2.0][..], &[7.0, 8.0][..])
        );
    }

    #[test]
    fn bad_tables_are_refused_with_the_line_and_column() {
        let o = CsvOptions::default();
        let cases = [
            ("", "the file is empty"),
            ("a,b\n", "a header but no rows"),
            ("a,b\n1,2\n3\n", "line 3 has 1 fields, the header has 2"),
            ("a,b\n1,x\nq,1\n", "line 3, column `a`: `q` is not a number"),
            ("a,b\n1,2\ninf,1\n", "line 3, column `a`: `inf` is inf"),
            ("a,b\n1,2\n,1\n", "line 3, column `a`: the value is missing"),
            (
                "a,b\n1,2\n2,NA\n",
                "line 3, column `b`: the target is missing",
            ),
            ("a,b\n1,x\n2,x\n", "a single class (`x`)"),
            ("a,a\n1,2\n", "both named `a`"),
        ];
        for (text, want) in cases {
            let e = read(text, &o).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let e = read(
            "a,b\n1,2\n",
            &CsvOptions {
                target: Some("price".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            e.contains("no target column `price` (its columns: a, b)"),
            "{e}"
        );
        let e = read(
            "a,b\n1,2.5\n2,x\n",
            &CsvOptions {
                task: Some(Task::Regress),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            e.contains("`x` is not a number") && e.contains("row 2"),
            "{e}"
        );
    }

    #[test]
    fn missing_cells_are_dropped_or_kept_for_imputation() {
        let text = "a,b,y\n1,2,u\n,4,v\nNA,6,u\n7,8,\n9,?,v\n5,8,v\n";
        let drop = CsvOptions {
            na: Na::Drop,
            ..Default::default()
        };
        let t = read(text, &drop).unwrap();
        assert_eq!((t.data.len(), t.dropped), (2, 4));
        assert_eq!(t.data.images(), &[1.0, 2.0, 5.0, 8.0]);
        let mean = CsvOptions {
            na: Na::Mean,
            ..Default::default()
        };
        let mut t = read(text, &mean).unwrap();
        assert_eq!((t.data.len(), t.dropped, t.missing), (5, 1, 3));
        assert!(t.data.has_missing());
        let imp = crate::MeanImpute::fit(&t.data, &t.schema.features).unwrap();
        assert_eq!(imp.means, vec![5.0, 5.0]);
        imp.apply(&mut t.data).unwrap();
        let filled = [1.0, 2.0, 5.0, 4.0, 5.0, 6.0, 9.0, 5.0, 5.0, 8.0];
        assert_eq!(t.data.images(), &filled);
    }

    #[test]
    fn new_rows_are_read_with_the_schema() {
        let t = read("a,b,kind\n1,2,cat\n3,4,dog\n", &CsvOptions::default()).unwrap();
        let f = write("b,kind,a,extra\n20,dog,10,x\n40,cat,30,y\n");
        let rows = read_csv_rows(f.path(), &t.schema, Na::Refuse).unwrap();
        assert_eq!(rows.x, vec![10.0, 20.0, 30.0, 40.0]);
        assert_eq!(rows.targets, Some(Targets::Classes(vec![1, 0])));
        assert_eq!(rows.lines, vec![2, 3]);
        let f = write("a,b\n1,2\n");
        let rows = read_csv_rows(f.path(), &t.schema, Na::Refuse).unwrap();
        assert_eq!(rows.targets, None);
        let f = write("a,b,kind\n1,2,cow\n");
        let e = read_csv_rows(f.path(), &t.schema, Na::Refuse)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`cow` is not one of the model's classes (cat, dog)"),
            "{e}"
        );
        let f = write("a,kind\n1,cat\n");
        let e = read_csv_rows(f.path(), &t.schema, Na::Refuse)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no feature column `b`"), "{e}");
    }
}
