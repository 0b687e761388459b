// matvec_q4_1.metal — MSL twin of matvec_q4_1.wgsl: y = W·x, W row-major in
// GGUF Q4_1 layout (quant::q4_1).
//
// A Q4_1 block is 20 bytes: f16 scale d, f16 minimum m, 16 bytes of nibbles
// (element j low nibble of byte j, j+16 high nibble); value = d·q + m.
// Block i starts at byte 20·i, a multiple of 4, at offset s = 20i mod 16 ≤ 12
// in its word, so it lies within two aligned uint4 words.

//#include matvec

// u32 number i (0..8) of the 32 bytes a ++ b.
uint word8(uint4 a, uint4 b, uint i) {
    return select(b[i & 3u], a[i & 3u], i < 4u);
}

float block_dot(MatvecArgs m, uint row, uint b, thread const float4* xv) {
    uint o = (row * m.blocks + b) * 20u;
    uint4 a = m.w[o >> 4u];
    uint4 c = m.w[(o >> 4u) + 1u];
    uint k = (o & 15u) >> 2u;
    float2 dm = float2(as_type<half2>(word8(a, c, k)));
    float sum = 0.0f;
    float4 xsum = float4(0.0f);
    for (uint j = 0u; j < 4u; j++) {
        uint q = word8(a, c, k + 1u + j);
        float4 lo = float4(uint4(q, q >> 8u, q >> 16u, q >> 24u) & uint4(15u));
        float4 hi = float4(uint4(q >> 4u, q >> 12u, q >> 20u, q >> 28u) & uint4(15u));
        float4 xa = xv[j];
        float4 xc = xv[4u + j];
        sum += dot(lo, xa) + dot(hi, xc);
        xsum += xa + xc;
    }
    return dm.x * sum + dm.y * (xsum.x + xsum.y + xsum.z + xsum.w);
}
