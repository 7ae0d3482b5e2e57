//! [`CudaBackend`]: the regions as device buffers, the operations as cuBLAS calls and kernel
//! launches on one stream.

use std::sync::Arc;

use cudarc::cublas::{result as blas, sys as blas_sys, CudaBlas};
use cudarc::driver::{
    result as drv, CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig,
    PushKernelArg,
};
use descent_tensor::backend::{Act, Backend, BackendError, DMat, Device, Region, Span, Update};

use crate::{libs, CudaError};

/// Threads per block of the element-wise kernels.
const BLOCK: u32 = 256;
/// Most blocks a grid-stride kernel is launched with.
const MAX_BLOCKS: u32 = 8192;

/// Launches a kernel on the backend's stream with the given arguments (references to
/// values that outlive the call).
macro_rules! launch {
    ($be:expr, $what:expr, $f:expr, $cfg:expr; $($arg:expr),* $(,)?) => {{
        let mut b = $be.stream.launch_builder($f);
        $( b.arg($arg); )*
        // SAFETY: every pointer argument was checked against its region by `ptr`, and each
        // kernel reads and writes only the lengths it is given.
        unsafe { b.launch($cfg) }
            .map(|_| ())
            .map_err(|e| $be.err($what, e))
    }};
}

/// descent's kernels, loaded from the module NVRTC compiled.
struct Kernels {
    fill: CudaFunction,
    bias_act: CudaFunction,
    act_grad: CudaFunction,
    col_sum: CudaFunction,
    softmax_xent: CudaFunction,
    add_row_stats: CudaFunction,
    sgd: CudaFunction,
    adam: CudaFunction,
    momentum: CudaFunction,
    adagrad: CudaFunction,
    rmsprop: CudaFunction,
    adadelta: CudaFunction,
    adamax: CudaFunction,
    lion: CudaFunction,
}

/// One NVIDIA GPU as a [`Backend`].
pub struct CudaBackend {
    ordinal: usize,
    name: String,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    k: Kernels,
    regions: [Option<CudaSlice<f32>>; 6],
    /// Scratch of the softmax (two values per row), grown as batches need.
    row_stats: Option<CudaSlice<f32>>,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaBackend(cuda:{} {})", self.ordinal, self.name)
    }
}

fn act_code(act: Act) -> (i32, f32) {
    match act {
        Act::Identity => (0, 0.0),
        Act::Relu => (1, 0.0),
        Act::LeakyRelu(s) => (2, s),
        Act::Tanh => (3, 0.0),
        Act::Sigmoid => (4, 0.0),
    }
}

/// The factor a gradient is multiplied by: -1 to ascend.
fn sign(maximize: bool) -> f32 {
    if maximize {
        -1.0
    } else {
        1.0
    }
}

