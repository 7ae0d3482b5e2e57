//! The compute core of descent: strided f32 matrix views, matrix multiplication (descent's
//! own AVX-512 and AVX2/FMA kernels for the layouts a training step uses, the
//! [`gemm`](https://crates.io/crates/gemm) crate for the rest, and a naive reference twin that
//! both are tested against), a fork-join [`Pool`] that splits work over a fixed number of
//! threads, and a small seeded random number generator whose streams never change between
//! releases. How the kernels were chosen and measured: `docs/engine.md`.
//!
//! Transposes are views: [`MatRef::t`] swaps the strides, nothing is copied.
//!
//! ```
//! use descent_tensor::{matmul, MatMut, MatRef, Pool};
//!
//! // c (2x2) = a (2x3) · bᵀ, where b is stored as 2x3 row-major.
//! let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
//! let b = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
//! let mut c = [0.0f32; 4];
//! let pool = Pool::new(1).unwrap();
//! matmul(
//!     MatMut::new(&mut c, 2, 2).unwrap(),
//!     MatRef::new(&a, 2, 3).unwrap(),
//!     MatRef::new(&b, 2, 3).unwrap().t(),
//!     1.0,
//!     0.0,
//!     &pool,
//! );
//! assert_eq!(c, [1.0, 2.0, 4.0, 5.0]);
//! ```

pub mod backend;
mod kernels;
mod matmul;
mod matrix;
mod pool;
mod reduce;
mod rng;
pub mod vmath;

pub use backend::{Backend, Device};
pub use kernels::{amx_enabled, bf16_native, isa, set_isa, Isa};
pub use matmul::{
    matmul, matmul_bias_in, matmul_gemm, matmul_naive, matmul_path, matmul_serial,
    matmul_serial_in, matmul_small, round_bf16, Precision,
};
pub use matrix::{transpose, MatMut, MatRef};
pub use pool::{Pool, MAX_THREADS};
pub use reduce::{dot, max, sum};
pub use rng::{Rng, Rng8};

/// The block of k of the AVX-512 packed product: `C = alpha·A·B + beta·C` sums each run of
/// this many products from zero and adds it to C, block after block. A kernel that must give
/// the product's bits (the direct convolution against im2col) sums in the same blocks.
pub const PACKED_KC: usize = 192;

/// Errors raised when a view or a pool cannot be built from what the caller gave.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TensorError {
    /// A buffer is too short for the shape and strides asked of it.
    #[error("a {rows}x{cols} view with strides ({row_stride}, {col_stride}) needs {needed} elements, but the buffer holds {len}")]
    BufferTooSmall {
        /// Rows asked for.
        rows: usize,
        /// Columns asked for.
        cols: usize,
        /// Distance between consecutive rows.
        row_stride: usize,
        /// Distance between consecutive columns.
        col_stride: usize,
        /// Elements the view reaches.
        needed: usize,
        /// Elements the buffer holds.
        len: usize,
    },
    /// An instruction set was asked for that this CPU does not have.
    #[error("this CPU cannot run the {isa} kernels; choose an instruction set it supports (`Isa::best()`)")]
    Unsupported {
        /// The instruction set asked for.
        isa: &'static str,
    },
    /// The thread pool could not be created.
    #[error("cannot start a pool of {threads} threads: {reason}")]
    Pool {
        /// Threads asked for.
        threads: usize,
        /// What the operating system said.
        reason: String,
    },
}
