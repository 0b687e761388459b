//! Matrix-vector kernels: y = W·x, y += W·x (fused residual), and W times
//! the fused input ops (RMSNorm, SwiGLU, the attention-chunk merge), for W in
//! Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, F16 or F32 read in its
//! GGUF layout with aligned 16-byte loads. [`MatvecKernels::bind`] chooses a variant and prepares one
//! operation (uniforms + bind group) once; [`MatvecOp::encode`] only records
//! a dispatch.
//!
//! # Vocabulary (Rust, WGSL and MSL alike)
//!
//! A kernel **variant** is (family, format, inputs, fused op), named by
//! [`MatvecVariant::name`], e.g. `matvec.staged.q4_0.early.rpt4.int8x2.norm`.
//!
//! - **family** — one shader file pair `shaders/matvec_<family>.{wgsl,metal}`:
//!   - `lanes`: 256 threads = 8 rows × 32 lanes, lane l taking blocks l,
//!     l + 32, … of its row, x read from memory by every row;
//!   - `wide`: 2 × 4 rows × 128 lanes, each block of x read once for 4 rows
//!     (long rows; off by default);
//!   - `staged`: x staged in workgroup memory 64 blocks at a time, once per
//!     workgroup (`matvec_stage`), with **rpt** (rows per thread, the valued
//!     constant `RPT`: 1, 2 or 4; a workgroup takes 8·rpt rows) and a
//!     **fetch**: `early` (flag EARLY: rows of ≤ 32 blocks, each lane's
//!     weight words loaded before x is staged), `early2` (EARLY2: rows of
//!     ≤ 64 blocks, two blocks per lane loaded before each chunk is staged),
//!     `late` (after each chunk is staged; with rpt > 1 every row's words of
//!     a block are loaded before any is used and the staged block of x is
//!     read once for all of them);
//!   - `dense`: tall matrices of rows of ≤ 64 blocks (the LM head): a
//!     workgroup's rows as one slab of blocks, thread t taking blocks t,
//!     t + 256, …, each row's block dots added from workgroup memory.
//! - **format** — the weights' block type (flags Q4_0, Q4_1, Q5_0, Q5_1,
//!   Q8_0, Q4_K, Q5_K, Q6_K, F16, F32; `shaders/block_<format>`). A
//!   "block" is 32 elements: the K-quants' 32-element sub-blocks (groups)
//!   of their 256-element super-blocks. Q4_0, Q4_1 and Q8_0 define `Raw`
//!   (flag RAW): a block's words can be loaded apart from their use, which
//!   every fetch but `late` with rpt 1, the dense family and int8 inputs
//!   need; the others take f32 inputs on `lanes`, `wide` and `late` rpt 1.
//! - **inputs** — [`Inputs`]: f32, `int8` (flag INT8: x quantized per
//!   32-element block, 4-way int8 dot products) or `int8x2` (INT8 + INT8X2:
//!   a second level of codes for the remainder, about 15 bits); staged and
//!   dense families only.
//! - **op** — [`Op`]: plain, `norm` (NORM: W · (rmsnorm(x) ⊙ gain)),
//!   `swiglu` (SWIGLU: W · (silu(gate) ⊙ up)), `attn` (ATTN: W · the merged
//!   decode-attention chunks; staged only). The residual add is a uniform.
//! - SUBGROUPS (set per device): reductions by subgroup shuffles, else
//!   through workgroup memory.
//!
//! Which variant a matrix gets is [`choose`], one function over
//! [`MatvecTuning`]'s named thresholds.

use super::shader::{MatvecParams, DENSE_ITEMS};
use super::tuning::MatvecTuning;
use super::{Gpu, GpuError, KernelSpec};
use crate::gguf::GgmlType;
use crate::quant::q6_k;
use std::borrow::Cow;

/// Rows computed by one workgroup (256 threads = 8 rows × 32 lanes).
pub const ROWS_PER_WORKGROUP: u32 = 8;
/// Binding indices shared by every matvec kernel, in WGSL and MSL alike.
pub mod binding {
    pub const PARAMS: u32 = 0;
    pub const WEIGHTS: u32 = 1;
    pub const X: u32 = 2;
    pub const Y: u32 = 3;
    /// RMSNorm gain (fused kernels only).
    pub const GAIN: u32 = 4;
}

/// The matvec formats with GPU kernels.
pub const FORMATS: [GgmlType; 10] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q8_0,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::F16,
    GgmlType::F32,
];

/// Zero bytes after a matrix's last block: the Q5_0 kernels load three
/// aligned words around 22 bytes that may end in the second.
pub const MATRIX_TAIL: u64 = 32;

