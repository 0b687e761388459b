//! Tuning as data: every threshold that picks a kernel variant or sizes a
//! batch, in one struct with defaults per adapter class.
//!
//! The library never reads the environment on its own: [`Gpu::new`] takes
//! [`Tuning::for_adapter`] unless `GpuOptions::tuning` says otherwise. The
//! variables that override these fields, and their parsing, live at the
//! edge in `crate::env` (`Tuning::with_env`, `ENV_KNOBS`).
//!
//! Every default below was measured on an NVIDIA H100 (benches/RESULTS.md);
//! other classes start from those numbers and differ only where the
//! hardware does (Apple GPUs have no 4-way int8 dot instruction).
//!
//! [`Gpu::new`]: super::Gpu::new

/// Groups of adapters that share defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterClass {
    Nvidia,
    Amd,
    Intel,
    Apple,
    /// CPU implementations (lavapipe, SwiftShader, WARP).
    Software,
    Other,
}

impl AdapterClass {
    /// The class of an adapter, from its PCI vendor id, device type and backend.
    pub fn of(info: &wgpu::AdapterInfo) -> AdapterClass {
        if info.device_type == wgpu::DeviceType::Cpu {
            return AdapterClass::Software;
        }
        match info.vendor {
            0x10DE => AdapterClass::Nvidia,
            0x1002 | 0x1022 => AdapterClass::Amd,
            0x8086 => AdapterClass::Intel,
            0x106B => AdapterClass::Apple,
            _ if info.backend == wgpu::Backend::Metal => AdapterClass::Apple,
            _ => AdapterClass::Other,
        }
    }
}

