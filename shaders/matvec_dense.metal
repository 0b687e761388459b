// matvec_dense.metal — MSL twin of matvec_dense.wgsl: the `dense` family,
// a threadgroup's rows as one slab of blocks, thread t the blocks t,
// t + 256, ..., each row's block dots added from threadgroup memory.
// Bindings as matvec_dense.wgsl, in the same order.

//#include matvec_common
//#include matvec_stage

// Slab blocks tid, tid + 256, ... dotted into dpart, from ra and rb while
// the next two load; ib: block i's index within its row (see
// matvec_dense.wgsl).
void dense_dots(MatvecArgs m, STAGED_PARAMS, threadgroup float* dpart, Raw ra, Raw rb, uint row0,
    uint items, uint tid) {
    uint step_b = 256u % m.blocks;
    uint ib = tid % m.blocks;
    for (uint i = tid; i < items; i += 512u) {
        uint ib2 = ib + step_b;
        if (ib2 >= m.blocks) {
            ib2 -= m.blocks;
        }
        Raw ra2;
        Raw rb2;
        if (i + 512u < items) {
            ra2 = raw_load(m, row0, i + 512u);
        }
        if (i + 768u < items) {
            rb2 = raw_load(m, row0, i + 768u);
        }
        dpart[i] = xblock_dot(m, ra, row0, i, staged_block(STAGED, ib));
        if (i + 256u < items) {
            dpart[i + 256u] = xblock_dot(m, rb, row0, i + 256u, staged_block(STAGED, ib2));
        }
        ra = ra2;
        rb = rb2;
        ib = ib2 + step_b;
        if (ib >= m.blocks) {
            ib -= m.blocks;
        }
    }
}

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
//#if !SUBGROUPS
    uint sg_size = 1u;
//#endif
    MatvecArgs m = MATVEC_ARGS;
    uint group = wid.x + wid.y * nwg.x;
//#if INT8
    threadgroup uint4 xq[128];
//#if INT8X2
    threadgroup uint4 xq2[128];
//#else
    threadgroup uint4* xq2 = xq;
//#endif
    threadgroup float4 xam[64];
    threadgroup float4 xsum[64];
    threadgroup float xd[64];
//#else
    threadgroup float4 xs[512];
//#endif
    threadgroup float xsq[8];
    // The block dots of the threadgroup's slab, block i at dpart[i].
    threadgroup float dpart[DENSE_ITEMS];
    // The slab: rows row0 .. row0 + group_rows, `items` blocks.
    uint row0 = group * p.group_rows;
    uint items = row0 < p.rows ? min(p.group_rows, p.rows - row0) * p.blocks : 0u;
    Raw ra;
    Raw rb;
    if (tid < items) {
        ra = raw_load(m, row0, tid);
    }
    if (tid + 256u < items) {
        rb = raw_load(m, row0, tid + 256u);
    }
    float sq = stage_chunk(m, STAGED, 0u, min(p.blocks, 64u), tid);
    dense_dots(m, STAGED, dpart, ra, rb, row0, items, tid);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    // Thread t < the slab's rows adds row t's block dots, starting at block
    // t mod blocks, so a SIMD-group's reads fall in distinct banks.
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
    dt *= staged_norm_scale(m, STAGED, reduce_row(float2(0.0f, sq), red4, tid, sg_size).y, tid);
//#endif
    if (tid < nr) {
        store_row(m, row0 + tid, dt);
    }
}