/// A matrix's bytes as the kernels read them: the GGUF bytes, except Q6_K in
/// its GPU layout (`quant::q6_k::gpu_layout`: every group's bits in aligned
/// words, the same bytes per super-block). `None` when Q6_K bytes are not
/// whole super-blocks.
pub fn gpu_bytes(ty: GgmlType, bytes: &[u8]) -> Option<Cow<'_, [u8]>> {
    match ty {
        GgmlType::Q6_K => q6_k::gpu_layout(bytes).map(Cow::Owned),
        _ => Some(Cow::Borrowed(bytes)),
    }
}

/// Bytes of the buffer [`GpuMatrix::upload`] creates for `len` bytes of
/// `ty`: [`gpu_bytes`]' length and the zero tail, in whole 16-byte words.
pub fn uploaded_len(ty: GgmlType, len: usize) -> u64 {
    let len = match ty {
        GgmlType::Q6_K => q6_k::gpu_layout_len(len / std::mem::size_of::<q6_k::BlockQ6K>()),
        _ => len,
    };
    ((len as u64 + MATRIX_TAIL).div_ceil(16) * 16).max(16)
}

/// A weight matrix uploaded once, row-major (rows of `cols` elements) in its
/// GGUF byte layout or, for Q6_K, its GPU layout ([`gpu_bytes`]), padded to
/// whole 16-byte words.
pub struct GpuMatrix {
    pub buffer: wgpu::Buffer,
    pub ty: GgmlType,
    pub rows: u32,
    pub cols: u32,
}

impl GpuMatrix {
    /// Uploads `bytes` (exactly rows × row_bytes(cols)) as a matrix of `ty`.
    pub fn upload(
        gpu: &Gpu,
        label: &str,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> Result<GpuMatrix, GpuError> {
        let row_bytes = ty.row_bytes(cols as u64).ok_or_else(|| {
            GpuError::BadArgument(format!(
                "{label}: {cols} columns is not a multiple of the {ty} block"
            ))
        })?;
        if !cols.is_multiple_of(32) || cols == 0 || rows == 0 {
            return Err(GpuError::BadArgument(format!(
                "{label}: GPU matvec needs rows > 0 and columns a positive multiple of 32, got {rows}×{cols}"
            )));
        }
        let need = row_bytes * rows as u64;
        if bytes.len() as u64 != need {
            return Err(GpuError::BadArgument(format!(
                "{label}: {rows}×{cols} {ty} needs {need} bytes, got {}",
                bytes.len()
            )));
        }
        if !FORMATS.contains(&ty) {
            return Err(GpuError::Unsupported(format!(
                "{label}: no GPU matvec for {ty}"
            )));
        }
        let limit = gpu.max_binding();
        if uploaded_len(ty, bytes.len()) > limit {
            return Err(GpuError::BindingTooLarge {
                what: label.to_string(),
                needed: need,
                limit,
            });
        }
        let laid = gpu_bytes(ty, bytes).ok_or_else(|| {
            GpuError::BadArgument(format!("{label}: {ty} bytes are not whole blocks"))
        })?;
        let rows32 = u32::try_from(rows)
            .map_err(|_| GpuError::BadArgument(format!("{label}: too many rows")))?;
        let cols32 = u32::try_from(cols)
            .map_err(|_| GpuError::BadArgument(format!("{label}: too many columns")))?;
        Ok(GpuMatrix {
            buffer: gpu.upload_with_tail(label, &laid, MATRIX_TAIL, wgpu::BufferUsages::empty())?,
            ty,
            rows: rows32,
            cols: cols32,
        })
    }

    /// Bytes of weights a matvec reads.
    pub fn weight_bytes(&self) -> u64 {
        self.ty.row_bytes(self.cols as u64).unwrap_or(0) * self.rows as u64
    }
}

/// What a matvec multiplies W with.
#[derive(Clone, Copy)]
pub enum MatvecInput<'a> {
    /// x as it is.
    Plain,
    /// rmsnorm(x, eps) ⊙ gain, computed inside the kernel.
    RmsNorm { gain: &'a wgpu::Buffer, eps: f32 },
    /// silu(gate) ⊙ up, where x holds gate then up (each `cols` long).
    SwiGlu,
    /// The output of decode attention split over 64-position chunks: x holds
    /// attention.wgsl's per-chunk records (chunk c, head h at
    /// (c·heads + h)·(head_dim + 4) floats: m, l, 2 unused, o), merged while x
    /// is staged for chunks `0 ..= step[0] / 64` (`step`: the decode step's
    /// position buffer). Saves the separate merge dispatch.
    AttnMerge {
        step: &'a wgpu::Buffer,
        head_dim: u32,
    },
}

impl MatvecInput<'_> {
    /// The fused op this input needs.
    pub fn op(&self) -> Op {
        match self {
            Self::Plain => Op::Plain,
            Self::RmsNorm { .. } => Op::Norm,
            Self::SwiGlu => Op::SwiGlu,
            Self::AttnMerge { .. } => Op::Attn,
        }
    }
}

