// matvec_q8_0.wgsl — y = W·x, W row-major in GGUF Q8_0 layout (quant::q8_0).
//
// A Q8_0 block is 34 bytes: f16 scale d, then 32 signed bytes; value = d·q.
// Block i starts at byte 34·i (even), at offset s = 34i mod 16 ≤ 14 in its
// word, so it lies within three aligned vec4<u32> words (s + 34 ≤ 48).
// Period: LCM(34,16) = 272 bytes = 8 blocks = 17 words.

//#include matvec

// u32 number i (0..12) of the 48 bytes a ++ b ++ c.
fn word12(a: vec4<u32>, b: vec4<u32>, c: vec4<u32>, i: u32) -> u32 {
    return select(select(c[i & 3u], b[i & 3u], i < 8u), a[i & 3u], i < 4u);
}

// Four signed bytes of q unpacked to floats.
fn i8x4(q: u32) -> vec4<f32> {
    return vec4<f32>(vec4<i32>(bitcast<i32>(q << 24u), bitcast<i32>(q << 16u), bitcast<i32>(q << 8u), bitcast<i32>(q)) >> vec4<u32>(24u));
}

fn block_dot(row: u32, b: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let o = (row * p.blocks + b) * 34u;
    let a = w[o >> 4u];
    let c = w[(o >> 4u) + 1u];
    let e = w[(o >> 4u) + 2u];
    let s = o & 15u;
    let dw = word12(a, c, e, s >> 2u);
    let d = unpack2x16float(select(dw, dw >> 16u, (s & 2u) != 0u)).x;
    let t = s + 2u; // first quant byte
    let k = t >> 2u;
    let h = (t & 2u) != 0u;
    var sum = 0.0;
    for (var j = 0u; j < 8u; j++) {
        var q = word12(a, c, e, k + j);
        if h {
            q = (q >> 16u) | (word12(a, c, e, k + j + 1u) << 16u);
        }
        sum += dot(i8x4(q), xv[j]);
    }
    return d * sum;
}
