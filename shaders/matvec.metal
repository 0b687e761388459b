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
// SWIGLU fuses the FFN gate: y = W · (silu(gate) ⊙ up). ATTN (with XSH)
// merges decode attention's per-chunk partials while staging x (binding 4:
// the step's position; see matvec.wgsl).
// Q8X (implies XSH) stages x quantized to 8 bits per 32-element block and
// takes block dots four int8 products at a time (dot_raw_q8); XQ2 adds a
// second level, the remainder at scale d/254 (see matvec.wgsl).
// PF (implies XSH) loads each lane's weight words (raw_load) before x is
// staged; RPT2/RPT4 give each thread 2 or 4 rows; PFC (implies XSH) loads
// each lane's two blocks of a chunk before that chunk is staged; CR2/CR4
// (imply XSH) give each thread 2 or 4 rows in the chunk loop, every row's
// words of a block loaded before any is used (see matvec.wgsl). DENSE
// (implies XSH) takes p.group_rows rows per threadgroup as one slab of
// blocks, thread t the blocks t, t + 256, ..., each row's block dots added
// from threadgroup memory (see matvec.wgsl).
// SUBGROUPS reduces with SIMD-group shuffles (any width), else with
// threadgroup memory. Bindings: the same as matvec.wgsl, in the same order
// (wgpu gives buffer slots in binding order): 0 params, 1 w, 2 x, 3 y, 4 gain.

// Rows per thread: RPT2/RPT4 (imply PF), CR2/CR4 (imply CR; see matvec.wgsl).
//#if RPT4
constant uint RPT = 4u;
//#define PF
//#else
//#if RPT2
constant uint RPT = 2u;
//#define PF
//#else
//#if CR4
constant uint RPT = 4u;
//#define CR
//#else
//#if CR2
constant uint RPT = 2u;
//#define CR
//#else
constant uint RPT = 1u;
//#endif
//#endif
//#endif
//#endif
//#if PF
//#define ACC
//#endif
//#if CR
//#define ACC
//#define XSH
//#endif
//#if Q8X
//#define XSH
//#endif
//#if PF
//#define XSH
//#endif
//#if PFC
//#define XSH
//#endif
//#if DENSE
//#define XSH
//#endif

//#include reduce

// Helpers for the block formats' block_dot (twins of matvec.wgsl's).

//#include words

// Nibbles to floats without int→float conversions: EXP | n, read as float,
// is exactly 2^23 + n for n < 2^23; a nibble masked in place stays scaled by
// its bit position (see matvec.wgsl), undone once per block.
constant uint EXP = 0x4B000000u;
constant float4 Q4_LO_SCALE = float4(1.0f, 1.0f / 256.0f, 1.0f / 65536.0f, 1.0f);
constant float4 Q4_HI_SCALE = float4(1.0f / 16.0f, 1.0f / 4096.0f, 1.0f / 16.0f, 1.0f);
float4 q4_lo(uint q) {
    return as_type<float4>(uint4(q & 0xFu, q & 0xF00u, q & 0xF0000u, (q >> 24u) & 0xFu) | uint4(EXP));
}
float4 q4_hi(uint q) {
    return as_type<float4>(uint4(q & 0xF0u, q & 0xF000u, (q >> 16u) & 0xF0u, q >> 28u) | uint4(EXP));
}

// Σ of a Q4 block's 32 nibbles times the input codes (see matvec.wgsl).
int nib_dot(uint4 q, uint4 xa, uint4 xb) {
    uint4 lo = q & uint4(0x0F0F0F0Fu);
    uint4 hi = (q >> uint4(4u)) & uint4(0x0F0F0F0Fu);
    return (dot4i8(lo.x, xa.x) + dot4i8(lo.y, xa.y)) + (dot4i8(lo.z, xa.z) + dot4i8(lo.w, xa.w))
        + (dot4i8(hi.x, xb.x) + dot4i8(hi.y, xb.y)) + (dot4i8(hi.z, xb.z) + dot4i8(hi.w, xb.w));
}

// What the per-format helpers need (MSL has no module-scope buffers).
struct MatvecArgs {
    device const uint4* w;
    device const float4* x;
//#if NORM
    device const float4* gain;
//#endif
//#if ATTN
    device const uint* step;
    uint head_dim;   // MatvecParams::head_dim
    uint max_chunks; // MatvecParams::max_chunks
//#endif
    uint cols;     // MatvecParams::cols
    uint blocks;   // MatvecParams::blocks
    uint x_offset; // MatvecParams::x_offset
};

