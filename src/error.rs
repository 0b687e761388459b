//! The crate-wide error type: one variant per subsystem, each naming the problem.

/// Any failure q4gpu can report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("GGUF: {0}")]
    Gguf(#[from] crate::gguf::GgufError),
    #[error("quantization: {0}")]
    Quant(#[from] crate::quant::QuantError),
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    #[error("model: {0}")]
    Model(#[from] crate::model::ModelError),
    #[error("GPU: {0}")]
    Gpu(#[from] crate::gpu::GpuError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
