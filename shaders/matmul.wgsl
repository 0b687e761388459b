// matmul.wgsl — batched matrix products for prompt processing, split over K:
//   P[s, t, row] = W[row, K_s] · input(X[t, K_s])   for t in 0..n_tokens,
// the partial product of K segment s (blocks s·seg_blocks ..); then
// matmul_reduce.wgsl sums the segments into Y (with the RMSNorm scale and the
// residual add). W is in its GGUF layout, read with aligned vec4<u32> loads
// like the matvec kernels; the format is chosen by one flag: Q4_0, Q4_1,
// Q8_0, F16, else F32. Splitting K gives small matrices enough workgroups to
// fill the GPU and keeps each workgroup's chain of dependent steps short.
//
// Workgroup (x: 64-row tile, y: K segment, z: 64-token tile), 256 threads,
// each computing 4 rows × 4 tokens: per k, one vec4 of weights and one of
// inputs from workgroup memory feed 16 FMAs. K advances one block (32
// inputs) per step, staged in workgroup memory by all threads: thread (row
// r = tid / 4, j = tid mod 4) decodes vec4s j and j + 4 of its row's block;
// thread (token tt = tid / 4, jx = tid mod 4) stages input vec4s jx and
// jx + 4 of its token (with the RMSNorm gain or the SwiGLU product applied
// once). Four neighbouring lanes share a row (a token), so one warp-wide
// load touches 8 rows' lines, not 32. Weights are loaded two steps ahead of
// their use and inputs one step ahead, so the loads are in flight during the
// products.
//
// Token t's input row starts at vec4 index t·x_stride of X. The partials sit
// in `part`: P[s, t, row] at (s·part_tokens + t)·rows + row, then (NORM) the
// tokens' partial sums of squares at n_seg·part_tokens·rows + s·part_tokens + t.
// The token count is chunk[1] (the chunk header the host writes per chunk).
//
// Variants: NORM: rmsnorm(X[t]) ⊙ gain (the gain applied here, the per-token
// scale by matmul_reduce); SWIGLU: X[t] holds gate then up (each `cols`
// long) and the input is silu(gate) ⊙ up.
//
// COOP (matrix units, native only): the same grid, staging and partials,
// with the products on 16×16×16 cooperative matrices (f16 tiles, f32
// accumulators) instead of 16 FMAs per thread and k. Tiles are staged as
// f16, row-major, 40 halves per row (conflict-free fragment loads); inputs
// are clamped to f16's range (±65504) so an outlier saturates instead of
// turning into inf. Each of the 8 subgroups (the host requires subgroups of
// 32) multiplies rows 16·(sid mod 4).. by tokens 32·(sid / 4).. (two
// accumulators) and writes them through its own 16×16 slice of `cs`. The
// self-check replays these kernels against the f32 variant (the same
// variant without COOP) when a model loads.
//
// DIRECT (one K segment, no NORM): the products go straight to Y, the
// binding of `part` (Y[t·y_stride + y_offset + row] (=|+=) the product, as
// matmul_reduce would write them), and no reduce pass runs.
//
// HALF_X: X holds f16 inputs prepared once per token by quantize_rows.wgsl
// (HALF: the gain or SwiGLU product and the RMSNorm scale already applied;
// no NORM or SWIGLU here), 32 elements of token t's block b in the 4 vec4s
// (t·blocks + b)·4 + j, vec4 j holding elements 4j..4j+3 and 16+4j..16+4j+3
// (what stager j stages): a quarter of the f32 inputs' bytes per staged
// token (the gain's are gone too) and none of the per-workgroup gain or
// SwiGLU work or f16 rounding.
//#if COOP
enable f16;
enable wgpu_cooperative_matrix;
//#endif

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
//#if HALF_X
@group(0) @binding(2) var<storage, read> x: array<vec4<u32>>;
//#else
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
//#endif
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
@group(0) @binding(4) var<storage, read> chunk: array<u32>;
//#if NORM
@group(0) @binding(5) var<storage, read> gain: array<vec4<f32>>;
//#endif

