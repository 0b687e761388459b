//! Property tests: per-element round-trip error bounds for each block format, the
//! CPU dot against the dequantized sum, f16/bf16 rounding against `half`, and
//! "never panics" for the type-erased API on arbitrary input.
//!
//! Error bounds (x = input, w = dequantized, d32 = the f32 scale ggml computes,
//! d16 = the stored f16 scale, q = code):
//! - Q8_0: |w - x| <= d32/2 + |q|·|d16 - d32| (codes are round(x/d32)).
//! - Q4_0: |w - x| <= d32/2 + 8·|d16 - d32|, except where x/d32 > 7.5: the code is
//!   clamped to 15 (the positive end has no code 16), so there the bound is d32.
//! - Q4_1: |w - x| <= d32/2 + 15·|d16 - d32| + |m16 - min| (the offset is stored in f16 too).
//!
//! plus a relative slack of a few f32 ulps of the block's magnitude for the
//! f32 arithmetic in x·(1/d).

use proptest::prelude::*;
use q4gpu::gguf::GgmlType;
use q4gpu::quant::{self, f16, BlockQ4_0, BlockQ4_1, BlockQ8_0};

const SLACK: f32 = 4.0 * f32::EPSILON;

/// Rows of 1..=4 blocks with a per-row magnitude from 1e-3 to 1e3; some blocks all-equal.
fn rows() -> impl Strategy<Value = Vec<f32>> {
    (1usize..=4, -3i32..=3, any::<bool>()).prop_flat_map(|(nb, e, flat)| {
        let r = 10f32.powi(e);
        let n = nb * 32;
        if flat {
            (-r..=r).prop_map(move |v| vec![v; n]).boxed()
        } else {
            prop::collection::vec(-r..=r, n).boxed()
        }
    })
}

