//! Decode and prefill speed of a GGUF model on the GPU, with one token's time
//! broken down: dispatches, GPU time (timestamps) vs wall time, CPU encode time.
//!
//!   cargo run --release --example bench_decode -- [--model M.gguf] [--json out.json]
//!
//! Decode: for each context length L (positions already filled: 1, 256, 1024 by
//! default) the KV cache is prefilled with L random tokens, then
//! `GpuModel::generate_greedy` produces `--gen` tokens (default 128) with the
//! host ahead (`Q4GPU_RUN_AHEAD` submissions of `Q4GPU_STEPS_PER_SUBMIT`
//! steps, 1 and 1 by default); tok/s = (tokens − 1) / time (the first id is
//! the prefill's), median of `--repeats`. Prefill: `--prefill` tokens
//! (default 512) from position 0, one submit per chunk, timed to completion.
//!
//! The llama.cpp and bandwidth numbers (measured by other tools in the same
//! run, see benches/device.sh) can be passed in to print one side-by-side table
//! and write them to the JSON (benches/results.json format: an array with one
//! object per GPU; an entry for the same GPU is replaced).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use q4gpu::gpu::timing::{median, GpuTimer};
use q4gpu::model::{GpuModel, ModelOptions};
use q4gpu::sampling::{Sampler, SamplerConfig};
use q4gpu::{Gpu, Model};
use serde_json::{json, Value as Json};

const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_0.gguf";

#[derive(Parser, Debug)]
#[command(about = "Benchmark q4gpu decode/prefill tok/s and per-token costs")]
struct Args {
    /// GGUF model (llama architecture).
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: PathBuf,
    /// Context lengths (positions filled before decoding), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,256,1024")]
    ctx: Vec<usize>,
    /// Tokens generated per decode measurement.
    #[arg(long, default_value_t = 128)]
    gen: usize,
    /// Prompt tokens for the prefill measurement (0: skip).
    #[arg(long, default_value_t = 512)]
    prefill: usize,
    /// Repeats per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Samples for the per-step GPU time and CPU encode time.
    #[arg(long, default_value_t = 30)]
    samples: usize,
    /// auto | vulkan | metal | dx12 | gl (default: env Q4GPU_BACKEND, else auto)
    #[arg(long)]
    backend: Option<String>,
    /// Write (or update) a results JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// llama.cpp Vulkan decode tok/s (llama-bench tg128), measured elsewhere.
    #[arg(long)]
    llama_vulkan_decode: Option<f64>,
    /// llama.cpp Vulkan prefill tok/s (llama-bench pp512).
    #[arg(long)]
    llama_vulkan_prefill: Option<f64>,
    /// llama.cpp CUDA decode tok/s (llama-bench tg128).
    #[arg(long)]
    llama_cuda_decode: Option<f64>,
    /// llama.cpp CUDA prefill tok/s (llama-bench pp512).
    #[arg(long)]
    llama_cuda_prefill: Option<f64>,
    /// Read bandwidth in GB/s (from the matvec bench).
    #[arg(long)]
    read_bw_gb_s: Option<f64>,
    /// Large-shape matvec throughput in GB/s (from the matvec bench).
    #[arg(long)]
    matvec_large_gb_s: Option<f64>,
    /// Skip the kernel self-check at load, so a replaced kernel
    /// (Q4GPU_SHADER_DIR) is timed as built even when its outputs differ:
    /// for timing ablations (a kernel with a part removed), never results.
    #[arg(long)]
    no_kernel_check: bool,
}

/// One context length's decode measurement.
struct DecodeRow {
    ctx: usize,
    tok_s: f64,
    gpu_ms: Option<f64>,
    sync_ms: f64,
}

fn wait_idle(gpu: &Gpu) -> Result<()> {
    gpu.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| anyhow::anyhow!("device lost: {e}"))?;
    gpu.check()?;
    Ok(())
}

/// Deterministic token ids in 3..vocab (skipping the first, special, ids).
fn random_tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut s = seed | 1;
    let lo = 3.min(vocab - 1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (lo + (s % (vocab - lo) as u64) as usize) as u32
        })
        .collect()
}

