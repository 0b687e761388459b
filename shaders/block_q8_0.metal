// block_q8_0.metal — MSL twin of block_q8_0.wgsl: the matvec kernels' weights, row-major in
// GGUF Q8_0 layout (quant::q8_0).
//
// A Q8_0 block is 34 bytes: f16 scale d, then 32 signed bytes; value = d·q.
// Block i starts at byte 34·i (even), at offset s = 34i mod 16 ≤ 14 in its
// word, so it lies within three aligned uint4 words (s + 34 ≤ 48).

// The block at byte o lies in the 3 aligned words from m.w[o/16]
// (unpack_q8_0), fetched by raw_load (see block_q4_0.metal).
struct Raw {
    uint4 a;
    uint4 c;
    uint4 e;
};

//#define RAW

// Four signed bytes of q as floats, scaled by position (1, 256, 1, 1); see
// block_q8_0.wgsl.
constant float4 Q8_SCALE = float4(1.0f, 1.0f / 256.0f, 1.0f, 1.0f);
float4 q8x4(uint q) {
    float4 f = as_type<float4>(uint4(q & 0xFFu, q & 0xFF00u, (q >> 16u) & 0xFFu, q >> 24u)
        ^ uint4(EXP | 0x80u, EXP | 0x8000u, EXP | 0x80u, EXP | 0x80u));
    return f - float4(8388736.0f, 8421376.0f, 8388736.0f, 8388736.0f);
}

// The block at byte o lies in the 3 aligned words from m.w[o/16] (unpack_q8_0).
Raw raw_load(MatvecArgs m, uint row, uint b) {
    uint i = (row * m.blocks + b) * 34u >> 4u;
    return Raw{m.w[i], m.w[i + 1u], m.w[i + 2u]};
}

float dot_raw(MatvecArgs m, Raw r, uint row, uint b, thread const float4* xv) {
    Q8Block k = unpack_q8_0(r.a, r.c, r.e, (row * m.blocks + b) * 34u);
    float4 acc = q8x4(k.q0.x) * xv[0];
    acc += q8x4(k.q0.y) * xv[1];
    acc += q8x4(k.q0.z) * xv[2];
    acc += q8x4(k.q0.w) * xv[3];
    acc += q8x4(k.q1.x) * xv[4];
    acc += q8x4(k.q1.y) * xv[5];
    acc += q8x4(k.q1.z) * xv[6];
    acc += q8x4(k.q1.w) * xv[7];
    return k.d * dot(acc, Q8_SCALE);
}

// d_w·d_x·Σ q·c.
int q8_dot32(Q8Block k, uint4 xa, uint4 xb) {
    return (dot4i8(k.q0.x, xa.x) + dot4i8(k.q0.y, xa.y)) + (dot4i8(k.q0.z, xa.z) + dot4i8(k.q0.w, xa.w))
        + (dot4i8(k.q1.x, xb.x) + dot4i8(k.q1.y, xb.y)) + (dot4i8(k.q1.z, xb.z) + dot4i8(k.q1.w, xb.w));
}

float dot_raw_q8(MatvecArgs m, Raw r, uint row, uint b, uint4 xa, uint4 xb, uint4 xa2, uint4 xb2, float d, float2 s) {
    Q8Block k = unpack_q8_0(r.a, r.c, r.e, (row * m.blocks + b) * 34u);
    int n = q8_dot32(k, xa, xb);
//#if INT8X2
    n = 254 * n + q8_dot32(k, xa2, xb2);
//#endif
    return k.d * d * X_LEVEL * float(n);
}

float block_dot(MatvecArgs m, uint row, uint b, thread const float4* xv) {
    return dot_raw(m, raw_load(m, row, b), row, b, xv);
}
