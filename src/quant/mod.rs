//! Block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, the K-quants Q4_K, Q5_K and
//! Q6_K, F16, BF16, F32 — quantize, dequantize, CPU dot.
//!
//! Each format lives in its own file with a `#[repr(C)]`, alignment-1 block type
//! (so `bytemuck::cast_slice` works on any `&[u8]`, e.g. a memory-mapped tensor)
//! and its quantize / dequantize / dot side by side. The quantizers are
//! bit-identical to ggml's reference quantizers (checked against a fixture that
//! ggml produced, see `tests/data/README.md`). The functions here are the
//! type-erased entry points: they check lengths and return [`QuantError`].
//!
//! The CPU dot products are the oracle the GPU kernels are tested against: per
//! block (32 elements; groups of 32 for the float types; the K-quants' scale
//! groups of 32 or 16) the products are summed in f32 in element order, the
//! block's scale is applied once, and block results are added to an f32 total
//! in order.

pub mod convert;
pub mod f16;
pub mod f32;
pub mod k_common;
pub mod q4_0;
pub mod q4_1;
pub mod q4_k;
pub mod q5_0;
pub mod q5_1;
pub mod q5_k;
pub mod q6_k;
pub mod q8_0;
pub mod q8_act;

pub use q4_0::BlockQ4_0;
pub use q4_1::BlockQ4_1;
pub use q4_k::BlockQ4K;
pub use q5_0::BlockQ5_0;
pub use q5_1::BlockQ5_1;
pub use q5_k::BlockQ5K;
pub use q6_k::BlockQ6K;
pub use q8_0::BlockQ8_0;

/// A block format's quantize / dequantize / dot on slices of exactly
/// [`QuantBlock::QK`] elements, so one set of row functions serves them all.
pub trait QuantBlock: bytemuck::Pod {
    /// Elements per block.
    const QK: usize;
    /// ggml's reference quantization of `x` (`QK` values).
    fn quantize_block(x: &[f32]) -> Self;
    /// The `QK` values this block encodes, into `y`.
    fn dequantize_block(&self, y: &mut [f32]);
    /// This block's dot with `v` (`QK` values).
    fn dot_block(&self, v: &[f32]) -> f32;
    /// The codes of 32-element group `g` (0..QK/32) and, per half (elements
    /// 0..15, 16..31), the scale s and offset m with value = s·q + m: what
    /// the GPU's int8-input kernels compute with (`shaders/block_codes`).
    fn group_codes(&self, g: usize) -> GroupCodes;
}

/// A 32-element group's codes with per-half scale and offset (value = s·q + m).
pub struct GroupCodes {
    pub q: [u8; 32],
    pub s: [f32; 2],
    pub m: [f32; 2],
}

impl GroupCodes {
    /// The group's dot with an int8 activation block, as the kernels take
    /// it: per half `d·(s·Σq·c + m·Σc)` with integer sums.
    pub fn dot_q8(&self, a: &q8_act::BlockQ8Act) -> f32 {
        let half = |h: usize| {
            let r = 16 * h..16 * h + 16;
            let qc: i32 = self.q[r.clone()]
                .iter()
                .zip(&a.codes[r.clone()])
                .map(|(&q, &c)| i32::from(q) * i32::from(c))
                .sum();
            let cs: i32 = a.codes[r].iter().map(|&c| i32::from(c)).sum();
            self.s[h] * qc as f32 + self.m[h] * cs as f32
        };
        a.d * (half(0) + half(1))
    }
}

fn dot_q8_blocks<B: QuantBlock>(x: &[u8], a: &[q8_act::BlockQ8Act]) -> f32 {
    let x: &[B] = bytemuck::cast_slice(x);
    let groups = B::QK / 32;
    let mut total = 0.0f32;
    for (i, b) in x.iter().enumerate() {
        for g in 0..groups {
            if let Some(act) = a.get(i * groups + g) {
                total += b.group_codes(g).dot_q8(act);
            }
        }
    }
    total
}

