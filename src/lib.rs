//! q4gpu: quantized LLM inference on the GPU through wgpu.
//!
//! The path a token takes: GGUF file → memory map ([`gguf`]) → typed block
//! formats ([`quant`]) → weights uploaded once ([`model`]) → one command buffer
//! per step ([`gpu`] kernels) → one token id read back → [`sampling`] →
//! [`tokenizer`] streams text.

pub mod clock;
pub mod decoder;
pub mod env;
pub mod error;
pub mod gguf;
pub mod gpu;
pub mod model;
pub mod quant;
pub mod sampling;
pub mod session;
pub mod tokenizer;

pub use decoder::{CpuDecoder, Decoder, Generate, GenerateStats, Model};
pub use error::{Error, Result};
pub use gpu::{Gpu, GpuOptions};
pub use session::{CancelHandle, Reply, Session, SessionOptions, StopReason};
