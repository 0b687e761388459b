//! Q5_1: blocks of 32 weights with an f16 scale `d`, an f16 offset `m` (the
//! block minimum) and 5-bit codes `q` in 0..=31; weight = q·d + m. Bit layout
//! as Q5_0 (`qh` fifth bits, `qs` nibbles).

use bytemuck::{Pod, Zeroable};

use super::f16::{f16_to_f32, f32_to_f16};
use super::q5_0::{code5, pack5};
use super::QuantBlock;

/// Weights per Q5_1 block.
pub const QK: usize = 32;

/// One Q5_1 block as stored in GGUF (24 bytes, alignment 1).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockQ5_1 {
    /// Scale, f16 little-endian bits.
    pub d: [u8; 2],
    /// Offset (block minimum), f16 little-endian bits.
    pub m: [u8; 2],
    /// Fifth bits: bit j of this little-endian word belongs to element j.
    pub qh: [u8; 4],
    /// Low four bits: low nibble of byte j = element j, high nibble = element j + 16.
    pub qs: [u8; 16],
}

const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);
const _: () = assert!(std::mem::align_of::<BlockQ5_1>() == 1);

impl BlockQ5_1 {
    /// The scale as f32.
    pub fn d(&self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.d))
    }

    /// The offset as f32.
    pub fn m(&self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.m))
    }

    /// Code (0..=31) of element `j` (0..32).
    pub fn code(&self, j: usize) -> u8 {
        code5(self.qh, &self.qs, j % QK)
    }

    /// Quantizes 32 values exactly as ggml's `quantize_row_q5_1_ref`: `m` =
    /// block minimum, `d = (max − min) / 31`, codes `trunc((x − min)/d + 0.5)`
    /// (no clamp: the largest is ≤ 31.5 for finite input).
    pub fn quantize(x: &[f32; QK]) -> Self {
        let (min, max) = super::min_max(x);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let codes: [u8; QK] = std::array::from_fn(|j| ((x[j] - min) * id + 0.5) as u8);
        let (qh, qs) = pack5(&codes);
        Self {
            d: f32_to_f16(d).to_le_bytes(),
            m: f32_to_f16(min).to_le_bytes(),
            qh,
            qs,
        }
    }

    /// The 32 weights this block encodes: `q·d + m`.
    pub fn dequantize(&self) -> [f32; QK] {
        let (d, m) = (self.d(), self.m());
        std::array::from_fn(|j| f32::from(self.code(j)) * d + m)
    }

    /// `Σ w_j·v_j` as `d · Σ q_j·v_j + m · Σ v_j`, both sums in f32 in element order.
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

impl QuantBlock for BlockQ5_1 {
    const QK: usize = QK;
    fn quantize_block(x: &[f32]) -> Self {
        x.try_into().map(Self::quantize).unwrap_or(Self::zeroed())
    }
    fn dequantize_block(&self, y: &mut [f32]) {
        y.copy_from_slice(&self.dequantize());
    }
    fn dot_block(&self, v: &[f32]) -> f32 {
        v.try_into().map(|v| self.dot(v)).unwrap_or(0.0)
    }
    fn group_codes(&self, _g: usize) -> super::GroupCodes {
        super::GroupCodes {
            q: std::array::from_fn(|j| self.code(j)),
            s: [self.d(); 2],
            m: [self.m(); 2],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_is_exact() {
        // x_j = j − 3: min −3, max 28 -> d = 1, m = −3, codes j.
        let x: [f32; 32] = std::array::from_fn(|j| j as f32 - 3.0);
        let b = BlockQ5_1::quantize(&x);
        assert_eq!(b.d, [0x00, 0x3c]);
        assert_eq!(u32::from_le_bytes(b.qh), 0xffff_0000);
        assert_eq!(b.dequantize(), x);
    }
}
