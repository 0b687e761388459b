// block_q5_1.metal — MSL twin of block_q5_1.wgsl: the matvec kernels' and the
// batched matmul's weights, row-major in GGUF Q5_1 layout (quant::q5_1).
//
// A Q5_1 block is 24 bytes: f16 scale d, f16 minimum m, a word qh of fifth
// bits, 16 bytes of nibbles (as Q5_0); value = d·q + m. Block i starts at
// byte 24·i, at offset 0 or 8 in its word, so it lies within two aligned
// uint4 words, all its fields word-aligned. Period: LCM(24,16) = 48
// bytes = 2 blocks = 3 words. The helpers read m.w and m.blocks only
// (matmul.metal passes its own arguments as MatvecArgs).

//#define RAW

struct Raw {
    uint4 a;
    uint4 c;
};

Raw raw_load(MatvecArgs m, uint row, uint b) {
    uint i = (row * m.blocks + b) * 24u >> 4u;
    return Raw{m.w[i], m.w[i + 1u]};
}

// Codes and the dots on them (block_codes.wgsl comes at the end of the WGSL
// file; MSL needs Codes declared before codes, which block_codes declares).
//#include block_codes

Codes codes(MatvecArgs m, Raw r, uint row, uint b) {
    uint k = (((row * m.blocks + b) * 24u) & 15u) >> 2u;
    uint4 v = window4(r.a, r.c, k);
    // Words: d and m, qh, then the nibbles v.z, v.w and the two after them.
    uint4 qs = uint4(v.z, v.w, pick(r.c, k), pick(r.c, k + 1u));
    Codes c;
    for (uint j = 0u; j < 4u; j++) {
        uint q = pick(qs, j);
        c.p[j] = (q & 0x0F0F0F0Fu) | spread16(v.y >> (4u * j));
        c.p[j + 4u] = ((q >> 4u) & 0x0F0F0F0Fu) | spread16(v.y >> (16u + 4u * j));
    }
    float2 dm = float2(as_type<half2>(v.x));
    c.s = float2(dm.x);
    c.m = float2(dm.y);
    return c;
}
