//! Model weights as safetensors files, with PyTorch's tensor names and layouts
//! (`fc1.weight` is `[out, in]` row-major f32), so that `safetensors.torch.load_file` and
//! `load_state_dict` read them into the seed's `Net`, and weights PyTorch saved load here.
//!
//! Files are written atomically: a temporary file in the same folder, synced, then renamed
//! over the destination. Reading checks every name, shape and dtype against the model.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use descent_nn::ParamLayout;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

/// What can go wrong with a weights file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not a safetensors file, or a damaged one.
    #[error("{path} is not a readable safetensors file ({why}); was it truncated or overwritten?")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        why: String,
    },
    /// Tensors holding NaN or infinite values: the run that wrote them diverged.
    #[error(
        "{path} holds values that are not finite numbers (NaN or infinite): {counts}; the run \
         that wrote it diverged, and nothing trained or evaluated from it means anything"
    )]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// Each damaged tensor with how many of its values are not finite, as
        /// `fc1.weight (12 of 401408)`.
        counts: String,
    },
    /// A valid file whose tensors do not fit the model.
    #[error("{path} does not fit the model: {why}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Which names, shapes or dtypes differ.
        why: String,
    },
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> CheckpointError + 'a {
    move |source| CheckpointError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically: nothing is left behind on failure, and a reader sees
/// either the old file or the whole new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io("creating a temporary file in", dir))?;
    tmp.write_all(bytes).map_err(io("writing", tmp.path()))?;
    tmp.as_file()
        .sync_all()
        .map_err(io("syncing", tmp.path()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(path).map_err(|e| CheckpointError::Io {
        action: "renaming into",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// Whether a tensor is a count that PyTorch keeps as int64 (BatchNorm's
/// `num_batches_tracked`); descent holds it as f32 (exact up to 2^24 batches) and writes it
/// as I64.
fn is_count(name: &str) -> bool {
    name.ends_with("num_batches_tracked")
}

/// The values of a tensor as f32: F32 as they are, a count (I64) converted.
fn f32_values(name: &str, t: &TensorView<'_>) -> Result<Vec<f32>, String> {
    match t.dtype() {
        Dtype::F32 => Ok(t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("chunks of 4")))
            .collect()),
        Dtype::I64 if is_count(name) => Ok(t
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("chunks of 8")) as f32)
            .collect()),
        other => Err(format!(
            "`{name}` is {other:?}, not F32 (save it with .float())"
        )),
    }
}

/// One named f32 tensor to write: name, shape, values.
pub type Tensor<'a> = (String, Vec<usize>, &'a [f32]);

/// Saves named f32 tensors and string `metadata` as one safetensors file at `path`,
/// atomically.
pub fn save_tensors(
    path: &Path,
    tensors: &[Tensor<'_>],
    metadata: &BTreeMap<String, String>,
) -> Result<(), CheckpointError> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(name, _, v)| match is_count(name) {
            true => v.iter().flat_map(|x| (*x as i64).to_le_bytes()).collect(),
            false => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            let dtype = if is_count(name) {
                Dtype::I64
            } else {
                Dtype::F32
            };
            let view = TensorView::new(dtype, shape.clone(), b).expect("shape fits the data");
            (name.clone(), view)
        })
        .collect();
    let info: HashMap<String, String> = metadata.clone().into_iter().collect();
    let corrupt = |why: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        why,
    };
    let file = safetensors::serialize(views, Some(info)).map_err(|e| corrupt(e.to_string()))?;
    write_atomic(path, &sorted_header(file).map_err(corrupt)?)
}

/// The safetensors bytes `file` with its JSON header's keys in sorted order. `safetensors`
/// writes the metadata from a `HashMap`, whose order changes from run to run; sorted, the same
/// tensors and metadata always give the same bytes, so files can be compared by checksum.
fn sorted_header(file: Vec<u8>) -> Result<Vec<u8>, String> {
    let len_bytes: [u8; 8] = file
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or("no header")?;
    let len = u64::from_le_bytes(len_bytes) as usize;
    let header = file.get(8..8 + len).ok_or("a header past the end")?;
    // serde_json's map is a BTreeMap: parsing and writing again sorts every object's keys.
    let value: serde_json::Value = serde_json::from_slice(header).map_err(|e| e.to_string())?;
    let mut json = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
    // The same length as before (the same content, compact either way) padded with spaces to a
    // multiple of 8, as safetensors pads it, so the tensors' offsets stay valid.
    while json.len() < len {
        json.push(b' ');
    }
    if json.len() != len {
        return Err(format!(
            "a header of {} bytes re-encoded as {}",
            len,
            json.len()
        ));
    }
    let mut out = Vec::with_capacity(file.len());
    out.extend_from_slice(&len_bytes);
    out.extend_from_slice(&json);
    out.extend_from_slice(&file[8 + len..]);
    Ok(out)
}