/// What a matvec does with its input vector before the dot products (Q4_0,
/// Q4_1 and Q8_0 weights; F16/F32 weights always take f32 inputs).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Inputs {
    /// f32 throughout: relative error ~1e-6.
    F32,
    /// Quantized to int8 per 32-element block, 4-way int8 dot products, as
    /// llama.cpp's GPU backends do: fewest instructions per weight, relative
    /// error ~1e-2.
    Int8,
    /// Int8 in two levels: codes at d = max|x|/127, then the remainder's
    /// codes at d/254, about 15 bits; twice the int8 dot products, relative
    /// error ~1e-5.
    Int8x2,
    /// `Int8x2` on matrices where [`MatvecTuning`] says it is faster than
    /// f32 (`auto_int8_min_cols` / `auto_int8_min_rows`), f32 on smaller
    /// ones, whose chained latency it would lengthen, and f32 everywhere on
    /// Apple GPUs, which have no 4-way int8 dot instruction. Elsewhere it
    /// assumes one (NVIDIA since Pascal, AMD since Vega, Intel Xe); where the
    /// driver lacks `VK_KHR_shader_integer_dot_product`, naga emulates it and
    /// `F32` may be faster.
    #[default]
    Auto,
}

impl Inputs {
    fn token(self) -> Option<&'static str> {
        match self {
            Inputs::Int8 => Some("int8"),
            Inputs::Int8x2 => Some("int8x2"),
            _ => None,
        }
    }
}

/// Formats with int8-input matvecs and every family and fetch (they define
/// `Raw`/`raw_load` in their block file): all but F16 and F32.
pub const RAW_FORMATS: [GgmlType; 8] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q8_0,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// Formats whose batched prefill products can take int8 inputs
/// (`matmul_q8`, [`super::MatmulKernels`]).
pub const Q8_ACT_FORMATS: [GgmlType; 3] = [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0];

/// Workgroup memory a `dense` kernel may use: its block dots (DENSE_ITEMS
/// f32) plus at most 8 KiB of staged x, 4 KiB of reduction scratch and
/// small arrays (tests/msl_interface.rs checks every dense variant). Above
/// WebGPU's default 16 KiB, within Apple GPUs' 32 KiB.
pub const DENSE_WORKGROUP_BYTES: u32 = DENSE_ITEMS * 4 + 13 * 1024;

/// Most rows a `dense` workgroup takes: one of its 256 threads adds each row.
pub const DENSE_MAX_ROWS: u32 = 256;

/// The fused op of a matvec (what it computes from x before the dots).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Op {
    Plain,
    Norm,
    SwiGlu,
    Attn,
}

impl Op {
    fn token(self) -> Option<&'static str> {
        match self {
            Op::Plain => None,
            Op::Norm => Some("norm"),
            Op::SwiGlu => Some("swiglu"),
            Op::Attn => Some("attn"),
        }
    }
}

/// When a `staged` matvec loads its weights (see the module doc).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Fetch {
    /// Before x is staged: lane l's block l (rows of ≤ 32 blocks).
    Early,
    /// Before each chunk of x is staged: lane l's blocks l, l + 32 (rows of
    /// ≤ 64 blocks, one row per thread).
    Early2,
    /// After each chunk is staged.
    Late,
}

/// A matvec kernel family: one shader file pair, `shaders/matvec_<family>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Family {
    /// 8 rows × 32 lanes, each lane reading its blocks of x from memory.
    Lanes,
    /// 2 × 4 rows × 128 lanes, x read from memory once per 4 rows (not with
    /// RMSNorm).
    Wide,
    /// x staged in workgroup memory 64 blocks at a time; `rpt` rows per
    /// thread (1, 2, 4), weights fetched as `fetch` says.
    Staged { fetch: Fetch, rpt: u32 },
    /// Tall matrices of ≤ 64-block rows: a workgroup's rows as one slab of
    /// blocks, every thread busy.
    Dense,
}

/// One matvec kernel variant: (family, format, inputs, fused op). Its
/// [`name`](Self::name) keys the pipeline cache and labels the pipeline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct MatvecVariant {
    pub family: Family,
    pub format: GgmlType,
    /// `F32`, `Int8` or `Int8x2` (never `Auto`).
    pub inputs: Inputs,
    pub op: Op,
}

impl MatvecVariant {
    /// `matvec.<family>.<format>[.<fetch>.rpt<n>][.<inputs>][.<op>]`, e.g.
    /// `matvec.staged.q4_0.early.rpt4.int8x2.norm`; f32 inputs and the plain
    /// op are not spelled.
    pub fn name(&self) -> String {
        let mut parts = vec!["matvec", self.file_family(), self.format.name()];
        let rpt;
        if let Family::Staged { fetch, rpt: n } = self.family {
            parts.push(match fetch {
                Fetch::Early => "early",
                Fetch::Early2 => "early2",
                Fetch::Late => "late",
            });
            rpt = format!("rpt{n}");
            parts.push(&rpt);
        }
        parts.extend(self.inputs.token());
        parts.extend(self.op.token());
        parts.join(".")
    }

