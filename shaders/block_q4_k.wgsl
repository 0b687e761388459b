// block_q4_k.wgsl — weights in GGUF Q4_K layout (quant::q4_k), for the
// matvec kernels and the batched matmul. A "block" here is a 32-element
// sub-block (p.blocks counts them); 8 make a super-block.
//
// A Q4_K super-block is 144 bytes = 9 aligned words, so every super-block
// starts on a word: word 0 holds d, dmin and the 12 bytes of 6-bit scales
// and mins (kq_scale_min), words 1..8 the nibbles: sub-blocks 2c and 2c + 1
// are the low and high nibbles of the 32 bytes in words 1 + 2c, 2 + 2c.
// Value = d·sc·q − dmin·m. Period: 144 bytes = 9 words.

// Defines block_vec4 (the batched matmul dequantizes through it).
//#define BLOCK_VEC4

struct KCodes {
    q: array<vec4<u32>, 8>, // codes of elements 4k..4k+3 in q[k]
    sm: vec2<f32>,          // (d·sc, dmin·m)
}

fn q4_k_codes(row: u32, b: u32) -> KCodes {
    let base = (row * (p.blocks / 8u) + b / 8u) * 9u;
    let j = b & 7u;
    let sh = 4u * (j & 1u);
    let q0 = w[base + 1u + 2u * (j >> 1u)];
    let q1 = w[base + 2u + 2u * (j >> 1u)];
    var c: KCodes;
    for (var k = 0u; k < 4u; k++) {
        c.q[k] = field4(pick(q0, k), sh, 15u);
        c.q[k + 4u] = field4(pick(q1, k), sh, 15u);
    }
    c.sm = kq_scale_min(w[base], j);
    return c;
}

fn block_dot(row: u32, b: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let c = q4_k_codes(row, b);
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
    let c = q4_k_codes(row, b);
    return c.sm.x * vec4<f32>(c.q[j]) - c.sm.y;
}
