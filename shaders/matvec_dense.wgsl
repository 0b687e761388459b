// matvec_dense.wgsl — the `dense` family, for tall matrices of short rows
// (the LM head; formats with RAW, rows of ≤ 64 blocks: x is one chunk).
// A workgroup takes p.group_rows rows as one contiguous slab of blocks:
// thread t the blocks t, t + 256, ... whatever the row length (a lane per
// block would leave lanes idle on rows of 18 blocks), two in flight, the
// first two loaded before x is staged. Each row's block dots are then added
// from workgroup memory by one thread.

//#include matvec_common
//#include matvec_stage

// The block dots of the workgroup's slab, block i of the slab at dpart[i].
var<workgroup> dpart: array<f32, DENSE_ITEMS>;

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
    // The slab: rows row0 .. row0 + group_rows, `items` blocks
    // (raw_load(row0, i) is its block i).
    let row0 = group * p.group_rows;
    let items = select(0u, min(p.group_rows, p.rows - row0) * p.blocks, row0 < p.rows);
    var ra: Raw;
    var rb: Raw;
    if tid < items {
        ra = raw_load(row0, tid);
    }
    if tid + 256u < items {
        rb = raw_load(row0, tid + 256u);
    }
    let sq = stage_chunk(0u, min(p.blocks, 64u), tid);
    dense_dots(ra, rb, row0, items, tid);
    workgroupBarrier();
    // Thread t < the slab's rows adds row t's block dots, starting at block
    // t mod blocks: the threads of a subgroup then read words t·(blocks + 1)
    // apart, in distinct memory banks whatever the row length (from block 0,
    // rows of 32 blocks would put every thread on one bank).
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
    dt *= staged_norm_scale(reduce_row(vec2<f32>(0.0, sq), tid, sg_size).y, tid);
//#endif
    if tid < nr {
        store_row(row0 + tid, dt);
    }
}

// Slab blocks tid, tid + 256, ... dotted into dpart, from ra and rb (blocks
// tid, tid + 256) while the next two load; ib: block i's index within its
// row (i mod blocks, stepped).
fn dense_dots(ra0: Raw, rb0: Raw, row0: u32, items: u32, tid: u32) {
    var ra = ra0;
    var rb = rb0;
    let step_b = 256u % p.blocks;
    var ib = tid % p.blocks;
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
        dpart[i] = xblock_dot(ra, row0, i, staged_block(ib));
        if i + 256u < items {
            dpart[i + 256u] = xblock_dot(rb, row0, i + 256u, staged_block(ib2));
        }
        ra = ra2;
        rb = rb2;
        ib = ib2 + step_b;
        if ib >= p.blocks {
            ib -= p.blocks;
        }
    }
}
