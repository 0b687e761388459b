// matmul.metal — MSL twin of matmul.wgsl: batched matrix products for
// prompt processing:
//   Y[t, row] (=|+=) W[row,:] · X[t,:]   for t in 0..n_tokens,
// W in its GGUF layout, read with aligned uint4 loads like the matvec
// kernels. The format is chosen by one flag: Q4_0, Q4_1, Q8_0, F16, else F32.
//
// Threadgroup layout: a tile of 32 rows × 64 tokens (threadgroup z), 256
// threads each computing 2 rows × 4 tokens; K advances one block per step,
// staged in threadgroup memory (W decoded by threads 0..31, the inputs by the
// other 224, with the gain or SwiGLU product applied once), the next block's
// loads issued before the current block's products (see matmul.wgsl).
//
// Token t's input row starts at vec4 index t·x_stride of X; its output row
// at float t·y_stride + y_offset of Y. The token count is chunk[1].
//
// Variants: NORM fuses RMSNorm per token (a scalar per token, applied after
// the dot); SWIGLU: X[t] holds gate then up and the input is silu(gate) ⊙ up.
// Bindings: the same as matmul.wgsl, in the same order: 0 params, 1 w, 2 x,
// 3 y, 4 chunk, 5 gain.

// What the helpers need (MSL has no module-scope buffers).
struct MatmulArgs {
    device const uint4* w;
    device const float4* x;
//#if NORM
    device const float4* gain;
//#endif
    uint cols;
    uint blocks;
};

// A dequantized block: elements 4j..4j+3 in v[j].
struct Block {
    float4 v[8];
};

// u32 number i (0..8) of the 32 bytes a ++ b.
uint word8(uint4 a, uint4 b, uint i) {
    return select(b[i & 3u], a[i & 3u], i < 4u);
}

// u32 number i (0..12) of the 48 bytes a ++ b ++ c.
uint word12(uint4 a, uint4 b, uint4 c, uint i) {
    return select(select(c[i & 3u], b[i & 3u], i < 8u), a[i & 3u], i < 4u);
}

// Nibbles 0,2,4,6 (lo) or 1,3,5,7 (hi) of q as floats.
float4 lo4(uint q) {
    return float4(uint4(q, q >> 8u, q >> 16u, q >> 24u) & uint4(15u));
}
float4 hi4(uint q) {
    return float4(uint4(q >> 4u, q >> 12u, q >> 20u, q >> 28u) & uint4(15u));
}

// Four signed bytes of q as floats.
float4 i8x4(uint q) {
    return float4(int4(as_type<int>(q << 24u), as_type<int>(q << 16u), as_type<int>(q << 8u), as_type<int>(q)) >> int4(24));
}

// The aligned words holding block b of `row` (see matmul.wgsl's load_raw).
void load_raw(MatmulArgs m, uint row, uint b, thread uint4* raw) {
//#if Q4_0
    uint o = ((row * m.blocks + b) * 18u) >> 4u;
    raw[0] = m.w[o];
    raw[1] = m.w[o + 1u];
//#else
//#if Q4_1
    uint o = ((row * m.blocks + b) * 20u) >> 4u;
    raw[0] = m.w[o];
    raw[1] = m.w[o + 1u];
//#else
//#if Q8_0
    uint o = ((row * m.blocks + b) * 34u) >> 4u;
    raw[0] = m.w[o];
    raw[1] = m.w[o + 1u];
    raw[2] = m.w[o + 2u];
//#else
//#if F16
    uint o = (row * m.blocks + b) * 4u;
    for (uint j = 0u; j < 4u; j++) {
        raw[j] = m.w[o + j];
    }
//#else
    uint o = (row * m.blocks + b) * 8u;
    for (uint j = 0u; j < 8u; j++) {
        raw[j] = m.w[o + j];
    }
//#endif
//#endif
//#endif
//#endif
}

