// block_f32.wgsl — the matvec kernels' weights, row-major f32 (quant::f32). A "block" here is
// 32 elements = 128 bytes = 8 aligned vec4<u32> words.

fn block_dot(row: u32, b: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let o = (row * p.blocks + b) * 8u;
    var sum = 0.0;
    for (var j = 0u; j < 8u; j++) {
        sum += dot(bitcast<vec4<f32>>(w[o + j]), xv[j]);
    }
    return sum;
}
