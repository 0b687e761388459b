// matmul.metal — MSL twin of matmul.wgsl: batched matrix products for
// prompt processing:
//   Y[t, row] (=|+=) W[row,:] · X[t,:]   for t in 0..n_tokens,
// W in its GGUF layout, read with aligned uint4 loads like the matvec
// kernels. The format is chosen by one flag: Q4_0, Q4_1, Q8_0, F16, else F32.
//
// Threadgroup layout: 256 threads = 8 rows × 32 lanes, and a tile of 16
// tokens (threadgroup z). Lane l of a row takes blocks l, l+32, ...; each
// weight block is decoded once into registers and multiplied with the 16
// tokens' inputs, so W is read once per 16 tokens instead of once per token.
//
// Token t's input row starts at vec4 index t·x_stride of X; its output row
// at float t·y_stride + y_offset of Y. The token count is chunk[1].
//
// Variants: NORM fuses RMSNorm per token (a scalar per token, applied after
// the dot); SWIGLU: X[t] holds gate then up and the input is silu(gate) ⊙ up.
// SUBGROUPS pre-reduces the lane sums with SIMD-group shuffles (any width),
// else all 32 partials of a row go through threadgroup memory. Bindings: the
// same as matmul.wgsl, in the same order: 0 params, 1 w, 2 x, 3 y, 4 chunk,
// 5 gain.

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

// 4 input floats at vec4 index i of the token row starting at vec4 `base`.
float4 xg(MatmulArgs m, uint base, uint i) {
//#if NORM
    return m.x[base + i] * m.gain[i];
//#else
//#if SWIGLU
    float4 g = m.x[base + i];
    float4 u = m.x[base + m.cols / 4u + i];
    return g / (float4(1.0f) + exp(-g)) * u;
//#else
    return m.x[base + i];
//#endif
//#endif
}

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

// Block b of `row` dequantized.
Block decode_block(MatmulArgs m, uint row, uint b) {
    Block r;
//#if Q4_0
    // 18-byte blocks at even offsets: within two aligned words (see matvec_q4_0).
    uint o = (row * m.blocks + b) * 18u;
    uint4 a = m.w[o >> 4u];
    uint4 c = m.w[(o >> 4u) + 1u];
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
    uint4 a = m.w[o >> 4u];
    uint4 c = m.w[(o >> 4u) + 1u];
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
    uint4 a = m.w[o >> 4u];
    uint4 c = m.w[(o >> 4u) + 1u];
    uint4 e = m.w[(o >> 4u) + 2u];
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
    uint o = (row * m.blocks + b) * 4u;
    for (uint j = 0u; j < 4u; j++) {
        uint4 q = m.w[o + j];
        r.v[2u * j] = float4(float2(as_type<half2>(q.x)), float2(as_type<half2>(q.y)));
        r.v[2u * j + 1u] = float4(float2(as_type<half2>(q.z)), float2(as_type<half2>(q.w)));
    }
//#else
    uint o = (row * m.blocks + b) * 8u;
    for (uint j = 0u; j < 8u; j++) {
        r.v[j] = as_type<float4>(m.w[o + j]);
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
//#if SUBGROUPS
    , uint sg_size [[threads_per_simdgroup]]
//#endif
) {
    threadgroup float part[2048];
    threadgroup float tscale[16];
    MatmulArgs m;
    m.w = w;
    m.x = x;
//#if NORM
    m.gain = gain;
//#endif
    m.cols = p.cols;
    m.blocks = p.blocks;

    uint n = chunk[1];
    uint row0 = (wid.x + wid.y * nwg.x) * 8u;
    uint row = row0 + (tid >> 5u);
    uint lane = tid & 31u;
    uint t0 = wid.z * 16u;

    float acc[16];
    for (uint k = 0u; k < 16u; k++) {
        acc[k] = 0.0f;
    }
    if (row < p.rows) {
        for (uint b = lane; b < p.blocks; b += 32u) {
            Block wv = decode_block(m, row, b);
            for (uint k = 0u; k < 16u; k++) {
                if (t0 + k >= n) {
                    break;
                }
                uint base = (t0 + k) * p.x_stride;
                float s = 0.0f;
                for (uint j = 0u; j < 8u; j++) {
                    s += dot(wv.v[j], xg(m, base, b * 8u + j));
                }
                acc[k] += s;
            }
        }
    }

//#if NORM
    // sum(x²) of each tile token: 16 threads per token.
    {
        uint k = tid >> 4u;
        float ss = 0.0f;
        if (t0 + k < n) {
            uint base = (t0 + k) * p.x_stride;
            for (uint i = tid & 15u; i < p.cols / 4u; i += 16u) {
                float4 v = x[base + i];
                ss += dot(v, v);
            }
        }
        part[tid] = ss;
        threadgroup_barrier(mem_flags::mem_threadgroup);
        if (tid < 16u) {
            float s = 0.0f;
            for (uint i = 0u; i < 16u; i++) {
                s += part[tid * 16u + i];
            }
            tscale[tid] = rsqrt(s / float(p.cols) + p.eps);
        }
    }
//#endif

    // Sum each (row, token) over its 32 lanes, 8 tokens per round.
    uint g = 1u;
//#if SUBGROUPS
    g = min(32u, sg_size);
//#endif
    for (uint r = 0u; r < 2u; r++) {
        threadgroup_barrier(mem_flags::mem_threadgroup);
        for (uint k = 0u; k < 8u; k++) {
            float v = acc[r * 8u + k];
//#if SUBGROUPS
            for (uint off = g >> 1u; off > 0u; off >>= 1u) {
                v += simd_shuffle_xor(v, ushort(off));
            }
//#endif
            part[k * 256u + tid] = v;
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
        if (tid < 64u) {
            uint k = r * 8u + (tid & 7u);
            uint rr = row0 + (tid >> 3u);
            uint t = t0 + k;
            if (rr < p.rows && t < n) {
                uint base = (tid & 7u) * 256u + (tid >> 3u) * 32u;
                float s = 0.0f;
                for (uint l = 0u; l < 32u; l += g) {
                    s += part[base + l];
                }
//#if NORM
                s *= tscale[k];
//#endif
                uint yi = t * p.y_stride + p.y_offset + rr;
                if (p.accumulate != 0u) {
                    s += y[yi];
                }
                y[yi] = s;
            }
        }
    }
}
