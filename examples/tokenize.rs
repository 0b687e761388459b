//! Tokenize text with a GGUF model's vocabulary, or decode ids back to text.
//!
//! `cargo run --example tokenize -- [--model M] "text"` prints the ids as a JSON
//! array (`--no-special` treats `<|im_start|>` etc. as plain text; no text reads
//! stdin); `--ids 1,2,3` prints the decoded text instead.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use q4gpu::gguf::Gguf;
use q4gpu::tokenizer::Tokenizer;

#[derive(Parser)]
#[command(about = "Tokenize text (ids as JSON) or decode ids with a GGUF vocabulary")]
struct Args {
    /// GGUF model file whose tokenizer metadata is used.
    #[arg(long, default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    model: PathBuf,
    /// Treat special-token text such as `<|im_end|>` literally.
    #[arg(long)]
    no_special: bool,
    /// Token ids to decode instead of tokenizing: `1,2,3`, or the JSON list
    /// this program prints (`[1, 2, 3]`).
    #[arg(long, value_parser = q4gpu::tokenizer::parse_id_list)]
    ids: Option<std::vec::Vec<u32>>,
    /// Text to tokenize (stdin when absent).
    text: Option<String>,
}

/// Errors print on one line (`error: what: why`), exit status 1.
fn main() -> std::process::ExitCode {
    q4gpu::env::exit_code(run())
}

fn run() -> Result<()> {
    let args = Args::parse();
    let g = Gguf::open(&args.model).with_context(|| format!("opening {}", args.model.display()))?;
    let tok = Tokenizer::from_gguf(&g).context("building the tokenizer")?;
    let mut out = std::io::stdout().lock();
    if let Some(ids) = args.ids {
        if let Some(bad) = ids.iter().find(|&&id| tok.token_bytes(id).is_none()) {
            bail!(
                "id {bad} is outside the vocabulary of {} tokens",
                tok.vocab_size()
            );
        }
        out.write_all(&tok.decode(&ids))?;
        out.write_all(b"\n")?;
        return Ok(());
    }
    let text = match args.text {
        Some(t) => t,
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading stdin")?;
            s
        }
    };
    let ids = tok.encode(&text, !args.no_special);
    let list: Vec<String> = ids.iter().map(u32::to_string).collect();
    writeln!(out, "[{}]", list.join(", "))?;
    Ok(())
}
