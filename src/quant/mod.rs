//! Block formats: Q4_0, Q4_1, Q8_0, F16, BF16, F32 — quantize, dequantize, CPU dot.
//! OWNER: quant helper. Placeholder until filled in.

/// Errors from quantization helpers (bad lengths, unsupported types).
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    #[error("{0}")]
    Invalid(String),
}
