// matvec_q4_0.wgsl — y = W·x, W row-major in GGUF Q4_0 layout (quant::q4_0).
//
// A Q4_0 block is 18 bytes: f16 scale d, then 16 bytes of nibbles; element j
// is the low nibble of byte j, element j+16 the high nibble; value = d·(q−8).
// Blocks are packed back to back, so block i starts at byte 18·i, which is
// even: its 18 bytes always lie within the two aligned 16-byte words starting
// at word ⌊18i/16⌋ (offset s = 18i mod 16 ≤ 14, s + 18 ≤ 32). Every block is
// thus read with two aligned vec4<u32> loads; the period of the pattern is
// LCM(18,16) = 144 bytes = 8 blocks = 9 words.

//#include matvec

// u32 number i (0..8) of the 32 bytes a ++ b.
fn word8(a: vec4<u32>, b: vec4<u32>, i: u32) -> u32 {
    return select(b[i & 3u], a[i & 3u], i < 4u);
}

// 4 bytes starting at byte 4k+h of a ++ b, for h ∈ {0, 2}.
fn bytes4(a: vec4<u32>, b: vec4<u32>, k: u32, h: u32) -> u32 {
    let lo = word8(a, b, k);
    if h == 0u {
        return lo;
    }
    return (lo >> 16u) | (word8(a, b, k + 1u) << 16u);
}

fn block_dot(row: u32, b: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let o = (row * p.blocks + b) * 18u;
    let a = w[o >> 4u];
    let c = w[(o >> 4u) + 1u];
    let s = o & 15u;
    let dw = word8(a, c, s >> 2u);
    let d = unpack2x16float(select(dw, dw >> 16u, (s & 2u) != 0u)).x;
    let t = s + 2u; // first nibble byte
    var sum = 0.0;
    var xsum = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let q = bytes4(a, c, (t >> 2u) + j, t & 3u);
        let lo = vec4<f32>(vec4<u32>(q, q >> 8u, q >> 16u, q >> 24u) & vec4<u32>(15u));
        let hi = vec4<f32>(vec4<u32>(q >> 4u, q >> 12u, q >> 20u, q >> 28u) & vec4<u32>(15u));
        let xa = xv[j];
        let xc = xv[4u + j];
        sum += dot(lo, xa) + dot(hi, xc);
        xsum += xa + xc;
    }
    return d * (sum - 8.0 * (xsum.x + xsum.y + xsum.z + xsum.w));
}
