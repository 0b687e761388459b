// matvec_f16.metal — MSL twin of matvec_f16.wgsl: y = W·x, W row-major f16
// (quant::f16). A "block" here is 32 elements = 64 bytes = 4 aligned uint4
// words. f16 pairs are unpacked with as_type<half2> and accumulated in f32.

//#include matvec

// The 4 aligned words of block b of `row`.
Raw block_load(MatvecArgs m, uint row, uint b) {
    Raw r;
    uint o = (row * m.blocks + b) * 4u;
    for (uint j = 0u; j < 4u; j++) {
        r.w[j] = m.w[o + j];
    }
    return r;
}

float block_dot_raw(MatvecArgs m, uint row, uint b, thread const Raw& raw, thread const float4* xv) {
    float sum = 0.0f;
    for (uint j = 0u; j < 4u; j++) {
        uint4 q = raw.w[j];
        float4 v0 = float4(float2(as_type<half2>(q.x)), float2(as_type<half2>(q.y)));
        float4 v1 = float4(float2(as_type<half2>(q.z)), float2(as_type<half2>(q.w)));
        sum += dot(v0, xv[2u * j]) + dot(v1, xv[2u * j + 1u]);
    }
    return sum;
}
