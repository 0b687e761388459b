// argmax.metal — MSL twin of argmax.wgsl: greedy sampling on the GPU:
// tok[0] = argmax(logits), ties to the lowest index, NaN never wins. One
// threadgroup; only the 4-byte id needs to leave the GPU.
//
// Metal compiles with fast math on by default (wgpu passes default compile
// options), which lets the compiler assume no NaNs, so NaN is rejected with
// an integer test on its bits instead of relying on comparisons being false.

// Whether f is NaN, decided on its bits (immune to fast-math assumptions).
bool is_nan_bits(float f) {
    return (as_type<uint>(f) & 0x7FFFFFFFu) > 0x7F800000u;
}

// Whether (v, i) beats (w, j): larger value, or equal value and lower index.
bool better(float v, uint i, float w, uint j) {
    return !is_nan_bits(v) && (v > w || (v == w && i < j));
}

[[max_total_threads_per_threadgroup(256)]]
kernel void compute_main(
    constant ArgmaxParams& p [[buffer(0)]],
    device const float* logits [[buffer(1)]],
    device uint* tok [[buffer(2)]],
    uint tid [[thread_index_in_threadgroup]]
) {
    threadgroup float best_v[256];
    threadgroup uint best_i[256];
    float bv = -3.4e38f;
    uint bi = 0xFFFFFFFFu;
    // 8 loads in flight per thread, compared in index order (see argmax.wgsl).
    uint i = tid;
    for (; i + 7u * 256u < p.n; i += 8u * 256u) {
        float v[8];
        for (uint k = 0u; k < 8u; k++) {
            v[k] = logits[i + k * 256u];
        }
        for (uint k = 0u; k < 8u; k++) {
            if (better(v[k], i + k * 256u, bv, bi)) {
                bv = v[k];
                bi = i + k * 256u;
            }
        }
    }
    for (; i < p.n; i += 256u) {
        float v = logits[i];
        if (better(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
    best_v[tid] = bv;
    best_i[tid] = bi;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint s = 128u; s > 0u; s >>= 1u) {
        if (tid < s && better(best_v[tid + s], best_i[tid + s], best_v[tid], best_i[tid])) {
            best_v[tid] = best_v[tid + s];
            best_i[tid] = best_i[tid + s];
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    if (tid == 0u) {
        tok[0] = min(best_i[0], p.n - 1u);
    }
}