    fn file_family(&self) -> &'static str {
        match self.family {
            Family::Lanes => "lanes",
            Family::Wide => "wide",
            Family::Staged { .. } => "staged",
            Family::Dense => "dense",
        }
    }

    /// The shader file of its family.
    pub fn file(&self) -> &'static str {
        match self.family {
            Family::Lanes => "matvec_lanes",
            Family::Wide => "matvec_wide",
            Family::Staged { .. } => "matvec_staged",
            Family::Dense => "matvec_dense",
        }
    }

    /// The flags it is assembled with (SUBGROUPS is added per device).
    pub fn flags(&self) -> Vec<&'static str> {
        let mut f: Vec<&'static str> = format_flag(self.format).into_iter().collect();
        match self.inputs {
            Inputs::Int8 => f.push("INT8"),
            Inputs::Int8x2 => f.extend(["INT8", "INT8X2"]),
            _ => {}
        }
        f.extend(match self.op {
            Op::Plain => None,
            Op::Norm => Some("NORM"),
            Op::SwiGlu => Some("SWIGLU"),
            Op::Attn => Some("ATTN"),
        });
        match self.family {
            Family::Staged {
                fetch: Fetch::Early,
                ..
            } => f.push("EARLY"),
            Family::Staged {
                fetch: Fetch::Early2,
                ..
            } => f.push("EARLY2"),
            _ => {}
        }
        f
    }

    /// Its valued constants: RPT (rows per thread) for `staged`.
    pub fn consts(&self) -> Vec<(&'static str, u32)> {
        match self.family {
            Family::Staged { rpt, .. } => vec![("RPT", rpt)],
            _ => vec![],
        }
    }

    /// Storage bindings after the uniform (`true`: read-only): weights, x,
    /// y, and the gain (RMSNorm) or the step's position (attention merge).
    pub fn bindings(&self) -> &'static [bool] {
        match self.op {
            Op::Norm | Op::Attn => &[true, true, false, true],
            _ => &[true, true, false],
        }
    }

    /// Whether the kernels can build it: weights without `Raw` only with
    /// f32 inputs on `lanes`, `wide` and `late` one row per thread; `wide` not
    /// with RMSNorm; the attention merge only on `staged` (the model runs it
    /// on few rows, never on `dense`); `early` with
    /// 1, 2 or 4 rows per thread, `early2` with 1, `late` with 1, 2 or 4.
    pub fn is_valid(&self) -> bool {
        let raw = RAW_FORMATS.contains(&self.format);
        let simple = matches!(
            self.family,
            Family::Lanes
                | Family::Wide
                | Family::Staged {
                    fetch: Fetch::Late,
                    rpt: 1
                }
        );
        let rpt_ok = match self.family {
            Family::Staged {
                fetch: Fetch::Early2,
                rpt,
            } => rpt == 1,
            Family::Staged { rpt, .. } => matches!(rpt, 1 | 2 | 4),
            _ => true,
        };
        let staged = matches!(self.family, Family::Staged { .. } | Family::Dense);
        FORMATS.contains(&self.format)
            && self.inputs != Inputs::Auto
            && rpt_ok
            && (raw || (simple && self.inputs == Inputs::F32))
            && (staged || self.inputs == Inputs::F32)
            && !(self.family == Family::Wide && self.op == Op::Norm)
            && (matches!(self.family, Family::Staged { .. }) || self.op != Op::Attn)
    }

    /// Every valid variant: what the tests compile, check against the MSL
    /// twins and run.
    pub fn all() -> Vec<MatvecVariant> {
        let mut families = vec![Family::Lanes, Family::Wide, Family::Dense];
        for rpt in [1, 2, 4] {
            for fetch in [Fetch::Early, Fetch::Early2, Fetch::Late] {
                families.push(Family::Staged { fetch, rpt });
            }
        }
        let mut out = Vec::new();
        for format in FORMATS {
            for &family in &families {
                for inputs in [Inputs::F32, Inputs::Int8, Inputs::Int8x2] {
                    for op in [Op::Plain, Op::Norm, Op::SwiGlu, Op::Attn] {
                        let v = MatvecVariant {
                            family,
                            format,
                            inputs,
                            op,
                        };
                        if v.is_valid() {
                            out.push(v);
                        }
                    }
                }
            }
        }
        out
    }
}

