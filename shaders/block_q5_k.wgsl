// block_q5_k.wgsl — weights in GGUF Q5_K layout (quant::q5_k), for the
// matvec kernels and the batched matmul. A "block" here is a 32-element
// sub-block (p.blocks counts them); 8 make a super-block.
//
// A Q5_K super-block is 176 bytes = 11 aligned words: word 0 as Q4_K's
// (d, dmin, 6-bit scales and mins), words 1..2 the fifth bits (element i of
// sub-block j: bit j of byte i), words 3..10 the low nibbles laid out as
// Q4_K's words 1..8. Value = d·sc·q − dmin·m. Period: 176 bytes = 11 words.

//#define RAW

// Sub-block b's words: the super-block's first word, its two words of fifth
// bits and its two nibble words.
struct Raw {
    h: vec4<u32>,
    u0: vec4<u32>,
    u1: vec4<u32>,
    a: vec4<u32>,
    c: vec4<u32>,
}

fn raw_load(row: u32, b: u32) -> Raw {
    let base = (row * (p.blocks / 8u) + b / 8u) * 11u;
    let q = base + 3u + 2u * ((b & 7u) >> 1u);
    return Raw(w[base], w[base + 1u], w[base + 2u], w[q], w[q + 1u]);
}

fn codes(r: Raw, row: u32, b: u32) -> Codes {
    let j = b & 7u;
    let sh = 4u * (j & 1u);
    let m4 = vec4<u32>(0x0F0F0F0Fu);
    let m1 = vec4<u32>(0x01010101u);
    let lo = ((r.a >> vec4<u32>(sh)) & m4) | (((r.u0 >> vec4<u32>(j)) & m1) << vec4<u32>(4u));
    let hi = ((r.c >> vec4<u32>(sh)) & m4) | (((r.u1 >> vec4<u32>(j)) & m1) << vec4<u32>(4u));
    var c: Codes;
    c.p = array<u32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
    let sm = kq_scale_min(r.h, j);
    c.s = vec2<f32>(sm.x);
    c.m = vec2<f32>(-sm.y);
    return c;
}

//#include block_codes