// The K step's tiles (one block, 32 inputs), W's then X's (from X_TILE):
// W as tiles[k·16 + r/4][r mod 4] for the 64 rows r, X as tiles[X_TILE +
// k·16 + t/4][t mod 4] for the 64 tokens t. 16 KiB: WebGPU's default.
//#if COOP
// COOP: W as th[r·TS + k] for the 64 rows r, X as th[X_TILE + t·TS + k] for
// the 64 tokens t (TS = 40 halves per row: a block and 8 of padding for
// conflict-free fragment loads), and each subgroup's 16×16 results
// (column-major) at cs[sid·256..]: 18 KiB.
const TS: u32 = 40u;
const X_TILE: u32 = 2560u;
var<workgroup> th: array<f16, 5120>;
var<workgroup> cs: array<f32, 2048>;
//#else
const X_TILE: u32 = 512u;
var<workgroup> tiles: array<vec4<f32>, 1024>;
//#endif

//#include words

// Q5_0, Q5_1 and the K-quants dequantize through their block file's
// block_vec4_pair (flag BLOCK_VEC4), loading as they decode.
//#if Q5_0
//#include block_q5_0
//#endif
//#if Q5_1
//#include block_q5_1
//#endif
//#if Q4_K
//#include block_q4_k
//#endif
//#if Q5_K
//#include block_q5_k
//#endif
//#if Q6_K
//#include block_q6_k
//#endif

// Four 4-bit fields of q starting at bit `sh` of each byte, as floats.
fn nib4(q: u32, sh: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(q, q >> 8u, q >> 16u, q >> 24u) >> vec4<u32>(sh)) & vec4<u32>(15u));
}

// Four signed bytes of q as floats.
fn i8x4(q: u32) -> vec4<f32> {
    return vec4<f32>(vec4<i32>(bitcast<i32>(q << 24u), bitcast<i32>(q << 16u), bitcast<i32>(q << 8u), bitcast<i32>(q)) >> vec4<u32>(24u));
}

// The aligned words decode4 needs for vec4s j and j + 4 (j < 4) of block b of
// `row`: the block's 2 (Q4_0, Q4_1) or 3 (Q8_0) words, or the two words
// holding those 8 values (F16, F32).
fn load_raw(row: u32, b: u32, j: u32) -> array<vec4<u32>, 3> {
    var r: array<vec4<u32>, 3>;
//#if !BLOCK_VEC4
//#if Q4_0
    let o = ((row * p.blocks + b) * 18u) >> 4u;
    r[0] = w[o];
    r[1] = w[o + 1u];
//#else
//#if Q4_1
    let o = ((row * p.blocks + b) * 20u) >> 4u;
    r[0] = w[o];
    r[1] = w[o + 1u];
//#else
//#if Q8_0
    let o = ((row * p.blocks + b) * 34u) >> 4u;
    r[0] = w[o];
    r[1] = w[o + 1u];
    r[2] = w[o + 2u];
//#else
//#if F16
    r[0] = w[(row * p.blocks + b) * 4u + (j >> 1u)];
    r[1] = w[(row * p.blocks + b) * 4u + 2u + (j >> 1u)];
//#else
    r[0] = w[(row * p.blocks + b) * 8u + j];
    r[1] = w[(row * p.blocks + b) * 8u + 4u + j];
//#endif
//#endif
//#endif
//#endif
//#endif
    return r;
}

// Elements 4j..4j+3 of block b of `row`, dequantized from its raw words r
// (load_raw's for j mod 4).
//#if !BLOCK_VEC4
fn decode4(row: u32, b: u32, j: u32, r: array<vec4<u32>, 3>) -> vec4<f32> {
//#if Q4_0
    // Element 4j+i is the low nibble of nibble byte 4j+i (j < 4), element
    // 16+4j'+i the high nibble (words.wgsl).
    let k = unpack_q4_0(r[0], r[1], (row * p.blocks + b) * 18u);
    return k.d * (nib4(pick(k.q, j & 3u), select(0u, 4u, j >= 4u)) - vec4<f32>(8.0));
//#else
//#if Q4_1
    let k = unpack_q4_1(r[0], r[1], (row * p.blocks + b) * 20u);
    return k.d * nib4(pick(k.q, j & 3u), select(0u, 4u, j >= 4u)) + vec4<f32>(k.m);
//#else
//#if Q8_0
    let k = unpack_q8_0(r[0], r[1], r[2], (row * p.blocks + b) * 34u);
    return k.d * i8x4(select(pick(k.q1, j & 3u), pick(k.q0, j & 3u), j < 4u));
//#else
//#if F16
    let q = select(r[0], r[1], j >= 4u);
    return select(vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)),
        vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)), (j & 1u) == 0u);
