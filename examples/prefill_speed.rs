//! Prompt-processing speed: batched prefill vs one decode step per token, on
//! the same GPU model and prompt, each run once to warm up and then timed
//! (host wall clock until the logits are read back).
//!
//!   cargo run --release --example prefill_speed -- [MODEL.gguf] [PROMPT_TOKENS]

use std::time::Instant;

use anyhow::{Context, Result};
use q4gpu::gguf::Gguf;
use q4gpu::model::{Config, GpuModel, ModelOptions, Weights};

/// Errors print on one line (`error: what: why`), exit status 1.
fn main() -> std::process::ExitCode {
    q4gpu::env::exit_code(run())
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "models/SmolLM2-135M-Instruct.Q4_0.gguf".into());
    let n: usize = args.next().map_or(Ok(100), |s| s.parse())?;
    let g = Gguf::open(&path).with_context(|| format!("opening {path}"))?;
    let cfg = Config::from_gguf(&g)?;
    let w = Weights::from_gguf(&g, &cfg)?;
    let gpu = q4gpu::env::gpu(None, false)?;
    println!("{}", gpu.describe());
    let mut m = GpuModel::with_options(&gpu, &cfg, &w, n + 1, ModelOptions::from_env()?)?;
    let prompt: Vec<u32> = (0..n as u32).map(|i| 100 + i * 997 % 20000).collect();
    for (name, batched) in [("per-token", false), ("batched", true)] {
        let mut best = f64::INFINITY;
        for _ in 0..if batched { 2 } else { 1 } {
            let t = Instant::now();
            if batched {
                m.prefill(0, &prompt)?;
            } else {
                m.prefill_per_token(0, &prompt)?;
            }
            m.read_logits()?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{name:>9} prefill of {n} tokens: {best:.3} s = {:.1} tok/s",
            n as f64 / best
        );
    }
    Ok(())
}