fn amax(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |a, v| a.max(v.abs()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn q8_0_round_trip_bound(x in rows()) {
        let bytes = quant::quantize(GgmlType::Q8_0, &x).unwrap();
        let blocks: &[BlockQ8_0] = bytemuck::cast_slice(&bytes);
        let w = quant::dequantize_row_to_vec(GgmlType::Q8_0, &bytes, x.len()).unwrap();
        for (b, (xs, ws)) in blocks.iter().zip(x.chunks(32).zip(w.chunks(32))) {
            let am = amax(xs);
            let d32 = am / 127.0;
            let d16 = b.d();
            for j in 0..32 {
                let q = f32::from(b.qs[j]);
                let bound = 0.5 * d32 + q.abs() * (d16 - d32).abs() + SLACK * am;
                prop_assert!((ws[j] - xs[j]).abs() <= bound, "j {j}: x {} w {} bound {bound}", xs[j], ws[j]);
            }
        }
    }

    #[test]
    fn q4_0_round_trip_bound(x in rows()) {
        let bytes = quant::quantize(GgmlType::Q4_0, &x).unwrap();
        let blocks: &[BlockQ4_0] = bytemuck::cast_slice(&bytes);
        let w = quant::dequantize_row_to_vec(GgmlType::Q4_0, &bytes, x.len()).unwrap();
        for (b, (xs, ws)) in blocks.iter().zip(x.chunks(32).zip(w.chunks(32))) {
            let am = amax(xs);
            // The signed value of largest magnitude (first on ties) over -8.
            let max = xs.iter().fold((0.0f32, 0.0f32), |(a, m), &v| if a < v.abs() { (v.abs(), v) } else { (a, m) }).1;
            let d32 = max / -8.0;
            let d16 = b.d();
            for j in 0..32 {
                let scaled = if d32 != 0.0 { xs[j] / d32 } else { 0.0 };
                let half_step = if scaled > 7.5 { 1.0 } else { 0.5 };
                let bound = half_step * d32.abs() + 8.0 * (d16 - d32).abs() + SLACK * am;
                prop_assert!((ws[j] - xs[j]).abs() <= bound, "j {j}: x {} w {} bound {bound}", xs[j], ws[j]);
                // Never worse than one step anywhere.
                prop_assert!((ws[j] - xs[j]).abs() <= d32.abs() + 8.0 * (d16 - d32).abs() + SLACK * am);
            }
        }
    }

    #[test]
    fn q4_1_round_trip_bound(x in rows()) {
        let bytes = quant::quantize(GgmlType::Q4_1, &x).unwrap();
        let blocks: &[BlockQ4_1] = bytemuck::cast_slice(&bytes);
        let w = quant::dequantize_row_to_vec(GgmlType::Q4_1, &bytes, x.len()).unwrap();
        for (b, (xs, ws)) in blocks.iter().zip(x.chunks(32).zip(w.chunks(32))) {
            let min = xs.iter().copied().fold(f32::MAX, f32::min);
            let max = xs.iter().copied().fold(-f32::MAX, f32::max);
            let d32 = (max - min) / 15.0;
            let (d16, m16) = (b.d(), b.m());
            let am = amax(xs);
            for j in 0..32 {
                let bound = 0.5 * d32 + 15.0 * (d16 - d32).abs() + (m16 - min).abs() + SLACK * am;
                prop_assert!((ws[j] - xs[j]).abs() <= bound, "j {j}: x {} w {} bound {bound}", xs[j], ws[j]);
            }
        }
    }

    #[test]
    fn dot_equals_dequantized_sum(x in rows(), seed in any::<u64>(), ti in 0usize..6) {
        let ty = [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::F16, GgmlType::BF16, GgmlType::F32][ti];
        // Deterministic pseudo-random activations in [-2, 2).
        let mut s = seed;
        let v: Vec<f32> = (0..x.len()).map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        }).collect();
        let bytes = quant::quantize(ty, &x).unwrap();
        let w = quant::dequantize_row_to_vec(ty, &bytes, x.len()).unwrap();
        let exact: f64 = w.iter().zip(&v).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
        let mag: f64 = w.iter().zip(&v).map(|(a, b)| (f64::from(*a) * f64::from(*b)).abs()).sum();
        // Also the per-format row function, which the type-erased one dispatches to.
        let got = quant::dot(ty, &bytes, &v).unwrap();
        let tol = 64.0 * f64::from(f32::EPSILON) * mag + 1e-30;
        prop_assert!((f64::from(got) - exact).abs() <= tol, "{ty}: dot {got} vs {exact} (tol {tol})");
    }

    #[test]
    fn f16_and_bf16_match_half_crate(bits in any::<u32>()) {
        let x = f32::from_bits(bits);
        let h = f16::f32_to_f16(x);
        if x.is_nan() {
            prop_assert_eq!(h, (((bits >> 16) & 0x8000) as u16) | 0x7e00);
        } else {
            prop_assert_eq!(h, half::f16::from_f32(x).to_bits());
        }
        prop_assert_eq!(f16::f32_to_bf16(x), half::bf16::from_f32(x).to_bits());
    }

    #[test]
    fn f16_relative_error_is_half_ulp(x in 6.2e-5f32..65000.0, neg in any::<bool>()) {
        let x = if neg { -x } else { x };
        let y = f16::f16_to_f32(f16::f32_to_f16(x));
        prop_assert!((y - x).abs() <= x.abs() * 2f32.powi(-11));
        let z = f16::bf16_to_f32(f16::f32_to_bf16(x));
        prop_assert!((z - x).abs() <= x.abs() * 2f32.powi(-8));
    }

    #[test]
    fn type_erased_api_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200), n in 0usize..100, ti in 0usize..6) {
        let ty = [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::F16, GgmlType::BF16, GgmlType::F32][ti];
        let expected_ok = ty.row_bytes(n as u64) == Some(bytes.len() as u64);
        let r = quant::dequantize_row_to_vec(ty, &bytes, n);
        prop_assert_eq!(r.is_ok(), expected_ok);
        let x = vec![0.5f32; n];
        prop_assert_eq!(quant::dot(ty, &bytes, &x).is_ok(), expected_ok);
        prop_assert_eq!(quant::quantize(ty, &x).is_ok(), n % ty.block_size() == 0);
    }
}
