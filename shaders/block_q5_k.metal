// block_q5_k.metal — MSL twin of block_q5_k.wgsl: the matvec kernels' and the
// batched matmul's weights, row-major in GGUF Q5_K layout (quant::q5_k). A
// "block" here is a 32-element sub-block (m.blocks counts them); 8 make a
// super-block.
//
// A Q5_K super-block is 176 bytes = 11 aligned words: word 0 as Q4_K's
// (d, dmin, 6-bit scales and mins), words 1..2 the fifth bits (element i of
// sub-block j: bit j of byte i), words 3..10 the low nibbles laid out as
// Q4_K's words 1..8. Value = d·sc·q − dmin·m. Period: 176 bytes = 11 words.
// The helpers read m.w and m.blocks only (matmul.metal passes its own
// arguments as MatvecArgs).

// Defines block_vec4 (the batched matmul dequantizes through it).
//#define BLOCK_VEC4

struct KCodes {
    uint4 q[8]; // codes of elements 4k..4k+3 in q[k]
    float2 sm;  // (d·sc, dmin·m)
};

KCodes q5_k_codes(MatvecArgs m, uint row, uint b) {
    uint base = (row * (m.blocks / 8u) + b / 8u) * 11u;
    uint j = b & 7u;
    uint sh = 4u * (j & 1u);
    uint4 h0 = m.w[base + 1u];
    uint4 h1 = m.w[base + 2u];
    uint4 q0 = m.w[base + 3u + 2u * (j >> 1u)];
    uint4 q1 = m.w[base + 4u + 2u * (j >> 1u)];
    KCodes c;
    for (uint k = 0u; k < 4u; k++) {
        c.q[k] = field4(pick(q0, k), sh, 15u) | (field4(pick(h0, k), j, 1u) << uint4(4u));
        c.q[k + 4u] = field4(pick(q1, k), sh, 15u) | (field4(pick(h1, k), j, 1u) << uint4(4u));
    }
    c.sm = kq_scale_min(m.w[base], j);
    return c;
}

float block_dot(MatvecArgs m, uint row, uint b, thread const float4* xv) {
    KCodes c = q5_k_codes(m, row, b);
    float4 acc = float4(0.0f);
    float4 xs = float4(0.0f);
    for (uint k = 0u; k < 8u; k++) {
        acc += float4(c.q[k]) * xv[k];
        xs += xv[k];
    }
    return c.sm.x * ((acc.x + acc.y) + (acc.z + acc.w)) - c.sm.y * ((xs.x + xs.y) + (xs.z + xs.w));
}

// Elements 4j..4j+3 (j < 8) of block b of `row`.
float4 block_vec4(MatvecArgs m, uint row, uint b, uint j) {
    KCodes c = q5_k_codes(m, row, b);
    return c.sm.x * float4(c.q[j]) - c.sm.y;
}
