//! What the K-quant formats (Q4_K, Q5_K, Q6_K) share: 256-element
//! super-blocks, ggml's rounding helper, its two scale searches, and the
//! 6-bit scale/min packing of Q4_K and Q5_K. Every step follows ggml's
//! reference quantizers in f32 in the same order, so the bytes are
//! identical (tests/quant_ggml_kquant_fixture.rs).

/// Elements per K-quant super-block.
pub const QK_K: usize = 256;

/// Bytes of packed 6-bit scales and mins in Q4_K and Q5_K.
pub const K_SCALE_SIZE: usize = 12;

/// ggml's `GROUP_MAX_EPS`: groups whose largest magnitude is below it are zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int`: round to nearest, ties to even, by adding 1.5·2²³
/// and reading the mantissa (valid for |v| ≤ 2²² − 1; kept bit-for-bit
/// outside that range too).
pub fn nearest_int(v: f32) -> i32 {
    let bits = (v + 12_582_912.0f32).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

/// ggml's `make_qkx2_quants`: codes `l` (0..=nmax) of x with an affine
/// `scale·l − min_out` fitted by weighted least squares, trying `nstep + 1`
/// candidate inverse scales `(rmin + rdelta·is + nmax)/(max − min)`; returns
/// (scale, min_out ≥ 0) and writes the codes to `l_out`.
pub fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l_out: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out[..n].fill(0);
        return (0.0, -min);
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l_out[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    // As in ggml, a better candidate's min is used by the later candidates.
    let mut laux = [0u8; 32];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = l as u8;
            let (w, l) = (weights[i], l as f32);
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * f32::from(laux[i]) + this_min - x[i];
                cur_error += weights[i] * (diff * diff);
            }
            if cur_error < best_error {
                l_out[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// ggml's `make_qx_quants` with `rmse_type` 1 (weights x²) and no importance
/// weights: signed codes in −nmax..nmax−1 stored as `l + nmax`, scale chosen
/// among 19 candidates by weighted least squares. Returns the scale.
pub fn make_qx_quants(nmax: i32, x: &[f32], l_out: &mut [i8]) -> f32 {
    let n = x.len();
    let (amax, max) = super::signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let code = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    // Weighted sums Σ w·x·l and Σ w·l² (w = x²) for codes at `iscale`.
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for &v in x {
            let l = code(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let mut iscale = -(nmax as f32) / max;
    for i in 0..n {
        l_out[i] = (code(iscale, x[i]) + nmax) as i8;
    }
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                l_out[i] = (code(iscale, x[i]) + nmax) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Scale and min codes (6 bits each) of sub-block `j` (0..8) from the packed
/// 12 bytes (ggml's `get_scale_min_k4`).
pub fn scale_min(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The first half of ggml's Q4_K/Q5_K reference quantizer for one super-block:
/// per 32-element sub-block an affine fit (`make_qkx2_quants` with weights
/// rms + |x|), the 8 scales and mins quantized to 6 bits against their maxima,
/// then every element re-coded against its rounded scale and min. Returns
/// (d, dmin as f16 bits, packed scales, codes 0..=nmax).
pub fn quantize_scales_mins(
    x: &[f32; QK_K],
    nmax: i32,
    rmin: f32,
    nstep: i32,
) -> (u16, u16, [u8; K_SCALE_SIZE], [u8; QK_K]) {
    use super::f16::{f16_to_f32, f32_to_f16};
    let mut l = [0u8; QK_K];
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let weights: [f32; 32] = std::array::from_fn(|i| av_x + xs[i].abs());
        let (s, m) = make_qkx2_quants(nmax, xs, &weights, &mut l[32 * j..], rmin, 0.1, nstep);
        scales[j] = s;
        mins[j] = m;
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; K_SCALE_SIZE];
    for j in 0..8 {
        // ggml stores nearest_int's result in a uint8_t (wrapping), then caps at 63.
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0x0f) | ((lm & 0x0f) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let d = f32_to_f16(max_scale / 63.0);
    let dmin = f32_to_f16(max_min / 63.0);
    for j in 0..8 {
        let (sc, m) = scale_min(j, &packed);
        let dj = f16_to_f32(d) * f32::from(sc);
        if dj == 0.0 {
            continue;
        }
        let dm = f16_to_f32(dmin) * f32::from(m);
        for i in 0..32 {
            l[32 * j + i] = nearest_int((x[32 * j + i] + dm) / dj).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed, l)
}

/// What Q4_K and Q5_K share: 8 sub-blocks of 32 with 6-bit scale and min
/// codes; weight = d·sc·q − dmin·m. The two differ only in where a code's
/// bits live ([`ScaleMinBlock::code`]).
pub trait ScaleMinBlock {
    /// f16 bits of d and dmin, and the packed scales and mins.
    fn header(&self) -> ([u8; 2], [u8; 2], &[u8; K_SCALE_SIZE]);

    /// Code of element `e` (0..256).
    fn code(&self, e: usize) -> u8;

    /// Sub-block `j`'s (scale, min) as f32: (d·sc, dmin·m).
    fn sub_scale_min(&self, j: usize) -> (f32, f32) {
        use super::f16::f16_to_f32;
        let (d, dmin, scales) = self.header();
        let (sc, m) = scale_min(j, scales);
        let d = f16_to_f32(u16::from_le_bytes(d));
        let dmin = f16_to_f32(u16::from_le_bytes(dmin));
        (d * f32::from(sc), dmin * f32::from(m))
    }

    /// The 256 weights: `d·sc·q − dmin·m` per sub-block (ggml's order).
    fn dequantize_into(&self, y: &mut [f32]) {
        for j in 0..8 {
            let (d, m) = self.sub_scale_min(j);
            for i in 0..32 {
                y[32 * j + i] = d * f32::from(self.code(32 * j + i)) - m;
            }
        }
    }

    /// `Σ w·v`: per sub-block `d·sc·Σ q·v − dmin·m·Σ v` (f32 sums in element
    /// order), sub-block results added in order.
    fn dot_slice(&self, v: &[f32]) -> f32 {
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

    /// Sub-block `g`'s codes with scale d·sc and offset −dmin·m.
    fn sub_codes(&self, g: usize) -> super::GroupCodes {
        let (d, m) = self.sub_scale_min(g);
        super::GroupCodes {
            q: std::array::from_fn(|i| self.code(32 * g + i)),
            s: [d; 2],
            m: [-m; 2],
        }
    }
}
