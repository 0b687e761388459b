// matmul_q8.metal — MSL twin of matmul_q8.wgsl: matmul with int8 inputs,
//   P[s, t, row] = Σ_b A_row,b · d_t,b · Σ_k q_row,b,k · c_t,b,k + B_row,b · s_t,b
// (weight codes and (A, B) per format, input codes from quantize_rows),
// summed by matmul_reduce. Tiles, staging roles and layouts: see the WGSL
// twin. Bindings: 0 params, 1 w, 2 xq, 3 part, 4 chunk.

// What the helpers need (MSL has no module-scope buffers).
struct MatmulArgs {
    device const uint4* w;
    device const uint4* xq;
    uint blocks;
    uint part_tokens;
};

// The aligned words of one block.
struct Raw {
    uint4 r[3];
};

//#include words

// The aligned words holding block b of `row`: 2 (Q4_0, Q4_1) or 3 (Q8_0,
// the format without a flag).
Raw load_raw(MatmulArgs m, uint row, uint b) {
    Raw r;
    r.r[2] = uint4(0u);
//#if Q4_0
    uint o = ((row * m.blocks + b) * 18u) >> 4u;
    r.r[0] = m.w[o];
    r.r[1] = m.w[o + 1u];
//#else
//#if Q4_1
    uint o = ((row * m.blocks + b) * 20u) >> 4u;
    r.r[0] = m.w[o];
    r.r[1] = m.w[o + 1u];
//#else
    uint o = ((row * m.blocks + b) * 34u) >> 4u;
    r.r[0] = m.w[o];
    r.r[1] = m.w[o + 1u];
    r.r[2] = m.w[o + 2u];
//#endif
//#endif
    return r;
}

// Code words j and j + 4 of block b of `row` and the bits of its (A, B).
uint4 codes(MatmulArgs m, uint row, uint b, uint j, Raw r) {
//#if Q4_0
    Q4Block k = unpack_q4_0(r.r[0], r.r[1], (row * m.blocks + b) * 18u);
    uint qw = pick(k.q, j);
    return uint4(qw & 0x0F0F0F0Fu, (qw >> 4u) & 0x0F0F0F0Fu, as_type<uint>(k.d), as_type<uint>(-8.0f * k.d));
//#else
//#if Q4_1
    Q4Block k = unpack_q4_1(r.r[0], r.r[1], (row * m.blocks + b) * 20u);
    uint qw = pick(k.q, j);
    return uint4(qw & 0x0F0F0F0Fu, (qw >> 4u) & 0x0F0F0F0Fu, as_type<uint>(k.d), as_type<uint>(k.m));
//#else
    Q8Block k = unpack_q8_0(r.r[0], r.r[1], r.r[2], (row * m.blocks + b) * 34u);
    return uint4(pick(k.q0, j), pick(k.q1, j), as_type<uint>(k.d), 0u);
//#endif
//#endif
}

// Token row `trow`'s code words 4j..4j+3 of block b (j < 2), or the uint4
// holding its (d, s) (j = 2).
uint4 load_x(MatmulArgs m, uint trow, uint b, uint j) {
    uint tb = trow * m.blocks + b;
    if (j < 2u) {
        return m.xq[tb * 2u + j];
    }
    return m.xq[m.part_tokens * m.blocks * 2u + (tb >> 1u)];
}

