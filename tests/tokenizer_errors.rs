//! Tokenizers built from small hand-made GGUF files: merge priority, special
//! tokens, and a precise error for each kind of bad metadata.

use q4gpu::gguf::{Gguf, GgufWriter, Value};
use q4gpu::tokenizer::{Tokenizer, TokenizerError};

/// GPT-2 byte characters for all 256 bytes (printable ones map to themselves);
/// token id = byte value.
fn byte_tokens() -> Vec<String> {
    let kept = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut next = 256u32;
    (0..=255u8)
        .map(|b| {
            let cp = if kept(b) {
                u32::from(b)
            } else {
                next += 1;
                next - 1
            };
            char::from_u32(cp).unwrap().to_string()
        })
        .collect()
}

struct Vocab {
    tokens: Vec<String>,
    types: Vec<i32>,
    merges: Vec<String>,
}

/// 256 byte tokens, then `extra` (normal), then `<|ctl|>` (control) and `<u>` (user-defined).
fn vocab(extra: &[&str], merges: &[&str]) -> Vocab {
    let mut tokens = byte_tokens();
    tokens.extend(extra.iter().map(|s| s.to_string()));
    tokens.push("<|ctl|>".into());
    tokens.push("<u>".into());
    let mut types = vec![1; tokens.len()];
    let n = types.len();
    types[n - 2] = 3;
    types[n - 1] = 4;
    Vocab {
        tokens,
        types,
        merges: merges.iter().map(|s| s.to_string()).collect(),
    }
}

fn gguf(v: &Vocab, edit: impl FnOnce(&mut GgufWriter)) -> Gguf {
    let mut w = GgufWriter::new();
    w.add_kv("tokenizer.ggml.model", Value::from("gpt2"));
    w.add_kv("tokenizer.ggml.pre", Value::from("smollm"));
    w.add_kv(
        "tokenizer.ggml.tokens",
        Value::array(v.tokens.iter().map(String::as_str)),
    );
    w.add_kv(
        "tokenizer.ggml.token_type",
        Value::array(v.types.iter().copied()),
    );
    w.add_kv(
        "tokenizer.ggml.merges",
        Value::array(v.merges.iter().map(String::as_str)),
    );
    w.add_kv(
        "tokenizer.ggml.eos_token_id",
        Value::U32(v.tokens.len() as u32 - 2),
    );
    edit(&mut w);
    let mut bytes = Vec::new();
    w.write_to(&mut bytes).unwrap();
    Gguf::from_bytes(bytes).unwrap()
}

fn build(v: &Vocab, edit: impl FnOnce(&mut GgufWriter)) -> Result<Tokenizer, TokenizerError> {
    Tokenizer::from_gguf(&gguf(v, edit))
}

const AB: u32 = 256;
const BC: u32 = 257;
const ABC: u32 = 258;

#[test]
fn lowest_rank_merges_first() {
    // "b c" outranks "a b": abc → a + bc → abc via "a bc".
    let t = build(
        &vocab(&["ab", "bc", "abc"], &["b c", "a b", "a bc"]),
        |_| {},
    )
    .unwrap();
    assert_eq!(t.encode("abc", false), [ABC]);
    assert_eq!(t.encode("abab", false), [AB, AB]);
    // Without "a bc", "bc" wins and stays.
    let t = build(&vocab(&["ab", "bc", "abc"], &["b c", "a b"]), |_| {}).unwrap();
    assert_eq!(t.encode("abc", false), [u32::from(b'a'), BC]);
}

#[test]
fn specials_follow_llama_cpp_rules() {
    let v = vocab(&["ab"], &["a b"]);
    let t = build(&v, |_| {}).unwrap();
    let ctl = v.tokens.len() as u32 - 2;
    let user = ctl + 1;
    // Control tokens only with parse_special; user-defined always.
    assert_eq!(t.encode("ab<|ctl|>ab", true), [AB, ctl, AB]);
    assert!(!t.encode("<|ctl|>", false).contains(&ctl));
    assert_eq!(t.encode("<u>", false), [user]);
    assert_eq!(t.decode(&[AB, ctl, user]), b"ab<|ctl|><u>");
    assert!(t.is_stop(ctl)); // the EOS id
    assert_eq!(t.bos_id(), None);
    assert!(!t.add_bos());
}

#[test]
fn missing_and_mistyped_keys_are_named() {
    let v = vocab(&[], &[]);
    let mut w = GgufWriter::new();
    w.add_kv("tokenizer.ggml.model", Value::from("gpt2"));
    let mut bytes = Vec::new();
    w.write_to(&mut bytes).unwrap();
    let e = Tokenizer::from_gguf(&Gguf::from_bytes(bytes).unwrap()).unwrap_err();
    assert!(
        matches!(&e, TokenizerError::MissingKey(k) if k == "tokenizer.ggml.tokens"),
        "{e}"
    );

    let e = build(&v, |w| {
        w.add_kv("tokenizer.ggml.bos_token_id", Value::from("one"))
    })
    .unwrap_err();
    assert!(
        matches!(&e, TokenizerError::Metadata { key, .. } if key == "tokenizer.ggml.bos_token_id"),
        "{e}"
    );
    assert!(e.to_string().contains("tokenizer.ggml.bos_token_id"));
}

