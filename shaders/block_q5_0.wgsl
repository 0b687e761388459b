// block_q5_0.wgsl — weights in GGUF Q5_0 layout (quant::q5_0), for the
// matvec kernels and the batched matmul.
//
// A Q5_0 block is 22 bytes: f16 scale d, a word qh of fifth bits (bit j for
// element j), 16 bytes of nibbles (element j low nibble of byte j, j + 16 the
// high nibble); value = d·(q − 16). Block i starts at byte 22·i (even), at
// offset s ≤ 14 in its word, so it lies within three aligned vec4<u32> words
// (s + 22 ≤ 36). Period: LCM(22,16) = 176 bytes = 8 blocks = 11 words.

// Defines block_vec4 (the batched matmul dequantizes through it).
//#define BLOCK_VEC4

// The block's 5-bit codes of elements 4k..4k+3 (lo) and 16+4k..16+4k+3 (hi).
struct Q5Codes {
    lo: array<vec4<u32>, 4>,
    hi: array<vec4<u32>, 4>,
    d: f32,
}

fn q5_0_codes(row: u32, b: u32) -> Q5Codes {
    let o = (row * p.blocks + b) * 22u;
    let i = o >> 4u;
    let t = bytes32(w[i], w[i + 1u], w[i + 2u], o);
    // Bytes: d at 0..1, qh at 2..5, nibbles at 6..21.
    let qh = (t[0].x >> 16u) | (t[0].y << 16u);
    let qs = vec4<u32>((t[0].y >> 16u) | (t[0].z << 16u), (t[0].z >> 16u) | (t[0].w << 16u),
        (t[0].w >> 16u) | (t[1].x << 16u), (t[1].x >> 16u) | (t[1].y << 16u));
    var c: Q5Codes;
    for (var k = 0u; k < 4u; k++) {
        let q = pick(qs, k);
        c.lo[k] = field4(q, 0u, 15u) | high4(qh, 4u * k);
        c.hi[k] = field4(q, 4u, 15u) | high4(qh, 16u + 4u * k);
    }
    c.d = unpack2x16float(t[0].x).x;
    return c;
}

fn block_dot(row: u32, b: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let c = q5_0_codes(row, b);
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        acc += (vec4<f32>(c.lo[k]) - 16.0) * xv[k] + (vec4<f32>(c.hi[k]) - 16.0) * xv[k + 4u];
    }
    return c.d * ((acc.x + acc.y) + (acc.z + acc.w));
}

// Elements 4j..4j+3 (j < 8) of block b of `row`.
fn block_vec4(row: u32, b: u32, j: u32) -> vec4<f32> {
    let c = q5_0_codes(row, b);
    let q = select(c.lo[j & 3u], c.hi[j & 3u], j >= 4u);
    return c.d * (vec4<f32>(q) - 16.0);
}
