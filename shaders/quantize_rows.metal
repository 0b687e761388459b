// quantize_rows.metal — MSL twin of quantize_rows.wgsl: each token's input
// row (x; rmsnorm(x) ⊙ gain with NORM; silu(gate) ⊙ up with SWIGLU)
// quantized per 32-element block to int8 codes (quant::q8_act), d and s
// scaled by the RMSNorm scale with NORM; with HALF, f16 values for
// matmul's HALF_X variants instead. Output layouts: see the WGSL twin.
// Bindings: 0 params, 1 x, 2 q, 3 chunk, 4 gain (NORM).

// Input vec4 i of the row starting at vec4 `base`.
float4 xin(constant MatmulParams& p, device const float4* x,
//#if NORM
           device const float4* gain,
//#endif
           uint base, uint i) {
//#if NORM
    return x[base + i] * gain[i];
//#else
//#if SWIGLU
    float4 g = x[base + i];
    return g / (float4(1.0f) + exp(-g)) * x[base + p.cols / 4u + i];
//#else
    return x[base + i];
//#endif
//#endif
}

//#if HALF
constant float F16_MAX = 65504.0f;

// Block b of the row at vec4 `base`, times `scale`, as halves at q[o..o+16]
// (quantize_rows.wgsl's HALF layout).
void half_block(constant MatmulParams& p, device const float4* x,
//#if NORM
                device const float4* gain,
//#endif
                device uint* q, uint base, uint b, uint o, float scale) {
    for (uint j = 0u; j < 8u; j++) {
        float4 v = clamp(xin(p, x,
//#if NORM
                             gain,
//#endif
                             base, b * 8u + j) * scale, float4(-F16_MAX), float4(F16_MAX));
        uint w = o + 4u * (j & 3u) + 2u * (j >> 2u);
        q[w] = as_type<uint>(half2(half(v.x), half(v.y)));
        q[w + 1u] = as_type<uint>(half2(half(v.z), half(v.w)));
    }
}
//#endif

[[max_total_threads_per_threadgroup(256)]]
kernel void compute_main(
    constant MatmulParams& p [[buffer(0)]],
    device const float4* x [[buffer(1)]],
    device uint* q [[buffer(2)]],
    device const uint* chunk [[buffer(3)]],
//#if NORM
    device const float4* gain [[buffer(4)]],
//#endif
    uint tid [[thread_index_in_threadgroup]],
    uint3 wid [[threadgroup_position_in_grid]]
) {
    threadgroup float red[256];
    uint t = wid.z;
    bool live = t < chunk[1];
    uint base = t * p.x_stride;
    float scale = 1.0f;
//#if NORM
    float ss = 0.0f;
    if (live) {
        for (uint i = tid; i < p.cols / 4u; i += 256u) {
            float4 v = x[base + i];
            ss += dot(v, v);
        }
    }
    red[tid] = ss;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint h = 128u; h > 0u; h >>= 1u) {
        if (tid < h) {
            red[tid] += red[tid + h];
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    scale = rsqrt(red[0] / float(p.cols) + p.eps);
//#endif
    if (!live) {
        return;
    }
//#if HALF
    for (uint b = tid; b < p.blocks; b += 256u) {
        half_block(p, x,
//#if NORM
                   gain,
//#endif
                   q, base, b, (t * p.blocks + b) * 16u, scale);
    }
//#else
    uint ds_base = p.part_tokens * p.blocks * 8u;
    for (uint b = tid; b < p.blocks; b += 256u) {
        float4 v[8];
        float4 am = float4(0.0f);
        for (uint j = 0u; j < 8u; j++) {
            v[j] = xin(p, x,
//#if NORM
                       gain,
//#endif
                       base, b * 8u + j);
            am = max(am, abs(v[j]));
        }
        float d = max(max(am.x, am.y), max(am.z, am.w)) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        int4 qs = int4(0);
        uint o = (t * p.blocks + b) * 8u;
        for (uint j = 0u; j < 8u; j++) {
            int4 c = int4(rint(v[j] * id));
            qs += c;
            q[o + j] = as_type<uint>(char4(c));
        }
        float dd = d * scale;
        uint e = ds_base + (t * p.blocks + b) * 2u;
        q[e] = as_type<uint>(dd);
        q[e + 1u] = as_type<uint>(dd * float((qs.x + qs.y) + (qs.z + qs.w)));
    }
//#endif
}
