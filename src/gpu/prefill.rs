//! Batched kernels for prompt processing: matrix-matrix products
//! `Y[t] (=|+=) W · input(X[t])` for a chunk of tokens (each weight block is
//! decoded once per tile of [`TOKENS_PER_TILE`] tokens), the batched
//! embedding lookup and the causal attention of a chunk.
//!
//! Every batched kernel reads the chunk header from one storage buffer the
//! host writes once per chunk: `[start, n_tokens, 0, 0, id_0, id_1, ...]`
//! (u32; see [`chunk_words`]). Operations are prepared once ([`BatchDispatch`])
//! and recorded per chunk with the chunk's token count.
//!
//! Pipelines come from the device's cache ([`Gpu::kernel`]), compiled on
//! first use, under these variant names (`<format>`: q4_0, q4_1, q8_0, f16,
//! f32): `matmul.<format>[.norm|.swiglu][.coop]` (`.coop`: on matrix
//! units), `matmul.<format>.half[.coop]` (f16 inputs), each with `.direct`
//! after the input part where it writes Y itself; `matmul_q8.<format>`
//! (q4_0, q4_1, q8_0), `quantize_rows[.norm|.swiglu][.half]`,
//! `matmul_reduce[.norm]`, `embed_batch.<format>`,
//! `attention_prefill.rope_kv`, `attention_prefill`,
//! `attention_tiled[.coop|.hd128]`.

use std::sync::Mutex;

pub(crate) use super::matvec::format_flag;
use super::matvec::{Dispatch, GpuMatrix, MatvecInput, Q8_ACT_FORMATS};
use super::shader::{AttnParams, EmbedParams, MatmulParams};
use super::{Gpu, GpuError, KernelSpec};
use crate::gguf::GgmlType;

/// The matmul flag of the matrix-unit variants (see matmul.wgsl).
pub const COOP: &str = "COOP";
/// The matmul flag of the variants writing Y themselves (one K segment, no
/// RMSNorm scale left to apply: no matmul_reduce pass).
pub const DIRECT: &str = "DIRECT";
/// The matmul flag of the variants taking f16 inputs from quantize_rows'
/// HALF variants (see matmul.wgsl).
pub const HALF_X: &str = "HALF_X";

/// Tokens one matmul workgroup multiplies each decoded weight block with.
pub const TOKENS_PER_TILE: u32 = 64;
/// Rows of W one matmul workgroup covers.
pub const MATMUL_ROWS: u32 = 64;
/// Rows from which products on matrix units take f16 inputs by default
/// ([`MatmulKernels::half_inputs`]). H100, 512-token chunk, GPU µs
/// summed over the layers, f32 → f16 inputs: Llama-1B shapes QKV (3072
/// rows) 1,834 → 1,462, Wo (2048) 1,117 → 1,069, gate∣up (16384) 8,767 →
/// 6,534, down (2048) 4,978 → 3,838; SmolLM2 QKV (960) 794 → 857, Wo (576)
/// 541 → 628, gate∣up (3072) 1,391 → 1,255, down (576) 994 → 1,004: the
/// extra pass pays where many row tiles re-read the inputs.
pub const HALF_INPUTS_MIN_ROWS: u32 = 2048;
/// Query tokens per workgroup of attention_tiled.
pub const ATTENTION_TILE: u32 = 32;
/// The largest head size attention_tiled takes: up to 64 its threads hold
/// q and the output in registers (and the COOP variant applies); above, its
/// HD128 variant reads q from memory and splits the output over a query's
/// 8 lanes.
pub const ATTENTION_TILE_MAX_HEAD_DIM: u32 = 128;
/// The largest head size of attention_tiled's variant without HD128.
pub const ATTENTION_TILE_REGISTERS_HEAD_DIM: u32 = 64;
/// Workgroup memory of attention_tiled's COOP variant: K, V (64 keys × 72
/// halves each), Q then P (32 × 72 halves), S (64 × 36 floats), 32 row
/// factors and a flag. Within Metal's 32 KiB.
pub const ATTENTION_COOP_WORKGROUP_BYTES: u32 = (2 * 4608 + 2304) * 2 + (2304 + 32 + 1) * 4;
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
        let (x, y) = self.op.workgroups;
        self.op
            .record(pass, (x, y, n.div_ceil(self.tokens_per_group)));
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

