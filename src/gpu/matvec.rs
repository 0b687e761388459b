//! Matrix-vector kernels: y = W·x (and y += W·x, and the fused
//! y = W·(rmsnorm(x) ⊙ gain)) for W in Q4_0, Q4_1, Q8_0, F16 or F32, read in
//! its GGUF layout with aligned 16-byte loads. Pipelines are built once in
//! [`MatvecKernels::new`]; [`MatvecKernels::bind`] prepares one operation
//! (uniforms + bind group) once; [`MatvecOp::encode`] only records a dispatch.

use std::collections::HashMap;
use std::sync::Mutex;

use super::shader::{MatvecParams, DENSE_ITEMS};
use super::{Gpu, GpuError};
use crate::gguf::GgmlType;

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
pub const FORMATS: [GgmlType; 5] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q8_0,
    GgmlType::F16,
    GgmlType::F32,
];

/// Kernel name of the matvec for `ty`, fused with RMSNorm or not.
pub fn kernel_name(ty: GgmlType, norm: bool) -> Option<String> {
    if !FORMATS.contains(&ty) {
        return None;
    }
    Some(format!(
        "{}matvec_{}",
        if norm { "rmsnorm_" } else { "" },
        ty.name()
    ))
}

/// A weight matrix uploaded once, in its GGUF byte layout (row-major, rows of
/// `cols` elements), padded to whole 16-byte words.
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
        if cols % 32 != 0 || cols == 0 || rows == 0 {
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
        if need.div_ceil(16) * 16 > limit {
            return Err(GpuError::BindingTooLarge {
                what: label.to_string(),
                needed: need,
                limit,
            });
        }
        let rows32 = u32::try_from(rows)
            .map_err(|_| GpuError::BadArgument(format!("{label}: too many rows")))?;
        let cols32 = u32::try_from(cols)
            .map_err(|_| GpuError::BadArgument(format!("{label}: too many columns")))?;
        Ok(GpuMatrix {
            buffer: gpu.upload(label, bytes, wgpu::BufferUsages::empty())?,
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
    /// is staged for chunks 0 ..= step[0]/64 (`step`: the decode step's
    /// position buffer). Saves the separate merge dispatch.
    AttnMerge {
        step: &'a wgpu::Buffer,
        head_dim: u32,
    },
}

impl MatvecInput<'_> {
    fn variant(&self) -> Variant {
        match self {
            Self::Plain => Variant::Plain,
            Self::RmsNorm { .. } => Variant::Norm,
            Self::SwiGlu => Variant::SwiGlu,
            Self::AttnMerge { .. } => Variant::Attn,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Variant {
    Plain,
    Norm,
    SwiGlu,
    Attn,
}

/// How a matvec pipeline spreads the work (kernel flags ROWS4, XSH).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Shape {
    /// 8 rows × 32 lanes, each lane reading its blocks of x from memory.
    Lanes,
    /// 8 rows × 32 lanes (× rows per thread), x staged in workgroup memory
    /// 64 blocks at a time (XSH), weights fetched as `Fetch` says.
    Staged(Fetch),
    /// 2 × 4 rows × 128 lanes, x loaded once per 4 rows (ROWS4; not with NORM).
    Rows4,
    /// Like `Staged`, with x quantized to int8 per 32-element block and block
    /// dots taken with 4-way int8 dot products (Q8X; Q4_0, Q4_1, Q8_0 only),
    /// with `true` in two levels (XQ2: codes of d, then of the remainder at d/254).
    StagedQ8(Fetch, bool),
}

/// When a staged matvec loads its weights, and for how many rows per thread
/// (formats with `raw_load` only, except `After`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Fetch {
    /// After each chunk of x is staged, one row per thread.
    After,
    /// Rows of ≤ 32 blocks: each lane's block of its 1, 2 or 4 rows loaded
    /// before x is staged (PF; RPT2, RPT4).
    Before(u8),
    /// Rows of ≤ 64 blocks: each lane's two blocks loaded before x is staged
    /// (PFC).
    BeforeChunk,
    /// After each chunk is staged, for 2 or 4 rows per thread, every row's
    /// words of a block loaded before any is used (CR2, CR4).
    AfterRows(u8),
    /// Rows of ≤ 64 blocks: the workgroup's rows as one slab of blocks,
    /// thread t taking blocks t, t + 256, ..., their dots added per row from
    /// workgroup memory (DENSE; rows per workgroup in the uniforms).
    Dense,
}

impl Fetch {
    fn rows_per_thread(self) -> u32 {
        match self {
            Fetch::Before(n) | Fetch::AfterRows(n) => n as u32,
            _ => 1,
        }
    }

    fn flags(self) -> &'static [&'static str] {
        match self {
            Fetch::After => &[],
            Fetch::Before(1) => &["PF"],
            Fetch::Before(2) => &["PF", "RPT2"],
            Fetch::Before(_) => &["PF", "RPT4"],
            Fetch::BeforeChunk => &["PFC"],
            Fetch::AfterRows(2) => &["CR2"],
            Fetch::AfterRows(_) => &["CR4"],
            Fetch::Dense => &["DENSE"],
        }
    }
}

impl Shape {
    /// Rows each workgroup computes (`dense_rows`: those of a DENSE one).
    fn rows_per_workgroup(self, dense_rows: u32) -> u32 {
        match self {
            Shape::Staged(Fetch::Dense) | Shape::StagedQ8(Fetch::Dense, _) => dense_rows,
            Shape::Staged(f) | Shape::StagedQ8(f, _) => ROWS_PER_WORKGROUP * f.rows_per_thread(),
            _ => ROWS_PER_WORKGROUP,
        }
    }
}

/// What a matvec does with its input vector before the dot products (Q4_0,
/// Q4_1 and Q8_0 weights; F16/F32 weights always take f32 inputs).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Inputs {
    /// f32 throughout: relative error ~1e-6.
    F32,
    /// Quantized to int8 per 32-element block, 4-way int8 dot products
    /// (kernel flag Q8X), as llama.cpp's GPU backends do: fewest instructions
    /// per weight, relative error ~1e-2.
    Int8,
    /// Int8 in two levels (Q8X + XQ2): codes at d = max|x|/127, then the
    /// remainder's codes at d/254, about 15 bits; twice the int8 dot
    /// products, relative error ~1e-5.
    Int8x2,
    /// `Int8x2` where it is faster than f32 (matrices of at least
    /// [`AUTO_INT8X2_MIN_COLS`] columns or [`AUTO_INT8X2_MIN_ROWS`] rows),
    /// f32 on smaller ones, whose chained latency it would lengthen, and f32
    /// everywhere on Metal: Apple GPUs have no 4-way int8 dot instruction.
    /// Elsewhere it assumes one (NVIDIA since Pascal, AMD since Vega, Intel
    /// Xe); where the driver lacks `VK_KHR_shader_integer_dot_product`, naga
    /// emulates it and `F32` may be faster.
    #[default]
    Auto,
}

