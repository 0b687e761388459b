// matvec.metal — MSL twin of matvec.wgsl, the body shared by every matvec
// kernel: y[row] = W[row,:] · x.
//
// Included by matvec_<format>.metal, which defines after the include
//   float block_dot(MatvecArgs m, uint row, uint b)
// returning the dot product of block `b` of `row` with x[b*32 .. b*32+32)
// (x read through `xg`, which applies x_offset and the NORM gain).
//
// Threadgroup layout: 256 threads = 8 rows × 32 lanes. Lane l of a row takes
// blocks l, l+32, ... so the 32 lanes of a row read consecutive blocks, and
// the 8 rows of a threadgroup read one contiguous 8-row slab. The partial
// sums of a row are reduced across its 32 lanes.
//
// Variants (preprocessor): NORM fuses RMSNorm: y = W · (rmsnorm(x) ⊙ gain);
// SWIGLU fuses the FFN gate: y = W · (silu(gate) ⊙ up).
// SUBGROUPS reduces with SIMD-group shuffles (any width), else with
// threadgroup memory. Bindings: the same as matvec.wgsl, in the same order
// (wgpu gives buffer slots in binding order): 0 params, 1 w, 2 x, 3 y, 4 gain.

//#include reduce

// What the per-format helpers need (MSL has no module-scope buffers).
struct MatvecArgs {
    device const uint4* w;
    device const float4* x;
//#if NORM
    device const float4* gain;
//#endif
    uint cols;     // MatvecParams::cols
    uint blocks;   // MatvecParams::blocks
    uint x_offset; // MatvecParams::x_offset
};

// The input vector, 4 floats starting at vec4 index i: x ⊙ gain with NORM,
// silu(gate) ⊙ up with SWIGLU (x holds gate then up, each `cols` long),
// else x itself.
float4 xg(MatvecArgs m, uint i) {
//#if NORM
    return m.x[m.x_offset + i] * m.gain[i];
//#else
//#if SWIGLU
    float4 g = m.x[m.x_offset + i];
    float4 u = m.x[m.x_offset + m.cols / 4u + i];
    return g / (float4(1.0f) + exp(-g)) * u;
//#else
    return m.x[m.x_offset + i];
//#endif
//#endif
}

// Defined by the including matvec_<format>.metal.
float block_dot(MatvecArgs m, uint row, uint b);

[[max_total_threads_per_threadgroup(256)]]
kernel void compute_main(
    constant MatvecParams& p [[buffer(0)]],
    device const uint4* w [[buffer(1)]],
    device const float4* x [[buffer(2)]],
    device float* y [[buffer(3)]],
//#if NORM
    device const float4* gain [[buffer(4)]],
//#endif
    uint tid [[thread_index_in_threadgroup]],
    uint3 wid [[threadgroup_position_in_grid]],
    uint3 nwg [[threadgroups_per_grid]]
//#if SUBGROUPS
    , uint sg_size [[threads_per_simdgroup]]
//#endif
) {
    threadgroup float red[256];
//#if !SUBGROUPS
    uint sg_size = 1u;
//#endif
    MatvecArgs m;
    m.w = w;
    m.x = x;
//#if NORM
    m.gain = gain;
//#endif
    m.cols = p.cols;
    m.blocks = p.blocks;
    m.x_offset = p.x_offset;

    uint row = (wid.x + wid.y * nwg.x) * 8u + (tid >> 5u);
    uint lane = tid & 31u;

    float acc = 0.0f;
    if (row < p.rows) {
        for (uint b = lane; b < p.blocks; b += 32u) {
            acc += block_dot(m, row, b);
        }
    }

    float scale = 1.0f;
//#if NORM
    // rmsnorm(x) = x / sqrt(mean(x²) + eps): a scalar, applied after the dot.
    float ss = 0.0f;
    for (uint i = tid; i < p.cols / 4u; i += 256u) {
        float4 v = x[p.x_offset + i];
        ss += dot(v, v);
    }
    scale = rsqrt(reduce_all(ss, red, tid, sg_size) / float(p.cols) + p.eps);
//#endif

    float total = reduce_row(acc, red, tid, sg_size);
    if (lane == 0u && row < p.rows) {
        float out = total * scale;
        if (p.accumulate != 0u) {
            out += y[p.y_offset + row];
        }
        y[p.y_offset + row] = out;
    }
}
