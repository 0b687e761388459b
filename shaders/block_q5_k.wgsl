// block_q5_k.wgsl — weights in GGUF Q5_K layout (quant::q5_k), for the
// matvec kernels and the batched matmul. A "block" here is a 32-element
// sub-block (p.blocks counts them); 8 make a super-block.
//
// A Q5_K super-block is 176 bytes = 11 aligned words: word 0 as Q4_K's
// (d, dmin, 6-bit scales and mins), words 1..2 the fifth bits (element i of
// sub-block j: bit j of byte i), words 3..10 the low nibbles laid out as
// Q4_K's words 1..8. Value = d·sc·q − dmin·m. Period: 176 bytes = 11 words.

// Defines block_vec4 (the batched matmul dequantizes through it).
//#define BLOCK_VEC4

struct KCodes {
    q: array<vec4<u32>, 8>, // codes of elements 4k..4k+3 in q[k]
    sm: vec2<f32>,          // (d·sc, dmin·m)
}

fn q5_k_codes(row: u32, b: u32) -> KCodes {
    let base = (row * (p.blocks / 8u) + b / 8u) * 11u;
    let j = b & 7u;
    let sh = 4u * (j & 1u);
    let h0 = w[base + 1u];
    let h1 = w[base + 2u];
    let q0 = w[base + 3u + 2u * (j >> 1u)];
    let q1 = w[base + 4u + 2u * (j >> 1u)];
    var c: KCodes;
    for (var k = 0u; k < 4u; k++) {
        c.q[k] = field4(pick(q0, k), sh, 15u) | (field4(pick(h0, k), j, 1u) << vec4<u32>(4u));
        c.q[k + 4u] = field4(pick(q1, k), sh, 15u) | (field4(pick(h1, k), j, 1u) << vec4<u32>(4u));
    }
    c.sm = kq_scale_min(w[base], j);
    return c;
}

fn block_dot(row: u32, b: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let c = q5_k_codes(row, b);
    var acc = vec4<f32>(0.0);
    var xs = vec4<f32>(0.0);
    for (var k = 0u; k < 8u; k++) {
        acc += vec4<f32>(c.q[k]) * xv[k];
        xs += xv[k];
    }
    return c.sm.x * ((acc.x + acc.y) + (acc.z + acc.w)) - c.sm.y * ((xs.x + xs.y) + (xs.z + xs.w));
}

// Elements 4j..4j+3 (j < 8) of block b of `row`.
fn block_vec4(row: u32, b: u32, j: u32) -> vec4<f32> {
    let c = q5_k_codes(row, b);
    return c.sm.x * vec4<f32>(c.q[j]) - c.sm.y;
}
