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

//#define RAW

// Sub-block b's words: the super-block's first word and its two nibble words.
struct Raw {
    uint4 h;
    uint4 a;
    uint4 c;
};

Raw raw_load(MatvecArgs m, uint row, uint b) {
    uint base = (row * (m.blocks / 8u) + b / 8u) * 9u;
    uint q = base + 1u + 2u * ((b & 7u) >> 1u);
    return Raw{m.w[base], m.w[q], m.w[q + 1u]};
}

// Codes and the dots on them (block_codes.wgsl comes at the end of the WGSL
// file; MSL needs Codes declared before codes, which block_codes declares).
//#include block_codes

Codes codes(MatvecArgs m, Raw r, uint row, uint b) {
    uint j = b & 7u;
    uint sh = 4u * (j & 1u);
    uint4 m4 = uint4(0x0F0F0F0Fu);
    uint4 lo = (r.a >> uint4(sh)) & m4;
    uint4 hi = (r.c >> uint4(sh)) & m4;
    Codes c;
    c.p[0] = lo.x; c.p[1] = lo.y; c.p[2] = lo.z; c.p[3] = lo.w;
    c.p[4] = hi.x; c.p[5] = hi.y; c.p[6] = hi.z; c.p[7] = hi.w;
    float2 sm = kq_scale_min(r.h, j);
    c.s = float2(sm.x);
    c.m = float2(-sm.y);
    return c;
}
