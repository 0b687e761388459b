//! Every vocabulary type the tokenizer supports against llama.cpp's own
//! `llama_tokenize` on a corpus of tricky strings (whitespace runs, CR/LF,
//! digits, contractions, code, CJK and other scripts, emoji sequences,
//! invisible characters, very long words, special-token text): the ids in
//! tests/data/tokenizer_tricky.json come from tests/data/tokenize_ids.cpp
//! (llama.cpp 0c1e57098, add_special off, parse_special off and on), written
//! by tests/data/gen_tokenizer_tricky.py.

mod common;

use std::path::PathBuf;

use q4gpu::gguf::Gguf;
use q4gpu::tokenizer::{PreTokenizer, Tokenizer};
use serde_json::Value;

/// One vocabulary's part of the fixture.
struct Expected {
    file: String,
    n_tokens: usize,
    /// The ids llama.cpp ends generation at (`llama_vocab_is_eog`).
    eog: Vec<u32>,
    /// The vocabulary's control-token texts used in the corpus.
    specials: Vec<String>,
    /// Per mode (parse_special off, on): llama.cpp's ids for each string, and
    /// whether llama.cpp's detokenizer gives the string back from them.
    ids: [Vec<Vec<u32>>; 2],
    round_trip: [Vec<bool>; 2],
}

struct Fixture {
    corpus: Vec<String>,
    vocabs: Vec<(String, Expected)>,
}

fn strings(v: &Value, what: &str) -> Vec<String> {
    let list = v.as_array().unwrap_or_else(|| panic!("{what}: not a list"));
    let item = |s: &Value| s.as_str().map(String::from);
    let items = list.iter().map(item).collect::<Option<Vec<_>>>();
    items.unwrap_or_else(|| panic!("{what}: not all strings"))
}

fn id_lists(v: &Value, what: &str) -> Vec<Vec<u32>> {
    let ids = |l: &Value| -> Option<Vec<u32>> {
        let ids = l.as_array()?.iter().map(|x| x.as_u64()?.try_into().ok());
        ids.collect()
    };
    let lists = v.as_array().map(|a| a.iter().map(ids).collect());
    lists
        .flatten()
        .unwrap_or_else(|| panic!("{what}: not a list of id lists"))
}

fn flags(v: &Value, what: &str) -> Vec<bool> {
    let list = v.as_array().map(|a| a.iter().map(Value::as_bool).collect());
    list.flatten()
        .unwrap_or_else(|| panic!("{what}: not a list of booleans"))
}

fn fixture() -> Fixture {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/tokenizer_tricky.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let corpus = strings(&v["corpus"], "corpus");
    let vocabs = v["vocabs"].as_array().expect("vocabs");
    let vocabs = vocabs.iter().map(|e| {
        let name = e["name"].as_str().expect("name").to_string();
        let exp = Expected {
            file: e["file"].as_str().expect("file").to_string(),
            n_tokens: e["n_tokens"].as_u64().expect("n_tokens") as usize,
            eog: e["eog"]
                .as_array()
                .expect("eog")
                .iter()
                .map(|i| i.as_u64().expect("eog id") as u32)
                .collect(),
            specials: strings(&e["specials"], &name),
            ids: [id_lists(&e["plain"], &name), id_lists(&e["special"], &name)],
            round_trip: [
                flags(&e["plain_roundtrip"], &name),
                flags(&e["special_roundtrip"], &name),
            ],
        };
        let n = corpus.len();
        let sized = exp.ids.iter().all(|l| l.len() == n);
        assert!(
            sized && exp.round_trip.iter().all(|l| l.len() == n),
            "{name}: not {n} cases"
        );
        (name, exp)
    });
    let vocabs = vocabs.collect();
    Fixture { corpus, vocabs }
}

/// The GGUF a fixture vocabulary came from: llama.cpp's vocabulary-only
/// files, or the crate's real model (SmolLM2).
fn gguf_path(file: &str) -> PathBuf {
    if file == common::MODEL_Q4_1 {
        common::model_path(file)
    } else {
        common::llama_vocab_path(file)
    }
}

/// `"…" (parse_special on): first difference at index i` and both lists.
fn mismatch(text: &str, mode: bool, got: &[u32], want: &[u32]) -> String {
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let mode = if mode { "on" } else { "off" };
    format!("{text:?} (parse_special {mode}): first difference at index {at}\n  got  {got:?}\n  want {want:?}")
}

/// The text llama.cpp's detokenizer makes of `ids`: the tokens' bytes, for
/// SentencePiece without the space that encoding put before the text
/// (llama.cpp removes one leading space when `add_space_prefix` is set).
fn detokenize(tok: &Tokenizer, ids: &[u32], spm: bool) -> Vec<u8> {
    let bytes = tok.decode(ids);
    match bytes.strip_prefix(b" ") {
        Some(rest) if spm => rest.to_vec(),
        _ => bytes,
    }
}

