//! The crate-wide error type: one variant per subsystem, each naming the problem.

/// Any failure q4gpu can report. Each variant's message includes the
/// subsystem's error, which is therefore not also chained as a `source`: a
/// report (`{:#}`, anyhow) prints every cause once.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("GGUF: {0}")]
    Gguf(crate::gguf::GgufError),
    #[error("quantization: {0}")]
    Quant(crate::quant::QuantError),
    #[error("tokenizer: {0}")]
    Tokenizer(crate::tokenizer::TokenizerError),
    #[error("model: {0}")]
    Model(crate::model::ModelError),
    #[error("GPU: {0}")]
    Gpu(crate::gpu::GpuError),
    #[error("I/O: {0}")]
    Io(std::io::Error),
}

macro_rules! from_errors {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        $(impl From<$ty> for Error {
            fn from(e: $ty) -> Self {
                Error::$variant(e)
            }
        })*
    };
}

from_errors!(
    Gguf(crate::gguf::GgufError),
    Quant(crate::quant::QuantError),
    Tokenizer(crate::tokenizer::TokenizerError),
    Model(crate::model::ModelError),
    Gpu(crate::gpu::GpuError),
    Io(std::io::Error),
);

pub type Result<T, E = Error> = std::result::Result<T, E>;
