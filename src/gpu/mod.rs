//! GPU context, kernels (WGSL or MSL), and mapped-readback validation.
//! OWNER: lead.

/// Errors from the GPU side: no adapter, missing features, wgpu validation errors.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("{0}")]
    Other(String),
}
