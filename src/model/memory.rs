//! The GPU memory a model will take, computed from its shapes before
//! anything is allocated ([`super::GpuModel::memory_estimate`]), so a model that
//! cannot fit is refused with a clear message ([`ModelOptions::memory_budget`])
//! instead of failing half-way through its upload.
//!
//! The estimate replays what [`super::GpuModel::with_options`] creates, buffer by
//! buffer, with the sizes the allocation helpers give them (storage buffers
//! rounded up to 16 bytes, weight matrices with their zero tail, the shared
//! matmul scratch buffers at their largest need, one uniform per dispatch);
//! tests/gpu_memory.rs checks it against [`crate::Gpu::allocated_bytes`].

use super::gpu::{
    check_limits, fuses_merge, matmul_shapes, readback_slot_count, row_parts, stack_runs,
    steps_per_submit, ModelOptions, ATTN_CHUNK, PREFILL_TOKENS_MAX,
};
use super::{Config, LayerWeights, Weights};
use crate::error::Result;
use crate::gguf::GgmlType;
use crate::gpu::argmax::ARGMAX_SPAN;
use crate::gpu::matvec::uploaded_len;
use crate::gpu::prefill::{MatmulKernels, CHUNK_HEADER};
use crate::gpu::sample::{MAX_TOP_K, SAMPLE_SPAN};
use crate::gpu::shader::{
    ArgmaxParams, AttnParams, EmbedParams, MatmulParams, MatvecParams, SampleParams,
};
use crate::gpu::Tuning;
use crate::gpu::{Gpu, Inputs};

/// The GPU memory a [`super::GpuModel`] takes, in bytes, by part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Weight matrices (with the kernels' zero tail), the embedding table
    /// (also the LM head's matrix when tied), norm gains and Q/K/V biases.
    pub weights: u64,
    /// The K and V caches: 2 × layers × positions × kv_dim × 4 bytes.
    pub kv_cache: u64,
    /// Everything else: decode and prefill activations (prefill's scale with
    /// `Tuning::prefill_tokens`), the prefill matmuls' scratch buffers,
    /// decode attention's per-chunk partials, the RoPE table, argmax and
    /// sampler buffers (the sampler's history grows with the positions), one
    /// uniform per dispatch and the token readback slots.
    pub activations: u64,
    /// The sum of the parts.
    pub total: u64,
    /// Positions the KV cache holds: `max_ctx` capped by the model's context
    /// length.
    pub positions: usize,
}

impl MemoryEstimate {
    /// Bytes of KV cache per position (all layers, K and V).
    pub fn kv_bytes_per_position(&self) -> u64 {
        self.kv_cache / self.positions.max(1) as u64
    }

    /// "weights 380 MiB, KV cache 24.0 MiB for 2048 positions, activations 8.2 MiB"
    fn parts(&self) -> String {
        format!(
            "weights {}, KV cache {} for {} positions, activations {}",
            format_bytes(self.weights),
            format_bytes(self.kv_cache),
            self.positions,
            format_bytes(self.activations)
        )
    }

    /// "≈ 412 MiB of GPU memory (weights …, KV cache …, activations …)"
    fn needs(&self) -> String {
        format!(
            "≈ {} of GPU memory ({})",
            format_bytes(self.total),
            self.parts()
        )
    }

    /// The message of [`crate::gpu::GpuError::OverBudget`]: what the model
    /// needs against `budget`, and the largest context that would fit when
    /// the model fits without its KV cache.
    pub(crate) fn over_budget(&self, budget: u64) -> String {
        // Equal when rounded (a budget a few bytes short): say it in bytes.
        let (need, have) = if format_bytes(self.total) == format_bytes(budget) {
            (
                format!(
                    "≈ {} bytes of GPU memory ({})",
                    grouped(self.total),
                    self.parts()
                ),
                format!("{} bytes", grouped(budget)),
            )
        } else {
            (self.needs(), format_bytes(budget))
        };
        let per_position = self.kv_bytes_per_position().max(1);
        let fixed = self.total - self.kv_cache;
        let fit = budget.saturating_sub(fixed) / per_position;
        let advice = if fixed < budget && fit > 0 {
            // The sampler history and attention partials shrink with the
            // positions too, so `fit` positions stay within the budget.
            format!(
                "lower the context (--ctx) to at most {fit} positions (the KV cache takes {} per position) or use a smaller model",
                format_bytes(per_position)
            )
        } else {
            format!(
                "without its KV cache it still takes {}: use a smaller model or a larger budget",
                format_bytes(fixed)
            )
        };
        format!("the model needs {need} but the budget is {have}: {advice}")
    }

