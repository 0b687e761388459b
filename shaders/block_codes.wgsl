// block_codes.wgsl — what the block formats that decode to small unsigned
// codes share (Q5_0, Q5_1, Q4_K, Q5_K, Q6_K): the dots and the matmul's
// dequantization from a 32-element block's codes. Include at the end of a
// block file that defines Raw, raw_load(row, b) and codes(r, row, b).
//
// Codes: the block's codes packed 4 per word (elements 4k..4k+3 in p[k],
// byte i = element 4k + i, values < 64 so they are also valid signed
// bytes), and per half (elements 0..15, 16..31) a scale s and offset m:
// value = s·q + m.

//#define BLOCK_VEC4

struct Codes {
    p: array<u32, 8>,
    s: vec2<f32>,
    m: vec2<f32>,
}

// The 4 bytes of q as exact floats: 0x4B000000 | byte, read as f32, is
// 2²³ + byte (the EXP trick of matvec_common's q4_lo).
fn bytes4(q: u32) -> vec4<f32> {
    let v = vec4<u32>(q & 0xFFu, (q >> 8u) & 0xFFu, (q >> 16u) & 0xFFu, q >> 24u) | vec4<u32>(0x4B000000u);
    return bitcast<vec4<f32>>(v) - vec4<f32>(8388608.0);
}

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

fn dot_raw(r: Raw, row: u32, b: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let c = codes(r, row, b);
    var a0 = bytes4(c.p[0]) * xv[0];
    var a1 = bytes4(c.p[4]) * xv[4];
    a0 += bytes4(c.p[1]) * xv[1];
    a1 += bytes4(c.p[5]) * xv[5];
    a0 += bytes4(c.p[2]) * xv[2];
    a1 += bytes4(c.p[6]) * xv[6];
    a0 += bytes4(c.p[3]) * xv[3];
    a1 += bytes4(c.p[7]) * xv[7];
    let x0 = (xv[0] + xv[1]) + (xv[2] + xv[3]);
    let x1 = (xv[4] + xv[5]) + (xv[6] + xv[7]);
    return (c.s.x * hsum(a0) + c.m.x * hsum(x0)) + (c.s.y * hsum(a1) + c.m.y * hsum(x1));
}

// Codes p[k0..k0+4] dotted with the 16 input codes in x.
fn codes_dot16(c: Codes, k0: u32, x: vec4<u32>) -> i32 {
    return (dot4I8Packed(c.p[k0], x.x) + dot4I8Packed(c.p[k0 + 1u], x.y))
        + (dot4I8Packed(c.p[k0 + 2u], x.z) + dot4I8Packed(c.p[k0 + 3u], x.w));
}

// With the input block as int8 codes (xa: elements 0..15, xb: 16..31, scale
// d; with INT8X2 the second level's in xa2, xb2, scale d/254) and s, the
// input's per-half sums d·Σc as staged (both levels): d·s·Σq·c + m·s per
// half. The sums come from the staging, once per block of x, not from eight
// more int8 dots per row (H200, Q4_K 14336×4096 int8x2: 42 % of read
// bandwidth before). See matvec_common's X_LEVEL for the conversions.
fn dot_raw_q8(r: Raw, row: u32, b: u32, xa: vec4<u32>, xb: vec4<u32>, xa2: vec4<u32>, xb2: vec4<u32>, d: f32, s: vec2<f32>) -> f32 {
    let c = codes(r, row, b);
    var lo = codes_dot16(c, 0u, xa);
    var hi = codes_dot16(c, 4u, xb);
//#if INT8X2
    lo = 254 * lo + codes_dot16(c, 0u, xa2);
    hi = 254 * hi + codes_dot16(c, 4u, xb2);
//#endif
//#if Q6_K
    return d * X_LEVEL * (c.s.x * f32(lo) + c.s.y * f32(hi)) + (c.m.x * s.x + c.m.y * s.y);
//#else
    // One scale and offset per 32-element block (c.s.x = c.s.y): one conversion.
    return d * X_LEVEL * c.s.x * f32(lo + hi) + c.m.x * (s.x + s.y);
//#endif
}

fn block_dot(row: u32, b: u32, xv: array<vec4<f32>, 8>) -> f32 {
    return dot_raw(raw_load(row, b), row, b, xv);
}

// Elements 4j..4j+3 and 16+4j..16+4j+3 (j < 4) of block b of `row`: what
// one thread of the batched matmul stages, decoded from one load.
fn block_vec4_pair(row: u32, b: u32, j: u32) -> array<vec4<f32>, 2> {
    let c = codes(raw_load(row, b), row, b);
    return array<vec4<f32>, 2>(c.s.x * bytes4(c.p[j]) + c.m.x, c.s.y * bytes4(c.p[j + 4u]) + c.m.y);
}