[[max_total_threads_per_threadgroup(256)]]
kernel void compute_main(
    constant MatmulParams& p [[buffer(0)]],
    device const uint4* w [[buffer(1)]],
    device const uint4* xq [[buffer(2)]],
    device float* part [[buffer(3)]],
    device const uint* chunk [[buffer(4)]],
    uint tid [[thread_index_in_threadgroup]],
    uint3 wid [[threadgroup_position_in_grid]]
) {
    threadgroup uint4 wq[128];
    threadgroup float2 wab[64];
    threadgroup uint4 xqs[128];
    threadgroup float2 xds[64];
    MatmulArgs m;
    m.w = w;
    m.xq = xq;
    m.blocks = p.blocks;
    m.part_tokens = p.part_tokens;

    uint n = chunk[1];
    uint row0 = wid.x * 64u;
    uint seg = wid.y;
    uint t0 = wid.z * 64u;
    uint b0 = seg * p.seg_blocks;
    uint b1 = min(b0 + p.seg_blocks, p.blocks);
    uint tr = tid & 15u;
    uint tc = tid >> 4u;
    uint wr = tid >> 2u;
    uint wrow = row0 + wr;
    uint wj = tid & 3u;
    uint tt = tid >> 2u;
    uint xj = tid & 3u;
    bool xok = t0 + tt < n && xj < 3u;

    Raw wraw;
    Raw wnext;
    for (uint i = 0u; i < 3u; i++) {
        wraw.r[i] = uint4(0u);
        wnext.r[i] = uint4(0u);
    }
    uint4 xa = uint4(0u);
    if (wrow < p.rows) {
        wraw = load_raw(m, wrow, b0);
        if (b0 + 1u < b1) {
            wnext = load_raw(m, wrow, b0 + 1u);
        }
    }
    if (xok) {
        xa = load_x(m, t0 + tt, b0, xj);
    }

    float4 acc0 = float4(0.0f);
    float4 acc1 = float4(0.0f);
    float4 acc2 = float4(0.0f);
    float4 acc3 = float4(0.0f);
    for (uint b = b0; b < b1; b++) {
        uint4 c = uint4(0u);
        if (wrow < p.rows) {
            c = codes(m, wrow, b, wj, wraw);
        }
        uint qw = wj * 16u + (wr >> 2u);
        uint hw = wr & 3u;
        wq[qw][hw] = c.x;
        wq[qw + 64u][hw] = c.y;
        if (wj == 0u) {
            wab[wr] = as_type<float2>(uint2(c.z, c.w));
        }
        if (xj < 2u) {
            uint qx = 4u * xj * 16u + (tt >> 2u);
            uint hx = tt & 3u;
            xqs[qx][hx] = xa.x;
            xqs[qx + 16u][hx] = xa.y;
            xqs[qx + 32u][hx] = xa.z;
            xqs[qx + 48u][hx] = xa.w;
        } else if (xj == 2u) {
            bool odd = (((t0 + tt) * p.blocks + b) & 1u) != 0u;
            xds[tt] = as_type<float2>(odd ? uint2(xa.z, xa.w) : uint2(xa.x, xa.y));
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
        // Loads for block b + 2 (weights) and b + 1 (inputs).
        wraw = wnext;
        if (wrow < p.rows && b + 2u < b1) {
            wnext = load_raw(m, wrow, b + 2u);
        }
        if (xok && b + 1u < b1) {
            xa = load_x(m, t0 + tt, b + 1u, xj);
        }
        if (t0 + 4u * tc < n) {
            int4 i0 = int4(0);
            int4 i1 = int4(0);
            int4 i2 = int4(0);
            int4 i3 = int4(0);
            for (uint k = 0u; k < 8u; k++) {
                uint4 wv = wq[k * 16u + tr];
                uint4 xv = xqs[k * 16u + tc];
                i0 += int4(dot4i8(wv.x, xv.x), dot4i8(wv.x, xv.y), dot4i8(wv.x, xv.z), dot4i8(wv.x, xv.w));
                i1 += int4(dot4i8(wv.y, xv.x), dot4i8(wv.y, xv.y), dot4i8(wv.y, xv.z), dot4i8(wv.y, xv.w));
                i2 += int4(dot4i8(wv.z, xv.x), dot4i8(wv.z, xv.y), dot4i8(wv.z, xv.z), dot4i8(wv.z, xv.w));
                i3 += int4(dot4i8(wv.w, xv.x), dot4i8(wv.w, xv.y), dot4i8(wv.w, xv.z), dot4i8(wv.w, xv.w));
            }
            float2 e0 = xds[4u * tc];
            float2 e1 = xds[4u * tc + 1u];
            float2 e2 = xds[4u * tc + 2u];
            float2 e3 = xds[4u * tc + 3u];
            float4 xd = float4(e0.x, e1.x, e2.x, e3.x);
            float4 xs = float4(e0.y, e1.y, e2.y, e3.y);
            float2 a0 = wab[4u * tr];
            float2 a1 = wab[4u * tr + 1u];
            float2 a2 = wab[4u * tr + 2u];
            float2 a3 = wab[4u * tr + 3u];
            acc0 += a0.x * xd * float4(i0) + a0.y * xs;
            acc1 += a1.x * xd * float4(i1) + a1.y * xs;
            acc2 += a2.x * xd * float4(i2) + a2.y * xs;
            acc3 += a3.x * xd * float4(i3) + a3.y * xs;
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }

    uint pbase = seg * p.part_tokens;
    for (uint i = 0u; i < 4u; i++) {
        uint row = row0 + 4u * tr + i;
        float4 a = i == 0u ? acc0 : i == 1u ? acc1 : i == 2u ? acc2 : acc3;
        for (uint j = 0u; j < 4u; j++) {
            uint t = t0 + 4u * tc + j;
            if (row < p.rows && t < n) {
                part[(pbase + t) * p.rows + row] = a[j];
            }
        }
    }
}
