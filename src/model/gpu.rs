//! The llama forward pass on the GPU: weights uploaded once, every pipeline,
//! buffer and bind group built at load, and one decode step recorded as one
//! compute pass (≈ 5 dispatches per layer):
//!
//!   embed(tok) → x
//!   per layer: qkv = Wqkv · rmsnorm(x)            (fused norm, Q|K|V concatenated)
//!              att = attention(qkv, cache, pos)   (RoPE + KV write fused; per head ×
//!                    64-position chunk)
//!              x  += Wo · merge(att)               (chunks merged while Wo stages
//!                    its input; fused residual)
//!              gu  = Wgate|up · rmsnorm(x)         (fused norm, gate|up concatenated)
//!              x  += Wdown · (silu(g) ⊙ u)         (fused SwiGLU + residual)
//!   logits = Wout · rmsnorm(x); tok = argmax(logits) or sample(logits, history, draw)
//!
//! The token id stays on the GPU (argmax or the sampler writes what embed
//! reads next step), so the host can submit step t+1 before reading step t's id.
//!
//! Prompts are processed in chunks of up to `Tuning::prefill_tokens` tokens with the
//! same dataflow over token-major activation matrices (batched embedding,
//! matrix-matrix products that decode each weight block once per 64-token
//! tile, split over K with a reduce pass; chunk attention in two
//! dispatches), one submit per chunk; the last chunk ends
//! with the LM head and argmax on the last token, as a decode step does.
//!
//! [`GpuModel::with_options`] builds all of it in the order above, one short
//! builder per stage: limits and the memory estimate (`memory.rs`, checked
//! against [`ModelOptions::memory_budget`]), activations, KV cache, prefill
//! activations, embedding, per layer the decode and prefill ops, the head,
//! readback slots.

use crate::error::{Error, Result};
use crate::gguf::GgmlType;
use crate::gpu::matvec::{capture, Dispatch, MatvecInput, ROWS_PER_WORKGROUP};
use crate::gpu::prefill::{
    attention_prefill, chunk_words, embed_batch, format_flag, AttnBuffers, BatchDispatch,
    MatmulBinding, CHUNK_HEADER,
};
use crate::gpu::selfcheck::{self, KernelCheck, Output};
use crate::gpu::shader::{AttnParams, EmbedParams};
use crate::gpu::{
    read_f32, Argmax, Gpu, GpuError, GpuMatrix, GpuSampler, Inputs, KernelSpec, MapWait,
    MatmulKernels, MatvecKernels, Tuning, MAX_STEPS_PER_SUBMIT,
};
use crate::model::{Config, LayerWeights, MemoryEstimate, QTensor, Weights};
use crate::sampling::{Sampler, SamplerConfig};

/// Decode steps per submission: `Tuning::steps_per_submit`, within
/// 1..=[`MAX_STEPS_PER_SUBMIT`].
pub(super) fn steps_per_submit(t: &Tuning) -> usize {
    t.steps_per_submit.clamp(1, MAX_STEPS_PER_SUBMIT)
}

/// Submissions in flight beyond the one being read: `Tuning::run_ahead`,
/// 1 or 2.
fn run_ahead(t: &Tuning) -> usize {
    t.run_ahead.clamp(1, 2)
}

/// Token-id readback slots: one per id in flight, which is up to the
/// submission being read and `run_ahead` more, `steps_per_submit` each.
pub(super) fn readback_slot_count(t: &Tuning) -> usize {
    (run_ahead(t) + 1) * steps_per_submit(t)
}

/// The step uniform's words (`Activations::step`): position, the sampling
/// pass's uniform draw, padding.
fn step_record(pos: usize, draw: f32) -> [u32; 4] {
    [pos as u32, draw.to_bits(), 0, 0]
}

/// Positions per decode-attention workgroup (attention.wgsl's chunk).
pub(super) const ATTN_CHUNK: usize = 64;

/// Attention chunks the decode step at position `pos` spans; with one, the
/// chunk's workgroup writes the output and the plain Wo matvec reads it.
fn attention_chunks(pos: usize) -> usize {
    pos / ATTN_CHUNK + 1
}

/// Most prompt tokens a prefill chunk may be set to hold
/// ([`crate::gpu::Tuning::prefill_tokens`]).
pub const PREFILL_TOKENS_MAX: usize = 1024;

/// The buffers of one decode step.
struct Activations {
    /// [dim] f32 residual stream (the LM head reads it)
    x: wgpu::Buffer,
    /// [q_dim + 2·kv_dim] f32: q | k | v
    qkv: wgpu::Buffer,
    /// [q_dim] f32 attention output, heads side by side
    att: wgpu::Buffer,
    /// [2·ffn_dim] f32: gate | up
    ffn: wgpu::Buffer,
    /// [vocab] f32
    logits: wgpu::Buffer,
    /// [pos, draw bits, 0, 0] u32, written by the host each step (or copied
    /// from `step_records` when a submission holds several steps)
    step: wgpu::Buffer,
    /// [steps_per_submit × 4] u32: the steps of one submission, each copied
    /// into `step` before its pass
    step_records: wgpu::Buffer,
    /// [token, 0, 0, 0] u32: written by argmax (or the host for prompt
    /// tokens), read by embed
    tok: wgpu::Buffer,
}

impl Activations {
    fn new(gpu: &Gpu, cfg: &Config) -> Result<Activations> {
        let s = wgpu::BufferUsages::empty();
        let f = |n: usize| n as u64 * 4;
        let q_dim = cfg.n_heads * cfg.head_dim;
        Ok(Activations {
            x: gpu.storage("x", f(cfg.dim), s)?,
            qkv: gpu.storage("qkv", f(q_dim + 2 * cfg.kv_dim()), s)?,
            att: gpu.storage("att", f(q_dim), s)?,
            ffn: gpu.storage("gate_up", f(2 * cfg.ffn_dim), s)?,
            logits: gpu.storage("logits", f(cfg.vocab_size), s)?,
            step: gpu.storage("step", 16, s)?,
            step_records: gpu.storage(
                "step records",
                16 * steps_per_submit(&gpu.tuning) as u64,
                s,
            )?,
            tok: gpu.storage("tok", 16, s)?,
        })
    }
}

/// The KV cache, shared by decode and prefill, and decode attention's
/// per-chunk results.
struct KvCache {
    /// [n_layers × max_ctx × kv_dim] f32 keys, RoPE applied
    k: wgpu::Buffer,
    /// [n_layers × max_ctx × kv_dim] f32 values
    v: wgpu::Buffer,
    /// [⌈max_ctx/64⌉ × n_heads × (head_dim + 4)] f32: per (chunk, head) m,
    /// l, 2 unused, then o (attention.wgsl)
    partials: wgpu::Buffer,
    /// [head_dim / 2] f32: RoPE angle per position of each pair
    /// (`Config::rope_freqs`: base, linear scaling, Llama 3's factors)
    rope: wgpu::Buffer,
}

impl KvCache {
    fn new(gpu: &Gpu, cfg: &Config, max_ctx: usize) -> Result<KvCache> {
        let s = wgpu::BufferUsages::empty();
        // In u64: on 32-bit targets the usize product can wrap.
        let bytes = (cfg.n_layers as u64)
            .saturating_mul(max_ctx as u64)
            .saturating_mul(cfg.kv_dim() as u64)
            .saturating_mul(4);
        if bytes > gpu.max_binding() {
            return Err(GpuError::BindingTooLarge {
                what: "KV cache (per K or V)".into(),
                needed: bytes,
                limit: gpu.max_binding(),
            }
            .into());
        }
        let chunks = max_ctx.div_ceil(ATTN_CHUNK);
        let partials = (cfg.n_heads * chunks * (cfg.head_dim + 4)) as u64 * 4;
        let rope: Vec<f32> = cfg.rope_freqs().iter().map(|&f| f as f32).collect();
        Ok(KvCache {
            k: gpu.storage("k cache", bytes, s)?,
            v: gpu.storage("v cache", bytes, s)?,
            partials: gpu.storage("attention partials", partials, s)?,
            rope: gpu.upload("rope frequencies", bytemuck::cast_slice(&rope), s)?,
        })
    }
}

/// The buffers of one prefill chunk: a row per token (token-major).
struct BatchActivations {
    /// [CHUNK_HEADER + tokens] u32: chunk header and token ids (see
    /// [`chunk_words`]), written once per chunk
    chunk: wgpu::Buffer,
    /// [tokens × dim] f32 residual stream
    x: wgpu::Buffer,
    /// [tokens × (q_dim + 2·kv_dim)] f32: q | k | v
    qkv: wgpu::Buffer,
    /// [tokens × q_dim] f32 attention output
    att: wgpu::Buffer,
    /// [tokens × 2·ffn_dim] f32: gate | up
    ffn: wgpu::Buffer,
    /// Tokens a chunk holds (`Tuning::prefill_tokens`, at most
    /// [`PREFILL_TOKENS_MAX`]).
    tokens: u32,
}

impl BatchActivations {
    fn new(gpu: &Gpu, cfg: &Config) -> Result<BatchActivations> {
        let tokens = gpu.tuning.prefill_tokens.clamp(1, PREFILL_TOKENS_MAX);
        let s = wgpu::BufferUsages::empty();
        let rows = |n: usize| tokens as u64 * n as u64 * 4;
        let q_dim = cfg.n_heads * cfg.head_dim;
        Ok(BatchActivations {
            chunk: gpu.storage("prefill chunk", ((CHUNK_HEADER + tokens) * 4) as u64, s)?,
            x: gpu.storage("prefill x", rows(cfg.dim), s)?,
            qkv: gpu.storage("prefill qkv", rows(q_dim + 2 * cfg.kv_dim()), s)?,
            att: gpu.storage("prefill att", rows(q_dim), s)?,
            ffn: gpu.storage("prefill gate_up", rows(2 * cfg.ffn_dim), s)?,
            tokens: tokens as u32,
        })
    }
}

