// block_q4_k.wgsl — weights in GGUF Q4_K layout (quant::q4_k), for the
// matvec kernels and the batched matmul. A "block" here is a 32-element
// sub-block (p.blocks counts them); 8 make a super-block.
//
// A Q4_K super-block is 144 bytes = 9 aligned words, so every super-block
// starts on a word: word 0 holds d, dmin and the 12 bytes of 6-bit scales
// and mins (kq_scale_min), words 1..8 the nibbles: sub-blocks 2c and 2c + 1
// are the low and high nibbles of the 32 bytes in words 1 + 2c, 2 + 2c.
// Value = d·sc·q − dmin·m. Period: 144 bytes = 9 words.

//#define RAW

// Sub-block b's words: the super-block's first word and its two nibble words.
struct Raw {
    h: vec4<u32>,
    a: vec4<u32>,
    c: vec4<u32>,
}

fn raw_load(row: u32, b: u32) -> Raw {
    let base = (row * (p.blocks / 8u) + b / 8u) * 9u;
    let q = base + 1u + 2u * ((b & 7u) >> 1u);
    return Raw(w[base], w[q], w[q + 1u]);
}

fn codes(r: Raw, row: u32, b: u32) -> Codes {
    let j = b & 7u;
    let sh = 4u * (j & 1u);
    let m4 = vec4<u32>(0x0F0F0F0Fu);
    let lo = (r.a >> vec4<u32>(sh)) & m4;
    let hi = (r.c >> vec4<u32>(sh)) & m4;
    var c: Codes;
    c.p = array<u32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
    let sm = kq_scale_min(r.h, j);
    c.s = vec2<f32>(sm.x);
    c.m = vec2<f32>(-sm.y);
    return c;
}

//#include block_codes
