//! The llama architecture: config from GGUF metadata, CPU reference forward, GPU forward.
//! OWNER: model helper (config, cpu); gpu forward by the lead.

/// Errors from loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Invalid(String),
}