/// Today's UTC date as YYYY-MM-DD (civil-from-days, no date crate needed).
fn utc_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let z = secs.div_euclid(86400) + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `Q4GPU_COMMIT`, else `git rev-parse --short HEAD`, else null.
fn commit() -> Option<String> {
    if let Ok(c) = std::env::var("Q4GPU_COMMIT") {
        if !c.is_empty() {
            return Some(c);
        }
    }
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

/// A rate with three significant digits or so (lavapipe's are below 1).
fn rate(x: f64) -> String {
    let digits = if x >= 100.0 {
        0
    } else if x >= 10.0 {
        1
    } else {
        2
    };
    format!("{x:.digits$}")
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.digits$}"))
}

fn opt_rate(v: Option<f64>) -> String {
    v.map_or("–".into(), rate)
}

/// Errors print on one line (`error: what: why`), exit status 1.
/// Positions the measurements use (the largest context plus `--gen`, or
/// the prefill), refused past the model's context.
fn positions_needed(a: &Args, context_len: usize) -> Result<usize> {
    let need = a
        .ctx
        .iter()
        .map(|&l| l.max(1) + a.gen)
        .chain([a.prefill, TURN_CONTEXT + TURN_NEW + 1])
        .max()
        .unwrap_or(1);
    if need > context_len {
        bail!(
            "the measurements need {need} positions but the model's context is {}",
            context_len
        );
    }
    Ok(need)
}

/// What `run` measured, for the results JSON.
struct Measured {
    prefill_tok_s: Option<f64>,
    decode: Option<f64>,
    encode_us: f64,
    submit_us: f64,
    rows: Vec<DecodeRow>,
    /// Decode tok/s sampled on the GPU and on the host.
    sampled: (f64, f64),
}

/// One GPU's entry of benches/results.json.
fn results_entry(a: &Args, gpu: &Gpu, m: &GpuModel, r: &Measured) -> Json {
    json!({
        "gpu": gpu.info.name,
        "driver": format!("{} {}", gpu.info.driver, gpu.info.driver_info).trim(),
        "backend": format!("{:?}", gpu.info.backend),
        "date": utc_date(),
        "commit": commit(),
        "model": a.model.file_name().map(|f| f.to_string_lossy().into_owned()),
        "decode_tok_s": {
            "q4gpu": r.decode,
            "llama_cpp_vulkan": a.llama_vulkan_decode,
            "llama_cpp_cuda": a.llama_cuda_decode,
        },
        "prefill_tok_s": {
            "q4gpu": r.prefill_tok_s,
            "llama_cpp_vulkan": a.llama_vulkan_prefill,
            "llama_cpp_cuda": a.llama_cuda_prefill,
        },
        "read_bw_gb_s": a.read_bw_gb_s,
        "matvec_large_gb_s": a.matvec_large_gb_s,
        "dispatches_per_token": m.dispatches_per_token,
        "submits_per_token": 1.0 / m.steps_per_submit() as f64,
        "cpu_encode_us_per_token": r.encode_us,
        "cpu_submit_us_per_token": r.submit_us,
        "decode_sampled_tok_s": { "gpu": r.sampled.0, "host": r.sampled.1 },
        "decode_gen_tokens": a.gen,
        "prefill_tokens": a.prefill,
        "decode_by_context": r.rows.iter().map(|row| json!({
            "context": row.ctx,
            "tok_s": row.tok_s,
            "wall_ms_per_token": 1e3 / row.tok_s,
            "gpu_ms_per_token": row.gpu_ms,
            "sync_step_ms": row.sync_ms,
        })).collect::<Vec<_>>(),
    })
}

/// Replaces (or adds) `entry` for its GPU in the results array at `path`.
fn update_json(path: &std::path::Path, entry: Json) -> Result<()> {
    let mut all = match std::fs::read_to_string(path) {
        Ok(s) => match serde_json::from_str::<Json>(&s) {
            Ok(Json::Array(v)) => v,
            _ => Vec::new(),
        },
        Err(_) => Vec::new(),
    };
    all.retain(|e| e.get("gpu") != entry.get("gpu"));
    all.push(entry);
    let text = serde_json::to_string_pretty(&Json::Array(all))?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    println!("\nwrote {}", path.display());
    Ok(())
}

