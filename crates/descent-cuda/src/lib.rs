//! The CUDA backend of descent's engine: descent-tensor's [`Backend`] seam on an NVIDIA GPU.
//!
//! Matrix products run on cuBLAS (f32, no TF32: the CPU engine's numbers), everything else on
//! descent's own kernels (`kernels.cu`), compiled at run time by NVRTC for the device's
//! architecture with `--fmad=false`, so that each does the reference backend's IEEE
//! operations in its order (the optimizer updates give the CPU's bits). All work goes on one
//! stream and nothing waits for it but [`Backend::read`], so a step can be recorded as a CUDA
//! graph and replayed.
//!
//! The CUDA libraries are loaded when a device is opened (cudarc's dynamic loading), not when
//! the program starts: descent builds and runs on machines without CUDA, and
//! [`CudaBackend::open`] says which library it could not find.
//!
//! ```no_run
//! use descent_cuda::CudaBackend;
//! use descent_tensor::backend::{Backend, Region, Span};
//!
//! let mut gpu = CudaBackend::open(0)?;
//! gpu.resize(Region::Acts, 4)?;
//! gpu.fill(Span::new(Region::Acts, 0, 4), 2.0)?;
//! assert_eq!(gpu.read(Span::new(Region::Acts, 0, 4))?, [2.0; 4]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod backend;
mod error;
mod libs;

pub use backend::CudaBackend;
pub use error::CudaError;
pub use libs::{compile_kernels, KERNELS};

pub use descent_tensor::backend::Backend;
