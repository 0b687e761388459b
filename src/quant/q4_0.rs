//! Q4_0: blocks of 32 weights, one f16 scale `d` and 4-bit codes `q` in 0..=15;
//! weight = (q - 8) * d. Element `j` sits in the low nibble of byte `j` and
//! element `j + 16` in the high nibble of the same byte.

use bytemuck::{Pod, Zeroable};

use super::f16::{f16_to_f32, f32_to_f16};
use super::q8_act::{int_dot, BlockQ8Act};

/// Weights per Q4_0 block.
pub const QK: usize = 32;

/// One Q4_0 block as stored in GGUF (18 bytes, alignment 1).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockQ4_0 {
    /// Scale, f16 little-endian bits.
    pub d: [u8; 2],
    /// Codes: low nibble of byte j = element j, high nibble = element j + 16.
    pub qs: [u8; 16],
}

const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(std::mem::align_of::<BlockQ4_0>() == 1);

impl BlockQ4_0 {
    /// The scale as f32.
    pub fn d(&self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.d))
    }

    /// Code (0..=15) of element `j` (0..32); out-of-range `j` wraps into the block.
    pub fn code(&self, j: usize) -> u8 {
        let b = self.qs[j % 16];
        if j % QK < 16 {
            b & 0x0f
        } else {
            b >> 4
        }
    }

    /// Quantizes 32 values exactly as ggml's `quantize_row_q4_0_ref`: the scale is
    /// the value of largest magnitude (first one on ties, sign kept) divided by -8, so
    /// that value maps to code 0; codes are `min(15, trunc(x / d + 8.5))`, computed
    /// with `1/d` in f32 before `d` is rounded to f16.
    pub fn quantize(x: &[f32; QK]) -> Self {
        let (_, max) = super::signed_absmax(x);
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        // ggml truncates to int8 then takes min(15, ..). For finite inputs the value is
        // >= 0 already; the lower clamp only keeps non-finite input (where ggml's C is
        // undefined) from spilling into the other nibble.
        let code = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
        let mut qs = [0u8; 16];
        for (j, q) in qs.iter_mut().enumerate() {
            *q = code(x[j]) | (code(x[j + 16]) << 4);
        }
        Self {
            d: f32_to_f16(d).to_le_bytes(),
            qs,
        }
    }

    /// The 32 weights this block encodes: `(q - 8) * d`.
    pub fn dequantize(&self) -> [f32; QK] {
        let d = self.d();
        let mut y = [0.0f32; QK];
        for (j, &b) in self.qs.iter().enumerate() {
            y[j] = (i32::from(b & 0x0f) - 8) as f32 * d;
            y[j + 16] = (i32::from(b >> 4) - 8) as f32 * d;
        }
        y
    }

    /// `sum_j w_j * v_j` for this block: the codes times `v` summed in f32 in element
    /// order, then multiplied once by `d`.
    pub fn dot(&self, v: &[f32; QK]) -> f32 {
        let mut sum = 0.0f32;
        for (j, &b) in v.iter().enumerate() {
            sum += (i32::from(self.code(j)) - 8) as f32 * b;
        }
        sum * self.d()
    }
}

/// Quantizes `x` block by block into `y`; handles `min(x.len() / 32, y.len())`
/// blocks (the type-erased [`crate::quant::quantize`] checks lengths).
pub fn quantize_row(x: &[f32], y: &mut [BlockQ4_0]) {
    for (b, xs) in y.iter_mut().zip(x.chunks_exact(QK)) {
        if let Ok(arr) = <&[f32; QK]>::try_from(xs) {
            *b = BlockQ4_0::quantize(arr);
        }
    }
}

/// Dequantizes blocks into `y`; handles `min(x.len(), y.len() / 32)` blocks.
pub fn dequantize_row(x: &[BlockQ4_0], y: &mut [f32]) {
    for (b, ys) in x.iter().zip(y.chunks_exact_mut(QK)) {
        ys.copy_from_slice(&b.dequantize());
    }
}

/// Dot product of a row of blocks with `v` over `min(x.len(), v.len() / 32)`
/// blocks: each block's sum (see [`BlockQ4_0::dot`]) is added to an f32 total in
/// block order. This is the CPU oracle for the GPU kernels.
pub fn dot(x: &[BlockQ4_0], v: &[f32]) -> f32 {
    let mut total = 0.0f32;
    for (b, vs) in x.iter().zip(v.chunks_exact(QK)) {
        if let Ok(arr) = <&[f32; QK]>::try_from(vs) {
            total += b.dot(arr);
        }
    }
    total
}

impl BlockQ4_0 {
    /// This block's dot with a quantized activation block: `d·(d_x·Σ q·c − 8·s)`
    /// (codes q = 0..15, value d·(q−8)); the oracle of the int8-input kernels.
    pub fn dot_q8(&self, a: &BlockQ8Act) -> f32 {
        let n = int_dot((0..QK).map(|j| i32::from(self.code(j))), &a.codes);
        self.d() * (a.d * n as f32 - 8.0 * a.s)
    }
}

