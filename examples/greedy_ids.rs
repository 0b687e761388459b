//! Greedy token ids of a prompt's continuation, as JSON: the reference the
//! browser test (scripts/web_test.sh) compares the web page's ids with.
//!
//! `cargo run --release --example greedy_ids -- --model M --prompt TEXT -n N`
//! prints `{"prompt_ids": [...], "ids": [...]}`: the prompt as the model
//! reads it (BOS where the vocabulary adds it, special tokens parsed) and N
//! greedy tokens after it, from the CPU reference (`--gpu`: the GPU decoder).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use q4gpu::decoder::{CpuDecoder, Generate};
use q4gpu::sampling::SamplerConfig;
use q4gpu::{Decoder, Model};

#[derive(Parser)]
#[command(about = "Print a prompt's ids and its greedy continuation's ids as JSON")]
struct Args {
    /// GGUF model file.
    #[arg(long)]
    model: PathBuf,
    /// Prompt text (special tokens are parsed).
    #[arg(long)]
    prompt: String,
    /// Tokens to generate (stop tokens are counted like any other).
    #[arg(short = 'n', default_value_t = 16)]
    n: usize,
    /// The GPU decoder instead of the CPU reference.
    #[arg(long)]
    gpu: bool,
}

/// Errors print on one line (`error: what: why`), exit status 1.
fn main() -> std::process::ExitCode {
    q4gpu::env::exit_code(run())
}

fn run() -> Result<()> {
    let a = Args::parse();
    let model = Model::open(&a.model).with_context(|| format!("opening {}", a.model.display()))?;
    let prompt = model.tokenizer.encode_prompt(&a.prompt);
    let ctx = prompt.len() + a.n + 1;
    let mut ids = Vec::with_capacity(a.n);
    let mut emit = |id: u32| {
        ids.push(id);
        true
    };
    let greedy = SamplerConfig::greedy();
    if a.gpu {
        let gpu = q4gpu::env::gpu(None, false)?;
        let mut d = Decoder::new(&gpu, &model, ctx)?;
        d.generate(&prompt, a.n, &greedy, &mut emit)?;
    } else {
        let mut d = CpuDecoder::new(&model, ctx)?;
        Generate::generate(&mut d, &prompt, a.n, &greedy, None, &mut emit)?;
    }
    println!("{{\"prompt_ids\": {prompt:?}, \"ids\": {ids:?}}}");
    Ok(())
}
