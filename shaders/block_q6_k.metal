// block_q6_k.metal — MSL twin of block_q6_k.wgsl: the matvec kernels' and the
// batched matmul's weights, row-major in GGUF Q6_K layout (quant::q6_k). A
// "block" here is a 32-element group g (m.blocks counts them); 8 make a
// super-block.
//
// A Q6_K super-block is 210 bytes: ql (128 bytes of low nibbles), qh (64
// bytes of top 2-bit pairs), 16 int8 group scales, f16 d. In half h = g/4,
// with k = g mod 4, element i of the group has its low four bits in byte
// 64h + 32(k mod 2) + i of ql (high nibble for k ≥ 2), its top bits at bit
// 2k of byte 32h + i of qh, and scale sc[8h + 2k + i/16]; value =
// d·sc·(q − 32). Super-block i starts at byte 210·i (even): each 32-byte
// run lies within three aligned words (bytes32), each scale pair and d
// within one. Period: LCM(210,16) = 1680 bytes = 8 super-blocks = 105 words.
// The helpers read m.w and m.blocks only (matmul.metal passes its own
// arguments as MatvecArgs).

// Defines block_vec4 (the batched matmul dequantizes through it).
//#define BLOCK_VEC4

struct KCodes6 {
    uint4 q[8]; // codes of elements 4k..4k+3 in q[k]
    float2 s;   // d·sc of elements 0..15 and 16..31
};

KCodes6 q6_k_codes(MatvecArgs m, uint row, uint b) {
    uint sb = (row * (m.blocks / 8u) + b / 8u) * 210u;
    uint h = (b & 7u) >> 2u;
    uint k = b & 3u;
    uint lo = sb + 64u * h + 32u * (k & 1u);
    uint li = lo >> 4u;
    Bytes32 l = bytes32(m.w[li], m.w[li + 1u], m.w[li + 2u], lo);
    uint ho = sb + 128u + 32u * h;
    uint hi = ho >> 4u;
    Bytes32 u = bytes32(m.w[hi], m.w[hi + 1u], m.w[hi + 2u], ho);
    uint so = sb + 192u + 8u * h + 2u * k;
    uint sw = pick(m.w[so >> 4u], (so >> 2u) & 3u) >> (8u * (so & 2u));
    uint dw = pick(m.w[(sb + 208u) >> 4u], ((sb + 208u) >> 2u) & 3u) >> (8u * ((sb + 208u) & 2u));
    float d = float(as_type<half2>(dw).x);
    KCodes6 c;
    uint nsh = 4u * (k >> 1u);
    for (uint i = 0u; i < 4u; i++) {
        c.q[i] = field4(pick(l.v[0], i), nsh, 15u) | (field4(pick(u.v[0], i), 2u * k, 3u) << uint4(4u));
        c.q[i + 4u] = field4(pick(l.v[1], i), nsh, 15u) | (field4(pick(u.v[1], i), 2u * k, 3u) << uint4(4u));
    }
    // The two int8 scales, sign-extended.
    float s0 = float(as_type<int>(sw << 24u) >> 24);
    float s1 = float(as_type<int>(sw << 16u) >> 24);
    c.s = float2(d * s0, d * s1);
    return c;
}

float block_dot(MatvecArgs m, uint row, uint b, thread const float4* xv) {
    KCodes6 c = q6_k_codes(m, row, b);
    float4 a0 = float4(0.0f);
    float4 a1 = float4(0.0f);
    for (uint k = 0u; k < 4u; k++) {
        a0 += (float4(c.q[k]) - 32.0f) * xv[k];
        a1 += (float4(c.q[k + 4u]) - 32.0f) * xv[k + 4u];
    }
    return c.s.x * ((a0.x + a0.y) + (a0.z + a0.w)) + c.s.y * ((a1.x + a1.y) + (a1.z + a1.w));
}

// Elements 4j..4j+3 (j < 8) of block b of `row`.
float4 block_vec4(MatvecArgs m, uint row, uint b, uint j) {
    KCodes6 c = q6_k_codes(m, row, b);
    return (j >= 4u ? c.s.y : c.s.x) * (float4(c.q[j]) - 32.0f);
}
