// attention_combine.metal — MSL twin of attention_combine.wgsl: merges the
// per-chunk (m, l, o) partials of attention.metal into
// out = Σ_c e^(m_c−M)·o_c / Σ_c e^(m_c−M)·l_c, M = max_c m_c (records laid
// out as in attention.metal). One threadgroup per query head, one thread per
// dimension; for models whose output projection does not merge the chunks
// itself (matvec_common.metal, ATTN).

[[max_total_threads_per_threadgroup(256)]]
kernel void compute_main(
    constant AttnParams& p [[buffer(0)]],
    device const uint* step [[buffer(1)]],
    device const float* part [[buffer(2)]],
    device float* out [[buffer(3)]],
    uint tid [[thread_index_in_threadgroup]],
    uint3 wid [[threadgroup_position_in_grid]]
) {
    uint h = wid.x;
    uint hd = p.head_dim;
    if (tid >= hd) {
        return;
    }
    uint n = step[0] / 64u + 1u;
    float mx = -3.4e38f;
    for (uint c = 0u; c < n; c++) {
        mx = max(mx, part[(c * p.n_heads + h) * (hd + 4u)]);
    }
    float o = 0.0f;
    float l = 0.0f;
    for (uint c = 0u; c < n; c++) {
        uint b = (c * p.n_heads + h) * (hd + 4u);
        float w = exp(part[b] - mx);
        l += w * part[b + 1u];
        o += w * part[b + 4u + tid];
    }
    out[h * hd + tid] = o / l;
}
