//! The llama architecture: config from GGUF metadata, weight views, CPU reference forward.
//! OWNER: model helper (config, weights, cpu); gpu forward by the lead.

mod config;
mod cpu;
mod gpu;
mod memory;
mod weights;

pub use config::{Arch, Config};
pub use cpu::{
    attention_head, rmsnorm, rope, rope_at, rope_freqs, rope_neox_at, silu, softmax, CpuModel,
};
pub use gpu::{GpuModel, GpuTokens, ModelOptions};
pub use memory::{format_bytes, MemoryEstimate};
pub use weights::{LayerWeights, QTensor, Weights};

use crate::gguf::{GgmlType, GgufError};
use crate::quant::QuantError;

/// Errors from loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A metadata key or tensor could not be read.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A block-format helper rejected its input.
    #[error(transparent)]
    Quant(#[from] QuantError),
    /// `general.architecture` names something other than `llama`.
    #[error("unsupported architecture '{0}' (supported: llama, qwen2, qwen3)")]
    UnsupportedArchitecture(String),
    /// A llama variant the forward pass does not implement yet (it would
    /// otherwise compute wrong logits silently).
    #[error("unsupported llama variant: {0}")]
    UnsupportedVariant(String),
    /// A hyper-parameter is zero or inconsistent with the others.
    #[error("bad model config at '{key}': {reason}")]
    BadConfig { key: String, reason: String },
    /// RoPE covers only part of each head (not implemented).
    #[error("llama.rope.dimension_count is {rope_dims} but head size is {head_dim}: partial rotary embeddings are unsupported")]
    PartialRotary { rope_dims: u64, head_dim: usize },
    /// The vocabulary and the embedding table disagree.
    #[error(
        "tokenizer.ggml.tokens has {tokens} entries but token_embd.weight has {embd_rows} rows"
    )]
    VocabMismatch { tokens: usize, embd_rows: u64 },
    /// A weight tensor has the wrong shape for the config.
    #[error("tensor '{name}': expected shape {expected}, found {found}")]
    TensorShape {
        name: String,
        expected: String,
        found: String,
    },
    /// A weight tensor's byte size does not match its shape and type.
    #[error("tensor '{name}': {ty} data of {found} bytes, expected {expected}")]
    TensorSize {
        name: String,
        ty: GgmlType,
        expected: u64,
        found: u64,
    },
    /// `pos` is beyond the context length or the configured maximum.
    #[error("position {pos} out of range (maximum {max} positions)")]
    PositionOutOfRange { pos: usize, max: usize },
    /// `pos` would attend to positions that were never computed.
    #[error("position {pos} skips ahead: only positions 0..{filled} are in the KV cache")]
    PositionSkipped { pos: usize, filled: usize },
    /// The token id is not in the vocabulary.
    #[error("token {token} out of range (vocabulary size {vocab_size})")]
    TokenOutOfRange { token: u32, vocab_size: usize },
    /// Anything else, described in words.
    #[error("{0}")]
    Invalid(String),
}