/// `Inputs::Auto` takes two-level int8 inputs from this many columns: on an
/// H100, chained, Q4_0 3072×2048 6.3 → 5.6 µs, 4096×4096 10.8 → 9.0, while
/// SmolLM2's 576-column matrices get 0.1–0.2 µs slower.
pub const AUTO_INT8X2_MIN_COLS: u32 = 2048;
/// ... or this many rows (LM heads: Q4_0 49152×576 25.2 → 17.7 µs chained).
pub const AUTO_INT8X2_MIN_ROWS: u32 = 16384;

/// Formats with an int8-dot (Q8X) matvec.
pub const Q8_ACT_FORMATS: [GgmlType; 3] = [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0];

/// Q8_0 matvecs take CR2/CR4 only from this many times the rows Q4 formats
/// do: reading twice the bytes per block they are closer to memory-bound, so
/// the fewer workgroups cost more than the shared x reads save (H100, chained,
/// 4 rows per thread: 16384×2048 21.5 → 22.6 µs, int8 inputs 16.8 → 20.0;
/// 14336×4096 int8 27.0 → 34.2). At Llama-1B's 128256-row LM head it is
/// within 1–4 % either way (f32 139.9 → 139.7 µs, int8 103.6 → 107.5).
const Q8_0_CHUNK_ROWS_FACTOR: u32 = 8;