/// The shader flag naming a block format with GPU kernels (matvec, matmul,
/// embedding lookups), if it has them.
pub fn format_flag(ty: GgmlType) -> Option<&'static str> {
    match ty {
        GgmlType::Q4_0 => Some("Q4_0"),
        GgmlType::Q4_1 => Some("Q4_1"),
        GgmlType::Q8_0 => Some("Q8_0"),
        GgmlType::Q5_0 => Some("Q5_0"),
        GgmlType::Q5_1 => Some("Q5_1"),
        GgmlType::Q4_K => Some("Q4_K"),
        GgmlType::Q5_K => Some("Q5_K"),
        GgmlType::Q6_K => Some("Q6_K"),
        GgmlType::F16 => Some("F16"),
        GgmlType::F32 => Some("F32"),
        _ => None,
    }
}

/// Chooses the variant for a `rows`×`cols` matrix of `ty` under tuning `t`:
/// the one decision function over the variant table. `inputs` is resolved
/// (not `Auto`); `dense_fits`: the device's workgroup memory holds a dense
/// kernel's.
pub fn choose(
    t: &MatvecTuning,
    dense_fits: bool,
    ty: GgmlType,
    (rows, cols): (u32, u32),
    inputs: Inputs,
    op: Op,
) -> MatvecVariant {
    let blocks = cols / 32;
    let raw = RAW_FORMATS.contains(&ty);
    let variant = |family| MatvecVariant {
        family,
        format: ty,
        inputs,
        op,
    };
    // f32 inputs may skip staging; int8 inputs and the attention merge are
    // computed while x is staged.
    if inputs == Inputs::F32 && op != Op::Attn {
        if op != Op::Norm && blocks >= t.wide_min_blocks {
            return variant(Family::Wide);
        }
        if rows < t.staged_min_rows {
            return variant(Family::Lanes);
        }
    }
    let dense = raw
        && op != Op::Attn
        && dense_fits
        && t.dense_rows > 0
        && rows >= t.dense_min_rows
        && blocks <= t.dense_max_blocks.min(64);
    if dense {
        return variant(Family::Dense);
    }
    let rpt_ok = |n: u32| matches!(n, 2 | 4);
    let late_min_rows = if ty == GgmlType::Q8_0 {
        t.late_rpt_min_rows.saturating_mul(t.q8_0_late_rpt_factor)
    } else {
        t.late_rpt_min_rows
    };
    let late_rpt = match ty {
        GgmlType::Q6_K => t.q6_k_late_rpt,
        GgmlType::Q4_K => t.q4_k_late_rpt,
        _ => t.late_rpt,
    };
    let (fetch, rpt) = if !raw {
        (Fetch::Late, 1)
    } else if blocks > 32 && rows >= late_min_rows && rpt_ok(late_rpt) {
        (Fetch::Late, late_rpt)
    } else if !t.early_fetch || blocks > 64 || (blocks > 32 && rows >= t.early2_max_rows) {
        (Fetch::Late, 1)
    } else if blocks > 32 {
        (Fetch::Early2, 1)
    } else if rows >= t.early_rpt_min_rows && rpt_ok(t.early_rpt) {
        (Fetch::Early, t.early_rpt)
    } else {
        (Fetch::Early, 1)
    };
    variant(Family::Staged { fetch, rpt })
}

/// Matvec kernels for one device: the tuning that chooses variants, the
/// inputs policy, and their pipelines (from the device's one cache,
/// compiled on first use).
pub struct MatvecKernels {
    tuning: MatvecTuning,
    inputs: Inputs,
    /// The device's workgroup memory holds a dense kernel's.
    dense_fits: bool,
}

impl MatvecKernels {
    /// The matvec kernels for this device, with its tuning
    /// (`gpu.tuning.matvec`) and `Inputs::Auto`.
    pub fn new(gpu: &Gpu) -> Result<MatvecKernels, GpuError> {
        Ok(MatvecKernels {
            tuning: gpu.tuning.matvec.clone(),
            inputs: Inputs::Auto,
            dense_fits: gpu.device.limits().max_compute_workgroup_storage_size
                >= DENSE_WORKGROUP_BYTES,
        })
    }

    /// The same kernels choosing variants by `tuning` (tests and benchmarks
    /// reach every variant this way).
    pub fn with_tuning(mut self, tuning: MatvecTuning) -> Self {
        self.tuning = tuning;
        self
    }

    /// What matvecs do with their inputs (default `Inputs::Auto`).
    pub fn with_inputs(mut self, inputs: Inputs) -> Self {
        self.inputs = inputs;
        self
    }

    /// Whether the device gives a workgroup the memory `dense` kernels need
    /// ([`DENSE_WORKGROUP_BYTES`]); without it tall matrices stay `staged`.
    pub fn dense_available(&self) -> bool {
        self.dense_fits
    }