/// The storage bindings (after the uniform; `true`: read-only) of the
/// batched kernels: one bind group layout each ([`Gpu::layout`]).
mod signature {
    /// matmul and matmul_q8: weights, x (int8 x for matmul_q8), partials, chunk.
    pub const MATMUL: &[bool] = &[true, true, false, true];
    /// matmul with NORM: those and the RMSNorm gain.
    pub const MATMUL_NORM: &[bool] = &[true, true, false, true, true];
    /// matmul_reduce: partials, y, chunk.
    pub const REDUCE: &[bool] = &[true, false, true];
    /// quantize_rows: x, int8 x, chunk.
    pub const QUANTIZE: &[bool] = &[true, false, true];
    /// quantize_rows with NORM: those and the RMSNorm gain.
    pub const QUANTIZE_NORM: &[bool] = &[true, false, true, true];
    /// embed_batch: table, chunk, out.
    pub const EMBED_BATCH: &[bool] = &[true, true, false];
    /// attention_prefill (both phases): chunk, qkv, k cache, v cache, out,
    /// rope frequencies, qkv bias.
    pub const ATTENTION_PREFILL: &[bool] = &[true, false, false, false, false, true, true];
}

/// The input op fused into a matmul (on the int8 path, into quantize_rows).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fused {
    Plain,
    Norm,
    SwiGlu,
}

impl Fused {
    /// The kernel flag of the op, none for plain inputs.
    fn flag(self) -> Option<&'static str> {
        match self {
            Fused::Plain => None,
            Fused::Norm => Some("NORM"),
            Fused::SwiGlu => Some("SWIGLU"),
        }
    }

    /// The op's part of a variant name: "", ".norm" or ".swiglu".
    fn suffix(self) -> &'static str {
        match self {
            Fused::Plain => "",
            Fused::Norm => ".norm",
            Fused::SwiGlu => ".swiglu",
        }
    }
}

/// Where one matmul reads and writes, for t < n (n from `chunk`):
/// `Y[t·y_stride + y_offset + row] (=|+=) W[row] · input(X[t·x_stride..])`.
/// Strides and offsets are in f32 elements.
#[derive(Clone, Copy)]
pub struct MatmulBinding<'a> {
    /// Token-major inputs, a row of `x_stride` floats per token (with
    /// SwiGlu, gate then up).
    pub x: &'a wgpu::Buffer,
    /// Floats per input row: a multiple of 4, at least the input's length.
    pub x_stride: u32,
    /// Token-major outputs, a row of `y_stride` floats per token.
    pub y: &'a wgpu::Buffer,
    /// Floats per output row: at least `y_offset` + W's rows.
    pub y_stride: u32,
    /// Where W's rows start in each output row.
    pub y_offset: u32,
    /// The chunk header and token ids (see [`chunk_words`]).
    pub chunk: &'a wgpu::Buffer,
    /// Tokens the buffers hold (and the most a recording may ask for).
    pub max_tokens: u32,
    /// What W multiplies ([`MatvecInput::AttnMerge`] is for decode only).
    pub input: MatvecInput<'a>,
    /// Add to Y instead of overwriting it.
    pub accumulate: bool,
}

/// The fused op of `input` and its RMSNorm (gain, eps).
type Input<'a> = (Fused, Option<(&'a wgpu::Buffer, f32)>);

impl<'a> MatmulBinding<'a> {
    /// The input op to fuse; the attention merge is refused.
    fn fused(&self) -> Result<Input<'a>, GpuError> {
        Ok(match self.input {
            MatvecInput::Plain => (Fused::Plain, None),
            MatvecInput::RmsNorm { gain, eps } => (Fused::Norm, Some((gain, eps))),
            MatvecInput::SwiGlu => (Fused::SwiGlu, None),
            MatvecInput::AttnMerge { .. } => {
                return Err(GpuError::Unsupported(
                    "matmul: the attention merge input is for decode matvecs only".into(),
                ))
            }
        })
    }

    /// Refuses strides, offsets and buffers that cannot hold `max_tokens`
    /// tokens of a product with `w`.
    fn check(&self, w: &GpuMatrix, input: Input<'_>) -> Result<(), GpuError> {
        let (fused, norm) = input;
        let x_len = w.cols as u64 * if fused == Fused::SwiGlu { 2 } else { 1 };
        let bad = |m: String| {
            Err(GpuError::BadArgument(format!(
                "matmul {}×{}: {m}",
                w.rows, w.cols
            )))
        };
        let (x, y, chunk, max_tokens) = (self.x, self.y, self.chunk, self.max_tokens);
        let (x_stride, y_stride, y_offset) = (self.x_stride, self.y_stride, self.y_offset);
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
        match norm {
            Some((g, _)) if g.size() < w.cols as u64 * 4 => {
                bad(format!("norm gain has {} bytes", g.size()))
            }
            _ => Ok(()),
        }
    }
}

