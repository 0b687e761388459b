// block_q6_k.wgsl — weights in GGUF Q6_K layout (quant::q6_k), for the
// matvec kernels and the batched matmul. A "block" here is a 32-element
// group g (p.blocks counts them); 8 make a super-block.
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

//#define RAW

// Group b's words: three around its 32 low-nibble bytes, three around its
// 32 qh bytes, the word holding its two scales and the one holding d.
struct Raw {
    l0: vec4<u32>,
    l1: vec4<u32>,
    l2: vec4<u32>,
    u0: vec4<u32>,
    u1: vec4<u32>,
    u2: vec4<u32>,
    sc: u32,
    d: u32,
}

// Byte offsets of group b's low nibbles, qh bytes, scales and d.
fn q6_k_offsets(row: u32, b: u32) -> vec4<u32> {
    let sb = (row * (p.blocks / 8u) + b / 8u) * 210u;
    let h = (b & 7u) >> 2u;
    let k = b & 3u;
    return vec4<u32>(sb + 64u * h + 32u * (k & 1u), sb + 128u + 32u * h, sb + 192u + 8u * h + 2u * k, sb + 208u);
}

fn raw_load(row: u32, b: u32) -> Raw {
    let o = q6_k_offsets(row, b);
    let li = o.x >> 4u;
    let ui = o.y >> 4u;
    return Raw(w[li], w[li + 1u], w[li + 2u], w[ui], w[ui + 1u], w[ui + 2u],
        pick(w[o.z >> 4u], (o.z >> 2u) & 3u), pick(w[o.w >> 4u], (o.w >> 2u) & 3u));
}

fn codes(r: Raw, row: u32, b: u32) -> Codes {
    let o = q6_k_offsets(row, b);
    let l = bytes32(r.l0, r.l1, r.l2, o.x);
    let u = bytes32(r.u0, r.u1, r.u2, o.y);
    let k = b & 3u;
    let nsh = vec4<u32>(4u * (k >> 1u));
    let m4 = vec4<u32>(0x0F0F0F0Fu);
    let m2 = vec4<u32>(0x03030303u);
    let lo = ((l[0] >> nsh) & m4) | (((u[0] >> vec4<u32>(2u * k)) & m2) << vec4<u32>(4u));
    let hi = ((l[1] >> nsh) & m4) | (((u[1] >> vec4<u32>(2u * k)) & m2) << vec4<u32>(4u));
    var c: Codes;
    c.p = array<u32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
    // The two int8 scales (the halves' groups of 16), sign-extended, times d.
    let sw = r.sc >> (8u * (o.z & 2u));
    let d = unpack2x16float(r.d >> (8u * (o.w & 2u))).x;
    c.s = d * vec2<f32>(f32(bitcast<i32>(sw << 24u) >> 24u), f32(bitcast<i32>(sw << 16u) >> 24u));
    c.m = -32.0 * c.s;
    return c;
}

//#include block_codes