/// The model's widths as kernels take them (u32 floats per row).
#[derive(Clone, Copy)]
struct Widths {
    dim: u32,
    /// n_heads · head_dim
    q_dim: u32,
    /// q_dim + 2·kv_dim
    qkv: u32,
    /// 2·ffn_dim
    gate_up: u32,
}

impl Widths {
    fn new(cfg: &Config) -> Result<Widths> {
        let q_dim = cfg.n_heads * cfg.head_dim;
        Ok(Widths {
            dim: u32_of(cfg.dim, "dim")?,
            q_dim: u32_of(q_dim, "q_dim")?,
            qkv: u32_of(q_dim + 2 * cfg.kv_dim(), "qkv row")?,
            gate_up: u32_of(2 * cfg.ffn_dim, "ffn")?,
        })
    }
}

/// One layer's prepared batched (prefill) dispatches, in execution order.
struct BatchLayerOps {
    qkv: Vec<BatchDispatch>,
    rope_kv: BatchDispatch,
    attention: BatchDispatch,
    wo: BatchDispatch,
    gate_up: Vec<BatchDispatch>,
    down: BatchDispatch,
}

/// Everything batched prefill needs, built once at load.
struct PrefillOps {
    act: BatchActivations,
    /// One lookup per part of the embedding table.
    embed: Vec<BatchDispatch>,
    layers: Vec<BatchLayerOps>,
}

/// One layer's prepared dispatches, in execution order.
struct LayerOps {
    qkv: Vec<Dispatch>,
    /// One workgroup per head × 64-position chunk.
    attention: Dispatch,
    /// Merges the chunks into att, from position 64, unless `wo_merge` does.
    combine: Dispatch,
    /// x += Wo · att.
    wo: Dispatch,
    /// x += Wo · (the chunks' partials merged while staged), from position 64
    /// ([`ModelOptions::fuse_attention_merge`]).
    wo_merge: Option<Dispatch>,
    gate_up: Vec<Dispatch>,
    down: Dispatch,
}

/// A token-id readback slot: a 4-byte MAP_READ buffer and the submission
/// that fills it.
struct Slot {
    buffer: wgpu::Buffer,
    pending: Option<(wgpu::SubmissionIndex, MapWait)>,
}

/// Ids being chosen on the GPU (see [`GpuModel::start_tokens`]): the
/// position after the prompt, how many ids may come, how each step ends,
/// the draws for the sampler, ids read and steps submitted.
pub struct GpuTokens {
    first: usize,
    max_new: usize,
    head: Head,
    draws: Option<Sampler>,
    read: usize,
    submitted: usize,
}

/// How a decode step ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Head {
    /// No LM head (a prompt token whose logits nobody reads).
    None,
    /// LM head, then argmax.
    Argmax,
    /// LM head, then the GPU sampler.
    Sample,
    /// Only the sampler, over the logits already there.
    SampleOnly,
}

/// The model resident on the GPU.
pub struct GpuModel {
    gpu: Gpu,
    cfg: Config,
    max_ctx: usize,
    act: Activations,
    /// Position of the step being recorded (set by `write_step`): sizes the
    /// attention grid.
    pos: std::cell::Cell<usize>,
    /// Counts the steps and prefills that wrote the KV cache (see
    /// [`GpuModel::cache_epoch`]).
    epoch: std::cell::Cell<u64>,
    /// The embedding lookup, one per part of a table larger than a binding.
    embed: Vec<Dispatch>,
    layers: Vec<LayerOps>,
    prefill_ops: PrefillOps,
    /// Tokens per prefill chunk (≤ prefill_capacity).
    prefill_chunk: usize,
    /// Tokens the prefill buffers hold (`Tuning::prefill_tokens`).
    prefill_capacity: usize,
    /// The LM head, one matvec per part of a matrix larger than a binding.
    head: Vec<Dispatch>,
    argmax: Argmax,
    /// Sampling after the LM head when the settings are not plain greedy.
    sampler: GpuSampler,
    slots: Vec<Slot>,
    /// The KV cache, weights, embedding table and norm gains, kept alive for
    /// the bind groups.
    _kv: KvCache,
    _kept: Kept,
    /// Submissions kept in flight beyond the one whose id is read (1 or 2;
    /// `Tuning::run_ahead`).
    run_ahead: usize,
    /// Decode steps per submission (`Tuning::steps_per_submit`).
    steps_per_submit: usize,
    /// Dispatches per decode step (with LM head and argmax) from position 64
    /// on ([`Self::dispatches_at`]).
    pub dispatches_per_token: usize,
    /// Bytes of weights read per decode step.
    pub weight_bytes_per_token: u64,
    /// What the model takes on the GPU ([`GpuModel::memory`]).
    memory: MemoryEstimate,
    /// What the kernel self-checks found ([`GpuModel::kernel_check`]).
    kernel_check: KernelCheck,
}

/// Stacks matrices with equal type and columns into one (rows concatenated).
fn concat(parts: &[&QTensor<'_>]) -> Option<(GgmlType, usize, usize, Vec<u8>)> {
    let first = parts.first()?;
    if parts
        .iter()
        .any(|p| p.ty != first.ty || p.cols != first.cols)
    {
        return None;
    }
    let rows = parts.iter().map(|p| p.rows).sum();
    let mut bytes = Vec::with_capacity(parts.iter().map(|p| p.data.len()).sum());
    for p in parts {
        bytes.extend_from_slice(p.data);
    }
    Some((first.ty, rows, first.cols, bytes))
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Error::Gpu(GpuError::BadArgument(format!(
            "{what} = {v} does not fit in u32"
        )))
    })
}

/// Choices that trade precision for speed in [`GpuModel`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelOptions {
    /// What decode matvecs do with their inputs ([`Inputs`]). The default,
    /// `Auto`, quantizes the inputs of matrices of ≥ 2048 columns or ≥ 16384
    /// rows to int8 in two levels (about 15 bits) and keeps f32 elsewhere: on
    /// an H100, Llama-3.2-1B decode 1,018 → 1,143 tok/s, SmolLM2 only its LM
    /// head. `Int8` (one level, as llama.cpp's GPU backends do) also gives
    /// the prefill matmuls int8 inputs: fastest (Llama-3.2-1B decode 1,217,
    /// prefill 9.4k → 16.3k), but SmolLM2's logits move by up to ~0.1
    /// relative instead of ≤ 1e-4.
    pub inputs: Inputs,
    /// From position 64, where decode attention splits into 64-position
    /// chunks, merge the chunks inside the output projection (every
    /// workgroup of it repeats the merge while staging its input) instead of
    /// in a separate dispatch. `None`: when the projection has at most
    /// `Tuning::attn_merge_max` workgroups × columns.
    pub fuse_attention_merge: Option<bool>,
    /// Most bytes of GPU memory the model may take. When its estimate
    /// ([`GpuModel::memory_estimate`]) is larger, [`GpuModel::with_options`]
    /// fails with [`GpuError::OverBudget`] before allocating anything, naming
    /// what it needs and how many positions would fit. `None`: no check
    /// (wgpu's out-of-memory error, if it comes, still carries the estimate).
    pub memory_budget: Option<u64>,
    /// The kernel self-check at load ([`GpuModel::check_kernels`]). `None`
    /// (the default): run it when the device built kernels from something
    /// other than the embedded WGSL — the MSL twins on Metal, or a
    /// `shader_dir`'s files; `Some(false)`: never.
    pub kernel_check: Option<bool>,
}

/// Uploads kept alive for the bind groups that read them.
#[derive(Default)]
struct Kept {
    weights: Vec<GpuMatrix>,
    buffers: Vec<wgpu::Buffer>,
}

/// Refuses a model the kernels cannot run, before anything is allocated:
/// a head size decode attention does not handle, query heads not grouped
/// over KV heads, a layer weight in a format without GPU kernels, or a
/// layer weight over the storage binding limit (named; the embedding table
/// and the LM head are split by rows instead, see `row_parts`). Returns the
/// positions the KV cache will hold.
pub(super) fn check_limits(
    gpu: &Gpu,
    cfg: &Config,
    w: &Weights<'_>,
    max_ctx: usize,
) -> Result<usize> {
    if cfg.head_dim > 256 || !cfg.head_dim.is_multiple_of(4) {
        return Err(GpuError::Unsupported(format!(
            "head size {} (GPU attention needs ≤ 256, multiple of 4)",
            cfg.head_dim
        ))
        .into());
    }
    if !cfg.n_heads.is_multiple_of(cfg.n_kv_heads) {
        return Err(GpuError::BadArgument("n_heads not a multiple of n_kv_heads".into()).into());
    }
    let layer_tensors = || {
        w.layers
            .iter()
            .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down])
    };
    for t in layer_tensors() {
        gpu.storage_size(&t.name, t.data.len() as u64)?;
    }
    if let Some(t) = layer_tensors().find(|t| format_flag(t.ty).is_none()) {
        return Err(
            GpuError::Unsupported(format!("{}: no GPU matmul for {}", t.name, t.ty)).into(),
        );
    }
    Ok(max_ctx.min(cfg.context_len).max(1))
}

