//! Q5_K: Q4_K's super-block with a fifth bit per code: weight =
//! d·sc·q − dmin·m, q in 0..=31. The low four bits are laid out as Q4_K's
//! nibbles; the fifth bit of element 64c + i (i < 32) is bit 2c of `qh[i]`,
//! of element 64c + 32 + i bit 2c + 1.

use bytemuck::{Pod, Zeroable};

use super::f16::f16_to_f32;
use super::k_common::{quantize_scales_mins, scale_min, K_SCALE_SIZE, QK_K};
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
    /// Sub-block `j`'s (scale, min) as f32: (d·sc, dmin·m).
    pub fn sub_scale_min(&self, j: usize) -> (f32, f32) {
        let (sc, m) = scale_min(j, &self.scales);
        let d = f16_to_f32(u16::from_le_bytes(self.d));
        let dmin = f16_to_f32(u16::from_le_bytes(self.dmin));
        (d * f32::from(sc), dmin * f32::from(m))
    }

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

    /// The 256 weights: `d·sc·q − dmin·m` per sub-block.
    pub fn dequantize(&self, y: &mut [f32]) {
        for j in 0..8 {
            let (d, m) = self.sub_scale_min(j);
            for i in 0..32 {
                y[32 * j + i] = d * f32::from(self.code(32 * j + i)) - m;
            }
        }
    }

    /// `Σ w·v`: per sub-block `d·sc·Σ q·v − dmin·m·Σ v`, added in order.
    pub fn dot(&self, v: &[f32]) -> f32 {
        let mut total = 0.0f32;
        for j in 0..8 {
            let (d, m) = self.sub_scale_min(j);
            let (mut qv, mut sv) = (0.0f32, 0.0f32);
            for (i, &b) in v[32 * j..32 * j + 32].iter().enumerate() {
                qv += f32::from(self.code(32 * j + i)) * b;
                sv += b;
            }
            total += d * qv - m * sv;
        }
        total
    }
}

impl QuantBlock for BlockQ5K {
    const QK: usize = QK_K;
    fn quantize_block(x: &[f32]) -> Self {
        x.try_into().map(Self::quantize).unwrap_or(Self::zeroed())
    }
    fn dequantize_block(&self, y: &mut [f32]) {
        self.dequantize(y);
    }
    fn dot_block(&self, v: &[f32]) -> f32 {
        self.dot(v)
    }
    fn group_codes(&self, g: usize) -> super::GroupCodes {
        let (d, m) = self.sub_scale_min(g);
        super::GroupCodes {
            q: std::array::from_fn(|i| self.code(32 * g + i)),
            s: [d; 2],
            m: [-m; 2],
        }
    }
}
