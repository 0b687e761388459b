// matvec.wgsl — the body shared by every matvec kernel: y[row] = W[row,:] · x.
//
// Included by matvec_<format>.wgsl, which defines
//   fn block_dot(row: u32, b: u32, xv: array<vec4<f32>, 8>) -> f32
// returning the dot product of block `b` of `row` with xv, the input
// vector's elements b*32 .. b*32+32 (loaded once through `xg`).
// Formats with a Q8X variant (Q4_0, Q4_1, Q8_0) also define Raw, the words
// holding a block, raw_load(row, b) fetching them, and
//   fn dot_raw(r: Raw, row: u32, b: u32, xv: array<vec4<f32>, 8>) -> f32
//   fn dot_raw_q8(r: Raw, row: u32, b: u32, xa: vec4<u32>, xb: vec4<u32>, d: f32, s: f32) -> f32
// the dot from loaded words, with f32 input or with the input block
// quantized: codes of elements 0..15 in xa and 16..31 in xb (4 signed bytes
// per word), scale d, s = d·Σcodes.
//
// Workgroup layout: 256 threads = 8 rows × 32 lanes. Lane l of a row takes
// blocks l, l+32, ... so the 32 lanes of a row read consecutive blocks — one
// contiguous run of bytes — and the 8 rows of a workgroup read one contiguous
// 8-row slab. The partial sums of a row are reduced across its 32 lanes.
//
// Variants (preprocessor): NORM fuses RMSNorm: y = W · (rmsnorm(x) ⊙ gain);
// SWIGLU fuses the FFN gate: y = W · (silu(gate) ⊙ up); ATTN (with XSH) fuses
// the merge of decode attention's per-chunk partials (x holds them, binding 4
// the step's position): y = W · attention output; ROWS4 gives each
// thread 4 rows (128 lanes per row group) for large K; XSH (not
// with ROWS4) stages the input vector in workgroup memory once per workgroup.
// Q8X (implies XSH; Q4_0, Q4_1, Q8_0) stages it quantized to 8 bits per
// 32-element block (scale max|x|/127, as quant::q8_act) and takes block dots
// with 4-way int8 dot products (dot_raw_q8): a quarter of the workgroup-memory
// traffic and far fewer instructions per weight, at int8 input precision.
// XQ2 (with Q8X) adds a second level: the remainder x − d·codes quantized at
// d/254 into xq2 and dotted the same way (about 15 bits of input precision
// for twice the int8 dot products).
// PFC (implies XSH; formats with raw_load) loads each lane's two weight
// blocks of a chunk before that chunk of x is staged: PF for rows of ≤ 64
// blocks, which the model uses on matrices too small to fill the GPU.
// PF (implies XSH; formats with raw_load, rows of ≤ 32 blocks: lane l owns
// block l) loads each lane's weight words before x is staged, so the weight
// fetch overlaps the staging; with RPT2/RPT4 each thread takes 2 or 4 rows,
// staging x once for 16 or 32 rows and keeping more loads in flight (large
// matrices such as the LM head). CR2/CR4 (imply XSH; formats with
// raw_load) give each thread 2 or 4 rows in the chunk loop for rows of more
// than 32 blocks: each block of x is read from workgroup memory once per
// 2 or 4 rows and every row's words of a block are loaded before any is
// used (tall matrices: Llama-1B's gate|up and LM head).
// DENSE (implies XSH; formats with raw_load, rows of ≤ 64 blocks) takes
// p.group_rows rows per workgroup as one slab of blocks, thread t the blocks
// t, t + 256, ... whatever the row length, and adds each row's block dots
// from workgroup memory (tall matrices of short rows: the LM head).
// SUBGROUPS reduces with subgroup shuffles (any subgroup size), else with
// workgroup memory.