/// Prefill tok/s of `--prefill` tokens from position 0 (median of up to 3).
fn prefill_rate(m: &mut GpuModel, gpu: &Gpu, a: &Args) -> Result<Option<f64>> {
    Ok(if a.prefill > 0 {
        let prompt = random_tokens(a.prefill, m.config().vocab_size, 2);
        let mut t = Vec::new();
        for _ in 0..a.repeats.min(3) {
            wait_idle(gpu)?;
            let t0 = Instant::now();
            m.prefill(0, &prompt)?;
            wait_idle(gpu)?;
            t.push(t0.elapsed().as_secs_f64());
        }
        Some(a.prefill as f64 / median(&mut t))
    } else {
        None
    })
}

/// Where the first prefill chunk's GPU time goes, by kernel kind (each kind
/// in its own pass over all layers; the LM head of the last token apart).
/// Scrambles the KV cache: run after the prefill measurement.
fn print_prefill_breakdown(m: &mut GpuModel, timer: &GpuTimer, tokens: usize) -> Result<()> {
    let ids = random_tokens(tokens, m.config().vocab_size, 3);
    let kinds = m.prefill_breakdown(timer, 0, &ids)?;
    let n = ids.len().min(m.prefill_capacity());
    println!("\n| prefill kernel kind ({n} tokens at position 0) | dispatches | GPU µs |");
    println!("|---|---|---|");
    let mut total = 0.0;
    for (name, us, d) in kinds {
        total += us;
        println!("| {name} | {d} | {us:.0} |");
    }
    println!("| sum (each kind in its own pass) | | {total:.0} |");
    Ok(())
}

/// Where one decode step's GPU time goes at position 0, by kernel kind
/// (each kind in its own pass over all layers), the sampler beside argmax.
fn print_decode_breakdown(m: &GpuModel, timer: &GpuTimer) -> Result<()> {
    m.write_step(0, Some(1))?;
    println!("\n| decode kernel kind (position 0) | dispatches | GPU µs |");
    println!("|---|---|---|");
    for (name, us, d) in m.breakdown(timer)? {
        println!("| {name} | {d} | {us:.1} |");
    }
    Ok(())
}

/// The decode table, one row per context length.
fn print_rows(m: &GpuModel, rows: &[DecodeRow]) {
    println!();
    println!("| context | decode tok/s | wall ms/token | GPU ms/token | GPU busy | sync step ms | weight GB/s |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        let wall = 1e3 / r.tok_s;
        println!(
            "| {} | {} | {:.3} | {} | {} | {:.3} | {:.1} |",
            r.ctx,
            rate(r.tok_s),
            wall,
            opt(r.gpu_ms, 3),
            r.gpu_ms
                .map_or("–".into(), |g| format!("{:.0}%", 100.0 * g / wall)),
            r.sync_ms,
            m.weight_bytes_per_token as f64 * r.tok_s / 1e9
        );
    }
    println!(
        "\n(wall = 1 / decode tok/s with the host a step ahead; GPU = timestamps around one step's pass; \
sync step = submit→done of one step alone; weight GB/s = weight bytes per token × tok/s)"
    );
}

/// The side-by-side table against llama.cpp's numbers given on the command line.
fn print_engines(a: &Args, prefill_tok_s: Option<f64>, decode: Option<f64>, ctx: usize) {
    let ratio = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) if y > 0.0 => format!("{:.2}×", x / y),
        _ => "–".into(),
    };
    println!();
    println!(
        "| engine | prefill tok/s ({}) | decode tok/s ({} at context {}) |",
        a.prefill, a.gen, ctx
    );
    println!("|---|---|---|");
    println!(
        "| q4gpu | {} | {} |",
        opt_rate(prefill_tok_s),
        opt_rate(decode)
    );
    println!(
        "| llama.cpp Vulkan | {} | {} |",
        opt_rate(a.llama_vulkan_prefill),
        opt_rate(a.llama_vulkan_decode)
    );
    println!(
        "| llama.cpp CUDA | {} | {} |",
        opt_rate(a.llama_cuda_prefill),
        opt_rate(a.llama_cuda_decode)
    );
    println!(
        "| q4gpu / Vulkan | {} | {} |",
        ratio(prefill_tok_s, a.llama_vulkan_prefill),
        ratio(decode, a.llama_vulkan_decode)
    );
    println!(
        "| q4gpu / CUDA | {} | {} |",
        ratio(prefill_tok_s, a.llama_cuda_prefill),
        ratio(decode, a.llama_cuda_decode)
    );
}

