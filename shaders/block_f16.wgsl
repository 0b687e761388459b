// block_f16.wgsl — the matvec kernels' weights, row-major f16 (quant::f16). A "block" here is
// 32 elements = 64 bytes = 4 aligned vec4<u32> words.

fn block_dot(row: u32, b: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let o = (row * p.blocks + b) * 4u;
    var sum = 0.0;
    for (var j = 0u; j < 4u; j++) {
        let q = w[o + j];
        let v0 = vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
        let v1 = vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w));
        sum += dot(v0, xv[2u * j]) + dot(v1, xv[2u * j + 1u]);
    }
    return sum;
}