/// Every tensor of a safetensors file (as f32, shape and values) and its metadata.
pub type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Reads every tensor of the file at `path` (all must be F32) and its metadata.
pub fn load_tensors(path: &Path) -> Result<(Tensors, BTreeMap<String, String>), CheckpointError> {
    let bytes = std::fs::read(path).map_err(io("reading", path))?;
    let corrupt = |why: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        why,
    };
    let file = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, t) in file.iter() {
        let values = f32_values(name, &t).map_err(|why| CheckpointError::Mismatch {
            path: path.to_path_buf(),
            why,
        })?;
        out.insert(name.to_string(), (t.shape().to_vec(), values));
    }
    let counts = nonfinite_counts(out.iter().map(|(n, (_, v))| (n.as_str(), v.as_slice())));
    if !counts.is_empty() {
        return Err(CheckpointError::NonFinite {
            path: path.to_path_buf(),
            counts,
        });
    }
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let metadata = meta
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok((out, metadata))
}

/// Saves `params` (laid out by `layout`) as a safetensors file at `path`, with `metadata`
/// (strings) in its header.
pub fn save_weights(
    path: &Path,
    layout: &ParamLayout,
    params: &[f32],
    metadata: &BTreeMap<String, String>,
) -> Result<(), CheckpointError> {
    assert_eq!(
        params.len(),
        layout.len(),
        "parameters laid out by the layout"
    );
    let tensors: Vec<Tensor<'_>> = layout
        .views()
        .iter()
        .map(|v| (v.name.clone(), v.shape.clone(), &params[v.range()]))
        .collect();
    save_tensors(path, &tensors, metadata)
}

/// The metadata in the header of the safetensors file at `path` (descent records the model's
/// architecture there), without checking the tensors.
pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>, CheckpointError> {
    let bytes = std::fs::read(path).map_err(io("reading", path))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    Ok(meta
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect())
}

/// `name (bad of all)` for every tensor holding NaN or infinite values, comma-separated; empty
/// when every value is finite.
fn nonfinite_counts<'a>(tensors: impl Iterator<Item = (&'a str, &'a [f32])>) -> String {
    let mut out = Vec::new();
    for (name, v) in tensors {
        let bad = v.iter().filter(|x| !x.is_finite()).count();
        if bad > 0 {
            out.push(format!("{name} ({bad} of {})", v.len()));
        }
    }
    out.join(", ")
}

/// Reads the weights at `path` into a buffer laid out by `layout`, refusing missing or
/// unexpected names, other shapes, other dtypes and values that are not finite. Returns the
/// buffer and the file's metadata.
pub fn load_weights(
    path: &Path,
    layout: &ParamLayout,
) -> Result<(Vec<f32>, BTreeMap<String, String>), CheckpointError> {
    load_weights_checked(path, layout, true)
}

/// [`load_weights`] that accepts NaN and infinite values, to look at what a diverged run left
/// (evaluating it shows how far it went); nothing should train from such weights.
pub fn load_weights_allowing_nonfinite(
    path: &Path,
    layout: &ParamLayout,
) -> Result<(Vec<f32>, BTreeMap<String, String>), CheckpointError> {
    load_weights_checked(path, layout, false)
}

