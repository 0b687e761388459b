// block_q4_0.wgsl — the matvec kernels' weights, row-major in GGUF Q4_0 layout (quant::q4_0).
//
// A Q4_0 block is 18 bytes: f16 scale d, then 16 bytes of nibbles; element j
// is the low nibble of byte j, element j+16 the high nibble; value = d·(q−8).
// Blocks are packed back to back, so block i starts at byte 18·i, which is
// even: its 18 bytes always lie within the two aligned 16-byte words starting
// at word ⌊18i/16⌋ (offset s = 18i mod 16 ≤ 14, s + 18 ≤ 32). Every block is
// thus read with two aligned vec4<u32> loads; the period of the pattern is
// LCM(18,16) = 144 bytes = 8 blocks = 9 words.

//#define RAW

// The block at byte o lies in words w[o/16] ++ w[o/16 + 1] (unpack_q4_0):
// raw_load fetches them (`early` kernels issue it before staging x), dot_raw and
// dot_raw_q8 unpack and use them.
struct Raw {
    a: vec4<u32>,
    c: vec4<u32>,
}

fn raw_load(row: u32, b: u32) -> Raw {
    let i = ((row * p.blocks + b) * 18u) >> 4u;
    return Raw(w[i], w[i + 1u]);
}

fn block_dot(row: u32, b: u32, xv: array<vec4<f32>, 8>) -> f32 {
    return dot_raw(raw_load(row, b), row, b, xv);
}

fn dot_raw(r: Raw, row: u32, b: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let k = unpack_q4_0(r.a, r.c, (row * p.blocks + b) * 18u);
    let q = k.q;
    // value = q − 8: subtract 2²³ + 8·scale per position.
    let lo8 = vec4<f32>(8388616.0, 8390656.0, 8912896.0, 8388616.0);
    let hi8 = vec4<f32>(8388736.0, 8421376.0, 8388736.0, 8388616.0);
    var lo = (q4_lo(q.x) - lo8) * xv[0];
    var hi = (q4_hi(q.x) - hi8) * xv[4];
    lo += (q4_lo(q.y) - lo8) * xv[1];
    hi += (q4_hi(q.y) - hi8) * xv[5];
    lo += (q4_lo(q.z) - lo8) * xv[2];
    hi += (q4_hi(q.z) - hi8) * xv[6];
    lo += (q4_lo(q.w) - lo8) * xv[3];
    hi += (q4_hi(q.w) - hi8) * xv[7];
    return k.d * (dot(lo, Q4_LO_SCALE) + dot(hi, Q4_HI_SCALE));
}

// Σ (q−8)·c·d_x = d_x·Σ q·c − 8·s: nibbles (0..15, valid signed bytes) dotted
// with the input codes four at a time.
fn dot_raw_q8(r: Raw, row: u32, b: u32, xa: vec4<u32>, xb: vec4<u32>, xa2: vec4<u32>, xb2: vec4<u32>, d: f32, s: vec2<f32>) -> f32 {
    let k = unpack_q4_0(r.a, r.c, (row * p.blocks + b) * 18u);
    var n = nib_dot(k.q, xa, xb);
//#if INT8X2
    n = 254 * n + nib_dot(k.q, xa2, xb2);
//#endif
    return k.d * (d * X_LEVEL * f32(n) - 8.0 * (s.x + s.y));
}
