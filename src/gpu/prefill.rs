//! Batched kernels for prompt processing: matrix-matrix products
//! Y[t] (=|+=) W · input(X[t]) for a chunk of tokens (each weight block is
//! decoded once per tile of [`TOKENS_PER_TILE`] tokens), the batched
//! embedding lookup and the causal attention of a chunk.
//!
//! Every batched kernel reads the chunk header from one storage buffer the
//! host writes once per chunk: `[start, n_tokens, 0, 0, id_0, id_1, ...]`
//! (u32; see [`chunk_words`]). Operations are prepared once ([`BatchDispatch`])
//! and recorded per chunk with the chunk's token count.

use std::collections::HashMap;
use std::sync::Mutex;

use super::matvec::{layout, Dispatch, GpuMatrix, MatvecInput, FORMATS, Q8_ACT_FORMATS};
use super::shader::{AttnParams, EmbedParams, MatmulParams};
use super::{Gpu, GpuError};
use crate::gguf::GgmlType;

/// Tokens one matmul workgroup multiplies each decoded weight block with.
pub const TOKENS_PER_TILE: u32 = 64;
/// Rows of W one matmul workgroup covers.
pub const MATMUL_ROWS: u32 = 64;
/// u32 words of the chunk header before the token ids.
pub const CHUNK_HEADER: usize = 4;

/// Binding indices of the matmul kernel, in WGSL and MSL alike.
pub mod binding {
    pub const PARAMS: u32 = 0;
    pub const WEIGHTS: u32 = 1;
    pub const X: u32 = 2;
    /// The K segments' partial products (matmul_reduce reads them).
    pub const PARTIALS: u32 = 3;
    pub const CHUNK: u32 = 4;
    /// RMSNorm gain (NORM variant only).
    pub const GAIN: u32 = 5;
}

/// The chunk buffer contents for tokens `ids` at positions `start..`.
pub fn chunk_words(start: u32, ids: &[u32]) -> Vec<u32> {
    let mut v = vec![start, ids.len() as u32, 0, 0];
    v.extend_from_slice(ids);
    v
}

/// A prepared batched kernel launch: a [`Dispatch`] whose grid gets a z
/// dimension of ⌈n_tokens / tokens_per_group⌉ when recorded.
pub struct BatchDispatch {
    op: Dispatch,
    tokens_per_group: u32,
    max_tokens: u32,
    /// A second launch recorded right after this one (matmul's reduce pass).
    then: Option<Box<BatchDispatch>>,
}

impl BatchDispatch {
    /// Wraps `op`: each workgroup z index covers `tokens_per_group` tokens;
    /// at most `max_tokens` tokens (what the bound buffers hold).
    pub fn new(op: Dispatch, tokens_per_group: u32, max_tokens: u32) -> BatchDispatch {
        BatchDispatch {
            op,
            tokens_per_group: tokens_per_group.max(1),
            max_tokens,
            then: None,
        }
    }

    /// This launch followed by `next` (recorded together, same token count).
    pub fn then(mut self, next: BatchDispatch) -> BatchDispatch {
        self.then = Some(Box::new(next));
        self
    }

    /// Launches recorded per call (2 for a matmul and its reduce pass).
    pub fn dispatches(&self) -> usize {
        1 + self.then.as_ref().map_or(0, |t| t.dispatches())
    }

    /// Bytes of weights one recording reads (once per token tile), over the
    /// chained launches.
    pub fn weight_bytes(&self) -> u64 {
        self.op.weight_bytes + self.then.as_ref().map_or(0, |t| t.weight_bytes())
    }