/// Which decode-matvec kernel variant a matrix gets (see
/// [`crate::gpu::matvec`] for the families these thresholds choose between).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatvecTuning {
    /// Matrices with at least this many rows stage x in workgroup memory
    /// (the `staged` and `dense` families); smaller ones read it directly
    /// (`lanes`). Default 0: staging won on every shape measured.
    pub staged_min_rows: u32,
    /// Matvecs with f32 inputs, not fused with RMSNorm or the attention
    /// merge, over rows of at least this many blocks take the `wide` family
    /// (4 rows per thread over 128 lanes, x from memory). Default
    /// `u32::MAX` (off): on an H100 the staged kernels read Q4_0
    /// 14336×4096 1.2× faster (1,420 vs 1,164 GB/s).
    pub wide_min_blocks: u32,
    /// Staged kernels over short rows load their weights before staging x
    /// (fetch `early`: rows of ≤ 32 blocks; `early2`: ≤ 64 blocks, two per
    /// lane) so the fetch overlaps the staging. On an H100, chained Q4_0
    /// 576×576 3.93 → 3.76 µs.
    pub early_fetch: bool,
    /// `early2` only below this many rows: on large matrices the held words
    /// cost occupancy (Q4_0 int8 4096×4096 77 → 73 % of read bandwidth).
    pub early2_max_rows: u32,
    /// Rows per thread (1, 2 or 4) of `early` kernels over at least
    /// `early_rpt_min_rows` rows: x staged once per 8·rpt rows, more loads in
    /// flight (the LM head without `dense`: Q4_0 49152×576 int8 18.0 → 15.5 µs).
    pub early_rpt: u32,
    pub early_rpt_min_rows: u32,
    /// Rows per thread (1, 2 or 4) of `late` kernels (rows of > 32 blocks)
    /// over at least `late_rpt_min_rows` rows: each staged block of x read
    /// once for all of them (Llama-1B gate|up 18.7 → 17.1 µs, decode 885 →
    /// 989 tok/s; below ~8192 rows the fewer workgroups cost more).
    pub late_rpt: u32,
    pub late_rpt_min_rows: u32,
    /// Q8_0 takes `late_rpt` only from this many times `late_rpt_min_rows`:
    /// reading 34 bytes per block it is closer to memory-bound (16384×2048
    /// 21.5 → 22.6 µs with 4 rows per thread).
    pub q8_0_late_rpt_factor: u32,
    /// Rows per thread of Q6_K's `late` kernels (1, 2 or 4), in place of
    /// `late_rpt`. In GGUF's layout a group took eight words, and one row
    /// per thread won (H100, 14336×4096 int8x2, 4 → 1: 28 → 47 % of read
    /// bandwidth). In the GPU layout (four words), H100, 1 → 2 rows: the
    /// 128256×2048 LM head (the Q6_K matrix of ≥ 8192 rows in llama.cpp's
    /// mixes) int8x2 111 → 103 µs chained, f32 147 → 145, int8 91.5 → 92.6;
    /// 14336×4096 int8x2 72 → 77 % of read bandwidth at equal chained time
    /// (27.2 µs), but f32 34.6 → 36.1 µs and int8 23.7 → 26.7. 4 rows lose.
    pub q6_k_late_rpt: u32,
    /// The same for Q4_K: its two-level int8 dots are compute-bound, and 2
    /// rows per thread beat 4 on chained time (H100, int8x2: 14336×4096
    /// 23.5 → 21.3 µs, the 128256×2048 LM head 93.2 → 83.9 µs). With one
    /// int→float conversion per block the LM head prefers 4 (80.6 → 75.0
    /// µs) but 14336×4096 still 2 (21.0 against 23.0 µs).
    pub q4_k_late_rpt: u32,
    /// Rows per workgroup of the `dense` family (0: never), capped at
    /// `matvec::DENSE_MAX_ROWS` and `DENSE_ITEMS / blocks`.
    pub dense_rows: u32,
    /// `dense` from this many rows (of ≤ `dense_max_blocks` blocks): the LM
    /// head. Q4_0 49152×576 two-level int8 16.3 → 10.2 µs; on small
    /// matrices it loses (576×576 3.2 → 3.6 µs).
    pub dense_min_rows: u32,
    /// Longest rows, in blocks (≤ 64), `dense` takes. Llama-1B's 64-block
    /// LM head lost with it (68.8 → 86.5 µs).
    pub dense_max_blocks: u32,
    /// `Inputs::Auto` may choose two-level int8 inputs at all.
    pub auto_int8: bool,
    /// ... on matrices of at least this many columns (H100, chained, Q4_0
    /// 4096×4096 10.8 → 9.0 µs; 576-column ones get 0.1–0.2 µs slower)
    pub auto_int8_min_cols: u32,
    /// ... or rows (LM heads: Q4_0 49152×576 25.2 → 17.7 µs).
    pub auto_int8_min_rows: u32,
}

impl Default for MatvecTuning {
    fn default() -> Self {
        MatvecTuning {
            staged_min_rows: 0,
            wide_min_blocks: u32::MAX,
            early_fetch: true,
            early2_max_rows: 1024,
            early_rpt: 4,
            early_rpt_min_rows: 16384,
            late_rpt: 4,
            late_rpt_min_rows: 8192,
            q8_0_late_rpt_factor: 8,
            q6_k_late_rpt: 2,
            q4_k_late_rpt: 2,
            dense_rows: 256,
            dense_min_rows: 16384,
            dense_max_blocks: 32,
            auto_int8: true,
            auto_int8_min_cols: 2048,
            auto_int8_min_rows: 16384,
        }
    }
}

/// The most decode steps one submission holds ([`Tuning::steps_per_submit`]).
pub const MAX_STEPS_PER_SUBMIT: usize = 8;

