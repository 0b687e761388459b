// coop.wgsl — the rate of 16×16×16 f16 → f32 cooperative-matrix products
// through wgpu on this device, with the operands' loads as the prefill
// matmul does them or not. A bench probe, not a library kernel.
//
// 256 threads = 8 subgroups of 32 (the probe runs only where subgroups are
// 32 wide). Tiles in workgroup memory as matmul's COOP variants stage them:
// 64 weight rows then 128 tokens, 40 halves per row. Per iteration, subgroup
// sid:
//   MODE 0: 4 products on fragments loaded once (the units' rate);
//   MODE 1: 1 A + 2 B fragment loads, 2 products (matmul's COOP kernel:
//           16 rows × 32 tokens per subgroup);
//   MODE 2: 2 A + 4 B loads, 8 products (32 rows × 64 tokens).
enable f16;
enable wgpu_cooperative_matrix;

// Uniforms: CoopParams (declared in examples/probe.rs, put in place of the
// marker line below).
struct_here

@group(0) @binding(0) var<uniform> p: CoopParams;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

const X_TILE: u32 = 2560u;
var<workgroup> th: array<f16, 10240>;

@compute @workgroup_size(256)
fn compute_main(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    for (var i = tid; i < 10240u; i += 256u) {
        th[i] = f16(f32(i % 13u) * 0.0625 - 0.375);
    }
    workgroupBarrier();
    let sid = tid >> 5u;
    var c0 = coop_mat16x16<f32, C>();
    var c1 = coop_mat16x16<f32, C>();
    var c2 = coop_mat16x16<f32, C>();
    var c3 = coop_mat16x16<f32, C>();
    var c4 = coop_mat16x16<f32, C>();
    var c5 = coop_mat16x16<f32, C>();
    var c6 = coop_mat16x16<f32, C>();
    var c7 = coop_mat16x16<f32, C>();
    let ar = (sid & 1u) * 1280u;
    let br = X_TILE + (sid >> 1u) * 1280u;
    if p.mode == 0u {
        let a = coopLoadT<coop_mat16x16<f16, A>>(&th[ar], 40u);
        let b0 = coopLoad<coop_mat16x16<f16, B>>(&th[br], 40u);
        let b1 = coopLoad<coop_mat16x16<f16, B>>(&th[br + 640u], 40u);
        let b2 = coopLoad<coop_mat16x16<f16, B>>(&th[br + 16u], 40u);
        let b3 = coopLoad<coop_mat16x16<f16, B>>(&th[br + 656u], 40u);
        for (var i = 0u; i < p.iters; i++) {
            c0 = coopMultiplyAdd(a, b0, c0);
            c1 = coopMultiplyAdd(a, b1, c1);
            c2 = coopMultiplyAdd(a, b2, c2);
            c3 = coopMultiplyAdd(a, b3, c3);
        }
    } else if p.mode == 1u {
        for (var i = 0u; i < p.iters; i++) {
            let kk = (i & 1u) * 16u;
            let a = coopLoadT<coop_mat16x16<f16, A>>(&th[ar + kk], 40u);
            c0 = coopMultiplyAdd(a, coopLoad<coop_mat16x16<f16, B>>(&th[br + kk], 40u), c0);
            c1 = coopMultiplyAdd(a, coopLoad<coop_mat16x16<f16, B>>(&th[br + 640u + kk], 40u), c1);
        }
    } else {
        for (var i = 0u; i < p.iters; i++) {
            let kk = (i & 1u) * 16u;
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&th[ar + kk], 40u);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&th[ar + 640u + kk], 40u);
            let b0 = coopLoad<coop_mat16x16<f16, B>>(&th[br + kk], 40u);
            let b1 = coopLoad<coop_mat16x16<f16, B>>(&th[br + 640u + kk], 40u);
            let b2 = coopLoad<coop_mat16x16<f16, B>>(&th[br + 320u + kk], 40u);
            let b3 = coopLoad<coop_mat16x16<f16, B>>(&th[br + 960u + kk], 40u);
            c0 = coopMultiplyAdd(a0, b0, c0);
            c1 = coopMultiplyAdd(a0, b1, c1);
            c2 = coopMultiplyAdd(a0, b2, c2);
            c3 = coopMultiplyAdd(a0, b3, c3);
            c4 = coopMultiplyAdd(a1, b0, c4);
            c5 = coopMultiplyAdd(a1, b1, c5);
            c6 = coopMultiplyAdd(a1, b2, c6);
            c7 = coopMultiplyAdd(a1, b3, c7);
        }
    }
    let o = (wid.x * 8u + sid) * 2048u;
    coopStore(c0, &out[o], 16u);
    coopStore(c1, &out[o + 256u], 16u);
    coopStore(c2, &out[o + 512u], 16u);
    coopStore(c3, &out[o + 768u], 16u);
    coopStore(c4, &out[o + 1024u], 16u);
    coopStore(c5, &out[o + 1280u], 16u);
    coopStore(c6, &out[o + 1536u], 16u);
    coopStore(c7, &out[o + 2048u - 256u], 16u);
}
