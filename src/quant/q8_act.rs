//! Q8 activations: an input vector quantized per 32-element block to signed
//! 8-bit codes with an f32 scale, the input side of the int8-dot matvec
//! (kernel flag INT8). Scale `d = max|x| / 127`, codes `round(x · (1/d))`
//! with ties to even, as the GPU kernels compute them; `s = d · Σ codes`
//! serves the offset terms of Q4_0 (−8) and Q4_1 (+m).
//!
//! The `dot_q8` functions beside each block format ([`super::q4_0::dot_q8`],
//! [`super::q4_1::dot_q8`], [`super::q8_0::dot_q8`]) are the oracle of the
//! int8-input kernels: integer sums per block, scales applied once per block.

/// Elements per activation block.
pub const QK: usize = 32;

/// One 32-element block of a quantized activation vector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8Act {
    /// Codes, round(x / d).
    pub codes: [i8; QK],
    /// Scale, max|x| / 127 (0 for an all-zero block).
    pub d: f32,
    /// d · Σ codes.
    pub s: f32,
}

impl BlockQ8Act {
    /// Quantizes 32 values.
    pub fn quantize(x: &[f32; QK]) -> Self {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let codes: [i8; QK] = std::array::from_fn(|j| (x[j] * id).round_ties_even() as i8);
        let sum: i32 = codes.iter().map(|&c| i32::from(c)).sum();
        Self {
            codes,
            d,
            s: d * sum as f32,
        }
    }

    /// The 32 values the block stands for: code · d.
    pub fn dequantize(&self) -> [f32; QK] {
        std::array::from_fn(|j| f32::from(self.codes[j]) * self.d)
    }
}

/// Quantizes `x` block by block; a trailing partial block is ignored (the
/// matvec kernels take whole blocks only).
pub fn quantize(x: &[f32]) -> Vec<BlockQ8Act> {
    x.chunks_exact(QK)
        .filter_map(|c| <&[f32; QK]>::try_from(c).ok())
        .map(BlockQ8Act::quantize)
        .collect()
}

/// The input a two-level int8 matvec (kernel flags INT8 + INT8X2) computes with, per
/// 32-element block: codes c at scale d (as [`BlockQ8Act`]), then codes e of
/// the remainder x − c·d at scale d/254 (|e| ≤ 127), so x ≈ c·d + e·d/254, off
/// by at most d/508 (about 15 bits). The oracle of the int8x2 kernels is the f32
/// dot with this vector; a trailing partial block is left out.
pub fn two_level_input(x: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len() / QK * QK);
    for (c, b) in x.chunks_exact(QK).zip(quantize(x)) {
        let d = b.d;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let d2 = d * (1.0 / 254.0);
        for (&v, &q) in c.iter().zip(&b.codes) {
            let q = f32::from(q);
            // x/d − q ∈ [−½, ½] scaled after the subtraction (254/d may overflow).
            let e = ((v * id - q) * 254.0)
                .round_ties_even()
                .clamp(-127.0, 127.0);
            out.push(q * d + e * d2);
        }
    }
    out
}

/// Σ_j a_j · c_j over one block's 32 integer weights and activation codes.
pub fn int_dot(a: impl Iterator<Item = i32>, codes: &[i8; QK]) -> i32 {
    a.zip(codes).map(|(w, &c)| w * i32::from(c)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_span_the_block_and_round_trip() {
        let x: [f32; QK] = std::array::from_fn(|j| (j as f32 - 13.3) * 0.37);
        let b = BlockQ8Act::quantize(&x);
        assert_eq!(b.codes.iter().map(|c| c.unsigned_abs()).max(), Some(127));
        for (v, r) in x.iter().zip(b.dequantize()) {
            assert!((v - r).abs() <= b.d / 2.0 * 1.0001, "{v} vs {r}");
        }
        let sum: i32 = b.codes.iter().map(|&c| i32::from(c)).sum();
        assert_eq!(b.s, b.d * sum as f32);
    }

    #[test]
    fn two_levels_are_within_d_over_508() {
        let x: Vec<f32> = (0..3 * QK)
            .map(|j| ((j * 37 % 101) as f32 - 50.3) * 0.0173)
            .collect();
        let y = two_level_input(&x);
        assert_eq!(y.len(), x.len());
        let mut worst = 0.0f32;
        for (cx, cy) in x.chunks(QK).zip(y.chunks(QK)) {
            let d = cx.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
            for (a, b) in cx.iter().zip(cy) {
                assert!((a - b).abs() <= d / 508.0 * 1.01, "{a} vs {b}, d {d}");
                worst = worst.max((a - b).abs() / d);
            }
        }
        // The second level does work: one level alone is off by up to d/2.
        assert!(worst > 0.0 && worst < 1.0 / 500.0, "{worst}");
    }

    #[test]
    fn zero_block_has_zero_scale_and_codes() {
        let b = BlockQ8Act::quantize(&[0.0; QK]);
        assert_eq!((b.d, b.s, b.codes), (0.0, 0.0, [0; QK]));
    }

    #[test]
    fn ties_round_to_even() {
        // max 127 -> d = 1: 2.5 -> 2, 3.5 -> 4, -2.5 -> -2.
        let mut x = [0.0; QK];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = 3.5;
        x[3] = -2.5;
        let b = BlockQ8Act::quantize(&x);
        assert_eq!(&b.codes[..4], &[127, 2, 4, -2]);
    }
}