/// Matrix-matrix products for every format in [`super::matvec::FORMATS`].
/// Their pipelines come from the device's cache ([`Gpu::kernel`]), compiled
/// on first use by [`MatmulKernels::bind`], as matvec pipelines are.
pub struct MatmulKernels {
    /// Workgroups a matmul aims for (K is split until its tiles reach it).
    target_workgroups: u32,
    /// Products with [`Q8_ACT_FORMATS`] weights take int8 inputs.
    q8_activations: bool,
    /// f32-input products take matmul's COOP variants (matrix units).
    matrix_units: bool,
    /// Products with at least this many rows round their inputs to f16
    /// once per token first (quantize_rows HALF, then matmul HALF_X); none
    /// with `None`.
    half_inputs_min_rows: Option<u32>,
    /// Products of one K segment with no RMSNorm scale left to apply write
    /// Y themselves (DIRECT), without a reduce pass.
    direct: bool,
    /// The partial-products buffer, shared by every op it is large enough for
    /// (ops run one after another); replaced by a larger one when needed
    /// (after [`MatmulKernels::reserve`], never).
    scratch: Mutex<Option<wgpu::Buffer>>,
    /// The quantized-input buffer of the int8 path, shared like `scratch`.
    scratch_q: Mutex<Option<wgpu::Buffer>>,
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

/// One matmul's uniforms and its grid: (64-row tiles, K segments).
struct Plan {
    params: MatmulParams,
    tiles: u32,
}

impl MatmulKernels {
    /// Matmuls with f32 inputs, at the device's
    /// `Tuning::matmul_target_workgroups`.
    pub fn new(gpu: &Gpu) -> MatmulKernels {
        MatmulKernels {
            target_workgroups: gpu.tuning.matmul_target_workgroups.max(1),
            q8_activations: false,
            matrix_units: gpu.matrix_units,
            half_inputs_min_rows: gpu.matrix_units.then_some(HALF_INPUTS_MIN_ROWS),
            direct: gpu.tuning.matmul_direct,
            scratch: Mutex::new(None),
            scratch_q: Mutex::new(None),
        }
    }

    /// With `on`, products with Q4_0, Q4_1 and Q8_0 weights quantize their
    /// inputs to int8 blocks first (quantize_rows) and use int8 dot products
    /// (matmul_q8), like the int8-input matvecs.
    pub fn with_q8_activations(mut self, on: bool) -> MatmulKernels {
        self.q8_activations = on;
        self
    }

    /// With `on`, f32-input products try matmul's COOP variants (matrix
    /// units; the default is [`Gpu::matrix_units`]). A variant the device
    /// cannot build falls back to f32 when bound.
    pub fn with_matrix_units(mut self, on: bool) -> MatmulKernels {
        self.matrix_units = on;
        self
    }

    /// With `on`, every product not on the int8 path rounds its inputs to
    /// f16 once per token (quantize_rows' HALF variant, applying the fused
    /// op and the RMSNorm scale) and stages those halves: a quarter of the
    /// input bytes each workgroup reads, and no per-workgroup gain or
    /// SwiGLU work, for one more dispatch. Off: none does. The default is
    /// products of [`HALF_INPUTS_MIN_ROWS`] rows or more where
    /// [`Gpu::matrix_units`] (the COOP tiles round inputs to f16 anyway; on
    /// f32 FMAs it costs precision).
    pub fn with_half_inputs(mut self, on: bool) -> MatmulKernels {
        self.half_inputs_min_rows = on.then_some(0);
        self
    }

    /// Whether products with `ty` weights take a COOP variant (f16 tiles,
    /// relative error ~5e-4 instead of ~1e-6).
    pub fn matrix_units(&self, ty: GgmlType) -> bool {
        self.matrix_units && !self.q8_activations(ty)
    }

    /// Whether products with a `rows`-row matrix of `ty` take f16 inputs
    /// (quantize_rows HALF + matmul HALF_X; relative error ~5e-4).
    pub fn half_inputs(&self, ty: GgmlType, rows: u32) -> bool {
        self.half_inputs_min_rows.is_some_and(|r| rows >= r) && !self.q8_activations(ty)
    }

    /// Whether products with `ty` weights quantize their inputs to int8
    /// (quantize_rows + matmul_q8).
    pub fn q8_activations(&self, ty: GgmlType) -> bool {
        self.q8_activations && Q8_ACT_FORMATS.contains(&ty)
    }

    /// Creates the shared scratch buffers at the largest size any product
    /// with a matrix of `shapes` ((type, rows, cols)) over `max_tokens`
    /// tokens needs, so every product bound afterwards shares one buffer of
    /// each kind. Without it a bind needing more replaces the buffer while
    /// the products bound before keep theirs alive (SmolLM2-135M's
    /// activations 32.1 → 22.7 MiB with it, Llama-3.2-1B's 91.6 → 79.6 MiB;
    /// the estimate, `model::memory`, counts the one buffer).
    pub fn reserve(
        &self,
        gpu: &Gpu,
        shapes: impl IntoIterator<Item = (GgmlType, u32, u32)>,
        max_tokens: u32,
    ) -> Result<(), GpuError> {
        let (part, int8) = self.max_scratch(shapes, max_tokens);
        if part > 0 {
            scratch_buffer(gpu, &self.scratch, "matmul partials", part)?;
        }
        if int8 > 0 {
            scratch_buffer(gpu, &self.scratch_q, "matmul int8 inputs", int8)?;
        }
        Ok(())
    }

