// block_f16.metal — MSL twin of block_f16.wgsl: the matvec kernels' weights, row-major f16
// (quant::f16). A "block" here is 32 elements = 64 bytes = 4 aligned uint4
// words. f16 pairs are unpacked with as_type<half2> and accumulated in f32.

float block_dot(MatvecArgs m, uint row, uint b, thread const float4* xv) {
    uint o = (row * m.blocks + b) * 4u;
    float sum = 0.0f;
    for (uint j = 0u; j < 4u; j++) {
        uint4 q = m.w[o + j];
        float4 v0 = float4(float2(as_type<half2>(q.x)), float2(as_type<half2>(q.y)));
        float4 v1 = float4(float2(as_type<half2>(q.z)), float2(as_type<half2>(q.w)));
        sum += dot(v0, xv[2u * j]) + dot(v1, xv[2u * j + 1u]);
    }
    return sum;
}
