// block_q5_1.metal — MSL twin of block_q5_1.wgsl: the matvec kernels' and the
// batched matmul's weights, row-major in GGUF Q5_1 layout (quant::q5_1).
//
// A Q5_1 block is 24 bytes: f16 scale d, f16 minimum m, a word qh of fifth
// bits, 16 bytes of nibbles (as Q5_0); value = d·q + m. Block i starts at
// byte 24·i, at offset 0 or 8 in its word, so it lies within two aligned
// uint4 words, all its fields word-aligned. Period: LCM(24,16) = 48
// bytes = 2 blocks = 3 words. The helpers read m.w and m.blocks only
// (matmul.metal passes its own arguments as MatvecArgs).

// Defines block_vec4 (the batched matmul dequantizes through it).
//#define BLOCK_VEC4

struct Q5Codes {
    uint4 lo[4];
    uint4 hi[4];
    float d;
    float m;
};

Q5Codes q5_1_codes(MatvecArgs m, uint row, uint b) {
    uint o = (row * m.blocks + b) * 24u;
    uint i = o >> 4u;
    uint k = (o & 15u) >> 2u;
    uint4 c1 = m.w[i + 1u];
    uint4 r = window4(m.w[i], c1, k);
    // Words: d and m, qh, then the nibbles r.z, r.w and the two after them.
    uint4 qs = uint4(r.z, r.w, pick(c1, k), pick(c1, k + 1u));
    Q5Codes c;
    for (uint j = 0u; j < 4u; j++) {
        uint q = pick(qs, j);
        c.lo[j] = field4(q, 0u, 15u) | high4(r.y, 4u * j);
        c.hi[j] = field4(q, 4u, 15u) | high4(r.y, 16u + 4u * j);
    }
    float2 dm = float2(as_type<half2>(r.x));
    c.d = dm.x;
    c.m = dm.y;
    return c;
}

float block_dot(MatvecArgs m, uint row, uint b, thread const float4* xv) {
    Q5Codes c = q5_1_codes(m, row, b);
    float4 acc = float4(0.0f);
    float4 xs = float4(0.0f);
    for (uint k = 0u; k < 4u; k++) {
        acc += float4(c.lo[k]) * xv[k] + float4(c.hi[k]) * xv[k + 4u];
        xs += xv[k] + xv[k + 4u];
    }
    return c.d * ((acc.x + acc.y) + (acc.z + acc.w)) + c.m * ((xs.x + xs.y) + (xs.z + xs.w));
}

// Elements 4j..4j+3 (j < 8) of block b of `row`.
float4 block_vec4(MatvecArgs m, uint row, uint b, uint j) {
    Q5Codes c = q5_1_codes(m, row, b);
    uint4 q = j >= 4u ? c.hi[j & 3u] : c.lo[j & 3u];
    return c.d * float4(q) + c.m;
}