/// Where a norm-fused projection writes: a decode buffer, and the prefill
/// buffer with its floats per token row.
struct Rows<'b> {
    decode: &'b wgpu::Buffer,
    prefill: &'b wgpu::Buffer,
    stride: u32,
}

/// Storage bindings of decode attention: step, qkv, k cache, v cache,
/// partials, att, rope frequencies, qkv bias.
const ATTENTION_BINDINGS: &[bool] = &[true, true, false, false, false, false, true, true];
/// Storage bindings of attention_combine: step, partials, att.
const COMBINE_BINDINGS: &[bool] = &[true, true, false];
/// Storage bindings of embed: table, tok, x.
const EMBED_BINDINGS: &[bool] = &[true, true, false];

/// What the load-time builders share: the device, the model's shape, the
/// kernels and the buffers every op binds. Builders run in the order of the
/// forward pass and leave their uploads in a [`Kept`].
struct Builder<'a> {
    gpu: &'a Gpu,
    cfg: &'a Config,
    max_ctx: usize,
    opts: ModelOptions,
    widths: Widths,
    matvec: MatvecKernels,
    matmul: MatmulKernels,
    act: Activations,
    kv: KvCache,
    batch: BatchActivations,
}

impl<'a> Builder<'a> {
    /// The kernels and every activation buffer: decode step, KV cache,
    /// prefill chunk.
    fn new(gpu: &'a Gpu, cfg: &'a Config, max_ctx: usize, opts: ModelOptions) -> Result<Self> {
        Ok(Builder {
            gpu,
            cfg,
            max_ctx,
            opts,
            matvec: MatvecKernels::new(gpu)?.with_inputs(opts.inputs),
            matmul: MatmulKernels::new(gpu).with_q8_activations(opts.inputs == Inputs::Int8),
            act: Activations::new(gpu, cfg)?,
            kv: KvCache::new(gpu, cfg, max_ctx)?,
            batch: BatchActivations::new(gpu, cfg)?,
            widths: Widths::new(cfg)?,
        })
    }

    /// The embedding table, uploaded once as matrices (a tied LM head binds
    /// them again, [`Builder::lm_head`]), and its lookups: the decode step's
    /// (`embed.<format>`: the id in tok → x) and a prefill chunk's
    /// (`embed_batch.<format>`: the chunk's ids → its rows of x). Returns
    /// the table's parts with their first rows too.
    #[allow(clippy::type_complexity)]
    fn embedding(
        &self,
        emb: &QTensor<'_>,
    ) -> Result<(Vec<Dispatch>, Vec<BatchDispatch>, Vec<(usize, GpuMatrix)>)> {
        let gpu = self.gpu;
        let flag = format_flag(emb.ty).ok_or_else(|| {
            GpuError::Unsupported(format!("{}: no GPU embedding for {}", emb.name, emb.ty))
        })?;
        let (mut embed, mut embed_b, mut tables) = (Vec::new(), Vec::new(), Vec::new());
        for (row0, rows, bytes) in row_parts(gpu, emb)? {
            let table = GpuMatrix::upload(gpu, &emb.name, emb.ty, rows, emb.cols, bytes)?;
            let params = EmbedParams {
                rows: u32_of(rows, "vocab")?,
                cols: u32_of(emb.cols, "dim")?,
                row0: u32_of(row0, "vocab")?,
                pad1: 0,
            };
            embed.push(Dispatch::launch(
                gpu,
                &format!("embed.{}", emb.ty.name()),
                &KernelSpec::new("embed", &[flag], EMBED_BINDINGS),
                &params,
                &[&table.buffer, &self.act.tok, &self.act.x],
                u32_of(self.cfg.dim.div_ceil(256), "dim")?,
            )?);
            let b = &self.batch;
            let rows = (params.row0, params.rows);
            let (ty, cols) = (emb.ty, params.cols);
            embed_b.push(embed_batch(
                gpu,
                ty,
                &table.buffer,
                rows,
                cols,
                &b.chunk,
                &b.x,
                b.tokens,
            )?);
            tables.push((row0, table));
        }
        Ok((embed, embed_b, tables))
    }

    /// Layer `i`'s decode and prefill ops, in the order of the forward pass.
    fn layer(
        &self,
        kept: &mut Kept,
        i: usize,
        l: &LayerWeights<'_>,
    ) -> Result<(LayerOps, BatchLayerOps)> {
        let s = wgpu::BufferUsages::empty();
        let attn_norm = self
            .gpu
            .upload("attn_norm", bytemuck::cast_slice(&l.attn_norm), s)?;
        let ffn_norm = self
            .gpu
            .upload("ffn_norm", bytemuck::cast_slice(&l.ffn_norm), s)?;
        let (act, b, wd) = (&self.act, &self.batch, self.widths);
        let qkv_out = Rows {
            decode: &act.qkv,
            prefill: &b.qkv,
            stride: wd.qkv,
        };
        let (qkv, qkv_b) = self.norm_fused(kept, i, &[&l.wq, &l.wk, &l.wv], &attn_norm, qkv_out)?;
        let ffn_out = Rows {
            decode: &act.ffn,
            prefill: &b.ffn,
            stride: wd.gate_up,
        };
        let (gate_up, gate_up_b) =
            self.norm_fused(kept, i, &[&l.w_gate, &l.w_up], &ffn_norm, ffn_out)?;
        let (wo, wo_merge, wo_b) = self.output_projection(kept, &l.wo)?;
        let (down, down_b) = self.down(kept, &l.w_down)?;
        let params = self.attn_params(i)?;
        let bias = self.qkv_bias(l)?;
        let (attention, combine) = self.decode_attention(&params, &bias)?;
        let (kv, t) = (&self.kv, b.tokens);
        let bufs = AttnBuffers {
            chunk: &b.chunk,
            qkv: &b.qkv,
            kcache: &kv.k,
            vcache: &kv.v,
            out: &b.att,
            rope: &kv.rope,
            bias: &bias,
        };
        let (rope_kv, attention_b) = attention_prefill(self.gpu, &params, &bufs, t)?;
        kept.buffers.extend([attn_norm, ffn_norm, bias]);
        let decode = LayerOps {
            qkv,
            attention,
            combine,
            wo,
            wo_merge,
            gate_up,
            down,
        };
        let prefill = BatchLayerOps {
            qkv: qkv_b,
            rope_kv,
            attention: attention_b,
            wo: wo_b,
            gate_up: gate_up_b,
            down: down_b,
        };
        Ok((decode, prefill))
    }

