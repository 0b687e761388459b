//! Q4_1: blocks of 32 weights with an f16 scale `d`, an f16 offset `m` (the block
//! minimum) and 4-bit codes `q` in 0..=15; weight = q * d + m. Nibble order as Q4_0:
//! element `j` low nibble of byte `j`, element `j + 16` high nibble.

use bytemuck::{Pod, Zeroable};

use super::f16::{f16_to_f32, f32_to_f16};
use super::q8_act::{int_dot, BlockQ8Act};

/// Weights per Q4_1 block.
pub const QK: usize = 32;

/// One Q4_1 block as stored in GGUF (20 bytes, alignment 1).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockQ4_1 {
    /// Scale, f16 little-endian bits.
    pub d: [u8; 2],
    /// Offset (block minimum), f16 little-endian bits.
    pub m: [u8; 2],
    /// Codes: low nibble of byte j = element j, high nibble = element j + 16.
    pub qs: [u8; 16],
}

const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);
const _: () = assert!(std::mem::align_of::<BlockQ4_1>() == 1);

impl BlockQ4_1 {
    /// The scale as f32.
    pub fn d(&self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.d))
    }

    /// The offset as f32.
    pub fn m(&self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.m))
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

    /// Quantizes 32 values exactly as ggml's `quantize_row_q4_1_ref`: `m` = block
    /// minimum, `d = (max - min) / 15`, codes `min(15, trunc((x - min) / d + 0.5))`
    /// with `1/d` taken in f32 before `d` and `m` are rounded to f16.
    pub fn quantize(x: &[f32; QK]) -> Self {
        let (min, max) = super::min_max(x);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        // The lower clamp never triggers for finite input (x - min >= 0).
        let code = |v: f32| (((v - min) * id + 0.5) as i32).clamp(0, 15) as u8;
        let mut qs = [0u8; 16];
        for (j, q) in qs.iter_mut().enumerate() {
            *q = code(x[j]) | (code(x[j + 16]) << 4);
        }
        Self {
            d: f32_to_f16(d).to_le_bytes(),
            m: f32_to_f16(min).to_le_bytes(),
            qs,
        }
    }

    /// The 32 weights this block encodes: `q * d + m`.
    pub fn dequantize(&self) -> [f32; QK] {
        let d = self.d();
        let m = self.m();
        let mut y = [0.0f32; QK];
        for (j, &b) in self.qs.iter().enumerate() {
            y[j] = f32::from(b & 0x0f) * d + m;
            y[j + 16] = f32::from(b >> 4) * d + m;
        }
        y
    }

    /// `sum_j w_j * v_j` for this block, computed as `d * sum_j(q_j * v_j) + m * sum_j(v_j)`
    /// with both sums in f32 in element order.
    pub fn dot(&self, v: &[f32; QK]) -> f32 {
        let mut sum_qv = 0.0f32;
        let mut sum_v = 0.0f32;
        for (j, &b) in v.iter().enumerate() {
            sum_qv += f32::from(self.code(j)) * b;
            sum_v += b;
        }
        sum_qv * self.d() + sum_v * self.m()
    }
}

/// Quantizes `x` block by block into `y`; handles `min(x.len() / 32, y.len())` blocks.
pub fn quantize_row(x: &[f32], y: &mut [BlockQ4_1]) {
    for (b, xs) in y.iter_mut().zip(x.chunks_exact(QK)) {
        if let Ok(arr) = <&[f32; QK]>::try_from(xs) {
            *b = BlockQ4_1::quantize(arr);
        }
    }
}

/// Dequantizes blocks into `y`; handles `min(x.len(), y.len() / 32)` blocks.
pub fn dequantize_row(x: &[BlockQ4_1], y: &mut [f32]) {
    for (b, ys) in x.iter().zip(y.chunks_exact_mut(QK)) {
        ys.copy_from_slice(&b.dequantize());
    }
}

/// Dot product of a row of blocks with `v` over `min(x.len(), v.len() / 32)`
/// blocks: per-block sums ([`BlockQ4_1::dot`]) added to an f32 total in block order.
pub fn dot(x: &[BlockQ4_1], v: &[f32]) -> f32 {
    let mut total = 0.0f32;
    for (b, vs) in x.iter().zip(v.chunks_exact(QK)) {
        if let Ok(arr) = <&[f32; QK]>::try_from(vs) {
            total += b.dot(arr);
        }
    }
    total
}