    /// The largest [`Self::scratch_needs`] over `shapes`, per buffer.
    pub(crate) fn max_scratch(
        &self,
        shapes: impl IntoIterator<Item = (GgmlType, u32, u32)>,
        max_tokens: u32,
    ) -> (u64, u64) {
        shapes.into_iter().fold((0, 0), |(p, q), (ty, rows, cols)| {
            let (np, nq) = self.scratch_needs(ty, rows, cols, max_tokens);
            (p.max(np), q.max(nq))
        })
    }

    /// Prepares the product of `w` with the inputs `b` describes: matmul
    /// then matmul_reduce, or on the int8 path quantize_rows, matmul_q8 and
    /// matmul_reduce, recorded together.
    pub fn bind(
        &self,
        gpu: &Gpu,
        w: &GpuMatrix,
        b: MatmulBinding<'_>,
    ) -> Result<BatchDispatch, GpuError> {
        let input = b.fused()?;
        b.check(w, input)?;
        let plan = self.plan(w, &b, input.1.map_or(0.0, |n| n.1))?;
        let need_part = self.scratch_needs(w.ty, w.rows, w.cols, b.max_tokens).0;
        let part = scratch_buffer(gpu, &self.scratch, "matmul partials", need_part)?;
        if self.q8_activations(w.ty) {
            self.bind_int8(gpu, w, &b, input, &plan, &part)
        } else if self.half_inputs(w.ty, w.rows) {
            self.bind_half(gpu, w, &b, input, &plan, &part)
        } else {
            self.bind_f32(gpu, w, &b, input, &plan, &part)
        }
    }

    /// K segments and blocks per segment of a product with a `rows`×`cols`
    /// matrix: enough segments that 64-row tiles × segments reaches the
    /// target workgroups.
    fn segments(&self, rows: u32, cols: u32) -> (u32, u32) {
        // At least one block: the estimate asks before uploads refuse a
        // matrix narrower than a block.
        let blocks = (cols / 32).max(1);
        let tiles = rows.div_ceil(MATMUL_ROWS);
        let want = self.target_workgroups.div_ceil(tiles).clamp(1, blocks);
        let seg_blocks = blocks.div_ceil(want);
        (blocks.div_ceil(seg_blocks), seg_blocks)
    }

    /// Bytes [`MatmulKernels::bind`] asks of the shared scratch buffers for
    /// a product with a `rows`×`cols` matrix of `ty` over `max_tokens`
    /// tokens: (partial products, int8 or f16 inputs; 0 on the f32 path).
    /// The memory estimate of a model replays the binds with it.
    pub(crate) fn scratch_needs(
        &self,
        ty: GgmlType,
        rows: u32,
        cols: u32,
        max_tokens: u32,
    ) -> (u64, u64) {
        let (n_seg, _) = self.segments(rows, cols);
        let tokens = max_tokens as u64;
        let partials = n_seg as u64 * tokens * (rows as u64 + 1) * 4;
        // Per token and 32-element block: 10 words (quantize_rows' layout),
        // or 16 for f16 inputs (its HALF layout).
        let inputs = if self.q8_activations(ty) {
            tokens * (cols / 32) as u64 * 10 * 4
        } else if self.half_inputs(ty, rows) {
            tokens * (cols / 32) as u64 * 16 * 4
        } else {
            0
        };
        (partials, inputs)
    }

    /// Dispatches (each with a [`MatmulParams`] uniform) a product with a
    /// `rows`×`cols` `ty` matrix records (`norm`: its input is norm-fused):
    /// matmul and, unless it writes Y itself, matmul_reduce, with
    /// quantize_rows first on the int8 and f16-input paths.
    pub(crate) fn dispatches_for(&self, ty: GgmlType, rows: u32, cols: u32, norm: bool) -> usize {
        let q8 = self.q8_activations(ty);
        let half = self.half_inputs(ty, rows);
        let n_seg = self.segments(rows, cols).0;
        let direct = !q8 && self.writes_y(n_seg, norm && !half);
        1 + usize::from(!direct) + usize::from(q8 || half)
    }