#[test]
fn bad_vocabularies_are_rejected() {
    let v = vocab(&["ab"], &["a b"]);
    let e = build(&v, |w| {
        w.add_kv("tokenizer.ggml.model", Value::from("bert"))
    })
    .unwrap_err();
    assert!(
        matches!(&e, TokenizerError::UnsupportedModel(m) if m == "bert"),
        "{e}"
    );

    // A SentencePiece vocabulary needs one score per token.
    let e = build(&v, |w| {
        w.add_kv("tokenizer.ggml.model", Value::from("llama"));
        w.add_kv("tokenizer.ggml.scores", Value::Array(vec![Value::F32(0.0)]));
    })
    .unwrap_err();
    assert!(
        matches!(&e, TokenizerError::ScoreCount { scores: 1, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("tokenizer.ggml.scores"), "{e}");

    let e = build(&v, |w| {
        w.add_kv("tokenizer.ggml.pre", Value::from("klingon"))
    })
    .unwrap_err();
    assert!(
        matches!(&e, TokenizerError::UnsupportedPreTokenizer(p) if p == "klingon"),
        "{e}"
    );

    let e = build(&vocab(&["ab"], &["a zz"]), |_| {}).unwrap_err();
    assert!(
        matches!(&e, TokenizerError::MergeUnknownToken { index: 0, part, .. } if part == "zz"),
        "{e}"
    );

    let e = build(&vocab(&["ab"], &["a b", "ab"]), |_| {}).unwrap_err();
    assert!(
        matches!(&e, TokenizerError::BadMerge { index: 1, .. }),
        "{e}"
    );

    let mut short = vocab(&["ab"], &["a b"]);
    short.types.pop();
    let e = build(&short, |_| {}).unwrap_err();
    assert!(matches!(e, TokenizerError::TokenTypeCount { .. }), "{e}");

    let e = build(&v, |w| {
        w.add_kv("tokenizer.ggml.bos_token_id", Value::U32(1_000_000))
    })
    .unwrap_err();
    assert!(
        matches!(
            &e,
            TokenizerError::SpecialIdOutOfRange { id: 1_000_000, .. }
        ),
        "{e}"
    );

    let mut w = GgufWriter::new();
    w.add_kv("tokenizer.ggml.model", Value::from("gpt2"));
    w.add_kv("tokenizer.ggml.tokens", Value::Array(vec![]));
    w.add_kv("tokenizer.ggml.merges", Value::Array(vec![]));
    let mut bytes = Vec::new();
    w.write_to(&mut bytes).unwrap();
    let e = Tokenizer::from_gguf(&Gguf::from_bytes(bytes).unwrap()).unwrap_err();
    assert!(matches!(e, TokenizerError::EmptyVocab), "{e}");
}

#[test]
fn merge_result_outside_vocab_still_chains() {
    // "a b" makes "ab" (not a token); "ab c" makes "abc" (a token).
    let v = vocab(&["abc"], &["a b", "ab c"]);
    let t = build(&v, |_| {}).unwrap();
    let abc = 256;
    assert_eq!(t.encode("abc", false), [abc]);
    // A leftover non-token merge result falls back to its (printable) bytes.
    assert_eq!(t.encode("ab", false), [u32::from(b'a'), u32::from(b'b')]);
}

/// End of generation as llama.cpp decides it (0c1e57098): named texts, the
/// FIM pad/repo/separator tokens, the metadata's EOS/EOT/EOM ids, and its
/// two exceptions (`<|end|>` beside `<|return|>` + `<|call|>`, `</s>` beside
/// `<|tool_response>`). The seven real vocabularies are compared with
/// llama.cpp's own list in tokenizer_tricky.rs.
#[test]
fn end_of_generation_follows_llama_cpp() {
    use q4gpu::tokenizer::TokenizerSpec;
    let tokenizer = |texts: &[&str], eom: Option<u32>| {
        let mut tokens: Vec<String> = vec!["a".into(), "b".into()];
        tokens.extend(texts.iter().map(|t| t.to_string()));
        Tokenizer::from_spec(TokenizerSpec {
            model: "gpt2".into(),
            tokens,
            eos_id: Some(1),
            eom_id: eom,
            ..Default::default()
        })
        .expect("tokenizer")
    };
    let t = tokenizer(&["<|end|>", "<fim_pad>", "<|repo_name|>", "x"], Some(5));
    assert_eq!(t.stop_ids(), [1, 2, 3, 4, 5]);
    let t = tokenizer(&["<|end|>", "<|return|>", "<|call|>"], None);
    assert_eq!(
        t.stop_ids(),
        [1, 3, 4],
        "<|end|> stays text beside <|return|> and <|call|>"
    );
    let t = tokenizer(&["<|end|>", "<|call|>"], None);
    assert_eq!(t.stop_ids(), [1, 2, 3]);
    let t = tokenizer(&["</s>", "<|tool_response>"], None);
    assert_eq!(
        t.stop_ids(),
        [1, 3],
        "</s> is a normal token beside <|tool_response>"
    );
    let t = tokenizer(&["</s>"], None);
    assert_eq!(t.stop_ids(), [1, 2]);
}
