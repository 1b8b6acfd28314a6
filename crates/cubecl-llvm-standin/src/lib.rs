//! cxr8's stand-in for `cubecl-llvm` 0.11.3, CubeCL's LLVM (pliron) kernel compiler.
//!
//! Why it exists: `cubecl-cuda` 0.11 depends on `cubecl-llvm` unconditionally, even when its
//! `cpp` feature makes NVRTC (CUDA C++) the backend that compiles every kernel. The real crate's
//! build script downloads a prebuilt LLVM, which fails offline, so the top-level Cargo.toml
//! swaps this crate in through `[patch.crates-io]`. It carries only the names `cubecl-cuda`
//! (and `cubecl-hip`, under `amdgpu`) refer to. On the `cpp` path none of them compiles
//! anything: the PTX version feeds an option the C++ backend ignores and a cache-namespace
//! string, and [`PlironCompiler`] is never constructed. Should the LLVM path run anyway, its
//! `compile` returns a [`CompilationError`] saying so; nothing here panics.
//!
//! When to delete it: once `cubecl-cuda` makes `cubecl-llvm` an optional dependency (or stops
//! downloading LLVM at build time), remove this crate and its `[patch.crates-io]` entry.
//!
//! Not covered: `cubecl-cpu` (Burn's `cpu` backend) needs the real crate's JIT engine.

use core::fmt;

use cubecl_core::environment::backtrace::BackTrace;
use cubecl_core::ir::amd::GfxArch;
use cubecl_runtime::compiler::{CompilationError, Compiler};
use cubecl_runtime::kernel::{BufferIOAttr, KernelDefinition};

#[cfg(feature = "nvptx")]
pub mod nvptx {
    //! NVPTX-specific items.

    pub mod ptx_version {
        //! The PTX ISA version a CUDA driver can load.

        use core::fmt;

        /// A PTX ISA version, e.g. 8.7. Displays as LLVM's NVPTX feature name, `ptx87`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct PtxVersion {
            major: u8,
            minor: u8,
        }

        /// CUDA release (major, minor) that introduced each PTX ISA version (major, minor), in
        /// release order, from NVIDIA's PTX ISA release history. 12.6 added no new version and
        /// 12.7 was never shipped on its own; a driver newer than the last row loads that row.
        const RELEASES: &[((i32, i32), (u8, u8))] = &[
            ((10, 0), (6, 3)),
            ((10, 1), (6, 4)),
            ((10, 2), (6, 5)),
            ((11, 0), (7, 0)),
            ((11, 1), (7, 1)),
            ((11, 2), (7, 2)),
            ((11, 3), (7, 3)),
            ((11, 4), (7, 4)),
            ((11, 5), (7, 5)),
            ((11, 6), (7, 6)),
            ((11, 7), (7, 7)),
            ((11, 8), (7, 8)),
            ((12, 0), (8, 0)),
            ((12, 1), (8, 1)),
            ((12, 2), (8, 2)),
            ((12, 3), (8, 3)),
            ((12, 4), (8, 4)),
            ((12, 5), (8, 5)),
            ((12, 7), (8, 6)),
            ((12, 8), (8, 7)),
            ((12, 9), (8, 8)),
            ((13, 0), (9, 0)),
            ((13, 1), (9, 1)),
        ];

        impl PtxVersion {
            /// The newest PTX version a driver loads, given the driver version as
            /// `cuDriverGetVersion` reports it (`1000 * major + 10 * minor`: 12.8 is `12080`).
            /// `None` for drivers older than CUDA 10.0 (or nonsense values).
            pub fn for_driver(driver: i32) -> Option<Self> {
                let cuda = (driver / 1000, (driver % 1000) / 10);
                RELEASES
                    .iter()
                    .take_while(|(release, _)| *release <= cuda)
                    .last()
                    .map(|&(_, (major, minor))| Self { major, minor })
            }

            /// The ISA major version (8 for PTX 8.7).
            pub fn major(self) -> u8 {
                self.major
            }

            /// The ISA minor version (7 for PTX 8.7).
            pub fn minor(self) -> u8 {
                self.minor
            }
        }

        impl fmt::Display for PtxVersion {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "ptx{}{}", self.major, self.minor)
            }
        }
    }
}

pub mod shared {
    //! Items shared by the GPU targets.

    pub mod lowered_features {
        //! Narrowing device properties to what the LLVM backend lowers.

        use cubecl_core::ir::DeviceProperties;

