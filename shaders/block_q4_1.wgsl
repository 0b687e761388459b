// block_q4_1.wgsl — the matvec kernels' weights, row-major in GGUF Q4_1 layout (quant::q4_1).
//
// A Q4_1 block is 20 bytes: f16 scale d, f16 minimum m, 16 bytes of nibbles
// (element j low nibble of byte j, j+16 high nibble); value = d·q + m.
// Block i starts at byte 20·i, a multiple of 4, at offset s = 20i mod 16 ≤ 12
// in its word, so it lies within two aligned vec4<u32> words. Period:
// LCM(20,16) = 80 bytes = 4 blocks = 5 words.

//#define RAW

// The block at byte o lies in words w[o/16] ++ w[o/16 + 1] (unpack_q4_1),
// fetched by raw_load (see block_q4_0.wgsl).
struct Raw {
    a: vec4<u32>,
    c: vec4<u32>,
}

fn raw_load(row: u32, b: u32) -> Raw {
    let i = ((row * p.blocks + b) * 20u) >> 4u;
    return Raw(w[i], w[i + 1u]);
}

fn block_dot(row: u32, b: u32, xv: array<vec4<f32>, 8>) -> f32 {
    return dot_raw(raw_load(row, b), row, b, xv);
}

fn dot_raw(r: Raw, row: u32, b: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let k = unpack_q4_1(r.a, r.c, (row * p.blocks + b) * 20u);
    let q = k.q;
    let e = vec4<f32>(8388608.0);
    var lo = (q4_lo(q.x) - e) * xv[0];
    var hi = (q4_hi(q.x) - e) * xv[4];
    lo += (q4_lo(q.y) - e) * xv[1];
    hi += (q4_hi(q.y) - e) * xv[5];
    lo += (q4_lo(q.z) - e) * xv[2];
    hi += (q4_hi(q.z) - e) * xv[6];
    lo += (q4_lo(q.w) - e) * xv[3];
    hi += (q4_hi(q.w) - e) * xv[7];
    let xs = (xv[0] + xv[1]) + (xv[2] + xv[3]) + (xv[4] + xv[5]) + (xv[6] + xv[7]);
    return k.d * (dot(lo, Q4_LO_SCALE) + dot(hi, Q4_HI_SCALE)) + k.m * (xs.x + xs.y + xs.z + xs.w);
}

// Σ (d_w·q + m)·c·d_x = d_w·d_x·Σ q·c + m·s.
fn dot_raw_q8(r: Raw, row: u32, b: u32, xa: vec4<u32>, xb: vec4<u32>, xa2: vec4<u32>, xb2: vec4<u32>, d: f32, s: vec2<f32>) -> f32 {
    let k = unpack_q4_1(r.a, r.c, (row * p.blocks + b) * 20u);
    var n = nib_dot(k.q, xa, xb);
//#if INT8X2
    n = 254 * n + nib_dot(k.q, xa2, xb2);
//#endif
    return k.d * d * X_LEVEL * f32(n) + k.m * (s.x + s.y);
}
