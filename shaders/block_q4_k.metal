// block_q4_k.metal — MSL twin of block_q4_k.wgsl: the matvec kernels' and the
// batched matmul's weights, row-major in GGUF Q4_K layout (quant::q4_k). A
// "block" here is a 32-element sub-block (m.blocks counts them); 8 make a
// super-block.
//
// A Q4_K super-block is 144 bytes = 9 aligned words, so every super-block
// starts on a word: word 0 holds d, dmin and the 12 bytes of 6-bit scales
// and mins (kq_scale_min), words 1..8 the nibbles: sub-blocks 2c and 2c + 1
// are the low and high nibbles of the 32 bytes in words 1 + 2c, 2 + 2c.
// Value = d·sc·q − dmin·m. Period: 144 bytes = 9 words. The helpers read
// m.w and m.blocks only (matmul.metal passes its own arguments as
// MatvecArgs).

// Defines block_vec4 (the batched matmul dequantizes through it).
//#define BLOCK_VEC4

struct KCodes {
    uint4 q[8]; // codes of elements 4k..4k+3 in q[k]
    float2 sm;  // (d·sc, dmin·m)
};

KCodes q4_k_codes(MatvecArgs m, uint row, uint b) {
    uint base = (row * (m.blocks / 8u) + b / 8u) * 9u;
    uint j = b & 7u;
    uint sh = 4u * (j & 1u);
    uint4 q0 = m.w[base + 1u + 2u * (j >> 1u)];
    uint4 q1 = m.w[base + 2u + 2u * (j >> 1u)];
    KCodes c;
    for (uint k = 0u; k < 4u; k++) {
        c.q[k] = field4(pick(q0, k), sh, 15u);
        c.q[k + 4u] = field4(pick(q1, k), sh, 15u);
    }
    c.sm = kq_scale_min(m.w[base], j);
    return c;
}

float block_dot(MatvecArgs m, uint row, uint b, thread const float4* xv) {
    KCodes c = q4_k_codes(m, row, b);
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
    KCodes c = q4_k_codes(m, row, b);
    return c.sm.x * float4(c.q[j]) - c.sm.y;
}