/// Workgroup memory a DENSE kernel may use: its block dots (DENSE_ITEMS
/// f32) plus at most 8 KiB of staged x, 4 KiB of reduction scratch and
/// small arrays (tests/msl_interface.rs checks every DENSE variant). Above
/// WebGPU's default 16 KiB, within Apple GPUs' 32 KiB.
pub const DENSE_WORKGROUP_BYTES: u32 = DENSE_ITEMS * 4 + 13 * 1024;

/// Most rows a DENSE workgroup takes: one of its 256 threads adds each row.
pub const DENSE_MAX_ROWS: u32 = 256;

/// Compiled matvec pipelines for every format and input variant, and their
/// bind group layouts.
pub struct MatvecKernels {
    pub layout: wgpu::BindGroupLayout,
    pub layout_norm: wgpu::BindGroupLayout,
    /// (format, input variant, shape) → pipeline, compiled on first use.
    pipelines: Mutex<HashMap<(GgmlType, Variant, Shape), wgpu::ComputePipeline>>,
    rows4_min_blocks: u32,
    xsh_min_rows: u32,
    inputs: Inputs,
    /// `Inputs::Auto` may pick int8 inputs (not on Metal).
    auto_int8: bool,
    prefetch: bool,
    /// (rows per thread, from how many rows) for PF matvecs.
    rpt: (u8, u32),
    /// (rows per thread, from how many rows) for staged matvecs over rows of
    /// more than 32 blocks (CR2, CR4).
    chunk_rpt: (u8, u32),
    /// (rows per workgroup, 0 for none; from how many rows) for DENSE matvecs.
    dense: (u32, u32),
    /// Longest rows, in blocks, DENSE matvecs take.
    dense_max_blocks: u32,
    /// The device's workgroup memory holds a DENSE kernel's.
    dense_fits: bool,
}

fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

fn uniform_entry(binding: u32) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

/// Layout of a kernel taking one uniform (binding 0) and then storage buffers
/// (bindings 1..), `true` meaning read-only.
pub fn layout(gpu: &Gpu, label: &str, storage: &[bool]) -> wgpu::BindGroupLayout {
    let mut entries = vec![uniform_entry(0)];
    for (i, &ro) in storage.iter().enumerate() {
        entries.push(storage_entry(i as u32 + 1, ro));
    }
    gpu.device
        .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(label),
            entries: &entries,
        })
}

impl MatvecKernels {
    /// Prepares the matvec kernels for this device. Pipelines are compiled on
    /// first use (by [`MatvecKernels::bind`]) and kept: a model compiles only
    /// the format, input and shape combinations it has.
    pub fn new(gpu: &Gpu) -> Result<MatvecKernels, GpuError> {
        let t = &gpu.tuning.matvec;
        Ok(MatvecKernels {
            layout: layout(gpu, "matvec", &[true, true, false]),
            layout_norm: layout(gpu, "rmsnorm_matvec", &[true, true, false, true]),
            pipelines: Mutex::new(HashMap::new()),
            rows4_min_blocks: t.wide_min_blocks,
            xsh_min_rows: t.staged_min_rows,
            inputs: Inputs::Auto,
            auto_int8: t.auto_int8,
            prefetch: t.early_fetch,
            rpt: (t.early_rpt as u8, t.early_rpt_min_rows),
            chunk_rpt: (t.late_rpt as u8, t.late_rpt_min_rows),
            dense: (t.dense_rows, t.dense_min_rows),
            dense_max_blocks: t.dense_max_blocks.min(64),
            dense_fits: gpu.device.limits().max_compute_workgroup_storage_size
                >= DENSE_WORKGROUP_BYTES,
        })
    }