/// Checks one vocabulary of the fixture: ids in both modes, the modes
/// really differing on special-token text, and the round trip wherever
/// llama.cpp's own round trip gives the string back.
fn check(name: &str, pre: PreTokenizer) {
    let fx = fixture();
    let (_, exp) = fx
        .vocabs
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name}: not in the fixture"));
    let path = gguf_path(&exp.file);
    let g = Gguf::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let tok = Tokenizer::from_gguf(&g).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(tok.pre_tokenizer(), pre, "{name}");
    assert_eq!(tok.vocab_size(), exp.n_tokens, "{name}: vocabulary size");
    assert_eq!(tok.stop_ids(), exp.eog, "{name}: end-of-generation ids");
    let spm = name == "llama-spm";

    let mut bad = Vec::new();
    let mut round_trips = 0;
    for (mode, parse_special) in [false, true].into_iter().enumerate() {
        let mut agree = 0;
        for (i, text) in fx.corpus.iter().enumerate() {
            let want = &exp.ids[mode][i];
            let got = tok.encode(text, parse_special);
            if &got == want {
                agree += 1;
            } else {
                bad.push(mismatch(text, parse_special, &got, want));
            }
            if exp.round_trip[mode][i] {
                round_trips += 1;
                assert_eq!(
                    String::from_utf8_lossy(&detokenize(&tok, &got, spm)),
                    text.as_str(),
                    "{name}: round trip with parse_special {parse_special}"
                );
            }
        }
        let checked = exp.round_trip[mode].iter().filter(|&&t| t).count();
        eprintln!(
            "{name}, parse_special {parse_special}: {agree}/{} agree, {checked} round trips checked",
            fx.corpus.len()
        );
    }
    assert!(
        bad.is_empty(),
        "{name}: {} of {} encodings differ from llama.cpp:\n{}",
        bad.len(),
        2 * fx.corpus.len(),
        bad.join("\n")
    );
    assert!(
        round_trips > fx.corpus.len(),
        "{name}: only {round_trips} round trips checked"
    );
    check_modes_differ(name, &tok, &fx.corpus, exp);
}

/// Every string holding one of the vocabulary's control-token texts
/// tokenizes differently with and without parse_special, in llama.cpp and
/// here, and each such text alone is one token only when parsed.
fn check_modes_differ(name: &str, tok: &Tokenizer, corpus: &[String], exp: &Expected) {
    let mut with_special = 0;
    for (i, text) in corpus.iter().enumerate() {
        if !exp.specials.iter().any(|s| text.contains(s.as_str())) {
            continue;
        }
        with_special += 1;
        assert_ne!(exp.ids[0][i], exp.ids[1][i], "{name}: fixture, {text:?}");
        assert_ne!(
            tok.encode(text, false),
            tok.encode(text, true),
            "{name}: {text:?}"
        );
    }
    assert!(
        with_special >= 2,
        "{name}: {with_special} special-token strings"
    );
    for s in &exp.specials {
        assert_eq!(tok.encode(s, true).len(), 1, "{name}: {s:?} parsed");
        assert!(tok.encode(s, false).len() > 1, "{name}: {s:?} as text");
    }
}

#[test]
fn llama3_bpe_matches_llama_cpp() {
    check("llama-bpe", PreTokenizer::Llama3);
}

#[test]
fn qwen2_matches_llama_cpp() {
    check("qwen2", PreTokenizer::Qwen2);
}

#[test]
fn gpt2_matches_llama_cpp() {
    check("gpt-2", PreTokenizer::Gpt2);
}

#[test]
fn starcoder_matches_llama_cpp() {
    check("starcoder", PreTokenizer::Gpt2Digits);
}

#[test]
fn refact_matches_llama_cpp() {
    check("refact", PreTokenizer::Gpt2Digits);
}

/// SentencePiece (`tokenizer.ggml.model = llama`).
#[test]
fn sentencepiece_matches_llama_cpp() {
    check("llama-spm", PreTokenizer::Gpt2);
}

/// The crate's real model, pre-tokenizer `smollm`.
#[test]
fn smollm_matches_llama_cpp() {
    check("smollm", PreTokenizer::Gpt2Digits);
}

/// The fixture covers every vocabulary above, and nothing else.
#[test]
fn fixture_covers_all_vocabularies() {
    let fx = fixture();
    let names: Vec<&str> = fx.vocabs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "llama-bpe",
            "qwen2",
            "gpt-2",
            "starcoder",
            "refact",
            "llama-spm",
            "smollm"
        ]
    );
    assert!(fx.corpus.len() >= 60, "corpus of {}", fx.corpus.len());
}