impl BlockQ4_1 {
    /// This block's dot with a quantized activation block: `d·d_x·Σ q·c + m·s`
    /// (value d·q + m); the oracle of the int8-input kernels.
    pub fn dot_q8(&self, a: &BlockQ8Act) -> f32 {
        let n = int_dot((0..QK).map(|j| i32::from(self.code(j))), &a.codes);
        self.d() * a.d * n as f32 + self.m() * a.s
    }
}

/// Dot product of a row of blocks with quantized activations, block results
/// added to an f32 total in order ([`BlockQ4_1::dot_q8`]).
pub fn dot_q8(x: &[BlockQ4_1], a: &[BlockQ8Act]) -> f32 {
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
        // min = max = 0 -> d = 0, id = 0 -> codes trunc(0.5) = 0; m = f16(0) = 0x0000.
        let b = BlockQ4_1::quantize(&[0.0; 32]);
        assert_eq!(b.d, [0, 0]);
        assert_eq!(b.m, [0, 0]);
        assert_eq!(b.qs, [0; 16]);
    }

    #[test]
    fn all_equal_negative() {
        // All -3: min = max = -3 -> d = 0, m = f16(-3) = 0xC200, codes 0.
        let b = BlockQ4_1::quantize(&[-3.0; 32]);
        assert_eq!(b.d, [0, 0]);
        assert_eq!(b.m, [0x00, 0xc2]);
        assert_eq!(b.qs, [0; 16]);
        assert_eq!(b.dequantize(), [-3.0; 32]);
    }

    #[test]
    fn ramp_0_to_15() {
        // x_j = j (j<16), x_{j+16} = 15 - j: min 0, max 15 -> d = 1 (0x3C00), m = 0.
        // Byte j = j | (15 - j) << 4.
        let x: [f32; 32] = std::array::from_fn(|j| if j < 16 { j as f32 } else { 31.0 - j as f32 });
        let b = BlockQ4_1::quantize(&x);
        assert_eq!(b.d, [0x00, 0x3c]);
        assert_eq!(b.m, [0, 0]);
        for j in 0..16u8 {
            assert_eq!(b.qs[j as usize], j | ((15 - j) << 4));
        }
        assert_eq!(b.dequantize(), x);
    }

    #[test]
    fn ties_round_up_and_negative_offset() {
        // min = -16 (x_0), max = 14 (x_1) -> d = 30/15 = 2 (0x4000), m = -16 (0xCC00), id = 0.5.
        // x = -13 -> (3 * 0.5) + 0.5 = 2.0 -> 2 (tie 1.5 went up); x = -11 -> 2.5 + 0.5 = 3.0 -> 3;
        // x = 0 -> 8.5 -> 8; x = -15.9 -> 0.05 + 0.5 -> 0.
        let mut x = [-16.0; 32];
        x[1] = 14.0;
        x[2] = -13.0;
        x[3] = -11.0;
        x[4] = 0.0;
        x[5] = -15.9;
        let b = BlockQ4_1::quantize(&x);
        assert_eq!(b.d, [0x00, 0x40]);
        assert_eq!(b.m, [0x00, 0xcc]);
        assert_eq!(b.qs[0], 0x00);
        assert_eq!(b.qs[1], 0x0f);
        assert_eq!(b.qs[2], 2);
        assert_eq!(b.qs[3], 3);
        assert_eq!(b.qs[4], 8);
        assert_eq!(b.qs[5], 0);
    }

    #[test]
    fn dot_matches_dequantized_sum() {
        let x: [f32; 32] = std::array::from_fn(|j| (j as f32 * 0.37).sin() + 0.5);
        let b = BlockQ4_1::quantize(&x);
        let v: [f32; 32] = std::array::from_fn(|j| 0.5 - j as f32 * 0.03);
        let want: f32 = b.dequantize().iter().zip(&v).map(|(a, b)| a * b).sum();
        assert!((b.dot(&v) - want).abs() <= 1e-4);
    }
}
