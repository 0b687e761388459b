// attention_combine.wgsl — pass 2 of decode attention: merges the per-chunk
// (m, l, o) partials of attention.wgsl into out = Σ_c e^(m_c−M)·o_c / Σ_c e^(m_c−M)·l_c
// with M = max_c m_c. One workgroup per query head, one thread per dimension.

@group(0) @binding(0) var<uniform> p: AttnParams;
@group(0) @binding(1) var<storage, read> step: array<u32>;
@group(0) @binding(2) var<storage, read> part: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn compute_main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let h = wid.x;
    let hd = p.head_dim;
    if tid >= hd {
        return;
    }
    let n = step[0] / 64u + 1u;
    let chunks = (p.max_ctx + 63u) / 64u;
    var mx = -3.4e38;
    for (var c = 0u; c < n; c++) {
        mx = max(mx, part[(h * chunks + c) * (hd + 2u)]);
    }
    var o = 0.0;
    var l = 0.0;
    for (var c = 0u; c < n; c++) {
        let b = (h * chunks + c) * (hd + 2u);
        let w = exp(part[b] - mx);
        l += w * part[b + 1u];
        o += w * part[b + 2u + tid];
    }
    out[h * hd + tid] = o / l;
}