fn grid(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, MAX_BLOCKS as usize) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl CudaBackend {
    /// Opens GPU `ordinal`: loads the driver, cuBLAS and NVRTC (each missing one named, with
    /// where to find it), makes a context and a stream, and compiles descent's kernels for the
    /// device's architecture.
    pub fn open(ordinal: usize) -> Result<Self, CudaError> {
        libs::probe()?;
        let count = CudaContext::device_count()
            .map_err(|e| CudaError::call("counting the GPUs (cuInit)", e))?
            .max(0) as usize;
        if ordinal >= count {
            let hint = match count {
                0 => String::new(),
                1 => ": use cuda:0".into(),
                n => format!(": use cuda:0 to cuda:{}", n - 1),
            };
            return Err(CudaError::NoDevice {
                ordinal,
                count,
                hint,
            });
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| CudaError::call(format!("opening cuda:{ordinal}"), e))?;
        // One stream, ordered: cudarc's per-buffer events are not needed (and a graph
        // capture must not record them).
        // SAFETY: no buffer exists yet, and this backend uses one stream only.
        unsafe { ctx.disable_event_tracking() };
        let name = ctx.name().unwrap_or_else(|_| "GPU".into());
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| CudaError::call("reading the compute capability", e))?;
        let stream = ctx
            .new_stream()
            .map_err(|e| CudaError::call("creating a stream", e))?;
        let blas =
            CudaBlas::new(stream.clone()).map_err(|e| CudaError::call("creating cuBLAS", e))?;
        // f32 products in f32: cuBLAS's default math mode has no TF32 (set here to be sure
        // that NVIDIA_TF32_OVERRIDE-style defaults do not change it).
        // SAFETY: the handle is live; the mode is a plain enum value.
        unsafe {
            blas_sys::cublasSetMathMode(*blas.handle(), blas_sys::cublasMath_t::CUBLAS_DEFAULT_MATH)
        }
        .result()
        .map_err(|e| CudaError::call("setting cuBLAS's math mode", e))?;
        let ptx = libs::compile_kernels(&format!("compute_{major}{minor}"))?;
        let module = ctx
            .load_module(ptx)
            .map_err(|e| CudaError::call("loading descent's kernels", e))?;
        let f = |name: &str| {
            module
                .load_function(name)
                .map_err(|e| CudaError::call(format!("finding kernel {name}"), e))
        };
        let k = Kernels {
            fill: f("fill_f32")?,
            bias_act: f("bias_act")?,
            act_grad: f("act_grad")?,
            col_sum: f("col_sum")?,
            softmax_xent: f("softmax_xent")?,
            add_row_stats: f("add_row_stats")?,
            sgd: f("sgd_update")?,
            adam: f("adam_update")?,
            momentum: f("momentum_update")?,
            adagrad: f("adagrad_update")?,
            rmsprop: f("rmsprop_update")?,
            adadelta: f("adadelta_update")?,
            adamax: f("adamax_update")?,
            lion: f("lion_update")?,
        };
        Ok(Self {
            ordinal,
            name,
            stream,
            blas,
            k,
            regions: Default::default(),
            row_stats: None,
        })
    }

    /// The GPU's name (`NVIDIA H200`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stream every operation is enqueued on (to record a step as a graph).
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Waits for everything enqueued so far.
    pub fn synchronize(&self) -> Result<(), BackendError> {
        self.stream
            .synchronize()
            .map_err(|e| self.err("synchronize", e))
    }

    fn err(&self, what: &str, e: impl std::fmt::Debug) -> BackendError {
        BackendError::Device {
            device: format!("cuda:{}", self.ordinal),
            what: what.to_string(),
            reason: format!("{e:?}"),
        }
    }

    /// The device address of a span's first value, after checking that it fits its region.
    fn ptr(&self, span: Span) -> Result<u64, BackendError> {
        let len = self.len(span.region);
        if span.end() > len {
            return Err(BackendError::Unsupported(format!(
                "span {}..{} of {:?} reaches past its {len} values",
                span.offset,
                span.end(),
                span.region
            )));
        }
        match &self.regions[span.region.index()] {
            Some(buf) => {
                let (base, _sync) = buf.device_ptr(&self.stream);
                Ok(base + 4 * span.offset as u64)
            }
            // An empty region: only empty spans fit it, and nothing reads them.
            None => Ok(0),
        }
    }

    fn row_stats(&mut self, rows: usize) -> Result<u64, BackendError> {
        if self.row_stats.as_ref().is_none_or(|b| b.len() < 2 * rows) {
            let buf = self
                .stream
                .alloc_zeros::<f32>(2 * rows.max(64))
                .map_err(|e| self.err("allocating softmax scratch", e))?;
            self.row_stats = Some(buf);
        }
        let buf = self.row_stats.as_ref().expect("just made");
        let (p, _sync) = buf.device_ptr(&self.stream);
        Ok(p)
    }
}

impl Backend for CudaBackend {
    fn device(&self) -> Device {
        Device::Cuda(self.ordinal)
    }

    fn resize(&mut self, region: Region, len: usize) -> Result<(), BackendError> {
        let slot = &mut self.regions[region.index()];
        *slot = None;
        if len > 0 {
            let buf = self
                .stream
                .alloc_zeros::<f32>(len)
                .map_err(|e| BackendError::Device {
                    device: format!("cuda:{}", self.ordinal),
                    what: format!("allocating {len} values for {region:?}"),
                    reason: format!("{e:?}"),
                })?;
            self.regions[region.index()] = Some(buf);
        }
        Ok(())
    }

    fn len(&self, region: Region) -> usize {
        self.regions[region.index()].as_ref().map_or(0, |b| b.len())
    }

    fn write(&mut self, span: Span, values: &[f32]) -> Result<(), BackendError> {
        span.holds(values.len(), "written into")?;
        let dst = self.ptr(span)?;
        if span.len == 0 {
            return Ok(());
        }
        // SAFETY: `dst` holds `span.len` values (checked by `ptr`); the copy is staged from
        // pageable memory before the call returns.
        unsafe { drv::memcpy_htod_async(dst, values, self.stream.cu_stream()) }
            .map_err(|e| self.err("copying to the GPU", e))
    }

