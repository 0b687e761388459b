//! The edge where q4gpu meets the environment: the only module that reads
//! `Q4GPU_*` variables. The library itself never calls these constructors;
//! examples and benchmarks do, and tests take only the device variables.
//! A bad value is a one-line error naming the variable.

use crate::error::{Error, Result};
use crate::gpu::tuning::{Tuning, MAX_STEPS_PER_SUBMIT};
use crate::gpu::{parse_backend, GpuError, GpuOptions, Inputs};
use crate::model::ModelOptions;

/// `var` as 0 or 1 (unset or empty: 0).
fn env_flag(var: &'static str) -> Result<bool, GpuError> {
    match std::env::var(var).as_deref() {
        Err(_) | Ok("") | Ok("0") => Ok(false),
        Ok("1") => Ok(true),
        Ok(v) => Err(bad(var, v, "0 or 1")),
    }
}

fn bad(var: &'static str, value: &str, expected: &str) -> GpuError {
    GpuError::BadEnv {
        var,
        value: value.to_string(),
        expected: expected.into(),
    }
}

impl GpuOptions {
    /// Defaults with the device variables applied: `Q4GPU_BACKEND` (auto,
    /// vulkan, metal, dx12, gl), `Q4GPU_FORCE_WGSL`, `Q4GPU_NO_SUBGROUPS`,
    /// `Q4GPU_NO_MATRIX_UNITS` and `Q4GPU_CHECKED` (0 or 1). The tuning variables are read by
    /// [`Tuning::with_env`]; kernel replacement only by the developer tools
    /// that ask for it ([`GpuOptions::with_shader_dir_from_env`]).
    pub fn from_env() -> Result<Self, GpuError> {
        let mut o = Self {
            force_wgsl: env_flag("Q4GPU_FORCE_WGSL")?,
            disable_subgroups: env_flag("Q4GPU_NO_SUBGROUPS")?,
            matrix_units: !env_flag("Q4GPU_NO_MATRIX_UNITS")?,
            checked_shaders: env_flag("Q4GPU_CHECKED")?,
            ..Self::default()
        };
        if let Ok(b) = std::env::var("Q4GPU_BACKEND") {
            o.backends = parse_backend(&b)
                .ok_or_else(|| bad("Q4GPU_BACKEND", &b, "auto, vulkan, metal, dx12 or gl"))?;
        }
        Ok(o)
    }

    /// `self` with `shader_dir` from `Q4GPU_SHADER_DIR`, for kernel
    /// development in the benchmarks (measuring a kernel edit on a machine
    /// without a Rust toolchain). Applications never call this: their
    /// kernels are the embedded ones unless they set `shader_dir` themselves.
    pub fn with_shader_dir_from_env(mut self) -> Self {
        if let Some(dir) = std::env::var_os("Q4GPU_SHADER_DIR") {
            self.shader_dir = Some(dir.into());
        }
        self
    }
}

impl Tuning {
    /// `self` with the `Q4GPU_*` tuning variables that are set applied (see
    /// [`ENV_KNOBS`]).
    pub fn with_env(self) -> Result<Tuning, GpuError> {
        self.with_vars(|k| std::env::var(k).ok())
    }

    /// `self` with the tuning variables `get` returns applied (see
    /// [`ENV_KNOBS`]; [`Tuning::with_env`] reads them from the environment,
    /// tests pass a map); a value out of range or unparsable is an error
    /// naming the variable.
    pub fn with_vars(mut self, get: impl Fn(&str) -> Option<String>) -> Result<Tuning, GpuError> {
        for knob in ENV_KNOBS {
            if let Some(v) = get(knob.var) {
                (knob.set)(&mut self, knob.var, v.trim())?;
            }
        }
        Ok(self)
    }
}