    /// Records the dispatch for a chunk of `n_tokens` tokens (clamped to the
    /// buffers' capacity; nothing is recorded for 0). The kernel reads the
    /// exact count from the chunk buffer, which must agree.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>, n_tokens: u32) {
        let n = n_tokens.min(self.max_tokens);
        if n == 0 {
            return;
        }
        pass.set_pipeline(&self.op.pipeline);
        pass.set_bind_group(0, &self.op.bind_group, &[]);
        pass.dispatch_workgroups(
            self.op.workgroups.0,
            self.op.workgroups.1,
            n.div_ceil(self.tokens_per_group),
        );
        if let Some(t) = &self.then {
            t.encode(pass, n);
        }
    }

    /// Records the dispatch in its own compute pass of `encoder`.
    pub fn encode_into(&self, encoder: &mut wgpu::CommandEncoder, n_tokens: u32) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("q4gpu batch"),
            timestamp_writes: None,
        });
        self.encode(&mut pass, n_tokens);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Variant {
    Plain,
    Norm,
    SwiGlu,
    /// matmul_q8 (any input: quantize_rows applies it).
    Q8,
}

/// Compiled matmul pipelines (per format and input variant) and their
/// bind group layouts.
pub struct MatmulKernels {
    layout: wgpu::BindGroupLayout,
    layout_norm: wgpu::BindGroupLayout,
    layout_reduce: wgpu::BindGroupLayout,
    pipelines: HashMap<(GgmlType, Variant), wgpu::ComputePipeline>,
    /// matmul_reduce without and with NORM.
    reduce: [wgpu::ComputePipeline; 2],
    /// Workgroups a matmul aims for (K is split until its tiles reach it).
    target_workgroups: u32,
    /// The partial-products buffer, shared by every op it is large enough for
    /// (ops run one after another); replaced by a larger one when needed.
    scratch: Mutex<Option<wgpu::Buffer>>,
    /// Int8 inputs (quantize_rows + matmul_q8) for Q4_0, Q4_1 and Q8_0
    /// weights: `Some` with quantize_rows for (plain, NORM, SWIGLU) inputs
    /// and its layouts (plain, with gain).
    q8: Option<Q8Kernels>,
    /// The quantized-input buffer of the int8 path, shared like `scratch`.
    scratch_q: Mutex<Option<wgpu::Buffer>>,
}

/// The input quantizer of the int8-input matmuls.
struct Q8Kernels {
    quantize: [wgpu::ComputePipeline; 3],
    layout: wgpu::BindGroupLayout,
    layout_norm: wgpu::BindGroupLayout,
}

/// Takes a buffer of at least `need` bytes from `slot`, replacing a smaller
/// one (ops bound earlier keep theirs).
fn scratch_buffer(
    gpu: &Gpu,
    slot: &Mutex<Option<wgpu::Buffer>>,
    label: &str,
    need: u64,
) -> Result<wgpu::Buffer, GpuError> {
    let mut guard = slot
        .lock()
        .map_err(|_| GpuError::BadArgument(format!("{label} lock poisoned")))?;
    match guard.as_ref() {
        Some(b) if b.size() >= need => Ok(b.clone()),
        _ => {
            let b = gpu.storage(label, need, wgpu::BufferUsages::empty())?;
            *guard = Some(b.clone());
            Ok(b)
        }
    }
}

impl MatmulKernels {
    /// Builds the matmul pipelines for every supported format.
    pub fn new(gpu: &Gpu) -> Result<MatmulKernels, GpuError> {
        Self::with_formats(gpu, &FORMATS)
    }

    /// Builds the matmul pipelines for `formats` only (fewer compiles at
    /// load), with f32 inputs (see [`MatmulKernels::with_options`]).
    pub fn with_formats(gpu: &Gpu, formats: &[GgmlType]) -> Result<MatmulKernels, GpuError> {
        Self::with_options(gpu, formats, false)
    }

