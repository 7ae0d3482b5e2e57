//! Finding the CUDA libraries (before any call into them: cudarc panics on a library it cannot
//! load, so each is looked for first and its absence becomes a [`CudaError::Library`]) and
//! compiling descent's kernels.

use cudarc::nvrtc::{compile_ptx_with_opts, CompileError, CompileOptions, Ptx};

use crate::CudaError;

/// The CUDA C source of descent's kernels.
pub const KERNELS: &str = include_str!("kernels.cu");

/// Where PyTorch's pip wheels put cuBLAS and NVRTC.
const PIP_ADVICE: &str = "install the CUDA toolkit, or add the folder that holds it to \
    LD_LIBRARY_PATH (PyTorch's pip packages ship it under site-packages/nvidia/cu13/lib: \
    `find / -name 'libcublas.so*'`)";

/// The names cudarc tries for `name`, without the Windows-style ones and repeats.
fn searched(name: &str) -> String {
    let mut names: Vec<String> = Vec::new();
    for n in cudarc::get_lib_name_candidates(name) {
        if !n.contains("64") && !names.contains(&n) {
            names.push(n);
        }
    }
    names.join(", ")
}

/// `Ok` when `present`, else the error naming library `name` (`what` it is) and how to make
/// it findable.
fn require(
    present: bool,
    name: &str,
    what: &'static str,
    advice: &'static str,
) -> Result<(), CudaError> {
    match present {
        true => Ok(()),
        false => Err(CudaError::Library {
            what,
            searched: searched(name),
            advice,
        }),
    }
}

/// Checks that the driver, cuBLAS and NVRTC can be loaded.
pub(crate) fn probe() -> Result<(), CudaError> {
    // SAFETY: each `is_culib_present` only tries to open the library by its candidate names.
    require(
        unsafe { cudarc::driver::sys::is_culib_present() },
        "cuda",
        "libcuda (the NVIDIA driver's library)",
        "install the NVIDIA driver, or add the folder that holds libcuda.so.1 to \
            LD_LIBRARY_PATH (or, with no GPU here, run on the CPU)",
    )?;
    probe_nvrtc()?;
    require(
        unsafe { cudarc::cublas::sys::is_culib_present() },
        "cublas",
        "cuBLAS",
        PIP_ADVICE,
    )
}

/// Checks that NVRTC can be loaded (it needs no GPU).
pub(crate) fn probe_nvrtc() -> Result<(), CudaError> {
    // SAFETY: as in `probe`.
    require(
        unsafe { cudarc::nvrtc::sys::is_culib_present() },
        "nvrtc",
        "NVRTC (CUDA's run-time compiler)",
        PIP_ADVICE,
    )
}

/// Compiles [`KERNELS`] to PTX for `arch` (`compute_90` for an H100/H200), with
/// `--fmad=false` so that no multiply and add is fused (the reference's rounding). Needs
/// NVRTC, not a GPU.
pub fn compile_kernels(arch: &str) -> Result<Ptx, CudaError> {
    compile(KERNELS, arch)
}

fn compile(src: &str, arch: &str) -> Result<Ptx, CudaError> {
    probe_nvrtc()?;
    let opts = CompileOptions {
        fmad: Some(false),
        options: vec![format!("--gpu-architecture={arch}")],
        name: Some("descent_kernels.cu".into()),
        ..Default::default()
    };
    compile_ptx_with_opts(src, opts).map_err(|e| match e {
        CompileError::CompileError { log, .. } => CudaError::Compile {
            arch: arch.to_string(),
            log: log
                .to_string_lossy()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        },
        other => CudaError::call("NVRTC", other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernels compile for the H200's architecture wherever NVRTC is found (it needs no
    /// GPU: PyTorch's pip packages ship it); skipped, saying so, where it is not.
    #[test]
    fn kernels_compile_with_nvrtc() {
        match compile_kernels("compute_90") {
            Err(e @ CudaError::Library { .. }) => {
                println!("skipped: {e}");
            }
            Err(e) => panic!("{e}"),
            Ok(ptx) => {
                let text = ptx.to_src();
                // The kernels that must give the CPU's bits: no multiply and add fused
                // (--fmad=false; expf, tanhf and logf use fma inside, on purpose).
                let exact = [
                    "sgd_update",
                    "adam_update",
                    "momentum_update",
                    "adagrad_update",
                    "rmsprop_update",
                    "adadelta_update",
                    "adamax_update",
                    "lion_update",
                    "col_sum",
                    "act_grad",
                ];
                let others = ["fill_f32", "bias_act", "softmax_xent", "add_row_stats"];
                for name in exact.iter().chain(&others) {
                    assert!(text.contains(&format!(".entry {name}(")), "{name} missing");
                }
                for name in exact {
                    let body = text
                        .split(&format!(".entry {name}("))
                        .nth(1)
                        .expect("entry");
                    let body = body.split(".entry ").next().expect("body");
                    assert!(!body.contains("fma.rn"), "{name}: a multiply-add was fused");
                }
            }
        }
    }

    /// A kernel that does not compile is reported with NVRTC's log, on one line.
    #[test]
    fn compile_errors_carry_the_log() {
        match compile(
            "extern \"C\" __global__ void k() { undeclared_name; }",
            "compute_90",
        ) {
            Err(e @ CudaError::Library { .. }) => println!("skipped: {e}"),
            Err(CudaError::Compile { arch, log }) => {
                assert_eq!(arch, "compute_90");
                assert!(
                    log.contains("undeclared_name") && !log.contains('\n'),
                    "{log}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