    /// Whether a product of `n_seg` K segments writes Y itself (matmul's
    /// DIRECT variants): one segment and no RMSNorm scale left for the
    /// reduce to apply (`norm_scale`).
    fn writes_y(&self, n_seg: u32, norm_scale: bool) -> bool {
        self.direct && n_seg == 1 && !norm_scale
    }

    /// The uniforms and grid of a product with `w`: K split into enough
    /// segments that tiles × segments reaches the target workgroups.
    fn plan(&self, w: &GpuMatrix, b: &MatmulBinding<'_>, eps: f32) -> Result<Plan, GpuError> {
        let blocks = w.cols / 32;
        let tiles = w.rows.div_ceil(MATMUL_ROWS);
        if tiles > 65535 {
            return Err(GpuError::BadArgument(format!(
                "matmul {}×{}: more than 65535 tiles of {MATMUL_ROWS} rows",
                w.rows, w.cols
            )));
        }
        let (n_seg, seg_blocks) = self.segments(w.rows, w.cols);
        let params = MatmulParams {
            rows: w.rows,
            cols: w.cols,
            blocks,
            accumulate: b.accumulate as u32,
            x_stride: b.x_stride / 4,
            y_stride: b.y_stride,
            y_offset: b.y_offset,
            eps,
            n_seg,
            seg_blocks,
            part_tokens: b.max_tokens,
            pad0: 0,
        };
        Ok(Plan { params, tiles })
    }

    /// matmul (variant `matmul.<format><.norm|.swiglu>`, with `.coop` on
    /// matrix units) into the partials, then matmul_reduce (with NORM for a
    /// norm-fused input: the scale comes from the partial sums of squares),
    /// or its `.direct` variant alone ([`Self::product`]).
    fn bind_f32(
        &self,
        gpu: &Gpu,
        w: &GpuMatrix,
        b: &MatmulBinding<'_>,
        (fused, norm): Input<'_>,
        plan: &Plan,
        part: &wgpu::Buffer,
    ) -> Result<BatchDispatch, GpuError> {
        let mut flags = weight_flags(w)?;
        flags.extend(fused.flag());
        let name = format!("matmul.{}{}", w.ty.name(), fused.suffix());
        self.product(gpu, w, b, (name, flags), b.x, norm.map(|n| n.0), plan, part)
    }

    /// quantize_rows with HALF (applying the fused op and the RMSNorm
    /// scale, rounding to f16) → matmul `matmul.<format>.half` (`.coop` on
    /// matrix units) → matmul_reduce without NORM, or the matmul's
    /// `.direct` variant alone ([`Self::product`]).
    fn bind_half(
        &self,
        gpu: &Gpu,
        w: &GpuMatrix,
        b: &MatmulBinding<'_>,
        input: Input<'_>,
        plan: &Plan,
        part: &wgpu::Buffer,
    ) -> Result<BatchDispatch, GpuError> {
        let (prepare, xh) = self.prepare_inputs(gpu, w, b, input, plan, true)?;
        let mut flags = weight_flags(w)?;
        flags.push(HALF_X);
        let name = format!("matmul.{}.half", w.ty.name());
        // The f16 inputs are scaled already: no gain, no NORM reduce.
        let op = self.product(gpu, w, b, (name, flags), &xh, None, plan, part)?;
        Ok(BatchDispatch::new(prepare, 1, b.max_tokens).then(op))
    }

    /// The matmul of variant `name` with `flags` on inputs `x` (and the
    /// RMSNorm `gain`: NORM) into the partials, then matmul_reduce (NORM
    /// with a gain); or, where the product can write Y itself (one K
    /// segment, no norm scale left, X apart from Y), its `.direct` variant
    /// (flag DIRECT) alone.
    #[allow(clippy::too_many_arguments)]
    fn product(
        &self,
        gpu: &Gpu,
        w: &GpuMatrix,
        b: &MatmulBinding<'_>,
        (mut name, mut flags): (String, Vec<&str>),
        x: &wgpu::Buffer,
        gain: Option<&wgpu::Buffer>,
        plan: &Plan,
        part: &wgpu::Buffer,
    ) -> Result<BatchDispatch, GpuError> {
        // Y apart from X: the matmul binds X to read and Y to write.
        let direct = self.writes_y(plan.params.n_seg, gain.is_some()) && x != b.y;
        if direct {
            flags.push(DIRECT);
            name.push_str(".direct");
        }
        let mut bufs = vec![&w.buffer, x, if direct { b.y } else { part }, b.chunk];
        bufs.extend(gain);
        let sig = match gain {
            Some(_) => signature::MATMUL_NORM,
            None => signature::MATMUL,
        };
        let op = self.matmul_op(gpu, w, (&name, &flags), sig, &bufs, plan)?;
        let op = BatchDispatch::new(op, TOKENS_PER_TILE, b.max_tokens);
        if direct {
            return Ok(op);
        }
        Ok(op.then(reduce(gpu, w, b, plan, part, gain.is_some())?))
    }