        /// The GPU target whose features [`restrict_features`] would narrow to.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum GpuTarget {
            #[cfg(feature = "nvptx")]
            Nvptx,
            /// `wmma` is the part's WMMA generation, `None` where it has none.
            #[cfg(feature = "amdgpu")]
            AmdGpu {
                wmma: Option<cubecl_core::ir::amd::AmdWmma>,
            },
        }

        /// Leaves `props` as it is. Only reached when the LLVM backend is the selected one,
        /// and every kernel compile then fails with a clear error anyway (see
        /// [`PlironCompiler`](crate::PlironCompiler)), so there is nothing to narrow for.
        pub fn restrict_features(props: &mut DeviceProperties, target: GpuTarget) {
            let _ = (props, target);
        }
    }
}

/// Where the LLVM backend would compile to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LlvmTarget {
    #[default]
    Cpu,
    #[cfg(feature = "amdgpu")]
    AmdGpu,
    #[cfg(feature = "nvptx")]
    Nvptx,
}

/// Options of the LLVM backend; accepted and ignored.
#[derive(Clone, Debug, Default)]
pub struct PlironOptions {
    /// AMD architecture (AMDGPU target only).
    pub arch: Option<GfxArch>,
    /// NVIDIA architecture (NVPTX target only).
    #[cfg(feature = "nvptx")]
    pub sm_arch: Option<cubecl_core::ir::nvidia::SmArch>,
    /// PTX version to emit (NVPTX target only).
    #[cfg(feature = "nvptx")]
    pub ptx_version: Option<nvptx::ptx_version::PtxVersion>,
    /// Whether scalars and metadata travel in the kernel parameter block.
    pub grid_constants: bool,
}

/// A PTX module as the LLVM backend would hand it over. Never produced by this stand-in.
#[cfg(feature = "nvptx")]
#[derive(Clone, Debug)]
pub struct NvptxModule {
    /// PTX text, NUL-terminated.
    pub ptx: Vec<core::ffi::c_char>,
    /// Entry-point symbol.
    pub entrypoint: String,
    /// IR, for logs.
    pub ir: String,
    /// Dynamic shared memory per launch, in bytes.
    pub shared_memory_size: usize,
    /// What the kernel does with each buffer binding.
    pub io: Vec<BufferIOAttr>,
}

/// An AMD code object as the LLVM backend would hand it over. Never produced by this stand-in.
#[cfg(feature = "amdgpu")]
#[derive(Clone, Debug)]
pub struct AmdGpuModule {
    /// Loadable code object.
    pub code_object: cubecl_core::environment::bytes::Bytes,
    /// Entry-point symbol.
    pub entrypoint: String,
    /// IR, for logs.
    pub ir: String,
    /// Assembly, when dumped.
    pub asm: Option<String>,
    /// Dynamic shared memory per launch, in bytes.
    pub shared_memory_size: usize,
    /// What the kernel does with each buffer binding.
    pub io: Vec<BufferIOAttr>,
}

/// What the LLVM backend would compile a kernel to.
#[derive(Clone, Debug)]
pub enum PlironArtifact {
    #[cfg(feature = "nvptx")]
    NvptxCode(NvptxModule),
    #[cfg(feature = "amdgpu")]
    AmdGpuCode(AmdGpuModule),
}

impl fmt::Display for PlironArtifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(feature = "nvptx")]
            PlironArtifact::NvptxCode(module) => f.write_str(&module.ir),
            #[cfg(feature = "amdgpu")]
            PlironArtifact::AmdGpuCode(module) => f.write_str(&module.ir),
            #[allow(unreachable_patterns)]
            _ => Ok(()),
        }
    }
}

/// The LLVM backend's compiler. Here it refuses every kernel with a [`CompilationError`].
#[derive(Clone, Debug, Default)]
pub struct PlironCompiler {
    pub target: LlvmTarget,
}

/// The error every [`PlironCompiler::compile`] returns.
fn llvm_backend_missing(kernel_name: &str) -> CompilationError {
    CompilationError::Generic {
        reason: format!(
            "cannot compile kernel `{kernel_name}`: CubeCL's LLVM backend is not built into \
             cxr8 (cubecl-llvm is replaced by a stand-in); CUDA kernels are compiled with \
             NVRTC, which needs cubecl-cuda's `cpp` feature enabled"
        ),
        backtrace: BackTrace::capture(),
    }
}