/// The largest magnitude in `x` and the signed value that has it (the first
/// one on ties), as ggml's Q4_0 / Q5_0 / Q6_K reference quantizers find it.
pub(crate) fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    (amax, max)
}

/// `x`'s minimum and maximum from (f32::MAX, −f32::MAX), as ggml's Q4_1 /
/// Q5_1 reference quantizers track them.
pub(crate) fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

fn quantize_blocks<B: QuantBlock>(x: &[f32], y: &mut [u8]) {
    let y: &mut [B] = bytemuck::cast_slice_mut(y);
    for (b, xs) in y.iter_mut().zip(x.chunks_exact(B::QK)) {
        *b = B::quantize_block(xs);
    }
}

fn dequantize_blocks<B: QuantBlock>(x: &[u8], y: &mut [f32]) {
    let x: &[B] = bytemuck::cast_slice(x);
    for (b, ys) in x.iter().zip(y.chunks_exact_mut(B::QK)) {
        b.dequantize_block(ys);
    }
}

fn dot_blocks<B: QuantBlock>(x: &[u8], v: &[f32]) -> f32 {
    let x: &[B] = bytemuck::cast_slice(x);
    x.iter()
        .zip(v.chunks_exact(B::QK))
        .fold(0.0, |t, (b, vs)| t + b.dot_block(vs))
}

use crate::gguf::GgmlType;

/// Errors from the type-erased quantization helpers; each names the problem.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    /// An element count that a format cannot hold as whole blocks.
    #[error("{len} elements is not a multiple of the {ty} block size {block}")]
    NotBlockMultiple {
        ty: GgmlType,
        len: usize,
        block: usize,
    },
    /// Encoded bytes whose length does not match the element count.
    #[error("{ty} data for {elements} elements must be {expected} bytes, got {actual}")]
    ByteLengthMismatch {
        ty: GgmlType,
        elements: usize,
        expected: usize,
        actual: usize,
    },
    /// A byte size that does not fit in memory.
    #[error("{elements} elements of {ty} do not fit in memory")]
    TooLarge { ty: GgmlType, elements: usize },
    /// A GGML type id this crate cannot quantize or dequantize.
    #[error("unsupported GGML type id {0}")]
    UnsupportedType(u32),
}

/// Maps a raw GGML type id to a [`GgmlType`] this module handles.
pub fn type_from_id(id: u32) -> Result<GgmlType, QuantError> {
    GgmlType::from_u32(id).ok_or(QuantError::UnsupportedType(id))
}

/// Bytes needed for `n` elements of `ty`, checking that `n` is a whole number of blocks.
pub fn encoded_len(ty: GgmlType, n: usize) -> Result<usize, QuantError> {
    let block = ty.block_size();
    if !n.is_multiple_of(block) {
        return Err(QuantError::NotBlockMultiple { ty, len: n, block });
    }
    (n / block)
        .checked_mul(ty.type_size())
        .ok_or(QuantError::TooLarge { ty, elements: n })
}

fn check_bytes(ty: GgmlType, n: usize, bytes: &[u8]) -> Result<(), QuantError> {
    let expected = encoded_len(ty, n)?;
    if bytes.len() != expected {
        return Err(QuantError::ByteLengthMismatch {
            ty,
            elements: n,
            expected,
            actual: bytes.len(),
        });
    }
    Ok(())
}

