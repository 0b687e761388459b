// matvec_q8_0.metal — MSL twin of matvec_q8_0.wgsl: y = W·x, W row-major in
// GGUF Q8_0 layout (quant::q8_0).
//
// A Q8_0 block is 34 bytes: f16 scale d, then 32 signed bytes; value = d·q.
// Block i starts at byte 34·i (even), at offset s = 34i mod 16 ≤ 14 in its
// word, so it lies within three aligned uint4 words (s + 34 ≤ 48).

//#include matvec

// u32 number i (0..12) of the 48 bytes a ++ b ++ c.
uint word12(uint4 a, uint4 b, uint4 c, uint i) {
    return select(select(c[i & 3u], b[i & 3u], i < 8u), a[i & 3u], i < 4u);
}

// Four signed bytes of q unpacked to floats.
float4 i8x4(uint q) {
    return float4(int4(as_type<int>(q << 24u), as_type<int>(q << 16u), as_type<int>(q << 8u), as_type<int>(q)) >> int4(24));
}

float block_dot(MatvecArgs m, uint row, uint b, thread const float4* xv) {
    uint o = (row * m.blocks + b) * 34u;
    uint4 a = m.w[o >> 4u];
    uint4 c = m.w[(o >> 4u) + 1u];
    uint4 e = m.w[(o >> 4u) + 2u];
    uint s = o & 15u;
    uint dw = word12(a, c, e, s >> 2u);
    float d = float(as_type<half2>(select(dw, dw >> 16u, (s & 2u) != 0u)).x);
    uint t = s + 2u; // first quant byte
    uint k = t >> 2u;
    bool h = (t & 2u) != 0u;
    float sum = 0.0f;
    for (uint j = 0u; j < 8u; j++) {
        uint q = word12(a, c, e, k + j);
        if (h) {
            q = (q >> 16u) | (word12(a, c, e, k + j + 1u) << 16u);
        }
        sum += dot(i8x4(q), xv[j]);
    }
    return d * sum;
}
