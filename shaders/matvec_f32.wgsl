// matvec_f32.wgsl — y = W·x, W row-major f32 (quant::f32). A "block" here is
// 32 elements = 128 bytes = 8 aligned vec4<u32> words.

//#include matvec

// The 8 aligned words of block b of `row`.
fn block_load(row: u32, b: u32) -> Raw {
    var r: Raw;
    let o = (row * p.blocks + b) * 8u;
    for (var j = 0u; j < 8u; j++) {
        r[j] = w[o + j];
    }
    return r;
}

fn block_dot_raw(row: u32, b: u32, raw: Raw, xv: array<vec4<f32>, 8>) -> f32 {
    var sum = 0.0;
    for (var j = 0u; j < 8u; j++) {
        sum += dot(bitcast<vec4<f32>>(raw[j]), xv[j]);
    }
    return sum;
}