//#else
    return bitcast<vec4<f32>>(select(r[0], r[1], j >= 4u));
//#endif
//#endif
//#endif
//#endif
}
//#endif

// The staged input from raw loads a (and b: the gain with NORM, up with SWIGLU).
fn combine(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
//#if NORM
    return a * b;
//#else
//#if SWIGLU
    return a / (vec4<f32>(1.0) + exp(-a)) * b;
//#else
    return a;
//#endif
//#endif
}

//#if COOP
// f16's largest finite value.
const F16_MAX: f32 = 65504.0;

// Elements k..k+3 (a) and k+16..k+19 (b) of a staged row, from th[i] on,
// as f16 clamped to ±F16_MAX.
fn stage_h(i: u32, a: vec4<f32>, b: vec4<f32>) {
    let ha = vec4<f16>(clamp(a, vec4<f32>(-F16_MAX), vec4<f32>(F16_MAX)));
    let hb = vec4<f16>(clamp(b, vec4<f32>(-F16_MAX), vec4<f32>(F16_MAX)));
    put_h(i, ha, hb);
}

// Halves a at th[i..i+4] and b at th[i+16..i+20].
fn put_h(i: u32, a: vec4<f16>, b: vec4<f16>) {
    th[i] = a.x;
    th[i + 1u] = a.y;
    th[i + 2u] = a.z;
    th[i + 3u] = a.w;
    th[i + 16u] = b.x;
    th[i + 17u] = b.y;
    th[i + 18u] = b.z;
    th[i + 19u] = b.w;
}

// A subgroup's 16×16 result at cs[at..] (column-major: rows crow.., tokens
// ct..) into the partials, 8 values per lane, within the rows and the chunk.
fn write_fragment(at: u32, lane: u32, crow: u32, ct: u32, pbase: u32, n: u32) {
    for (var e = lane; e < 256u; e += 32u) {
        let row = crow + (e & 15u);
        let t = ct + (e >> 4u);
        if row < p.rows && t < n {
            put(pbase, t, row, cs[at + e]);
        }
    }
}
//#endif

//#if HALF_X
// A stager's raw inputs: its 8 halves of the block (see the header).
alias XRaw = vec4<u32>;

// Stager j's halves of block b of the token whose vec4s start at `xbase`
// (its vec4 j).
fn load_x(xbase: u32, j: u32, b: u32) -> XRaw {
    return x[xbase + b * 4u];
}

// Stages stager j's halves xr as elements 4j.. and 16+4j.. of row r of the
// X tile.
fn stage_x(r: u32, j: u32, xr: XRaw) {
    let lo = vec4<f32>(unpack2x16float(xr.x), unpack2x16float(xr.y));
    let hi = vec4<f32>(unpack2x16float(xr.z), unpack2x16float(xr.w));
//#if COOP
    // Exact both ways (naga has no bitcast from u32 to vec2<f16>), and
    // already within f16's range: no clamp.
    put_h(X_TILE + r * TS + 4u * j, vec4<f16>(lo), vec4<f16>(hi));
//#else
    stage(X_TILE, r, j, lo, hi);
//#endif
}
//#else
// A stager's raw inputs: see load_x.
alias XRaw = array<vec4<f32>, 4>;

// Stages the input from the raw loads xr as elements 4j.. and 16+4j.. of
// row r of the X tile.
fn stage_x(r: u32, j: u32, xr: XRaw) {
    stage(X_TILE, r, j, combine(xr[0], xr[2]), combine(xr[1], xr[3]));
}

// Input vec4s j and j + 4 of block b of the token row at vec4 `xbase`
// (its vec4 j), then the gain's (NORM) or up's (SWIGLU) for them, zero
// otherwise: the raw loads `combine` takes.
fn load_x(xbase: u32, j: u32, b: u32) -> XRaw {
    var r: XRaw;
    let e = xbase + b * 8u;
    r[0] = x[e];
    r[1] = x[e + 4u];
//#if NORM
    r[2] = gain[b * 8u + j];
    r[3] = gain[b * 8u + j + 4u];
//#endif
//#if SWIGLU
    r[2] = x[e + p.cols / 4u];
    r[3] = x[e + p.cols / 4u + 4u];
//#endif
    return r;
}
//#endif