    /// What a matvec over a `rows`×`cols` matrix of `ty` does with its input:
    /// F32, Int8 or Int8x2 (`Inputs::Auto` resolved).
    pub fn inputs_for(&self, ty: GgmlType, rows: u32, cols: u32) -> Inputs {
        let t = &self.tuning;
        if !RAW_FORMATS.contains(&ty) {
            return Inputs::F32;
        }
        match self.inputs {
            Inputs::Auto
                if t.auto_int8
                    && (cols >= t.auto_int8_min_cols || rows >= t.auto_int8_min_rows) =>
            {
                Inputs::Int8x2
            }
            Inputs::Auto => Inputs::F32,
            i => i,
        }
    }

    /// The variant a matvec over a `rows`×`cols` matrix of `ty` with fused
    /// op `op` runs on.
    pub fn variant_for(&self, ty: GgmlType, rows: u32, cols: u32, op: Op) -> MatvecVariant {
        let inputs = self.inputs_for(ty, rows, cols);
        choose(&self.tuning, self.dense_fits, ty, (rows, cols), inputs, op)
    }

    /// Prepares y[y_offset..+rows] (=|+=) W · input(x[x_offset..]), see
    /// [`MatvecInput`]. Offsets are in f32 elements; x_offset must be a
    /// multiple of 4.
    #[allow(clippy::too_many_arguments)]
    pub fn bind(
        &self,
        gpu: &Gpu,
        w: &GpuMatrix,
        x: &wgpu::Buffer,
        x_offset: u32,
        y: &wgpu::Buffer,
        y_offset: u32,
        input: MatvecInput<'_>,
        accumulate: bool,
    ) -> Result<MatvecOp, GpuError> {
        let x_len = check_buffers(w, x, x_offset, y, y_offset, input)?;
        let v = self.variant_for(w.ty, w.rows, w.cols, input.op());
        let blocks = w.cols / 32;
        let params = MatvecParams {
            rows: w.rows,
            cols: w.cols,
            blocks,
            accumulate: accumulate as u32,
            x_offset: x_offset / 4,
            y_offset,
            eps: match input {
                MatvecInput::RmsNorm { eps, .. } => eps,
                _ => 0.0,
            },
            head_dim: match input {
                MatvecInput::AttnMerge { head_dim, .. } => head_dim,
                _ => 0,
            },
            max_chunks: match input {
                MatvecInput::AttnMerge { .. } => {
                    u32::try_from(x.size() / (x_len as u64 * 4)).unwrap_or(u32::MAX)
                }
                _ => 0,
            },
            group_rows: launch_rows(&self.tuning, &v, blocks).0,
            pad1: 0,
            pad2: 0,
        };
        let fourth = match input {
            MatvecInput::RmsNorm { gain, .. } => Some(gain),
            MatvecInput::AttnMerge { step, .. } => Some(step),
            _ => None,
        };
        let mut buffers = vec![&w.buffer, x, y];
        buffers.extend(fourth);
        let (flags, consts) = (v.flags(), v.consts());
        let spec = KernelSpec {
            consts: &consts,
            ..KernelSpec::new(v.file(), &flags, v.bindings())
        };
        let groups = w.rows.div_ceil(launch_rows(&self.tuning, &v, blocks).1);
        let mut op = Dispatch::launch(gpu, &v.name(), &spec, &params, &buffers, groups)?;
        op.weight_bytes = w.weight_bytes();
        Ok(op)
    }
}

/// A launch of `v` over rows of `blocks` blocks under tuning `t`: its
/// `MatvecParams::group_rows` (a `dense` workgroup's rows: at most
/// [`DENSE_MAX_ROWS`], one thread adding each, and `DENSE_ITEMS` blocks; 0
/// for the other families) and the rows one workgroup computes.
pub fn launch_rows(t: &MatvecTuning, v: &MatvecVariant, blocks: u32) -> (u32, u32) {
    match v.family {
        Family::Dense => {
            let rows = t
                .dense_rows
                .min(DENSE_MAX_ROWS)
                .min(DENSE_ITEMS / blocks.max(1))
                .max(1);
            (rows, rows)
        }
        Family::Staged { rpt, .. } => (0, ROWS_PER_WORKGROUP * rpt),
        _ => (0, ROWS_PER_WORKGROUP),
    }
}

