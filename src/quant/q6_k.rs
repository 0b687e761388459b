//! Q6_K: super-blocks of 256 weights in 16 groups of 16, each with a signed
//! 8-bit scale `sc`, one f16 factor `d` (stored last) and 6-bit codes q in
//! 0..=63; weight = d·sc·(q − 32). In each half h (128 elements), element
//! 128h + 32k + i (k < 4, i < 32) has its low four bits in `ql[64h + 32(k mod 2) + i]`
//! (low nibble for k < 2, high for k ≥ 2) and its top two bits at bit 2k of
//! `qh[32h + i]`; its group is 8h + 2k + i/16.

use bytemuck::{Pod, Zeroable};

use super::f16::{f16_to_f32, f32_to_f16};
use super::k_common::{make_qx_quants, nearest_int, QK_K};
use super::QuantBlock;

/// One Q6_K super-block as stored in GGUF (210 bytes, alignment 1).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockQ6K {
    /// Low four bits of the codes.
    pub ql: [u8; QK_K / 2],
    /// Top two bits of the codes.
    pub qh: [u8; QK_K / 4],
    /// Group scales (signed).
    pub scales: [i8; QK_K / 16],
    /// Factor of the group scales, f16 little-endian bits.
    pub d: [u8; 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);
const _: () = assert!(std::mem::align_of::<BlockQ6K>() == 1);

impl BlockQ6K {
    /// The factor `d` as f32.
    pub fn d(&self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.d))
    }

    /// Code (0..=63) of element `e` (0..256).
    pub fn code(&self, e: usize) -> u8 {
        let (h, k, i) = (e / 128, (e % 128) / 32, e % 32);
        let b = self.ql[64 * h + 32 * (k % 2) + i];
        let lo = if k < 2 { b & 0x0f } else { b >> 4 };
        let hi = (self.qh[32 * h + i] >> (2 * k)) & 3;
        lo | (hi << 4)
    }

    /// Quantizes 256 values exactly as ggml's `quantize_row_q6_K_ref`.
    pub fn quantize(x: &[f32; QK_K]) -> Self {
        let mut l = [0i8; QK_K];
        let mut scales = [0.0f32; 16];
        let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
        for g in 0..16 {
            let s = make_qx_quants(32, &x[16 * g..16 * g + 16], &mut l[16 * g..]);
            scales[g] = s;
            if s.abs() > max_abs_scale {
                max_abs_scale = s.abs();
                max_scale = s;
            }
        }
        if max_abs_scale < 1e-15 {
            return Self::zeroed();
        }
        let iscale = -128.0 / max_scale;
        let d = f32_to_f16(1.0 / iscale);
        let sc: [i8; 16] = std::array::from_fn(|g| nearest_int(iscale * scales[g]).min(127) as i8);
        for g in 0..16 {
            let dg = f16_to_f32(d) * f32::from(sc[g]);
            if dg == 0.0 {
                continue;
            }
            for i in 0..16 {
                l[16 * g + i] = (nearest_int(x[16 * g + i] / dg).clamp(-32, 31) + 32) as i8;
            }
        }
        let mut b = Self {
            ql: [0; QK_K / 2],
            qh: [0; QK_K / 4],
            scales: sc,
            d: d.to_le_bytes(),
        };
        for h in 0..2 {
            for i in 0..32 {
                let q: [u8; 4] = std::array::from_fn(|k| l[128 * h + 32 * k + i] as u8);
                b.ql[64 * h + i] = (q[0] & 0x0f) | ((q[2] & 0x0f) << 4);
                b.ql[64 * h + 32 + i] = (q[1] & 0x0f) | ((q[3] & 0x0f) << 4);
                b.qh[32 * h + i] =
                    (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6);
            }
        }
        b
    }

    /// The 256 weights: `d·sc·(q − 32)` per group of 16.
    pub fn dequantize(&self, y: &mut [f32]) {
        let d = self.d();
        for (e, out) in y.iter_mut().enumerate().take(QK_K) {
            let q = i32::from(self.code(e)) - 32;
            *out = d * f32::from(self.scales[e / 16]) * q as f32;
        }
    }

    /// `Σ w·v`: per group of 16 `d·sc·Σ (q − 32)·v` (f32 sum in element
    /// order), group results added in order.
    pub fn dot(&self, v: &[f32]) -> f32 {
        let d = self.d();
        let mut total = 0.0f32;
        for g in 0..16 {
            let mut qv = 0.0f32;
            for i in 0..16 {
                let e = 16 * g + i;
                qv += (i32::from(self.code(e)) - 32) as f32 * v[e];
            }
            total += d * f32::from(self.scales[g]) * qv;
        }
        total
    }
}

impl QuantBlock for BlockQ6K {
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
        let d = self.d();
        let s = [
            d * f32::from(self.scales[2 * g]),
            d * f32::from(self.scales[2 * g + 1]),
        ];
        super::GroupCodes {
            q: std::array::from_fn(|i| self.code(32 * g + i)),
            s,
            m: [-32.0 * s[0], -32.0 * s[1]],
        }
    }
}
