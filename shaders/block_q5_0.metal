// block_q5_0.metal — MSL twin of block_q5_0.wgsl: the matvec kernels' and the
// batched matmul's weights, row-major in GGUF Q5_0 layout (quant::q5_0).
//
// A Q5_0 block is 22 bytes: f16 scale d, a word qh of fifth bits (bit j for
// element j), 16 bytes of nibbles (element j low nibble of byte j, j + 16 the
// high nibble); value = d·(q − 16). Block i starts at byte 22·i (even), at
// offset s ≤ 14 in its word, so it lies within three aligned uint4 words
// (s + 22 ≤ 36; the third may lie past the block, which the matrix's zero
// tail covers). Period: LCM(22,16) = 176 bytes = 8 blocks = 11 words.
// The helpers read m.w and m.blocks only (matmul.metal passes its own
// arguments as MatvecArgs).

//#define RAW

struct Raw {
    uint4 a;
    uint4 c;
    uint4 e;
};

Raw raw_load(MatvecArgs m, uint row, uint b) {
    uint i = (row * m.blocks + b) * 22u >> 4u;
    return Raw{m.w[i], m.w[i + 1u], m.w[i + 2u]};
}

// Codes and the dots on them (block_codes.wgsl comes at the end of the WGSL
// file; MSL needs Codes declared before codes, which block_codes declares).
//#include block_codes

Codes codes(MatvecArgs m, Raw r, uint row, uint b) {
    Bytes32 t = bytes32(r.a, r.c, r.e, (row * m.blocks + b) * 22u);
    // Bytes: d at 0..1, qh at 2..5, nibbles at 6..21.
    uint qh = (t.v[0].x >> 16u) | (t.v[0].y << 16u);
    uint4 qs = uint4((t.v[0].y >> 16u) | (t.v[0].z << 16u), (t.v[0].z >> 16u) | (t.v[0].w << 16u),
        (t.v[0].w >> 16u) | (t.v[1].x << 16u), (t.v[1].x >> 16u) | (t.v[1].y << 16u));
    Codes c;
    for (uint k = 0u; k < 4u; k++) {
        uint q = pick(qs, k);
        c.p[k] = (q & 0x0F0F0F0Fu) | spread16(qh >> (4u * k));
        c.p[k + 4u] = ((q >> 4u) & 0x0F0F0F0Fu) | spread16(qh >> (16u + 4u * k));
    }
    float d = float(as_type<half2>(t.v[0].x).x);
    c.s = float2(d);
    c.m = float2(-16.0f * d);
    return c;
}
