// block_codes.metal — MSL twin of block_codes.wgsl: what the block formats
// that decode to small unsigned codes share (Q5_0, Q5_1, Q4_K, Q5_K, Q6_K):
// the dots and the matmul's dequantization from a 32-element block's codes.
// Include in a block file after Raw and raw_load(m, row, b), before its
// codes(m, r, row, b): MSL declares before use, so Codes and the declaration
// of codes come first here (the WGSL file is included at the end instead).
// The helpers read m.w and m.blocks only (matmul.metal passes its own
// arguments as MatvecArgs).
//
// Codes: the block's codes packed 4 per word (elements 4k..4k+3 in p[k],
// byte i = element 4k + i, values < 64 so they are also valid signed
// bytes), and per half (elements 0..15, 16..31) a scale s and offset m:
// value = s·q + m.

//#define BLOCK_VEC4

struct Codes {
    uint p[8];
    float2 s;
    float2 m;
};

// Defined by the block file after this include.
Codes codes(MatvecArgs m, Raw r, uint row, uint b);

// The 4 bytes of q as exact floats: 0x4B000000 | byte, read as float, is
// 2²³ + byte (the EXP trick of matvec_common's q4_lo).
float4 bytes4(uint q) {
    uint4 v = uint4(q & 0xFFu, (q >> 8u) & 0xFFu, (q >> 16u) & 0xFFu, q >> 24u) | uint4(0x4B000000u);
    return as_type<float4>(v) - float4(8388608.0f);
}

float hsum(float4 v) {
    return (v.x + v.y) + (v.z + v.w);
}

float dot_raw(MatvecArgs m, Raw r, uint row, uint b, thread const float4* xv) {
    Codes c = codes(m, r, row, b);
    float4 a0 = bytes4(c.p[0]) * xv[0];
    float4 a1 = bytes4(c.p[4]) * xv[4];
    a0 += bytes4(c.p[1]) * xv[1];
    a1 += bytes4(c.p[5]) * xv[5];
    a0 += bytes4(c.p[2]) * xv[2];
    a1 += bytes4(c.p[6]) * xv[6];
    a0 += bytes4(c.p[3]) * xv[3];
    a1 += bytes4(c.p[7]) * xv[7];
    float4 x0 = (xv[0] + xv[1]) + (xv[2] + xv[3]);
    float4 x1 = (xv[4] + xv[5]) + (xv[6] + xv[7]);
    return (c.s.x * hsum(a0) + c.m.x * hsum(x0)) + (c.s.y * hsum(a1) + c.m.y * hsum(x1));
}

// Codes p[k0..k0+4] dotted with the 16 input codes in x.
int codes_dot16(Codes c, uint k0, uint4 x) {
    return (dot4i8(c.p[k0], x.x) + dot4i8(c.p[k0 + 1u], x.y))
        + (dot4i8(c.p[k0 + 2u], x.z) + dot4i8(c.p[k0 + 3u], x.w));
}

// With the input block as int8 codes (xa: elements 0..15, xb: 16..31, scale
// d; with INT8X2 the second level's in xa2, xb2) and s, the input's per-half
// sums d·Σc as staged (both levels): d·s·Σq·c + m·s per half (see
// block_codes.wgsl).
float dot_raw_q8(MatvecArgs m, Raw r, uint row, uint b, uint4 xa, uint4 xb, uint4 xa2, uint4 xb2, float d, float2 s) {
    Codes c = codes(m, r, row, b);
    int lo = codes_dot16(c, 0u, xa);
    int hi = codes_dot16(c, 4u, xb);
//#if INT8X2
    lo = 254 * lo + codes_dot16(c, 0u, xa2);
    hi = 254 * hi + codes_dot16(c, 4u, xb2);
//#endif
//#if Q6_K
    return d * X_LEVEL * (c.s.x * float(lo) + c.s.y * float(hi)) + (c.m.x * s.x + c.m.y * s.y);
//#else
    // One scale and offset per 32-element block (c.s.x = c.s.y): one conversion.
    return d * X_LEVEL * c.s.x * float(lo + hi) + c.m.x * (s.x + s.y);
//#endif
}

float block_dot(MatvecArgs m, uint row, uint b, thread const float4* xv) {
    return dot_raw(m, raw_load(m, row, b), row, b, xv);
}

// Elements 4j..4j+3 and 16+4j..16+4j+3 (j < 4) of block b of `row`: what
// one thread of the batched matmul stages, decoded from one load.
void block_vec4_pair(MatvecArgs m, uint row, uint b, uint j, thread float4& v0, thread float4& v1) {
    Codes c = codes(m, raw_load(m, row, b), row, b);
    v0 = c.s.x * bytes4(c.p[j]) + c.m.x;
    v1 = c.s.y * bytes4(c.p[j + 4u]) + c.m.y;
}
