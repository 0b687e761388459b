// block_q8_0.wgsl — the matvec kernels' weights, row-major in GGUF Q8_0 layout (quant::q8_0).
//
// A Q8_0 block is 34 bytes: f16 scale d, then 32 signed bytes; value = d·q.
// Block i starts at byte 34·i (even), at offset s = 34i mod 16 ≤ 14 in its
// word, so it lies within three aligned vec4<u32> words (s + 34 ≤ 48).
// Period: LCM(34,16) = 272 bytes = 8 blocks = 17 words.

//#define RAW

// Four signed bytes of q as floats, scaled by position (1, 256, 1, 1): byte
// b + 128 masked in place and OR-ed into 2²³ (see q4_lo), then the offset
// 2²³ + 128·scale subtracted; undo the scale with Q8_SCALE.
const Q8_SCALE = vec4<f32>(1.0, 1.0 / 256.0, 1.0, 1.0);
fn q8x4(q: u32) -> vec4<f32> {
    let f = bitcast<vec4<f32>>(vec4<u32>(q & 0xFFu, q & 0xFF00u, (q >> 16u) & 0xFFu, q >> 24u)
        ^ vec4<u32>(EXP | 0x80u, EXP | 0x8000u, EXP | 0x80u, EXP | 0x80u));
    return f - vec4<f32>(8388736.0, 8421376.0, 8388736.0, 8388736.0);
}

// The block at byte o lies in words w[o/16] .. w[o/16 + 2] (unpack_q8_0),
// fetched by raw_load (see block_q4_0.wgsl).
struct Raw {
    a: vec4<u32>,
    c: vec4<u32>,
    e: vec4<u32>,
}

fn raw_load(row: u32, b: u32) -> Raw {
    let i = ((row * p.blocks + b) * 34u) >> 4u;
    return Raw(w[i], w[i + 1u], w[i + 2u]);
}

fn block_dot(row: u32, b: u32, xv: array<vec4<f32>, 8>) -> f32 {
    return dot_raw(raw_load(row, b), row, b, xv);
}

fn dot_raw(r: Raw, row: u32, b: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let k = unpack_q8_0(r.a, r.c, r.e, (row * p.blocks + b) * 34u);
    var acc = q8x4(k.q0.x) * xv[0];
    acc += q8x4(k.q0.y) * xv[1];
    acc += q8x4(k.q0.z) * xv[2];
    acc += q8x4(k.q0.w) * xv[3];
    acc += q8x4(k.q1.x) * xv[4];
    acc += q8x4(k.q1.y) * xv[5];
    acc += q8x4(k.q1.z) * xv[6];
    acc += q8x4(k.q1.w) * xv[7];
    return k.d * dot(acc, Q8_SCALE);
}

// Σ d_w·q·c·d_x: the codes dotted four at a time.
fn q8_dot32(k: Q8Block, xa: vec4<u32>, xb: vec4<u32>) -> i32 {
    return (dot4I8Packed(k.q0.x, xa.x) + dot4I8Packed(k.q0.y, xa.y)) + (dot4I8Packed(k.q0.z, xa.z) + dot4I8Packed(k.q0.w, xa.w))
        + (dot4I8Packed(k.q1.x, xb.x) + dot4I8Packed(k.q1.y, xb.y)) + (dot4I8Packed(k.q1.z, xb.z) + dot4I8Packed(k.q1.w, xb.w));
}

fn dot_raw_q8(r: Raw, row: u32, b: u32, xa: vec4<u32>, xb: vec4<u32>, xa2: vec4<u32>, xb2: vec4<u32>, d: f32, s: vec2<f32>) -> f32 {
    let k = unpack_q8_0(r.a, r.c, r.e, (row * p.blocks + b) * 34u);
    var n = q8_dot32(k, xa, xb);
//#if INT8X2
    n = 254 * n + q8_dot32(k, xa2, xb2);
//#endif
    return k.d * d * X_LEVEL * f32(n);
}
