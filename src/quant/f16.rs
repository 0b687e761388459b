//! F16 (IEEE binary16) and BF16 (bfloat16) element formats, stored little-endian.
//!
//! Conversions from f32 round to nearest, ties to even, exactly as ggml's
//! `GGML_FP32_TO_FP16` / `GGML_FP32_TO_BF16`: a NaN becomes the quiet NaN `0x7E00`
//! (sign kept) in F16, and keeps its top payload bits with the quiet bit forced
//! in BF16. Conversions to f32 are exact.

/// One F16 element as stored in a tensor (little-endian bits; alignment 1).
pub type F16Bits = [u8; 2];
/// One BF16 element as stored in a tensor (little-endian bits; alignment 1).
pub type Bf16Bits = [u8; 2];

/// Elements summed per partial sum in [`dot_f16`] / [`dot_bf16`] (same grouping as the block formats).
const GROUP: usize = 32;

/// Rounds an f32 to the nearest binary16 (ties to even); returns its bits.
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let abs = bits & 0x7fff_ffff;
    if abs > 0x7f80_0000 {
        // NaN: ggml returns a canonical quiet NaN.
        return sign | 0x7e00;
    }
    if abs >= 0x477f_f000 {
        // |x| >= 65520 (halfway between 65504 and 2^16) rounds to infinity.
        return sign | 0x7c00;
    }
    if abs >= 0x3880_0000 {
        // |x| >= 2^-14: a normal half. Re-bias the exponent (127 -> 15), then
        // round the 23-bit mantissa to 10 bits; a mantissa carry bumps the exponent.
        let v = abs - (112 << 23);
        let rounded = v + 0x0fff + ((v >> 13) & 1);
        return sign | (rounded >> 13) as u16;
    }
    if abs <= 0x3300_0000 {
        // |x| <= 2^-25: rounds to zero (2^-25 itself is a tie and zero is even).
        return sign;
    }
    // Subnormal half: the result is |x| / 2^-24 rounded to an integer (ties to even).
    // |x| = man * 2^(e - 150), so |x| / 2^-24 = man >> (126 - e); here e is 102..=112.
    let e = abs >> 23;
    let man = (abs & 0x007f_ffff) | 0x0080_0000;
    let shift = 126 - e;
    let q = man >> shift;
    let rem = man & ((1 << shift) - 1);
    let half = 1 << (shift - 1);
    let q = if rem > half || (rem == half && q & 1 == 1) {
        q + 1
    } else {
        q
    };
    sign | q as u16
}

/// Exact value of binary16 bits as f32.
pub fn f16_to_f32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

/// Rounds an f32 to the nearest bfloat16 (ties to even); NaN keeps its sign and
/// top payload bits and is made quiet, as in ggml.
pub fn f32_to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return ((u >> 16) | 0x40) as u16;
    }
    // Adding 0x7fff plus the lowest kept bit rounds ties to even; overflow into the
    // exponent (up to infinity) is the correct rounding.
    (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

/// Exact value of bfloat16 bits as f32.
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// Converts `x` to F16; writes `min(x.len(), y.len())` elements.
pub fn quantize_row_f16(x: &[f32], y: &mut [F16Bits]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = f32_to_f16(v).to_le_bytes();
    }
}

/// Converts F16 elements to f32; writes `min(x.len(), y.len())` elements.
pub fn dequantize_row_f16(x: &[F16Bits], y: &mut [f32]) {
    for (o, h) in y.iter_mut().zip(x) {
        *o = f16_to_f32(u16::from_le_bytes(*h));
    }
}

/// Dot product of an F16 row with `v` over `min(x.len(), v.len())` elements.
/// Products are summed in f32 in groups of 32 consecutive elements, and the group
/// sums are added to the total in order.
pub fn dot_f16(x: &[F16Bits], v: &[f32]) -> f32 {
    let mut total = 0.0f32;
    for (xs, vs) in x.chunks(GROUP).zip(v.chunks(GROUP)) {
        let mut sum = 0.0f32;
        for (h, &b) in xs.iter().zip(vs) {
            sum += f16_to_f32(u16::from_le_bytes(*h)) * b;
        }
        total += sum;
    }
    total
}

/// Converts `x` to BF16; writes `min(x.len(), y.len())` elements.
pub fn quantize_row_bf16(x: &[f32], y: &mut [Bf16Bits]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = f32_to_bf16(v).to_le_bytes();
    }
}

