// attention_tiled.wgsl — the causal attention of a prefill chunk (the
// second phase of attention_prefill.wgsl, after its ROPE_KV dispatch has
// written the chunk's K and V into the cache), 32 query tokens at a time:
// K and V are read once per tile of 32 queries instead of once per query.
// Same bindings and layouts as attention_prefill.wgsl; head_dim ≤ 64.
//
// Workgroup (x: query head h, z: 32 tokens t0..), 256 threads: thread
// (query i = tid / 8, lane j = tid mod 8) keeps the whole q of token t0 + i
// and its own online softmax (running max m, sum l, output o: 64 floats)
// over the keys j, j + 8, j + 16, j + 24 of each 32-key tile staged in
// workgroup memory; at the end the 8 lanes of a query merge their (m, l, o)
// through workgroup memory. Tiles run from position 0 to the last query's.
// Staged rows hold 16 vec4 (zero past head_dim), key k's vec4 c at
// k·16 + (c ^ (k mod 8)): the 8 lanes, reading 8 consecutive keys at the
// same c, hit 8 distinct vec4 slots (no bank conflicts).

@group(0) @binding(0) var<uniform> p: AttnParams;
@group(0) @binding(1) var<storage, read> chunk: array<u32>;
@group(0) @binding(2) var<storage, read_write> qkv: array<f32>;
@group(0) @binding(3) var<storage, read_write> kcache: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> vcache: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read> rope: array<f32>;
@group(0) @binding(7) var<storage, read> bias: array<f32>;

// The K and V tiles (32 keys × 16 vec4, swizzled); reused by the merge.
var<workgroup> ks: array<vec4<f32>, 512>;
var<workgroup> vs: array<vec4<f32>, 512>;

// Slot of vec4 c of staged key k.
fn slot(k: u32, c: u32) -> u32 {
    return k * 16u + (c ^ (k & 7u));
}

@compute @workgroup_size(256)
fn compute_main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let n = chunk[1];
    let start = chunk[0];
    let h = wid.x;
    let t0 = wid.z * 32u;
    let hd = p.head_dim;
    let hd4 = hd / 4u;
    let qdim = p.n_heads * hd;
    let kvh = h / (p.n_heads / p.n_kv_heads);
    let i = tid >> 3u;
    let j = tid & 7u;
    let t = t0 + i;
    let live = t < n;
    let pos = start + t;
    // The last position any query of the tile attends to.
    let last = start + min(t0 + 32u, n) - 1u;

    var q: array<vec4<f32>, 16>;
    var o: array<vec4<f32>, 16>;
    for (var c = 0u; c < 16u; c++) {
        var v = vec4<f32>(0.0);
        if live && c < hd4 {
            let e = t * (qdim + 2u * p.kv_dim) + h * hd + 4u * c;
            v = vec4<f32>(qkv[e], qkv[e + 1u], qkv[e + 2u], qkv[e + 3u]) * p.scale;
        }
        q[c] = v;
        o[c] = vec4<f32>(0.0);
    }
    var m = -3.4e38;
    var l = 0.0;
    let kv0 = (p.layer_offset + kvh * hd) / 4u;
    for (var k0 = 0u; k0 <= last; k0 += 32u) {
        // Stage keys k0..k0+31: thread tid loads vec4s tid and tid + 256.
        for (var e = tid; e < 512u; e += 256u) {
            let k = e >> 4u;
            let c = e & 15u;
            var kv = vec4<f32>(0.0);
            var vv = vec4<f32>(0.0);
            if k0 + k <= last && c < hd4 {
                let g = kv0 + (k0 + k) * (p.kv_dim / 4u) + c;
                kv = kcache[g];
                vv = vcache[g];
            }
            ks[slot(k, c)] = kv;
            vs[slot(k, c)] = vv;
        }
        workgroupBarrier();
        if live {
            // This lane's keys of the tile: j, j + 8, j + 16, j + 24.
            var s = vec4<f32>(-3.4e38);
            for (var r = 0u; r < 4u; r++) {
                let k = j + 8u * r;
                if k0 + k <= pos {
                    var a = 0.0;
                    for (var c = 0u; c < 16u; c++) {
                        a += dot(q[c], ks[slot(k, c)]);
                    }
                    s[r] = a;
                }
            }
            let m_new = max(m, max(max(s.x, s.y), max(s.z, s.w)));
            // exp(m - m_new) is 0 while m is the initial -3.4e38.
            let corr = exp(m - m_new);
            let e = select(vec4<f32>(0.0), exp(s - vec4<f32>(m_new)), s > vec4<f32>(-3.0e38));
            l = l * corr + (e.x + e.y) + (e.z + e.w);
            m = m_new;
            for (var c = 0u; c < 16u; c++) {
                o[c] = o[c] * corr + e.x * vs[slot(j, c)] + e.y * vs[slot(j + 8u, c)]
                    + e.z * vs[slot(j + 16u, c)] + e.w * vs[slot(j + 24u, c)];
            }
        }
        workgroupBarrier();
    }

    // Merge the 8 lanes of each query: the common max, then l and o scaled
    // to it and summed, 8 dimensions per round through ks.
    ks[tid] = vec4<f32>(m, 0.0, 0.0, 0.0);
    workgroupBarrier();
    let q0 = tid & ~7u;
    var mq = ks[q0].x;
    for (var r = 1u; r < 8u; r++) {
        mq = max(mq, ks[q0 + r].x);
    }
    let f = exp(m - mq);
    workgroupBarrier();
    ks[tid] = vec4<f32>(l * f, 0.0, 0.0, 0.0);
    workgroupBarrier();
    var lq = 0.0;
    for (var r = 0u; r < 8u; r++) {
        lq += ks[q0 + r].x;
    }
    for (var round = 0u; round < 8u; round++) {
        workgroupBarrier();
        ks[tid * 2u] = o[2u * round] * f;
        ks[tid * 2u + 1u] = o[2u * round + 1u] * f;
        workgroupBarrier();
        // Lanes 0 and 1 sum their vec4 of the round over the query's 8 lanes.
        let c = 2u * round + j;
        if live && j < 2u && c < hd4 {
            var sum = vec4<f32>(0.0);
            for (var r = 0u; r < 8u; r++) {
                sum += ks[(q0 + r) * 2u + j];
            }
            let r4 = sum / lq;
            let e = t * qdim + h * hd + 4u * c;
            out[e] = r4.x;
            out[e + 1u] = r4.y;
            out[e + 2u] = r4.z;
            out[e + 3u] = r4.w;
        }
    }
}
