// matmul_coop.wgsl — prefill matmuls on matrix units (cooperative matrices,
// native only; the host requires subgroups of 32, 16×16×16 f16 → f32
// configurations and COOP_WORKGROUP_BYTES of workgroup memory):
//   P[s, t, row] = W[row, K_s] · X16[t, K_s]
// the partial products of K segment s, summed by matmul_reduce.wgsl like
// matmul.wgsl's. X16 is the f16 input quantize_rows writes with F16 (the
// RMSNorm or SwiGLU applied): token t's row at halves t·cols... W is decoded
// to f16 in workgroup memory; X16's fragments load straight from the buffer.
//
// Workgroup (x: 128-row tile, y: K segment, z: 128-token tile), 256 threads
// in 8 subgroups. K advances two blocks (64 inputs) per step: thread (r =
// tid mod 64, j = tid / 64) decodes vec4s j and j + 4 of rows r and r + 64
// in both blocks into wa (row-major, 72 halves per row: fragment loads
// without bank conflicts). Subgroup sid multiplies rows 32·(sid mod 4).. by
// tokens 64·(sid / 4).. : 2 × 4 accumulators of 16×16. A tile wholly inside
// the rows and the chunk stores them straight into the partials; an edge
// tile writes each through the subgroup's 16×16 slice of `cs`, within bounds.
//
// A segment's odd last block stages zero weights: the 32 inputs past it
// (finite f16, the buffer is padded) add nothing.
enable f16;
enable wgpu_cooperative_matrix;

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> xh: array<f16>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
@group(0) @binding(4) var<storage, read> chunk: array<u32>;

// f16's largest finite value: weights are clamped to it (a block scale
// beyond it would make inf, and inf times a zero input NaN).
const F16_MAX: f32 = 65504.0;

// Halves per staged weight row: 64 inputs and 8 of padding.
const LDA: u32 = 72u;
var<workgroup> wa: array<f16, 9216>;
var<workgroup> cs: array<f32, 2048>;

//#include matmul_decode

// Vec4s j and j + 4 of block b of `row` (zero past the rows or the segment)
// into wa at row `r`, block slot `slot` (0 or 1).
fn stage(row: u32, b: u32, b1: u32, j: u32, r: u32, slot: u32) {
    var v0 = vec4<f32>(0.0);
    var v1 = vec4<f32>(0.0);
    if row < p.rows && b < b1 {
//#if BLOCK_VEC4
        let v = block_vec4_pair(row, b, j);
        v0 = v[0];
        v1 = v[1];
//#else
        let raw = load_raw(row, b, j);
        v0 = decode4(row, b, j, raw);
        v1 = decode4(row, b, j + 4u, raw);
//#endif
    }
    let h0 = vec4<f16>(clamp(v0, vec4<f32>(-F16_MAX), vec4<f32>(F16_MAX)));
    let h1 = vec4<f16>(clamp(v1, vec4<f32>(-F16_MAX), vec4<f32>(F16_MAX)));
    let i = r * LDA + slot * 32u + 4u * j;
    wa[i] = h0.x;
    wa[i + 1u] = h0.y;
    wa[i + 2u] = h0.z;
    wa[i + 3u] = h0.w;
    wa[i + 16u] = h1.x;
    wa[i + 17u] = h1.y;
    wa[i + 18u] = h1.z;
    wa[i + 19u] = h1.w;
}