    /// The matmul launch of variant `name` with `flags` over the grid of
    /// `plan`: its `.coop` variant (flag COOP) on matrix units, unless the
    /// device fails to build it: that is noted ([`Gpu::msl_fallbacks`]) once
    /// and the variant without COOP taken.
    fn matmul_op(
        &self,
        gpu: &Gpu,
        w: &GpuMatrix,
        (name, flags): (&str, &[&str]),
        sig: &[bool],
        bufs: &[&wgpu::Buffer],
        plan: &Plan,
    ) -> Result<Dispatch, GpuError> {
        let launch = |name: &str, flags: &[&str]| {
            let spec = KernelSpec::new("matmul", flags, sig);
            Dispatch::launch(gpu, name, &spec, &plan.params, bufs, 1)
        };
        let (coop_name, coop_flags) = (format!("{name}.coop"), [flags, &[COOP]].concat());
        let coop = try_coop(gpu, self.matrix_units, &coop_name, || {
            launch(&coop_name, &coop_flags)
        });
        let mut op = match coop {
            Some(op) => op,
            None => launch(name, flags)?,
        };
        op.workgroups = (plan.tiles, plan.params.n_seg);
        op.weight_bytes = w.weight_bytes();
        Ok(op)
    }

    /// quantize_rows (variant `quantize_rows[.norm|.swiglu]`, `.half` with
    /// `half`) from `b.x` into the shared input scratch, one workgroup per
    /// token: int8 blocks for matmul_q8, or f16 values for matmul's HALF_X
    /// variants. Returns the launch and the buffer it writes.
    fn prepare_inputs(
        &self,
        gpu: &Gpu,
        w: &GpuMatrix,
        b: &MatmulBinding<'_>,
        (fused, norm): Input<'_>,
        plan: &Plan,
        half: bool,
    ) -> Result<(Dispatch, wgpu::Buffer), GpuError> {
        let need = self.scratch_needs(w.ty, w.rows, w.cols, b.max_tokens).1;
        let label = if half {
            "matmul f16 inputs"
        } else {
            "matmul int8 inputs"
        };
        let out = scratch_buffer(gpu, &self.scratch_q, label, need)?;
        let name = format!(
            "quantize_rows{}{}",
            fused.suffix(),
            if half { ".half" } else { "" }
        );
        let mut flags: Vec<&str> = fused.flag().into_iter().collect();
        flags.extend(half.then_some("HALF"));
        let p = &plan.params;
        let op = match norm {
            Some((g, _)) => {
                let s = KernelSpec::new("quantize_rows", &flags, signature::QUANTIZE_NORM);
                Dispatch::launch(gpu, &name, &s, p, &[b.x, &out, b.chunk, g], 1)?
            }
            None => {
                let s = KernelSpec::new("quantize_rows", &flags, signature::QUANTIZE);
                Dispatch::launch(gpu, &name, &s, p, &[b.x, &out, b.chunk], 1)?
            }
        };
        Ok((op, out))
    }

    /// quantize_rows (applying the fused op; with NORM it folds the norm
    /// scale into the inputs' scales) → matmul_q8 → matmul_reduce without
    /// NORM.
    fn bind_int8(
        &self,
        gpu: &Gpu,
        w: &GpuMatrix,
        b: &MatmulBinding<'_>,
        input: Input<'_>,
        plan: &Plan,
        part: &wgpu::Buffer,
    ) -> Result<BatchDispatch, GpuError> {
        let p = &plan.params;
        let (quantize, xq) = self.prepare_inputs(gpu, w, b, input, plan, false)?;
        // Q8_0 is matmul_q8's default: it has no format flag.
        let fmt: &[&str] = match w.ty {
            GgmlType::Q4_0 => &["Q4_0"],
            GgmlType::Q4_1 => &["Q4_1"],
            _ => &[],
        };
        let name = format!("matmul_q8.{}", w.ty.name());
        let s = KernelSpec::new("matmul_q8", fmt, signature::MATMUL);
        let mut op = Dispatch::launch(gpu, &name, &s, p, &[&w.buffer, &xq, part, b.chunk], 1)?;
        op.workgroups = (plan.tiles, p.n_seg);
        op.weight_bytes = w.weight_bytes();
        let reduce = reduce(gpu, w, b, plan, part, false)?;
        Ok(BatchDispatch::new(quantize, 1, b.max_tokens)
            .then(BatchDispatch::new(op, TOKENS_PER_TILE, b.max_tokens).then(reduce)))
    }
}

/// matmul's format flag for `w` (none for F32, the kernel's default).
fn weight_flags(w: &GpuMatrix) -> Result<Vec<&'static str>, GpuError> {
    let fmt = format_flag(w.ty)
        .ok_or_else(|| GpuError::Unsupported(format!("no GPU matmul for {}", w.ty)))?;
    Ok((w.ty != GgmlType::F32).then_some(fmt).into_iter().collect())
}

