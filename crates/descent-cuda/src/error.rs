//! What can go wrong opening or driving a GPU, in one line each.

/// Errors of the CUDA backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CudaError {
    /// A CUDA library could not be loaded.
    #[error("cannot load {what}: none of {searched} is on the library path; {advice}")]
    Library {
        /// The library and what it is (`libcuda (the NVIDIA driver)`).
        what: &'static str,
        /// The file names looked for.
        searched: String,
        /// How to make it findable.
        advice: &'static str,
    },
    /// The driver loaded but sees no such device.
    #[error("no CUDA device {ordinal}: the driver sees {count} GPU(s){hint}")]
    NoDevice {
        /// The ordinal asked for.
        ordinal: usize,
        /// Devices the driver sees.
        count: usize,
        /// Which ordinals exist, when any do.
        hint: String,
    },
    /// A driver, cuBLAS or NVRTC call failed.
    #[error("CUDA: {what} failed: {reason}")]
    Call {
        /// The operation.
        what: String,
        /// What the library said.
        reason: String,
    },
    /// NVRTC refused descent's kernels (a bug, or a toolkit too old for the device).
    #[error("NVRTC could not compile descent's kernels for {arch}: {log}")]
    Compile {
        /// The target architecture.
        arch: String,
        /// The compiler's log, on one line.
        log: String,
    },
}

impl CudaError {
    /// A failed call, from its library's error.
    pub(crate) fn call(what: impl Into<String>, e: impl std::fmt::Debug) -> Self {
        CudaError::Call {
            what: what.into(),
            reason: format!("{e:?}"),
        }
    }

    /// Whether this says there is no GPU here at all (no driver, or no device): what the
    /// GPU tests skip on.
    pub fn no_gpu(&self) -> bool {
        matches!(
            self,
            CudaError::Library { .. } | CudaError::NoDevice { count: 0, .. }
        ) || matches!(self, CudaError::Call { reason, .. } if reason.contains("NO_DEVICE"))
    }
}
