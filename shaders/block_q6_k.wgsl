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
// run lies within three aligned words (bytes32), each scale pair and d
// within one. Period: LCM(210,16) = 1680 bytes = 8 super-blocks = 105 words.

// Defines block_vec4 (the batched matmul dequantizes through it).
//#define BLOCK_VEC4

struct KCodes6 {
    q: array<vec4<u32>, 8>, // codes of elements 4k..4k+3 in q[k]
    s: vec2<f32>,           // d·sc of elements 0..15 and 16..31
}

fn q6_k_codes(row: u32, b: u32) -> KCodes6 {
    let sb = (row * (p.blocks / 8u) + b / 8u) * 210u;
    let h = (b & 7u) >> 2u;
    let k = b & 3u;
    let lo = sb + 64u * h + 32u * (k & 1u);
    let li = lo >> 4u;
    let l = bytes32(w[li], w[li + 1u], w[li + 2u], lo);
    let ho = sb + 128u + 32u * h;
    let hi = ho >> 4u;
    let u = bytes32(w[hi], w[hi + 1u], w[hi + 2u], ho);
    let so = sb + 192u + 8u * h + 2u * k;
    let sw = pick(w[so >> 4u], (so >> 2u) & 3u) >> (8u * (so & 2u));
    let dw = pick(w[(sb + 208u) >> 4u], ((sb + 208u) >> 2u) & 3u) >> (8u * ((sb + 208u) & 2u));
    let d = unpack2x16float(dw).x;
    var c: KCodes6;
    let nsh = 4u * (k >> 1u);
    for (var m = 0u; m < 4u; m++) {
        c.q[m] = field4(pick(l[0], m), nsh, 15u) | (field4(pick(u[0], m), 2u * k, 3u) << vec4<u32>(4u));
        c.q[m + 4u] = field4(pick(l[1], m), nsh, 15u) | (field4(pick(u[1], m), 2u * k, 3u) << vec4<u32>(4u));
    }
    // The two int8 scales, sign-extended.
    let s0 = f32((bitcast<i32>(sw << 24u)) >> 24u);
    let s1 = f32((bitcast<i32>(sw << 16u)) >> 24u);
    c.s = vec2<f32>(d * s0, d * s1);
    return c;
}

fn block_dot(row: u32, b: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let c = q6_k_codes(row, b);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        a0 += (vec4<f32>(c.q[k]) - 32.0) * xv[k];
        a1 += (vec4<f32>(c.q[k + 4u]) - 32.0) * xv[k + 4u];
    }
    return c.s.x * ((a0.x + a0.y) + (a0.z + a0.w)) + c.s.y * ((a1.x + a1.y) + (a1.z + a1.w));
}

// Elements 4j..4j+3 (j < 8) of block b of `row`.
fn block_vec4(row: u32, b: u32, j: u32) -> vec4<f32> {
    let c = q6_k_codes(row, b);
    return select(c.s.x, c.s.y, j >= 4u) * (vec4<f32>(c.q[j]) - 32.0);
}
