//! Which Burn backend runs training: the `--device` choice, the backend type aliases, CUDA
//! detection that never panics, and the CPU thread count.
//!
//! Burn panics on a worker thread ("Unable to dynamically load the cuda shared library") when a
//! CUDA device is used on a machine without the driver, so [`detect_cuda`] asks the driver
//! through cudarc first, and [`resolve`] only touches Burn's CUDA backend after that succeeded,
//! with `catch_unwind` around the first operation as a last guard.
//!
//! Burn 0.22 has one tensor type for every backend: the [`Device`] decides where a tensor lives
//! (flex on the CPU, CUDA device 0), and `.autodiff()` on a device makes it record gradients.

use std::panic::{catch_unwind, AssertUnwindSafe};

use burn::module::{ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::FloatDType;
use serde::{Deserialize, Serialize};

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

/// The number format a run trains in (weights, activations, gradients and optimiser state); the
/// loss and the metrics are always computed in f32. Burn has no automatic mixed precision with
/// f32 master weights, so bf16/f16 mean the whole model in that format: half the memory and, on
/// GPUs with tensor cores, faster matrix products, at some loss of precision in the updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// 32-bit floats, as PyTorch trains by default.
    #[default]
    F32,
    /// bfloat16: f32's range with 8 bits of mantissa; for GPUs with bf16 tensor cores (Ampere+).
    Bf16,
    /// IEEE half: more mantissa than bf16, but overflows above 65504.
    F16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    pub fn float_dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::Bf16 => FloatDType::BF16,
            Precision::F16 => FloatDType::F16,
        }
    }

    /// `module` with every float parameter converted to this format (running statistics too).
    pub fn cast_module<M: Module>(self, module: M) -> M {
        module.map(&mut CastParams(self.float_dtype()))
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Converts each float parameter, keeping its id (the optimiser's state is keyed by it).
struct CastParams(FloatDType);

impl ModuleMapper for CastParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.0;
        // The cast is an operation on the autodiff graph: without a detach the parameter would
        // stop being a leaf and the optimiser would find no gradient for it.
        param.map(|tensor| {
            if tensor.dtype() == dtype.into() {
                return tensor;
            }
            let require_grad = tensor.is_require_grad();
            tensor.cast(dtype).detach().set_require_grad(require_grad)
        })
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

impl BackendKind {
    /// The device for inference and evaluation: Burn's `flex` CPU backend, or CUDA device 0.
    pub fn device(&self) -> Device {
        match self {
            BackendKind::Cpu => Device::flex(),
            BackendKind::Cuda(_) => Device::cuda(0),
        }
    }

    /// The same device recording gradients, for training.
    pub fn train_device(&self) -> Device {
        self.device().autodiff()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("CUDA was requested but cannot be used: {0}. Choose the CPU (--device cpu) or auto (--device auto).")]
    CudaUnavailable(CudaProblem),
    #[error("cannot set the CPU thread count to {threads}: {reason}")]
    Threads { threads: usize, reason: String },
}

/// Why CUDA cannot be used here, in the order the checks run.
#[derive(Debug, thiserror::Error)]
pub enum CudaProblem {
    #[error("the CUDA driver library (libcuda) was not found; no NVIDIA driver is installed")]
    NoDriver,
    #[error("the CUDA runtime compiler library (libnvrtc) was not found; install the CUDA toolkit")]
    NoCompiler,
    #[error("the CUDA driver failed to initialise ({0})")]
    Init(cudarc::driver::DriverError),
    #[error("the CUDA driver cannot count GPUs ({0})")]
    Count(cudarc::driver::DriverError),
    #[error("the CUDA driver reports no GPU")]
    NoGpu,
    #[error("cannot open GPU 0 ({0})")]
    Open(cudarc::driver::DriverError),
    #[error("the CUDA driver check panicked (see the message above)")]
    CheckPanicked,
    #[error("a test sum on the GPU gave {0} instead of 6")]
    WrongSum(f32),
    #[error("Burn's CUDA backend panicked on its first operation")]
    BurnPanicked,
}

/// Asks the CUDA driver, via cudarc's dynamic loading, whether a GPU is usable. Never panics;
/// the error says what is missing.
pub fn detect_cuda() -> Result<CudaInfo, CudaProblem> {
    catch_unwind(detect_cuda_unguarded).unwrap_or(Err(CudaProblem::CheckPanicked))
}

fn detect_cuda_unguarded() -> Result<CudaInfo, CudaProblem> {
    use cudarc::driver::result;

    // SAFETY: these only try to open the shared libraries by name (libloading) and close them.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(CudaProblem::NoDriver);
    }
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(CudaProblem::NoCompiler);
    }
    result::init().map_err(CudaProblem::Init)?;
    let count = result::device::get_count().map_err(CudaProblem::Count)?;
    if count <= 0 {
        return Err(CudaProblem::NoGpu);
    }
    let device = result::device::get(0).map_err(CudaProblem::Open)?;
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
fn probe_burn_cuda() -> Result<(), CudaProblem> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let device = Device::cuda(0);
        Tensor::<1>::from_floats([1.0, 2.0, 3.0], &device)
            .sum()
            .into_scalar::<f32>()
    }));
    match outcome {
        Ok(sum) if (sum - 6.0).abs() < 1e-4 => Ok(()),
        Ok(sum) => Err(CudaProblem::WrongSum(sum)),
        Err(_) => Err(CudaProblem::BurnPanicked),
    }
}