// One 16×16 result (rows crow.., tokens ct..) of a subgroup through its
// slice of cs (from cs[at]) into the partials, within the rows and the
// chunk. Every thread of the workgroup calls it (it holds barriers).
fn spill(c: coop_mat16x16<f32, C>, at: u32, lane: u32, crow: u32, ct: u32, pbase: u32, n: u32) {
    coopStore(c, &cs[at], 16u);
    workgroupBarrier();
    for (var e = lane; e < 256u; e += 32u) {
        let row = crow + (e & 15u);
        let t = ct + (e >> 4u);
        if row < p.rows && t < n {
            part[(pbase + t) * p.rows + row] = cs[at + e];
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(256)
fn compute_main(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_id) sid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let n = chunk[1];
    let row0 = wid.x * 128u;
    let seg = wid.y;
    let t0 = wid.z * 128u;
    let b0 = seg * p.seg_blocks;
    let b1 = min(b0 + p.seg_blocks, p.blocks);
    let r = tid & 63u;
    let j = tid >> 6u;
    // This subgroup's rows (in wa) and the first input of its tokens.
    let arow = (sid & 3u) * 32u * LDA;
    let ld = p.cols;
    let xt = (t0 + (sid >> 2u) * 64u) * ld;

    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c02 = coop_mat16x16<f32, C>();
    var c03 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    var c12 = coop_mat16x16<f32, C>();
    var c13 = coop_mat16x16<f32, C>();
    for (var b = b0; b < b1; b += 2u) {
        stage(row0 + r, b, b1, j, r, 0u);
        stage(row0 + r + 64u, b, b1, j, r + 64u, 0u);
        stage(row0 + r, b + 1u, b1, j, r, 1u);
        stage(row0 + r + 64u, b + 1u, b1, j, r + 64u, 1u);
        workgroupBarrier();
        for (var kk = 0u; kk < 64u; kk += 16u) {
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&wa[arow + kk], LDA);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&wa[arow + 16u * LDA + kk], LDA);
            let xo = xt + b * 32u + kk;
            var x = coopLoad<coop_mat16x16<f16, B>>(&xh[xo], ld);
            c00 = coopMultiplyAdd(a0, x, c00);
            c10 = coopMultiplyAdd(a1, x, c10);
            x = coopLoad<coop_mat16x16<f16, B>>(&xh[xo + 16u * ld], ld);
            c01 = coopMultiplyAdd(a0, x, c01);
            c11 = coopMultiplyAdd(a1, x, c11);
            x = coopLoad<coop_mat16x16<f16, B>>(&xh[xo + 32u * ld], ld);
            c02 = coopMultiplyAdd(a0, x, c02);
            c12 = coopMultiplyAdd(a1, x, c12);
            x = coopLoad<coop_mat16x16<f16, B>>(&xh[xo + 48u * ld], ld);
            c03 = coopMultiplyAdd(a0, x, c03);
            c13 = coopMultiplyAdd(a1, x, c13);
        }
        workgroupBarrier();
    }

    let pbase = seg * p.part_tokens;
    let crow = row0 + (sid & 3u) * 32u;
    let ct = t0 + (sid >> 2u) * 64u;
    // naga 30's SPIR-V writer needs coopStore's index and stride computed
    // before the statement (it does not emit them itself): every operand
    // is bound here, ahead of the `if`.
    let rs = p.rows;
    let r16 = 16u * rs;
    // Column-major: (row, t) at (pbase + t)·rows + row.
    let o00 = (pbase + ct) * rs + crow;
    let o01 = o00 + r16;
    let o02 = o00 + 2u * r16;
    let o03 = o00 + 3u * r16;
    let o10 = o00 + 16u;
    let o11 = o01 + 16u;
    let o12 = o02 + 16u;
    let o13 = o03 + 16u;
    let at = sid * 256u;
    if row0 + 128u <= p.rows && t0 + 128u <= n {
        coopStore(c00, &part[o00], rs);
        coopStore(c01, &part[o01], rs);
        coopStore(c02, &part[o02], rs);
        coopStore(c03, &part[o03], rs);
        coopStore(c10, &part[o10], rs);
        coopStore(c11, &part[o11], rs);
        coopStore(c12, &part[o12], rs);
        coopStore(c13, &part[o13], rs);
    } else {
        spill(c00, at, lane, crow, ct, pbase, n);
        spill(c01, at, lane, crow, ct + 16u, pbase, n);
        spill(c02, at, lane, crow, ct + 32u, pbase, n);
        spill(c03, at, lane, crow, ct + 48u, pbase, n);
        spill(c10, at, lane, crow + 16u, ct, pbase, n);
        spill(c11, at, lane, crow + 16u, ct + 16u, pbase, n);
        spill(c12, at, lane, crow + 16u, ct + 32u, pbase, n);
        spill(c13, at, lane, crow + 16u, ct + 48u, pbase, n);
    }
}