// Stages elements 4j..4j+3 (a) and 16+4j.. (b) of row r (< 64) of the K
// step's W tile (base 0) or X tile (base X_TILE), in the layouts above.
fn stage(base: u32, r: u32, j: u32, a: vec4<f32>, b: vec4<f32>) {
//#if COOP
    stage_h(base + r * TS + 4u * j, a, b);
//#else
    let q = base + (4u * j) * 16u + (r >> 2u);
    let h = r & 3u;
    tiles[q][h] = a.x;
    tiles[q + 16u][h] = a.y;
    tiles[q + 32u][h] = a.z;
    tiles[q + 48u][h] = a.w;
    tiles[q + 256u][h] = b.x;
    tiles[q + 272u][h] = b.y;
    tiles[q + 288u][h] = b.z;
    tiles[q + 304u][h] = b.w;
//#endif
}

// The product of (token t, row) into the partials of the segment at pbase,
// or (DIRECT) into Y.
fn put(pbase: u32, t: u32, row: u32, v: f32) {
//#if DIRECT
    let yi = t * p.y_stride + p.y_offset + row;
    var s = v;
    if p.accumulate != 0u {
        s += part[yi];
    }
    part[yi] = s;
//#else
    part[(pbase + t) * p.rows + row] = v;
//#endif
}

// Stages block b of row `wrow` (from its raw words; BLOCK_VEC4 formats load
// as they decode) at row wr, and the stager's inputs xr at row tt. Returns
// xr's sum of squares (NORM; else 0).
fn stage_block(wrow: u32, b: u32, wr: u32, wj: u32, raw: array<vec4<u32>, 3>, tt: u32, xj: u32, xr: XRaw) -> f32 {
    var wv0 = vec4<f32>(0.0);
    var wv1 = vec4<f32>(0.0);
    if wrow < p.rows {
//#if BLOCK_VEC4
        let v = block_vec4_pair(wrow, b, wj);
        wv0 = v[0];
        wv1 = v[1];
//#else
        wv0 = decode4(wrow, b, wj, raw);
        wv1 = decode4(wrow, b, wj + 4u, raw);
//#endif
    }
    stage(0u, wr, wj, wv0, wv1);
    stage_x(tt, xj, xr);
//#if NORM
    return dot(xr[0], xr[0]) + dot(xr[1], xr[1]);
//#else
    return 0.0;
//#endif
}

//#if COOP
// Subgroup sid's two 16×16 results (rows crow.., tokens ct.. and ct + 16..)
// through its slice of cs into the partials. Every thread calls it (it holds
// barriers).
fn write_coop(c0: coop_mat16x16<f32, C>, c1: coop_mat16x16<f32, C>, sid: u32, lane: u32, crow: u32, ct: u32, pbase: u32, n: u32) {
    coopStore(c0, &cs[sid * 256u], 16u);
    workgroupBarrier();
    write_fragment(sid * 256u, lane, crow, ct, pbase, n);
    workgroupBarrier();
    coopStore(c1, &cs[sid * 256u], 16u);
    workgroupBarrier();
    write_fragment(sid * 256u, lane, crow, ct + 16u, pbase, n);
    workgroupBarrier();
}
//#else
// A thread's 4 rows (row0 + 4·tr ..) × 4 tokens (t0 + 4·tc ..) of products
// into the partials, within the rows and the chunk.
fn write_tile(acc: array<vec4<f32>, 4>, row0: u32, t0: u32, tr: u32, tc: u32, pbase: u32, n: u32) {
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + 4u * tr + i;
        for (var j = 0u; j < 4u; j++) {
            let t = t0 + 4u * tc + j;
            if row < p.rows && t < n {
                put(pbase, t, row, acc[i][j]);
            }
        }
    }
}
//#endif

