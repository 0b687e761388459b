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

//#define RAW

// Sub-block b's words: the super-block's first word, its two words of fifth
// bits and its two nibble words.
struct Raw {
    uint4 h;
    uint4 u0;
    uint4 u1;
    uint4 a;
    uint4 c;
};

Raw raw_load(MatvecArgs m, uint row, uint b) {
    uint base = (row * (m.blocks / 8u) + b / 8u) * 11u;
    uint q = base + 3u + 2u * ((b & 7u) >> 1u);
    return Raw{m.w[base], m.w[base + 1u], m.w[base + 2u], m.w[q], m.w[q + 1u]};
}

// Codes and the dots on them (block_codes.wgsl comes at the end of the WGSL
// file; MSL needs Codes declared before codes, which block_codes declares).
//#include block_codes

Codes codes(MatvecArgs m, Raw r, uint row, uint b) {
    uint j = b & 7u;
    uint sh = 4u * (j & 1u);
    uint4 m4 = uint4(0x0F0F0F0Fu);
    uint4 m1 = uint4(0x01010101u);
    uint4 lo = ((r.a >> uint4(sh)) & m4) | (((r.u0 >> uint4(j)) & m1) << uint4(4u));
    uint4 hi = ((r.c >> uint4(sh)) & m4) | (((r.u1 >> uint4(j)) & m1) << uint4(4u));
    Codes c;
    c.p[0] = lo.x; c.p[1] = lo.y; c.p[2] = lo.z; c.p[3] = lo.w;
    c.p[4] = hi.x; c.p[5] = hi.y; c.p[6] = hi.z; c.p[7] = hi.w;
    float2 sm = kq_scale_min(r.h, j);
    c.s = float2(sm.x);
    c.m = float2(-sm.y);
    return c;
}