// Rows per thread: 1, or with RPT2/RPT4 (imply PF) 2 or 4: the workgroup
// takes 8·RPT rows, the 32 lanes of row slot r rows r, r + 8, ...
//#if RPT4
const RPT: u32 = 4u;
//#define PF
//#else
//#if RPT2
const RPT: u32 = 2u;
//#define PF
//#else
//#if CR4
const RPT: u32 = 4u;
//#define CR
//#else
//#if CR2
const RPT: u32 = 2u;
//#define CR
//#else
const RPT: u32 = 1u;
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

@group(0) @binding(0) var<uniform> p: MatvecParams;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
//#if NORM
@group(0) @binding(4) var<storage, read> gain: array<vec4<f32>>;
//#endif
//#if ATTN
@group(0) @binding(4) var<storage, read> step: array<u32>;
//#endif

//#include reduce

//#if XSH
//#if Q8X
// A chunk of 64 blocks: codes of block b in xq[b] (elements 0..15) and
// xq[64 + b] (16..31), 4 per word; per-quarter |max| in xam[b], per-quarter
// d·Σcodes in xsum[b]; the scale d in xd[b].
var<workgroup> xq: array<vec4<u32>, 128>;
//#if XQ2
// XQ2: the second level, codes of x − d·codes at scale d/254, laid out as xq.
var<workgroup> xq2: array<vec4<u32>, 128>;
//#endif
var<workgroup> xam: array<vec4<f32>, 64>;
var<workgroup> xsum: array<vec4<f32>, 64>;
var<workgroup> xd: array<f32, 64>;
//#else
var<workgroup> xs: array<vec4<f32>, 512>;
//#endif
var<workgroup> xsq: array<f32, 8>;
//#if NORM
// The RMSNorm scale 1/sqrt(mean(x²) + eps) of staged kernels, from `sq`, the
// squares this thread's 32-thread row slot staged (reduced across the slot):
// the 8 slots' sums are added through workgroup memory. A scalar, applied
// after the dot. Call in uniform control flow.
fn staged_norm_scale(sq: f32, tid: u32) -> f32 {
    if (tid & 31u) == 0u {
        xsq[tid >> 5u] = sq;
    }
    workgroupBarrier();
    let total_sq = ((xsq[0] + xsq[1]) + (xsq[2] + xsq[3])) + ((xsq[4] + xsq[5]) + (xsq[6] + xsq[7]));
    return inverseSqrt(total_sq / f32(p.cols) + p.eps);
}
//#endif
//#endif
//#if DENSE
// DENSE: the block dots of the workgroup's slab, block i of the slab at dpart[i].
var<workgroup> dpart: array<f32, DENSE_ITEMS>;

// The dot of slab block i (block b of its row, row0 the slab's first row)
// with the staged x.
fn dense_dot(r: Raw, row0: u32, i: u32, b: u32) -> f32 {
//#if Q8X
    let s = xsum[b];
    var t = dot_raw_q8(r, row0, i, xq[b], xq[64u + b], xd[b], (s.x + s.y) + (s.z + s.w));
//#if XQ2
    t += dot_raw_q8(r, row0, i, xq2[b], xq2[64u + b], xd[b] * (1.0 / 254.0), 0.0);
//#endif
    return t;
//#else
    var xv: array<vec4<f32>, 8>;
    for (var j = 0u; j < 8u; j++) {
        xv[j] = xs[j * 64u + b];
    }
    return dot_raw(r, row0, i, xv);
//#endif
}
//#endif

// Helpers for the block formats' block_dot.

//#include words

// Nibbles to floats without int→float conversions (a slow instruction on
// most GPUs): EXP | n, read as f32, is exactly 2²³ + n for n < 2²³. Masking a
// nibble in place keeps it scaled by its bit position, so
//   q4_lo(q) = 2²³ + (n0, 256·n1, 65536·n2, n3)       low nibbles of q's bytes,
//   q4_hi(q) = 2²³ + (16·n0, 4096·n1, 16·n2, n3)      high nibbles,
// and the caller subtracts 2²³ (+ any offset), accumulates, and undoes the
// power-of-two scales once per block (Q4_LO_SCALE, Q4_HI_SCALE): all exact.
const EXP: u32 = 0x4B000000u;
const Q4_LO_SCALE = vec4<f32>(1.0, 1.0 / 256.0, 1.0 / 65536.0, 1.0);
const Q4_HI_SCALE = vec4<f32>(1.0 / 16.0, 1.0 / 4096.0, 1.0 / 16.0, 1.0);
fn q4_lo(q: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(vec4<u32>(q & 0xFu, q & 0xF00u, q & 0xF0000u, (q >> 24u) & 0xFu) | vec4<u32>(EXP));
}
fn q4_hi(q: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(vec4<u32>(q & 0xF0u, q & 0xF000u, (q >> 16u) & 0xF0u, q >> 28u) | vec4<u32>(EXP));
}