    fn read(&mut self, span: Span) -> Result<Vec<f32>, BackendError> {
        let src = self.ptr(span)?;
        let mut out = vec![0.0f32; span.len];
        if span.len == 0 {
            return Ok(out);
        }
        // SAFETY: `src` holds `span.len` values; the stream is waited for before `out` is
        // read.
        unsafe { drv::memcpy_dtoh_async(&mut out[..], src, self.stream.cu_stream()) }
            .map_err(|e| self.err("copying from the GPU", e))?;
        self.synchronize()?;
        Ok(out)
    }

    fn copy(&mut self, dst: Span, src: Span) -> Result<(), BackendError> {
        dst.holds(src.len, "copied into")?;
        let (d, s) = (self.ptr(dst)?, self.ptr(src)?);
        if dst.len == 0 {
            return Ok(());
        }
        // SAFETY: both hold `len` values (checked by `ptr`).
        unsafe { drv::memcpy_dtod_async(d, s, 4 * dst.len, self.stream.cu_stream()) }
            .map_err(|e| self.err("copying on the GPU", e))
    }

    fn fill(&mut self, span: Span, value: f32) -> Result<(), BackendError> {
        let p = self.ptr(span)?;
        let n = span.len as i64;
        launch!(self, "fill", &self.k.fill, grid(span.len); &p, &value, &n)
    }

    fn gemm(
        &mut self,
        c: DMat,
        a: DMat,
        b: DMat,
        alpha: f32,
        beta: f32,
    ) -> Result<(), BackendError> {
        if c.trans || a.cols != b.rows || c.rows != a.rows || c.cols != b.cols {
            return Err(BackendError::Unsupported(format!(
                "gemm of {}x{} by {}x{} into {}x{}",
                a.rows, a.cols, b.rows, b.cols, c.rows, c.cols
            )));
        }
        let (pa, pb, pc) = (self.ptr(a.span)?, self.ptr(b.span)?, self.ptr(c.span)?);
        if c.rows == 0 || c.cols == 0 {
            return Ok(());
        }
        // Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ: cuBLAS gets B first. A row-major
        // stored matrix is its transpose to cuBLAS, so an operand used as stored is passed
        // as is (N) and one used transposed gets T.
        let op = |t: bool| match t {
            true => blas_sys::cublasOperation_t::CUBLAS_OP_T,
            false => blas_sys::cublasOperation_t::CUBLAS_OP_N,
        };
        let (m, n, k) = (c.cols as i32, c.rows as i32, a.cols as i32);
        // SAFETY: the three spans were checked against their regions; the strides and
        // shapes describe matrices inside them (DMat::new checks rows x cols fits).
        unsafe {
            blas::sgemm(
                *self.blas.handle(),
                op(b.trans),
                op(a.trans),
                m,
                n,
                k,
                &alpha,
                pb as *const f32,
                b.ld as i32,
                pa as *const f32,
                a.ld as i32,
                &beta,
                pc as *mut f32,
                c.ld as i32,
            )
        }
        .map_err(|e| self.err("cublasSgemm", e))
    }

    fn bias_act(
        &mut self,
        y: Span,
        bias: Option<Span>,
        cols: usize,
        act: Act,
    ) -> Result<(), BackendError> {
        let py = self.ptr(y)?;
        let pbias = match bias {
            Some(b) => self.ptr(b)?,
            None => 0,
        };
        let (code, slope) = act_code(act);
        let (n, cols) = (y.len as i64, cols.max(1) as i32);
        launch!(self, "bias_act", &self.k.bias_act, grid(y.len); &py, &pbias, &n, &cols, &code, &slope)
    }

    fn act_grad(&mut self, dy: Span, y: Span, act: Act) -> Result<(), BackendError> {
        let (pd, py) = (self.ptr(dy)?, self.ptr(y.sub(0, dy.len))?);
        let (code, slope) = act_code(act);
        let n = dy.len as i64;
        launch!(self, "act_grad", &self.k.act_grad, grid(dy.len); &pd, &py, &n, &code, &slope)
    }

    fn col_sum(&mut self, out: Span, x: Span, cols: usize, beta: f32) -> Result<(), BackendError> {
        let (po, px) = (self.ptr(out.sub(0, cols))?, self.ptr(x)?);
        let rows = (x.len / cols.max(1)) as i64;
        let c = cols as i32;
        launch!(self, "col_sum", &self.k.col_sum, grid(cols); &po, &px, &rows, &c, &beta)
    }

