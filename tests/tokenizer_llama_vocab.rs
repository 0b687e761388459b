//! Tokenizers of other model families against llama.cpp's own test data:
//! the vocabulary-only GGUFs in llama.cpp's models/ folder, each with test
//! texts (`.inp`) and the ids llama.cpp's `test-tokenizer-0` requires for
//! them (`.out`, the same as Hugging Face's tokenizer gives). Fetched by
//! scripts/fetch_llama_vocab.sh from the llama-cpp-python 0.3.36 sdist.

mod common;

use q4gpu::gguf::Gguf;
use q4gpu::tokenizer::{PreTokenizer, Tokenizer};

/// The test cases of `ggml-vocab-<name>.gguf`: (text, ids), split the way
/// test-tokenizer-0 splits them.
fn cases(name: &str) -> Vec<(String, Vec<u32>)> {
    let read = |ext: &str| {
        let p = common::llama_vocab_path(&format!("ggml-vocab-{name}.gguf.{ext}"));
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let inp = read("inp");
    let out = read("out");
    let texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    // A trailing separator leaves no empty case (test-tokenizer-0 stops there).
    let texts = match texts.split_last() {
        Some((&"", rest)) => rest.to_vec(),
        _ => texts,
    };
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|t| t.parse().expect("id"))
                .collect()
        })
        .collect();
    assert_eq!(
        texts.len(),
        ids.len(),
        "{name}: .inp and .out disagree on the number of cases"
    );
    assert!(texts.len() >= 30, "{name}: only {} cases", texts.len());
    texts.into_iter().map(String::from).zip(ids).collect()
}

fn tokenizer(name: &str) -> Tokenizer {
    let p = common::llama_vocab_path(&format!("ggml-vocab-{name}.gguf"));
    let g = Gguf::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    Tokenizer::from_gguf(&g).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every case of `name` encodes (special text not parsed, no BOS) to
/// llama.cpp's ids and decodes back to its text.
fn check_vocab(name: &str, pre: PreTokenizer) {
    let tok = tokenizer(name);
    let pre_space = name == "llama-spm";
    assert_eq!(tok.pre_tokenizer(), pre, "{name}");
    let mut bad = Vec::new();
    let cases = cases(name);
    for (text, want) in &cases {
        let got = tok.encode(text, false);
        if &got != want {
            bad.push(format!("{text:?}\n  got  {got:?}\n  want {want:?}"));
        }
        // SentencePiece puts a space before the text (add_space_prefix).
        let back = match pre_space {
            true if !text.is_empty() => format!(" {text}"),
            _ => text.clone(),
        };
        assert_eq!(
            String::from_utf8_lossy(&tok.decode(&got)),
            back,
            "{name}: decode(encode(text)) differs"
        );
    }
    assert!(
        bad.is_empty(),
        "{name}: {} of {} cases differ from llama.cpp:\n{}",
        bad.len(),
        cases.len(),
        bad.join("\n")
    );
}

#[test]
fn llama3_bpe_matches_llama_cpp() {
    check_vocab("llama-bpe", PreTokenizer::Llama3);
}

#[test]
fn qwen2_matches_llama_cpp() {
    check_vocab("qwen2", PreTokenizer::Qwen2);
}

#[test]
fn gpt2_matches_llama_cpp() {
    check_vocab("gpt-2", PreTokenizer::Gpt2);
}

#[test]
fn starcoder_and_refact_match_llama_cpp() {
    check_vocab("starcoder", PreTokenizer::Gpt2Digits);
    check_vocab("refact", PreTokenizer::Gpt2Digits);
}

/// Llama 3 vocabularies start prompts with BOS unless the file says
/// otherwise (llama.cpp's default for the type); the test file says nothing.
#[test]
fn llama3_adds_bos_by_default() {
    let tok = tokenizer("llama-bpe");
    assert!(tok.add_bos());
    assert_eq!(tok.bos_id(), Some(128000));
    let qwen = tokenizer("qwen2");
    assert!(!qwen.add_bos());
}

/// SentencePiece (`tokenizer.ggml.model = llama`: Llama 2, TinyLlama,
/// Mistral): scores, byte fallback, the leading-space rule.
#[test]
fn sentencepiece_matches_llama_cpp() {
    check_vocab("llama-spm", PreTokenizer::Gpt2);
}