/// One environment variable [`Tuning::with_env`] reads.
pub struct EnvKnob {
    pub var: &'static str,
    pub help: &'static str,
    set: fn(&mut Tuning, &'static str, &str) -> Result<(), GpuError>,
}

fn parse_in(var: &'static str, v: &str, lo: u64, hi: u64) -> Result<u64, GpuError> {
    v.parse::<u64>()
        .ok()
        .filter(|n| (lo..=hi).contains(n))
        .ok_or_else(|| GpuError::BadEnv {
            var,
            value: v.to_string(),
            expected: format!("an integer in {lo}..={hi}"),
        })
}

fn parse_rpt(var: &'static str, v: &str) -> Result<u32, GpuError> {
    match v {
        "1" | "2" | "4" => Ok(v.parse().unwrap_or(1)),
        _ => Err(GpuError::BadEnv {
            var,
            value: v.to_string(),
            expected: "1, 2 or 4".into(),
        }),
    }
}

fn parse_bool(var: &'static str, v: &str) -> Result<bool, GpuError> {
    match v {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(GpuError::BadEnv {
            var,
            value: v.to_string(),
            expected: "0 or 1".into(),
        }),
    }
}

const U32: u64 = u32::MAX as u64;

macro_rules! knob {
    ($var:literal, $help:literal, |$t:ident, $name:ident, $v:ident| $body:expr) => {
        EnvKnob {
            var: $var,
            help: $help,
            set: |$t, $name, $v| {
                $body;
                Ok(())
            },
        }
    };
}

/// The tuning variables, in one table (README lists the same).
pub const ENV_KNOBS: &[EnvKnob] = &[
    knob!(
        "Q4GPU_STAGED_MIN_ROWS",
        "rows from which x is staged (0..)",
        |t, n, v| { t.matvec.staged_min_rows = parse_in(n, v, 0, U32)? as u32 }
    ),
    knob!(
        "Q4GPU_WIDE_MIN_BLOCKS",
        "blocks per row from which f32-input matvecs are `wide`",
        |t, n, v| { t.matvec.wide_min_blocks = parse_in(n, v, 1, U32)? as u32 }
    ),
    knob!(
        "Q4GPU_EARLY_FETCH",
        "0|1: weights of short rows loaded before x is staged",
        |t, n, v| { t.matvec.early_fetch = parse_bool(n, v)? }
    ),
    knob!(
        "Q4GPU_EARLY2_MAX_ROWS",
        "rows below which rows of 33..64 blocks fetch early",
        |t, n, v| { t.matvec.early2_max_rows = parse_in(n, v, 0, U32)? as u32 }
    ),
    knob!(
        "Q4GPU_EARLY_RPT",
        "1|2|4 rows per thread of tall `early` matvecs",
        |t, n, v| { t.matvec.early_rpt = parse_rpt(n, v)? }
    ),
    knob!(
        "Q4GPU_EARLY_RPT_MIN_ROWS",
        "rows from which `early` takes EARLY_RPT",
        |t, n, v| { t.matvec.early_rpt_min_rows = parse_in(n, v, 0, U32)? as u32 }
    ),
    knob!(
        "Q4GPU_LATE_RPT",
        "1|2|4 rows per thread of tall `late` matvecs",
        |t, n, v| { t.matvec.late_rpt = parse_rpt(n, v)? }
    ),
    knob!(
        "Q4GPU_Q4_K_LATE_RPT",
        "1|2|4 rows per thread of Q4_K's tall `late` matvecs",
        |t, n, v| { t.matvec.q4_k_late_rpt = parse_rpt(n, v)? }
    ),
    knob!(
        "Q4GPU_Q6_K_LATE_RPT",
        "1|2|4 rows per thread of Q6_K's tall `late` matvecs",
        |t, n, v| { t.matvec.q6_k_late_rpt = parse_rpt(n, v)? }
    ),
    knob!(
        "Q4GPU_LATE_RPT_MIN_ROWS",
        "rows from which `late` takes LATE_RPT",
        |t, n, v| { t.matvec.late_rpt_min_rows = parse_in(n, v, 0, U32)? as u32 }
    ),
    knob!(
        "Q4GPU_DENSE_ROWS",
        "rows per `dense` workgroup (0: never dense)",
        |t, n, v| { t.matvec.dense_rows = parse_in(n, v, 0, 256)? as u32 }
    ),
    knob!(
        "Q4GPU_DENSE_MIN_ROWS",
        "rows from which matvecs are `dense`",
        |t, n, v| { t.matvec.dense_min_rows = parse_in(n, v, 0, U32)? as u32 }
    ),
    knob!(
        "Q4GPU_DENSE_MAX_BLOCKS",
        "longest rows, in blocks, `dense` takes (1..=64)",
        |t, n, v| { t.matvec.dense_max_blocks = parse_in(n, v, 1, 64)? as u32 }
    ),
    knob!(
        "Q4GPU_MATMUL_TARGET_WGS",
        "workgroups per token tile a prefill matmul aims for",
        |t, n, v| { t.matmul_target_workgroups = parse_in(n, v, 1, 1 << 20)? as u32 }
    ),
    knob!(
        "Q4GPU_PREFILL_TOKENS",
        "tokens per prefill chunk (1..=1024)",
        |t, n, v| { t.prefill_tokens = parse_in(n, v, 1, 1024)? as usize }
    ),
    knob!(
        "Q4GPU_RUN_AHEAD",
        "decode submissions in flight beyond the one read (1|2)",
        |t, n, v| { t.run_ahead = parse_in(n, v, 1, 2)? as usize }
    ),
    knob!(
        "Q4GPU_STEPS_PER_SUBMIT",
        "decode steps per command buffer (1..=8)",
        |t, n, v| { t.steps_per_submit = parse_in(n, v, 1, MAX_STEPS_PER_SUBMIT as u64)? as usize }
    ),
    knob!(
        "Q4GPU_ATTENTION_TILED_MIN_HEADS",
        "query heads from which prefill attention takes 32 queries per workgroup",
        |t, n, v| { t.attention_tiled_min_heads = parse_in(n, v, 0, U32)? as u32 }
    ),
    knob!(
        "Q4GPU_ATTENTION_COOP",
        "0|1: tiled prefill attention on matrix units where the device has them",
        |t, n, v| { t.attention_matrix_units = parse_bool(n, v)? }
    ),
    knob!(
        "Q4GPU_MATMUL_DIRECT",
        "0|1: one-segment matmuls write Y without a reduce pass",
        |t, n, v| { t.matmul_direct = parse_bool(n, v)? }
    ),
    knob!(
        "Q4GPU_ATTN_MERGE_MAX",
        "largest Wo (workgroups × columns) that merges attention chunks",
        |t, n, v| { t.attn_merge_max = parse_in(n, v, 0, U32)? as usize }
    ),
];

impl ModelOptions {
    /// Defaults, with `Q4GPU_Q8_ACT=0|1|2` setting `inputs` (f32, int8,
    /// two-level int8) and `Q4GPU_FUSE_ATTN_MERGE=0|1` forcing
    /// `fuse_attention_merge`.
    pub fn from_env() -> Result<Self> {
        let mut o = Self::default();
        if let Ok(v) = std::env::var("Q4GPU_Q8_ACT") {
            o.inputs = match v.trim() {
                "0" => Inputs::F32,
                "1" => Inputs::Int8,
                "2" => Inputs::Int8x2,
                _ => {
                    let e = bad(
                        "Q4GPU_Q8_ACT",
                        &v,
                        "0 (f32), 1 (int8) or 2 (two-level int8)",
                    );
                    return Err(Error::Gpu(e));
                }
            };
        }
        if let Ok(v) = std::env::var("Q4GPU_FUSE_ATTN_MERGE") {
            o.fuse_attention_merge = match v.trim() {
                "0" => Some(false),
                "1" => Some(true),
                _ => return Err(Error::Gpu(bad("Q4GPU_FUSE_ATTN_MERGE", &v, "0 or 1"))),
            };
        }
        Ok(o)
    }
}

/// The device a program at the edge (examples, benchmarks) runs on: the
/// device variables ([`GpuOptions::from_env`]), `backend` (a `--backend`
/// flag) over `Q4GPU_BACKEND` when given, kernels from `Q4GPU_SHADER_DIR`
/// when `shader_dir` (benchmarks only), and the tuning variables over the
/// adapter's defaults ([`Tuning::with_env`]).
pub fn gpu(backend: Option<&str>, shader_dir: bool) -> Result<crate::Gpu> {
    let mut opts = GpuOptions::from_env()?;
    if let Some(b) = backend {
        opts.backends = parse_backend(b).ok_or_else(|| {
            GpuError::BadArgument(format!(
                "unknown backend '{b}' (auto, vulkan, metal, dx12 or gl)"
            ))
        })?;
    }
    if shader_dir {
        opts = opts.with_shader_dir_from_env();
    }
    let mut gpu = crate::Gpu::new(&opts)?;
    gpu.tuning = gpu.tuning.clone().with_env()?;
    Ok(gpu)
}

/// A program's exit: success, or the error on one line (`error: what:
/// why`, every cause once) and status 1. For `main` at the edge.
pub fn exit_code<E: std::fmt::Display>(
    result: std::result::Result<(), E>,
) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