    /// A prefill matmul over the chunk reading and adding into the residual
    /// stream (x += W · x); callers replace the fields that differ.
    fn residual(&self) -> MatmulBinding<'_> {
        let b = &self.batch;
        MatmulBinding {
            x: &b.x,
            x_stride: self.widths.dim,
            y: &b.x,
            y_stride: self.widths.dim,
            y_offset: 0,
            chunk: &b.chunk,
            max_tokens: b.tokens,
            input: MatvecInput::Plain,
            accumulate: true,
        }
    }

    /// out = W · rmsnorm(x) ⊙ gain for W = `parts` stacked (Wq|Wk|Wv,
    /// Wgate|Wup): one matrix when their types and columns allow, else one
    /// per part at successive row offsets of `out`.
    fn norm_fused(
        &self,
        kept: &mut Kept,
        i: usize,
        parts: &[&QTensor<'_>],
        gain: &wgpu::Buffer,
        out: Rows<'_>,
    ) -> Result<(Vec<Dispatch>, Vec<BatchDispatch>)> {
        let gpu = self.gpu;
        let input = MatvecInput::RmsNorm {
            gain,
            eps: self.cfg.rms_eps,
        };
        let (mut ops, mut bops) = (Vec::new(), Vec::new());
        let mut off = 0u32;
        for m in upload_stacked(gpu, i, parts)? {
            ops.push(
                self.matvec
                    .bind(gpu, &m, &self.act.x, 0, out.decode, off, input, false)?,
            );
            let b = MatmulBinding {
                y: out.prefill,
                y_stride: out.stride,
                y_offset: off,
                input,
                accumulate: false,
                ..self.residual()
            };
            bops.push(self.matmul.bind(gpu, &m, b)?);
            off += m.rows;
            kept.weights.push(m);
        }
        Ok((ops, bops))
    }

    /// x += Wo · att: the decode matvec, the one that merges the attention
    /// chunks while staging its input (from position 64, where
    /// [`ModelOptions::fuse_attention_merge`] or `Tuning::attn_merge_max`
    /// says so), and the prefill matmul.
    fn output_projection(
        &self,
        kept: &mut Kept,
        t: &QTensor<'_>,
    ) -> Result<(Dispatch, Option<Dispatch>, BatchDispatch)> {
        let gpu = self.gpu;
        let (act, kv) = (&self.act, &self.kv);
        let wo = GpuMatrix::upload(gpu, &t.name, t.ty, t.rows, t.cols, t.data)?;
        let op = self
            .matvec
            .bind(gpu, &wo, &act.att, 0, &act.x, 0, MatvecInput::Plain, true)?;
        let fuse = fuses_merge(gpu, &self.opts, t.rows, t.cols);
        let merge = MatvecInput::AttnMerge {
            step: &act.step,
            head_dim: u32_of(self.cfg.head_dim, "head size")?,
        };
        let op_merge = if fuse {
            Some(
                self.matvec
                    .bind(gpu, &wo, &kv.partials, 0, &act.x, 0, merge, true)?,
            )
        } else {
            None
        };
        let b = MatmulBinding {
            x: &self.batch.att,
            x_stride: self.widths.q_dim,
            ..self.residual()
        };
        let op_b = self.matmul.bind(gpu, &wo, b)?;
        kept.weights.push(wo);
        Ok((op, op_merge, op_b))
    }

    /// x += Wdown · (silu(gate) ⊙ up), decode and prefill.
    fn down(&self, kept: &mut Kept, t: &QTensor<'_>) -> Result<(Dispatch, BatchDispatch)> {
        let gpu = self.gpu;
        let down = GpuMatrix::upload(gpu, &t.name, t.ty, t.rows, t.cols, t.data)?;
        let act = &self.act;
        let op = self.matvec.bind(
            gpu,
            &down,
            &act.ffn,
            0,
            &act.x,
            0,
            MatvecInput::SwiGlu,
            true,
        )?;
        let b = MatmulBinding {
            x: &self.batch.ffn,
            x_stride: self.widths.gate_up,
            input: MatvecInput::SwiGlu,
            ..self.residual()
        };
        let op_b = self.matmul.bind(gpu, &down, b)?;
        kept.weights.push(down);
        Ok((op, op_b))
    }

    /// [q_dim + 2·kv_dim + 2·head_dim] f32: the layer's Q, K, V biases as a
    /// qkv row (zeros when the file has none), then the gains of the q and
    /// k heads' RMSNorm (ones without it).
    fn qkv_bias(&self, l: &LayerWeights<'_>) -> Result<wgpu::Buffer> {
        let (cfg, hd) = (self.cfg, self.cfg.head_dim);
        let width = cfg.n_heads * hd + 2 * cfg.kv_dim();
        let mut aux = l.qkv_bias.clone().unwrap_or_else(|| vec![0.0; width]);
        aux.extend(l.qk_norm.clone().unwrap_or_else(|| vec![1.0; 2 * hd]));
        let s = wgpu::BufferUsages::empty();
        Ok(self.gpu.upload("qkv bias", bytemuck::cast_slice(&aux), s)?)
    }

    /// The attention uniforms of layer `i` (its slice of the KV cache).
    fn attn_params(&self, i: usize) -> Result<AttnParams> {
        let (cfg, kv_dim) = (self.cfg, self.cfg.kv_dim());
        Ok(AttnParams {
            n_heads: u32_of(cfg.n_heads, "n_heads")?,
            n_kv_heads: u32_of(cfg.n_kv_heads, "n_kv_heads")?,
            head_dim: u32_of(cfg.head_dim, "head_dim")?,
            kv_dim: u32_of(kv_dim, "kv_dim")?,
            layer_offset: u32_of(i * self.max_ctx * kv_dim, "cache offset")?,
            max_ctx: u32_of(self.max_ctx, "max_ctx")?,
            rope_neox: u32::from(cfg.arch.rope_neox()),
            qk_norm: u32::from(cfg.arch.qk_norm()),
            eps: cfg.rms_eps,
            pad0: 0,
            pad1: 0,
            scale: 1.0 / (cfg.head_dim as f32).sqrt(),
        })
    }

    /// Decode attention (`attention`: RoPE, KV write and one workgroup per
    /// head × 64-position chunk) and the merge of its chunks
    /// (`attention_combine`).
    fn decode_attention(
        &self,
        params: &AttnParams,
        bias: &wgpu::Buffer,
    ) -> Result<(Dispatch, Dispatch)> {
        let (gpu, act, kv) = (self.gpu, &self.act, &self.kv);
        let bufs = [
            &act.step,
            &act.qkv,
            &kv.k,
            &kv.v,
            &kv.partials,
            &act.att,
            &kv.rope,
            bias,
        ];
        let s = KernelSpec::new("attention", &[], ATTENTION_BINDINGS);
        let attention = Dispatch::launch(gpu, "attention", &s, params, &bufs, params.n_heads)?;
        let bufs = [&act.step, &kv.partials, &act.att];
        let s = KernelSpec::new("attention_combine", &[], COMBINE_BINDINGS);
        let combine =
            Dispatch::launch(gpu, "attention_combine", &s, params, &bufs, params.n_heads)?;
        Ok((attention, combine))
    }

    /// Final RMSNorm + LM head: logits = Wout · rmsnorm(x) ⊙ gain. Tied, Wout
    /// is the embedding's `tables` (same bytes, same parts), bound again
    /// rather than uploaded twice; the tables are kept either way.
    fn lm_head(
        &self,
        kept: &mut Kept,
        w: &Weights<'_>,
        tables: Vec<(usize, GpuMatrix)>,
    ) -> Result<Vec<Dispatch>> {
        let gpu = self.gpu;
        let s = wgpu::BufferUsages::empty();
        let gain = gpu.upload("output_norm", bytemuck::cast_slice(&w.output_norm), s)?;
        let o = &w.output;
        let parts = if w.tied_output {
            tables
        } else {
            kept.weights.extend(tables.into_iter().map(|(_, t)| t));
            let mut parts = Vec::new();
            for (row0, rows, bytes) in row_parts(gpu, o)? {
                let m = GpuMatrix::upload(gpu, &o.name, o.ty, rows, o.cols, bytes)?;
                parts.push((row0, m));
            }
            parts
        };
        let mut head = Vec::new();
        // Rows row0.. of the logits from each part of the matrix.
        for (row0, m) in parts {
            let input = MatvecInput::RmsNorm {
                gain: &gain,
                eps: self.cfg.rms_eps,
            };
            let (act, y0) = (&self.act, u32_of(row0, "vocab")?);
            head.push(
                self.matvec
                    .bind(gpu, &m, &act.x, 0, &act.logits, y0, input, false)?,
            );
            kept.weights.push(m);
        }
        kept.buffers.push(gain);
        Ok(head)
    }
}

