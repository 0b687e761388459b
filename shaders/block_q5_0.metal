// block_q5_0.metal — MSL twin of block_q5_0.wgsl: the matvec kernels' and the
// batched matmul's weights, row-major in GGUF Q5_0 layout (quant::q5_0).
//
// A Q5_0 block is 22 bytes: f16 scale d, a word qh of fifth bits (bit j for
// element j), 16 bytes of nibbles (element j low nibble of byte j, j + 16 the
// high nibble); value = d·(q − 16). Block i starts at byte 22·i (even), at
// offset s ≤ 14 in its word, so it lies within three aligned uint4 words
// (s + 22 ≤ 36). Period: LCM(22,16) = 176 bytes = 8 blocks = 11 words.
// The helpers read m.w and m.blocks only (matmul.metal passes its own
// arguments as MatvecArgs).

// Defines block_vec4 (the batched matmul dequantizes through it).
//#define BLOCK_VEC4

// The block's 5-bit codes of elements 4k..4k+3 (lo) and 16+4k..16+4k+3 (hi).
struct Q5Codes {
    uint4 lo[4];
    uint4 hi[4];
    float d;
};

Q5Codes q5_0_codes(MatvecArgs m, uint row, uint b) {
    uint o = (row * m.blocks + b) * 22u;
    uint i = o >> 4u;
    Bytes32 t = bytes32(m.w[i], m.w[i + 1u], m.w[i + 2u], o);
    // Bytes: d at 0..1, qh at 2..5, nibbles at 6..21.
    uint qh = (t.v[0].x >> 16u) | (t.v[0].y << 16u);
    uint4 qs = uint4((t.v[0].y >> 16u) | (t.v[0].z << 16u), (t.v[0].z >> 16u) | (t.v[0].w << 16u),
        (t.v[0].w >> 16u) | (t.v[1].x << 16u), (t.v[1].x >> 16u) | (t.v[1].y << 16u));
    Q5Codes c;
    for (uint k = 0u; k < 4u; k++) {
        uint q = pick(qs, k);
        c.lo[k] = field4(q, 0u, 15u) | high4(qh, 4u * k);
        c.hi[k] = field4(q, 4u, 15u) | high4(qh, 16u + 4u * k);
    }
    c.d = float(as_type<half2>(t.v[0].x).x);
    return c;
}

float block_dot(MatvecArgs m, uint row, uint b, thread const float4* xv) {
    Q5Codes c = q5_0_codes(m, row, b);
    float4 acc = float4(0.0f);
    for (uint k = 0u; k < 4u; k++) {
        acc += (float4(c.lo[k]) - 16.0f) * xv[k] + (float4(c.hi[k]) - 16.0f) * xv[k + 4u];
    }
    return c.d * ((acc.x + acc.y) + (acc.z + acc.w));
}

// Elements 4j..4j+3 (j < 8) of block b of `row`.
float4 block_vec4(MatvecArgs m, uint row, uint b, uint j) {
    Q5Codes c = q5_0_codes(m, row, b);
    uint4 q = j >= 4u ? c.hi[j & 3u] : c.lo[j & 3u];
    return c.d * (float4(q) - 16.0f);
}
