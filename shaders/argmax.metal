// argmax.metal — MSL twin of argmax.wgsl: greedy sampling on the GPU:
// tok[0] = argmax(logits), ties to the lowest index, NaN never wins. Large
// vocabularies go in two dispatches (PART: one threadgroup per `span`
// logits writes its best (value bits, index) pair; FINAL reduces the pairs);
// without either flag one threadgroup scans all n logits.
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
//#if FINAL
    device const uint* parts [[buffer(1)]],
//#else
    device const float* logits [[buffer(1)]],
//#endif
    device uint* tok [[buffer(2)]],
    uint tid [[thread_index_in_threadgroup]],
    uint3 wid [[threadgroup_position_in_grid]]
) {
    threadgroup float best_v[256];
    threadgroup uint best_i[256];
    float bv = -3.4e38f;
    uint bi = 0xFFFFFFFFu;
//#if FINAL
    for (uint k = tid; k < p.n; k += 256u) {
        float v = as_type<float>(parts[2u * k]);
        uint i = parts[2u * k + 1u];
        if (better(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
//#else
//#if PART
    uint lo = wid.x * p.span;
    uint hi = min(p.n, lo + p.span);
//#else
    uint lo = 0u;
    uint hi = p.n;
//#endif
    // 8 loads in flight per thread, compared in index order (see argmax.wgsl).
    uint i = lo + tid;
    for (; i + 7u * 256u < hi; i += 8u * 256u) {
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
    for (; i < hi; i += 256u) {
        float v = logits[i];
        if (better(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
//#endif
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
//#if PART
        tok[2u * wid.x] = as_type<uint>(best_v[0]);
        tok[2u * wid.x + 1u] = best_i[0];
//#else
        // All NaN: the last index rather than an out-of-range id.
//#if FINAL
        tok[0] = min(best_i[0], p.total - 1u);
//#else
        tok[0] = min(best_i[0], p.n - 1u);
//#endif
//#endif
    }
}