/// Checks a matvec's buffers and arguments; returns the input length in
/// floats that chunk 0 of x must hold.
fn check_buffers(
    w: &GpuMatrix,
    x: &wgpu::Buffer,
    x_offset: u32,
    y: &wgpu::Buffer,
    y_offset: u32,
    input: MatvecInput<'_>,
) -> Result<u32, GpuError> {
    let x_len = match input {
        MatvecInput::SwiGlu => 2 * w.cols,
        MatvecInput::AttnMerge { step, head_dim } => {
            if !head_dim.is_power_of_two()
                || head_dim < 4
                || !w.cols.is_multiple_of(head_dim)
                || x_offset != 0
            {
                return Err(GpuError::BadArgument(format!(
                    "attention merge: head size {head_dim} must be a power of two ≥ 4 dividing {} columns, x offset {x_offset} must be 0",
                    w.cols
                )));
            }
            if step.size() < 4 {
                return Err(GpuError::BadArgument(
                    "attention merge: empty step buffer".into(),
                ));
            }
            // One chunk's records: at least chunk 0 must be there; the
            // kernel reads no more chunks than the buffer holds (max_chunks).
            w.cols + 4 * (w.cols / head_dim)
        }
        _ => w.cols,
    };
    if !x_offset.is_multiple_of(4) {
        return Err(GpuError::BadArgument(format!(
            "x offset {x_offset} is not a multiple of 4"
        )));
    }
    let need_x = (x_offset as u64 + x_len as u64) * 4;
    let need_y = (y_offset as u64 + w.rows as u64) * 4;
    if x.size() < need_x || y.size() < need_y {
        return Err(GpuError::BadArgument(format!(
            "matvec {}×{}: x buffer {} bytes (needs {need_x}), y buffer {} bytes (needs {need_y})",
            w.rows,
            w.cols,
            x.size(),
            y.size()
        )));
    }
    if let MatvecInput::RmsNorm { gain, .. } = input {
        if gain.size() < w.cols as u64 * 4 {
            return Err(GpuError::BadArgument(format!(
                "norm gain has {} bytes, needs {}",
                gain.size(),
                w.cols * 4
            )));
        }
    }
    Ok(x_len)
}

/// Splits `groups` workgroups into an (x, y) grid within the 65535 per-dimension
/// limit; kernels compute their index as x + y·nx and guard the excess.
pub fn grid(groups: u32) -> (u32, u32) {
    if groups <= 65535 {
        (groups.max(1), 1)
    } else {
        (65535, groups.div_ceil(65535))
    }
}

/// A prepared matvec (see [`Dispatch`]).
pub type MatvecOp = Dispatch;

/// One prepared kernel launch: pipeline, bind group and uniforms created once;
/// recording it allocates nothing.
pub struct Dispatch {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) bind_group: wgpu::BindGroup,
    pub(crate) _uniform: wgpu::Buffer,
    pub(crate) workgroups: (u32, u32),
    /// Bytes of weights the dispatch reads (0 for kernels without weights).
    pub weight_bytes: u64,
    /// What it runs and on which buffers, for [`capture`].
    kernel: std::sync::Arc<KernelRecord>,
    /// The variant's replacement if the kernel self-check replaces it
    /// ([`super::selfcheck`]); recorded instead of `pipeline` once set.
    replacement: Option<std::sync::Arc<std::sync::OnceLock<wgpu::ComputePipeline>>>,
}

/// A kernel launch as prepared: the variant (source file, flags, valued
/// constants, storage bindings, workgroup size) and its buffers, uniform
/// first. Lets tests run the same launch elsewhere (tests/msl_exec.rs runs
/// the MSL twins of a model's launches on a CPU executor).
#[derive(Debug)]
pub struct KernelRecord {
    pub name: String,
    pub file: String,
    pub flags: Vec<String>,
    pub consts: Vec<(String, u32)>,
    /// Storage bindings after the uniform (`true`: read-only).
    pub bindings: Vec<bool>,
    pub workgroup_size: (u32, u32, u32),
    /// The uniform, then the storage buffers in binding order.
    pub buffers: Vec<wgpu::Buffer>,
}

/// One launch as recorded inside [`capture`]: the kernel and the grid.
#[derive(Clone, Debug)]
pub struct Captured {
    pub kernel: std::sync::Arc<KernelRecord>,
    pub grid: (u32, u32, u32),
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) bind_group: wgpu::BindGroup,
}

