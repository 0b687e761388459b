// block_q6_k.wgsl — Q6_K weights (quant::q6_k) in the GPU layout
// GpuMatrix::upload gives them (quant::q6_k::gpu_layout), for the matvec
// kernels and the batched matmul. A "block" here is a 32-element group g
// (p.blocks counts them); 8 make a super-block.
//
// GGUF's 210-byte super-block spreads a group's bits over two unaligned
// 32-byte runs (shared with other groups) plus its scales and d: eight
// aligned loads and a byte shuffle per group. The GPU layout keeps the same
// bytes in periods of 8 super-blocks (LCM(210,16) = 1680 bytes = 105
// words): 8 bodies of 13 words, then the 8 f16 d's in one word. In body
// word g (g < 8) are group g's low nibbles (byte i: element i low, element
// 16 + i high); in words 8..11 its top two bits, 8 bytes at byte 8g (element
// 4k + i, k < 4, i < 4, at bit 4, 6, 2, 0 for k = 0..3 of byte i, one shift
// from bits 4..5; elements 16.. in bytes 4..7); word 12 holds the 16 int8
// scales as stored (group g's at bytes 2g, 2g+1). Value = d·sc·(q − 32).
// Four aligned loads per group.

//#define RAW

// Group b's words: its nibbles, its top bits, its two scales in the low
// half of sc, and d.
struct Raw {
    q: vec4<u32>,
    t: vec2<u32>,
    sc: u32,
    d: f32,
}

fn raw_load(row: u32, b: u32) -> Raw {
    // The group's super-block, counted over the whole matrix.
    let s = row * (p.blocks / 8u) + b / 8u;
    let g = b & 7u;
    let period = (s >> 3u) * 105u;
    let body = period + (s & 7u) * 13u;
    let t = w[body + 8u + (g >> 1u)];
    let sc = pick(w[body + 12u], g >> 1u) >> (16u * (g & 1u));
    let d = unpack2x16float(pick(w[period + 104u], (s & 7u) >> 1u) >> (16u * (s & 1u))).x;
    return Raw(w[body + g], select(vec2<u32>(t.x, t.y), vec2<u32>(t.z, t.w), (g & 1u) != 0u), sc, d);
}

fn codes(r: Raw, row: u32, b: u32) -> Codes {
    let m4 = vec4<u32>(0x0F0F0F0Fu);
    let m30 = vec4<u32>(0x30303030u);
    let up = vec4<u32>(0u, 0u, 2u, 4u);
    let down = vec4<u32>(0u, 2u, 0u, 0u);
    let lo = (r.q & m4) | (((vec4<u32>(r.t.x) << up) >> down) & m30);
    let hi = ((r.q >> vec4<u32>(4u)) & m4) | (((vec4<u32>(r.t.y) << up) >> down) & m30);
    var c: Codes;
    c.p = array<u32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
    // The two int8 scales (the halves' groups of 16), sign-extended, times d.
    let sw = r.sc;
    c.s = r.d * vec2<f32>(f32(bitcast<i32>(sw << 24u) >> 24u), f32(bitcast<i32>(sw << 16u) >> 24u));
    c.m = -32.0 * c.s;
    return c;
}

//#include block_codes