// Σ of a Q4 block's 32 nibbles (q: its 4 words of nibble bytes, values
// 0..15, valid signed bytes) times the input codes: low nibbles (elements
// 0..15) with xa, high nibbles (16..31) with xb, four at a time.
fn nib_dot(q: vec4<u32>, xa: vec4<u32>, xb: vec4<u32>) -> i32 {
    let lo = q & vec4<u32>(0x0F0F0F0Fu);
    let hi = (q >> vec4<u32>(4u)) & vec4<u32>(0x0F0F0F0Fu);
    return (dot4I8Packed(lo.x, xa.x) + dot4I8Packed(lo.y, xa.y)) + (dot4I8Packed(lo.z, xa.z) + dot4I8Packed(lo.w, xa.w))
        + (dot4I8Packed(hi.x, xb.x) + dot4I8Packed(hi.y, xb.y)) + (dot4I8Packed(hi.z, xb.z) + dot4I8Packed(hi.w, xb.w));
}

//#if ATTN
// The attention output's vec4 i and, with `pair`, vec4 i + 1 (the caller
// keeps both in one head; else the second is 0). x holds attention.wgsl's
// records as vec4s: chunk c, head h at (c·heads + h)·(hd/4 + 1): (m, l, −,
// −), then o. Chunks up to the current position merge as
// Σ_c e^(m_c − M)·o_c / Σ_c e^(m_c − M)·l_c, M = max_c m_c.
fn attn_merge(i: u32, pair: bool) -> array<vec4<f32>, 2> {
    let hd4 = p.head_dim / 4u;
    let heads = p.cols / p.head_dim;
    let h = i / hd4;
    let n = min(step[0] / 64u + 1u, p.max_chunks);
    var mx = -3.4e38;
    for (var c = 0u; c < n; c++) {
        mx = max(mx, x[(c * heads + h) * (hd4 + 1u)].x);
    }
    var o0 = vec4<f32>(0.0);
    var o1 = vec4<f32>(0.0);
    var l = 0.0;
    for (var c = 0u; c < n; c++) {
        let b = (c * heads + h) * (hd4 + 1u);
        let ml = x[b];
        let e = exp(ml.x - mx);
        l += e * ml.y;
        let k = b + 1u + i % hd4;
        o0 += e * x[k];
        if pair {
            o1 += e * x[k + 1u];
        }
    }
    return array<vec4<f32>, 2>(o0 / l, o1 / l);
}
//#endif

// The input vector, 4 floats starting at vec4 index i: x ⊙ gain with NORM,
// silu(gate) ⊙ up with SWIGLU (x holds gate then up, each `cols` long), the
// merged attention output with ATTN, else x itself.
fn xg(i: u32) -> vec4<f32> {
//#if NORM
    return x[p.x_offset + i] * gain[i];
//#else
//#if SWIGLU
    let g = x[p.x_offset + i];
    let u = x[p.x_offset + p.cols / 4u + i];
    return g / (vec4<f32>(1.0) + exp(-g)) * u;
//#else
//#if ATTN
    return attn_merge(i, false)[0];
//#else
    return x[p.x_offset + i];
//#endif
//#endif
//#endif
}

