// matvec_q4_1.wgsl — y = W·x, W row-major in GGUF Q4_1 layout (quant::q4_1).
//
// A Q4_1 block is 20 bytes: f16 scale d, f16 minimum m, 16 bytes of nibbles
// (element j low nibble of byte j, j+16 high nibble); value = d·q + m.
// Block i starts at byte 20·i, a multiple of 4, at offset s = 20i mod 16 ≤ 12
// in its word, so it lies within two aligned vec4<u32> words. Period:
// LCM(20,16) = 80 bytes = 4 blocks = 5 words.

//#include matvec

fn word8(a: vec4<u32>, b: vec4<u32>, i: u32) -> u32 {
    return select(b[i & 3u], a[i & 3u], i < 4u);
}

fn block_dot(row: u32, b: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let o = (row * p.blocks + b) * 20u;
    let a = w[o >> 4u];
    let c = w[(o >> 4u) + 1u];
    let k = (o & 15u) >> 2u;
    let dm = unpack2x16float(word8(a, c, k));
    var sum = 0.0;
    var xsum = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let q = word8(a, c, k + 1u + j);
        let lo = vec4<f32>(vec4<u32>(q, q >> 8u, q >> 16u, q >> 24u) & vec4<u32>(15u));
        let hi = vec4<f32>(vec4<u32>(q >> 4u, q >> 12u, q >> 20u, q >> 28u) & vec4<u32>(15u));
        let xa = xv[j];
        let xc = xv[4u + j];
        sum += dot(lo, xa) + dot(hi, xc);
        xsum += xa + xc;
    }
    return dm.x * sum + dm.y * (xsum.x + xsum.y + xsum.z + xsum.w);
}
