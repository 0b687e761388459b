//! The tokenizer built from the real SmolLM2 GGUF gives the same ids as an
//! independent reference (Hugging Face `tokenizers`, driven by
//! tests/data/gen_tokenizer_cases.py) for every fixture string, decodes them
//! back, streams them without splitting characters, and renders ChatML like
//! the model's own Jinja chat template.

use std::path::PathBuf;
use std::time::Instant;

use q4gpu::gguf::Gguf;
use q4gpu::tokenizer::{ChatTurn, Role, StreamDecoder, Tokenizer};
use serde_json::Value;

const MODEL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// `<crate>/models/<MODEL>`, fetched with scripts/fetch_model.sh if absent.
fn model_path() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("models").join(MODEL);
    let script = root.join("scripts/fetch_model.sh");
    if !path.exists() && script.exists() {
        let status = std::process::Command::new("bash").arg(&script).status();
        eprintln!("ran {}: {status:?}", script.display());
    }
    assert!(
        path.exists(),
        "model file {} is missing: run scripts/fetch_model.sh (these tests need the real vocabulary)",
        path.display()
    );
    path
}

fn tokenizer() -> Tokenizer {
    let g = Gguf::open(model_path()).expect("open model GGUF");
    Tokenizer::from_gguf(&g).expect("tokenizer from GGUF")
}

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/tokenizer_cases.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("read fixture")).expect("parse")
}

struct Case {
    text: String,
    parse_special: bool,
    ids: Vec<u32>,
    lossless: bool,
}

fn cases(v: &Value) -> Vec<Case> {
    v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().expect("text").to_string(),
            parse_special: c["parse_special"].as_bool().expect("parse_special"),
            ids: c["ids"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|x| x.as_u64().expect("id") as u32)
                .collect(),
            lossless: c["lossless"].as_bool().expect("lossless"),
        })
        .collect()
}

#[test]
fn ids_match_reference_and_decode_back() {
    let tok = tokenizer();
    let cases = cases(&fixture());
    assert!(cases.len() >= 150, "fixture has only {} cases", cases.len());
    let mut bad = Vec::new();
    for c in &cases {
        let got = tok.encode(&c.text, c.parse_special);
        if got != c.ids {
            bad.push(format!(
                "{:?} special={}\n  want {:?}\n  got  {:?}",
                c.text, c.parse_special, c.ids, got
            ));
        }
        if c.lossless {
            assert_eq!(
                tok.decode(&got),
                c.text.as_bytes(),
                "round trip of {:?}",
                c.text
            );
        } else {
            // Bytes without a token are dropped, as by the reference.
            assert_eq!(
                tok.decode(&got),
                tok.decode(&c.ids),
                "decode of {:?}",
                c.text
            );
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} differ:\n{}",
        bad.len(),
        cases.len(),
        bad.join("\n")
    );
    // Special-token text is one token only with parse_special.
    assert_eq!(tok.encode("<|im_start|>", true), [1]);
    assert!(tok.encode("<|im_start|>", false).len() > 1);
}

#[test]
fn metadata_facts() {
    let tok = tokenizer();
    let meta = &fixture()["meta"];
    assert_eq!(
        tok.vocab_size(),
        meta["n_vocab"].as_u64().expect("n_vocab") as usize
    );
    assert_eq!(
        tok.add_bos(),
        meta["add_bos_token"].as_bool().expect("add_bos")
    );
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_id(), Some(2));
    assert_eq!(tok.token_id("<|im_end|>"), Some(2));
    assert_eq!(tok.token_id("<|endoftext|>"), Some(0));
    assert!(tok.is_stop(2) && tok.is_stop(0));
    assert!(!tok.is_stop(1) && !tok.is_stop(504) && !tok.is_stop(u32::MAX));
    assert_eq!(tok.token_bytes(49_152), None);
    assert_eq!(tok.chat_template(), meta["chat_template"].as_str());
    assert_eq!(tok.default_system_prompt(), meta["default_system"].as_str());
    // A token's text maps back to its id.
    let hello = tok.encode(" Hello", false);
    assert_eq!(hello.len(), 1);
    assert_eq!(tok.token_id(" Hello"), hello.first().copied());
}

#[test]
fn chat_prompt_matches_jinja_template() {
    let tok = tokenizer();
    let v = fixture();
    let chats = v["chat_cases"].as_array().expect("chat_cases");
    assert!(chats.len() >= 4);
    for c in chats {
        let history: Vec<ChatTurn> = c["turns"]
            .as_array()
            .expect("turns")
            .iter()
            .map(|t| {
                let role = match t[0].as_str().expect("role") {
                    "system" => Role::System,
                    "user" => Role::User,
                    _ => Role::Assistant,
                };
                ChatTurn::new(role, t[1].as_str().expect("content"))
            })
            .collect();
        let prompt = tok
            .chat_prompt(c["system"].as_str(), &history)
            .expect("chat template");
        assert_eq!(prompt, c["text"].as_str().expect("text"));
        assert!(prompt.ends_with("<|im_start|>assistant\n"));
    }
}

#[test]
fn stream_decoder_never_splits_characters() {
    let tok = tokenizer();
    let mut held_back = 0;
    for c in cases(&fixture()) {
        let mut dec = StreamDecoder::new();
        let mut out = String::new();
        for &id in &c.ids {
            let piece = dec.push(&tok, id);
            if piece.is_empty() && dec.pending_len() > 0 {
                held_back += 1;
            }
            out.push_str(&piece);
        }
        out.push_str(&dec.finish());
        assert_eq!(dec.pending_len(), 0);
        assert_eq!(
            out,
            String::from_utf8_lossy(&tok.decode(&c.ids)),
            "{:?}",
            c.text
        );
        if c.lossless {
            assert_eq!(out, c.text);
        }
    }
    // Emoji and CJK cases split characters across tokens: the decoder had to wait.
    assert!(held_back > 10, "only {held_back} pushes were held back");
}

#[test]
fn long_inputs_are_fast_and_exact() {
    let tok = tokenizer();
    let para = "The quick brown fox, 1234 times; naïve café 日本語 😀 it's done.\n\n";
    let text = para.repeat(300); // ~20 KB
    let t = Instant::now();
    let ids = tok.encode(&text, true);
    let dt = t.elapsed();
    assert_eq!(tok.decode(&ids), text.as_bytes());
    assert!(
        ids.len() * 2 < text.len(),
        "{} ids for {} bytes",
        ids.len(),
        text.len()
    );
    assert!(dt.as_secs_f64() < 2.0, "20 KB took {dt:?}");
    // One huge word (no spaces) stays near-linear with the heap merge.
    let word = "ab".repeat(20_000);
    let t = Instant::now();
    let ids = tok.encode(&word, false);
    assert_eq!(tok.decode(&ids), word.as_bytes());
    assert!(
        t.elapsed().as_secs_f64() < 2.0,
        "40 KB word took {:?}",
        t.elapsed()
    );
}
