// matvec_f32.metal — MSL twin of matvec_f32.wgsl: y = W·x, W row-major f32
// (quant::f32). A "block" here is 32 elements = 128 bytes = 8 aligned uint4
// words.

//#include matvec

// The 8 aligned words of block b of `row`.
Raw block_load(MatvecArgs m, uint row, uint b) {
    Raw r;
    uint o = (row * m.blocks + b) * 8u;
    for (uint j = 0u; j < 8u; j++) {
        r.w[j] = m.w[o + j];
    }
    return r;
}

float block_dot_raw(MatvecArgs m, uint row, uint b, thread const Raw& raw, thread const float4* xv) {
    float sum = 0.0f;
    for (uint j = 0u; j < 8u; j++) {
        sum += dot(as_type<float4>(raw.w[j]), xv[j]);
    }
    return sum;
}
