//! Helpers shared by the integration tests: locating (and fetching once) the
//! real model, creating the test GPU.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The model as shipped (Q4_1 weights, Q8_0 tied embedding).
pub const MODEL_Q4_1: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The crate's own Q4_0 requantization of it (made by scripts/fetch_model.sh).
pub const MODEL_Q4_0: &str = "SmolLM2-135M-Instruct.Q4_0.gguf";
/// Its Q4_K_M requantization by the crate's llama-quantize mix (scripts/fetch_model.sh):
/// Q5_0, Q4_K, Q6_K and Q8_0 tensors.
pub const MODEL_Q4_K_M: &str = "SmolLM2-135M-Instruct.Q4_K_M.gguf";

/// Path of `models/<file>`, running `scripts/fetch_model.sh` once per machine
/// if it is absent. Fails (never skips) if it cannot be obtained.
pub fn model_path(file: &str) -> PathBuf {
    fetched(&["models", file], "fetch_model.sh")
}

/// `<crate>/<parts...>`, made by `scripts/<script>` if absent.
fn fetched(parts: &[&str], script: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = parts.iter().fold(root.clone(), |p, part| p.join(part));
    // One fetch at a time within this test binary (the scripts also lock
    // across processes); a poisoned lock only means another test failed.
    static FETCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    if !path.exists() {
        let script = root.join("scripts").join(script);
        let status = Command::new("bash")
            .arg(&script)
            .current_dir(&root)
            .status()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(status.success(), "{} failed: {status}", script.display());
        assert!(
            path.exists(),
            "{} still missing after fetch",
            path.display()
        );
    }
    path
}

/// The device choices from `Q4GPU_BACKEND` and the other device variables
/// (CI picks lavapipe this way); tuning stays at the adapter's defaults, so
/// no variable left in a shell changes which kernels the tests exercise.
pub fn device_options() -> q4gpu::gpu::GpuOptions {
    q4gpu::gpu::GpuOptions::from_env().unwrap_or_else(|e| panic!("{e}"))
}

/// The test GPU (on CI: lavapipe). No adapter is a test failure.
pub fn gpu() -> q4gpu::gpu::Gpu {
    q4gpu::gpu::Gpu::new(&device_options())
        .unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"))
}

/// The test GPU with the subgroup reduction on or off.
pub fn gpu_with(subgroups: bool) -> q4gpu::gpu::Gpu {
    let mut opts = device_options();
    opts.disable_subgroups = !subgroups;
    q4gpu::gpu::Gpu::new(&opts).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"))
}

/// Fails unless the test adapter has subgroups (set Q4GPU_ALLOW_NO_SUBGROUPS=1
/// to accept an adapter without them), so a subgroup-path test never passes
/// by silently running the workgroup-memory path.
pub fn require_subgroups() {
    let g = gpu_with(true);
    assert!(
        g.subgroups || std::env::var("Q4GPU_ALLOW_NO_SUBGROUPS").is_ok(),
        "adapter {} has no subgroup support; set Q4GPU_ALLOW_NO_SUBGROUPS=1 to accept that",
        g.describe()
    );
}

/// Runs `f` with the test GPU on the workgroup-memory reduction path, then on
/// the subgroup path (whose absence fails the test: see `require_subgroups`).
pub fn each_reduction_path(mut f: impl FnMut(q4gpu::gpu::Gpu, bool)) {
    for subgroups in [false, true] {
        if subgroups {
            require_subgroups();
        }
        f(gpu_with(subgroups), subgroups);
    }
}

/// A small deterministic generator (splitmix64) for fresh random test inputs.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1), never exactly zero.
    pub fn f(&mut self) -> f32 {
        let v = (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
        if v == 0.0 {
            0.5
        } else {
            v
        }
    }

    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f()).collect()
    }
}

/// The kernels' fused inputs, for the oracles of the matvec and matmul tests.
///
/// rmsnorm(x) ⊙ g: x / sqrt(mean(x²) + eps) ⊙ g.
pub fn rmsnorm(x: &[f32], g: &[f32], eps: f32) -> Vec<f32> {
    let ss: f32 = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let s = 1.0 / (ss + eps).sqrt();
    x.iter().zip(g).map(|(a, b)| a * s * b).collect()
}

/// silu(gate) ⊙ up for x = gate ++ up, each `cols` long.
pub fn swiglu(x: &[f32], cols: usize) -> Vec<f32> {
    (0..cols)
        .map(|i| x[i] / (1.0 + (-x[i]).exp()) * x[cols + i])
        .collect()
}

/// What an int8-input kernel quantizes and the scale it applies after the
/// dot: x ⊙ gain and 1/sqrt(mean(x²) + eps) with `norm` (gain, eps),
/// silu(gate) ⊙ up with `swiglu`, else x; the scale is 1 without `norm`.
pub fn int8_input(
    x: &[f32],
    cols: usize,
    norm: Option<(&[f32], f32)>,
    swiglu: bool,
) -> (Vec<f32>, f32) {
    match norm {
        Some((gain, eps)) => {
            let ss = x.iter().map(|v| v * v).sum::<f32>() / cols as f32;
            (
                x.iter().zip(gain).map(|(a, b)| a * b).collect(),
                1.0 / (ss + eps).sqrt(),
            )
        }
        None if swiglu => (self::swiglu(x, cols), 1.0),
        None => (x.to_vec(), 1.0),
    }
}

/// Path of `models/llama-vocab/<file>` (llama.cpp's vocabulary-only GGUFs,
/// their test texts and ids, chat templates), running
/// `scripts/fetch_llama_vocab.sh` once per machine if it is absent. Fails
/// (never skips) if it cannot be obtained.
pub fn llama_vocab_path(file: &str) -> PathBuf {
    fetched(&["models", "llama-vocab", file], "fetch_llama_vocab.sh")
}

/// Runs `check` on every job with up to `available_parallelism` threads
/// (at most 8); returns the failures.
pub fn parallel<T: Sync>(
    jobs: &[T],
    check: impl Fn(&T) -> Result<(), String> + Sync,
) -> Vec<String> {
    let n = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..n {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                if let Err(e) = check(job) {
                    failures.lock().unwrap_or_else(|e| e.into_inner()).push(e);
                }
            });
        }
    });
    failures.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// The text between the parenthesis at byte `open` and its match; `None`
/// when it is unbalanced (the MSL tests read kernel signatures with it).
pub fn parenthesized(s: &str, open: usize) -> Option<&str> {
    let mut depth = 0;
    for (i, c) in s[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&s[open + 1..open + i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// `s` split at commas outside (), [] and <>, each part trimmed (a kernel
/// signature's parameters).
pub fn split_top(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' | '[' | '<' => depth += 1,
            ')' | ']' | '>' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        parts.push(cur.trim().to_string());
    }
    parts
}