/// Every tuning choice of the library.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tuning {
    pub matvec: MatvecTuning,
    /// Row tiles × K segments a prefill matmul's K split aims for per
    /// 64-token tile. H200 sweep, 512-token prompt (f32 products): SmolLM2
    /// 44.4k tok/s at 64, 44.1k at 128, 39.2k at 256. H100, matrix units,
    /// 64 → 32 (3d02ddd, one run): SmolLM2 Q4_0 65.7k → 73.4k, Q4_K_M 58.8k
    /// → 64.0k; Llama-1B Q4_0 26.3k → 27.6k (every matrix then one segment,
    /// written without a reduce pass), Q4_K_M 24.1k → 24.3k.
    pub matmul_target_workgroups: u32,
    /// Tokens one prefill chunk holds (1..=1024): 512 prefill SmolLM2 at
    /// 40.7k tok/s against 21.4k with 64 on an H100.
    pub prefill_tokens: usize,
    /// Decode submissions (of `steps_per_submit` steps) kept in flight
    /// beyond the one whose token is read (1 or 2).
    pub run_ahead: usize,
    /// Decode steps recorded into one command buffer and submitted together
    /// (1..=[`MAX_STEPS_PER_SUBMIT`]), to amortize a cost per submission.
    /// On an H100 it gained nothing (SmolLM2 1,254 / 1,250 / 1,228 tok/s at
    /// 1 / 4 / 8: the GPU was already 87–91 % busy with the host a step
    /// ahead), so the default is 1. Ids arrive a submission at a time, and
    /// an early stop discards what is in flight: up to (run_ahead + 1) ×
    /// this − 1 steps.
    pub steps_per_submit: usize,
    /// Largest output projection, in workgroups × columns, that merges the
    /// attention chunks while staging its input instead of in a separate
    /// dispatch (SmolLM2's 72 × 576: decode at 1024 positions 1,008 → 1,110
    /// tok/s; Llama-1B's 256 × 2048 went 844 → 790).
    pub attn_merge_max: usize,
    /// Prefill attention over tiles of 32 query tokens (attention_tiled: K
    /// and V staged once per tile; head_dim ≤ 128) for models with at least
    /// this many query heads, one workgroup per token (attention_prefill)
    /// below. H100, 512-token prompt, attention of all layers: Llama-1B
    /// (32 heads) 3.19 → 2.67 ms tiled; SmolLM2 (9 heads, 144 workgroups
    /// for 132 SMs) 2.43 → 3.20 ms, so 16.
    pub attention_tiled_min_heads: u32,
    /// Where prefill attention is tiled and the device has matrix units
    /// ([`super::Gpu::matrix_units`] and
    /// [`super::prefill::ATTENTION_COOP_WORKGROUP_BYTES`] of workgroup
    /// memory), take attention_tiled's COOP variant (products on
    /// cooperative matrices, 64 keys a step; one the device fails to build
    /// is noted and the f32 variant taken). Off: it agrees with the f32
    /// variant on the CPU executor, but on an H100 (driver 580) the
    /// load-time self-check found its outputs off by 1.5 relative and
    /// replaced it (3d02ddd).
    pub attention_matrix_units: bool,
    /// Prefill products of one K segment whose inputs need no RMSNorm scale
    /// afterwards write Y themselves (matmul's DIRECT variants) instead of
    /// partials that a reduce pass copies: one dispatch and a partials'
    /// write and read fewer (Llama-1B's gate∣up: 32 MiB each way per layer
    /// at 512 tokens). Same sums in the same order. H100 (3d02ddd):
    /// Llama-1B gate∣up 8,065 → 7,533 µs, prefill 25.5k → 26.3k tok/s.
    pub matmul_direct: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            matvec: MatvecTuning::default(),
            matmul_target_workgroups: 32,
            prefill_tokens: 512,
            run_ahead: 1,
            steps_per_submit: 1,
            attn_merge_max: 131_072,
            attention_tiled_min_heads: 16,
            attention_matrix_units: false,
            matmul_direct: true,
        }
    }
}

impl Tuning {
    /// The defaults for `class`.
    pub fn for_class(class: AdapterClass) -> Tuning {
        let mut t = Tuning::default();
        if class == AdapterClass::Apple {
            t.matvec.auto_int8 = false;
        }
        t
    }

    /// The defaults for this adapter (and backend: Metal never auto-picks int8).
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Tuning {
        let mut t = Tuning::for_class(AdapterClass::of(info));
        if info.backend == wgpu::Backend::Metal {
            t.matvec.auto_int8 = false;
        }
        t
    }
}
