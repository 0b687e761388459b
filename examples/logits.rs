//! Full logits for a token sequence, for comparing q4gpu with another engine
//! on the same file.
//!
//! `cargo run --release --example logits -- --model M --ids 1,2,3 --out FILE [--cpu]`
//! feeds the ids one position at a time from position 0 (the GPU's
//! single-token decode step, or the CPU reference with `--cpu`) and writes,
//! for every position, the logits over the whole vocabulary as little-endian
//! f32: ids × vocab values, position-major.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use q4gpu::gguf::Gguf;
use q4gpu::model::{Config, CpuModel, GpuModel, Weights};

#[derive(Parser)]
#[command(about = "Write a model's logits for each position of a token sequence (LE f32)")]
struct Args {
    /// GGUF model file.
    #[arg(long)]
    model: PathBuf,
    /// Token ids, `1,2,3` or `[1, 2, 3]`.
    #[arg(long, value_parser = q4gpu::tokenizer::parse_id_list)]
    ids: std::vec::Vec<u32>,
    /// Output file: ids × vocab little-endian f32.
    #[arg(long)]
    out: PathBuf,
    /// The CPU reference instead of the GPU.
    #[arg(long)]
    cpu: bool,
    /// auto | vulkan | metal | dx12 | gl (default: env Q4GPU_BACKEND, else auto).
    #[arg(long)]
    backend: Option<String>,
}

/// Errors print on one line (`error: what: why`), exit status 1.
fn main() -> std::process::ExitCode {
    q4gpu::env::exit_code(run())
}

fn run() -> Result<()> {
    let a = Args::parse();
    if a.ids.is_empty() {
        bail!("--ids: no token ids given");
    }
    let g = Gguf::open(&a.model).with_context(|| format!("opening {}", a.model.display()))?;
    let cfg = Config::from_gguf(&g).context("reading the model configuration")?;
    if let Some(&bad) = a.ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
        bail!(
            "--ids: id {bad} is outside the vocabulary of {} tokens",
            cfg.vocab_size
        );
    }
    let w = Weights::from_gguf(&g, &cfg).context("loading the weights")?;
    let n = a.ids.len();
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&a.out).with_context(|| format!("creating {}", a.out.display()))?,
    );
    let mut write = |logits: &[f32]| -> Result<()> {
        for v in logits {
            out.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    };
    if a.cpu {
        let mut m = CpuModel::with_max_positions(cfg.clone(), w, n);
        for (pos, &t) in a.ids.iter().enumerate() {
            write(m.forward(t, pos)?)?;
        }
    } else {
        let gpu = q4gpu::env::gpu(a.backend.as_deref(), false)?;
        let mut m = GpuModel::new(&gpu, &cfg, &w, n)?;
        for (pos, &t) in a.ids.iter().enumerate() {
            write(&m.forward(t, pos)?)?;
        }
    }
    out.flush()
        .with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!(
        "wrote {}: {n} positions × {} logits ({})",
        a.out.display(),
        cfg.vocab_size,
        if a.cpu { "CPU reference" } else { "GPU" }
    );
    Ok(())
}
