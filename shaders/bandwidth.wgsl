// bandwidth.wgsl — plain read-bandwidth probe: every thread sums vec4<u32>
// words with a grid stride and writes one value per workgroup, so the loads
// cannot be optimised away. The denominator for matvec efficiency.

@group(0) @binding(0) var<uniform> p: BandwidthParams;
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

var<workgroup> acc: array<u32, 256>;

@compute @workgroup_size(256)
fn compute_main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    var s = vec4<u32>(0u);
    for (var i = wid.x * 256u + tid; i < p.words; i += p.stride) {
        s ^= src[i];
    }
    acc[tid] = s.x ^ s.y ^ s.z ^ s.w;
    workgroupBarrier();
    if tid == 0u {
        var r = 0u;
        for (var i = 0u; i < 256u; i++) {
            r ^= acc[i];
        }
        dst[wid.x] = r;
    }
}
