//! Byte-level BPE tokenizer read from GGUF metadata.
//! OWNER: tokenizer helper. Placeholder until filled in.

/// Errors from building or using the tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{0}")]
    Invalid(String),
}