/// CPU µs to record one step (encoder, pass, every dispatch, finish) and to
/// submit it (the GPU drained after each), medians over `samples`.
fn cpu_costs(m: &GpuModel, gpu: &Gpu, samples: usize) -> Result<(f64, f64)> {
    // CPU time to record one step (encoder, pass, every dispatch, finish).
    let mut enc_t: Vec<f64> = (0..samples + 1)
        .map(|_| {
            let t0 = Instant::now();
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            m.encode_step_into(&mut enc, true);
            let cb = enc.finish();
            let dt = t0.elapsed().as_secs_f64();
            drop(cb);
            dt
        })
        .skip(1)
        .collect();
    let encode_us = median(&mut enc_t) * 1e6;
    // CPU time of queue.submit for one recorded step (the GPU drained after each).
    let mut sub_t = Vec::new();
    for _ in 0..samples + 1 {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        m.encode_step_into(&mut enc, true);
        let cb = enc.finish();
        let t0 = Instant::now();
        gpu.queue.submit([cb]);
        sub_t.push(t0.elapsed().as_secs_f64());
        wait_idle(gpu)?;
    }
    let submit_us = median(&mut sub_t[1..].to_vec()) * 1e6;
    Ok((encode_us, submit_us))
}

/// Decode at each context length of `--ctx`: greedy tok/s (median of
/// `--repeats`) and one step's GPU and sync time.
fn decode_rows(m: &mut GpuModel, gpu: &Gpu, timer: &GpuTimer, a: &Args) -> Result<Vec<DecodeRow>> {
    let cfg = m.config().clone();
    let mut rows = Vec::new();
    for &l in &a.ctx {
        let l = l.max(1);
        m.prefill(0, &random_tokens(l, cfg.vocab_size, 3 + l as u64))?;
        wait_idle(gpu)?;
        let mut t = Vec::new();
        for _ in 0..a.repeats {
            wait_idle(gpu)?;
            let t0 = Instant::now();
            let n = m.generate_greedy(0, l, a.gen, |_| true)?;
            let dt = t0.elapsed().as_secs_f64();
            if n != a.gen {
                bail!("generate_greedy emitted {n} tokens, expected {}", a.gen);
            }
            t.push((n - 1) as f64 / dt);
        }
        let tok_s = median(&mut t);
        // One step at position l, alone in its submit, GPU-timed.
        m.write_step(l, None)?;
        let mut gpu_t = Vec::new();
        let mut sync_t = Vec::new();
        for i in 0..a.samples + 1 {
            let s = timer.time(gpu, |p| m.encode_step(p, true))?;
            if i > 0 {
                gpu_t.extend(s.gpu_ns);
                sync_t.push(s.wall_ns);
            }
        }
        rows.push(DecodeRow {
            ctx: l,
            tok_s,
            gpu_ms: (!gpu_t.is_empty()).then(|| median(&mut gpu_t) / 1e6),
            sync_ms: median(&mut sync_t) / 1e6,
        });
    }

    Ok(rows)
}

/// The sampler table: greedy against GPU and host sampling.
fn print_sampled(decode: Option<f64>, gpu_sampled: f64, host_sampled: f64, gen: usize) {
    println!(
        "\n| decode at context 1, {} tokens | tok/s | vs greedy |",
        gen
    );
    println!("|---|---|---|");
    let vs = |x: f64| decode.map_or("–".into(), |g| format!("{:.0}%", 100.0 * x / g));
    println!("| greedy (GPU argmax) | {} | 100% |", opt_rate(decode));
    println!(
        "| sampled on the GPU (T 0.8, top-k 40, top-p 0.95, min-p 0.05, seed fixed) | {} | {} |",
        rate(gpu_sampled),
        vs(gpu_sampled)
    );
    println!(
        "| sampled on the host (same settings, logits read back per token) | {} | {} |",
        rate(host_sampled),
        vs(host_sampled)
    );
}

