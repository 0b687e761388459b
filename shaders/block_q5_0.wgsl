// block_q5_0.wgsl — weights in GGUF Q5_0 layout (quant::q5_0), for the
// matvec kernels and the batched matmul.
//
// A Q5_0 block is 22 bytes: f16 scale d, a word qh of fifth bits (bit j for
// element j), 16 bytes of nibbles (element j low nibble of byte j, j + 16 the
// high nibble); value = d·(q − 16). Block i starts at byte 22·i (even), at
// offset s ≤ 14 in its word, so it lies within three aligned vec4<u32> words
// (s + 22 ≤ 36; the third may lie past the block, which the matrix's zero
// tail covers). Period: LCM(22,16) = 176 bytes = 8 blocks = 11 words.

//#define RAW

struct Raw {
    a: vec4<u32>,
    c: vec4<u32>,
    e: vec4<u32>,
}

fn raw_load(row: u32, b: u32) -> Raw {
    let i = ((row * p.blocks + b) * 22u) >> 4u;
    return Raw(w[i], w[i + 1u], w[i + 2u]);
}

fn codes(r: Raw, row: u32, b: u32) -> Codes {
    let t = bytes32(r.a, r.c, r.e, (row * p.blocks + b) * 22u);
    // Bytes: d at 0..1, qh at 2..5, nibbles at 6..21.
    let qh = (t[0].x >> 16u) | (t[0].y << 16u);
    let qs = vec4<u32>((t[0].y >> 16u) | (t[0].z << 16u), (t[0].z >> 16u) | (t[0].w << 16u),
        (t[0].w >> 16u) | (t[1].x << 16u), (t[1].x >> 16u) | (t[1].y << 16u));
    var c: Codes;
    for (var k = 0u; k < 4u; k++) {
        let q = pick(qs, k);
        c.p[k] = (q & 0x0F0F0F0Fu) | spread16(qh >> (4u * k));
        c.p[k + 4u] = ((q >> 4u) & 0x0F0F0F0Fu) | spread16(qh >> (16u + 4u * k));
    }
    let d = unpack2x16float(t[0].x).x;
    c.s = vec2<f32>(d);
    c.m = vec2<f32>(-16.0 * d);
    return c;
}

//#include block_codes
