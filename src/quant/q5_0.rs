//! Q5_0: blocks of 32 weights with an f16 scale `d` and 5-bit codes `q` in
//! 0..=31; weight = (q − 16)·d. The low four bits of element `j` are the low
//! nibble of `qs[j]` (j < 16) or the high nibble of `qs[j − 16]`; its fifth bit
//! is bit `j` of the little-endian word `qh`.

use bytemuck::{Pod, Zeroable};

use super::f16::{f16_to_f32, f32_to_f16};
use super::QuantBlock;

/// Weights per Q5_0 block.
pub const QK: usize = 32;

/// One Q5_0 block as stored in GGUF (22 bytes, alignment 1).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockQ5_0 {
    /// Scale, f16 little-endian bits.
    pub d: [u8; 2],
    /// Fifth bits: bit j of this little-endian word belongs to element j.
    pub qh: [u8; 4],
    /// Low four bits: low nibble of byte j = element j, high nibble = element j + 16.
    pub qs: [u8; 16],
}

const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);
const _: () = assert!(std::mem::align_of::<BlockQ5_0>() == 1);

/// Code (0..=31) of element `j` of a block with fifth bits `qh` and nibbles `qs`
/// (shared by Q5_0 and Q5_1).
pub(crate) fn code5(qh: [u8; 4], qs: &[u8; 16], j: usize) -> u8 {
    let lo = if j < 16 {
        qs[j] & 0x0f
    } else {
        qs[j - 16] >> 4
    };
    let hi = ((u32::from_le_bytes(qh) >> j) & 1) as u8;
    lo | (hi << 4)
}

/// Packs 32 five-bit codes into (qh, qs) (shared by Q5_0 and Q5_1).
pub(crate) fn pack5(codes: &[u8; QK]) -> ([u8; 4], [u8; 16]) {
    let mut qh = 0u32;
    let mut qs = [0u8; 16];
    for j in 0..16 {
        let (a, b) = (codes[j], codes[j + 16]);
        qs[j] = (a & 0x0f) | ((b & 0x0f) << 4);
        qh |= u32::from((a >> 4) & 1) << j;
        qh |= u32::from((b >> 4) & 1) << (j + 16);
    }
    (qh.to_le_bytes(), qs)
}

impl BlockQ5_0 {
    /// The scale as f32.
    pub fn d(&self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.d))
    }

    /// Code (0..=31) of element `j` (0..32).
    pub fn code(&self, j: usize) -> u8 {
        code5(self.qh, &self.qs, j % QK)
    }

    /// Quantizes 32 values exactly as ggml's `quantize_row_q5_0_ref`: the
    /// signed value of largest magnitude (first one on ties) maps to −16,
    /// `d = max / −16`, codes `min(31, trunc(x / d + 16.5))`.
    pub fn quantize(x: &[f32; QK]) -> Self {
        let (_, max) = super::signed_absmax(x);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        // ggml truncates to int8 then takes min(31, ·) as unsigned; in range
        // for every finite block (|x·id| ≤ 16).
        let codes: [u8; QK] =
            std::array::from_fn(|j| i32::from((x[j] * id + 16.5) as i8).min(31) as u8);
        let (qh, qs) = pack5(&codes);
        Self {
            d: f32_to_f16(d).to_le_bytes(),
            qh,
            qs,
        }
    }

    /// The 32 weights this block encodes: `(q − 16)·d`.
    pub fn dequantize(&self) -> [f32; QK] {
        let d = self.d();
        std::array::from_fn(|j| (i32::from(self.code(j)) - 16) as f32 * d)
    }

    /// `Σ w_j·v_j` as `d · Σ (q_j − 16)·v_j`, the sum in f32 in element order.
    pub fn dot(&self, v: &[f32; QK]) -> f32 {
        let mut sum = 0.0f32;
        for (j, &b) in v.iter().enumerate() {
            sum += (i32::from(self.code(j)) - 16) as f32 * b;
        }
        sum * self.d()
    }
}

impl QuantBlock for BlockQ5_0 {
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
        let d = self.d();
        super::GroupCodes {
            q: std::array::from_fn(|j| self.code(j)),
            s: [d; 2],
            m: [-16.0 * d; 2],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_is_exact_and_fifth_bits_land_in_qh() {
        // x_j = j − 16 (−16..15): max magnitude −16 -> d = 1, codes j.
        let x: [f32; 32] = std::array::from_fn(|j| j as f32 - 16.0);
        let b = BlockQ5_0::quantize(&x);
        assert_eq!(b.d, [0x00, 0x3c]);
        assert_eq!(u32::from_le_bytes(b.qh), 0xffff_0000);
        assert_eq!(b.dequantize(), x);
        let ones = [1.0f32; 32];
        assert_eq!(b.dot(&ones), x.iter().sum::<f32>());
    }
}
