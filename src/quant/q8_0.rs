//! Q8_0: blocks of 32 weights, one f16 scale `d` and signed 8-bit codes `q` in
//! -127..=127; weight = q * d. Code `j` is byte `j` of `qs`.

use bytemuck::{Pod, Zeroable};

use super::f16::{f16_to_f32, f32_to_f16};
use super::q8_act::{int_dot, BlockQ8Act};

/// Weights per Q8_0 block.
pub const QK: usize = 32;

/// One Q8_0 block as stored in GGUF (34 bytes, alignment 1).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockQ8_0 {
    /// Scale, f16 little-endian bits.
    pub d: [u8; 2],
    /// Signed codes, one per element.
    pub qs: [i8; 32],
}

const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(std::mem::align_of::<BlockQ8_0>() == 1);

impl BlockQ8_0 {
    /// The scale as f32.
    pub fn d(&self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.d))
    }

    /// Quantizes 32 values exactly as ggml's `quantize_row_q8_0_ref`:
    /// `d = max|x| / 127`, codes `round(x / d)` (halves away from zero), with `1/d`
    /// taken in f32 before `d` is rounded to f16.
    pub fn quantize(x: &[f32; QK]) -> Self {
        let mut amax = 0.0f32;
        for &v in x {
            // Mirrors ggml's `MAX(amax, fabsf(v))` = `amax > |v| ? amax : |v|`.
            amax = if amax > v.abs() { amax } else { v.abs() };
        }
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let qs: [i8; QK] = std::array::from_fn(|j| (x[j] * id).round() as i8);
        Self {
            d: f32_to_f16(d).to_le_bytes(),
            qs,
        }
    }

    /// The 32 weights this block encodes: `q * d`.
    pub fn dequantize(&self) -> [f32; QK] {
        let d = self.d();
        std::array::from_fn(|j| f32::from(self.qs[j]) * d)
    }

    /// `sum_j w_j * v_j` for this block: codes times `v` summed in f32 in element
    /// order, then multiplied once by `d`.
    pub fn dot(&self, v: &[f32; QK]) -> f32 {
        let mut sum = 0.0f32;
        for (&q, &b) in self.qs.iter().zip(v) {
            sum += f32::from(q) * b;
        }
        sum * self.d()
    }
}

/// Quantizes `x` block by block into `y`; handles `min(x.len() / 32, y.len())` blocks.
pub fn quantize_row(x: &[f32], y: &mut [BlockQ8_0]) {
    for (b, xs) in y.iter_mut().zip(x.chunks_exact(QK)) {
        if let Ok(arr) = <&[f32; QK]>::try_from(xs) {
            *b = BlockQ8_0::quantize(arr);
        }
    }
}

/// Dequantizes blocks into `y`; handles `min(x.len(), y.len() / 32)` blocks.
pub fn dequantize_row(x: &[BlockQ8_0], y: &mut [f32]) {
    for (b, ys) in x.iter().zip(y.chunks_exact_mut(QK)) {
        ys.copy_from_slice(&b.dequantize());
    }
}

/// Dot product of a row of blocks with `v` over `min(x.len(), v.len() / 32)`
/// blocks: per-block sums ([`BlockQ8_0::dot`]) added to an f32 total in block order.
pub fn dot(x: &[BlockQ8_0], v: &[f32]) -> f32 {
    let mut total = 0.0f32;
    for (b, vs) in x.iter().zip(v.chunks_exact(QK)) {
        if let Ok(arr) = <&[f32; QK]>::try_from(vs) {
            total += b.dot(arr);
        }
    }
    total
}

impl BlockQ8_0 {
    /// This block's dot with a quantized activation block: `d·d_x·Σ q·c`; the
    /// oracle of the int8-input kernels.
    pub fn dot_q8(&self, a: &BlockQ8Act) -> f32 {
        let n = int_dot(self.qs.iter().map(|&q| i32::from(q)), &a.codes);
        self.d() * a.d * n as f32
    }
}

/// Dot product of a row of blocks with quantized activations, block results
/// added to an f32 total in order ([`BlockQ8_0::dot_q8`]).
pub fn dot_q8(x: &[BlockQ8_0], a: &[BlockQ8Act]) -> f32 {
    x.iter()
        .zip(a)
        .map(|(b, a)| b.dot_q8(a))
        .fold(0.0, |t, v| t + v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros() {
        // amax = 0 -> d = 0, id = 0 -> all codes round(0) = 0.
        let b = BlockQ8_0::quantize(&[0.0; 32]);
        assert_eq!(b.d, [0, 0]);
        assert_eq!(b.qs, [0; 32]);
    }

    #[test]
    fn ties_round_away_from_zero() {
        // x_0 = 127 -> d = 1 (0x3C00), id = 1. 2.5 -> 3, -2.5 -> -3, 0.5 -> 1, -0.5 -> -1,
        // 126.5 -> 127, -126.5 -> -127, 1.4999999 -> 1.
        let mut x = [0.0; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -2.5;
        x[3] = 0.5;
        x[4] = -0.5;
        x[5] = 126.5;
        x[6] = -126.5;
        x[7] = 1.499_999_9;
        let b = BlockQ8_0::quantize(&x);
        assert_eq!(b.d, [0x00, 0x3c]);
        assert_eq!(&b.qs[..8], &[127, 3, -3, 1, -1, 127, -127, 1]);
    }

    #[test]
    fn all_negative_ramp() {
        // x_j = -(j + 1) * 0.5: amax = 16 -> d = 16/127 (f16 0x3008 = 0.125976...), id = 127/16 = 7.9375.
        // Code j = round(-(j+1) * 0.5 * 7.9375) = round(-(j+1) * 3.96875).
        let x: [f32; 32] = std::array::from_fn(|j| -(j as f32 + 1.0) * 0.5);
        let b = BlockQ8_0::quantize(&x);
        assert_eq!(b.d, [0x08, 0x30]);
        // j=0: -3.96875 -> -4; j=1: -7.9375 -> -8; j=31: -127.
        assert_eq!(b.qs[0], -4);
        assert_eq!(b.qs[1], -8);
        assert_eq!(b.qs[31], -127);
        assert!(b.qs.iter().all(|&q| q < 0));
    }
}
