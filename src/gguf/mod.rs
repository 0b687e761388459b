//! GGUF v2/v3 reader (validating, zero-copy over a memory map) and v3 writer.
//! OWNER: gguf helper. Placeholder until filled in.

mod types;
pub use types::GgmlType;

/// Errors from reading or writing GGUF files.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{0}")]
    Invalid(String),
}