    /// The message of [`crate::gpu::GpuError::ModelOutOfMemory`]: wgpu's
    /// failure while `context`, with what the whole model needs.
    pub(crate) fn out_of_memory(&self, context: &str) -> String {
        // A smaller context helps only where the KV cache is a large part.
        let hint = if self.kv_cache.saturating_mul(4) >= self.total {
            format!(
                "; a smaller --ctx needs less (the KV cache takes {} per position)",
                format_bytes(self.kv_bytes_per_position())
            )
        } else {
            String::new()
        };
        format!(
            "GPU out of memory while {context}: the model needs {}{hint}",
            self.needs()
        )
    }
}

impl std::fmt::Display for MemoryEstimate {
    /// "≈ 412 MiB (weights 380 MiB, KV cache 24.0 MiB for 2048 positions,
    /// activations 8.2 MiB)"
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "≈ {} ({})", format_bytes(self.total), self.parts())
    }
}

/// Bytes as "1,234 MiB" (from 100 MiB), "24.0 MiB", "12.5 KiB" or "48 bytes".
pub fn format_bytes(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    const MIB: f64 = 1024.0 * 1024.0;
    let b = bytes as f64;
    if b >= 100.0 * MIB {
        format!("{} MiB", grouped((b / MIB).round() as u64))
    } else if b >= MIB {
        format!("{:.1} MiB", b / MIB)
    } else if b >= KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// `n` with thousands separators: 1234567 → "1,234,567".
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A storage buffer's size as `Gpu::storage_size` gives it: rounded up to
/// 16 bytes, at least 16.
fn padded(bytes: u64) -> u64 {
    (bytes.saturating_add(15) / 16 * 16).max(16)
}

/// A storage buffer of `n` f32 or u32 values.
fn words(n: usize) -> u64 {
    padded(n as u64 * 4)
}

/// Bytes of `n` uniforms of type `T` (`Gpu::uniform`: exactly the struct).
fn uniforms<T>(n: usize) -> u64 {
    (n * std::mem::size_of::<T>()) as u64
}

/// Bytes of the uniforms a prefill product with a `rows`×`cols` `ty`
/// matrix binds (one per dispatch; `norm`: its input is norm-fused).
fn matmul_uniforms(
    matmul: &MatmulKernels,
    ty: GgmlType,
    (rows, cols): (usize, usize),
    norm: bool,
) -> u64 {
    uniforms::<MatmulParams>(matmul.dispatches_for(ty, rows as u32, cols as u32, norm))
}

/// Running sums of the three parts.
#[derive(Default)]
struct Tally {
    weights: u64,
    kv: u64,
    act: u64,
}

/// [`super::GpuModel::memory_estimate`]: runs the checks `with_options` runs first
/// ([`check_limits`]), then adds up every buffer it would create.
pub(super) fn estimate(
    gpu: &Gpu,
    cfg: &Config,
    w: &Weights<'_>,
    max_ctx: usize,
    opts: &ModelOptions,
) -> Result<MemoryEstimate> {
    let positions = check_limits(gpu, cfg, w, max_ctx)?;
    let tokens = gpu.tuning.prefill_tokens.clamp(1, PREFILL_TOKENS_MAX);
    let mut t = Tally::default();
    activations(&mut t, cfg, &gpu.tuning, positions, tokens);
    let matmul = MatmulKernels::new(gpu).with_q8_activations(opts.inputs == Inputs::Int8);
    // The embedding table: decode and prefill lookups per part.
    for (_, _, bytes) in row_parts(gpu, &w.token_embd)? {
        t.weights += uploaded_len(w.token_embd.ty, bytes.len());
        t.act += uniforms::<EmbedParams>(2);
    }
    for l in &w.layers {
        layer(&mut t, &matmul, gpu, cfg, opts, l);
    }
    // The LM head: norm gain, one matvec per part (tied: on the embedding's
    // matrices).
    t.weights += words(w.output_norm.len());
    for (_, _, bytes) in row_parts(gpu, &w.output)? {
        if !w.tied_output {
            t.weights += uploaded_len(w.output.ty, bytes.len());
        }
        t.act += uniforms::<MatvecParams>(1);
    }
    // The matmuls' scratch, one buffer of each kind at the largest need
    // (`MatmulKernels::reserve`).
    let (part, int8) = matmul.max_scratch(matmul_shapes(&w.layers), tokens as u32);
    t.act += [part, int8]
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| padded(n))
        .sum::<u64>();
    let total = t.weights.saturating_add(t.kv).saturating_add(t.act);
    Ok(MemoryEstimate {
        weights: t.weights,
        kv_cache: t.kv,
        activations: t.act,
        total,
        positions,
    })
}

