// block_q4_1.metal — MSL twin of block_q4_1.wgsl: the matvec kernels' weights, row-major in
// GGUF Q4_1 layout (quant::q4_1).
//
// A Q4_1 block is 20 bytes: f16 scale d, f16 minimum m, 16 bytes of nibbles
// (element j low nibble of byte j, j+16 high nibble); value = d·q + m.
// Block i starts at byte 20·i, a multiple of 4, at offset s = 20i mod 16 ≤ 12
// in its word, so it lies within two aligned uint4 words.

// The block at byte o lies in the 2 aligned words from m.w[o/16]
// (unpack_q4_1), fetched by raw_load (see block_q4_0.metal).
struct Raw {
    uint4 a;
    uint4 c;
};

//#define RAW

Raw raw_load(MatvecArgs m, uint row, uint b) {
    uint i = (row * m.blocks + b) * 20u >> 4u;
    return Raw{m.w[i], m.w[i + 1u]};
}

float dot_raw(MatvecArgs m, Raw r, uint row, uint b, thread const float4* xv) {
    Q4Block k = unpack_q4_1(r.a, r.c, (row * m.blocks + b) * 20u);
    uint4 q = k.q;
    float4 e = float4(8388608.0f);
    float4 lo = (q4_lo(q.x) - e) * xv[0];
    float4 hi = (q4_hi(q.x) - e) * xv[4];
    lo += (q4_lo(q.y) - e) * xv[1];
    hi += (q4_hi(q.y) - e) * xv[5];
    lo += (q4_lo(q.z) - e) * xv[2];
    hi += (q4_hi(q.z) - e) * xv[6];
    lo += (q4_lo(q.w) - e) * xv[3];
    hi += (q4_hi(q.w) - e) * xv[7];
    float4 xs = (xv[0] + xv[1]) + (xv[2] + xv[3]) + (xv[4] + xv[5]) + (xv[6] + xv[7]);
    return k.d * (dot(lo, Q4_LO_SCALE) + dot(hi, Q4_HI_SCALE)) + k.m * (xs.x + xs.y + xs.z + xs.w);
}

// d_w·d_x·Σ q·c + m·s.
float dot_raw_q8(MatvecArgs m, Raw r, uint row, uint b, uint4 xa, uint4 xb, uint4 xa2, uint4 xb2, float d, float2 s) {
    Q4Block k = unpack_q4_1(r.a, r.c, (row * m.blocks + b) * 20u);
    int n = nib_dot(k.q, xa, xb);
//#if INT8X2
    n = 254 * n + nib_dot(k.q, xa2, xb2);
//#endif
    return k.d * d * X_LEVEL * float(n) + k.m * (s.x + s.y);
}

float block_dot(MatvecArgs m, uint row, uint b, thread const float4* xv) {
    return dot_raw(m, raw_load(m, row, b), row, b, xv);
}
