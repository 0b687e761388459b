//! Q5_K: Q4_K's super-block with a fifth bit per code: weight =
//! d·sc·q − dmin·m, q in 0..=31. The low four bits are laid out as Q4_K's
//! nibbles; the fifth bit of element 64c + i (i < 32) is bit 2c of `qh[i]`,
//! of element 64c + 32 + i bit 2c + 1.

use bytemuck::{Pod, Zeroable};

use super::k_common::{quantize_scales_mins, ScaleMinBlock, K_SCALE_SIZE, QK_K};
use super::QuantBlock;

/// One Q5_K super-block as stored in GGUF (176 bytes, alignment 1).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockQ5K {
    /// Factor of the sub-block scales, f16 little-endian bits.
    pub d: [u8; 2],
    /// Factor of the sub-block mins, f16 little-endian bits.
    pub dmin: [u8; 2],
    /// Sub-block scales and mins, 6 bits each.
    pub scales: [u8; K_SCALE_SIZE],
    /// Fifth bits (layout in the module docs).
    pub qh: [u8; QK_K / 8],
    /// Low four bits, as Q4_K's codes.
    pub qs: [u8; QK_K / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);
const _: () = assert!(std::mem::align_of::<BlockQ5K>() == 1);

impl BlockQ5K {
    /// Code (0..=31) of element `e` (0..256).
    pub fn code(&self, e: usize) -> u8 {
        let b = self.qs[32 * (e / 64) + e % 32];
        let lo = if e % 64 < 32 { b & 0x0f } else { b >> 4 };
        let hi = (self.qh[e % 32] >> (e / 32)) & 1;
        lo | (hi << 4)
    }

    /// Quantizes 256 values exactly as ggml's `quantize_row_q5_K_ref`.
    pub fn quantize(x: &[f32; QK_K]) -> Self {
        let (d, dmin, scales, l) = quantize_scales_mins(x, 31, -0.5, 15);
        let mut qs = [0u8; QK_K / 2];
        let mut qh = [0u8; QK_K / 8];
        for c in 0..4 {
            for i in 0..32 {
                let (a, b) = (l[64 * c + i], l[64 * c + 32 + i]);
                qs[32 * c + i] = (a & 0x0f) | ((b & 0x0f) << 4);
                qh[i] |= ((a >> 4) << (2 * c)) | ((b >> 4) << (2 * c + 1));
            }
        }
        Self {
            d: d.to_le_bytes(),
            dmin: dmin.to_le_bytes(),
            scales,
            qh,
            qs,
        }
    }
}

impl ScaleMinBlock for BlockQ5K {
    fn header(&self) -> ([u8; 2], [u8; 2], &[u8; K_SCALE_SIZE]) {
        (self.d, self.dmin, &self.scales)
    }
    fn code(&self, e: usize) -> u8 {
        BlockQ5K::code(self, e)
    }
}

impl QuantBlock for BlockQ5K {
    const QK: usize = QK_K;
    fn quantize_block(x: &[f32]) -> Self {
        x.try_into().map(Self::quantize).unwrap_or(Self::zeroed())
    }
    fn dequantize_block(&self, y: &mut [f32]) {
        self.dequantize_into(y);
    }
    fn dot_block(&self, v: &[f32]) -> f32 {
        self.dot_slice(v)
    }
    fn group_codes(&self, g: usize) -> super::GroupCodes {
        self.sub_codes(g)
    }
}
