//! GPU side: device and features ([`Gpu`]), kernels chosen per backend (MSL
//! through passthrough on Metal, WGSL elsewhere), matvec operations, and
//! mapped-buffer readback that validates results against the CPU reference.

pub mod argmax;
mod context;
pub mod matvec;
pub mod prefill;
pub mod readback;
pub mod sample;
pub mod selfcheck;
pub mod shader;
pub mod timing;
pub mod tuning;

pub use argmax::Argmax;
pub(crate) use context::MapWait;
pub use context::{
    layout_entries, matrix_units_usable, parse_backend, Gpu, GpuOptions, KernelPath, KernelSpec,
    COOP_FEATURES, COOP_WORKGROUP_BYTES, IMMEDIATE_SIZE, WAIT_SLICE,
};
pub use matvec::{
    capture, Captured, Dispatch, GpuMatrix, Inputs, KernelRecord, MatvecInput, MatvecKernels,
    MatvecOp,
};
pub use prefill::{BatchDispatch, MatmulBinding, MatmulKernels};
pub use readback::{compare, read_f32, read_u32, ValidationReport};
pub use sample::GpuSampler;
pub use tuning::{AdapterClass, MatvecTuning, Tuning, MAX_STEPS_PER_SUBMIT};

/// Errors from the GPU side, each naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(
        "no GPU adapter found for backends {backends}. On Linux install a Vulkan driver \
         (e.g. `apt-get install mesa-vulkan-drivers libvulkan1` for the lavapipe software \
         device), or run the CPU reference path with --cpu"
    )]
    NoAdapter { backends: String },
    /// wgpu's error is in the message, not chained as a source.
    #[error("could not create a device on '{adapter}': {error}")]
    RequestDevice {
        adapter: String,
        error: wgpu::RequestDeviceError,
    },
    #[error("shader '{name}': {message}")]
    Shader { name: String, message: String },
    /// A kernel variant that failed to build before, with that failure's
    /// text: [`crate::gpu::Gpu::kernel`] does not try it again.
    #[error("{0}")]
    BuildFailed(String),
    #[error("wgpu validation error while {context}: {message}")]
    Validation { context: String, message: String },
    #[error("GPU out of memory while {context}")]
    OutOfMemory { context: String },
    /// [`GpuError::OutOfMemory`] while a model was being built, with the
    /// estimate of what the whole model needs.
    #[error("{}", .estimate.out_of_memory(.context))]
    ModelOutOfMemory {
        context: String,
        estimate: crate::model::MemoryEstimate,
    },
    /// The model's estimated memory is over
    /// [`crate::model::ModelOptions::memory_budget`]; nothing was allocated.
    #[error("{}", .estimate.over_budget(*.budget))]
    OverBudget {
        estimate: crate::model::MemoryEstimate,
        budget: u64,
    },
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    #[error("buffer mapping failed: {0}")]
    Map(String),
    #[error("{what} needs {needed} bytes in one storage binding, but this device allows {limit}")]
    BindingTooLarge {
        what: String,
        needed: u64,
        limit: u64,
    },
    #[error("unsupported on GPU: {0}")]
    Unsupported(String),
    #[error("bad argument: {0}")]
    BadArgument(String),
    #[error("{var}={value:?}: expected {expected}")]
    BadEnv {
        var: &'static str,
        value: String,
        expected: String,
    },
}