//#if NORM
// The 4 stagers of each token (threads 4t..4t+3) add their squares `ss`
// (the tiles, or cs, are free after the loop's last barrier); only the first
// row tile (`first`) writes them after the partials.
fn write_squares(ss: f32, tid: u32, first: bool, t0: u32, pbase: u32, n: u32) {
//#if COOP
    cs[tid] = ss;
    workgroupBarrier();
    if tid < 64u && t0 + tid < n && first {
        let sq = (cs[4u * tid] + cs[4u * tid + 1u]) + (cs[4u * tid + 2u] + cs[4u * tid + 3u]);
//#else
    tiles[tid] = vec4<f32>(ss, 0.0, 0.0, 0.0);
    workgroupBarrier();
    if tid < 64u && t0 + tid < n && first {
        let sq = (tiles[4u * tid].x + tiles[4u * tid + 1u].x) + (tiles[4u * tid + 2u].x + tiles[4u * tid + 3u].x);
//#endif
        part[p.n_seg * p.part_tokens * p.rows + pbase + t0 + tid] = sq;
    }
}
//#endif

@compute @workgroup_size(256)
fn compute_main(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
//#if COOP
    @builtin(subgroup_id) sid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
//#endif
) {
    let n = chunk[1];
    let row0 = wid.x * 64u;
    let seg = wid.y;
    let t0 = wid.z * 64u;
    let b0 = seg * p.seg_blocks;
    let b1 = min(b0 + p.seg_blocks, p.blocks);
    // Output tile of this thread: rows row0 + 4·tr + (0..3), tokens t0 + 4·tc + (0..3).
    let tr = tid & 15u;
    let tc = tid >> 4u;
    // Staging roles (see the header).
    let wr = tid >> 2u;
    let wrow = row0 + wr;
    let wj = tid & 3u;
    let tt = tid >> 2u;
    let xj = tid & 3u;
    let xok = t0 + tt < n;
//#if HALF_X
    let xbase = (t0 + tt) * (p.blocks * 4u) + xj;
//#else
    let xbase = (t0 + tt) * p.x_stride + xj;
//#endif

    var wraw: array<vec4<u32>, 3>;
    var wnext: array<vec4<u32>, 3>;
    var xr: XRaw;
    if wrow < p.rows {
        wraw = load_raw(wrow, b0, wj);
        if b0 + 1u < b1 {
            wnext = load_raw(wrow, b0 + 1u, wj);
        }
    }
    if xok {
        xr = load_x(xbase, xj, b0);
    }

    var ss = 0.0; // this thread's share of its token's sum of squares (NORM)
//#if COOP
    var c0 = coop_mat16x16<f32, C>();
    var c1 = coop_mat16x16<f32, C>();
//#else
    var acc: array<vec4<f32>, 4>;
//#endif
    for (var b = b0; b < b1; b++) {
        ss += stage_block(wrow, b, wr, wj, wraw, tt, xj, xr);
        workgroupBarrier();
        // Loads in flight during the products: weights for block b + 2 and
        // inputs for b + 1.
        wraw = wnext;
        if wrow < p.rows && b + 2u < b1 {
            wnext = load_raw(wrow, b + 2u, wj);
        }
        if xok && b + 1u < b1 {
            xr = load_x(xbase, xj, b + 1u);
        }
//#if COOP
        // Subgroup sid: rows 16·(sid mod 4).., tokens 32·(sid / 4)..
        for (var kk = 0u; kk < 32u; kk += 16u) {
            let a = coopLoadT<coop_mat16x16<f16, A>>(&th[(sid & 3u) * 16u * TS + kk], TS);
            let xb = X_TILE + (sid >> 2u) * 32u * TS + kk;
            c0 = coopMultiplyAdd(a, coopLoad<coop_mat16x16<f16, B>>(&th[xb], TS), c0);
            c1 = coopMultiplyAdd(a, coopLoad<coop_mat16x16<f16, B>>(&th[xb + 16u * TS], TS), c1);
        }
//#else
        // Threads whose 4 tokens are all past the chunk skip the products
        // (a short prompt costs what its tokens need, not a full tile).
        if t0 + 4u * tc < n {
            for (var k = 0u; k < 32u; k++) {
                let wk = tiles[k * 16u + tr];
                let xk = tiles[X_TILE + k * 16u + tc];
                acc[0] += wk.x * xk;
                acc[1] += wk.y * xk;
                acc[2] += wk.z * xk;
                acc[3] += wk.w * xk;
            }
        }
//#endif
        workgroupBarrier();
    }

    let pbase = seg * p.part_tokens;
//#if COOP
    write_coop(c0, c1, sid, lane, row0 + 16u * (sid & 3u), t0 + 32u * (sid >> 2u), pbase, n);
//#else
    write_tile(acc, row0, t0, tr, tc, pbase, n);
//#endif
//#if NORM
    write_squares(ss, tid, wid.x == 0u, t0, pbase, n);
//#endif
}
