// matvec_q4_0.metal — MSL twin of matvec_q4_0.wgsl: y = W·x, W row-major in
// GGUF Q4_0 layout (quant::q4_0).
//
// A Q4_0 block is 18 bytes: f16 scale d, then 16 bytes of nibbles; element j
// is the low nibble of byte j, element j+16 the high nibble; value = d·(q−8).
// Block i starts at byte 18·i (even), so its 18 bytes lie within the two
// aligned 16-byte words starting at word ⌊18i/16⌋ (offset s = 18i mod 16 ≤ 14,
// s + 18 ≤ 32): every block is read with two aligned uint4 loads.

//#include matvec

// u32 number i (0..8) of the 32 bytes a ++ b.
uint word8(uint4 a, uint4 b, uint i) {
    return select(b[i & 3u], a[i & 3u], i < 4u);
}

// 4 bytes starting at byte 4k+h of a ++ b, for h ∈ {0, 2}.
uint bytes4(uint4 a, uint4 b, uint k, uint h) {
    uint lo = word8(a, b, k);
    if (h == 0u) {
        return lo;
    }
    return (lo >> 16u) | (word8(a, b, k + 1u) << 16u);
}

float block_dot(MatvecArgs m, uint row, uint b, thread const float4* xv) {
    uint o = (row * m.blocks + b) * 18u;
    uint4 a = m.w[o >> 4u];
    uint4 c = m.w[(o >> 4u) + 1u];
    uint s = o & 15u;
    uint dw = word8(a, c, s >> 2u);
    float d = float(as_type<half2>(select(dw, dw >> 16u, (s & 2u) != 0u)).x);
    uint t = s + 2u; // first nibble byte
    float sum = 0.0f;
    float4 xsum = float4(0.0f);
    for (uint j = 0u; j < 4u; j++) {
        uint q = bytes4(a, c, (t >> 2u) + j, t & 3u);
        float4 lo = float4(uint4(q, q >> 8u, q >> 16u, q >> 24u) & uint4(15u));
        float4 hi = float4(uint4(q >> 4u, q >> 12u, q >> 20u, q >> 28u) & uint4(15u));
        float4 xa = xv[j];
        float4 xc = xv[4u + j];
        sum += dot(lo, xa) + dot(hi, xc);
        xsum += xa + xc;
    }
    return d * (sum - 8.0f * (xsum.x + xsum.y + xsum.z + xsum.w));
}
