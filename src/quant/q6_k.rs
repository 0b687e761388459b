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

/// Super-blocks per period of the GPU layout: LCM(210, 16) = 1680 bytes.
pub const GPU_PERIOD: usize = 8;

/// Bytes of a super-block's body in the GPU layout (13 aligned words).
pub const GPU_BODY: usize = 208;

/// Where the GPU layout puts the top two bits of the k-th word's elements
/// of a group's half (byte i: element 4k + i): word k of the half's codes is
/// then (nibbles & 0x0F0F0F0F) | (tops shifted by at most one shift &
/// 0x30303030), bits 4..5 needing none.
pub const GPU_TOP_BIT: [u32; 4] = [4, 6, 2, 0];

impl BlockQ6K {
    /// The super-block's body as the GPU kernels read it
    /// (`shaders/block_q6_k.wgsl`), every group's bits in aligned words:
    /// group g (elements 32g..32g+32) has its low nibbles in bytes
    /// 16g..16g+16 (element 32g+i in the low nibble of byte 16g+i, element
    /// 32g+16+i in the high one), its top two bits in bytes 128+8g..136+8g
    /// (element 32g+4k+i, k < 4, i < 4, at bit [`GPU_TOP_BIT`]`[k]` of byte
    /// 128+8g+i; element 32g+16+4k+i the same in byte 132+8g+i), and bytes
    /// 192..208 are the 16 scales as stored. d goes with its period
    /// ([`gpu_layout`]).
    pub fn gpu_body(&self) -> [u8; GPU_BODY] {
        let mut out = [0u8; GPU_BODY];
        for g in 0..8 {
            for i in 0..16 {
                let (a, b) = (self.code(32 * g + i), self.code(32 * g + 16 + i));
                out[16 * g + i] = (a & 0x0f) | ((b & 0x0f) << 4);
                let (k, j) = (i / 4, i % 4);
                out[128 + 8 * g + j] |= (a >> 4) << GPU_TOP_BIT[k];
                out[132 + 8 * g + j] |= (b >> 4) << GPU_TOP_BIT[k];
            }
        }
        for (o, &s) in out[192..].iter_mut().zip(&self.scales) {
            *o = s as u8;
        }
        out
    }
}

/// Q6_K super-blocks (GGUF bytes, a multiple of 210) in the GPU layout:
/// periods of [`GPU_PERIOD`] super-blocks, each their 8 bodies
/// ([`BlockQ6K::gpu_body`], 13 words each) then their 8 f16 d's in one
/// word, 1680 bytes; the last period is padded with zero super-blocks.
/// Every group then loads four aligned words (its nibbles, its top bits,
/// its scales, its d) instead of eight around unaligned runs. `None` when
/// `bytes` is not whole super-blocks.
pub fn gpu_layout(bytes: &[u8]) -> Option<Vec<u8>> {
    let blocks: &[BlockQ6K] = bytemuck::try_cast_slice(bytes).ok()?;
    let mut out = Vec::with_capacity(gpu_layout_len(blocks.len()));
    for period in blocks.chunks(GPU_PERIOD) {
        let mut ds = [0u8; 16];
        for (k, b) in period.iter().enumerate() {
            out.extend_from_slice(&b.gpu_body());
            ds[2 * k..2 * k + 2].copy_from_slice(&b.d);
        }
        out.resize(out.len() + (GPU_PERIOD - period.len()) * GPU_BODY, 0);
        out.extend_from_slice(&ds);
    }
    Some(out)
}

/// Bytes of [`gpu_layout`] for `n` super-blocks.
pub fn gpu_layout_len(n: usize) -> usize {
    n.div_ceil(GPU_PERIOD) * GPU_PERIOD * std::mem::size_of::<BlockQ6K>()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Element e's (code, scale, d) read back from the GPU layout by its
    /// documented addresses, byte by byte (not through `gpu_body`).
    fn from_layout(l: &[u8], s: usize, e: usize) -> (u8, i8, [u8; 2]) {
        let period = (s / GPU_PERIOD) * 1680;
        let body = period + (s % GPU_PERIOD) * GPU_BODY;
        let (g, i) = (e / 32, e % 32);
        let nib = l[body + 16 * g + i % 16] >> (4 * (i / 16)) & 0x0f;
        let (half, j) = (i / 16, i % 16);
        let top = l[body + 128 + 8 * g + 4 * half + j % 4] >> [4, 6, 2, 0][j / 4] & 3;
        let d = [
            l[period + 1664 + 2 * (s % 8)],
            l[period + 1665 + 2 * (s % 8)],
        ];
        (nib | top << 4, l[body + 192 + e / 16] as i8, d)
    }

    #[test]
    fn gpu_layout_keeps_every_code_scale_and_d() {
        // 11 super-blocks: a whole period and a partial one, random bits.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let bytes: Vec<u8> = (0..11 * 210)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let l = gpu_layout(&bytes).expect("whole super-blocks");
        assert_eq!(l.len(), gpu_layout_len(11));
        assert_eq!(l.len(), 2 * 1680);
        let blocks: &[BlockQ6K] = bytemuck::cast_slice(&bytes);
        for (s, b) in blocks.iter().enumerate() {
            for e in 0..QK_K {
                let want = (b.code(e), b.scales[e / 16], b.d);
                assert_eq!(from_layout(&l, s, e), want, "super-block {s} element {e}");
            }
        }
        // The padding super-blocks and their d's are zero.
        assert!(l[1680 + 3 * GPU_BODY..1680 + 1664].iter().all(|&v| v == 0));
        assert!(l[1680 + 1664 + 6..].iter().all(|&v| v == 0));
        assert!(gpu_layout(&bytes[..209]).is_none());
    }
}
