// block_q5_1.wgsl — weights in GGUF Q5_1 layout (quant::q5_1), for the
// matvec kernels and the batched matmul.
//
// A Q5_1 block is 24 bytes: f16 scale d, f16 minimum m, a word qh of fifth
// bits, 16 bytes of nibbles (as Q5_0); value = d·q + m. Block i starts at
// byte 24·i, at offset 0 or 8 in its word, so it lies within two aligned
// vec4<u32> words, all its fields word-aligned. Period: LCM(24,16) = 48
// bytes = 2 blocks = 3 words.

//#define RAW

struct Raw {
    a: vec4<u32>,
    c: vec4<u32>,
}

fn raw_load(row: u32, b: u32) -> Raw {
    let i = ((row * p.blocks + b) * 24u) >> 4u;
    return Raw(w[i], w[i + 1u]);
}

fn codes(r: Raw, row: u32, b: u32) -> Codes {
    let k = (((row * p.blocks + b) * 24u) & 15u) >> 2u;
    let v = window4(r.a, r.c, k);
    // Words: d and m, qh, then the nibbles v.z, v.w and the two after them.
    let qs = vec4<u32>(v.z, v.w, pick(r.c, k), pick(r.c, k + 1u));
    var c: Codes;
    for (var j = 0u; j < 4u; j++) {
        let q = pick(qs, j);
        c.p[j] = (q & 0x0F0F0F0Fu) | spread16(v.y >> (4u * j));
        c.p[j + 4u] = ((q >> 4u) & 0x0F0F0F0Fu) | spread16(v.y >> (16u + 4u * j));
    }
    let dm = unpack2x16float(v.x);
    c.s = vec2<f32>(dm.x);
    c.m = vec2<f32>(dm.y);
    return c;
}

//#include block_codes