//#if Q8X
// xg(i) and xg(i + 1) for even i (the int8 staging's two vec4s per thread).
// ATTN merges both from one pass over the chunks when they lie in one head
// (an even number of vec4s per head): half the record reads and
// exponentials of two xg calls.
fn xg2(i: u32) -> array<vec4<f32>, 2> {
//#if ATTN
    if (p.head_dim / 4u) % 2u == 0u {
        return attn_merge(i, true);
    }
//#endif
    return array<vec4<f32>, 2>(xg(i), xg(i + 1u));
}
//#endif

@compute @workgroup_size(256)
fn compute_main(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
//#if SUBGROUPS
    @builtin(subgroup_size) sg_size: u32,
//#endif
) {
//#if !SUBGROUPS
    let sg_size = 1u;
//#endif
    let group = wid.x + wid.y * nwg.x;
//#if ROWS4
    // 2 halves × 128 lanes; a half takes 4 consecutive rows and lane l blocks
    // l, l+128, …: every block of x loaded is used for 4 rows (4× less load
    // traffic for x — what bounds large-K matvecs). Not combined with NORM.
    let row0 = group * 8u + (tid >> 7u) * 4u;
    var v4 = vec4<f32>(0.0);
    for (var b = tid & 127u; b < p.blocks; b += 128u) {
        var xv: array<vec4<f32>, 8>;
        for (var j = 0u; j < 8u; j++) {
            xv[j] = xg(b * 8u + j);
        }
        for (var k = 0u; k < 4u; k++) {
            if row0 + k < p.rows {
                v4[k] += block_dot(row0 + k, b, xv);
            }
        }
    }
    let r4 = reduce_half(v4, tid, sg_size);
    if (tid & 127u) == 0u {
        for (var k = 0u; k < 4u; k++) {
            let row = row0 + k;
            if row < p.rows {
                var out = r4[k];
                if p.accumulate != 0u {
                    out += y[p.y_offset + row];
                }
                y[p.y_offset + row] = out;
            }
        }
    }
//#else
    let row = group * 8u * RPT + (tid >> 5u);
    let lane = tid & 31u;

    // v.x: this lane's share of the row's dot product; v.y (NORM): its share
    // of sum(x²).
    var v = vec2<f32>(0.0);
    // acc[k] (PF, CR): row row + 8k's share.
    var acc = vec4<f32>(0.0);
//#if PF
    // PF (rows of at most 32 blocks): lane l owns block l of its RPT rows,
    // whose weight words are loaded here, before x is staged, so the weight
    // fetch overlaps the staging instead of following it. acc[k]: row
    // row + 8k's share.
    var raw: array<Raw, RPT>;
    for (var k = 0u; k < RPT; k++) {
        if row + 8u * k < p.rows && lane < p.blocks {
            raw[k] = raw_load(row + 8u * k, lane);
        }
    }
//#endif
//#if DENSE
    // The workgroup's rows row0 .. row0 + group_rows are one contiguous slab
    // of `items` blocks (raw_load(row0, i) is its block i); thread t takes
    // blocks t, t + 256, ..., two in flight, the first two loaded before x is
    // staged. ib: block i's index within its row (i mod blocks, stepped).
    let row0 = group * p.group_rows;
    let items = select(0u, min(p.group_rows, p.rows - row0) * p.blocks, row0 < p.rows);
    let step_b = 256u % p.blocks;
    var ib = tid % p.blocks;
    var ra: Raw;
    var rb: Raw;
    if tid < items {
        ra = raw_load(row0, tid);
    }
    if tid + 256u < items {
        rb = raw_load(row0, tid + 256u);
    }
//#endif
//#if XSH
    // The input vector (⊙ gain, or the SwiGLU product) staged in workgroup
    // memory 64 blocks at a time, transposed: vec4 j of chunk block b at
    // xs[j·64 + b], so the lanes of a row (consecutive blocks) read
    // consecutive vec4s — a few memory transactions per load instead of one
    // cache line per lane — and the gain or SwiGLU is applied once per
    // workgroup instead of once per row.
    for (var c0 = 0u; c0 < p.blocks; c0 += 64u) {
        let cn = min(64u, p.blocks - c0);
//#if PFC
        // PFC: this chunk's weight words (lane's blocks l and l + 32), loaded
        // before the staging.
        var r0: Raw;
        var r1: Raw;
        if row < p.rows {
            if lane < cn {
                r0 = raw_load(row, c0 + lane);
            }
            if lane + 32u < cn {
                r1 = raw_load(row, c0 + lane + 32u);
            }
        }
//#endif
        workgroupBarrier();
//#if Q8X
        // Thread t quantizes elements 8q .. 8q+7 (q = t mod 4) of chunk block
        // t/4: the block's |max| from its 4 threads' maxima, then the codes
        // round(x·(1/d)), d = |max|/127, packed 4 per word.
        let sb = tid >> 2u;
        let qq = tid & 3u;
        var x0 = vec4<f32>(0.0);
        var x1 = vec4<f32>(0.0);
        if sb < cn {
            let i = (c0 + sb) * 8u + qq * 2u;
//#if NORM
            let t0 = x[p.x_offset + i];
            let t1 = x[p.x_offset + i + 1u];
            v.y += dot(t0, t0) + dot(t1, t1);
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
//#if XQ2
            // What the first level missed, x/d − q ∈ [−½, ½], in codes of
            // d/254 (scaled after the subtraction: 254/d may overflow).
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
//#if PF
        if lane < cn {
            let s = xsum[lane];
            let ss = (s.x + s.y) + (s.z + s.w);
            let xa = xq[lane];
            let xb = xq[64u + lane];
            let dx = xd[lane];
//#if XQ2
            let xa2 = xq2[lane];
            let xb2 = xq2[64u + lane];
//#endif
            for (var k = 0u; k < RPT; k++) {
                if row + 8u * k < p.rows {
                    acc[k] += dot_raw_q8(raw[k], row + 8u * k, lane, xa, xb, dx, ss);
//#if XQ2
                    acc[k] += dot_raw_q8(raw[k], row + 8u * k, lane, xa2, xb2, dx * (1.0 / 254.0), 0.0);
//#endif
                }
            }
        }
//#else
//#if CR
        // CR: lane l takes blocks l, l + 32 of the chunk for its RPT rows,
        // loading all rows' words of a block before using any; the block of
        // x is read from workgroup memory once for the RPT rows.
        for (var b = lane; b < cn; b += 32u) {
            var rr: array<Raw, RPT>;
            for (var k = 0u; k < RPT; k++) {
                if row + 8u * k < p.rows {
                    rr[k] = raw_load(row + 8u * k, c0 + b);
                }
            }
            let s = xsum[b];
            let ss = (s.x + s.y) + (s.z + s.w);
            let xa = xq[b];
            let xb = xq[64u + b];
            let dx = xd[b];
//#if XQ2
            let xa2 = xq2[b];
            let xb2 = xq2[64u + b];
//#endif
            for (var k = 0u; k < RPT; k++) {
                if row + 8u * k < p.rows {
                    acc[k] += dot_raw_q8(rr[k], row + 8u * k, c0 + b, xa, xb, dx, ss);
//#if XQ2
                    acc[k] += dot_raw_q8(rr[k], row + 8u * k, c0 + b, xa2, xb2, dx * (1.0 / 254.0), 0.0);
//#endif
                }
            }
        }
//#else
//#if PFC
        if row < p.rows {
            if lane < cn {
                let s = xsum[lane];
                v.x += dot_raw_q8(r0, row, c0 + lane, xq[lane], xq[64u + lane], xd[lane], (s.x + s.y) + (s.z + s.w));
//#if XQ2
                v.x += dot_raw_q8(r0, row, c0 + lane, xq2[lane], xq2[64u + lane], xd[lane] * (1.0 / 254.0), 0.0);
//#endif
            }
            if lane + 32u < cn {
                let s = xsum[lane + 32u];
                v.x += dot_raw_q8(r1, row, c0 + lane + 32u, xq[lane + 32u], xq[96u + lane], xd[lane + 32u], (s.x + s.y) + (s.z + s.w));
//#if XQ2
                v.x += dot_raw_q8(r1, row, c0 + lane + 32u, xq2[lane + 32u], xq2[96u + lane], xd[lane + 32u] * (1.0 / 254.0), 0.0);
//#endif
            }
        }
//#else
//#if !DENSE
        if row < p.rows {
            // Two blocks per step, so both blocks' weight loads are in flight
            // together (a full chunk is exactly one step per lane).
            var b = lane;
            for (; b + 32u < cn; b += 64u) {
                let s0 = xsum[b];
                let s1 = xsum[b + 32u];
                let r0 = raw_load(row, c0 + b);
                let r1 = raw_load(row, c0 + b + 32u);
                v.x += dot_raw_q8(r0, row, c0 + b, xq[b], xq[64u + b], xd[b], (s0.x + s0.y) + (s0.z + s0.w))
                    + dot_raw_q8(r1, row, c0 + b + 32u, xq[b + 32u], xq[96u + b], xd[b + 32u], (s1.x + s1.y) + (s1.z + s1.w));
//#if XQ2
                v.x += dot_raw_q8(r0, row, c0 + b, xq2[b], xq2[64u + b], xd[b] * (1.0 / 254.0), 0.0)
                    + dot_raw_q8(r1, row, c0 + b + 32u, xq2[b + 32u], xq2[96u + b], xd[b + 32u] * (1.0 / 254.0), 0.0);
//#endif
            }
            if b < cn {
                let s = xsum[b];
                let r0 = raw_load(row, c0 + b);
                v.x += dot_raw_q8(r0, row, c0 + b, xq[b], xq[64u + b], xd[b], (s.x + s.y) + (s.z + s.w));
//#if XQ2
                v.x += dot_raw_q8(r0, row, c0 + b, xq2[b], xq2[64u + b], xd[b] * (1.0 / 254.0), 0.0);
//#endif
            }
        }
//#endif
//#endif
//#endif
//#endif
//#else
        for (var i = tid; i < cn * 8u; i += 256u) {
//#if NORM
            let t = x[p.x_offset + c0 * 8u + i];
            v.y += dot(t, t);
//#endif
            xs[(i & 7u) * 64u + (i >> 3u)] = xg(c0 * 8u + i);
        }
        workgroupBarrier();
//#if PF
        if lane < cn {
            var xv: array<vec4<f32>, 8>;
            for (var j = 0u; j < 8u; j++) {
                xv[j] = xs[j * 64u + lane];
            }
            for (var k = 0u; k < RPT; k++) {
                if row + 8u * k < p.rows {
                    acc[k] += dot_raw(raw[k], row + 8u * k, lane, xv);
                }
            }
        }
//#else
//#if CR
        for (var b = lane; b < cn; b += 32u) {
            var rr: array<Raw, RPT>;
            for (var k = 0u; k < RPT; k++) {
                if row + 8u * k < p.rows {
                    rr[k] = raw_load(row + 8u * k, c0 + b);
                }
            }
            var xv: array<vec4<f32>, 8>;
            for (var j = 0u; j < 8u; j++) {
                xv[j] = xs[j * 64u + b];
            }
            for (var k = 0u; k < RPT; k++) {
                if row + 8u * k < p.rows {
                    acc[k] += dot_raw(rr[k], row + 8u * k, c0 + b, xv);
                }
            }
        }
//#else
//#if PFC
        if row < p.rows {
            var xv: array<vec4<f32>, 8>;
            if lane < cn {
                for (var i = 0u; i < 8u; i++) {
                    xv[i] = xs[i * 64u + lane];
                }
                v.x += dot_raw(r0, row, c0 + lane, xv);
            }
            if lane + 32u < cn {
                for (var i = 0u; i < 8u; i++) {
                    xv[i] = xs[i * 64u + lane + 32u];
                }
                v.x += dot_raw(r1, row, c0 + lane + 32u, xv);
            }
        }
//#else
//#if !DENSE
        if row < p.rows {
            for (var b = lane; b < cn; b += 32u) {
                var xv: array<vec4<f32>, 8>;
                for (var j = 0u; j < 8u; j++) {
                    xv[j] = xs[j * 64u + b];
                }
                v.x += block_dot(row, c0 + b, xv);
            }
        }
//#endif
//#endif
//#endif
//#endif
//#endif
//#if DENSE
        // Blocks i and i + 256 from ra, rb while the next two load.
        for (var i = tid; i < items; i += 512u) {
            var ib2 = ib + step_b;
            if ib2 >= p.blocks {
                ib2 -= p.blocks;
            }
            var ra2: Raw;
            var rb2: Raw;
            if i + 512u < items {
                ra2 = raw_load(row0, i + 512u);
            }
            if i + 768u < items {
                rb2 = raw_load(row0, i + 768u);
            }
            dpart[i] = dense_dot(ra, row0, i, ib);
            if i + 256u < items {
                dpart[i + 256u] = dense_dot(rb, row0, i + 256u, ib2);
            }
            ra = ra2;
            rb = rb2;
            ib = ib2 + step_b;
            if ib >= p.blocks {
                ib -= p.blocks;
            }
        }
//#endif
    }
//#if ACC
    v.x = acc.x;
//#endif
//#else
    if row < p.rows {
        for (var b = lane; b < p.blocks; b += 32u) {
            var xv: array<vec4<f32>, 8>;
            for (var j = 0u; j < 8u; j++) {
                xv[j] = xg(b * 8u + j);
            }
            v.x += block_dot(row, b, xv);
        }
    }
//#endif
//#if NORM
//#if !XSH
    // Every row recomputes sum(x²) from L1-resident x: no extra barrier.
    for (var i = lane; i < p.cols / 4u; i += 32u) {
        let t = x[p.x_offset + i];
        v.y += dot(t, t);
    }
//#endif
//#endif
//#if DENSE
    // Thread t < the slab's rows adds row t's block dots, starting at block
    // t mod blocks: the threads of a subgroup then read words t·(blocks + 1)
    // apart, in distinct memory banks whatever the row length (from block 0,
    // rows of 32 blocks would put every thread on one bank).
    workgroupBarrier();
    let nr = items / p.blocks;
    var dt = 0.0;
    if tid < nr {
        let base = tid * p.blocks;
        var b = tid % p.blocks;
        for (var k = 0u; k < p.blocks; k++) {
            dt += dpart[base + b];
            b += 1u;
            if b == p.blocks {
                b = 0u;
            }
        }
    }
//#if NORM
    dt *= staged_norm_scale(reduce_row(v, tid, sg_size).y, tid);
//#endif
    if tid < nr {
        var out = dt;
        if p.accumulate != 0u {
            out += y[p.y_offset + row0 + tid];
        }
        y[p.y_offset + row0 + tid] = out;
    }
//#else
    // r: the row's dot product and (NORM) sum of squares; total: the dot
    // products of the thread's RPT rows. With RPT > 1 the dot products come
    // from acc and v is reduced only for the squares.
    var r = vec2<f32>(0.0);
    var total = vec4<f32>(0.0);
    if RPT > 1u {
        total = reduce_row4(acc, tid, sg_size);
//#if NORM
        r = reduce_row(v, tid, sg_size);
//#endif
    } else {
        r = reduce_row(v, tid, sg_size);
        total.x = r.x;
    }
//#if NORM
//#if XSH
    total *= staged_norm_scale(r.y, tid);
//#else
    // rmsnorm(x) = x / sqrt(mean(x²) + eps): a scalar, applied after the dot.
    total *= inverseSqrt(r.y / f32(p.cols) + p.eps);
//#endif
//#endif
    if lane == 0u {
        for (var k = 0u; k < RPT; k++) {
            let rk = row + 8u * k;
            if rk < p.rows {
                var out = total[k];
                if p.accumulate != 0u {
                    out += y[p.y_offset + rk];
                }
                y[p.y_offset + rk] = out;
            }
        }
    }
//#endif
//#endif
}
