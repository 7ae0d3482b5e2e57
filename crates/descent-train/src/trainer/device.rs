//! Training steps on a [`Backend`] other than the CPU engine (a GPU): the parameters, their
//! gradients and the optimizer's state stay on the device; each batch goes up, the model's
//! device program and the optimizer's fused update run there, and the batch's loss and
//! accuracy count come back. The host's weights are brought up to date before anything reads
//! them (evaluation, early stopping, the run's end).

use descent_data::Dataset;
use descent_nn::{DeviceProgram, LossStats, Targets};
use descent_tensor::backend::{Backend, Region, Span, Update};

use super::epoch::Batch;
use super::Trainer;
use crate::TrainError;

/// The device a trainer runs its steps on, and where things are there.
pub(super) struct OnDevice {
    be: Box<dyn Backend>,
    prog: DeviceProgram,
    /// Trainable values.
    n: usize,
    /// The optimizer's scalars of the step, then the batch's loss sum and correct count.
    hyper: Span,
    stats: Span,
    /// Whether the device's weights are ahead of the host's.
    ahead: bool,
}

fn device_error(device: &str, e: impl std::fmt::Display) -> TrainError {
    TrainError::Setting {
        name: "device".into(),
        value: device.to_string(),
        why: e.to_string(),
    }
}

impl Trainer {
    /// Runs the training steps on `be` from now on. Refused, with the reason, for what the
    /// device path does not have yet: a model or loss without a device program, an optimizer
    /// without a device update, gradient accumulation, full-batch descent, clipping, L1, a
    /// started run (resume), checkpoints.
    pub fn set_backend(&mut self, mut be: Box<dyn Backend>) -> Result<(), TrainError> {
        let device = be.device().to_string();
        let refuse = |why: &str| Err(device_error(&device, why));
        let c = &self.cfg;
        if c.grad_accum > 1 || c.full_batch() || c.micro_batch > 0 {
            return refuse(
                "gradient accumulation, micro-batches and full-batch descent run on the CPU only",
            );
        }
        if c.clip_norm.is_some() || c.clip_value.is_some() || c.l1 != 0.0 {
            return refuse("clipping and L1 run on the CPU only");
        }
        if self.optimizer.steps() > 0 || self.checkpoints.is_some() {
            return refuse("checkpoints and resumed runs are not kept on a device yet");
        }
        if self.grad_norm.0 {
            return refuse("gradient norms are measured on the CPU only");
        }
        let prog = DeviceProgram::new(&self.net, &c.loss, c.batch_size, &device)?;
        let plan = self
            .optimizer
            .device_plan()
            .map_err(|e| device_error(&device, e))?;
        let n = self.net.layout().trainable_len();
        let buffers = plan.first().map_or(0, |g| g.update.state_buffers());
        let lens = [
            (Region::Params, n),
            (Region::Grads, n),
            (Region::State, buffers * n),
            (Region::Acts, prog.acts_len()),
            (Region::Batch, prog.batch_len()),
            (Region::Hyper, Update::HYPER + 2),
        ];
        for (r, len) in lens {
            be.resize(r, len).map_err(|e| device_error(&device, e))?;
        }
        be.write(Span::new(Region::Params, 0, n), &self.params[..n])
            .map_err(|e| device_error(&device, e))?;
        if let Some(g) = plan.first() {
            // Adagrad's sum of squares starts at its initial accumulator.
            be.fill(
                Span::new(Region::State, 0, buffers * n),
                g.update.state_init(),
            )
            .map_err(|e| device_error(&device, e))?;
        }
        self.device = Some(OnDevice {
            be,
            prog,
            n,
            hyper: Span::new(Region::Hyper, 0, Update::HYPER),
            stats: Span::new(Region::Hyper, Update::HYPER, 2),
            ahead: false,
        });
        Ok(())
    }

    /// The device the steps run on (`cpu` without one).
    pub fn device(&self) -> descent_tensor::Device {
        self.device
            .as_ref()
            .map_or(descent_tensor::Device::Cpu, |d| d.be.device())
    }

    /// One batch on the device: forward, loss, backward, and the optimizer's update.
    pub(super) fn device_batch(
        &mut self,
        train: &Dataset,
        batch: &Batch,
    ) -> Result<LossStats, TrainError> {
        let plan = self
            .optimizer
            .device_plan()
            .map_err(|e| device_error(&self.device().to_string(), e))?;
        let d = self.device.as_mut().expect("device_batch runs on a device");
        let rows = batch.rows;
        let Targets::Classes(labels) = batch.targets(train) else {
            unreachable!("DeviceProgram::new refuses losses on values");
        };
        let ids: Vec<f32> = labels.iter().map(|&c| c as f32).collect();
        let name = d.be.device().to_string();
        let err = |e| device_error(&name, e);
        d.be.write(d.prog.inputs(rows), &batch.x()[..d.prog.inputs(rows).len])
            .map_err(err)?;
        d.be.write(d.prog.labels(rows), &ids).map_err(err)?;
        d.be.fill(d.stats, 0.0).map_err(err)?;
        d.prog
            .train_step(&self.net, &mut *d.be, rows, d.stats)
            .map_err(err)?;
        for group in &plan {
            d.be.write(d.hyper, &group.hyper).map_err(err)?;
            for r in &group.ranges {
                let len = r.len();
                let p = Span::new(Region::Params, r.start, len);
                let g = Span::new(Region::Grads, r.start, len);
                let s = Span::new(Region::State, r.start, len);
                d.be.update(&group.update, p, g, s, d.n, d.hyper)
                    .map_err(err)?;
            }
        }
        d.ahead = true;
        // The trainer counts the step (`fused_step_done`) once it has checked the loss.
        let st = d.be.read(d.stats).map_err(err)?;
        Ok(LossStats {
            loss_sum: st[0] as f64,
            correct: st[1] as usize,
            count: rows,
        })
    }

    /// Copies the device's weights to the host when they are ahead.
    pub(super) fn sync_from_device(&mut self) -> Result<(), TrainError> {
        let Some(d) = self.device.as_mut().filter(|d| d.ahead) else {
            return Ok(());
        };
        let name = d.be.device().to_string();
        let w =
            d.be.read(Span::new(Region::Params, 0, d.n))
                .map_err(|e| device_error(&name, e))?;
        self.params[..d.n].copy_from_slice(&w);
        d.ahead = false;
        Ok(())
    }

    /// After the host's weights were replaced (early stopping's best ones): the device's too.
    pub(super) fn sync_to_device(&mut self) -> Result<(), TrainError> {
        let Some(d) = self.device.as_mut() else {
            return Ok(());
        };
        let name = d.be.device().to_string();
        d.be.write(Span::new(Region::Params, 0, d.n), &self.params[..d.n])
            .map_err(|e| device_error(&name, e))?;
        d.ahead = false;
        Ok(())
    }
}
