// block_f32.metal — MSL twin of block_f32.wgsl: the matvec kernels' weights, row-major f32
// (quant::f32). A "block" here is 32 elements = 128 bytes = 8 aligned uint4
// words.

float block_dot(MatvecArgs m, uint row, uint b, thread const float4* xv) {
    uint o = (row * m.blocks + b) * 8u;
    float sum = 0.0f;
    for (uint j = 0u; j < 8u; j++) {
        sum += dot(as_type<float4>(m.w[o + j]), xv[j]);
    }
    return sum;
}
