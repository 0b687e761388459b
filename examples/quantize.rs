//! Converts a GGUF model's weights to another type with q4gpu's ggml-exact quantizers.
//!
//! `cargo run --release --example quantize -- in.gguf out.gguf q4_k_m [--embd auto|keep|<type>]`
//!
//! Targets: a type (q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k, f16, bf16,
//! f32) or one of llama-quantize's mixes (q4_k_m, q5_k_m), which give each
//! weight the type llama.cpp would. With a type, 2-D weights whose row length
//! fits become that type (K-quants fall back to Q5_0 / Q5_1 / Q8_0 as
//! llama.cpp's do); 1-D tensors (norms) become F32; `token_embd.weight` keeps
//! its source type by default (tied to the output projection, it is the most
//! precision-sensitive matrix; llama.cpp gives it Q6_K in its presets), and
//! follows the mix with a mix. Quantized sources are
//! dequantized to f32 and requantized. Metadata is copied, `general.file_type` set to
//! the target's llama.cpp value. The source is only read; the output appears
//! atomically (temporary file + rename) or not at all.

use anyhow::Context;
use clap::Parser;
use q4gpu::gguf::{GgmlType, Gguf};
use q4gpu::quant::convert::{self, ConvertOptions, EmbdChoice, Target};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
#[command(
    about = "Re-encode a GGUF model's weights (a type such as q4_0 or q6_k, or the mixes q4_k_m, q5_k_m)"
)]
struct Args {
    /// Source GGUF file (never modified).
    input: PathBuf,
    /// Output GGUF file (must differ from the input).
    output: PathBuf,
    /// Target for 2-D weights: q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k,
    /// f16, bf16, f32, or a mix: q4_k_m, q5_k_m.
    target: String,
    /// Type for token_embd.weight: `auto` (the default: its source type with
    /// one target type, the mix's choice with a mix), `keep`, or a type name.
    #[arg(long, default_value = "auto")]
    embd: String,
    /// Print only the final summary, no per-tensor progress.
    #[arg(short, long)]
    quiet: bool,
}

const TYPES: &str = "q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k, f16, bf16, f32";

fn parse_type(s: &str) -> anyhow::Result<GgmlType> {
    GgmlType::from_name(s).with_context(|| format!("unknown type {s:?}; expected one of {TYPES}"))
}

fn parse_target(s: &str) -> anyhow::Result<Target> {
    Target::from_name(s).with_context(|| {
        format!("unknown target {s:?}; expected one of {TYPES} or a mix: q4_k_m, q5_k_m")
    })
}

fn mib(n: u64) -> f64 {
    n as f64 / (1024.0 * 1024.0)
}

/// Errors print on one line (`error: what: why`), exit status 1.
fn main() -> std::process::ExitCode {
    q4gpu::env::exit_code(run())
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let target = parse_target(&args.target)?;
    let embd = match args.embd.to_ascii_lowercase().as_str() {
        "auto" => EmbdChoice::Auto,
        "keep" => EmbdChoice::Keep,
        t => EmbdChoice::To(parse_type(t)?),
    };
    convert::check_output_path(&args.input, &args.output)?;

    let t0 = Instant::now();
    let src =
        Gguf::open(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let opts = ConvertOptions { target, embd };
    let mut err = std::io::stderr().lock();
    let tty = err.is_terminal();
    let quiet = args.quiet;
    let mut converted = 0usize;
    let writer = convert::convert(&src, &opts, |i, n, info, to| {
        let what = if to == info.ty {
            format!("{} (copied)", info.ty)
        } else {
            converted += 1;
            format!("{} -> {}", info.ty, to)
        };
        // Progress is best-effort: a closed stderr must not stop the conversion. On a
        // terminal one line is rewritten in place; otherwise one line per tensor.
        if quiet {
            return;
        }
        let line = format!(
            "[{:>3}/{}] {:<32} {:?} {}",
            i + 1,
            n,
            info.name,
            info.dims,
            what
        );
        let _ = if tty {
            write!(err, "\r\x1b[2K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    })
    .context("converting tensors")?;
    if tty && !quiet {
        let _ = writeln!(err);
    }
    let t_convert = t0.elapsed();
    writer
        .write_to_path(&args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let in_len = std::fs::metadata(&args.input)?.len();
    let out_len = std::fs::metadata(&args.output)?.len();
    eprintln!(
        "{} tensors ({} re-encoded) -> {}: {:.1} MiB -> {:.1} MiB in {:.2} s (convert {:.2} s)",
        src.tensors().len(),
        converted,
        args.output.display(),
        mib(in_len),
        mib(out_len),
        t0.elapsed().as_secs_f64(),
        t_convert.as_secs_f64()
    );
    Ok(())
}