/// Encodes `src` as `ty` into `dst`, which must be exactly [`encoded_len`] bytes.
pub fn quantize_into(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check_bytes(ty, src.len(), dst)?;
    match ty {
        GgmlType::F32 => f32::quantize_row(src, bytemuck::cast_slice_mut(dst)),
        GgmlType::F16 => f16::quantize_row_f16(src, bytemuck::cast_slice_mut(dst)),
        GgmlType::BF16 => f16::quantize_row_bf16(src, bytemuck::cast_slice_mut(dst)),
        GgmlType::Q4_0 => q4_0::quantize_row(src, bytemuck::cast_slice_mut(dst)),
        GgmlType::Q4_1 => q4_1::quantize_row(src, bytemuck::cast_slice_mut(dst)),
        GgmlType::Q8_0 => q8_0::quantize_row(src, bytemuck::cast_slice_mut(dst)),
        GgmlType::Q5_0 => quantize_blocks::<BlockQ5_0>(src, dst),
        GgmlType::Q5_1 => quantize_blocks::<BlockQ5_1>(src, dst),
        GgmlType::Q4_K => quantize_blocks::<BlockQ4K>(src, dst),
        GgmlType::Q5_K => quantize_blocks::<BlockQ5K>(src, dst),
        GgmlType::Q6_K => quantize_blocks::<BlockQ6K>(src, dst),
    }
    Ok(())
}

/// Encodes `src` as `ty`; `src.len()` must be a multiple of the block size.
pub fn quantize(ty: GgmlType, src: &[f32]) -> Result<Vec<u8>, QuantError> {
    let mut out = vec![0u8; encoded_len(ty, src.len())?];
    quantize_into(ty, src, &mut out)?;
    Ok(out)
}

/// Decodes `bytes` of type `ty` into `out`; `bytes` must hold exactly `out.len()` elements.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    check_bytes(ty, out.len(), bytes)?;
    match ty {
        GgmlType::F32 => f32::dequantize_row(bytemuck::cast_slice(bytes), out),
        GgmlType::F16 => f16::dequantize_row_f16(bytemuck::cast_slice(bytes), out),
        GgmlType::BF16 => f16::dequantize_row_bf16(bytemuck::cast_slice(bytes), out),
        GgmlType::Q4_0 => q4_0::dequantize_row(bytemuck::cast_slice(bytes), out),
        GgmlType::Q4_1 => q4_1::dequantize_row(bytemuck::cast_slice(bytes), out),
        GgmlType::Q8_0 => q8_0::dequantize_row(bytemuck::cast_slice(bytes), out),
        GgmlType::Q5_0 => dequantize_blocks::<BlockQ5_0>(bytes, out),
        GgmlType::Q5_1 => dequantize_blocks::<BlockQ5_1>(bytes, out),
        GgmlType::Q4_K => dequantize_blocks::<BlockQ4K>(bytes, out),
        GgmlType::Q5_K => dequantize_blocks::<BlockQ5K>(bytes, out),
        GgmlType::Q6_K => dequantize_blocks::<BlockQ6K>(bytes, out),
    }
    Ok(())
}

