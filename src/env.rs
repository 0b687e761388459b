//! The edge where q4gpu meets the environment: the only module that reads
//! `Q4GPU_*` variables. The library itself never calls these constructors;
//! examples and benchmarks do, and tests take only the device variables.
//! A bad value is a one-line error naming the variable.

use crate::error::{Error, Result};
use crate::gpu::tuning::Tuning;
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
    /// vulkan, metal, dx12, gl), `Q4GPU_FORCE_WGSL`, `Q4GPU_NO_SUBGROUPS`
    /// and `Q4GPU_CHECKED` (0 or 1). The tuning variables are read by
    /// [`Tuning::with_env`]; kernel replacement only by the developer tools
    /// that ask for it ([`GpuOptions::with_shader_dir_from_env`]).
    pub fn from_env() -> Result<Self, GpuError> {
        let mut o = Self {
            force_wgsl: env_flag("Q4GPU_FORCE_WGSL")?,
            disable_subgroups: env_flag("Q4GPU_NO_SUBGROUPS")?,
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
    /// [`crate::gpu::tuning::ENV_KNOBS`]).
    pub fn with_env(self) -> Result<Tuning, GpuError> {
        self.with_vars(|k| std::env::var(k).ok())
    }
}

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