    /// Whether the device gives a workgroup the memory DENSE kernels need
    /// ([`DENSE_WORKGROUP_BYTES`]); without it tall matrices keep PF.
    pub fn dense_available(&self) -> bool {
        self.dense_fits
    }

    /// The pipeline for (format, input variant, shape), compiled on first use.
    fn pipeline(
        &self,
        gpu: &Gpu,
        ty: GgmlType,
        v: Variant,
        shape: Shape,
    ) -> Result<wgpu::ComputePipeline, GpuError> {
        let key = (ty, v, shape);
        let mut cache = self
            .pipelines
            .lock()
            .map_err(|_| GpuError::BadArgument("matvec pipeline cache lock poisoned".into()))?;
        if let Some(p) = cache.get(&key) {
            return Ok(p.clone());
        }
        let norm = v == Variant::Norm;
        let name = kernel_name(ty, norm)
            .ok_or_else(|| GpuError::Unsupported(format!("no matvec kernel for {ty}")))?;
        let mut flags = Vec::new();
        if v == Variant::SwiGlu {
            flags.push("SWIGLU");
        }
        if v == Variant::Attn {
            flags.push("ATTN");
        }
        match shape {
            Shape::Lanes => {}
            Shape::Staged(_) => flags.push("XSH"),
            Shape::Rows4 => flags.push("ROWS4"),
            Shape::StagedQ8(_, two) => {
                flags.push("Q8X");
                if two {
                    flags.push("XQ2");
                }
            }
        }
        if let Shape::Staged(f) | Shape::StagedQ8(f, _) = shape {
            flags.extend(f.flags());
        }
        let l = if norm || v == Variant::Attn {
            &self.layout_norm
        } else {
            &self.layout
        };
        let p = gpu.pipeline(&name, &flags, &[l], (256, 1, 1))?;
        cache.insert(key, p.clone());
        Ok(p)
    }

    /// Overrides when the ROWS4 (blocks per row ≥ `rows4_min_blocks`) and XSH
    /// (rows ≥ `xsh_min_rows`) kernels are chosen, so tests and benchmarks
    /// can reach every kernel shape; `u32::MAX` turns one off.
    pub fn with_thresholds(mut self, rows4_min_blocks: u32, xsh_min_rows: u32) -> Self {
        self.rows4_min_blocks = rows4_min_blocks;
        self.xsh_min_rows = xsh_min_rows;
        self
    }

    /// Int8 inputs everywhere (`true`, the Q8X kernels) or f32 everywhere.
    pub fn with_q8_activations(self, on: bool) -> Self {
        self.with_inputs(if on { Inputs::Int8 } else { Inputs::F32 })
    }

    /// What matvecs do with their inputs (default from `Q4GPU_Q8_ACT`).
    pub fn with_inputs(mut self, inputs: Inputs) -> Self {
        self.inputs = inputs;
        self
    }

    /// Turns the PF kernels (weights fetched before x is staged, for rows of
    /// ≤ 32 blocks) on or off, with `rpt` (1, 2, 4) rows per thread for
    /// matrices of at least `rpt_min_rows` rows.
    pub fn with_prefetch(mut self, on: bool, rpt: u8, rpt_min_rows: u32) -> Self {
        self.prefetch = on;
        self.rpt = (rpt, rpt_min_rows);
        self
    }

    /// Gives staged matvecs over rows of more than 32 blocks `rpt` (1, 2, 4)
    /// rows per thread from `min_rows` rows (the CR2, CR4 kernels).
    pub fn with_chunk_rows(mut self, rpt: u8, min_rows: u32) -> Self {
        self.chunk_rpt = (rpt, min_rows);
        self
    }

