// matvec_stage.metal — MSL twin of matvec_stage.wgsl: the input vector staged
// in threadgroup memory for the `staged` and `dense` families (include after
// matvec_common). The kernels declare the arrays (MSL has no module-scope
// threadgroup variables) and pass them down as STAGED / STAGED_PARAMS.

//#if INT8
// Chunk block b: codes of elements 0..15 in xq[b], 16..31 in xq[64 + b];
// per-quarter |max| in xam[b], per-quarter d·Σcodes in xsum[b]; the scale d
// in xd[b]; INT8X2's second level in xq2 (xq itself without INT8X2).
#define STAGED xq, xq2, xam, xsum, xd, xsq
#define STAGED_PARAMS threadgroup uint4* xq, threadgroup uint4* xq2, threadgroup float4* xam, \
    threadgroup float4* xsum, threadgroup float* xd, threadgroup float* xsq

// One staged block of x as a dot needs it.
struct XBlock {
    uint4 lo;
    uint4 hi;
    float d;
    float2 s; // per half (elements 0..15, 16..31): d·Σcodes of both levels
//#if INT8X2
    uint4 lo2;
    uint4 hi2;
//#endif
};

XBlock staged_block(STAGED_PARAMS, uint b) {
    float4 s = xsum[b];
    XBlock xb;
    xb.lo = xq[b];
    xb.hi = xq[64u + b];
    xb.d = xd[b];
    xb.s = float2(s.x + s.y, s.z + s.w);
//#if INT8X2
    xb.lo2 = xq2[b];
    xb.hi2 = xq2[64u + b];
//#endif
    return xb;
}

//#if RAW
// Block b of `row`, from its loaded words r, dotted with staged block xb.
float xblock_dot(MatvecArgs m, Raw r, uint row, uint b, XBlock xb) {
//#if INT8X2
    return dot_raw_q8(m, r, row, b, xb.lo, xb.hi, xb.lo2, xb.hi2, xb.d, xb.s);
//#else
    return dot_raw_q8(m, r, row, b, xb.lo, xb.hi, xb.lo, xb.hi, xb.d, xb.s);
//#endif
}
//#endif

// Stages chunk blocks c0 .. c0 + cn (cn ≤ 64); returns this thread's sum of
// the raw x² it read (NORM). Thread t quantizes elements 8q .. 8q+7
// (q = t mod 4) of chunk block t/4 (see matvec_stage.wgsl). Call in uniform
// control flow: it holds the barriers around the staging.
float stage_chunk(MatvecArgs m, STAGED_PARAMS, uint c0, uint cn, uint tid) {
    float sq = 0.0f;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    uint sb = tid >> 2u;
    uint qq = tid & 3u;
    float4 x0 = float4(0.0f);
    float4 x1 = float4(0.0f);
    if (sb < cn) {
        uint i = (c0 + sb) * 8u + qq * 2u;
//#if NORM
        float4 t0 = m.x[m.x_offset + i];
        float4 t1 = m.x[m.x_offset + i + 1u];
        sq += dot(t0, t0) + dot(t1, t1);
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
//#if INT8X2
        // What the first level missed, x/d − q ∈ [−½, ½], in codes of d/254
        // (scaled after the subtraction: 254/d may overflow).
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
    return sq;
}
//#else
// Vec4 j of chunk block b at xs[j·64 + b] (see matvec_stage.wgsl).
#define STAGED xs, xsq
#define STAGED_PARAMS threadgroup float4* xs, threadgroup float* xsq

struct XBlock {
    float4 v[8];
};

XBlock staged_block(STAGED_PARAMS, uint b) {
    XBlock xb;
    for (uint j = 0u; j < 8u; j++) {
        xb.v[j] = xs[j * 64u + b];
    }
    return xb;
}

//#if RAW
float xblock_dot(MatvecArgs m, Raw r, uint row, uint b, XBlock xb) {
    return dot_raw(m, r, row, b, xb.v);
}
//#endif

// Stages chunk blocks c0 .. c0 + cn (cn ≤ 64), transposed; returns this
// thread's sum of the raw x² it read (NORM). Call in uniform control flow.
float stage_chunk(MatvecArgs m, STAGED_PARAMS, uint c0, uint cn, uint tid) {
    float sq = 0.0f;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint i = tid; i < cn * 8u; i += 256u) {
//#if NORM
        float4 t = m.x[m.x_offset + c0 * 8u + i];
        sq += dot(t, t);
//#endif
        xs[(i & 7u) * 64u + (i >> 3u)] = xg(m, c0 * 8u + i);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    return sq;
}
//#endif

// The RMSNorm scale 1/sqrt(mean(x²) + eps) from `sq`, the squares this
// thread's row slot staged: the 8 slots' sums added through threadgroup
// memory (see matvec_stage.wgsl). Call in uniform control flow.
float staged_norm_scale(MatvecArgs m, STAGED_PARAMS, float sq, uint tid) {
    if ((tid & 31u) == 0u) {
        xsq[tid >> 5u] = sq;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    float total_sq = ((xsq[0] + xsq[1]) + (xsq[2] + xsq[3])) + ((xsq[4] + xsq[5]) + (xsq[6] + xsq[7]));
    return rsqrt(total_sq / float(m.cols) + m.eps);
}