/// Dot product of a row of blocks with quantized activations, block results
/// added to an f32 total in order ([`BlockQ4_0::dot_q8`]).
pub fn dot_q8(x: &[BlockQ4_0], a: &[BlockQ8Act]) -> f32 {
    x.iter()
        .zip(a)
        .map(|(b, a)| b.dot_q8(a))
        .fold(0.0, |t, v| t + v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(x: [f32; 32]) -> BlockQ4_0 {
        BlockQ4_0::quantize(&x)
    }

    #[test]
    fn zeros() {
        // amax = 0 -> d = 0/-8 = -0.0 (f16 0x8000), id = 0 -> every code trunc(8.5) = 8 -> 0x88.
        let b = block([0.0; 32]);
        assert_eq!(b.d, [0x00, 0x80]);
        assert_eq!(b.qs, [0x88; 16]);
        assert_eq!(b.dequantize(), [0.0; 32]);
    }

    #[test]
    fn ramp_minus8_to_7() {
        // x_j = j - 8 for j < 16, x_{j+16} = j - 8 + 0.5 ... build: x_j = j - 8 (j<16), x_j = j - 24 (j>=16)
        // amax = 8 at x_0 = -8 -> max = -8, d = 1 (f16 0x3C00), id = 1.
        // Low codes: trunc(j - 8 + 8.5) = j. High codes: trunc((j+16) - 24 + 8.5) = j.
        // So byte j = j | j << 4 = 0x11 * j.
        let mut x = [0.0; 32];
        for (j, v) in x.iter_mut().enumerate() {
            *v = if j < 16 {
                j as f32 - 8.0
            } else {
                j as f32 - 24.0
            };
        }
        let b = block(x);
        assert_eq!(b.d, [0x00, 0x3c]);
        let want: Vec<u8> = (0..16u8).map(|j| j * 0x11).collect();
        assert_eq!(b.qs.to_vec(), want);
        assert_eq!(b.dequantize(), x);
    }

    #[test]
    fn all_negative_and_positive_clamp() {
        // All -2.0: max = -2 (first), d = 0.25 (f16 0x3400), id = 4, code = trunc(-8 + 8.5) = 0 -> 0x00.
        let b = block([-2.0; 32]);
        assert_eq!(b.d, [0x00, 0x34]);
        assert_eq!(b.qs, [0x00; 16]);
        // All +2.0: max = 2, d = -0.25 (f16 0xB400), id = -4, code = trunc(-8 + 8.5) = 0.
        let b = block([2.0; 32]);
        assert_eq!(b.d, [0x00, 0xb4]);
        assert_eq!(b.qs, [0x00; 16]);
        // x_0 = -4 sets d = 0.5, id = 2; x_1 = +4 gives 8 + 8.5 = 16.5 -> 16 -> clamped to 15.
        // Byte 1 low nibble = 15 (dequantizes to 3.5, error d); the rest are 0 -> code 8.
        let mut x = [0.0; 32];
        x[0] = -4.0;
        x[1] = 4.0;
        let b = block(x);
        assert_eq!(b.d, [0x00, 0x38]);
        let mut want = [0x88u8; 16];
        want[0] = 0x80;
        want[1] = 0x8f;
        assert_eq!(b.qs, want);
        assert_eq!(b.dequantize()[1], 3.5);
    }

    #[test]
    fn amax_tie_takes_first() {
        // +1 before -1: max = +1, d = -0.125 (f16 0xB000), id = -8: x=+1 -> 0, x=-1 -> trunc(16.5)=16 -> 15.
        let mut x = [0.0; 32];
        x[0] = 1.0;
        x[1] = -1.0;
        let b = block(x);
        assert_eq!(b.d, [0x00, 0xb0]);
        assert_eq!(b.qs[0] & 0x0f, 0);
        assert_eq!(b.qs[1] & 0x0f, 15);
        // -1 before +1: max = -1, d = 0.125 (0x3000): x=-1 -> 0, x=+1 -> 15 (clamped from 16).
        x[0] = -1.0;
        x[1] = 1.0;
        let b = block(x);
        assert_eq!(b.d, [0x00, 0x30]);
        assert_eq!(b.qs[0] & 0x0f, 0);
        assert_eq!(b.qs[1] & 0x0f, 15);
    }

    #[test]
    fn half_ties_round_up() {
        // x_0 = -8 -> d = 1, id = 1. x = k + 0.5 -> trunc(k + 9) = k + 9 (ties go up);
        // x = -0.5 -> 8; x = 0.5 -> 9; x = -7.5 -> 1; x = 6.5 -> 15.
        let mut x = [0.0; 32];
        x[0] = -8.0;
        x[1] = -0.5;
        x[2] = 0.5;
        x[3] = -7.5;
        x[4] = 6.5;
        x[20] = 2.5;
        let b = block(x);
        assert_eq!(b.qs[1] & 0x0f, 8);
        assert_eq!(b.qs[2] & 0x0f, 9);
        assert_eq!(b.qs[3] & 0x0f, 1);
        assert_eq!(b.qs[4] & 0x0f, 15);
        assert_eq!(b.qs[4] >> 4, 11);
    }

    #[test]
    fn dot_matches_dequantized_sum() {
        let mut x = [0.0; 32];
        for (j, v) in x.iter_mut().enumerate() {
            *v = (j as f32 - 15.0) * 0.3;
        }
        let b = block(x);
        let v: [f32; 32] = std::array::from_fn(|j| 1.0 + j as f32 * 0.01);
        let w = b.dequantize();
        let want: f32 = w.iter().zip(&v).map(|(a, b)| a * b).sum();
        assert!((b.dot(&v) - want).abs() <= 1e-4 * want.abs().max(1.0));
        let row = [b, b];
        let vv: Vec<f32> = v.iter().chain(&v).copied().collect();
        assert_eq!(dot(&row, &vv), b.dot(&v) + b.dot(&v));
    }
}