/// matmul_reduce (variant `matmul_reduce`, or `matmul_reduce.norm` scaling
/// each token by its RMSNorm factor): Y (=|+=) the sum of the K segments'
/// partials.
fn reduce(
    gpu: &Gpu,
    w: &GpuMatrix,
    b: &MatmulBinding<'_>,
    plan: &Plan,
    part: &wgpu::Buffer,
    norm: bool,
) -> Result<BatchDispatch, GpuError> {
    let (name, flags): (&str, &[&str]) = if norm {
        ("matmul_reduce.norm", &["NORM"])
    } else {
        ("matmul_reduce", &[])
    };
    let s = KernelSpec::new("matmul_reduce", flags, signature::REDUCE);
    let bufs = [part, b.y, b.chunk];
    let d = Dispatch::launch(gpu, name, &s, &plan.params, &bufs, w.rows.div_ceil(256))?;
    Ok(BatchDispatch::new(d, 1, b.max_tokens))
}

/// Prepares the batched embedding lookup (variant `embed_batch.<format>`):
/// out[t·cols + e] = table[id_t, e] for the ids in `chunk`; `table` holds
/// `rows`×`cols` elements of `ty`, vocabulary rows `row0..row0 + rows` (a
/// table split across bindings has one lookup per part; ids outside the
/// part's rows are left to the others).
#[allow(clippy::too_many_arguments)]
pub fn embed_batch(
    gpu: &Gpu,
    ty: GgmlType,
    table: &wgpu::Buffer,
    (row0, rows): (u32, u32),
    cols: u32,
    chunk: &wgpu::Buffer,
    out: &wgpu::Buffer,
    max_tokens: u32,
) -> Result<BatchDispatch, GpuError> {
    let flag = format_flag(ty)
        .filter(|_| cols.is_multiple_of(32))
        .ok_or_else(|| {
            GpuError::Unsupported(format!("batched embedding of {ty} with {cols} columns"))
        })?;
    let need = max_tokens as u64 * cols as u64 * 4;
    let need_c = (CHUNK_HEADER as u64 + max_tokens as u64) * 4;
    if out.size() < need || chunk.size() < need_c {
        return Err(GpuError::BadArgument(format!(
            "batched embedding of {max_tokens} tokens needs out {need} bytes (has {}), chunk {need_c} (has {})",
            out.size(),
            chunk.size()
        )));
    }
    let params = EmbedParams {
        rows,
        cols,
        row0,
        pad1: 0,
    };
    let op = Dispatch::launch(
        gpu,
        &format!("embed_batch.{}", ty.name()),
        &KernelSpec::new("embed_batch", &[flag], signature::EMBED_BATCH),
        &params,
        &[table, chunk, out],
        cols.div_ceil(256),
    )?;
    Ok(BatchDispatch::new(op, 1, max_tokens))
}

/// The buffers of a layer's chunk attention.
#[derive(Clone, Copy)]
pub struct AttnBuffers<'a> {
    /// [CHUNK_HEADER + tokens] u32: start, n, and the ids.
    pub chunk: &'a wgpu::Buffer,
    /// [tokens × (n_heads·hd + 2·kv_dim)] f32: Q, K, V rows.
    pub qkv: &'a wgpu::Buffer,
    /// The K and V caches (all layers; `AttnParams::layer_offset` picks one).
    pub kcache: &'a wgpu::Buffer,
    pub vcache: &'a wgpu::Buffer,
    /// [tokens × n_heads·hd] f32: the attention output.
    pub out: &'a wgpu::Buffer,
    /// [hd / 2] f32: RoPE angle per position of each pair (`model::rope_freqs`).
    pub rope: &'a wgpu::Buffer,
    /// [n_heads·hd + 2·kv_dim + 2·hd] f32: the Q, K, V projections' biases,
    /// then the q and k heads' RMSNorm gains (`AttnParams::qk_norm`).
    pub bias: &'a wgpu::Buffer,
}

