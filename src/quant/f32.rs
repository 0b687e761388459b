//! F32 elements stored little-endian; "quantizing" is a byte copy.

/// One F32 element as stored in a tensor (little-endian bits; alignment 1).
pub type F32Bits = [u8; 4];

/// Elements summed per partial sum in [`dot`] (same grouping as the block formats).
const GROUP: usize = 32;

/// Stores `x` as little-endian f32; writes `min(x.len(), y.len())` elements.
pub fn quantize_row(x: &[f32], y: &mut [F32Bits]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = v.to_le_bytes();
    }
}

/// Reads little-endian f32 elements; writes `min(x.len(), y.len())` elements.
pub fn dequantize_row(x: &[F32Bits], y: &mut [f32]) {
    for (o, b) in y.iter_mut().zip(x) {
        *o = f32::from_le_bytes(*b);
    }
}

/// Dot product over `min(x.len(), v.len())` elements: products summed in f32 in
/// groups of 32 consecutive elements, group sums added to the total in order.
pub fn dot(x: &[F32Bits], v: &[f32]) -> f32 {
    let mut total = 0.0f32;
    for (xs, vs) in x.chunks(GROUP).zip(v.chunks(GROUP)) {
        let mut sum = 0.0f32;
        for (b, &w) in xs.iter().zip(vs) {
            sum += f32::from_le_bytes(*b) * w;
        }
        total += sum;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_little_endian() {
        let mut y = [[0u8; 4]; 2];
        quantize_row(&[1.0, -2.5], &mut y);
        // 1.0 = 0x3F800000, -2.5 = 0xC0200000.
        assert_eq!(y, [[0, 0, 0x80, 0x3f], [0, 0, 0x20, 0xc0]]);
        let mut back = [0.0; 2];
        dequantize_row(&y, &mut back);
        assert_eq!(back, [1.0, -2.5]);
        assert_eq!(dot(&y, &[2.0, 4.0]), -8.0);
    }
}
