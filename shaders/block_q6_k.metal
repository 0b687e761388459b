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
// run lies within three aligned words (bytes32; the third may lie past the
// matrix, covered by its zero tail), each scale pair and d within one
// word. Period: LCM(210,16) = 1680 bytes = 8 super-blocks = 105 words.
// The helpers read m.w and m.blocks only (matmul.metal passes its own
// arguments as MatvecArgs).

//#define RAW

// Group b's words: three around its 32 low-nibble bytes, three around its
// 32 qh bytes, the word holding its two scales and the one holding d.
struct Raw {
    uint4 l0;
    uint4 l1;
    uint4 l2;
    uint4 u0;
    uint4 u1;
    uint4 u2;
    uint sc;
    uint d;
};

// Byte offsets of group b's low nibbles, qh bytes, scales and d.
uint4 q6_k_offsets(MatvecArgs m, uint row, uint b) {
    uint sb = (row * (m.blocks / 8u) + b / 8u) * 210u;
    uint h = (b & 7u) >> 2u;
    uint k = b & 3u;
    return uint4(sb + 64u * h + 32u * (k & 1u), sb + 128u + 32u * h, sb + 192u + 8u * h + 2u * k, sb + 208u);
}

Raw raw_load(MatvecArgs m, uint row, uint b) {
    uint4 o = q6_k_offsets(m, row, b);
    uint li = o.x >> 4u;
    uint ui = o.y >> 4u;
    return Raw{m.w[li], m.w[li + 1u], m.w[li + 2u], m.w[ui], m.w[ui + 1u], m.w[ui + 2u],
        pick(m.w[o.z >> 4u], (o.z >> 2u) & 3u), pick(m.w[o.w >> 4u], (o.w >> 2u) & 3u)};
}

// Codes and the dots on them (block_codes.wgsl comes at the end of the WGSL
// file; MSL needs Codes declared before codes, which block_codes declares).
//#include block_codes

Codes codes(MatvecArgs m, Raw r, uint row, uint b) {
    uint4 o = q6_k_offsets(m, row, b);
    Bytes32 l = bytes32(r.l0, r.l1, r.l2, o.x);
    Bytes32 u = bytes32(r.u0, r.u1, r.u2, o.y);
    uint k = b & 3u;
    uint4 nsh = uint4(4u * (k >> 1u));
    uint4 m4 = uint4(0x0F0F0F0Fu);
    uint4 m2 = uint4(0x03030303u);
    uint4 lo = ((l.v[0] >> nsh) & m4) | (((u.v[0] >> uint4(2u * k)) & m2) << uint4(4u));
    uint4 hi = ((l.v[1] >> nsh) & m4) | (((u.v[1] >> uint4(2u * k)) & m2) << uint4(4u));
    Codes c;
    c.p[0] = lo.x; c.p[1] = lo.y; c.p[2] = lo.z; c.p[3] = lo.w;
    c.p[4] = hi.x; c.p[5] = hi.y; c.p[6] = hi.z; c.p[7] = hi.w;
    // The two int8 scales (the halves' groups of 16), sign-extended, times d.
    uint sw = r.sc >> (8u * (o.z & 2u));
    float d = float(as_type<half2>(r.d >> (8u * (o.w & 2u))).x);
    c.s = d * float2(float(as_type<int>(sw << 24u) >> 24), float(as_type<int>(sw << 16u) >> 24));
    c.m = -32.0f * c.s;
    return c;
}