/// Prepares one layer's chunk attention in two phases, recorded in this
/// order: (1) `attention_prefill.rope_kv`: RoPE on every token's q (in place
/// in `qkv`, rows of n_heads·hd + 2·kv_dim floats) and k, and the K/V cache
/// writes at positions start..start+n; (2) `attention_tiled` (32 tokens of
/// a head per workgroup: head_dim ≤ 128 and at least
/// `Tuning::attention_tiled_min_heads` heads; HD128 above 64, and the COOP
/// variant up to 64 where [`attention_on_matrix_units`]) or
/// `attention_prefill` (one token per workgroup): causal attention of every
/// token over positions 0..=its own, into `out` (rows of n_heads·hd).
pub fn attention_prefill(
    gpu: &Gpu,
    params: &AttnParams,
    b: &AttnBuffers<'_>,
    max_tokens: u32,
) -> Result<(BatchDispatch, BatchDispatch), GpuError> {
    check_attention(params, b, max_tokens)?;
    let p = params;
    let bufs = [b.chunk, b.qkv, b.kcache, b.vcache, b.out, b.rope, b.bias];
    let sig = signature::ATTENTION_PREFILL;
    let rope_spec = KernelSpec::new("attention_prefill", &["ROPE_KV"], sig);
    let rope = Dispatch::launch(gpu, "attention_prefill.rope_kv", &rope_spec, p, &bufs, 1)?;
    let rope = BatchDispatch::new(rope, 1, max_tokens);
    if p.n_heads >= gpu.tuning.attention_tiled_min_heads
        && p.head_dim <= ATTENTION_TILE_MAX_HEAD_DIM
    {
        // One workgroup per query head and tile of 32 tokens.
        let launch = |name: &str, flags: &[&str]| {
            let spec = KernelSpec::new("attention_tiled", flags, sig);
            Dispatch::launch(gpu, name, &spec, p, &bufs, p.n_heads)
        };
        let wide = p.head_dim > ATTENTION_TILE_REGISTERS_HEAD_DIM;
        let coop = try_coop(
            gpu,
            attention_on_matrix_units(gpu) && !wide,
            "attention_tiled.coop",
            || launch("attention_tiled.coop", &[COOP]),
        );
        let attend = match coop {
            Some(d) => d,
            None if wide => launch("attention_tiled.hd128", &["HD128"])?,
            None => launch("attention_tiled", &[])?,
        };
        return Ok((rope, BatchDispatch::new(attend, ATTENTION_TILE, max_tokens)));
    }
    // One workgroup per KV head and group of ≤ 4 query heads sharing it.
    let groups = p.n_kv_heads * (p.n_heads / p.n_kv_heads).div_ceil(4);
    let attend_spec = KernelSpec::new("attention_prefill", &[], sig);
    let attend = Dispatch::launch(gpu, "attention_prefill", &attend_spec, p, &bufs, groups)?;
    Ok((rope, BatchDispatch::new(attend, 1, max_tokens)))
}

/// COOP variant `name`, launched where `wanted`. One the device cannot
/// build is noted (once) and `None` returned, for the caller to take its
/// variant without COOP; [`Gpu::kernel`] does not build it again.
fn try_coop(
    gpu: &Gpu,
    wanted: bool,
    name: &str,
    launch: impl FnOnce() -> Result<Dispatch, GpuError>,
) -> Option<Dispatch> {
    if !wanted {
        return None;
    }
    launch()
        .inspect_err(|e| gpu.note_replaced(format!("{name}: {e}")))
        .ok()
}

/// Whether tiled prefill attention takes its COOP variant: asked for
/// (`Tuning::attention_matrix_units`), on a device with matrix units and
/// the variant's workgroup memory.
pub fn attention_on_matrix_units(gpu: &Gpu) -> bool {
    gpu.tuning.attention_matrix_units
        && gpu.matrix_units
        && gpu.device.limits().max_compute_workgroup_storage_size >= ATTENTION_COOP_WORKGROUP_BYTES
}

/// Refuses an attention shape the kernels do not handle and buffers too
/// small for `max_tokens` tokens.
fn check_attention(p: &AttnParams, b: &AttnBuffers<'_>, max_tokens: u32) -> Result<(), GpuError> {
    let AttnBuffers {
        chunk,
        qkv,
        kcache,
        vcache,
        out,
        rope,
        bias,
    } = *b;
    if p.head_dim == 0
        || p.head_dim > 256
        || !p.head_dim.is_multiple_of(4)
        || p.n_kv_heads == 0
        || !p.n_heads.is_multiple_of(p.n_kv_heads)
        || p.kv_dim != p.n_kv_heads * p.head_dim
        || p.n_heads + p.n_kv_heads > 256
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
        || rope.size() < (p.head_dim / 2) as u64 * 4
        || bias.size() < (row + 2 * p.head_dim as u64) * 4
    {
        return Err(GpuError::BadArgument(format!(
            "attention of {max_tokens} tokens: qkv {} bytes (needs {need_qkv}), out {} (needs {need_out}), caches {}/{} (need {need_cache})",
            qkv.size(),
            out.size(),
            kcache.size(),
            vcache.size()
        )));
    }
    Ok(())
}