    /// Gives matvecs over rows of ≤ 32 blocks with at least `min_rows` rows
    /// the DENSE kernels, `rows` rows per workgroup (0: never; capped at
    /// [`DENSE_MAX_ROWS`] and so that rows × blocks ≤ [`DENSE_ITEMS`]).
    pub fn with_dense(mut self, rows: u32, min_rows: u32) -> Self {
        self.dense = (rows, min_rows);
        self
    }

    /// Rows per workgroup of a DENSE matvec over rows of `blocks` blocks: at
    /// most [`DENSE_MAX_ROWS`] (one thread adds each row) and `DENSE_ITEMS`
    /// blocks.
    fn dense_group_rows(&self, blocks: u32) -> u32 {
        self.dense
            .0
            .min(DENSE_MAX_ROWS)
            .min(DENSE_ITEMS / blocks.max(1))
            .max(1)
    }

    /// What a matvec over a `rows`×`cols` matrix of `ty` does with its input:
    /// F32, Int8 or Int8x2 (`Inputs::Auto` resolved).
    pub fn inputs_for(&self, ty: GgmlType, rows: u32, cols: u32) -> Inputs {
        if !Q8_ACT_FORMATS.contains(&ty) {
            return Inputs::F32;
        }
        match self.inputs {
            Inputs::Auto
                if self.auto_int8
                    && (cols >= AUTO_INT8X2_MIN_COLS || rows >= AUTO_INT8X2_MIN_ROWS) =>
            {
                Inputs::Int8x2
            }
            Inputs::Auto => Inputs::F32,
            i => i,
        }
    }

    /// Whether a plain or RMSNorm-fused matvec over a `rows`×`cols` matrix
    /// of `ty` runs on a DENSE kernel.
    pub fn uses_dense(&self, ty: GgmlType, rows: u32, cols: u32) -> bool {
        self.dense_for(ty, rows, cols, Variant::Plain)
    }

    /// DENSE: formats with raw_load (and PF on), rows of ≤ 32 blocks (the
    /// knob allows 64), enough rows and workgroup memory; not with the
    /// attention merge, which the model runs on few rows.
    fn dense_for(&self, ty: GgmlType, rows: u32, cols: u32, v: Variant) -> bool {
        self.prefetch
            && Q8_ACT_FORMATS.contains(&ty)
            && self.dense_fits
            && cols / 32 <= self.dense_max_blocks
            && self.dense.0 > 0
            && rows >= self.dense.1
            && v != Variant::Attn
    }