    /// Builds the matmul pipelines for `formats`; with `q8_activations`, the
    /// products with Q4_0, Q4_1 and Q8_0 weights quantize their inputs to
    /// int8 blocks first (quantize_rows) and use int8 dot products
    /// (matmul_q8), like the Q8X matvecs.
    pub fn with_options(
        gpu: &Gpu,
        formats: &[GgmlType],
        q8_activations: bool,
    ) -> Result<MatmulKernels, GpuError> {
        let layout_plain = layout(gpu, "matmul", &[true, true, false, true]);
        let layout_norm = layout(gpu, "rmsnorm_matmul", &[true, true, false, true, true]);
        let layout_reduce = layout(gpu, "matmul_reduce", &[true, false, true]);
        let reduce = [
            gpu.pipeline("matmul_reduce", &[], &[&layout_reduce], (256, 1, 1))?,
            gpu.pipeline("matmul_reduce", &["NORM"], &[&layout_reduce], (256, 1, 1))?,
        ];
        let mut pipelines = HashMap::new();
        for &ty in formats {
            if !FORMATS.contains(&ty) {
                return Err(GpuError::Unsupported(format!("no GPU matmul for {ty}")));
            }
            if pipelines.contains_key(&(ty, Variant::Plain)) {
                continue;
            }
            let fmt = ty.name().to_ascii_uppercase();
            for (v, flag) in [
                (Variant::Plain, None),
                (Variant::Norm, Some("NORM")),
                (Variant::SwiGlu, Some("SWIGLU")),
            ] {
                // F32 is the kernel's default: it has no format flag.
                let mut flags: Vec<&str> = Vec::new();
                if ty != GgmlType::F32 {
                    flags.push(fmt.as_str());
                }
                flags.extend(flag);
                let l = if v == Variant::Norm {
                    &layout_norm
                } else {
                    &layout_plain
                };
                pipelines.insert((ty, v), gpu.pipeline("matmul", &flags, &[l], (256, 1, 1))?);
            }
            if q8_activations && Q8_ACT_FORMATS.contains(&ty) {
                // Q8_0 is matmul_q8's default: it has no format flag.
                let flags: &[&str] = if ty == GgmlType::Q8_0 {
                    &[]
                } else {
                    &[fmt.as_str()]
                };
                pipelines.insert(
                    (ty, Variant::Q8),
                    gpu.pipeline("matmul_q8", flags, &[&layout_plain], (256, 1, 1))?,
                );
            }
        }
        let q8 = if q8_activations {
            let lq = layout(gpu, "quantize_rows", &[true, false, true]);
            let lq_norm = layout(gpu, "rmsnorm_quantize_rows", &[true, false, true, true]);
            let quantize = [
                gpu.pipeline("quantize_rows", &[], &[&lq], (256, 1, 1))?,
                gpu.pipeline("quantize_rows", &["NORM"], &[&lq_norm], (256, 1, 1))?,
                gpu.pipeline("quantize_rows", &["SWIGLU"], &[&lq], (256, 1, 1))?,
            ];
            Some(Q8Kernels {
                quantize,
                layout: lq,
                layout_norm: lq_norm,
            })
        } else {
            None
        };
        Ok(MatmulKernels {
            layout: layout_plain,
            layout_norm,
            layout_reduce,
            pipelines,
            reduce,
            target_workgroups: gpu.tuning.matmul_target_workgroups.max(1),
            scratch: Mutex::new(None),
            q8,
            scratch_q: Mutex::new(None),
        })
    }

    /// Whether products with `ty` weights quantize their inputs to int8
    /// (quantize_rows + matmul_q8).
    pub fn q8_activations(&self, ty: GgmlType) -> bool {
        self.q8.is_some() && self.pipelines.contains_key(&(ty, Variant::Q8))
    }

