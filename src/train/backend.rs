//! Which Burn backend runs training: the `--device` choice, the backend type aliases, CUDA
//! detection that never panics, and the CPU thread count.
//!
//! Burn 0.21 panics on a worker thread ("Unable to dynamically load the cuda shared library")
//! when a CUDA device is used on a machine without the driver, so [`detect_cuda`] asks the
//! driver through cudarc first, and [`resolve`] only touches Burn's CUDA backend after that
//! succeeded, with `catch_unwind` around the first operation as a last guard.

use std::panic::{catch_unwind, AssertUnwindSafe};

use burn::backend::{Autodiff, Cuda, Flex};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// CPU backend for inference and evaluation (Burn's portable `flex` backend).
pub type CpuBackend = Flex;
/// CPU backend with autodiff, for training.
pub type CpuTrainBackend = Autodiff<CpuBackend>;
/// CUDA backend for inference and evaluation.
pub type CudaBackend = Cuda;
/// CUDA backend with autodiff, for training.
pub type CudaTrainBackend = Autodiff<CudaBackend>;
/// Device type of [`CpuBackend`].
pub type CpuDevice = burn::backend::flex::FlexDevice;
/// Device type of [`CudaBackend`].
pub type CudaDevice = burn::backend::cuda::CudaDevice;

/// What the user asked for with `--device` or the web form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceChoice {
    /// CUDA when a usable GPU is found, otherwise the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

impl DeviceChoice {
    pub fn name(self) -> &'static str {
        match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the CUDA driver reports about the first GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CudaInfo {
    /// GPUs the driver sees; training uses device 0.
    pub device_count: usize,
    /// Name of device 0, e.g. "NVIDIA H200".
    pub name: String,
    /// Memory of device 0 in bytes (0 when the driver does not say).
    pub total_memory: u64,
}

/// The backend a run will use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendKind {
    Cpu,
    /// CUDA device 0.
    Cuda(CudaInfo),
}

/// The outcome of [`resolve`]: the backend and a line to show the user saying why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub kind: BackendKind,
    pub message: String,
}

impl Resolved {
    pub fn is_cuda(&self) -> bool {
        matches!(self.kind, BackendKind::Cuda(_))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("CUDA was requested but cannot be used: {0}. Choose the CPU (--device cpu) or auto (--device auto).")]
    CudaUnavailable(String),
    #[error("cannot set the CPU thread count to {threads}: {reason}")]
    Threads { threads: usize, reason: String },
}

/// Asks the CUDA driver, via cudarc's dynamic loading, whether a GPU is usable. Never panics;
/// the error says what is missing.
pub fn detect_cuda() -> Result<CudaInfo, String> {
    catch_unwind(detect_cuda_unguarded)
        .unwrap_or_else(|_| Err("the CUDA driver check panicked (see the message above)".to_string()))
}

fn detect_cuda_unguarded() -> Result<CudaInfo, String> {
    use cudarc::driver::result;

    // SAFETY: these only try to open the shared libraries by name (libloading) and close them.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("the CUDA driver library (libcuda) was not found; no NVIDIA driver is installed".to_string());
    }
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err("the CUDA runtime compiler library (libnvrtc) was not found; install the CUDA toolkit".to_string());
    }
    result::init().map_err(|e| format!("the CUDA driver failed to initialise ({e})"))?;
    let count = result::device::get_count().map_err(|e| format!("the CUDA driver cannot count GPUs ({e})"))?;
    if count <= 0 {
        return Err("the CUDA driver reports no GPU".to_string());
    }
    let device = result::device::get(0).map_err(|e| format!("cannot open GPU 0 ({e})"))?;
    let name = result::device::get_name(device).unwrap_or_else(|_| "unknown GPU".to_string());
    // SAFETY: `device` was returned by `device::get`.
    let total_memory = unsafe { result::device::total_mem(device) }.unwrap_or(0) as u64;
    Ok(CudaInfo {
        device_count: count as usize,
        name,
        total_memory,
    })
}

/// Runs one small operation on Burn's CUDA backend, so a broken install fails here rather than
/// in the middle of a run.
fn probe_burn_cuda() -> Result<(), String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let device = CudaDevice::default();
        let sum: f32 = Tensor::<CudaBackend, 1>::from_floats([1.0, 2.0, 3.0], &device)
            .sum()
            .into_scalar();
        sum
    }));
    match outcome {
        Ok(sum) if (sum - 6.0).abs() < 1e-4 => Ok(()),
        Ok(sum) => Err(format!("a test sum on the GPU gave {sum} instead of 6")),
        Err(_) => Err("Burn's CUDA backend panicked on its first operation".to_string()),
    }
}

