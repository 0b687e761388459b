// block_q5_1.wgsl — weights in GGUF Q5_1 layout (quant::q5_1), for the
// matvec kernels and the batched matmul.
//
// A Q5_1 block is 24 bytes: f16 scale d, f16 minimum m, a word qh of fifth
// bits, 16 bytes of nibbles (as Q5_0); value = d·q + m. Block i starts at
// byte 24·i, at offset 0 or 8 in its word, so it lies within two aligned
// vec4<u32> words, all its fields word-aligned. Period: LCM(24,16) = 48
// bytes = 2 blocks = 3 words.

// Defines block_vec4 (the batched matmul dequantizes through it).
//#define BLOCK_VEC4

struct Q5Codes {
    lo: array<vec4<u32>, 4>,
    hi: array<vec4<u32>, 4>,
    d: f32,
    m: f32,
}

fn q5_1_codes(row: u32, b: u32) -> Q5Codes {
    let o = (row * p.blocks + b) * 24u;
    let i = o >> 4u;
    let k = (o & 15u) >> 2u;
    let c1 = w[i + 1u];
    let r = window4(w[i], c1, k);
    // Words: d and m, qh, then the nibbles r.z, r.w and the two after them.
    let qs = vec4<u32>(r.z, r.w, pick(c1, k), pick(c1, k + 1u));
    var c: Q5Codes;
    for (var j = 0u; j < 4u; j++) {
        let q = pick(qs, j);
        c.lo[j] = field4(q, 0u, 15u) | high4(r.y, 4u * j);
        c.hi[j] = field4(q, 4u, 15u) | high4(r.y, 16u + 4u * j);
    }
    let dm = unpack2x16float(r.x);
    c.d = dm.x;
    c.m = dm.y;
    return c;
}

fn block_dot(row: u32, b: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let c = q5_1_codes(row, b);
    var acc = vec4<f32>(0.0);
    var xs = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        acc += vec4<f32>(c.lo[k]) * xv[k] + vec4<f32>(c.hi[k]) * xv[k + 4u];
        xs += xv[k] + xv[k + 4u];
    }
    return c.d * ((acc.x + acc.y) + (acc.z + acc.w)) + c.m * ((xs.x + xs.y) + (xs.z + xs.w));
}

// Elements 4j..4j+3 (j < 8) of block b of `row`.
fn block_vec4(row: u32, b: u32, j: u32) -> vec4<f32> {
    let c = q5_1_codes(row, b);
    let q = select(c.lo[j & 3u], c.hi[j & 3u], j >= 4u);
    return c.d * vec4<f32>(q) + c.m;
}
