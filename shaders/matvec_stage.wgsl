// matvec_stage.wgsl — the input vector staged in workgroup memory, for the
// `staged` and `dense` families (include after matvec_common). 64 blocks of
// x at a time, once per workgroup: the fused op (gain, SwiGLU, attention
// merge) is applied here, once per workgroup instead of once per row.
//
// f32 inputs: vec4 j of chunk block b at xs[j·64 + b], so the lanes of a row
// (consecutive blocks) read consecutive vec4s.
// INT8: each 32-element block quantized to int8 codes at d = max|x|/127 (as
// quant::q8_act), block dots taken four int8 products at a time (a quarter
// of the workgroup-memory traffic, far fewer instructions per weight).
// INT8X2 (with INT8): the remainder x − d·codes quantized again at d/254
// into xq2 and dotted the same way, about 15 bits of input precision.

//#if INT8
// Chunk block b: codes of elements 0..15 in xq[b], 16..31 in xq[64 + b], 4
// per word; per-quarter |max| in xam[b], per-quarter d·Σcodes in xsum[b];
// the scale d in xd[b].
var<workgroup> xq: array<vec4<u32>, 128>;
//#if INT8X2
var<workgroup> xq2: array<vec4<u32>, 128>;
//#endif
var<workgroup> xam: array<vec4<f32>, 64>;
var<workgroup> xsum: array<vec4<f32>, 64>;
var<workgroup> xd: array<f32, 64>;

// One staged block of x as a dot needs it.
struct XBlock {
    lo: vec4<u32>,
    hi: vec4<u32>,
    d: f32,
    // Per half (elements 0..15, 16..31): d·Σcodes of both levels.
    s: vec2<f32>,
//#if INT8X2
    lo2: vec4<u32>,
    hi2: vec4<u32>,
//#endif
}

fn staged_block(b: u32) -> XBlock {
    let s = xsum[b];
    var xb: XBlock;
    xb.lo = xq[b];
    xb.hi = xq[64u + b];
    xb.d = xd[b];
    xb.s = vec2<f32>(s.x + s.y, s.z + s.w);
//#if INT8X2
    xb.lo2 = xq2[b];
    xb.hi2 = xq2[64u + b];
//#endif
    return xb;
}

//#if RAW
// Block b of `row`, from its loaded words r, dotted with staged block xb.
fn xblock_dot(r: Raw, row: u32, b: u32, xb: XBlock) -> f32 {
//#if INT8X2
    return dot_raw_q8(r, row, b, xb.lo, xb.hi, xb.lo2, xb.hi2, xb.d, xb.s);
//#else
    return dot_raw_q8(r, row, b, xb.lo, xb.hi, xb.lo, xb.hi, xb.d, xb.s);
//#endif
}
//#endif

// Stages chunk blocks c0 .. c0 + cn (cn ≤ 64); returns this thread's sum of
// the raw x² it read (NORM). Thread t quantizes elements 8q .. 8q+7
// (q = t mod 4) of chunk block t/4: the block's |max| from its 4 threads'
// maxima, then the codes round(x/d), packed 4 per word. Call in uniform
// control flow: it holds the barriers around the staging.
fn stage_chunk(c0: u32, cn: u32, tid: u32) -> f32 {
    var sq = 0.0;
    workgroupBarrier();
    let sb = tid >> 2u;
    let qq = tid & 3u;
    var x0 = vec4<f32>(0.0);
    var x1 = vec4<f32>(0.0);
    if sb < cn {
        let i = (c0 + sb) * 8u + qq * 2u;
//#if NORM
        let t0 = x[p.x_offset + i];
        let t1 = x[p.x_offset + i + 1u];
        sq += dot(t0, t0) + dot(t1, t1);
//#endif
        let xx = xg2(i);
        x0 = xx[0];
        x1 = xx[1];
        let a = max(abs(x0), abs(x1));
        xam[sb][qq] = max(max(a.x, a.y), max(a.z, a.w));
    }
    workgroupBarrier();
    if sb < cn {
        let am = xam[sb];
        let d = max(max(am.x, am.y), max(am.z, am.w)) / 127.0;
        let id = select(0.0, 1.0 / d, d != 0.0);
        let q0 = vec4<i32>(round(x0 * id));
        let q1 = vec4<i32>(round(x1 * id));
        let k = (qq >> 1u) * 64u + sb;
        xq[k][(qq & 1u) * 2u] = pack4xI8(q0);
        xq[k][(qq & 1u) * 2u + 1u] = pack4xI8(q1);
        let qs = q0 + q1;
        var sum = d * f32((qs.x + qs.y) + (qs.z + qs.w));
//#if INT8X2
        // What the first level missed, x/d − q ∈ [−½, ½], in codes of d/254
        // (scaled after the subtraction: 254/d may overflow).
        let p0 = clamp(vec4<i32>(round((x0 * id - vec4<f32>(q0)) * 254.0)), vec4<i32>(-127), vec4<i32>(127));
        let p1 = clamp(vec4<i32>(round((x1 * id - vec4<f32>(q1)) * 254.0)), vec4<i32>(-127), vec4<i32>(127));
        xq2[k][(qq & 1u) * 2u] = pack4xI8(p0);
        xq2[k][(qq & 1u) * 2u + 1u] = pack4xI8(p1);
        let ps = p0 + p1;
        sum += d * (1.0 / 254.0) * f32((ps.x + ps.y) + (ps.z + ps.w));
//#endif
        xsum[sb][qq] = sum;
        if qq == 0u {
            xd[sb] = d;
        }
    }
    workgroupBarrier();
    return sq;
}
//#else
var<workgroup> xs: array<vec4<f32>, 512>;

struct XBlock {
    v: array<vec4<f32>, 8>,
}

fn staged_block(b: u32) -> XBlock {
    var xb: XBlock;
    for (var j = 0u; j < 8u; j++) {
        xb.v[j] = xs[j * 64u + b];
    }
    return xb;
}

//#if RAW
fn xblock_dot(r: Raw, row: u32, b: u32, xb: XBlock) -> f32 {
    return dot_raw(r, row, b, xb.v);
}
//#endif

// Stages chunk blocks c0 .. c0 + cn (cn ≤ 64), transposed; returns this
// thread's sum of the raw x² it read (NORM). Call in uniform control flow.
fn stage_chunk(c0: u32, cn: u32, tid: u32) -> f32 {
    var sq = 0.0;
    workgroupBarrier();
    for (var i = tid; i < cn * 8u; i += 256u) {
//#if NORM
        let t = x[p.x_offset + c0 * 8u + i];
        sq += dot(t, t);
//#endif
        xs[(i & 7u) * 64u + (i >> 3u)] = xg(c0 * 8u + i);
    }
    workgroupBarrier();
    return sq;
}
//#endif

// The 8 row slots' sums of squares (NORM).
var<workgroup> xsq: array<f32, 8>;

//#if NORM
// The RMSNorm scale 1/sqrt(mean(x²) + eps) from `sq`, the squares this
// thread's 32-thread row slot staged (reduced across the slot): the 8 slots'
// sums are added through workgroup memory. A scalar, applied after the dot.
// Call in uniform control flow.
fn staged_norm_scale(sq: f32, tid: u32) -> f32 {
    if (tid & 31u) == 0u {
        xsq[tid >> 5u] = sq;
    }
    workgroupBarrier();
    let total_sq = ((xsq[0] + xsq[1]) + (xsq[2] + xsq[3])) + ((xsq[4] + xsq[5]) + (xsq[6] + xsq[7]));
    return inverseSqrt(total_sq / f32(p.cols) + p.eps);
}
//#endif