//#if ATTN
// The attention output's float4 i, and into o1 with `pair` float4 i + 1 (the
// caller keeps both in one head), merged from the chunks' records (chunk c,
// head h at (c·heads + h)·(hd/4 + 1) float4s: (m, l, −, −), then o) as in
// matvec.wgsl.
float4 attn_merge(MatvecArgs m, uint i, bool pair, thread float4& o1) {
    uint hd4 = m.head_dim / 4u;
    uint heads = m.cols / m.head_dim;
    uint h = i / hd4;
    uint n = min(m.step[0] / 64u + 1u, m.max_chunks);
    float mx = -3.4e38f;
    for (uint c = 0u; c < n; c++) {
        mx = max(mx, m.x[(c * heads + h) * (hd4 + 1u)].x);
    }
    float4 o0 = float4(0.0f);
    float4 p1 = float4(0.0f);
    float l = 0.0f;
    for (uint c = 0u; c < n; c++) {
        uint b = (c * heads + h) * (hd4 + 1u);
        float4 ml = m.x[b];
        float e = exp(ml.x - mx);
        l += e * ml.y;
        uint k = b + 1u + i % hd4;
        o0 += e * m.x[k];
        if (pair) {
            p1 += e * m.x[k + 1u];
        }
    }
    o1 = p1 / l;
    return o0 / l;
}
//#endif

// The input vector, 4 floats starting at vec4 index i: x ⊙ gain with NORM,
// silu(gate) ⊙ up with SWIGLU (x holds gate then up, each `cols` long), the
// merged attention output with ATTN, else x itself.
float4 xg(MatvecArgs m, uint i) {
//#if NORM
    return m.x[m.x_offset + i] * m.gain[i];
//#else
//#if SWIGLU
    float4 g = m.x[m.x_offset + i];
    float4 u = m.x[m.x_offset + m.cols / 4u + i];
    return g / (float4(1.0f) + exp(-g)) * u;
//#else
//#if ATTN
    float4 unused;
    return attn_merge(m, i, false, unused);
//#else
    return m.x[m.x_offset + i];
//#endif
//#endif
//#endif
}

//#if Q8X
// xg(i) and xg(i + 1) for even i; ATTN merges both from one pass over the
// chunks when they lie in one head (an even number of float4s per head;
// see matvec.wgsl).
void xg2(MatvecArgs m, uint i, thread float4& x0, thread float4& x1) {
//#if ATTN
    if ((m.head_dim / 4u) % 2u == 0u) {
        x0 = attn_merge(m, i, true, x1);
        return;
    }
//#endif
    x0 = xg(m, i);
    x1 = xg(m, i + 1u);
}
//#endif

// Defined by the including matvec_<format>.metal.
float block_dot(MatvecArgs m, uint row, uint b, thread const float4* xv);
//#if Q8X
Raw raw_load(MatvecArgs m, uint row, uint b);
float dot_raw_q8(MatvecArgs m, Raw r, uint row, uint b, uint4 xa, uint4 xb, float d, float s);
//#endif
// Raw is declared before the include by the formats that have these (Q8X,
// PF, PFC and CR kernels; a repeated declaration is allowed).
//#if PF
Raw raw_load(MatvecArgs m, uint row, uint b);
float dot_raw(MatvecArgs m, Raw r, uint row, uint b, thread const float4* xv);
float dot_raw_q8(MatvecArgs m, Raw r, uint row, uint b, uint4 xa, uint4 xb, float d, float s);
//#endif
//#if PFC
Raw raw_load(MatvecArgs m, uint row, uint b);
float dot_raw(MatvecArgs m, Raw r, uint row, uint b, thread const float4* xv);
float dot_raw_q8(MatvecArgs m, Raw r, uint row, uint b, uint4 xa, uint4 xb, float d, float s);
//#endif
//#if CR
Raw raw_load(MatvecArgs m, uint row, uint b);
float dot_raw(MatvecArgs m, Raw r, uint row, uint b, thread const float4* xv);
float dot_raw_q8(MatvecArgs m, Raw r, uint row, uint b, uint4 xa, uint4 xb, float d, float s);
//#endif
//#if DENSE
Raw raw_load(MatvecArgs m, uint row, uint b);
float dot_raw(MatvecArgs m, Raw r, uint row, uint b, thread const float4* xv);
float dot_raw_q8(MatvecArgs m, Raw r, uint row, uint b, uint4 xa, uint4 xb, float d, float s);