fn load_weights_checked(
    path: &Path,
    layout: &ParamLayout,
    finite: bool,
) -> Result<(Vec<f32>, BTreeMap<String, String>), CheckpointError> {
    let bytes = std::fs::read(path).map_err(io("reading", path))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    let mismatch = |why: String| CheckpointError::Mismatch {
        path: path.to_path_buf(),
        why,
    };
    let names = file.names();
    let missing: Vec<&str> = layout
        .views()
        .iter()
        .map(|v| v.name.as_str())
        .filter(|n| !names.contains(n))
        .collect();
    let mut unexpected: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| layout.get(n).is_none())
        .collect();
    unexpected.sort();
    if !missing.is_empty() || !unexpected.is_empty() {
        let list = |v: &[&str]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        return Err(mismatch(format!(
            "missing {}; unexpected {} (the model has {})",
            list(&missing),
            list(&unexpected),
            list(
                &layout
                    .views()
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
            )
        )));
    }
    let mut params = vec![0.0f32; layout.len()];
    for v in layout.views() {
        let t = file.tensor(&v.name).map_err(|e| mismatch(e.to_string()))?;
        if t.shape() != v.shape.as_slice() {
            return Err(mismatch(format!(
                "`{}` has shape {:?} but the model's is {:?}",
                v.name,
                t.shape(),
                v.shape
            )));
        }
        params[v.range()].copy_from_slice(&f32_values(&v.name, &t).map_err(mismatch)?);
    }
    if finite {
        let views = layout.views();
        let counts = nonfinite_counts(views.iter().map(|v| (v.name.as_str(), &params[v.range()])));
        if !counts.is_empty() {
            return Err(CheckpointError::NonFinite {
                path: path.to_path_buf(),
                counts,
            });
        }
    }
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    let metadata = meta
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok((params, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;
    use descent_nn::{Activation, Model};
    use descent_tensor::Rng;

    fn net(hidden: usize) -> Model {
        Model::mlp(6, &[hidden], 3, Activation::Relu, 0.0).unwrap()
    }

    #[test]
    fn weights_round_trip_with_names_shapes_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let n = net(4);
        let p = n.init_params(&mut Rng::new(3));
        let meta = BTreeMap::from([("descent".to_string(), "0.1.0".to_string())]);
        save_weights(&path, n.layout(), &p, &meta).unwrap();
        let (q, m) = load_weights(&path, n.layout()).unwrap();
        assert_eq!(p, q);
        assert_eq!(m["descent"], "0.1.0");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
    }

    #[test]
    fn non_finite_values_are_refused_with_each_tensor_and_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        let bad = [1.0, f32::NAN, f32::INFINITY, 2.0];
        let tensors: Vec<Tensor<'_>> = vec![
            ("m.fc1.weight".into(), vec![2, 2], &bad),
            ("m.fc1.bias".into(), vec![2], &[0.0, 1.0]),
        ];
        save_tensors(&path, &tensors, &BTreeMap::new()).unwrap();
        let e = load_tensors(&path).unwrap_err().to_string();
        assert!(
            e.contains("m.fc1.weight (2 of 4)") && !e.contains("m.fc1.bias"),
            "{e}"
        );
        let net = net(2);
        let mut params = net.init_params(&mut descent_tensor::Rng::new(0));
        params[0] = f32::NEG_INFINITY;
        save_weights(&path, net.layout(), &params, &BTreeMap::new()).unwrap();
        let e = load_weights(&path, net.layout()).unwrap_err();
        assert!(matches!(e, CheckpointError::NonFinite { .. }), "{e}");
        let (read, _) = load_weights_allowing_nonfinite(&path, net.layout()).unwrap();
        assert_eq!(read[0], f32::NEG_INFINITY);
    }

    #[test]
    fn other_models_and_damaged_files_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let n = net(4);
        save_weights(
            &path,
            n.layout(),
            &n.init_params(&mut Rng::new(1)),
            &BTreeMap::new(),
        )
        .unwrap();
        let e = load_weights(&path, net(5).layout())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`fc1.weight` has shape [4, 6] but the model's is [5, 6]"),
            "{e}"
        );
        let deeper = Model::mlp(6, &[4, 4], 3, Activation::Relu, 0.0).unwrap();
        let e = load_weights(&path, deeper.layout())
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing fc3.weight, fc3.bias"), "{e}");

        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
        let e = load_weights(&path, n.layout()).unwrap_err();
        assert!(matches!(e, CheckpointError::Corrupt { .. }), "{e}");
        std::fs::write(&path, b"not a checkpoint at all").unwrap();
        assert!(matches!(
            load_weights(&path, n.layout()),
            Err(CheckpointError::Corrupt { .. })
        ));
        let e = load_weights(&dir.path().join("none.safetensors"), n.layout()).unwrap_err();
        assert!(e.to_string().starts_with("reading "), "{e}");
    }

    #[test]
    fn an_unwritable_destination_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let n = net(4);
        let p = n.init_params(&mut Rng::new(1));
        let e = save_weights(
            &dir.path().join("no/such/dir/w.safetensors"),
            n.layout(),
            &p,
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("creating a temporary file in"),
            "{e}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