/// Converts BF16 elements to f32; writes `min(x.len(), y.len())` elements.
pub fn dequantize_row_bf16(x: &[Bf16Bits], y: &mut [f32]) {
    for (o, h) in y.iter_mut().zip(x) {
        *o = bf16_to_f32(u16::from_le_bytes(*h));
    }
}

/// Dot product of a BF16 row with `v`; same summation order as [`dot_f16`].
pub fn dot_bf16(x: &[Bf16Bits], v: &[f32]) -> f32 {
    let mut total = 0.0f32;
    for (xs, vs) in x.chunks(GROUP).zip(v.chunks(GROUP)) {
        let mut sum = 0.0f32;
        for (h, &b) in xs.iter().zip(vs) {
            sum += bf16_to_f32(u16::from_le_bytes(*h)) * b;
        }
        total += sum;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_hand_values() {
        // 1.0 = 0x3C00; -2.0 = 0xC000; 65504 (largest) = 0x7BFF; 2^-24 (smallest subnormal) = 0x0001.
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(-2.0), 0xc000);
        assert_eq!(f32_to_f16(65504.0), 0x7bff);
        assert_eq!(f32_to_f16(2f32.powi(-24)), 0x0001);
        assert_eq!(f32_to_f16(0.0), 0x0000);
        assert_eq!(f32_to_f16(-0.0), 0x8000);
        // 65520 is halfway between 65504 and 65536 (= inf in f16): the even side is inf.
        assert_eq!(f32_to_f16(65520.0), 0x7c00);
        assert_eq!(f32_to_f16(65519.996), 0x7bff);
        // 2^-25 is halfway between 0 and 2^-24: ties to even -> 0. Just above -> 0x0001.
        assert_eq!(f32_to_f16(2f32.powi(-25)), 0x0000);
        assert_eq!(f32_to_f16(f32::from_bits(0x3300_0001)), 0x0001);
        // 3 * 2^-25 = 1.5 * 2^-24: tie between 1 and 2 -> 2 (even).
        assert_eq!(f32_to_f16(3.0 * 2f32.powi(-25)), 0x0002);
        // 1 + 2^-11 is halfway between 1.0 (0x3C00, even) and 1 + 2^-10 (0x3C01) -> 0x3C00.
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        // 1 + 3 * 2^-11 is halfway between 0x3C01 (odd) and 0x3C02 -> 0x3C02.
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        assert_eq!(f32_to_f16(f32::INFINITY), 0x7c00);
        assert_eq!(f32_to_f16(f32::NEG_INFINITY), 0xfc00);
        assert_eq!(f32_to_f16(f32::NAN), 0x7e00);
        assert_eq!(f32_to_f16(f32::from_bits(0xffc0_0001)), 0xfe00);
        // Largest subnormal 1023 * 2^-24 and the subnormal/normal boundary.
        assert_eq!(f32_to_f16(1023.0 * 2f32.powi(-24)), 0x03ff);
        assert_eq!(f32_to_f16(1023.5 * 2f32.powi(-24)), 0x0400);
        assert_eq!(f32_to_f16(2f32.powi(-14)), 0x0400);
    }

    #[test]
    fn bf16_hand_values() {
        // 1.0f32 = 0x3F800000 -> 0x3F80. 0x3F808000 is a tie with even low bit -> 0x3F80;
        // 0x3F818000 is a tie with odd low bit -> 0x3F82.
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_7fff)), 0x3f80);
        // Largest finite f32 rounds up to infinity.
        assert_eq!(f32_to_bf16(f32::MAX), 0x7f80);
        // Signalling NaN 0x7F800001 becomes quiet 0x7FC0; sign and top payload kept.
        assert_eq!(f32_to_bf16(f32::from_bits(0x7f80_0001)), 0x7fc0);
        assert_eq!(f32_to_bf16(f32::from_bits(0xffa1_0000)), 0xffe1);
        assert_eq!(bf16_to_f32(0xc040), -3.0);
    }

    #[test]
    fn f16_round_trip_all_finite_halves() {
        for h in 0..=u16::MAX {
            let f = f16_to_f32(h);
            if f.is_nan() {
                assert!(f32_to_f16(f) & 0x7c00 == 0x7c00 && f32_to_f16(f) & 0x3ff != 0);
            } else {
                assert_eq!(f32_to_f16(f), h, "half {h:#06x}");
            }
        }
    }
}