    /// Prepares Y[t·y_stride + y_offset + row] (=|+=) W[row] · input(X[t·x_stride..])
    /// for t < n (n from `chunk`), for up to `max_tokens` tokens; see
    /// [`MatvecInput`] (with SwiGlu, X[t] holds gate then up). Strides and
    /// offsets are in f32 elements; x_stride must be a multiple of 4.
    #[allow(clippy::too_many_arguments)]
    pub fn bind(
        &self,
        gpu: &Gpu,
        w: &GpuMatrix,
        x: &wgpu::Buffer,
        x_stride: u32,
        y: &wgpu::Buffer,
        y_stride: u32,
        y_offset: u32,
        chunk: &wgpu::Buffer,
        max_tokens: u32,
        input: MatvecInput<'_>,
        accumulate: bool,
    ) -> Result<BatchDispatch, GpuError> {
        let (variant, norm) = match input {
            MatvecInput::Plain => (Variant::Plain, None),
            MatvecInput::RmsNorm { gain, eps } => (Variant::Norm, Some((gain, eps))),
            MatvecInput::SwiGlu => (Variant::SwiGlu, None),
            MatvecInput::AttnMerge { .. } => {
                return Err(GpuError::Unsupported(
                    "matmul: the attention merge input is for decode matvecs only".into(),
                ))
            }
        };
        let x_len = if variant == Variant::SwiGlu {
            2 * w.cols as u64
        } else {
            w.cols as u64
        };
        let bad = |m: String| {
            Err(GpuError::BadArgument(format!(
                "matmul {}×{}: {m}",
                w.rows, w.cols
            )))
        };
        if max_tokens == 0 {
            return bad("max_tokens is 0".into());
        }
        if x_stride % 4 != 0 || (x_stride as u64) < x_len {
            return bad(format!(
                "x stride {x_stride} must be a multiple of 4 and at least {x_len}"
            ));
        }
        if (y_stride as u64) < y_offset as u64 + w.rows as u64 {
            return bad(format!(
                "y stride {y_stride} is less than offset {y_offset} + rows"
            ));
        }
        let last = max_tokens as u64 - 1;
        let need_x = (last * x_stride as u64 + x_len) * 4;
        let need_y = (last * y_stride as u64 + y_offset as u64 + w.rows as u64) * 4;
        let need_c = (CHUNK_HEADER as u64) * 4;
        if x.size() < need_x || y.size() < need_y || chunk.size() < need_c {
            return bad(format!(
                "{max_tokens} tokens need x {need_x} bytes (has {}), y {need_y} (has {}), chunk {need_c} (has {})",
                x.size(),
                y.size(),
                chunk.size()
            ));
        }
        if let Some((g, _)) = norm {
            if g.size() < w.cols as u64 * 4 {
                return bad(format!("norm gain has {} bytes", g.size()));
            }
        }
        let q8 = self.q8.as_ref().filter(|_| self.q8_activations(w.ty));
        let pipeline = self
            .pipelines
            .get(&(w.ty, if q8.is_some() { Variant::Q8 } else { variant }))
            .ok_or_else(|| GpuError::Unsupported(format!("no matmul kernel built for {}", w.ty)))?
            .clone();
        // K split: enough segments that tiles × segments reaches the target.
        let blocks = w.cols / 32;
        let tiles = w.rows.div_ceil(MATMUL_ROWS);
        if tiles > 65535 {
            return bad(format!("more than 65535 tiles of {MATMUL_ROWS} rows"));
        }
        let want = self.target_workgroups.div_ceil(tiles).clamp(1, blocks);
        let seg_blocks = blocks.div_ceil(want);
        let n_seg = blocks.div_ceil(seg_blocks);
        let params = MatmulParams {
            rows: w.rows,
            cols: w.cols,
            blocks,
            accumulate: accumulate as u32,
            x_stride: x_stride / 4,
            y_stride,
            y_offset,
            eps: norm.map_or(0.0, |n| n.1),
            n_seg,
            seg_blocks,
            part_tokens: max_tokens,
            pad0: 0,
        };
        let need_part = (n_seg as u64 * max_tokens as u64 * (w.rows as u64 + 1)) * 4;
        let part = scratch_buffer(gpu, &self.scratch, "matmul partials", need_part)?;
        if let Some(q8) = q8 {
            // quantize_rows → matmul_q8 → matmul_reduce (without NORM: the
            // quantizer folded the norm scale into the inputs' scales).
            let need_q = max_tokens as u64 * blocks as u64 * 10 * 4;
            let xq = scratch_buffer(gpu, &self.scratch_q, "matmul int8 inputs", need_q)?;
            let quantize = match norm {
                Some((g, _)) => Dispatch::new(
                    gpu,
                    "quantize_rows",
                    &q8.quantize[1],
                    &q8.layout_norm,
                    &params,
                    &[x, &xq, chunk, g],
                    1,
                )?,
                None => Dispatch::new(
                    gpu,
                    "quantize_rows",
                    &q8.quantize[if variant == Variant::SwiGlu { 2 } else { 0 }],
                    &q8.layout,
                    &params,
                    &[x, &xq, chunk],
                    1,
                )?,
            };
            let mut op = Dispatch::new(
                gpu,
                "matmul_q8",
                &pipeline,
                &self.layout,
                &params,
                &[&w.buffer, &xq, &part, chunk],
                1,
            )?;
            op.workgroups = (tiles, n_seg);
            op.weight_bytes = w.weight_bytes();
            let reduce = Dispatch::new(
                gpu,
                "matmul_reduce",
                &self.reduce[0],
                &self.layout_reduce,
                &params,
                &[&part, y, chunk],
                w.rows.div_ceil(256),
            )?;
            return Ok(BatchDispatch::new(quantize, 1, max_tokens).then(
                BatchDispatch::new(op, TOKENS_PER_TILE, max_tokens)
                    .then(BatchDispatch::new(reduce, 1, max_tokens)),
            ));
        }
        let ubuf = gpu.uniform("matmul params", &params)?;
        let mut entries = vec![
            wgpu::BindGroupEntry {
                binding: binding::PARAMS,
                resource: ubuf.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: binding::WEIGHTS,
                resource: w.buffer.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: binding::X,
                resource: x.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: binding::PARTIALS,
                resource: part.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: binding::CHUNK,
                resource: chunk.as_entire_binding(),
            },
        ];
        if let Some((g, _)) = norm {
            entries.push(wgpu::BindGroupEntry {
                binding: binding::GAIN,
                resource: g.as_entire_binding(),
            });
        }
        let layout = if norm.is_some() {
            &self.layout_norm
        } else {
            &self.layout
        };
        let bind_group = gpu.scoped("binding matmul", || {
            gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("matmul"),
                layout,
                entries: &entries,
            })
        })?;
        let op = Dispatch {
            pipeline,
            bind_group,
            _uniform: ubuf,
            workgroups: (tiles, n_seg),
            weight_bytes: w.weight_bytes(),
        };
        let reduce = Dispatch::new(
            gpu,
            "matmul_reduce",
            &self.reduce[norm.is_some() as usize],
            &self.layout_reduce,
            &params,
            &[&part, y, chunk],
            w.rows.div_ceil(256),
        )?;
        Ok(BatchDispatch::new(op, TOKENS_PER_TILE, max_tokens)
            .then(BatchDispatch::new(reduce, 1, max_tokens)))
    }
}