impl Compiler for PlironCompiler {
    type Representation = PlironArtifact;
    type CompilationOptions = PlironOptions;

    fn compile(
        &mut self,
        kernel: KernelDefinition,
        _options: &Self::CompilationOptions,
    ) -> Result<Self::Representation, CompilationError> {
        Err(llvm_backend_missing(&kernel.settings.kernel_name))
    }

    fn buffer_io(repr: &Self::Representation) -> Option<Vec<BufferIOAttr>> {
        match repr {
            #[cfg(feature = "nvptx")]
            PlironArtifact::NvptxCode(module) => Some(module.io.clone()),
            #[cfg(feature = "amdgpu")]
            PlironArtifact::AmdGpuCode(module) => Some(module.io.clone()),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    fn extension(&self) -> &'static str {
        match self.target {
            LlvmTarget::Cpu => "plir",
            #[allow(unreachable_patterns)]
            _ => "ll",
        }
    }

    fn lang_tag(&self) -> &'static str {
        match self.target {
            LlvmTarget::Cpu => "mlir",
            #[allow(unreachable_patterns)]
            _ => "llvm",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_refuses_with_a_clear_error() {
        use cubecl_core::ir::{Scope, metadata::Info, settings::KernelSettings};

        let dim = (1, 1, 1).into();
        let mut settings = KernelSettings::new(dim, Default::default(), Default::default());
        settings.kernel_name = "probe_kernel".into();
        let kernel = KernelDefinition {
            body: Scope::root(settings.clone()),
            info: Info::default(),
            settings,
        };
        // The target never matters: every one is refused the same way.
        let mut compiler = PlironCompiler::default();
        let error = compiler.compile(kernel, &PlironOptions::default()).unwrap_err();
        let CompilationError::Generic { reason, .. } = &error else {
            panic!("expected a generic error, got {error}");
        };
        assert!(reason.contains("probe_kernel"), "{reason}");
        assert!(reason.contains("not built into cxr8"), "{reason}");
        assert!(reason.contains("NVRTC") && reason.contains("`cpp`"), "{reason}");
        assert!(error.is_refusal());
        assert_eq!(compiler.lang_tag(), "mlir");
    }

    #[cfg(feature = "nvptx")]
    #[test]
    fn gpu_target_tags() {
        let compiler = PlironCompiler {
            target: LlvmTarget::Nvptx,
        };
        assert_eq!((compiler.extension(), compiler.lang_tag()), ("ll", "llvm"));
    }

    #[cfg(feature = "nvptx")]
    #[test]
    fn ptx_version_follows_the_driver() {
        use nvptx::ptx_version::PtxVersion;
        let ptx = |driver| PtxVersion::for_driver(driver).map(|v| v.to_string());

        assert_eq!(ptx(12080).as_deref(), Some("ptx87"));
        assert_eq!(ptx(12090).as_deref(), Some("ptx88"));
        assert_eq!(ptx(12060).as_deref(), Some("ptx85")); // 12.6 added no PTX version
        assert_eq!(ptx(12020).as_deref(), Some("ptx82"));
        assert_eq!(ptx(11080).as_deref(), Some("ptx78"));
        assert_eq!(ptx(11040).as_deref(), Some("ptx74"));
        assert_eq!(ptx(10020).as_deref(), Some("ptx65"));
        assert_eq!(ptx(13000).as_deref(), Some("ptx90"));
        assert_eq!(ptx(13010).as_deref(), Some("ptx91"));
        assert_eq!(ptx(14000).as_deref(), Some("ptx91")); // newer driver: newest known
        assert_eq!(ptx(9020), None);
        for nonsense in [0, -1, i32::MIN, i32::MAX] {
            let _ = PtxVersion::for_driver(nonsense);
        }
        // cubecl-cuda keys its LLVM cache on this, and relies on these two differing.
        assert_ne!(PtxVersion::for_driver(12080), PtxVersion::for_driver(12090));
        let v = PtxVersion::for_driver(12040).unwrap();
        assert_eq!((v.major(), v.minor()), (8, 4));
    }

    #[cfg(feature = "nvptx")]
    #[test]
    fn ptx_versions_never_decrease_with_the_driver() {
        use nvptx::ptx_version::PtxVersion;
        let mut previous = None;
        for driver in (10000..15000).step_by(10) {
            let now = PtxVersion::for_driver(driver);
            assert!(now.is_some() && now >= previous, "{driver}");
            previous = now;
        }
    }
}
