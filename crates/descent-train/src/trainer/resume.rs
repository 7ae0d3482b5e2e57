//! Checkpoints: everything the rest of a run depends on, in one safetensors file, and the
//! exact resume from it.

use std::path::Path;

use descent_optim::schedule::ReduceOnPlateau;

use super::{LoopState, Trainer};
use crate::TrainError;

impl Trainer {
    /// Writes everything the rest of the run depends on to one safetensors file, atomically:
    /// the weights (`model.*`, PyTorch's names), the optimizer's buffers
    /// (`optimizer.<buffer>.<tensor>`), early stopping's best weights (`best.*`), full-batch
    /// descent's partial gradient (`full_grad.*`), and the loop, optimizer and plateau state as
    /// JSON in the metadata.
    pub fn save_checkpoint(&self, path: &Path) -> Result<(), TrainError> {
        use crate::checkpoint::Tensor;
        let layout = self.net.layout();
        let mut tensors: Vec<Tensor<'_>> = Vec::new();
        let views = layout.views();
        for v in views {
            tensors.push((
                format!("model.{}", v.name),
                v.shape.clone(),
                &self.params[v.range()],
            ));
        }
        let opt = self.optimizer.state();
        for (name, ps) in &opt.params {
            for (buf, values) in &ps.buffers {
                tensors.push((format!("optimizer.{buf}.{name}"), ps.shape.clone(), values));
            }
        }
        if let Some(w) = &self.best_weights {
            for v in views {
                tensors.push((format!("best.{}", v.name), v.shape.clone(), &w[v.range()]));
            }
        }
        if self.cfg.full_batch() && self.pos.batch > 0 {
            for v in layout.params() {
                tensors.push((
                    format!("full_grad.{}", v.name),
                    v.shape.clone(),
                    &self.full_grad[v.range()],
                ));
            }
        }
        let json = |v: serde_json::Result<String>| v.expect("plain data serializes");
        let head = serde_json::json!({
            "optimizer": opt.optimizer,
            "step": opt.step,
            "scalars": opt.scalars,
        });
        let mut meta = std::collections::BTreeMap::new();
        meta.insert("format".into(), "descent-checkpoint-1".into());
        meta.insert("descent.model".into(), self.net.spec().to_json());
        meta.insert(
            "descent.loop".into(),
            json(serde_json::to_string(&self.pos)),
        );
        meta.insert("descent.optimizer".into(), head.to_string());
        meta.insert(
            "descent.plateau".into(),
            json(serde_json::to_string(&self.plateau)),
        );
        meta.insert(
            "descent.rng".into(),
            json(serde_json::to_string(&self.cfg.seed)),
        );
        crate::checkpoint::save_tensors(path, &tensors, &meta)?;
        Ok(())
    }

    /// Restores a checkpoint written by [`Trainer::save_checkpoint`] for the same model and
    /// optimizer; the next [`Trainer::run_split`] continues where it stopped, bit for bit.
    /// On error nothing changes.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<(), TrainError> {
        use crate::checkpoint::{load_tensors, CheckpointError};
        use descent_optim::{OptimizerState, ParamState};
        let (mut tensors, meta) = load_tensors(path)?;
        let bad = |why: String| {
            TrainError::Checkpoint(CheckpointError::Mismatch {
                path: path.to_path_buf(),
                why,
            })
        };
        if meta.get("format").map(String::as_str) != Some("descent-checkpoint-1") {
            return Err(bad(
                "it is not a descent checkpoint (a weights file: load it with `load_weights`)"
                    .into(),
            ));
        }
        let field = |key: &str| {
            meta.get(key)
                .ok_or_else(|| bad(format!("its metadata has no `{key}`")))
        };
        let pos: LoopState = serde_json::from_str(field("descent.loop")?)
            .map_err(|e| bad(format!("descent.loop: {e}")))?;
        let head: serde_json::Value = serde_json::from_str(field("descent.optimizer")?)
            .map_err(|e| bad(format!("descent.optimizer: {e}")))?;
        let plateau: Option<ReduceOnPlateau> = serde_json::from_str(field("descent.plateau")?)
            .map_err(|e| bad(format!("descent.plateau: {e}")))?;
        let layout = self.net.layout();
        // Weights are parameters and buffers; a gradient covers the parameters only.
        let mut take = |prefix: &str, required: bool, all: bool| {
            let n = if all {
                layout.len()
            } else {
                layout.trainable_len()
            };
            let mut out = vec![0.0f32; n];
            let views = layout.views().iter().filter(|v| all || v.trainable);
            for (i, v) in views.enumerate() {
                match tensors.remove(&format!("{prefix}.{}", v.name)) {
                    Some((shape, values)) if shape == v.shape => {
                        out[v.range()].copy_from_slice(&values)
                    }
                    Some((shape, _)) => {
                        return Err(bad(format!(
                            "`{prefix}.{}` has shape {shape:?} but the model's is {:?}",
                            v.name, v.shape
                        )))
                    }
                    None if !required && i == 0 => return Ok(None),
                    None => return Err(bad(format!("it has no `{prefix}.{}`", v.name))),
                }
            }
            Ok::<_, TrainError>(Some(out))
        };
        let params = take("model", true, true)?.expect("required");
        let best = take("best", false, true)?;
        let full_grad = take("full_grad", false, false)?;
        let mut state = OptimizerState {
            optimizer: head["optimizer"].as_str().unwrap_or_default().to_string(),
            step: head["step"].as_u64().unwrap_or(0),
            scalars: serde_json::from_value(head["scalars"].clone()).unwrap_or_default(),
            params: layout
                .params()
                .map(|v| {
                    (
                        v.name.clone(),
                        ParamState {
                            shape: v.shape.clone(),
                            buffers: Default::default(),
                        },
                    )
                })
                .collect(),
        };
        for (name, (shape, values)) in tensors {
            let Some(rest) = name.strip_prefix("optimizer.") else {
                return Err(bad(format!("unexpected tensor `{name}`")));
            };
            let Some((buf, tensor)) = rest.split_once('.') else {
                return Err(bad(format!("unexpected tensor `{name}`")));
            };
            match state.params.get_mut(tensor) {
                Some(ps) if ps.shape == shape => {
                    ps.buffers.insert(buf.to_string(), values);
                }
                _ => return Err(bad(format!("`{name}` does not fit the model's `{tensor}`"))),
            }
        }
        let mut optimizer = self.optimizer.clone();
        optimizer
            .load_state(&state)
            .map_err(|e| bad(e.to_string()))?;
        if plateau.is_some() != self.plateau.is_some() {
            return Err(bad(
                "it was saved with another schedule (reduce-on-plateau differs)".into(),
            ));
        }
        // Everything checked: commit.
        self.optimizer = optimizer;
        self.params = params;
        self.best_weights = best;
        if let Some(g) = full_grad {
            self.full_grad = g;
        }
        self.plateau = plateau;
        if let Some(p) = &self.plateau {
            self.optimizer.set_lr(p.lr as f32);
        }
        self.pos = pos;
        Ok(())
    }
}