/// Prepares the batched embedding lookup: out[t·cols + e] = table[id_t, e]
/// for the ids in `chunk`; `table` holds `rows`×`cols` elements of `ty`.
#[allow(clippy::too_many_arguments)]
pub fn embed_batch(
    gpu: &Gpu,
    ty: GgmlType,
    table: &wgpu::Buffer,
    rows: u32,
    cols: u32,
    chunk: &wgpu::Buffer,
    out: &wgpu::Buffer,
    max_tokens: u32,
) -> Result<BatchDispatch, GpuError> {
    if !FORMATS.contains(&ty) || cols % 32 != 0 {
        return Err(GpuError::Unsupported(format!(
            "batched embedding of {ty} with {cols} columns"
        )));
    }
    let need = max_tokens as u64 * cols as u64 * 4;
    let need_c = (CHUNK_HEADER as u64 + max_tokens as u64) * 4;
    if out.size() < need || chunk.size() < need_c {
        return Err(GpuError::BadArgument(format!(
            "batched embedding of {max_tokens} tokens needs out {need} bytes (has {}), chunk {need_c} (has {})",
            out.size(),
            chunk.size()
        )));
    }
    let l = layout(gpu, "embed_batch", &[true, true, false]);
    let pipe = gpu.pipeline(
        "embed_batch",
        &[&ty.name().to_ascii_uppercase()],
        &[&l],
        (256, 1, 1),
    )?;
    let op = Dispatch::new(
        gpu,
        "embed_batch",
        &pipe,
        &l,
        &EmbedParams {
            rows,
            cols,
            pad0: 0,
            pad1: 0,
        },
        &[table, chunk, out],
        cols.div_ceil(256),
    )?;
    Ok(BatchDispatch::new(op, 1, max_tokens))
}

