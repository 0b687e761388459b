// block_q4_0.metal — MSL twin of block_q4_0.wgsl: the matvec kernels' weights, row-major in
// GGUF Q4_0 layout (quant::q4_0).
//
// A Q4_0 block is 18 bytes: f16 scale d, then 16 bytes of nibbles; element j
// is the low nibble of byte j, element j+16 the high nibble; value = d·(q−8).
// Block i starts at byte 18·i (even), so its 18 bytes lie within the two
// aligned 16-byte words starting at word ⌊18i/16⌋ (offset s = 18i mod 16 ≤ 14,
// s + 18 ≤ 32): every block is read with two aligned uint4 loads.

// The block at byte o lies in the 2 aligned words from m.w[o/16]
// (unpack_q4_0): raw_load fetches them (`early` kernels issue it before
// staging x), dot_raw and dot_raw_q8 unpack and use them.
struct Raw {
    uint4 a;
    uint4 c;
};

//#define RAW

Raw raw_load(MatvecArgs m, uint row, uint b) {
    uint i = (row * m.blocks + b) * 18u >> 4u;
    return Raw{m.w[i], m.w[i + 1u]};
}

float dot_raw(MatvecArgs m, Raw r, uint row, uint b, thread const float4* xv) {
    Q4Block k = unpack_q4_0(r.a, r.c, (row * m.blocks + b) * 18u);
    uint4 q = k.q;
    // value = q − 8: subtract 2^23 + 8·scale per position.
    float4 lo8 = float4(8388616.0f, 8390656.0f, 8912896.0f, 8388616.0f);
    float4 hi8 = float4(8388736.0f, 8421376.0f, 8388736.0f, 8388616.0f);
    float4 lo = (q4_lo(q.x) - lo8) * xv[0];
    float4 hi = (q4_hi(q.x) - hi8) * xv[4];
    lo += (q4_lo(q.y) - lo8) * xv[1];
    hi += (q4_hi(q.y) - hi8) * xv[5];
    lo += (q4_lo(q.z) - lo8) * xv[2];
    hi += (q4_hi(q.z) - hi8) * xv[6];
    lo += (q4_lo(q.w) - lo8) * xv[3];
    hi += (q4_hi(q.w) - hi8) * xv[7];
    return k.d * (dot(lo, Q4_LO_SCALE) + dot(hi, Q4_HI_SCALE));
}

// d_x·Σ q·c − 8·s (see block_q4_0.wgsl).
float dot_raw_q8(MatvecArgs m, Raw r, uint row, uint b, uint4 xa, uint4 xb, uint4 xa2, uint4 xb2, float d, float2 s) {
    Q4Block k = unpack_q4_0(r.a, r.c, (row * m.blocks + b) * 18u);
    int n = nib_dot(k.q, xa, xb);
//#if INT8X2
    n = 254 * n + nib_dot(k.q, xa2, xb2);
//#endif
    return k.d * (d * X_LEVEL * float(n) - 8.0f * (s.x + s.y));
}

float block_dot(MatvecArgs m, uint row, uint b, thread const float4* xv) {
    return dot_raw(m, raw_load(m, row, b), row, b, xv);
}
