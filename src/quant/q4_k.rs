//! Q4_K: super-blocks of 256 weights in 8 sub-blocks of 32. Each sub-block
//! has a 6-bit scale `sc` and min `m` (packed into 12 bytes, see
//! [`super::k_common::scale_min`]), the super-block f16 factors `d` and `dmin`, and
//! 4-bit codes `q`; weight = d·sc·q − dmin·m. Codes: elements 64c + i
//! (i < 32) are the low nibbles of `qs[32c + i]`, elements 64c + 32 + i the
//! high nibbles.

use bytemuck::{Pod, Zeroable};

use super::k_common::{quantize_scales_mins, ScaleMinBlock, K_SCALE_SIZE, QK_K};
use super::QuantBlock;

/// One Q4_K super-block as stored in GGUF (144 bytes, alignment 1).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockQ4K {
    /// Factor of the sub-block scales, f16 little-endian bits.
    pub d: [u8; 2],
    /// Factor of the sub-block mins, f16 little-endian bits.
    pub dmin: [u8; 2],
    /// Sub-block scales and mins, 6 bits each.
    pub scales: [u8; K_SCALE_SIZE],
    /// 4-bit codes (layout in the module docs).
    pub qs: [u8; QK_K / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);
const _: () = assert!(std::mem::align_of::<BlockQ4K>() == 1);

impl BlockQ4K {
    /// Code (0..=15) of element `e` (0..256).
    pub fn code(&self, e: usize) -> u8 {
        let b = self.qs[32 * (e / 64) + e % 32];
        if e % 64 < 32 {
            b & 0x0f
        } else {
            b >> 4
        }
    }

    /// Quantizes 256 values exactly as ggml's `quantize_row_q4_K_ref`.
    pub fn quantize(x: &[f32; QK_K]) -> Self {
        let (d, dmin, scales, l) = quantize_scales_mins(x, 15, -1.0, 20);
        let mut qs = [0u8; QK_K / 2];
        for c in 0..4 {
            for i in 0..32 {
                qs[32 * c + i] = l[64 * c + i] | (l[64 * c + 32 + i] << 4);
            }
        }
        Self {
            d: d.to_le_bytes(),
            dmin: dmin.to_le_bytes(),
            scales,
            qs,
        }
    }
}

impl ScaleMinBlock for BlockQ4K {
    fn header(&self) -> ([u8; 2], [u8; 2], &[u8; K_SCALE_SIZE]) {
        (self.d, self.dmin, &self.scales)
    }
    fn code(&self, e: usize) -> u8 {
        BlockQ4K::code(self, e)
    }
}

impl QuantBlock for BlockQ4K {
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