/// Compiled pipelines of the two attention phases of a chunk.
pub struct AttentionPrefillKernels {
    layout: wgpu::BindGroupLayout,
    rope_kv: wgpu::ComputePipeline,
    attend: wgpu::ComputePipeline,
}

impl AttentionPrefillKernels {
    /// Compiles both phases (RoPE + KV write, then attention).
    pub fn new(gpu: &Gpu) -> Result<Self, GpuError> {
        let layout = layout(
            gpu,
            "attention_prefill",
            &[true, false, false, false, false],
        );
        let rope_kv = gpu.pipeline("attention_prefill", &["ROPE_KV"], &[&layout], (256, 1, 1))?;
        let attend = gpu.pipeline("attention_prefill", &[], &[&layout], (256, 1, 1))?;
        Ok(Self {
            layout,
            rope_kv,
            attend,
        })
    }

    /// Prepares one layer's chunk attention: (1) RoPE on every token's q (in
    /// place in `qkv`, rows of n_heads·hd + 2·kv_dim floats) and k, and the
    /// K/V cache writes at positions start..start+n; (2) causal attention of
    /// every token over positions 0..=its own, into `out` (rows of
    /// n_heads·hd). Record (1) before (2).
    #[allow(clippy::too_many_arguments)]
    pub fn bind(
        &self,
        gpu: &Gpu,
        params: &AttnParams,
        chunk: &wgpu::Buffer,
        qkv: &wgpu::Buffer,
        kcache: &wgpu::Buffer,
        vcache: &wgpu::Buffer,
        out: &wgpu::Buffer,
        max_tokens: u32,
    ) -> Result<(BatchDispatch, BatchDispatch), GpuError> {
        let p = params;
        if p.head_dim == 0
            || p.head_dim > 256
            || p.head_dim % 4 != 0
            || p.n_kv_heads == 0
            || p.n_heads % p.n_kv_heads != 0
            || p.kv_dim != p.n_kv_heads * p.head_dim
        {
            return Err(GpuError::BadArgument(format!(
                "attention shape: {} heads, {} KV heads, head size {}, kv_dim {}",
                p.n_heads, p.n_kv_heads, p.head_dim, p.kv_dim
            )));
        }
        let row = (p.n_heads * p.head_dim + 2 * p.kv_dim) as u64;
        let need_qkv = max_tokens as u64 * row * 4;
        let need_out = max_tokens as u64 * (p.n_heads * p.head_dim) as u64 * 4;
        let need_cache = (p.layer_offset as u64 + p.max_ctx as u64 * p.kv_dim as u64) * 4;
        if qkv.size() < need_qkv
            || out.size() < need_out
            || kcache.size() < need_cache
            || vcache.size() < need_cache
            || chunk.size() < CHUNK_HEADER as u64 * 4
        {
            return Err(GpuError::BadArgument(format!(
                "attention of {max_tokens} tokens: qkv {} bytes (needs {need_qkv}), out {} (needs {need_out}), caches {}/{} (need {need_cache})",
                qkv.size(),
                out.size(),
                kcache.size(),
                vcache.size()
            )));
        }
        let bufs = [chunk, qkv, kcache, vcache, out];
        let rope = Dispatch::new(
            gpu,
            "rope_kv_prefill",
            &self.rope_kv,
            &self.layout,
            params,
            &bufs,
            1,
        )?;
        // One workgroup per KV head and group of ≤ 4 query heads sharing it.
        let group = p.n_heads / p.n_kv_heads;
        let attend = Dispatch::new(
            gpu,
            "attention_prefill",
            &self.attend,
            &self.layout,
            params,
            &bufs,
            p.n_kv_heads * group.div_ceil(4),
        )?;
        Ok((
            BatchDispatch::new(rope, 1, max_tokens),
            BatchDispatch::new(attend, 1, max_tokens),
        ))
    }
}
