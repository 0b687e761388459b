// block_q6_k.metal — MSL twin of block_q6_k.wgsl: Q6_K weights (quant::q6_k)
// in the GPU layout GpuMatrix::upload gives them (quant::q6_k::gpu_layout),
// for the matvec kernels and the batched matmul. A "block" here is a
// 32-element group g (m.blocks counts them); 8 make a super-block.
//
// Periods of 8 super-blocks (LCM(210,16) = 1680 bytes = 105 words): 8
// bodies of 13 words, then the 8 f16 d's in one word. In body word g (g <
// 8) are group g's low nibbles (byte i: element i low, element 16 + i high);
// in words 8..11 its top two bits, 8 bytes at byte 8g (element 4k + i, k <
// 4, i < 4, at bit 4, 6, 2, 0 for k = 0..3 of byte i; elements 16.. in bytes
// 4..7); word 12 holds the 16 int8 scales as stored (group g's at bytes 2g,
// 2g+1). Value = d·sc·(q − 32). Four aligned loads per group. The helpers
// read m.w and m.blocks only (matmul.metal passes its own arguments as
// MatvecArgs).

//#define RAW

// Group b's words: its nibbles, its top bits, its two scales in the low
// half of sc, and d.
struct Raw {
    uint4 q;
    uint2 t;
    uint sc;
    float d;
};

Raw raw_load(MatvecArgs m, uint row, uint b) {
    // The group's super-block, counted over the whole matrix.
    uint s = row * (m.blocks / 8u) + b / 8u;
    uint g = b & 7u;
    uint period = (s >> 3u) * 105u;
    uint body = period + (s & 7u) * 13u;
    uint4 t = m.w[body + 8u + (g >> 1u)];
    bool odd = (g & 1u) != 0u;
    uint sc = pick(m.w[body + 12u], g >> 1u) >> (16u * (g & 1u));
    float d = float(as_type<half2>(pick(m.w[period + 104u], (s & 7u) >> 1u) >> (16u * (s & 1u))).x);
    return Raw{m.w[body + g], uint2(odd ? t.z : t.x, odd ? t.w : t.y), sc, d};
}

// Codes and the dots on them (block_codes.wgsl comes at the end of the WGSL
// file; MSL needs Codes declared before codes, which block_codes declares).
//#include block_codes

Codes codes(MatvecArgs m, Raw r, uint row, uint b) {
    uint4 m4 = uint4(0x0F0F0F0Fu);
    uint4 m30 = uint4(0x30303030u);
    uint4 up = uint4(0u, 0u, 2u, 4u);
    uint4 down = uint4(0u, 2u, 0u, 0u);
    uint4 lo = (r.q & m4) | (((uint4(r.t.x) << up) >> down) & m30);
    uint4 hi = ((r.q >> uint4(4u)) & m4) | (((uint4(r.t.y) << up) >> down) & m30);
    Codes c;
    c.p[0] = lo.x; c.p[1] = lo.y; c.p[2] = lo.z; c.p[3] = lo.w;
    c.p[4] = hi.x; c.p[5] = hi.y; c.p[6] = hi.z; c.p[7] = hi.w;
    // The two int8 scales (the halves' groups of 16), sign-extended, times d.
    uint sw = r.sc;
    c.s = r.d * float2(float(as_type<int>(sw << 24u) >> 24), float(as_type<int>(sw << 16u) >> 24));
    c.m = -32.0f * c.s;
    return c;
}