    fn softmax_xent(
        &mut self,
        logits: Span,
        labels: Span,
        dlogits: Span,
        classes: usize,
        scale: f32,
        stats: Span,
    ) -> Result<(), BackendError> {
        let rows = logits.len / classes.max(1);
        let (pz, pl) = (self.ptr(logits)?, self.ptr(labels.sub(0, rows))?);
        let (pd, ps) = (
            self.ptr(dlogits.sub(0, logits.len))?,
            self.ptr(stats.sub(0, 2))?,
        );
        let prow = self.row_stats(rows)?;
        let (r, c) = (rows as i64, classes as i32);
        // One warp per row.
        launch!(self, "softmax_xent", &self.k.softmax_xent, grid(32 * rows); &pz, &pl, &pd, &prow, &r, &c, &scale)?;
        let one = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (1, 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(self, "add_row_stats", &self.k.add_row_stats, one; &ps, &prow, &r)
    }

    fn update(
        &mut self,
        rule: &Update,
        params: Span,
        grads: Span,
        state: Span,
        stride: usize,
        hyper: Span,
    ) -> Result<(), BackendError> {
        let n = params.len;
        let (pp, pg) = (self.ptr(params)?, self.ptr(grads.sub(0, n))?);
        let ph = self.ptr(hyper.sub(0, Update::HYPER))?;
        let block = |i: usize| -> Result<u64, BackendError> {
            match i < rule.state_buffers() {
                true => self.ptr(Span::new(state.region, state.offset + i * stride, n)),
                false => Ok(0),
            }
        };
        let (s0, s1, s2) = (block(0)?, block(1)?, block(2)?);
        let len = n as i64;
        match *rule {
            Update::Sgd {
                momentum,
                dampening,
                weight_decay,
                nesterov,
                maximize,
            } => {
                let (nest, max) = (i32::from(nesterov), i32::from(maximize));
                launch!(self, "sgd_update", &self.k.sgd, grid(n); &pp, &pg, &s0, &ph, &len, &momentum, &dampening, &weight_decay, &nest, &max)
            }
            Update::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled,
                amsgrad,
                maximize,
            } => {
                let flags = [
                    i32::from(decoupled),
                    i32::from(amsgrad),
                    i32::from(maximize),
                ];
                launch!(self, "adam_update", &self.k.adam, grid(n); &pp, &pg, &s0, &s1, &s2, &ph, &len, &beta1, &beta2, &eps, &weight_decay, &flags[0], &flags[1], &flags[2])
            }
            Update::Momentum { beta, weight_decay } => {
                launch!(self, "momentum_update", &self.k.momentum, grid(n);
                    &pp, &pg, &s0, &ph, &len, &beta, &weight_decay)
            }
            Update::Adagrad {
                eps,
                weight_decay,
                maximize,
                ..
            } => {
                let sign = sign(maximize);
                launch!(self, "adagrad_update", &self.k.adagrad, grid(n);
                    &pp, &pg, &s0, &ph, &len, &eps, &weight_decay, &sign)
            }
            Update::RmsProp {
                alpha,
                eps,
                weight_decay,
                momentum,
                centered,
                eps_inside_sqrt,
                maximize,
            } => {
                let mean = if centered { s1 } else { 0 };
                let buf = match (momentum > 0.0, centered) {
                    (true, true) => s2,
                    (true, false) => s1,
                    (false, _) => 0,
                };
                let (inside, sign) = (i32::from(eps_inside_sqrt), sign(maximize));
                launch!(self, "rmsprop_update", &self.k.rmsprop, grid(n);
                    &pp, &pg, &s0, &mean, &buf, &ph, &len, &alpha, &eps, &weight_decay,
                    &momentum, &inside, &sign)
            }
            Update::Adadelta {
                rho,
                eps,
                weight_decay,
                maximize,
            } => {
                let sign = sign(maximize);
                launch!(self, "adadelta_update", &self.k.adadelta, grid(n);
                    &pp, &pg, &s0, &s1, &ph, &len, &rho, &eps, &weight_decay, &sign)
            }
            Update::Adamax {
                beta1,
                beta2,
                eps,
                weight_decay,
                maximize,
            } => {
                let sign = sign(maximize);
                launch!(self, "adamax_update", &self.k.adamax, grid(n);
                    &pp, &pg, &s0, &s1, &ph, &len, &beta1, &beta2, &eps, &weight_decay, &sign)
            }
            Update::Lion {
                beta1,
                beta2,
                maximize,
                ..
            } => {
                let sign = sign(maximize);
                launch!(self, "lion_update", &self.k.lion, grid(n);
                    &pp, &pg, &s0, &ph, &len, &beta1, &beta2, &sign)
            }
        }
    }
}