/// Picks the backend for `choice`: under `auto` a CPU fallback with a message saying why, under
/// `cuda` an error saying why not.
pub fn resolve(choice: DeviceChoice) -> Result<Resolved, BackendError> {
    ensure_default_device();
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

/// Whether a panic message from Burn/CubeCL reports that the device ran out of memory. CubeCL
/// answers a failed allocation with `IoError::OutOfMemory` ("out of device memory allocating N
/// bytes") or `LaunchError::OutOfMemory` ("An out-of-memory error happened during launch"), the
/// CUDA driver with `CUDA_ERROR_OUT_OF_MEMORY`; Burn unwraps them into panics.
pub fn is_out_of_memory(panic_message: &str) -> bool {
    let lower = panic_message.to_ascii_lowercase();
    [
        "out of device memory",
        "out-of-memory",
        "out of memory",
        "cuda_error_out_of_memory",
        "outofmemory",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// The text of a caught panic's payload (`panic!` gives a `String` or a `&str`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// Makes Burn's default device one that exists on this machine. Burn picks CUDA as the default
/// whenever it is compiled in, and a few of its paths create tensors there without being given a
/// device (loading an optimiser's state does); on a machine without a GPU that panics. Unless the
/// user set `BURN_DEVICE`, it is set once per process: `cuda` when a GPU is usable, else `flex`.
pub fn ensure_default_device() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("BURN_DEVICE").is_none() {
            let name = if detect_cuda().is_ok() { "cuda" } else { "flex" };
            // Set before any thread of ours reads it: Burn reads it only when a default is asked for.
            std::env::set_var("BURN_DEVICE", name);
        }
    });
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
        if let Err(reason) = detect_cuda().map_err(|e| e.to_string()) {
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
                let reason = reason.to_string();
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
                let reason = reason.to_string();
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
    fn out_of_memory_panics_are_recognised_and_others_are_not() {
        let oom = [
            "called `Result::unwrap()` on an `Err` value: OutOfMemory { size: 8589934592 }",
            "out of device memory allocating 8589934592 bytes\n<backtrace>",
            "An out-of-memory error happened during launch\nCaused by:\n  pool exhausted",
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")",
        ];
        for message in oom {
            assert!(is_out_of_memory(message), "{message}");
        }
        for message in [
            "index out of bounds: the len is 3 but the index is 7",
            "Unable to dynamically load the cuda shared library",
            "A compilation error happened during launch",
        ] {
            assert!(!is_out_of_memory(message), "{message}");
        }
    }

    #[test]
    fn panic_payloads_are_read_as_text() {
        let owned = std::panic::catch_unwind(|| panic!("{} bytes", 42)).unwrap_err();
        assert_eq!(panic_message(owned.as_ref()), "42 bytes");
        let literal = std::panic::catch_unwind(|| panic!("literal")).unwrap_err();
        assert_eq!(panic_message(literal.as_ref()), "literal");
    }

    #[derive(Module, Debug)]
    struct Affine {
        w: Param<Tensor<2>>,
        b: Param<Tensor<1>>,
    }

    fn affine(device: &Device) -> Affine {
        Affine {
            w: Param::from_tensor(Tensor::from_floats([[0.5, -1.0], [2.0, 0.25]], device)),
            b: Param::from_tensor(Tensor::from_floats([0.1, -0.1], device)),
        }
    }

    #[test]
    fn half_precision_casts_every_parameter_and_keeps_ids_and_values() {
        let device = Device::flex();
        let model = affine(&device);
        let id = model.w.id;
        for precision in [Precision::Bf16, Precision::F16] {
            let half = precision.cast_module(model.clone());
            assert_eq!(half.w.id, id, "the optimiser keys its state by parameter id");
            assert_eq!(half.w.val().dtype(), precision.float_dtype().into());
            assert_eq!(half.b.val().dtype(), precision.float_dtype().into());
            // These values are exact in both formats.
            let back = Precision::F32.cast_module(half);
            assert_eq!(back.w.val().dtype(), burn::tensor::DType::F32);
            assert_eq!(
                back.w.val().into_data().try_to_vec::<f32>().unwrap(),
                vec![0.5, -1.0, 2.0, 0.25]
            );
        }
    }

    #[test]
    fn a_bf16_training_step_gives_finite_bf16_gradients() {
        let device = Device::flex().autodiff();
        let model = Precision::Bf16.cast_module(affine(&device));
        let x = Tensor::<2>::from_floats([[1.0, 2.0], [3.0, -1.0]], &device).cast(FloatDType::BF16);
        let y = x.matmul(model.w.val()) + model.b.val().unsqueeze::<2>();
        let loss = y.cast(FloatDType::F32).powf_scalar(2.0).mean();
        let grads = loss.backward();
        let grad = model.w.val().grad(&grads).expect("w takes part in the loss");
        let values: Vec<f32> = grad.cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(values.len(), 4);
        assert!(values.iter().all(|v| v.is_finite() && *v != 0.0), "{values:?}");
    }

    #[test]
    fn precision_names_round_trip() {
        use clap::ValueEnum;
        for precision in [Precision::F32, Precision::Bf16, Precision::F16] {
            assert_eq!(serde_json::to_string(&precision).unwrap(), format!("\"{precision}\""));
            assert_eq!(Precision::from_str(precision.name(), false).unwrap(), precision);
        }
    }

    #[test]
    fn zero_threads_is_refused() {
        assert!(set_cpu_threads(0).is_err());
    }
}