/// Tokens of conversation in the cache before the second turn, and the
/// new turn's tokens, for `turn_latency`.
const TURN_CONTEXT: usize = 256;
const TURN_NEW: usize = 32;

/// Time to the first token (ms, medians of `--repeats`) of a chat's next
/// turn: `TURN_NEW` new tokens after `TURN_CONTEXT` already in the KV cache,
/// prefilling only the new ones (what `Decoder` and `Session` do), against
/// prefilling the whole conversation again.
fn turn_latency(m: &mut GpuModel, gpu: &Gpu, a: &Args) -> Result<(f64, f64)> {
    let conv = random_tokens(TURN_CONTEXT + TURN_NEW, m.config().vocab_size, 5);
    let (mut reuse, mut again) = (Vec::new(), Vec::new());
    for _ in 0..a.repeats {
        m.prefill(0, &conv[..TURN_CONTEXT])?;
        wait_idle(gpu)?;
        let t0 = Instant::now();
        m.prefill(TURN_CONTEXT, &conv[TURN_CONTEXT..])?;
        m.generate_greedy(TURN_CONTEXT, TURN_NEW, 1, |_| true)?;
        reuse.push(t0.elapsed().as_secs_f64() * 1e3);
        wait_idle(gpu)?;
        let t0 = Instant::now();
        m.prefill(0, &conv)?;
        m.generate_greedy(0, conv.len(), 1, |_| true)?;
        again.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok((median(&mut reuse), median(&mut again)))
}

/// Decode tok/s from one prompt position with the CLI's default sampler
/// (median of `--repeats`): (the GPU sampler with the host a step ahead,
/// the host sampler over logits read back every token). As greedy's rate,
/// (tokens − 1) / time after the prefill.
fn sampled_rates(m: &mut GpuModel, gpu: &Gpu, a: &Args) -> Result<(f64, f64)> {
    let cfg = SamplerConfig::default();
    let prompt = random_tokens(1, m.config().vocab_size, 4);
    let (mut on_gpu, mut on_host) = (Vec::new(), Vec::new());
    for _ in 0..a.repeats {
        m.prefill(0, &prompt)?;
        wait_idle(gpu)?;
        let t0 = Instant::now();
        let n = m.generate_sampled(&prompt, a.gen, &cfg, |_| true)?;
        on_gpu.push((n - 1) as f64 / t0.elapsed().as_secs_f64());
        m.prefill(0, &prompt)?;
        wait_idle(gpu)?;
        let t0 = Instant::now();
        let mut s = Sampler::new(cfg);
        let mut recent = prompt.clone();
        let mut logits = m.read_logits()?;
        for k in 0..a.gen {
            let id = s.sample(&logits, &recent);
            recent.push(id);
            if k + 1 < a.gen {
                logits = m.forward(id, prompt.len() + k)?;
            }
        }
        on_host.push((a.gen - 1) as f64 / t0.elapsed().as_secs_f64());
    }
    Ok((median(&mut on_gpu), median(&mut on_host)))
}

fn main() -> std::process::ExitCode {
    q4gpu::env::exit_code(run())
}

fn run() -> Result<()> {
    let a = Args::parse();
    if a.gen < 2 {
        bail!("--gen must be at least 2 (the first id comes from the prefill)");
    }
    if a.repeats == 0 || a.samples == 0 {
        bail!("--repeats and --samples must be at least 1");
    }
    let model = Model::open(&a.model).with_context(|| format!("loading {}", a.model.display()))?;
    let cfg = model.config.clone();
    let gpu = q4gpu::env::gpu(a.backend.as_deref(), true)?;
    let need = positions_needed(&a, cfg.context_len)?;
    let t_load = Instant::now();
    let mut m = GpuModel::with_options(
        &gpu,
        &cfg,
        &model.weights()?,
        need,
        ModelOptions {
            kernel_check: a.no_kernel_check.then_some(false),
            ..ModelOptions::from_env()?
        },
    )?;
    let load_s = t_load.elapsed().as_secs_f64();
    let timer = GpuTimer::new(&gpu)?;
    println!("# q4gpu decode benchmark");
    println!("adapter: {}", gpu.describe());
    println!("driver: {} {}", gpu.info.driver, gpu.info.driver_info);
    println!(
        "model: {} ({} layers, dim {}, vocab {}, {:.1} MiB of weights read per token), upload {:.2}s",
        a.model.display(),
        cfg.n_layers,
        cfg.dim,
        cfg.vocab_size,
        m.weight_bytes_per_token as f64 / (1 << 20) as f64,
        load_s
    );
    println!(
        "timing: {}",
        if gpu.timestamps {
            "GPU timestamps + host wall clock"
        } else {
            "host wall clock only (no timestamp queries)"
        }
    );
    // MSL kernels, or a Q4GPU_SHADER_DIR's, are checked at load: a kernel
    // under development that fails runs the embedded WGSL in what follows.
    let check = m.kernel_check();
    if a.no_kernel_check {
        println!("kernel self-check: skipped (--no-kernel-check): outputs unchecked");
    }
    if !check.checked.is_empty() {
        println!(
            "kernel self-check: {} variants checked in {:.0} ms, {} replaced by the embedded WGSL ({})",
            check.checked.len(),
            check.ms,
            check.replaced.len(),
            // Which variants ran: the options under test name them.
            check.checked.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        for (name, d) in &check.replaced {
            println!("  replaced: {name} (outputs off by {d:.2e} relative)");
        }
    }

    // Warm up: pipelines, first submits, mapping.
    m.prefill(0, &random_tokens(2, cfg.vocab_size, 1))?;
    m.generate_greedy(0, 2, 3, |_| true)?;
    wait_idle(&gpu)?;

    let prefill_tok_s = prefill_rate(&mut m, &gpu, &a)?;

    let (encode_us, submit_us) = cpu_costs(&m, &gpu, a.samples)?;

    let rows = decode_rows(&mut m, &gpu, &timer, &a)?;

    println!();
    println!(
        "per token: {} dispatches ({} before position 64), {} token(s) per submit, CPU encode {:.1} µs, CPU submit {:.1} µs (one step)",
        m.dispatches_per_token,
        m.dispatches_at(0),
        m.steps_per_submit(),
        encode_us,
        submit_us
    );
    if let Some(p) = prefill_tok_s {
        println!(
            "prefill: {} tok/s ({} tokens, one submit per chunk of up to {} tokens; matmuls on {})",
            rate(p),
            a.prefill,
            m.prefill_capacity(),
            if gpu.matrix_units {
                "matrix units"
            } else {
                "f32 FMAs"
            }
        );
        print_prefill_breakdown(&mut m, &timer, a.prefill)?;
    }
    print_rows(&m, &rows);

    let decode = rows.first().map(|r| r.tok_s);
    let (gpu_sampled, host_sampled) = sampled_rates(&mut m, &gpu, &a)?;
    print_sampled(decode, gpu_sampled, host_sampled, a.gen);
    let (reuse_ms, again_ms) = turn_latency(&mut m, &gpu, &a)?;
    println!("\n| next chat turn: {TURN_NEW} new tokens after {TURN_CONTEXT} in the cache | time to first token |");
    println!("|---|---|");
    println!("| prefill the new tokens only (KV cache reused) | {reuse_ms:.2} ms |");
    println!("| prefill the whole conversation again | {again_ms:.2} ms |");

    print_decode_breakdown(&m, &timer)?;

    print_engines(&a, prefill_tok_s, decode, rows.first().map_or(0, |r| r.ctx));

    if let Some(path) = &a.json {
        let measured = Measured {
            prefill_tok_s,
            decode,
            encode_us,
            submit_us,
            rows,
            sampled: (gpu_sampled, host_sampled),
        };
        update_json(path, results_entry(&a, &gpu, &m, &measured))?;
    }
    Ok(())
}