/// The buffers sized by the shapes alone: decode step, KV cache and
/// attention partials, RoPE table, prefill chunk, argmax, sampler, readback
/// slots (`Activations`, `KvCache`, `BatchActivations`, `Argmax`,
/// `GpuSampler`, `readback_slots`).
fn activations(t: &mut Tally, cfg: &Config, tuning: &Tuning, positions: usize, tokens: usize) {
    let q_dim = cfg.n_heads * cfg.head_dim;
    let qkv = q_dim + 2 * cfg.kv_dim();
    let records = 4 * steps_per_submit(tuning);
    let decode = [
        cfg.dim,
        qkv,
        q_dim,
        2 * cfg.ffn_dim,
        cfg.vocab_size,
        4,
        records,
        4,
    ];
    t.act += decode.iter().map(|&n| words(n)).sum::<u64>();
    let kv = (cfg.n_layers as u64)
        .saturating_mul(positions as u64)
        .saturating_mul(cfg.kv_dim() as u64)
        .saturating_mul(4);
    t.kv += 2 * padded(kv);
    let chunks = positions.div_ceil(ATTN_CHUNK);
    t.act += words(cfg.n_heads * chunks * (cfg.head_dim + 4));
    t.act += words(cfg.rope_freqs().len());
    let prefill = [cfg.dim, qkv, q_dim, 2 * cfg.ffn_dim];
    t.act += words(CHUNK_HEADER + tokens);
    t.act += prefill.iter().map(|&n| words(tokens * n)).sum::<u64>();
    // Argmax: one pass, or a pass per span into (value, index) pairs and a final one.
    let vocab = cfg.vocab_size;
    if vocab <= ARGMAX_SPAN as usize {
        t.act += uniforms::<ArgmaxParams>(1);
    } else {
        t.act += words(vocab.div_ceil(ARGMAX_SPAN as usize) * 2) + uniforms::<ArgmaxParams>(2);
    }
    // Sampler: history, window counts, candidates, two passes.
    let spans = vocab.div_ceil(SAMPLE_SPAN as usize);
    t.act += words(positions + 1) + words(vocab) + words(spans * MAX_TOP_K * 2);
    t.act += uniforms::<SampleParams>(2);
    t.act += readback_slot_count(tuning) as u64 * 4;
}

/// One layer (`Builder::layer`): norm gains, the Q/K/V bias row, the
/// matrices as uploaded (Q|K|V and gate|up stacked where their types
/// allow), each with its decode matvec(s) and prefill matmul, in the order
/// they are bound, and the four attention dispatches.
fn layer(
    t: &mut Tally,
    matmul: &MatmulKernels,
    gpu: &Gpu,
    cfg: &Config,
    opts: &ModelOptions,
    l: &LayerWeights<'_>,
) {
    let hd = cfg.head_dim;
    let width = cfg.n_heads * hd + 2 * cfg.kv_dim();
    let bias =
        l.qkv_bias.as_ref().map_or(width, Vec::len) + l.qk_norm.as_ref().map_or(2 * hd, Vec::len);
    t.weights += words(l.attn_norm.len()) + words(l.ffn_norm.len()) + words(bias);
    for parts in [&[&l.wq, &l.wk, &l.wv][..], &[&l.w_gate, &l.w_up][..]] {
        for run in stack_runs(parts) {
            let bytes = run.iter().map(|p| p.data.len()).sum();
            t.weights += uploaded_len(run[0].ty, bytes);
            let rows = run.iter().map(|p| p.rows).sum();
            let shape = (rows, run[0].cols);
            // QKV and gate∣up take the RMSNorm-fused input.
            t.act += uniforms::<MatvecParams>(1) + matmul_uniforms(matmul, run[0].ty, shape, true);
        }
    }
    // Wo: the plain matvec and, where it merges attention's chunks, a second one.
    let merge = fuses_merge(gpu, opts, l.wo.rows, l.wo.cols);
    for (m, matvecs) in [(&l.wo, 1 + merge as usize), (&l.w_down, 1)] {
        t.weights += uploaded_len(m.ty, m.data.len());
        let shape = (m.rows, m.cols);
        t.act += uniforms::<MatvecParams>(matvecs) + matmul_uniforms(matmul, m.ty, shape, false);
    }
    // Decode attention and its merge pass; prefill RoPE + KV write and attention.
    t.act += uniforms::<AttnParams>(4);
}
