// sync.wgsl — what a dependency between two decode steps costs: as a kernel
// boundary (`stage_main`, one dispatch per stage) or as a grid barrier inside
// one dispatch (`grid_main`). A bench probe, not a library kernel.
//
// Stage s: every workgroup reads the whole vector the last stage wrote
// (half s mod 2 of `buf`, `width` words), counts entries that differ from
// its first (a stale or torn read), reads WWORDS vec4<u32> of weights per
// thread from slice s mod `slices` (the matvec's weight stream, rotating
// through more memory than L2 holds) and writes the value + 1 into its 8
// entries of the other half. `sync`: [0] grid-barrier arrivals, [1] waits
// that gave up after `limit` polls, [2] stale entries seen.
//
// The grid barrier: storageBarrier() (naga: a workgroup control barrier
// with device-scope acquire-release on storage memory), thread 0 adds its
// arrival, [PREFETCH: the next stage's weights are loaded here, while the
// other workgroups arrive], thread 0 polls the count until every workgroup
// of this stage has arrived (or `limit` polls), then workgroupBarrier() and
// storageBarrier() again before reading what the others wrote. With
// `flags`, each workgroup instead stores its stage count into its own
// flag (no single contended counter) and thread w polls workgroup w's.
//
// Plain loads and stores of `buf` are not made visible to other workgroups
// by that barrier: an H100 reads stale entries with them and none with
// atomics. So the probe times both. (lavapipe reads stale entries now and
// then with every variant.)

// Uniforms: SyncParams (declared in examples/probe.rs and prepended).

@group(0) @binding(0) var<uniform> p: SyncParams;
// binding 1, `buf`, with its accessors ld() and st(): plain u32 or atomic
// (the probe prepends one of the two; see examples/probe.rs).
@group(0) @binding(2) var<storage, read_write> sync: array<atomic<u32>, 4>;
@group(0) @binding(3) var<storage, read> weights: array<vec4<u32>>;
// FLAGS barrier: workgroup w's last stage done, at flag[w].
@group(0) @binding(4) var<storage, read_write> flag: array<atomic<u32>>;

// XOR of this thread's weights of stage s (never 0xdeadbeef on zeroed
// weights, which the compiler cannot know: the loads stay).
fn weights_of(s: u32, wg: u32, tid: u32, nwg: u32) -> u32 {
    var h = 0u;
    let base = ((s % p.slices) * nwg + wg) * p.wwords * 256u;
    for (var i = 0u; i < p.wwords; i++) {
        let w = weights[base + i * 256u + tid];
        h ^= w.x ^ w.y ^ w.z ^ w.w;
    }
    return h;
}

fn stage(s: u32, wg: u32, tid: u32, h: u32) {
    let src = (s & 1u) * p.width;
    let dst = ((s + 1u) & 1u) * p.width;
    let v = ld(src);
    var bad = 0u;
    for (var i = tid; i < p.width; i += 256u) {
        if ld(src + i) != v {
            bad++;
        }
    }
    if tid < 8u && wg * 8u + tid < p.width {
        st(dst + wg * 8u + tid, v + 1u + select(0u, 1u, h == 0xdeadbeefu));
    }
    if bad > 0u {
        atomicAdd(&sync[2], bad);
    }
}

@compute @workgroup_size(256)
fn stage_main(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let h = weights_of(p.stage, wid.x, tid, nwg.x);
    stage(p.stage, wid.x, tid, h);
}

@compute @workgroup_size(256)
fn grid_main(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = nwg.x;
    var h = weights_of(0u, wid.x, tid, n);
    for (var s = 0u; s < p.stages; s++) {
        if p.prefetch == 0u && s > 0u {
            h = weights_of(s, wid.x, tid, n);
        }
        stage(s, wid.x, tid, h);
        storageBarrier();
        if tid == 0u {
            if p.flags != 0u {
                atomicStore(&flag[wid.x], s + 1u);
            } else {
                atomicAdd(&sync[0], 1u);
            }
        }
        if p.prefetch != 0u && s + 1u < p.stages {
            h = weights_of(s + 1u, wid.x, tid, n);
        }
        if p.flags != 0u {
            for (var w = tid; w < n; w += 256u) {
                var polls = 0u;
                while atomicLoad(&flag[w]) < s + 1u && polls <= p.limit {
                    polls++;
                }
                if polls > p.limit {
                    atomicAdd(&sync[1], 1u);
                }
            }
        } else if tid == 0u {
            let goal = (s + 1u) * n;
            var polls = 0u;
            while atomicLoad(&sync[0]) < goal && polls <= p.limit {
                polls++;
            }
            if polls > p.limit {
                atomicAdd(&sync[1], 1u);
            }
        }
        workgroupBarrier();
        storageBarrier();
    }
}
