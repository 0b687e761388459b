// matvec_staged.wgsl — the `staged` family: y[row] = W[row,:] · x with x
// staged in workgroup memory 64 blocks at a time (matvec_stage).
//
// 256 threads = 8 row slots × 32 lanes; each thread takes RPT rows (a valued
// constant, 1, 2 or 4): slot r's lanes rows r, r + 8, ..., so a workgroup
// computes 8·RPT rows. Lane l takes blocks l, l + 32, ... of a chunk: the
// lanes of a row read one contiguous run of bytes.
//
// When the weights are loaded (fetch, flags; formats with RAW only, except
// `late` with RPT 1):
//   EARLY   rows of ≤ 32 blocks: lane l's block l of its RPT rows, loaded
//           before x is staged, so the weight fetch overlaps the staging;
//   EARLY2  rows of ≤ 64 blocks: lane l's blocks l and l + 32 of the chunk,
//           loaded before it is staged (RPT 1);
//   neither (`late`): after each chunk is staged; with RPT > 1 every row's
//           words of a block are loaded before any is used, and each staged
//           block of x is read once for the RPT rows.

//#include matvec_common
//#include matvec_stage

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
    let row = group * 8u * RPT + (tid >> 5u);
    let lane = tid & 31u;
    // acc[k]: this lane's share of row row + 8k; sq: of sum(x²) (NORM).
    var acc = vec4<f32>(0.0);
    var sq = 0.0;
//#if EARLY
    var raw: array<Raw, RPT>;
    for (var k = 0u; k < RPT; k++) {
        if row + 8u * k < p.rows && lane < p.blocks {
            raw[k] = raw_load(row + 8u * k, lane);
        }
    }
//#endif
    for (var c0 = 0u; c0 < p.blocks; c0 += 64u) {
        let cn = min(64u, p.blocks - c0);
//#if EARLY2
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
        sq += stage_chunk(c0, cn, tid);
//#if EARLY
        if lane < cn {
            let xb = staged_block(lane);
            for (var k = 0u; k < RPT; k++) {
                if row + 8u * k < p.rows {
                    acc[k] += xblock_dot(raw[k], row + 8u * k, lane, xb);
                }
            }
        }
//#else
//#if EARLY2
        if row < p.rows {
            if lane < cn {
                acc.x += xblock_dot(r0, row, c0 + lane, staged_block(lane));
            }
            if lane + 32u < cn {
                acc.x += xblock_dot(r1, row, c0 + lane + 32u, staged_block(lane + 32u));
            }
        }
//#else
        // `late`: with RPT 1 and int8 inputs, two blocks per step, so both
        // blocks' weight loads are in flight together (a full chunk is one
        // step per lane); with RPT > 1 every row's words of a block are
        // loaded before any is used, and the staged block read once for all.
        // Inline, not a function: on an H100 a function here cost f32 inputs
        // with 4 rows per thread 10 % on Llama-1B's LM head (96 → 106 µs).
        if RPT == 1u {
            if row < p.rows {
//#if INT8
                var b = lane;
                for (; b + 32u < cn; b += 64u) {
                    let r0 = raw_load(row, c0 + b);
                    let r1 = raw_load(row, c0 + b + 32u);
                    acc.x += xblock_dot(r0, row, c0 + b, staged_block(b))
                        + xblock_dot(r1, row, c0 + b + 32u, staged_block(b + 32u));
                }
                if b < cn {
                    acc.x += xblock_dot(raw_load(row, c0 + b), row, c0 + b, staged_block(b));
                }
//#else
                for (var b = lane; b < cn; b += 32u) {
                    acc.x += block_dot(row, c0 + b, staged_block(b).v);
                }
//#endif
            }
        } else {
//#if RAW
            for (var b = lane; b < cn; b += 32u) {
                var rr: array<Raw, RPT>;
                for (var k = 0u; k < RPT; k++) {
                    if row + 8u * k < p.rows {
                        rr[k] = raw_load(row + 8u * k, c0 + b);
                    }
                }
                let xb = staged_block(b);
                for (var k = 0u; k < RPT; k++) {
                    if row + 8u * k < p.rows {
                        acc[k] += xblock_dot(rr[k], row + 8u * k, c0 + b, xb);
                    }
                }
            }
//#endif
        }
//#endif
//#endif
    }
    finish_rows(acc, sq, row, tid, sg_size);
}

// Reduces the lanes' shares of the thread's RPT rows (and of sum(x²)),
// applies the RMSNorm scale, and stores. Call in uniform control flow.
fn finish_rows(acc: vec4<f32>, sq: f32, row: u32, tid: u32, sg_size: u32) {
    var total = vec4<f32>(0.0);
    var sqs = 0.0;
    if RPT > 1u {
        total = reduce_row4(acc, tid, sg_size);
//#if NORM
        sqs = reduce_row(vec2<f32>(0.0, sq), tid, sg_size).y;
//#endif
    } else {
        let r = reduce_row(vec2<f32>(acc.x, sq), tid, sg_size);
        total.x = r.x;
        sqs = r.y;
    }
//#if NORM
    total *= staged_norm_scale(sqs, tid);
//#endif
    if (tid & 31u) == 0u {
        for (var k = 0u; k < RPT; k++) {
            if row + 8u * k < p.rows {
                store_row(row + 8u * k, total[k]);
            }
        }
    }
}
