//! `--device cpu|cuda[:N]`: where training steps (and `eval`'s forward passes) run.

use anyhow::Result;
use descent_tensor::backend::Backend;
use descent_tensor::Device;
use descent_train::Trainer;

/// clap's parser for `--device`.
pub fn parse(s: &str) -> Result<Device, String> {
    s.parse::<Device>().map_err(|e| e.to_string())
}

/// The backend of `device`: `None` for the CPU engine; a GPU opened, or one line that says
/// why it cannot be.
pub fn open(device: Device) -> Result<Option<Box<dyn Backend>>> {
    match device {
        Device::Cpu => Ok(None),
        Device::Cuda(n) => cuda(n).map(Some),
    }
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: usize) -> Result<Box<dyn Backend>> {
    let gpu = descent_cuda::CudaBackend::open(ordinal)
        .map_err(|e| anyhow::anyhow!("--device cuda:{ordinal}: {e}"))?;
    Ok(Box::new(gpu))
}

#[cfg(not(feature = "cuda"))]
fn cuda(ordinal: usize) -> Result<Box<dyn Backend>> {
    anyhow::bail!(
        "--device cuda:{ordinal}: this descent was built without the CUDA backend; build it \
         with `cargo build --release --features cuda`, or use --device cpu"
    )
}

/// Puts `trainer`'s steps on `device` (nothing to do for the CPU).
pub fn attach(trainer: &mut Trainer, device: Device) -> Result<()> {
    if let Some(be) = open(device)? {
        trainer.set_backend(be).map_err(crate::train::cli_error)?;
    }
    Ok(())
}

/// `--device` in a run's recorded arguments, as its name (`cuda:0`).
pub mod as_name {
    use descent_tensor::Device;

    pub fn serialize<S: serde::Serializer>(d: &Device, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(d)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Device, D::Error> {
        let name = <String as serde::Deserialize>::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// A model's forward passes on a device (`descent eval --device cuda`).
pub struct DeviceForward {
    be: Box<dyn Backend>,
    prog: descent_nn::DeviceProgram,
}

impl DeviceForward {
    /// The weights `params` of `net` put on `device`, for batches of up to `cap` rows; `None`
    /// for the CPU.
    pub fn new(
        device: Device,
        net: &descent_nn::Model,
        params: &[f32],
        cap: usize,
    ) -> Result<Option<Self>> {
        use descent_tensor::backend::{Region, Span};
        let Some(mut be) = open(device)? else {
            return Ok(None);
        };
        let name = device.to_string();
        let loss = descent_nn::Loss::default();
        let prog = descent_nn::DeviceProgram::new(net, &loss, cap, &name)?;
        let n = net.layout().trainable_len();
        let e = |e: descent_tensor::backend::BackendError| anyhow::anyhow!("--device {name}: {e}");
        be.resize(Region::Params, n).map_err(e)?;
        be.resize(Region::Acts, prog.acts_len()).map_err(e)?;
        be.resize(Region::Batch, prog.batch_len()).map_err(e)?;
        be.write(Span::new(Region::Params, 0, n), &params[..n])
            .map_err(e)?;
        Ok(Some(Self { be, prog }))
    }

    /// The outputs of `net` on the rows of `xs`.
    pub fn outputs(&mut self, net: &descent_nn::Model, xs: &[f32]) -> Result<Vec<f32>> {
        let rows = xs.len() / net.input_features().max(1);
        let e = |e: descent_tensor::backend::BackendError| anyhow::anyhow!("{e}");
        self.be.write(self.prog.inputs(rows), xs).map_err(e)?;
        let out = self.prog.forward(net, &mut *self.be, rows).map_err(e)?;
        self.be.read(out).map_err(e)
    }
}
