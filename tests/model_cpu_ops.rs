//! The CPU forward pass's building blocks on hand-computed inputs.

use q4gpu::model::{attention_head, rmsnorm, rope, silu, softmax};

fn close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol,
            "element {i}: {x} vs {y} (all: {a:?} vs {b:?})"
        );
    }
}

#[test]
fn rmsnorm_known_values() {
    // mean(x²) = (9 + 16) / 2 = 12.5, rms = sqrt(12.5) = 3.5355339
    let mut out = [0.0; 2];
    rmsnorm(&mut out, &[3.0, 4.0], &[1.0, 2.0], 0.0);
    close(&out, &[3.0 / 3.535_534, 8.0 / 3.535_534], 1e-6);
    // eps enters under the square root: mean 1 + eps 3 → divide by 2.
    rmsnorm(&mut out, &[1.0, -1.0], &[1.0, 1.0], 3.0);
    close(&out, &[0.5, -0.5], 1e-7);
}

#[test]
fn softmax_known_values() {
    let mut x = [1.0, 2.0, 3.0];
    softmax(&mut x);
    // e^k / (e + e² + e³)
    close(&x, &[0.090_030_57, 0.244_728_48, 0.665_240_94], 1e-6);
    // Large inputs do not overflow.
    let mut y = [1000.0, 1000.0, -1000.0];
    softmax(&mut y);
    close(&y, &[0.5, 0.5, 0.0], 1e-7);
    let mut empty: [f32; 0] = [];
    softmax(&mut empty);
}

#[test]
fn silu_known_values() {
    assert_eq!(silu(0.0), 0.0);
    // 1 * sigmoid(1) = 1 / (1 + e^-1)
    assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
    assert!((silu(-1.0) + 0.268_941_43).abs() < 1e-6);
    assert!((silu(30.0) - 30.0).abs() < 1e-5);
}

#[test]
fn rope_rotates_adjacent_pairs() {
    // head_dim 4: pair 0 turns by pos rad, pair 1 by pos * base^(-1/2).
    let base = 10000.0f32;
    let x = [1.0, 0.0, 0.0, 2.0];
    let mut y = x;
    rope(&mut y, 4, 0, base);
    close(&y, &x, 0.0);

    let pos = 3usize;
    let mut y = x;
    rope(&mut y, 4, pos, base);
    let a0 = pos as f64;
    let a1 = pos as f64 * 0.01; // 10000^(-2/4) = 0.01
    let want = [
        a0.cos() as f32,          // 1*cos - 0*sin
        a0.sin() as f32,          // 1*sin + 0*cos
        -(2.0 * a1.sin()) as f32, // 0*cos - 2*sin
        (2.0 * a1.cos()) as f32,  // 0*sin + 2*cos
    ];
    close(&y, &want, 1e-6);

    // Two heads of 4 are rotated identically and independently.
    let mut two = [1.0, 0.0, 0.0, 2.0, 1.0, 0.0, 0.0, 2.0];
    rope(&mut two, 4, pos, base);
    close(&two[..4], &want, 1e-6);
    close(&two[4..], &want, 1e-6);
}

#[test]
fn rope_preserves_norm_and_relative_angle() {
    // q·k after RoPE depends only on the distance between positions.
    let q0: Vec<f32> = (0..64).map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0).collect();
    let k0: Vec<f32> = (0..64).map(|i| ((i * 5 % 11) as f32 - 5.0) / 4.0).collect();
    let dot_at = |pq: usize, pk: usize| {
        let (mut q, mut k) = (q0.clone(), k0.clone());
        rope(&mut q, 64, pq, 100000.0);
        rope(&mut k, 64, pk, 100000.0);
        let n: f32 = q.iter().map(|v| v * v).sum();
        let n0: f32 = q0.iter().map(|v| v * v).sum();
        assert!((n - n0).abs() < 1e-3 * n0);
        q.iter().zip(&k).map(|(a, b)| a * b).sum::<f32>()
    };
    let d1 = dot_at(10, 7);
    let d2 = dot_at(40, 37);
    assert!((d1 - d2).abs() < 1e-3, "{d1} vs {d2}");
    assert!((dot_at(5, 5) - dot_at(0, 0)).abs() < 1e-3);
}

#[test]
fn attention_single_position_returns_value() {
    // Two kv heads of 2 per row; read head 1 (offset 2).
    let q = [5.0, -3.0];
    let keys = [0.1, 0.2, 0.3, 0.4];
    let values = [9.0, 9.0, 1.5, -2.5];
    let mut scores = [0.0; 1];
    let mut out = [0.0; 2];
    attention_head(&q, &keys, &values, 4, 2, 0.7, &mut scores, &mut out).unwrap();
    assert_eq!(scores, [1.0]);
    close(&out, &[1.5, -2.5], 0.0);
}

#[test]
fn attention_two_positions_weights_by_scaled_scores() {
    // head_dim 2, one head per row. scores = q·k * scale = [0, 2] * 0.5 = [0, 1].
    let q = [1.0, 1.0];
    let keys = [0.0, 0.0, 1.0, 1.0];
    let values = [1.0, 0.0, 0.0, 1.0];
    let mut scores = [0.0; 2];
    let mut out = [0.0; 2];
    attention_head(&q, &keys, &values, 2, 0, 0.5, &mut scores, &mut out).unwrap();
    let e = std::f32::consts::E;
    let p = [1.0 / (1.0 + e), e / (1.0 + e)];
    close(&scores, &p, 1e-6);
    close(&out, &p, 1e-6);
}

#[test]
fn attention_rejects_inconsistent_shapes() {
    let mut scores = [0.0; 2];
    let mut out = [0.0; 2];
    // Only one position of keys for two scores.
    let r = attention_head(
        &[1.0, 1.0],
        &[0.0; 2],
        &[0.0; 4],
        2,
        0,
        1.0,
        &mut scores,
        &mut out,
    );
    assert!(r.is_err());
    // Head runs past the row.
    let r = attention_head(
        &[1.0, 1.0],
        &[0.0; 4],
        &[0.0; 4],
        2,
        1,
        1.0,
        &mut scores,
        &mut out,
    );
    assert!(r.is_err());
}