// Block b of `row` dequantized from its raw words (load_raw).
Block decode_raw(MatmulArgs m, uint row, uint b, thread const uint4* raw) {
    Block r;
//#if Q4_0
    // 18-byte blocks at even offsets: within two aligned words (see matvec_q4_0).
    uint o = (row * m.blocks + b) * 18u;
    uint4 a = raw[0];
    uint4 c = raw[1];
    uint s = o & 15u;
    uint dw = word8(a, c, s >> 2u);
    float d = float(as_type<half2>(select(dw, dw >> 16u, (s & 2u) != 0u)).x);
    uint k = (s + 2u) >> 2u;
    bool h = (s & 2u) == 0u; // nibbles start 2 bytes into a word
    for (uint j = 0u; j < 4u; j++) {
        uint q = word8(a, c, k + j);
        if (h) {
            q = (q >> 16u) | (word8(a, c, k + j + 1u) << 16u);
        }
        r.v[j] = d * (lo4(q) - float4(8.0f));
        r.v[j + 4u] = d * (hi4(q) - float4(8.0f));
    }
//#else
//#if Q4_1
    // 20-byte blocks at offsets ≡ 0 mod 4: within two aligned words.
    uint o = (row * m.blocks + b) * 20u;
    uint4 a = raw[0];
    uint4 c = raw[1];
    uint k = (o & 15u) >> 2u;
    float2 dm = float2(as_type<half2>(word8(a, c, k)));
    for (uint j = 0u; j < 4u; j++) {
        uint q = word8(a, c, k + 1u + j);
        r.v[j] = dm.x * lo4(q) + float4(dm.y);
        r.v[j + 4u] = dm.x * hi4(q) + float4(dm.y);
    }
//#else
//#if Q8_0
    // 34-byte blocks at even offsets: within three aligned words.
    uint o = (row * m.blocks + b) * 34u;
    uint4 a = raw[0];
    uint4 c = raw[1];
    uint4 e = raw[2];
    uint s = o & 15u;
    uint dw = word12(a, c, e, s >> 2u);
    float d = float(as_type<half2>(select(dw, dw >> 16u, (s & 2u) != 0u)).x);
    uint k = (s + 2u) >> 2u;
    bool h = (s & 2u) == 0u;
    for (uint j = 0u; j < 8u; j++) {
        uint q = word12(a, c, e, k + j);
        if (h) {
            q = (q >> 16u) | (word12(a, c, e, k + j + 1u) << 16u);
        }
        r.v[j] = d * i8x4(q);
    }
//#else
//#if F16
    for (uint j = 0u; j < 4u; j++) {
        uint4 q = raw[j];
        r.v[2u * j] = float4(float2(as_type<half2>(q.x)), float2(as_type<half2>(q.y)));
        r.v[2u * j + 1u] = float4(float2(as_type<half2>(q.z)), float2(as_type<half2>(q.w)));
    }
//#else
    for (uint j = 0u; j < 8u; j++) {
        r.v[j] = as_type<float4>(raw[j]);
    }
//#endif
//#endif
//#endif
//#endif
    return r;
}