    /// The kernel shape for matrix `w` (with or without fused RMSNorm).
    fn shape(&self, w: &GpuMatrix, v: Variant) -> Shape {
        let norm = v == Variant::Norm;
        let blocks = w.cols / 32;
        let has_raw = Q8_ACT_FORMATS.contains(&w.ty);
        let raw = self.prefetch && has_raw;
        let chunk_min_rows = if w.ty == GgmlType::Q8_0 {
            self.chunk_rpt.1.saturating_mul(Q8_0_CHUNK_ROWS_FACTOR)
        } else {
            self.chunk_rpt.1
        };
        let chunk_rows = has_raw && w.rows >= chunk_min_rows && matches!(self.chunk_rpt.0, 2 | 4);
        let fetch = if self.dense_for(w.ty, w.rows, w.cols, v) {
            Fetch::Dense
        } else if blocks > 32 && chunk_rows {
            Fetch::AfterRows(self.chunk_rpt.0)
        } else if !raw || blocks > 64 {
            Fetch::After
        } else if blocks > 32 {
            // One chunk of x, two blocks per lane (PFC), only for matrices too
            // small to fill the GPU: on large ones the prefetched words cost
            // occupancy (H100, Q4_0 int8 4096×4096: 77 → 73 % of read BW).
            if w.rows < 1024 {
                Fetch::BeforeChunk
            } else {
                Fetch::After
            }
        } else if w.rows >= self.rpt.1 && matches!(self.rpt.0, 2 | 4) {
            Fetch::Before(self.rpt.0)
        } else {
            Fetch::Before(1)
        };
        let inputs = self.inputs_for(w.ty, w.rows, w.cols);
        if inputs != Inputs::F32 {
            Shape::StagedQ8(fetch, inputs == Inputs::Int8x2)
        } else if v == Variant::Attn {
            // The merge runs once per workgroup only when x is staged.
            Shape::Staged(fetch)
        } else if !norm && blocks >= self.rows4_min_blocks {
            Shape::Rows4
        } else if w.rows >= self.xsh_min_rows {
            Shape::Staged(fetch)
        } else {
            Shape::Lanes
        }
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
        let norm = match input {
            MatvecInput::RmsNorm { gain, eps } => Some((gain, eps)),
            _ => None,
        };
        let x_len = match input {
            MatvecInput::SwiGlu => 2 * w.cols,
            MatvecInput::AttnMerge { step, head_dim } => {
                if !head_dim.is_power_of_two()
                    || head_dim < 4
                    || w.cols % head_dim != 0
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
                // kernel reads no more chunks than the buffer holds
                // (max_chunks).
                w.cols + 4 * (w.cols / head_dim)
            }
            _ => w.cols,
        };
        if x_offset % 4 != 0 {
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
        if let Some((g, _)) = norm {
            if g.size() < w.cols as u64 * 4 {
                return Err(GpuError::BadArgument(format!(
                    "norm gain has {} bytes, needs {}",
                    g.size(),
                    w.cols * 4
                )));
            }
        }
        let shape = self.shape(w, input.variant());
        let pipeline = self.pipeline(gpu, w.ty, input.variant(), shape)?;
        let params = MatvecParams {
            rows: w.rows,
            cols: w.cols,
            blocks: w.cols / 32,
            accumulate: accumulate as u32,
            x_offset: x_offset / 4,
            y_offset,
            eps: norm.map_or(0.0, |n| n.1),
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
            group_rows: match shape {
                Shape::Staged(Fetch::Dense) | Shape::StagedQ8(Fetch::Dense, _) => {
                    self.dense_group_rows(w.cols / 32)
                }
                _ => 0,
            },
            pad1: 0,
            pad2: 0,
        };
        let ubuf = gpu.uniform("matvec params", &params)?;
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
                binding: binding::Y,
                resource: y.as_entire_binding(),
            },
        ];
        // Binding 4: the RMSNorm gain or the attention step's position.
        let fourth = match input {
            MatvecInput::RmsNorm { gain, .. } => Some(gain),
            MatvecInput::AttnMerge { step, .. } => Some(step),
            _ => None,
        };
        if let Some(b) = fourth {
            entries.push(wgpu::BindGroupEntry {
                binding: binding::GAIN,
                resource: b.as_entire_binding(),
            });
        }
        let layout = if fourth.is_some() {
            &self.layout_norm
        } else {
            &self.layout
        };
        let bind_group = gpu.scoped("binding matvec", || {
            gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("matvec"),
                layout,
                entries: &entries,
            })
        })?;
        let groups = w.rows.div_ceil(shape.rows_per_workgroup(params.group_rows));
        Ok(Dispatch {
            pipeline,
            bind_group,
            _uniform: ubuf,
            workgroups: grid(groups),
            weight_bytes: w.weight_bytes(),
        })
    }
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
        Ok(Dispatch {
            pipeline: pipeline.clone(),
            bind_group,
            _uniform: ubuf,
            workgroups: grid(workgroups),
            weight_bytes: 0,
        })
    }

    /// Records the dispatch into a compute pass.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.workgroups.0, self.workgroups.1, 1);
    }

    /// Records the dispatch with an explicit grid (for kernels whose
    /// workgroup count depends on per-step values the host knows).
    pub fn encode_grid(&self, pass: &mut wgpu::ComputePass<'_>, x: u32, y: u32) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(x, y, 1);
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