impl Captured {
    /// Records this launch (same pipeline, bind group and grid) into `pass`.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.encode_with(pass, &self.pipeline);
    }

    /// Records this launch with `pipeline` instead of its own (the kernel
    /// self-check's replays).
    pub(crate) fn encode_with(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        pipeline: &wgpu::ComputePipeline,
    ) {
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.grid.0, self.grid.1, self.grid.2);
    }
}

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Vec<Captured>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` and returns, with its result, every launch this thread
/// recorded into a compute pass meanwhile, in order (for tests that replay
/// a model's launches one by one; recording is unchanged).
pub fn capture<R>(f: impl FnOnce() -> R) -> (R, Vec<Captured>) {
    let outer = CAPTURE.with(|c| c.borrow_mut().replace(Vec::new()));
    let r = f();
    let got = CAPTURE.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer));
    (r, got.unwrap_or_default())
}

impl Dispatch {
    /// Records the launch with `grid` into `pass` (and into a [`capture`]
    /// in progress).
    pub(crate) fn record(&self, pass: &mut wgpu::ComputePass<'_>, grid: (u32, u32, u32)) {
        let pipeline = self
            .replacement
            .as_ref()
            .and_then(|r| r.get())
            .unwrap_or(&self.pipeline);
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(grid.0, grid.1, grid.2);
        CAPTURE.with(|c| {
            if let Some(list) = c.borrow_mut().as_mut() {
                list.push(Captured {
                    kernel: self.kernel.clone(),
                    grid,
                    pipeline: pipeline.clone(),
                    bind_group: self.bind_group.clone(),
                });
            }
        });
    }
}

impl Dispatch {
    /// Prepares `pipeline` with a uniform (binding 0) holding `params` and
    /// `buffers` at bindings 1.. in order.
    pub fn new<T: bytemuck::Pod>(
        gpu: &Gpu,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        layout: &wgpu::BindGroupLayout,
        params: &T,
        buffers: &[&wgpu::Buffer],
        workgroups: u32,
    ) -> Result<Dispatch, GpuError> {
        // A pipeline made outside `Gpu::kernel`: its source is not known
        // here (the record names it by `label` only).
        let spec = KernelSpec::new("", &[], &[]);
        Self::with_spec(
            gpu, label, &spec, pipeline, layout, params, buffers, workgroups,
        )
    }

    /// [`Dispatch::new`] for the kernel variant `spec`.
    #[allow(clippy::too_many_arguments)]
    fn with_spec<T: bytemuck::Pod>(
        gpu: &Gpu,
        label: &str,
        spec: &KernelSpec<'_>,
        pipeline: &wgpu::ComputePipeline,
        layout: &wgpu::BindGroupLayout,
        params: &T,
        buffers: &[&wgpu::Buffer],
        workgroups: u32,
    ) -> Result<Dispatch, GpuError> {
        let ubuf = gpu.uniform(label, params)?;
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: ubuf.as_entire_binding(),
        }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.as_entire_binding(),
            });
        }
        let bind_group = gpu.scoped(&format!("binding {label}"), || {
            gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(label),
                layout,
                entries: &entries,
            })
        })?;
        let mut all = vec![ubuf.clone()];
        all.extend(buffers.iter().map(|b| (*b).clone()));
        // Send + Sync natively; on the WebGPU backend wgpu's handles are
        // neither, and the record stays on the page's one thread.
        #[allow(clippy::arc_with_non_send_sync)]
        let kernel = std::sync::Arc::new(KernelRecord {
            name: label.to_string(),
            file: spec.file.to_string(),
            flags: spec.flags.iter().map(|f| f.to_string()).collect(),
            consts: spec
                .consts
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            bindings: spec.bindings.to_vec(),
            workgroup_size: spec.workgroup_size,
            buffers: all,
        });
        Ok(Dispatch {
            pipeline: pipeline.clone(),
            bind_group,
            _uniform: ubuf,
            workgroups: grid(workgroups),
            weight_bytes: 0,
            kernel,
            replacement: gpu.replacement_slot(label),
        })
    }

    /// Prepares one launch of kernel variant `name` (compiled on first use
    /// and cached by [`Gpu::kernel`]): a uniform holding `params`, `buffers`
    /// at bindings 1.. in order, `workgroups` workgroups.
    pub fn launch<T: bytemuck::Pod>(
        gpu: &Gpu,
        name: &str,
        spec: &KernelSpec<'_>,
        params: &T,
        buffers: &[&wgpu::Buffer],
        workgroups: u32,
    ) -> Result<Dispatch, GpuError> {
        let pipeline = gpu.kernel(name, spec)?;
        let layout = gpu.layout(spec.bindings)?;
        Dispatch::with_spec(
            gpu, name, spec, &pipeline, &layout, params, buffers, workgroups,
        )
    }

    /// Queues new values for the uniform (binding 0): the dispatch keeps
    /// its bind group; the values apply from the next submission on.
    pub fn write_params<T: bytemuck::Pod>(&self, gpu: &Gpu, params: &T) {
        gpu.queue
            .write_buffer(&self._uniform, 0, bytemuck::bytes_of(params));
    }

    /// Records the dispatch into a compute pass.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.record(pass, (self.workgroups.0, self.workgroups.1, 1));
    }

    /// Records the dispatch with an explicit grid (for kernels whose
    /// workgroup count depends on per-step values the host knows).
    pub fn encode_grid(&self, pass: &mut wgpu::ComputePass<'_>, x: u32, y: u32) {
        self.record(pass, (x, y, 1));
    }

    /// Records the dispatch in its own compute pass of `encoder`, so a host
    /// application can place it between its own passes.
    pub fn encode_into(&self, encoder: &mut wgpu::CommandEncoder) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("q4gpu"),
            timestamp_writes: None,
        });
        self.encode(&mut pass);
    }
}