[[max_total_threads_per_threadgroup(256)]]
kernel void compute_main(
    constant MatmulParams& p [[buffer(0)]],
    device const uint4* w [[buffer(1)]],
    device const float4* x [[buffer(2)]],
    device float* y [[buffer(3)]],
    device const uint* chunk [[buffer(4)]],
//#if NORM
    device const float4* gain [[buffer(5)]],
//#endif
    uint tid [[thread_index_in_threadgroup]],
    uint3 wid [[threadgroup_position_in_grid]],
    uint3 nwg [[threadgroups_per_grid]]
) {
    threadgroup float2 ws[512];
    threadgroup float4 xs[512];
    MatmulArgs m;
    m.w = w;
    m.x = x;
//#if NORM
    m.gain = gain;
//#endif
    m.cols = p.cols;
    m.blocks = p.blocks;

    uint n = chunk[1];
    uint row0 = (wid.x + wid.y * nwg.x) * 32u;
    uint t0 = wid.z * 64u;
    // Output tile of this thread: rows row0 + 2·tr + (0, 1), tokens t0 + 4·tc + (0..3).
    uint tr = tid & 15u;
    uint tc = tid >> 4u;

    float4 tsc = float4(1.0f);
//#if NORM
    // RMSNorm scale of each tile token (4 threads per token), through xs.
    {
        uint k = tid >> 2u;
        float ss = 0.0f;
        if (t0 + k < n) {
            uint base = (t0 + k) * p.x_stride;
            for (uint i = tid & 3u; i < p.cols / 4u; i += 4u) {
                float4 v = x[base + i];
                ss += dot(v, v);
            }
        }
        xs[tid] = float4(ss, 0.0f, 0.0f, 0.0f);
        threadgroup_barrier(mem_flags::mem_threadgroup);
        for (uint j = 0u; j < 4u; j++) {
            uint q = 16u * tc + 4u * j;
            float s2 = (xs[q].x + xs[q + 1u].x) + (xs[q + 2u].x + xs[q + 3u].x);
            tsc[j] = rsqrt(s2 / float(p.cols) + p.eps);
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
//#endif

    // Stagers: threads 0..31 decode row row0 + tid's block; threads 32..255
    // load the tile's inputs (see matmul.wgsl), one block ahead.
    uint wrow = row0 + tid;
    // Raw words of blocks b and b + 1 (weights come two steps ahead).
    uint4 wraw[8];
    uint4 wnext[8];
    float4 xa[3];
    float4 xb[3];
    for (uint j = 0u; j < 8u; j++) {
        wraw[j] = uint4(0u);
        wnext[j] = uint4(0u);
    }
    for (uint s = 0u; s < 3u; s++) {
        xa[s] = float4(0.0f);
        xb[s] = float4(0.0f);
    }
    if (tid < 32u) {
        if (wrow < p.rows) {
            load_raw(m, wrow, 0u, wraw);
            if (p.blocks > 1u) {
                load_raw(m, wrow, 1u, wnext);
            }
        }
    } else {
        for (uint s = 0u; s < 3u; s++) {
            uint i = tid - 32u + 224u * s;
            uint tt = i & 63u;
            if (i < 512u && t0 + tt < n) {
                uint base = (t0 + tt) * p.x_stride + (i >> 6u);
                xa[s] = x[base];
//#if NORM
                xb[s] = gain[i >> 6u];
//#endif
//#if SWIGLU
                xb[s] = x[base + p.cols / 4u];
//#endif
            }
        }
    }

    float4 acc0 = float4(0.0f);
    float4 acc1 = float4(0.0f);
    for (uint b = 0u; b < p.blocks; b++) {
        // Stage block b: W as ws[k][row pair], X as xs[k][token quad].
        if (tid < 32u) {
            Block wv;
            for (uint j = 0u; j < 8u; j++) {
                wv.v[j] = float4(0.0f);
            }
            if (wrow < p.rows) {
                wv = decode_raw(m, wrow, b, wraw);
            }
            for (uint j = 0u; j < 8u; j++) {
                uint q = (4u * j) * 16u + (tid >> 1u);
                uint h = tid & 1u;
                ws[q][h] = wv.v[j].x;
                ws[q + 16u][h] = wv.v[j].y;
                ws[q + 32u][h] = wv.v[j].z;
                ws[q + 48u][h] = wv.v[j].w;
            }
        } else {
            for (uint s = 0u; s < 3u; s++) {
                uint i = tid - 32u + 224u * s;
                if (i < 512u) {
                    uint tt = i & 63u;
                    float4 v = xa[s];
//#if NORM
                    v *= xb[s];
//#endif
//#if SWIGLU
                    v = v / (float4(1.0f) + exp(-v)) * xb[s];
//#endif
                    uint q = (4u * (i >> 6u)) * 16u + (tt >> 2u);
                    uint h = tt & 3u;
                    xs[q][h] = v.x;
                    xs[q + 16u][h] = v.y;
                    xs[q + 32u][h] = v.z;
                    xs[q + 48u][h] = v.w;
                }
            }
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
        // Loads for block b + 2 (weights) and b + 1 (inputs), in flight
        // during the products.
        if (b + 1u < p.blocks) {
            if (tid < 32u) {
                for (uint j = 0u; j < 8u; j++) {
                    wraw[j] = wnext[j];
                }
                if (wrow < p.rows && b + 2u < p.blocks) {
                    load_raw(m, wrow, b + 2u, wnext);
                }
            } else {
                for (uint s = 0u; s < 3u; s++) {
                    uint i = tid - 32u + 224u * s;
                    uint tt = i & 63u;
                    if (i < 512u && t0 + tt < n) {
                        uint base = (t0 + tt) * p.x_stride + (b + 1u) * 8u + (i >> 6u);
                        xa[s] = x[base];
//#if NORM
                        xb[s] = gain[(b + 1u) * 8u + (i >> 6u)];
//#endif
//#if SWIGLU
                        xb[s] = x[base + p.cols / 4u];
//#endif
                    }
                }
            }
        }
        for (uint k = 0u; k < 32u; k++) {
            float2 wk = ws[k * 16u + tr];
            float4 xk = xs[k * 16u + tc];
            acc0 += wk.x * xk;
            acc1 += wk.y * xk;
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }

    for (uint i = 0u; i < 2u; i++) {
        uint row = row0 + 2u * tr + i;
        float4 a = (i == 1u ? acc1 : acc0) * tsc;
        for (uint j = 0u; j < 4u; j++) {
            uint t = t0 + 4u * tc + j;
            if (row < p.rows && t < n) {
                float s = a[j];
                uint yi = t * p.y_stride + p.y_offset + row;
                if (p.accumulate != 0u) {
                    s += y[yi];
                }
                y[yi] = s;
            }
        }
    }
}