/// Picks the backend for `choice`: under `auto` a CPU fallback with a message saying why, under
/// `cuda` an error saying why not.
pub fn resolve(choice: DeviceChoice) -> Result<Resolved, BackendError> {
    let cuda = || detect_cuda().and_then(|info| probe_burn_cuda().map(|()| info));
    match choice {
        DeviceChoice::Cpu => Ok(Resolved {
            kind: BackendKind::Cpu,
            message: format!("training on the CPU ({} threads), as requested", cpu_threads()),
        }),
        DeviceChoice::Cuda => {
            let info = cuda().map_err(BackendError::CudaUnavailable)?;
            Ok(Resolved {
                message: format!("training on CUDA: {}", describe(&info)),
                kind: BackendKind::Cuda(info),
            })
        }
        DeviceChoice::Auto => Ok(match cuda() {
            Ok(info) => Resolved {
                message: format!("training on CUDA: {}", describe(&info)),
                kind: BackendKind::Cuda(info),
            },
            Err(reason) => Resolved {
                kind: BackendKind::Cpu,
                message: format!("training on the CPU ({} threads): {reason}", cpu_threads()),
            },
        }),
    }
}

fn describe(info: &CudaInfo) -> String {
    let gib = info.total_memory as f64 / (1u64 << 30) as f64;
    format!("{} ({gib:.0} GiB), device 0 of {}", info.name, info.device_count)
}

/// Threads of rayon's global pool, used by data loading and, when burn-flex is built with its
/// `rayon` feature, by the CPU backend's convolutions and matrix products (without that feature
/// the backend runs on one thread).
pub fn cpu_threads() -> usize {
    rayon::current_num_threads()
}

/// Sets the CPU thread count. Works once per process, before any parallel work has run; later
/// calls fail with an explanation unless they ask for the count already in use.
pub fn set_cpu_threads(threads: usize) -> Result<(), BackendError> {
    if threads == 0 {
        return Err(BackendError::Threads {
            threads,
            reason: "give at least 1".to_string(),
        });
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .or_else(|e| {
            if rayon::current_num_threads() == threads {
                Ok(())
            } else {
                Err(BackendError::Threads {
                    threads,
                    reason: format!(
                        "the thread pool already runs {} threads ({e})",
                        rayon::current_num_threads()
                    ),
                })
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    // These hold on machines with and without a GPU; the development machine has none, so there
    // the fallback and error paths are the ones exercised.

    #[test]
    fn detect_cuda_explains_why_not() {
        if let Err(reason) = detect_cuda() {
            assert!(
                reason.contains("CUDA") || reason.contains("GPU"),
                "unclear reason: {reason}"
            );
        }
    }

    #[test]
    fn auto_uses_cuda_only_when_detected_and_says_why_not() {
        let resolved = resolve(DeviceChoice::Auto).unwrap();
        match detect_cuda() {
            Err(reason) => {
                assert_eq!(resolved.kind, BackendKind::Cpu);
                assert!(resolved.message.contains(&reason), "{}", resolved.message);
            }
            Ok(info) => assert_eq!(resolved.kind, BackendKind::Cuda(info)),
        }
    }

    #[test]
    fn cuda_choice_is_an_error_without_a_gpu() {
        match detect_cuda() {
            Err(reason) => {
                let message = resolve(DeviceChoice::Cuda).unwrap_err().to_string();
                assert!(
                    message.contains(&reason) && message.contains("--device cpu"),
                    "{message}"
                );
            }
            Ok(_) => assert!(resolve(DeviceChoice::Cuda).unwrap().is_cuda()),
        }
    }

    #[test]
    fn cpu_choice_is_always_the_cpu() {
        assert_eq!(resolve(DeviceChoice::Cpu).unwrap().kind, BackendKind::Cpu);
    }

    #[test]
    fn device_choice_names_round_trip() {
        use clap::ValueEnum;
        for choice in [DeviceChoice::Auto, DeviceChoice::Cpu, DeviceChoice::Cuda] {
            assert_eq!(serde_json::to_string(&choice).unwrap(), format!("\"{choice}\""));
            assert_eq!(DeviceChoice::from_str(choice.name(), false).unwrap(), choice);
        }
    }

    #[test]
    fn zero_threads_is_refused() {
        assert!(set_cpu_threads(0).is_err());
    }
}