// The dot of slab block i (block b of its row, row0 the slab's first row)
// with the staged x (xq2 is xq without XQ2; see matvec.wgsl).
//#if Q8X
float dense_dot(MatvecArgs m, Raw r, uint row0, uint i, uint b, threadgroup const uint4* xq,
    threadgroup const uint4* xq2, threadgroup const float4* xsum, threadgroup const float* xd) {
    float4 s = xsum[b];
    float t = dot_raw_q8(m, r, row0, i, xq[b], xq[64u + b], xd[b], (s.x + s.y) + (s.z + s.w));
//#if XQ2
    t += dot_raw_q8(m, r, row0, i, xq2[b], xq2[64u + b], xd[b] * (1.0f / 254.0f), 0.0f);
//#endif
    return t;
}
//#else
float dense_dot(MatvecArgs m, Raw r, uint row0, uint i, uint b, threadgroup const float4* xs) {
    float4 xv[8];
    for (uint j = 0u; j < 8u; j++) {
        xv[j] = xs[j * 64u + b];
    }
    return dot_raw(m, r, row0, i, xv);
}
//#endif
//#endif

//#if NORM
//#if XSH
// The RMSNorm scale of staged kernels from `sq`, the squares this thread's
// row slot staged: the 8 slots' sums added through threadgroup memory (see
// matvec.wgsl). Call in uniform control flow.
float staged_norm_scale(constant MatvecParams& p, threadgroup float* xsq, float sq, uint tid) {
    if ((tid & 31u) == 0u) {
        xsq[tid >> 5u] = sq;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    float total_sq = ((xsq[0] + xsq[1]) + (xsq[2] + xsq[3])) + ((xsq[4] + xsq[5]) + (xsq[6] + xsq[7]));
    return rsqrt(total_sq / float(p.cols) + p.eps);
}
//#endif
//#endif

[[max_total_threads_per_threadgroup(256)]]
kernel void compute_main(
    constant MatvecParams& p [[buffer(0)]],
    device const uint4* w [[buffer(1)]],
    device const float4* x [[buffer(2)]],
    device float* y [[buffer(3)]],
//#if NORM
    device const float4* gain [[buffer(4)]],
//#endif
//#if ATTN
    device const uint* step [[buffer(4)]],
//#endif
    uint tid [[thread_index_in_threadgroup]],
    uint3 wid [[threadgroup_position_in_grid]],
    uint3 nwg [[threadgroups_per_grid]]
//#if SUBGROUPS
    , uint sg_size [[threads_per_simdgroup]]
//#endif
) {
    threadgroup float4 red4[256];
//#if XSH
//#if Q8X
    // Chunk block b: codes in xq[b] (elements 0..15), xq[64 + b] (16..31);
    // per-quarter |max| and d·Σcodes in xam[b], xsum[b]; scale d in xd[b].
    threadgroup uint4 xq[128];
//#if XQ2
    // XQ2: the second level, codes of x − d·codes at scale d/254, as xq.
    threadgroup uint4 xq2[128];
//#endif
    threadgroup float4 xam[64];
    threadgroup float4 xsum[64];
    threadgroup float xd[64];
//#else
    threadgroup float4 xs[512];
//#endif
    threadgroup float xsq[8];
//#endif
//#if DENSE
    // The block dots of the threadgroup's slab, block i at dpart[i].
    threadgroup float dpart[DENSE_ITEMS];
//#endif
//#if !SUBGROUPS
    uint sg_size = 1u;
//#endif
    MatvecArgs m;
    m.w = w;
    m.x = x;
//#if NORM
    m.gain = gain;
//#endif
//#if ATTN
    m.step = step;
    m.head_dim = p.head_dim;
    m.max_chunks = p.max_chunks;
//#endif
    m.cols = p.cols;
    m.blocks = p.blocks;
    m.x_offset = p.x_offset;

    uint group = wid.x + wid.y * nwg.x;
//#if ROWS4
    // 2 halves × 128 lanes; a half takes 4 consecutive rows and lane l blocks
    // l, l+128, …: every block of x loaded is used for 4 rows. Not with NORM.
    uint row0 = group * 8u + (tid >> 7u) * 4u;
    float4 v4 = float4(0.0f);
    for (uint b = tid & 127u; b < p.blocks; b += 128u) {
        float4 xv[8];
        for (uint j = 0u; j < 8u; j++) {
            xv[j] = xg(m, b * 8u + j);
        }
        for (uint k = 0u; k < 4u; k++) {
            if (row0 + k < p.rows) {
                v4[k] += block_dot(m, row0 + k, b, xv);
            }
        }
    }
    float4 r4 = reduce_half(v4, red4, tid, sg_size);
    if ((tid & 127u) == 0u) {
        for (uint k = 0u; k < 4u; k++) {
            uint row = row0 + k;
            if (row < p.rows) {
                float out = r4[k];
                if (p.accumulate != 0u) {
                    out += y[p.y_offset + row];
                }
                y[p.y_offset + row] = out;
            }
        }
    }
//#else
    uint row = group * 8u * RPT + (tid >> 5u);
    uint lane = tid & 31u;

    // v.x: this lane's share of the row's dot product; v.y (NORM): its share
    // of sum(x²).
    float2 v = float2(0.0f);
    // acc[k] (PF, CR): row row + 8k's share.
    float4 acc = float4(0.0f);
//#if PF
    // Lane l's weight words of block l in rows row + 8k, loaded before x is
    // staged (see matvec.wgsl).
    Raw raw[4];
    for (uint k = 0u; k < RPT; k++) {
        if (row + 8u * k < p.rows && lane < p.blocks) {
            raw[k] = raw_load(m, row + 8u * k, lane);
        }
    }
//#endif
//#if DENSE
    // The threadgroup's rows as one slab of `items` blocks; thread t takes
    // blocks t, t + 256, ..., two in flight, the first two loaded before x
    // is staged; ib: block i's index within its row (see matvec.wgsl).
    uint row0 = group * p.group_rows;
    uint items = row0 < p.rows ? min(p.group_rows, p.rows - row0) * p.blocks : 0u;
    uint step_b = 256u % p.blocks;
    uint ib = tid % p.blocks;
    Raw ra;
    Raw rb;
    if (tid < items) {
        ra = raw_load(m, row0, tid);
    }
    if (tid + 256u < items) {
        rb = raw_load(m, row0, tid + 256u);
    }
//#if Q8X
//#if XQ2
    threadgroup const uint4* xq2p = xq2;
//#else
    threadgroup const uint4* xq2p = xq;
//#endif
//#endif
//#endif
//#if XSH
    // The input vector staged in threadgroup memory 64 blocks at a time,
    // transposed: vec4 j of chunk block b at xs[j·64 + b] (see matvec.wgsl).
    for (uint c0 = 0u; c0 < p.blocks; c0 += 64u) {
        uint cn = min(64u, p.blocks - c0);
//#if PFC
        // This chunk's weight words (lane's blocks l and l + 32), loaded
        // before the staging.
        Raw r0;
        Raw r1;
        if (row < p.rows) {
            if (lane < cn) {
                r0 = raw_load(m, row, c0 + lane);
            }
            if (lane + 32u < cn) {
                r1 = raw_load(m, row, c0 + lane + 32u);
            }
        }
//#endif
        threadgroup_barrier(mem_flags::mem_threadgroup);
//#if Q8X
        // Thread t quantizes elements 8q .. 8q+7 (q = t mod 4) of chunk block
        // t/4 (see matvec.wgsl).
        uint sb = tid >> 2u;
        uint qq = tid & 3u;
        float4 x0 = float4(0.0f);
        float4 x1 = float4(0.0f);
        if (sb < cn) {
            uint i = (c0 + sb) * 8u + qq * 2u;
//#if NORM
            float4 t0 = x[p.x_offset + i];
            float4 t1 = x[p.x_offset + i + 1u];
            v.y += dot(t0, t0) + dot(t1, t1);
//#endif
            xg2(m, i, x0, x1);
            float4 a = max(abs(x0), abs(x1));
            xam[sb][qq] = max(max(a.x, a.y), max(a.z, a.w));
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
        if (sb < cn) {
            float4 am = xam[sb];
            float d = max(max(am.x, am.y), max(am.z, am.w)) / 127.0f;
            float id = d != 0.0f ? 1.0f / d : 0.0f;
            int4 q0 = int4(rint(x0 * id));
            int4 q1 = int4(rint(x1 * id));
            uint k = (qq >> 1u) * 64u + sb;
            xq[k][(qq & 1u) * 2u] = pack4i8(q0);
            xq[k][(qq & 1u) * 2u + 1u] = pack4i8(q1);
            int4 qs = q0 + q1;
            float sum = d * float((qs.x + qs.y) + (qs.z + qs.w));
//#if XQ2
            // What the first level missed, x/d − q ∈ [−½, ½], in codes of
            // d/254 (scaled after the subtraction: 254/d may overflow).
            int4 p0 = clamp(int4(rint((x0 * id - float4(q0)) * 254.0f)), int4(-127), int4(127));
            int4 p1 = clamp(int4(rint((x1 * id - float4(q1)) * 254.0f)), int4(-127), int4(127));
            xq2[k][(qq & 1u) * 2u] = pack4i8(p0);
            xq2[k][(qq & 1u) * 2u + 1u] = pack4i8(p1);
            int4 ps = p0 + p1;
            sum += d * (1.0f / 254.0f) * float((ps.x + ps.y) + (ps.z + ps.w));
//#endif
            xsum[sb][qq] = sum;
            if (qq == 0u) {
                xd[sb] = d;
            }
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
//#if PF
        if (lane < cn) {
            float4 s4 = xsum[lane];
            float ss = (s4.x + s4.y) + (s4.z + s4.w);
            uint4 xa = xq[lane];
            uint4 xb = xq[64u + lane];
            float dx = xd[lane];
//#if XQ2
            uint4 xa2 = xq2[lane];
            uint4 xb2 = xq2[64u + lane];
//#endif
            for (uint k = 0u; k < RPT; k++) {
                if (row + 8u * k < p.rows) {
                    acc[k] += dot_raw_q8(m, raw[k], row + 8u * k, lane, xa, xb, dx, ss);
//#if XQ2
                    acc[k] += dot_raw_q8(m, raw[k], row + 8u * k, lane, xa2, xb2, dx * (1.0f / 254.0f), 0.0f);
//#endif
                }
            }
        }
//#else
//#if CR
        // Lane l: blocks l, l + 32 of the chunk for its RPT rows (see
        // matvec.wgsl).
        for (uint b = lane; b < cn; b += 32u) {
            Raw rr[4];
            for (uint k = 0u; k < RPT; k++) {
                if (row + 8u * k < p.rows) {
                    rr[k] = raw_load(m, row + 8u * k, c0 + b);
                }
            }
            float4 s4 = xsum[b];
            float ss = (s4.x + s4.y) + (s4.z + s4.w);
            uint4 xa = xq[b];
            uint4 xb = xq[64u + b];
            float dx = xd[b];
//#if XQ2
            uint4 xa2 = xq2[b];
            uint4 xb2 = xq2[64u + b];
//#endif
            for (uint k = 0u; k < RPT; k++) {
                if (row + 8u * k < p.rows) {
                    acc[k] += dot_raw_q8(m, rr[k], row + 8u * k, c0 + b, xa, xb, dx, ss);
//#if XQ2
                    acc[k] += dot_raw_q8(m, rr[k], row + 8u * k, c0 + b, xa2, xb2, dx * (1.0f / 254.0f), 0.0f);
//#endif
                }
            }
        }
//#else
//#if PFC
        if (row < p.rows) {
            if (lane < cn) {
                float4 s0 = xsum[lane];
                v.x += dot_raw_q8(m, r0, row, c0 + lane, xq[lane], xq[64u + lane], xd[lane], (s0.x + s0.y) + (s0.z + s0.w));
//#if XQ2
                v.x += dot_raw_q8(m, r0, row, c0 + lane, xq2[lane], xq2[64u + lane], xd[lane] * (1.0f / 254.0f), 0.0f);
//#endif
            }
            if (lane + 32u < cn) {
                float4 s1 = xsum[lane + 32u];
                v.x += dot_raw_q8(m, r1, row, c0 + lane + 32u, xq[lane + 32u], xq[96u + lane], xd[lane + 32u], (s1.x + s1.y) + (s1.z + s1.w));
//#if XQ2
                v.x += dot_raw_q8(m, r1, row, c0 + lane + 32u, xq2[lane + 32u], xq2[96u + lane], xd[lane + 32u] * (1.0f / 254.0f), 0.0f);
//#endif
            }
        }
//#else
//#if !DENSE
        if (row < p.rows) {
            // Two blocks per step (see matvec.wgsl).
            uint b = lane;
            for (; b + 32u < cn; b += 64u) {
                float4 s0 = xsum[b];
                float4 s1 = xsum[b + 32u];
                Raw r0 = raw_load(m, row, c0 + b);
                Raw r1 = raw_load(m, row, c0 + b + 32u);
                v.x += dot_raw_q8(m, r0, row, c0 + b, xq[b], xq[64u + b], xd[b], (s0.x + s0.y) + (s0.z + s0.w))
                    + dot_raw_q8(m, r1, row, c0 + b + 32u, xq[b + 32u], xq[96u + b], xd[b + 32u], (s1.x + s1.y) + (s1.z + s1.w));
//#if XQ2
                v.x += dot_raw_q8(m, r0, row, c0 + b, xq2[b], xq2[64u + b], xd[b] * (1.0f / 254.0f), 0.0f)
                    + dot_raw_q8(m, r1, row, c0 + b + 32u, xq2[b + 32u], xq2[96u + b], xd[b + 32u] * (1.0f / 254.0f), 0.0f);
//#endif
            }
            if (b < cn) {
                float4 sq4 = xsum[b];
                Raw r0 = raw_load(m, row, c0 + b);
                v.x += dot_raw_q8(m, r0, row, c0 + b, xq[b], xq[64u + b], xd[b], (sq4.x + sq4.y) + (sq4.z + sq4.w));
//#if XQ2
                v.x += dot_raw_q8(m, r0, row, c0 + b, xq2[b], xq2[64u + b], xd[b] * (1.0f / 254.0f), 0.0f);
//#endif
            }
        }
//#endif
//#endif
//#endif
//#endif
//#else
        for (uint i = tid; i < cn * 8u; i += 256u) {
//#if NORM
            float4 t = x[p.x_offset + c0 * 8u + i];
            v.y += dot(t, t);
//#endif
            xs[(i & 7u) * 64u + (i >> 3u)] = xg(m, c0 * 8u + i);
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
//#if PF
        if (lane < cn) {
            float4 xv[8];
            for (uint j = 0u; j < 8u; j++) {
                xv[j] = xs[j * 64u + lane];
            }
            for (uint k = 0u; k < RPT; k++) {
                if (row + 8u * k < p.rows) {
                    acc[k] += dot_raw(m, raw[k], row + 8u * k, lane, xv);
                }
            }
        }
//#else
//#if CR
        for (uint b = lane; b < cn; b += 32u) {
            Raw rr[4];
            for (uint k = 0u; k < RPT; k++) {
                if (row + 8u * k < p.rows) {
                    rr[k] = raw_load(m, row + 8u * k, c0 + b);
                }
            }
            float4 xv[8];
            for (uint j = 0u; j < 8u; j++) {
                xv[j] = xs[j * 64u + b];
            }
            for (uint k = 0u; k < RPT; k++) {
                if (row + 8u * k < p.rows) {
                    acc[k] += dot_raw(m, rr[k], row + 8u * k, c0 + b, xv);
                }
            }
        }
//#else
//#if PFC
        if (row < p.rows) {
            float4 xv[8];
            if (lane < cn) {
                for (uint i = 0u; i < 8u; i++) {
                    xv[i] = xs[i * 64u + lane];
                }
                v.x += dot_raw(m, r0, row, c0 + lane, xv);
            }
            if (lane + 32u < cn) {
                for (uint i = 0u; i < 8u; i++) {
                    xv[i] = xs[i * 64u + lane + 32u];
                }
                v.x += dot_raw(m, r1, row, c0 + lane + 32u, xv);
            }
        }
//#else
//#if !DENSE
        if (row < p.rows) {
            for (uint b = lane; b < cn; b += 32u) {
                float4 xv[8];
                for (uint j = 0u; j < 8u; j++) {
                    xv[j] = xs[j * 64u + b];
                }
                v.x += block_dot(m, row, c0 + b, xv);
            }
        }
//#endif
//#endif
//#endif
//#endif
//#endif
//#if DENSE
        // Blocks i and i + 256 from ra, rb while the next two load.
        for (uint i = tid; i < items; i += 512u) {
            uint ib2 = ib + step_b;
            if (ib2 >= p.blocks) {
                ib2 -= p.blocks;
            }
            Raw ra2;
            Raw rb2;
            if (i + 512u < items) {
                ra2 = raw_load(m, row0, i + 512u);
            }
            if (i + 768u < items) {
                rb2 = raw_load(m, row0, i + 768u);
            }
//#if Q8X
            dpart[i] = dense_dot(m, ra, row0, i, ib, xq, xq2p, xsum, xd);
            if (i + 256u < items) {
                dpart[i + 256u] = dense_dot(m, rb, row0, i + 256u, ib2, xq, xq2p, xsum, xd);
            }
//#else
            dpart[i] = dense_dot(m, ra, row0, i, ib, xs);
            if (i + 256u < items) {
                dpart[i + 256u] = dense_dot(m, rb, row0, i + 256u, ib2, xs);
            }
//#endif
            ra = ra2;
            rb = rb2;
            ib = ib2 + step_b;
            if (ib >= p.blocks) {
                ib -= p.blocks;
            }
        }
//#endif
    }
//#if ACC
    v.x = acc.x;
//#endif
//#else
    if (row < p.rows) {
        for (uint b = lane; b < p.blocks; b += 32u) {
            float4 xv[8];
            for (uint j = 0u; j < 8u; j++) {
                xv[j] = xg(m, b * 8u + j);
            }
            v.x += block_dot(m, row, b, xv);
        }
    }
//#endif
//#if NORM
//#if !XSH
    // Every row recomputes sum(x²) from cache-resident x: no extra barrier.
    for (uint i = lane; i < p.cols / 4u; i += 32u) {
        float4 t = x[p.x_offset + i];
        v.y += dot(t, t);
    }
//#endif
//#endif
//#if DENSE
    // Thread t < the slab's rows adds row t's block dots, starting at block
    // t mod blocks, so a SIMD-group's reads fall in distinct banks (see
    // matvec.wgsl).
    threadgroup_barrier(mem_flags::mem_threadgroup);
    uint nr = items / p.blocks;
    float dt = 0.0f;
    if (tid < nr) {
        uint base = tid * p.blocks;
        uint b = tid % p.blocks;
        for (uint k = 0u; k < p.blocks; k++) {
            dt += dpart[base + b];
            b += 1u;
            if (b == p.blocks) {
                b = 0u;
            }
        }
    }
//#if NORM
    dt *= staged_norm_scale(p, xsq, reduce_row(v, red4, tid, sg_size).y, tid);
//#endif
    if (tid < nr) {
        float out = dt;
        if (p.accumulate != 0u) {
            out += y[p.y_offset + row0 + tid];
        }
        y[p.y_offset + row0 + tid] = out;
    }
//#else
    // r: the row's dot product and (NORM) sum of squares; total: the dot
    // products of the thread's RPT rows (see matvec.wgsl).
    float2 r = float2(0.0f);
    float4 total = float4(0.0f);
    if (RPT > 1u) {
        total = reduce_row4(acc, red4, tid, sg_size);
//#if NORM
        r = reduce_row(v, red4, tid, sg_size);
//#endif
    } else {
        r = reduce_row(v, red4, tid, sg_size);
        total.x = r.x;
    }
//#if NORM
//#if XSH
    total *= staged_norm_scale(p, xsq, r.y, tid);
//#else
    // rmsnorm(x) = x / sqrt(mean(x²) + eps): a scalar, applied after the dot.
    total *= rsqrt(r.y / float(p.cols) + p.eps);
//#endif
//#endif
    if (lane == 0u) {
        for (uint k = 0u; k < RPT; k++) {
            uint rk = row + 8u * k;
            if (rk < p.rows) {
                float out = total[k];
                if (p.accumulate != 0u) {
                    out += y[p.y_offset + rk];
                }
                y[p.y_offset + rk] = out;
            }
        }
    }
//#endif
//#endif
}