/// The norm-fused projections' matrices: each run of consecutive `parts`
/// whose types and columns agree stacked into one (named after its first):
/// Q, K and V as one matrix, or in a mixed-type file (Q4_K_M's Q8_0 attn_v
/// beside Q5_0 attn_q/attn_k) Q and K as one and V alone.
fn upload_stacked(gpu: &Gpu, i: usize, parts: &[&QTensor<'_>]) -> Result<Vec<GpuMatrix>> {
    let mut out = Vec::new();
    for run in stack_runs(parts) {
        let first = run[0];
        let m = match concat(run) {
            Some((ty, rows, cols, bytes)) if run.len() > 1 => {
                let name = format!("blk.{i}.{}", first.name);
                GpuMatrix::upload(gpu, &name, ty, rows, cols, &bytes)?
            }
            _ => GpuMatrix::upload(
                gpu,
                &first.name,
                first.ty,
                first.rows,
                first.cols,
                first.data,
            )?,
        };
        out.push(m);
    }
    Ok(out)
}

/// `parts` cut into the runs [`upload_stacked`] uploads as one matrix
/// each: consecutive parts of one type and width (never empty).
pub(super) fn stack_runs<'p, 't>(parts: &'p [&'p QTensor<'t>]) -> Vec<&'p [&'p QTensor<'t>]> {
    let mut runs = Vec::new();
    let mut rest = parts;
    while let Some(first) = rest.first() {
        let n = rest
            .iter()
            .take_while(|p| p.ty == first.ty && p.cols == first.cols)
            .count();
        let (run, tail) = rest.split_at(n);
        runs.push(run);
        rest = tail;
    }
    runs
}

/// Every matrix a prefill matmul is bound to, as (type, rows, cols): per
/// layer the runs of Q|K|V and of gate|up as [`upload_stacked`] stacks them,
/// Wo and Wdown. Sizes the matmuls' shared scratch once
/// ([`MatmulKernels::reserve`]); the memory estimate walks the same list.
pub(super) fn matmul_shapes(layers: &[LayerWeights<'_>]) -> Vec<(GgmlType, u32, u32)> {
    let u32_of = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    let mut shapes = Vec::new();
    for l in layers {
        for parts in [&[&l.wq, &l.wk, &l.wv][..], &[&l.w_gate, &l.w_up][..]] {
            for run in stack_runs(parts) {
                let rows = run.iter().map(|p| p.rows).sum();
                shapes.push((run[0].ty, u32_of(rows), u32_of(run[0].cols)));
            }
        }
        for m in [&l.wo, &l.w_down] {
            shapes.push((m.ty, u32_of(m.rows), u32_of(m.cols)));
        }
    }
    shapes
}

/// Whether the output projection (`rows`×`cols`) gets the matvec that
/// merges attention's chunks itself ([`ModelOptions::fuse_attention_merge`];
/// by default when its workgroups × columns are at most
/// `Tuning::attn_merge_max`).
pub(super) fn fuses_merge(gpu: &Gpu, opts: &ModelOptions, rows: usize, cols: usize) -> bool {
    let workgroups = rows.div_ceil(ROWS_PER_WORKGROUP as usize);
    opts.fuse_attention_merge
        .unwrap_or(workgroups.saturating_mul(cols) <= gpu.tuning.attn_merge_max)
}

/// The token-id readback slots ([`readback_slot_count`] 4-byte MAP_READ
/// buffers).
fn readback_slots(gpu: &Gpu) -> Result<Vec<Slot>> {
    let slot = || {
        gpu.scoped("creating readback slot", || Slot {
            buffer: gpu.create_buffer(&wgpu::BufferDescriptor {
                label: Some("token readback"),
                size: 4,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            pending: None,
        })
    };
    Ok((0..readback_slot_count(&gpu.tuning))
        .map(|_| slot())
        .collect::<std::result::Result<_, _>>()?)
}

/// A matrix (or embedding table) in parts of whole rows that each fit one
/// storage binding with the matvec's zero tail: (first row, rows, bytes).
/// One part unless the tensor is larger than the device binds (Llama-3.2-1B's
/// 128256×2048 Q8_0 embedding is 280 MB; WebGPU binds 128 MiB by default).
pub(super) fn row_parts<'t>(gpu: &Gpu, t: &QTensor<'t>) -> Result<Vec<(usize, usize, &'t [u8])>> {
    let row_bytes = t.row_bytes().max(1);
    // Room for the zero tail, the padding to 16 bytes and Q6_K's padding to
    // whole periods of its GPU layout (under 1680 bytes).
    let room = gpu
        .max_binding()
        .saturating_sub(crate::gpu::matvec::MATRIX_TAIL + 16 + 1680);
    let per_part = usize::try_from(room / row_bytes as u64).unwrap_or(usize::MAX);
    if per_part == 0 {
        return Err(GpuError::BindingTooLarge {
            what: format!("{} (one row)", t.name),
            needed: row_bytes as u64,
            limit: gpu.max_binding(),
        }
        .into());
    }
    let mut parts = Vec::new();
    let mut row0 = 0;
    while row0 < t.rows {
        let n = per_part.min(t.rows - row0);
        let bytes = t
            .data
            .get(row0 * row_bytes..(row0 + n) * row_bytes)
            .ok_or_else(|| GpuError::BadArgument(format!("{}: rows past its data", t.name)))?;
        parts.push((row0, n, bytes));
        row0 += n;
    }
    Ok(parts)
}

/// Dispatches per decode step from position 64 on (embed, each layer's ops
/// with the merge pass where Wo does not merge, LM head, argmax) and bytes of
/// weights it reads.
fn per_token(
    embed: &[Dispatch],
    layers: &[LayerOps],
    head: &[Dispatch],
    argmax: &Argmax,
) -> (usize, u64) {
    let per_layer: usize = layers
        .iter()
        .map(|l| l.qkv.len() + l.gate_up.len() + 3 + l.wo_merge.is_none() as usize)
        .sum();
    let dispatches = embed.len() + per_layer + head.len() + argmax.dispatches();
    let weight_bytes = layers
        .iter()
        .flat_map(|l| l.qkv.iter().chain(&l.gate_up).chain([&l.wo, &l.down]))
        .map(|d| d.weight_bytes)
        .sum::<u64>()
        + head.iter().map(|d| d.weight_bytes).sum::<u64>();
    (dispatches, weight_bytes)
}

impl GpuModel {
    /// Uploads the weights and builds every pipeline, buffer and bind group,
    /// with the default [`ModelOptions`]. `max_ctx` caps the KV cache (and
    /// the positions a sequence may use).
    pub fn new(gpu: &Gpu, cfg: &Config, w: &Weights<'_>, max_ctx: usize) -> Result<GpuModel> {
        Self::with_options(gpu, cfg, w, max_ctx, ModelOptions::default())
    }

    /// [`GpuModel::new`] with explicit options. Estimates the memory the
    /// model takes and refuses it when over `opts.memory_budget`, then
    /// builds it in the order of the forward pass (see the module doc); an
    /// out-of-memory error while building carries the estimate
    /// ([`GpuError::ModelOutOfMemory`]).
    pub fn with_options(
        gpu: &Gpu,
        cfg: &Config,
        w: &Weights<'_>,
        max_ctx: usize,
        opts: ModelOptions,
    ) -> Result<GpuModel> {
        let estimate = Self::memory_estimate(gpu, cfg, w, max_ctx, opts)?;
        if let Some(budget) = opts.memory_budget.filter(|&b| estimate.total > b) {
            return Err(GpuError::OverBudget { estimate, budget }.into());
        }
        let mut m = Self::build(gpu, cfg, w, estimate, opts).map_err(|e| match e {
            Error::Gpu(GpuError::OutOfMemory { context }) => {
                GpuError::ModelOutOfMemory { context, estimate }.into()
            }
            e => e,
        })?;
        if opts.kernel_check != Some(false) && gpu.has_suspects() {
            m.check_kernels()?;
        }
        Ok(m)
    }

    /// The kernel self-check ([`crate::gpu::selfcheck`]): a prefill chunk
    /// of up to 8 tokens at position 0 and one decode step after it (LM head
    /// and argmax included) are run, then replayed with each kernel variant
    /// built from an MSL twin or a replaced source against its embedded
    /// WGSL; variants that change the outputs (residual stream, logits, the
    /// chosen id) run the WGSL from then on. Writes the KV cache at those
    /// positions, so it belongs before generation (`with_options` runs it
    /// there). The GPU sampler's kernels are not covered (their state
    /// changes with every run). Returns the accumulated report.
    pub fn check_kernels(&mut self) -> Result<&KernelCheck> {
        let n = self.prefill_chunk.min(8).min(self.max_ctx - 1).max(1);
        let vocab = self.cfg.vocab_size;
        let ids: Vec<u32> = (0..n).map(|i| ((i * 7919 + 11) % vocab) as u32).collect();
        let (done, launches) = capture(|| self.prefill(0, &ids));
        done?;
        let dim = self.cfg.dim;
        let outputs = [
            Output::floats(&self.prefill_ops.act.x, n * dim),
            Output::floats(&self.act.logits, vocab),
            Output::exact(&self.act.tok, 1),
        ];
        let mut report = std::mem::take(&mut self.kernel_check);
        selfcheck::check(&self.gpu, &launches, &outputs, &mut report)?;
        // The step re-reads its input id, so the argmax that overwrites it
        // is a sequence of its own. It follows the chunk, or rewrites its last
        // position when the context holds no more.
        self.write_step(n.min(self.max_ctx - 1), Some(ids[n - 1]))?;
        let (_, step) = capture(|| {
            self.gpu.submit_pass("q4gpu self-check step", |pass| {
                self.encode_step_with(pass, Head::None);
                self.head.iter().for_each(|d| d.encode(pass));
            })
        });
        let outputs = [
            Output::floats(&self.act.x, dim),
            Output::floats(&self.act.logits, vocab),
        ];
        selfcheck::check(&self.gpu, &step, &outputs, &mut report)?;
        let (_, argmax) = capture(|| {
            self.gpu
                .submit_pass("q4gpu self-check argmax", |pass| self.argmax.encode(pass))
        });
        selfcheck::check(
            &self.gpu,
            &argmax,
            &[Output::exact(&self.act.tok, 1)],
            &mut report,
        )?;
        self.kernel_check = report;
        Ok(&self.kernel_check)
    }

    /// What the kernel self-checks found (empty when none ran).
    pub fn kernel_check(&self) -> &KernelCheck {
        &self.kernel_check
    }

    /// The GPU memory [`GpuModel::with_options`] would allocate for this
    /// model, `max_ctx` positions and `opts`, by part, computed without
    /// allocating anything. It follows the builders buffer by buffer (the
    /// device's tuning decides the prefill chunk and matmul scratch sizes),
    /// counting the sizes q4gpu asks for, which drivers may round up
    /// further. Fails where `with_options` would refuse the model before
    /// allocating (head size, a layer weight over the binding limit, ...).
    pub fn memory_estimate(
        gpu: &Gpu,
        cfg: &Config,
        w: &Weights<'_>,
        max_ctx: usize,
        opts: ModelOptions,
    ) -> Result<MemoryEstimate> {
        super::memory::estimate(gpu, cfg, w, max_ctx, &opts)
    }

    /// Builds the model for `estimate.positions` positions.
    fn build(
        gpu: &Gpu,
        cfg: &Config,
        w: &Weights<'_>,
        estimate: MemoryEstimate,
        opts: ModelOptions,
    ) -> Result<GpuModel> {
        let max_ctx = estimate.positions;
        let b = Builder::new(gpu, cfg, max_ctx, opts)?;
        b.matmul
            .reserve(gpu, matmul_shapes(&w.layers), b.batch.tokens)?;
        let mut kept = Kept::default();
        let (embed, embed_b, tables) = b.embedding(&w.token_embd)?;
        let (mut layers, mut batch_layers) = (Vec::new(), Vec::new());
        for (i, l) in w.layers.iter().enumerate() {
            let (decode, prefill) = b.layer(&mut kept, i, l)?;
            layers.push(decode);
            batch_layers.push(prefill);
        }
        let head = b.lm_head(&mut kept, w, tables)?;
        let argmax = Argmax::new(gpu, &b.act.logits, cfg.vocab_size, &b.act.tok)?;
        let (logits, step, tok) = (&b.act.logits, &b.act.step, &b.act.tok);
        let sampler = GpuSampler::new(gpu, logits, cfg.vocab_size, step, tok, max_ctx)?;
        let slots = readback_slots(gpu)?;
        let (dispatches_per_token, weight_bytes_per_token) =
            per_token(&embed, &layers, &head, &argmax);
        let capacity = b.batch.tokens as usize;
        Ok(GpuModel {
            gpu: gpu.clone(),
            cfg: cfg.clone(),
            max_ctx,
            act: b.act,
            pos: std::cell::Cell::new(0),
            epoch: std::cell::Cell::new(0),
            embed,
            layers,
            prefill_ops: PrefillOps {
                act: b.batch,
                embed: embed_b,
                layers: batch_layers,
            },
            prefill_chunk: capacity,
            prefill_capacity: capacity,
            head,
            argmax,
            sampler,
            slots,
            _kv: b.kv,
            _kept: kept,
            run_ahead: run_ahead(&gpu.tuning),
            steps_per_submit: steps_per_submit(&gpu.tuning),
            dispatches_per_token,
            weight_bytes_per_token,
            memory: estimate,
            kernel_check: KernelCheck::default(),
        })
    }

    /// The GPU memory the model takes, by part ([`GpuModel::memory_estimate`]
    /// when it was built).
    pub fn memory(&self) -> &MemoryEstimate {
        &self.memory
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Positions the KV cache holds.
    pub fn max_ctx(&self) -> usize {
        self.max_ctx
    }

    /// The buffer holding the current token id (u32 at offset 0): written by
    /// argmax each step and read by the next step's embedding lookup. Host
    /// applications copy it out after [`GpuModel::encode_step_into`].
    pub fn token_buffer(&self) -> &wgpu::Buffer {
        &self.act.tok
    }

    /// The logits buffer (`[vocab]` f32) the last step with the LM head wrote.
    pub fn logits_buffer(&self) -> &wgpu::Buffer {
        &self.act.logits
    }

    /// The GPU this model lives on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// A number that changes whenever a decode step or a prefill is queued:
    /// what the KV cache holds is known to a caller (the [`crate::Decoder`]'s
    /// reuse across turns) only while it is unchanged.
    pub fn cache_epoch(&self) -> u64 {
        self.epoch.get()
    }

    /// Queues the per-step values: position `pos` and, for prompt tokens, the
    /// input token (`None`: use the id the previous step's argmax left on the GPU).
    pub fn write_step(&self, pos: usize, token: Option<u32>) -> Result<()> {
        self.write_step_draw(pos, token, 0.0)
    }

    /// [`GpuModel::write_step`] with the uniform draw in [0, 1) the step's
    /// sampling pass uses.
    fn write_step_draw(&self, pos: usize, token: Option<u32>, draw: f32) -> Result<()> {
        self.check_step(pos)?;
        if let Some(t) = token {
            if t as usize >= self.cfg.vocab_size {
                return Err(GpuError::BadArgument(format!(
                    "token {t} out of range (vocabulary {})",
                    self.cfg.vocab_size
                ))
                .into());
            }
            self.gpu
                .queue
                .write_buffer(&self.act.tok, 0, bytemuck::bytes_of(&t));
        }
        self.gpu.queue.write_buffer(
            &self.act.step,
            0,
            bytemuck::bytes_of(&step_record(pos, draw)),
        );
        self.pos.set(pos);
        Ok(())
    }

    /// Refuses a step past the context window; counts the step (the cache
    /// epoch).
    fn check_step(&self, pos: usize) -> Result<()> {
        self.epoch.set(self.epoch.get() + 1);
        if pos >= self.max_ctx {
            return Err(GpuError::BadArgument(format!(
                "position {pos} is past the context window of {} positions",
                self.max_ctx
            ))
            .into());
        }
        Ok(())
    }

    /// Records one decode step into `pass`: the whole network, then, if
    /// `head`, the LM head and the GPU argmax. Allocates nothing.
    pub fn encode_step(&self, pass: &mut wgpu::ComputePass<'_>, head: bool) {
        self.encode_step_with(pass, if head { Head::Argmax } else { Head::None });
    }

    /// One decode step ending as `head` says.
    fn encode_step_with(&self, pass: &mut wgpu::ComputePass<'_>, head: Head) {
        self.embed.iter().for_each(|d| d.encode(pass));
        for l in &self.layers {
            for d in &l.qkv {
                d.encode(pass);
            }
            self.encode_attention(pass, l);
            self.wo_op(l).encode(pass);
            for d in &l.gate_up {
                d.encode(pass);
            }
            l.down.encode(pass);
        }
        if head != Head::None {
            self.head.iter().for_each(|d| d.encode(pass));
        }
        self.encode_choice(pass, head);
    }

    /// The token choice after the LM head.
    fn encode_choice(&self, pass: &mut wgpu::ComputePass<'_>, head: Head) {
        match head {
            Head::None => {}
            Head::Argmax => self.argmax.encode(pass),
            Head::Sample | Head::SampleOnly => self.sampler.encode(pass),
        }
    }

    /// GPU time of one step split by kernel kind (each kind timed in its own
    /// pass over all layers, at the position last written by `write_step`):
    /// [(kind, µs, dispatches)]. For benchmarks.
    pub fn breakdown(
        &self,
        timer: &crate::gpu::timing::GpuTimer,
    ) -> Result<Vec<(&'static str, f64, usize)>> {
        type Pick = for<'a> fn(&'a GpuModel, &'a LayerOps) -> Vec<&'a Dispatch>;
        let kinds: [(&'static str, Pick); 5] = [
            ("rmsnorm+qkv matvec", |_, l| l.qkv.iter().collect()),
            ("attention (rope, kv write, gqa)", |_, _| vec![]),
            ("wo matvec (+ chunk merge) + residual", |m, l| {
                vec![m.wo_op(l)]
            }),
            ("rmsnorm+gate|up matvec", |_, l| l.gate_up.iter().collect()),
            ("swiglu+down matvec + residual", |_, l| vec![&l.down]),
        ];
        let mut out = Vec::new();
        let t = timer.time(&self.gpu, |p| self.embed.iter().for_each(|d| d.encode(p)))?;
        out.push(("embed", t.best_ns() / 1e3, self.embed.len()));
        for (name, pick) in kinds {
            let ops: Vec<&Dispatch> = self.layers.iter().flat_map(|l| pick(self, l)).collect();
            if ops.is_empty() {
                let t = timer.time(&self.gpu, |p| {
                    self.layers.iter().for_each(|l| self.encode_attention(p, l))
                })?;
                let merge = attention_chunks(self.pos.get()) > 1;
                let n: usize = self
                    .layers
                    .iter()
                    .map(|l| 1 + (merge && l.wo_merge.is_none()) as usize)
                    .sum();
                out.push((name, t.best_ns() / 1e3, n));
                continue;
            }
            let t = timer.time(&self.gpu, |p| ops.iter().for_each(|d| d.encode(p)))?;
            out.push((name, t.best_ns() / 1e3, ops.len()));
        }
        let t = timer.time(&self.gpu, |p| self.head.iter().for_each(|d| d.encode(p)))?;
        out.push(("rmsnorm+lm head matvec", t.best_ns() / 1e3, self.head.len()));
        let t = timer.time(&self.gpu, |p| self.argmax.encode(p))?;
        out.push(("argmax", t.best_ns() / 1e3, self.argmax.dispatches()));
        // The default sampler (top-k 40, top-p 0.95, min-p 0.05, T 0.8).
        self.sampler
            .configure(&self.gpu, &SamplerConfig::default(), &[0])?;
        let t = timer.time(&self.gpu, |p| self.sampler.encode(p))?;
        out.push((
            "sample (instead of argmax)",
            t.best_ns() / 1e3,
            self.sampler.dispatches(),
        ));
        Ok(out)
    }

    /// Records a layer's attention: one workgroup per head and 64-position
    /// chunk up to the current position, then the merge of the chunks unless
    /// there is one or the output projection merges them (`wo_op`).
    fn encode_attention(&self, pass: &mut wgpu::ComputePass<'_>, l: &LayerOps) {
        let chunks = attention_chunks(self.pos.get());
        l.attention
            .encode_grid(pass, self.cfg.n_heads as u32, chunks as u32);
        if chunks > 1 && l.wo_merge.is_none() {
            l.combine.encode(pass);
        }
    }

    /// The layer's Wo matvec for the current position: the one merging the
    /// chunks' partials from position 64 on where the model has it.
    fn wo_op<'a>(&self, l: &'a LayerOps) -> &'a Dispatch {
        match &l.wo_merge {
            Some(m) if attention_chunks(self.pos.get()) > 1 => m,
            _ => &l.wo,
        }
    }

    /// Dispatches of the decode step at position `pos` (with LM head and
    /// argmax): fewer before position 64 when a merge pass follows attention
    /// from there on.
    pub fn dispatches_at(&self, pos: usize) -> usize {
        let merges = self.layers.iter().filter(|l| l.wo_merge.is_none()).count();
        if attention_chunks(pos) > 1 {
            self.dispatches_per_token
        } else {
            self.dispatches_per_token - merges
        }
    }

    /// Records one step as a compute pass of `encoder` (for host applications
    /// that interleave it with their own passes).
    pub fn encode_step_into(&self, encoder: &mut wgpu::CommandEncoder, head: bool) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("q4gpu step"),
            timestamp_writes: None,
        });
        self.encode_step(&mut pass, head);
    }

    /// One step's compute pass: the network and `head`, or with
    /// `Head::SampleOnly` the sampler alone.
    fn record_step(&self, enc: &mut wgpu::CommandEncoder, head: Head) {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("q4gpu step"),
            timestamp_writes: None,
        });
        if head == Head::SampleOnly {
            self.encode_choice(&mut pass, head);
        } else {
            self.encode_step_with(&mut pass, head);
        }
    }

    /// Submits the step `write_step` set up as one command buffer, ending as
    /// `head` says (nothing read back: the caller reads what it needs).
    fn submit_step(&mut self, head: Head) -> Result<()> {
        let mut enc = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("q4gpu step"),
            });
        self.record_step(&mut enc, head);
        self.gpu.queue.submit([enc.finish()]);
        Ok(())
    }

    /// Waits for slot `i`'s submission and returns the token id it holds.
    fn wait_slot(&mut self, i: usize) -> Result<u32> {
        let (idx, map) = self.slots[i]
            .pending
            .take()
            .ok_or_else(|| GpuError::Map("readback slot not pending".into()))?;
        self.gpu.finish_map(map, Some(idx), "token readback")?;
        self.slot_id(i)
    }

    /// [`GpuModel::wait_slot`] awaiting the mapping (never blocks).
    async fn wait_slot_async(&mut self, i: usize) -> Result<u32> {
        let (_, map) = self.slots[i]
            .pending
            .take()
            .ok_or_else(|| GpuError::Map("readback slot not pending".into()))?;
        map.finished("token readback").await?;
        self.slot_id(i)
    }

    /// The id a mapped slot holds; unmaps it.
    fn slot_id(&self, i: usize) -> Result<u32> {
        let buf = &self.slots[i].buffer;
        let id = {
            let view = buf
                .get_mapped_range(..)
                .map_err(|e| GpuError::Map(e.to_string()))?;
            u32::from_le_bytes([view[0], view[1], view[2], view[3]])
        };
        buf.unmap();
        Ok(id)
    }

    /// Decode steps recorded into one submission while generating
    /// (`Tuning::steps_per_submit`).
    pub fn steps_per_submit(&self) -> usize {
        self.steps_per_submit
    }

    /// Tokens one prefill chunk holds (see `Tuning::prefill_tokens`).
    pub fn prefill_capacity(&self) -> usize {
        self.prefill_capacity
    }

    /// Sets the tokens per prefill chunk (clamped to 1..= the capacity set at
    /// load, `Tuning::prefill_tokens` by default); smaller chunks only serve tests
    /// of chunk boundaries.
    pub fn set_prefill_chunk(&mut self, tokens: usize) {
        self.prefill_chunk = tokens.clamp(1, self.prefill_capacity);
    }

    /// Runs the prompt through the model (positions `start..start+len`) in
    /// chunks of up to `Tuning::prefill_tokens` tokens with the batched kernels, and
    /// leaves the logits of its last token in the logits buffer and its argmax
    /// on the GPU. One submit per chunk, no waits.
    pub fn prefill(&mut self, start: usize, prompt: &[u32]) -> Result<()> {
        self.epoch.set(self.epoch.get() + 1);
        self.check_prompt(start, prompt)?;
        let dim = self.cfg.dim as u64 * 4;
        let n_chunks = prompt.len().div_ceil(self.prefill_chunk);
        for (c, ids) in prompt.chunks(self.prefill_chunk).enumerate() {
            let pos = u32_of(start + c * self.prefill_chunk, "position")?;
            let n = ids.len() as u32;
            let words = chunk_words(pos, ids);
            let ops = &self.prefill_ops;
            self.gpu
                .queue
                .write_buffer(&ops.act.chunk, 0, bytemuck::cast_slice(&words));
            let mut enc = self
                .gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("q4gpu prefill"),
                });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("q4gpu prefill chunk"),
                    timestamp_writes: None,
                });
                ops.embed.iter().for_each(|d| d.encode(&mut pass, n));
                for l in &ops.layers {
                    for d in &l.qkv {
                        d.encode(&mut pass, n);
                    }
                    l.rope_kv.encode(&mut pass, n);
                    l.attention.encode(&mut pass, n);
                    l.wo.encode(&mut pass, n);
                    for d in &l.gate_up {
                        d.encode(&mut pass, n);
                    }
                    l.down.encode(&mut pass, n);
                }
            }
            if c + 1 == n_chunks {
                // The last token's hidden state goes through the decode-step head.
                enc.copy_buffer_to_buffer(&ops.act.x, (n as u64 - 1) * dim, &self.act.x, 0, dim);
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("q4gpu prefill head"),
                    timestamp_writes: None,
                });
                self.head.iter().for_each(|d| d.encode(&mut pass));
                self.argmax.encode(&mut pass);
            }
            self.gpu.queue.submit([enc.finish()]);
        }
        Ok(())
    }

    /// GPU time of one prefill chunk of `ids` at position `start`, split by
    /// kernel kind (each kind timed in its own pass over all layers):
    /// [(kind, µs, dispatches)]. Leaves the KV cache and buffers scrambled:
    /// for benchmarks only.
    pub fn prefill_breakdown(
        &mut self,
        timer: &crate::gpu::timing::GpuTimer,
        start: usize,
        ids: &[u32],
    ) -> Result<Vec<(&'static str, f64, usize)>> {
        let ids = &ids[..ids.len().min(self.prefill_chunk)];
        self.check_prompt(start, ids)?;
        let n = ids.len() as u32;
        let words = chunk_words(u32_of(start, "position")?, ids);
        let ops = &self.prefill_ops;
        self.gpu
            .queue
            .write_buffer(&ops.act.chunk, 0, bytemuck::cast_slice(&words));
        type Pick = fn(&BatchLayerOps) -> Vec<&BatchDispatch>;
        let kinds: [(&'static str, Pick); 6] = [
            ("rmsnorm+qkv matmul", |l| l.qkv.iter().collect()),
            ("rope + kv write", |l| vec![&l.rope_kv]),
            ("causal attention", |l| vec![&l.attention]),
            ("wo matmul + residual", |l| vec![&l.wo]),
            ("rmsnorm+gate|up matmul", |l| l.gate_up.iter().collect()),
            ("swiglu+down matmul + residual", |l| vec![&l.down]),
        ];
        let mut out = Vec::new();
        let t = timer.time(&self.gpu, |p| ops.embed.iter().for_each(|d| d.encode(p, n)))?;
        out.push(("embed", t.best_ns() / 1e3, ops.embed.len()));
        for (name, pick) in kinds {
            let list: Vec<&BatchDispatch> = ops.layers.iter().flat_map(pick).collect();
            let t = timer.time(&self.gpu, |p| list.iter().for_each(|d| d.encode(p, n)))?;
            let n_dispatch = list.iter().map(|d| d.dispatches()).sum();
            out.push((name, t.best_ns() / 1e3, n_dispatch));
        }
        Ok(out)
    }

    /// Checks a prompt's token ids and that it fits the context window.
    fn check_prompt(&self, start: usize, prompt: &[u32]) -> Result<()> {
        if prompt.is_empty() {
            return Err(GpuError::BadArgument("empty prompt".into()).into());
        }
        if start + prompt.len() > self.max_ctx {
            return Err(GpuError::BadArgument(format!(
                "prompt of {} tokens at position {start} does not fit the context window of {} positions",
                prompt.len(),
                self.max_ctx
            ))
            .into());
        }
        if let Some(&t) = prompt.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
            return Err(GpuError::BadArgument(format!(
                "token {t} out of range (vocabulary {})",
                self.cfg.vocab_size
            ))
            .into());
        }
        Ok(())
    }

    /// [`GpuModel::prefill`] one decode step per token (the reference the
    /// batched path is tested against). One submit per token, no waits.
    pub fn prefill_per_token(&mut self, start: usize, prompt: &[u32]) -> Result<()> {
        self.check_prompt(start, prompt)?;
        for (i, &t) in prompt.iter().enumerate() {
            self.write_step(start + i, Some(t))?;
            let last = i + 1 == prompt.len();
            self.submit_step(if last { Head::Argmax } else { Head::None })?;
        }
        Ok(())
    }

    /// Reads the logits of the last step (a full-vocabulary readback: for
    /// validation and host-side sampling).
    pub fn read_logits(&self) -> Result<Vec<f32>> {
        Ok(read_f32(
            &self.gpu,
            &self.act.logits,
            0,
            self.cfg.vocab_size,
        )?)
    }

    /// [`GpuModel::read_logits`] as a future for hosts with their own event
    /// loop: completes once the device has been polled after the copy (see
    /// [`crate::gpu::readback::read_f32_async`]); never blocks.
    pub async fn read_logits_async(&self) -> Result<Vec<f32>> {
        let logits = &self.act.logits;
        Ok(crate::gpu::readback::read_f32_async(&self.gpu, logits, 0, self.cfg.vocab_size).await?)
    }

    /// Greedy decoding: after [`GpuModel::prefill`] of `n_prompt` tokens from
    /// position `start`, generates up to `max_new` ids, calling `emit` with each;
    /// `emit` returns false to stop. The host keeps steps in flight ahead of
    /// the id it is reading (`Tuning::run_ahead` submissions of
    /// `Tuning::steps_per_submit` steps), so the GPU never waits for it; ids
    /// computed past a stop are discarded. Returns the number of ids emitted.
    pub fn generate_greedy(
        &mut self,
        start: usize,
        n_prompt: usize,
        max_new: usize,
        emit: impl FnMut(u32) -> bool,
    ) -> Result<usize> {
        self.generate_on_gpu(start + n_prompt, max_new, None, emit)
    }

    /// Whether the GPU samples with `cfg` ([`GpuSampler`]: top-k 1 to 256);
    /// otherwise sample on the host from [`GpuModel::read_logits`].
    pub fn samples_on_gpu(&self, cfg: &SamplerConfig) -> bool {
        self.sampler.supports(cfg)
    }

    /// [`GpuModel::generate_greedy`] with a sampler on the GPU: `recent` is
    /// the sequence so far (positions 0.., ending with the prompt's last
    /// token), for the repeat penalty. Draws come from `cfg.seed`'s sequence
    /// in the order the CPU [`Sampler`] takes them, so where the logits agree
    /// the tokens are the CPU path's. Fails for settings outside
    /// [`GpuModel::samples_on_gpu`].
    pub fn generate_sampled(
        &mut self,
        recent: &[u32],
        max_new: usize,
        cfg: &SamplerConfig,
        emit: impl FnMut(u32) -> bool,
    ) -> Result<usize> {
        self.sampler.configure(&self.gpu, cfg, recent)?;
        self.generate_on_gpu(recent.len(), max_new, Some(Sampler::new(*cfg)), emit)
    }

    /// The decode loop after a prefill that ended at position `first` − 1
    /// (see [`GpuModel::start_tokens`]); returns the number of ids emitted.
    fn generate_on_gpu(
        &mut self,
        first: usize,
        max_new: usize,
        draws: Option<Sampler>,
        mut emit: impl FnMut(u32) -> bool,
    ) -> Result<usize> {
        let mut t = self.tokens_after(first, max_new, draws)?;
        let mut emitted = 0;
        while let Some(id) = self.next_token(&mut t)? {
            emitted += 1;
            if !emit(id) {
                self.stop_tokens(&mut t)?;
                break;
            }
        }
        Ok(emitted)
    }

    /// Starts choosing up to `max_new` ids on the GPU after a prefill that
    /// ended at position `first` − 1: argmax, or with `sampling` = (settings,
    /// the sequence so far) the GPU sampler (see
    /// [`GpuModel::generate_sampled`]). Read them with
    /// [`GpuModel::next_token`] or [`GpuModel::next_token_async`]; the host
    /// keeps `run_ahead` submissions of `steps_per_submit` steps in flight
    /// beyond the id it reads, so the GPU never waits for it (and ids arrive
    /// a submission at a time). A run stopped early must be drained with
    /// [`GpuModel::stop_tokens`] (or its async twin) before the next.
    pub fn start_tokens(
        &mut self,
        first: usize,
        max_new: usize,
        sampling: Option<(&SamplerConfig, &[u32])>,
    ) -> Result<GpuTokens> {
        let draws = match sampling {
            Some((cfg, recent)) => {
                self.sampler.configure(&self.gpu, cfg, recent)?;
                Some(Sampler::new(*cfg))
            }
            None => None,
        };
        self.tokens_after(first, max_new, draws)
    }

    /// [`GpuModel::start_tokens`] with the sampler configured.
    fn tokens_after(
        &mut self,
        first: usize,
        max_new: usize,
        mut draws: Option<Sampler>,
    ) -> Result<GpuTokens> {
        if first == 0 || first > self.max_ctx {
            return Err(GpuError::BadArgument(format!(
                "decoding after position {first} of a {}-position context",
                self.max_ctx
            ))
            .into());
        }
        let head = if draws.is_some() {
            Head::Sample
        } else {
            Head::Argmax
        };
        if max_new > 0 {
            // The first id: the prefill's argmax is on the GPU; a sampler
            // chooses from the logits it left.
            if let Some(d) = draws.as_mut() {
                let draw = d.next_draw() as f32;
                self.submit_steps(Head::SampleOnly, &[(first - 1, draw)], 0)?;
            } else {
                self.copy_token_to_slot(0);
            }
        }
        Ok(GpuTokens {
            first,
            max_new,
            head,
            draws,
            read: 0,
            submitted: 0,
        })
    }

    /// Submits steps, `steps_per_submit` per command buffer, until
    /// `run_ahead` submissions' worth are in flight beyond the id to read
    /// next (the step producing id k consumes position first + k − 1).
    fn top_up(&mut self, t: &mut GpuTokens) -> Result<()> {
        let k = self.steps_per_submit;
        let limit = (t.read + self.run_ahead * k).min(t.max_new - 1);
        while t.submitted < limit && t.first + t.submitted < self.max_ctx {
            let room = (t.max_new - 1 - t.submitted).min(self.max_ctx - t.first - t.submitted);
            // (position, draw) of each step, on the stack: this runs per token.
            let mut steps = [(0usize, 0f32); MAX_STEPS_PER_SUBMIT];
            let n = k.min(room);
            for (i, s) in steps[..n].iter_mut().enumerate() {
                let draw = t.draws.as_mut().map_or(0.0, |d| d.next_draw() as f32);
                *s = (t.first + t.submitted + i, draw);
            }
            self.submit_steps(t.head, &steps[..n], t.submitted + 1)?;
            t.submitted += n;
        }
        Ok(())
    }

    /// Submits `steps` (position, sampler draw) as one command buffer, each
    /// step ending as `head` says and its id copied to the readback slot of
    /// id `first_id` + its index, mapped asynchronously. One step is written
    /// straight into the step uniform; several go through `step_records`,
    /// each copied into it before its pass.
    fn submit_steps(&mut self, head: Head, steps: &[(usize, f32)], first_id: usize) -> Result<()> {
        if let [(pos, draw)] = steps {
            self.write_step_draw(*pos, None, *draw)?;
        } else {
            let mut records = [[0u32; 4]; MAX_STEPS_PER_SUBMIT];
            for (r, &(pos, draw)) in records.iter_mut().zip(steps) {
                self.check_step(pos)?;
                *r = step_record(pos, draw);
            }
            let bytes: &[u8] = bytemuck::cast_slice(&records[..steps.len()]);
            self.gpu
                .queue
                .write_buffer(&self.act.step_records, 0, bytes);
        }
        let mut enc = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("q4gpu steps"),
            });
        let n = self.slots.len();
        for (i, &(pos, _)) in steps.iter().enumerate() {
            if steps.len() > 1 {
                let (act, at) = (&self.act, i as u64 * 16);
                enc.copy_buffer_to_buffer(&act.step_records, at, &act.step, 0, 16);
            }
            self.pos.set(pos);
            self.record_step(&mut enc, head);
            let slot = &self.slots[(first_id + i) % n];
            enc.copy_buffer_to_buffer(&self.act.tok, 0, &slot.buffer, 0, 4);
        }
        let idx = self.gpu.queue.submit([enc.finish()]);
        for i in 0..steps.len() {
            let s = (first_id + i) % n;
            let map = self.gpu.start_map(&self.slots[s].buffer, 0..4);
            self.slots[s].pending = Some((idx.clone(), map));
        }
        Ok(())
    }

    /// The next id, waiting for the GPU (blocking); `None` after the last.
    pub fn next_token(&mut self, t: &mut GpuTokens) -> Result<Option<u32>> {
        if t.read >= t.max_new || t.read > t.submitted {
            return Ok(None);
        }
        self.top_up(t)?;
        let id = self.wait_slot(t.read % self.slots.len())?;
        t.read += 1;
        Ok(Some(id))
    }

    /// [`GpuModel::next_token`] as a future: completes when the device has
    /// been polled after the id's step (by the browser on the web, natively
    /// by the host); never blocks.
    pub async fn next_token_async(&mut self, t: &mut GpuTokens) -> Result<Option<u32>> {
        if t.read >= t.max_new || t.read > t.submitted {
            return Ok(None);
        }
        self.top_up(t)?;
        let id = self.wait_slot_async(t.read % self.slots.len()).await?;
        t.read += 1;
        Ok(Some(id))
    }

    /// Waits for the steps still in flight (run past a stop), freeing their
    /// readback slots; the ids they chose are discarded.
    pub fn stop_tokens(&mut self, t: &mut GpuTokens) -> Result<()> {
        if t.max_new == 0 {
            return Ok(());
        }
        while t.read <= t.submitted {
            self.wait_slot(t.read % self.slots.len())?;
            t.read += 1;
        }
        t.max_new = 0;
        Ok(())
    }

    /// [`GpuModel::stop_tokens`] as a future (never blocks).
    pub async fn stop_tokens_async(&mut self, t: &mut GpuTokens) -> Result<()> {
        if t.max_new == 0 {
            return Ok(());
        }
        while t.read <= t.submitted {
            self.wait_slot_async(t.read % self.slots.len()).await?;
            t.read += 1;
        }
        t.max_new = 0;
        Ok(())
    }

    /// Copies the token id on the GPU to readback slot `i` and maps it.
    fn copy_token_to_slot(&mut self, i: usize) {
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(&self.act.tok, 0, &self.slots[i].buffer, 0, 4);
        let idx = self.gpu.queue.submit([enc.finish()]);
        let map = self.gpu.start_map(&self.slots[i].buffer, 0..4);
        self.slots[i].pending = Some((idx, map));
    }

    /// One greedy decode step for hosts with their own event loop: feeds
    /// `token` at `pos` (`None`: the id the previous step left on the GPU),
    /// runs the network, LM head and argmax, and resolves to the chosen id
    /// once the device has been polled after it. Never blocks.
    pub async fn step_async(&mut self, pos: usize, token: Option<u32>) -> Result<u32> {
        self.write_step(pos, token)?;
        self.submit_step(Head::Argmax)?;
        let ids = crate::gpu::readback::read_u32_async(&self.gpu, &self.act.tok, 0, 1).await?;
        Ok(ids.first().copied().unwrap_or_default())
    }

    /// [`GpuModel::forward`] as a future (never blocks): the logits of
    /// `token` at `pos` once the device has been polled after the step.
    pub async fn forward_async(&mut self, token: u32, pos: usize) -> Result<Vec<f32>> {
        self.write_step(pos, Some(token))?;
        self.submit_step(Head::Argmax)?;
        self.read_logits_async().await
    }

    /// Runs one step synchronously for token `token` at `pos` and returns the logits.
    pub fn forward(&mut self, token: u32, pos: usize) -> Result<Vec<f32>> {
        self.write_step(pos, Some(token))?;
        self.submit_step(Head::Argmax)?;
        self.read_logits()
    }
}