/// Decodes `n` elements of type `ty` from `bytes` (exactly their encoded length) into a new vector.
pub fn dequantize_row_to_vec(ty: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>, QuantError> {
    check_bytes(ty, n, bytes)?;
    let mut out = vec![0.0f32; n];
    dequantize(ty, bytes, &mut out)?;
    Ok(out)
}

/// Dot product of one encoded row (`row`, type `ty`) with `x`; `row` must hold
/// exactly `x.len()` elements. Summation order: see the module docs.
pub fn dot(ty: GgmlType, row: &[u8], x: &[f32]) -> Result<f32, QuantError> {
    check_bytes(ty, x.len(), row)?;
    Ok(match ty {
        GgmlType::F32 => f32::dot(bytemuck::cast_slice(row), x),
        GgmlType::F16 => f16::dot_f16(bytemuck::cast_slice(row), x),
        GgmlType::BF16 => f16::dot_bf16(bytemuck::cast_slice(row), x),
        GgmlType::Q4_0 => q4_0::dot(bytemuck::cast_slice(row), x),
        GgmlType::Q4_1 => q4_1::dot(bytemuck::cast_slice(row), x),
        GgmlType::Q8_0 => q8_0::dot(bytemuck::cast_slice(row), x),
        GgmlType::Q5_0 => dot_blocks::<BlockQ5_0>(row, x),
        GgmlType::Q5_1 => dot_blocks::<BlockQ5_1>(row, x),
        GgmlType::Q4_K => dot_blocks::<BlockQ4K>(row, x),
        GgmlType::Q5_K => dot_blocks::<BlockQ5K>(row, x),
        GgmlType::Q6_K => dot_blocks::<BlockQ6K>(row, x),
    })
}

/// Dot product of one encoded row (`row`, type `ty`: any quantized type) with
/// quantized activations `x` ([`q8_act`]): the oracle of the int8-dot
/// (INT8) matvec kernels. `row` must hold exactly `32 · x.len()` elements.
pub fn dot_q8(ty: GgmlType, row: &[u8], x: &[q8_act::BlockQ8Act]) -> Result<f32, QuantError> {
    check_bytes(ty, x.len() * q8_act::QK, row)?;
    Ok(match ty {
        GgmlType::Q4_0 => q4_0::dot_q8(bytemuck::cast_slice(row), x),
        GgmlType::Q4_1 => q4_1::dot_q8(bytemuck::cast_slice(row), x),
        GgmlType::Q8_0 => q8_0::dot_q8(bytemuck::cast_slice(row), x),
        GgmlType::Q5_0 => dot_q8_blocks::<BlockQ5_0>(row, x),
        GgmlType::Q5_1 => dot_q8_blocks::<BlockQ5_1>(row, x),
        GgmlType::Q4_K => dot_q8_blocks::<BlockQ4K>(row, x),
        GgmlType::Q5_K => dot_q8_blocks::<BlockQ5K>(row, x),
        GgmlType::Q6_K => dot_q8_blocks::<BlockQ6K>(row, x),
        _ => return Err(QuantError::UnsupportedType(ty as u32)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_errors_name_the_problem() {
        let e = quantize(GgmlType::Q4_0, &[0.0; 33]).unwrap_err();
        assert!(matches!(
            e,
            QuantError::NotBlockMultiple {
                len: 33,
                block: 32,
                ..
            }
        ));
        assert!(e.to_string().contains("33") && e.to_string().contains("q4_0"));
        let mut out = [0.0f32; 32];
        let e = dequantize(GgmlType::Q8_0, &[0u8; 33], &mut out).unwrap_err();
        assert!(matches!(
            e,
            QuantError::ByteLengthMismatch {
                expected: 34,
                actual: 33,
                ..
            }
        ));
        let e = dot(GgmlType::F16, &[0u8; 6], &[0.0; 4]).unwrap_err();
        assert!(matches!(
            e,
            QuantError::ByteLengthMismatch {
                expected: 8,
                actual: 6,
                ..
            }
        ));
        assert!(matches!(
            type_from_id(16),
            Err(QuantError::UnsupportedType(16))
        ));
        assert!(dequantize_row_to_vec(GgmlType::Q4_1, &[0u8; 40], 32).is_err());
    }

    #[test]
    fn every_type_round_trips_exact_values() {
        // Small integers are exact in every format when the block's scale is 1 or the
        // type is a float type: x_j = j - 8 (Q4_0 scale 1), Q4_1/Q8_0 reproduce them too
        // (Q4_1: min -8, max 23 -> d = 31/15 is not exact, so only check float types + Q4_0 here).
        let x: Vec<f32> = (0..64).map(|j| (j % 16) as f32 - 8.0).collect();
        for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0] {
            let bytes = quantize(ty, &x).unwrap();
            assert_eq!(bytes.len(), ty.row_bytes(64).unwrap() as usize);
            assert_eq!(dequantize_row_to_vec(ty, &bytes, 64).unwrap(), x, "{ty}");
            let ones = vec![1.0f32; 64];
            assert_eq!(
                dot(ty, &bytes, &ones).unwrap(),
                x.iter().sum::<f32>(),
                "{ty}"
            );
        }
    }
}
