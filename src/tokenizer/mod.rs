//! Byte-level BPE tokenizer (GPT-2 style, as llama.cpp's `gpt2` vocab type) built
//! from GGUF metadata, with special-token parsing, exact decoding, streaming
//! decoding and ChatML prompts.
//!
//! Token ids match llama.cpp's for the same text: pre-tokenization follows the
//! regex list llama.cpp uses for the vocabulary's `tokenizer.ggml.pre`, merges
//! apply by rank, and special tokens are split out first, longest text first.

mod bpe;
mod bytes;
mod chat;
mod pretok;
mod spm;
mod stream;

use std::collections::HashMap;

use crate::gguf::{Gguf, GgufError};

pub use chat::{ChatOptions, ChatTurn, Role};
pub use pretok::PreTokenizer;
pub use stream::StreamDecoder;

/// Errors from building or using the tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("metadata key `{0}` is missing")]
    MissingKey(String),
    /// The GGUF error is in the message, not chained as a source.
    #[error("metadata key `{key}`: {error}")]
    Metadata { key: String, error: GgufError },
    #[error("tokenizer.ggml.model is `{0}`; supported: `gpt2` (byte-level BPE), `llama` (SentencePiece)")]
    UnsupportedModel(String),
    #[error("tokenizer.ggml.pre is `{0}`; supported: {SUPPORTED_PRE}")]
    UnsupportedPreTokenizer(String),
    #[error("tokenizer.ggml.tokens is empty")]
    EmptyVocab,
    #[error("tokenizer.ggml.token_type has {types} entries but there are {tokens} tokens")]
    TokenTypeCount { tokens: usize, types: usize },
    #[error("tokenizer.ggml.scores has {scores} entries but there are {tokens} tokens")]
    ScoreCount { tokens: usize, scores: usize },
    #[error("tokenizer.ggml.merges[{index}] = {merge:?} is not two parts separated by a space")]
    BadMerge { index: usize, merge: String },
    #[error("tokenizer.ggml.merges[{index}] = {merge:?} references `{part}`, which is neither a token nor a merge result")]
    MergeUnknownToken {
        index: usize,
        merge: String,
        part: String,
    },
    #[error("tokenizer.chat_template: {0}")]
    ChatTemplate(String),
    #[error("{key} = {id} is outside the vocabulary of {n_vocab} tokens")]
    SpecialIdOutOfRange {
        key: String,
        id: u32,
        n_vocab: usize,
    },
}

const SUPPORTED_PRE: &str = "gpt2, gpt-2, phi-2; smollm, starcoder, refact, command-r, codeshell, exaone, minerva (digits isolated); \
     llama-bpe, llama3, llama-v3, falcon3, falcon-h1, pixtral, midm-2.0, lfm2 (Llama 3); \
     qwen2, deepseek-r1-qwen, kormo, megrez, stablelm2, hunyuan (Qwen2)";

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    /// Map the GGUF integer; values outside 1..=6 count as `Normal`, as in llama.cpp.
    pub fn from_i32(v: i32) -> TokenType {
        match v {
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Normal,
        }
    }
}

/// Everything a tokenizer is built from, as plain data (what the GGUF holds).
#[derive(Clone, Debug, Default)]
pub struct TokenizerSpec {
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE) or `llama` (SentencePiece).
    pub model: String,
    /// `tokenizer.ggml.pre`; `None` means `gpt2` (see [`PreTokenizer::from_name`]).
    pub pre: Option<String>,
    /// Token strings in GPT-2 byte characters (special tokens as literal text).
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type` values; empty means all normal.
    pub token_types: Vec<i32>,
    /// Merge rules `"left right"`, highest priority first (BPE).
    pub merges: Vec<String>,
    /// `tokenizer.ggml.scores`: each token's merge priority (SentencePiece;
    /// empty means all 0).
    pub scores: Vec<f32>,
    /// `tokenizer.ggml.add_space_prefix` (SentencePiece; default true).
    pub add_space_prefix: Option<bool>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk_id: Option<u32>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// `tokenizer.ggml.eot_token_id` (end of turn), if given.
    pub eot_id: Option<u32>,
    /// `tokenizer.ggml.eom_token_id` (end of message), if given.
    pub eom_id: Option<u32>,
    /// `tokenizer.ggml.fim_pad_token_id`, `fim_rep_token_id` and
    /// `fim_sep_token_id` (fill in the middle), if given.
    pub fim_pad_id: Option<u32>,
    pub fim_rep_id: Option<u32>,
    pub fim_sep_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`; when the file lacks it,
    /// [`TokenizerSpec::from_gguf`] takes llama.cpp's default for the
    /// pre-tokenizer type (true for Llama 3's).
    pub add_bos: bool,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
}

/// A special token matched in text, longest text first.
#[derive(Debug)]
struct Special {
    id: u32,
    text: String,
    /// Control/unknown tokens are only matched when parsing special text.
    needs_parse_special: bool,
}

/// Byte-level BPE tokenizer. See the module docs.
#[derive(Debug)]
pub struct Tokenizer {
    /// Raw bytes of each token.
    token_bytes: Vec<Vec<u8>>,
    /// Decoded bytes → lowest id with those bytes.
    by_bytes: HashMap<Vec<u8>, u32>,
    byte_ids: [Option<u32>; 256],
    merges: bpe::Merges,
    specials: Vec<Special>,
    pre: PreTokenizer,
    /// Token text → id, later duplicates winning (llama.cpp's map), for
    /// SentencePiece and `ignore_merges` vocabularies; empty for the others.
    by_text: HashMap<String, u32>,
    /// GPT-2's byte → character table.
    byte_chars: [char; 256],
    /// SentencePiece settings for a `llama` vocabulary; `None`: byte-level BPE.
    spm: Option<spm::Spm>,
    bos: Option<u32>,
    eos: Option<u32>,
    stop: Vec<u32>,
    add_bos: bool,
    chat_template: Option<String>,
    default_system: Option<String>,
}

/// Token texts llama.cpp (0c1e57098, `llama_vocab::impl::load`) ends
/// generation at when present (see [`eog_ids`]).
const EOG_TEXTS: [&str; 22] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// The fill-in-the-middle pad, repository and file-separator texts: llama.cpp
/// ends generation at one token of each, the metadata's id or else a token
/// with one of these texts.
const FIM_EOG_TEXTS: [&[&str]; 3] = [
    &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    &[
        "<|fim_repo|>",
        "<|repo_name|>",
        "<fim-repo>",
        "<REPO>",
        "<reponame>",
    ],
    &["<|file_sep|>"],
];

/// The ids generation ends at, as llama.cpp makes them: the FIM pad, repo
/// and separator tokens, every token named in [`EOG_TEXTS`], and the EOS,
/// EOT and EOM ids of the metadata; then its two exceptions: `<|end|>` is
/// not one where `<|return|>` and `<|call|>` (or `<|call|>`/`<|calls|>` and
/// `<|flush|>`) are, and `</s>` is not one where `<|tool_response>` or
/// `<|plamo:eos|>` is. Ascending. Where a vocabulary holds several FIM
/// candidates llama.cpp takes whichever its hash map yields first; this takes
/// the first in the list.
fn eog_ids(spec: &TokenizerSpec, by_text: &HashMap<&str, u32>) -> Vec<u32> {
    let find = |texts: &[&str]| texts.iter().find_map(|t| by_text.get(t).copied());
    let fim = [spec.fim_pad_id, spec.fim_rep_id, spec.fim_sep_id];
    let mut eog: Vec<u32> = fim
        .iter()
        .zip(FIM_EOG_TEXTS)
        .filter_map(|(given, texts)| given.or_else(|| find(texts)))
        .chain(EOG_TEXTS.iter().filter_map(|t| by_text.get(t).copied()))
        .chain(
            [spec.eos_id, spec.eot_id, spec.eom_id]
                .into_iter()
                .flatten(),
        )
        .collect();
    eog.sort_unstable();
    eog.dedup();
    let text = |id: u32| spec.tokens.get(id as usize).map_or("", String::as_str);
    let has = |t: &str| eog.iter().any(|&id| text(id) == t);
    let call = has("<|call|>") || has("<|calls|>");
    let drop_end = has("<|end|>") && call && (has("<|return|>") || has("<|flush|>"));
    let drop_s = has("</s>") && (has("<|tool_response>") || has("<|plamo:eos|>"));
    eog.retain(|&id| !(drop_end && text(id) == "<|end|>" || drop_s && text(id) == "</s>"));
    eog
}

/// Token texts llama.cpp (0c1e57098, `llama_vocab::impl::load`) makes control
/// tokens whatever their type in the file: its end-of-turn, fill-in-the-middle
/// and end-of-generation names. E.g. Qwen2's normal `</s>` is then matched
/// only with parse_special.
const CONTROL_LOOKING_TEXTS: [&str; 57] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
    "<|eom_id|>",
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
    "<|fim_pad|>",
    "<fim-pad>",
    "<fim_pad>",
    "<PAD>",
    "[PAD]",
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
    "<|file_sep|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "</s>",
    "[EOS]",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "[e~[",
];

/// The type llama.cpp gives a token: its type in the file, except that a
/// text in [`CONTROL_LOOKING_TEXTS`] makes it a control token.
fn control_looking(t: TokenType, text: &str) -> TokenType {
    match t {
        TokenType::Control | TokenType::Unknown => t,
        _ if CONTROL_LOOKING_TEXTS.contains(&text) => TokenType::Control,
        _ => t,
    }
}

/// Read `key` if present; a value of the wrong type is an error naming the key.
fn optional<'g, T>(
    g: &'g Gguf,
    key: &str,
    read: impl FnOnce(&'g Gguf, &str) -> Result<T, GgufError>,
) -> Result<Option<T>, TokenizerError> {
    if g.get(key).is_none() {
        return Ok(None);
    }
    read(g, key)
        .map(Some)
        .map_err(|error| TokenizerError::Metadata {
            key: key.to_string(),
            error,
        })
}

/// Read `key`, which must be present.
fn required<'g, T>(
    g: &'g Gguf,
    key: &str,
    read: impl FnOnce(&'g Gguf, &str) -> Result<T, GgufError>,
) -> Result<T, TokenizerError> {
    optional(g, key, read)?.ok_or_else(|| TokenizerError::MissingKey(key.to_string()))
}

impl TokenizerSpec {
    /// Collect the `tokenizer.*` metadata of a GGUF file.
    pub fn from_gguf(g: &Gguf) -> Result<TokenizerSpec, TokenizerError> {
        let strings = |v: Vec<&str>| v.into_iter().map(String::from).collect::<Vec<_>>();
        let pre = optional(g, "tokenizer.ggml.pre", Gguf::get_str)?.map(String::from);
        let model = required(g, "tokenizer.ggml.model", Gguf::get_str)?.to_string();
        let tokens = strings(required(g, "tokenizer.ggml.tokens", Gguf::get_str_array)?);
        let merges = match optional(g, "tokenizer.ggml.merges", Gguf::get_str_array)? {
            Some(m) => strings(m),
            None if model == "llama" => Vec::new(),
            None => return Err(TokenizerError::MissingKey("tokenizer.ggml.merges".into())),
        };
        let bos_default =
            PreTokenizer::from_name(pre.as_deref()).is_some_and(PreTokenizer::adds_bos_by_default);
        Ok(TokenizerSpec {
            model,
            pre,
            tokens,
            token_types: optional(g, "tokenizer.ggml.token_type", Gguf::get_i32_array)?
                .unwrap_or_default(),
            merges,
            scores: optional(g, "tokenizer.ggml.scores", Gguf::get_f32_array)?.unwrap_or_default(),
            add_space_prefix: optional(g, "tokenizer.ggml.add_space_prefix", Gguf::get_bool)?,
            unk_id: optional(g, "tokenizer.ggml.unknown_token_id", Gguf::get_u32)?,
            bos_id: optional(g, "tokenizer.ggml.bos_token_id", Gguf::get_u32)?,
            eos_id: optional(g, "tokenizer.ggml.eos_token_id", Gguf::get_u32)?,
            eot_id: optional(g, "tokenizer.ggml.eot_token_id", Gguf::get_u32)?,
            eom_id: optional(g, "tokenizer.ggml.eom_token_id", Gguf::get_u32)?,
            fim_pad_id: optional(g, "tokenizer.ggml.fim_pad_token_id", Gguf::get_u32)?,
            fim_rep_id: optional(g, "tokenizer.ggml.fim_rep_token_id", Gguf::get_u32)?,
            fim_sep_id: optional(g, "tokenizer.ggml.fim_sep_token_id", Gguf::get_u32)?,
            add_bos: optional(g, "tokenizer.ggml.add_bos_token", Gguf::get_bool)?
                .unwrap_or(bos_default),
            chat_template: optional(g, "tokenizer.chat_template", Gguf::get_str)?.map(String::from),
        })
    }
}

/// Checks what the vocabulary data could get wrong before it is used;
/// returns the pre-tokenizer.
fn check_spec(spec: &TokenizerSpec) -> Result<PreTokenizer, TokenizerError> {
    // SentencePiece vocabularies have no pre-tokenizer (llama.cpp: `default`).
    let pre = match spec.model.as_str() {
        "gpt2" => PreTokenizer::from_name(spec.pre.as_deref()).ok_or_else(|| {
            TokenizerError::UnsupportedPreTokenizer(spec.pre.clone().unwrap_or_default())
        })?,
        "llama" => PreTokenizer::Gpt2,
        _ => return Err(TokenizerError::UnsupportedModel(spec.model.clone())),
    };
    let n = spec.tokens.len();
    if !spec.scores.is_empty() && spec.scores.len() != n {
        return Err(TokenizerError::ScoreCount {
            tokens: n,
            scores: spec.scores.len(),
        });
    }
    if n == 0 {
        return Err(TokenizerError::EmptyVocab);
    }
    if !spec.token_types.is_empty() && spec.token_types.len() != n {
        return Err(TokenizerError::TokenTypeCount {
            tokens: n,
            types: spec.token_types.len(),
        });
    }
    for (key, id) in [
        ("tokenizer.ggml.bos_token_id", spec.bos_id),
        ("tokenizer.ggml.eos_token_id", spec.eos_id),
        ("tokenizer.ggml.eot_token_id", spec.eot_id),
        ("tokenizer.ggml.eom_token_id", spec.eom_id),
        ("tokenizer.ggml.fim_pad_token_id", spec.fim_pad_id),
        ("tokenizer.ggml.fim_rep_token_id", spec.fim_rep_id),
        ("tokenizer.ggml.fim_sep_token_id", spec.fim_sep_id),
        ("tokenizer.ggml.unknown_token_id", spec.unk_id),
    ] {
        if let Some(id) = id.filter(|&id| id as usize >= n) {
            return Err(TokenizerError::SpecialIdOutOfRange {
                key: key.into(),
                id,
                n_vocab: n,
            });
        }
    }

    Ok(pre)
}

impl Tokenizer {
    /// Build from the `tokenizer.*` metadata of a GGUF file (see [`TokenizerSpec::from_gguf`]).
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::from_spec(TokenizerSpec::from_gguf(g)?)
    }

    /// Build from plain vocabulary data; checks everything the GGUF could get wrong.
    pub fn from_spec(spec: TokenizerSpec) -> Result<Tokenizer, TokenizerError> {
        let pre = check_spec(&spec)?;
        let is_spm = spec.model == "llama";
        let n = spec.tokens.len();
        let ty = |i: usize| {
            let t = spec.token_types.get(i).copied();
            let t = t.map_or(TokenType::Normal, TokenType::from_i32);
            control_looking(t, &spec.tokens[i])
        };
        // String → id, later duplicates winning (llama.cpp's map insertion).
        let mut by_text: HashMap<&str, u32> = HashMap::with_capacity(n);
        let mut token_bytes = Vec::with_capacity(n);
        let mut by_bytes = HashMap::with_capacity(n);
        let mut specials = Vec::new();
        for (i, text) in spec.tokens.iter().enumerate() {
            let id = i as u32;
            by_text.insert(text.as_str(), id);
            let t = ty(i);
            let raw = match t {
                _ if is_spm => spm::token_bytes(text, t),
                TokenType::Control | TokenType::UserDefined => text.as_bytes().to_vec(),
                _ => decode_mapped(text),
            };
            by_bytes.entry(raw.clone()).or_insert(id);
            token_bytes.push(raw);
            if matches!(
                t,
                TokenType::Control | TokenType::UserDefined | TokenType::Unknown
            ) && !text.is_empty()
            {
                specials.push(Special {
                    id,
                    text: text.clone(),
                    needs_parse_special: t != TokenType::UserDefined,
                });
            }
        }
        specials.sort_by(|a, b| b.text.len().cmp(&a.text.len()).then(a.id.cmp(&b.id)));

        let table = bytes::byte_to_char_table();
        let mut byte_ids = [None; 256];
        for (slot, c) in byte_ids.iter_mut().zip(table.iter()) {
            *slot = by_text.get(c.to_string().as_str()).copied();
        }

        let merges = build_merges(&spec.merges, &by_text, n)?;
        let spm = is_spm.then(|| spm_settings(&spec, &by_text));

        let stop = eog_ids(&spec, &by_text);

        let default_system = spec
            .chat_template
            .as_deref()
            .and_then(chat::default_system_from_template);
        Ok(Tokenizer {
            token_bytes,
            by_bytes,
            byte_ids,
            merges,
            specials,
            pre,
            byte_chars: table,
            spm,
            by_text: if pre.ignores_merges() || is_spm {
                by_text
                    .into_iter()
                    .map(|(t, id)| (t.to_string(), id))
                    .collect()
            } else {
                HashMap::new()
            },
            bos: spec.bos_id,
            eos: spec.eos_id,
            stop,
            add_bos: spec.add_bos,
            chat_template: spec.chat_template,
            default_system,
        })
    }

    /// Token ids for `text`. With `parse_special`, text of control tokens such as
    /// `<|im_start|>` becomes that token; user-defined tokens are always matched
    /// (llama.cpp's rule). Never adds BOS: see [`Tokenizer::add_bos`].
    pub fn encode(&self, text: &str, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        if let Some(spm) = &self.spm {
            // A space goes before text at the start and after a special token.
            let mut after_special = true;
            for frag in self.split_special(text, parse_special) {
                match frag {
                    Frag::Token(id) => out.push(id),
                    Frag::Raw("") => continue, // llama.cpp has no empty fragments
                    Frag::Raw(s) => spm::encode(spm, &self.by_text, s, after_special, &mut out),
                }
                after_special = matches!(frag, Frag::Token(_));
            }
            return out;
        }
        let n_vocab = self.token_bytes.len() as u32;
        for frag in self.split_special(text, parse_special) {
            match frag {
                Frag::Token(id) => out.push(id),
                Frag::Raw(s) => {
                    for word in pretok::pre_tokenize(s, self.pre) {
                        if let Some(id) = self.whole_word_token(word) {
                            out.push(id);
                            continue;
                        }
                        bpe::encode_word(
                            word.as_bytes(),
                            &self.byte_ids,
                            &self.merges,
                            n_vocab,
                            &mut out,
                        );
                    }
                }
            }
        }
        out
    }

    /// The ids of a prompt as the model reads it: BOS first where the
    /// vocabulary adds it ([`Tokenizer::add_bos`]), then `text` with special
    /// tokens parsed (a rendered chat template's).
    pub fn encode_prompt(&self, text: &str) -> Vec<u32> {
        let mut ids: Vec<u32> = self.bos.filter(|_| self.add_bos).into_iter().collect();
        ids.extend(self.encode(text, true));
        ids
    }

    /// With `ignore_merges`, the token whose text is `word` in GPT-2 byte
    /// characters, if there is one: such a word is emitted whole, as
    /// llama.cpp does before any merge.
    fn whole_word_token(&self, word: &str) -> Option<u32> {
        if self.by_text.is_empty() {
            return None;
        }
        let mapped: String = word
            .bytes()
            .map(|b| self.byte_chars[usize::from(b)])
            .collect();
        self.by_text.get(&mapped).copied()
    }

    /// Split out special-token text: each special token in turn, longest text
    /// first, cuts every remaining raw fragment where it occurs.
    fn split_special<'a>(&self, text: &'a str, parse_special: bool) -> Vec<Frag<'a>> {
        let mut frags = vec![Frag::Raw(text)];
        for sp in &self.specials {
            if sp.needs_parse_special && !parse_special {
                continue;
            }
            if !frags
                .iter()
                .any(|f| matches!(f, Frag::Raw(s) if s.contains(sp.text.as_str())))
            {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                match f {
                    Frag::Token(_) => next.push(f),
                    Frag::Raw(mut rest) => {
                        while let Some(p) = rest.find(sp.text.as_str()) {
                            let (before, after) = rest.split_at(p);
                            if !before.is_empty() {
                                next.push(Frag::Raw(before));
                            }
                            next.push(Frag::Token(sp.id));
                            rest = after.get(sp.text.len()..).unwrap_or("");
                        }
                        if !rest.is_empty() {
                            next.push(Frag::Raw(rest));
                        }
                    }
                }
            }
            frags = next;
        }
        frags
    }

    /// The bytes of `ids` concatenated (special tokens as their text). Ids
    /// outside the vocabulary contribute nothing.
    pub fn decode(&self, ids: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        for &id in ids {
            if let Some(b) = self.token_bytes(id) {
                out.extend_from_slice(b);
            }
        }
        out
    }

    /// [`Tokenizer::decode`] as text, invalid UTF-8 replaced by U+FFFD.
    pub fn decode_lossy(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.decode(ids)).into_owned()
    }

    /// Raw bytes of one token, `None` outside the vocabulary.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.token_bytes.get(id as usize).map(Vec::as_slice)
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// How this vocabulary splits text into words before BPE.
    pub fn pre_tokenizer(&self) -> PreTokenizer {
        self.pre
    }

    /// Whether prompts should start with BOS (`tokenizer.ggml.add_bos_token`;
    /// false for SmolLM2). Callers prepend [`Tokenizer::bos_id`] themselves.
    pub fn add_bos(&self) -> bool {
        self.add_bos && self.bos.is_some()
    }

    /// The id of the token whose decoded text is exactly `text` (lowest id if
    /// several), e.g. `"<|im_end|>"` or `" Hello"`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.by_bytes.get(text.as_bytes()).copied()
    }

    /// Whether generation should stop at `id`: EOS, EOT, or an end-of-turn
    /// token such as `<|im_end|>` / `<|endoftext|>` (as llama.cpp's EOG set).
    pub fn is_stop(&self, id: u32) -> bool {
        self.stop.binary_search(&id).is_ok()
    }

    /// All stop ids, ascending.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop
    }

    /// `tokenizer.chat_template`, if the file has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The system prompt the chat template inserts when none is given.
    pub fn default_system_prompt(&self) -> Option<&str> {
        self.default_system.as_deref()
    }

    /// The prompt for `system` (if any) followed by `history`, ending with
    /// the assistant's header: [`Tokenizer::render_chat`] with default options.
    /// Encode the result with `parse_special = true`.
    pub fn chat_prompt(
        &self,
        system: Option<&str>,
        history: &[ChatTurn],
    ) -> Result<String, TokenizerError> {
        let mut messages = Vec::with_capacity(history.len() + 1);
        if let Some(s) = system {
            messages.push(ChatTurn::new(Role::System, s));
        }
        messages.extend_from_slice(history);
        self.render_chat(&messages, &ChatOptions::default())
    }

    /// `messages` rendered as the model expects them: through the file's
    /// `tokenizer.chat_template` as llama.cpp renders it (variables
    /// `messages`, `bos_token`, `eos_token`, `add_generation_prompt`,
    /// `enable_thinking`; a leading BOS text dropped when the tokenizer adds
    /// BOS itself, so the prompt does not start with two), or as ChatML with
    /// the template's default system turn when the file has no template.
    /// Fails with the template's error (a `raise_exception`, a syntax error).
    pub fn render_chat(
        &self,
        messages: &[ChatTurn],
        opts: &ChatOptions,
    ) -> Result<String, TokenizerError> {
        let Some(template) = &self.chat_template else {
            let mut out = chat::render(self.default_system.as_deref(), messages);
            if !opts.add_generation_prompt {
                out.truncate(out.len() - "<|im_start|>assistant\n".len());
            }
            return Ok(out);
        };
        let text = |id: Option<u32>| {
            id.and_then(|i| self.token_bytes(i))
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        let (bos, eos) = (text(self.bos), text(self.eos));
        let out = chat::render_template(template, messages, (&bos, &eos), opts)
            .map_err(TokenizerError::ChatTemplate)?;
        Ok(match out.strip_prefix(bos.as_str()) {
            Some(rest) if self.add_bos && !bos.is_empty() => rest.to_string(),
            _ => out,
        })
    }
}

enum Frag<'a> {
    Raw(&'a str),
    Token(u32),
}

/// The SentencePiece settings of a `llama` vocabulary (`by_text`: token
/// text → id).
fn spm_settings(spec: &TokenizerSpec, by_text: &HashMap<&str, u32>) -> spm::Spm {
    let mut byte_ids = [None; 256];
    for (b, slot) in byte_ids.iter_mut().enumerate() {
        *slot = by_text.get(format!("<0x{b:02X}>").as_str()).copied();
    }
    spm::Spm {
        scores: if spec.scores.is_empty() {
            vec![0.0; spec.tokens.len()]
        } else {
            spec.scores.clone()
        },
        add_space_prefix: spec.add_space_prefix.unwrap_or(true),
        byte_ids,
        unk: spec.unk_id,
    }
}

/// Bytes of a token written in GPT-2 characters; a character outside that
/// alphabet contributes its own UTF-8 bytes.
fn decode_mapped(text: &str) -> Vec<u8> {
    bytes::decode_token_text(text).unwrap_or_else(|| {
        let mut out = Vec::with_capacity(text.len());
        for c in text.chars() {
            match bytes::char_to_byte(c) {
                Some(b) => out.push(b),
                None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        out
    })
}

/// Resolve merge rules to ids. Results that are not tokens get synthetic ids
/// above the vocabulary so later merges can still build on them.
fn build_merges(
    merges: &[String],
    by_text: &HashMap<&str, u32>,
    n_vocab: usize,
) -> Result<bpe::Merges, TokenizerError> {
    let mut parts = Vec::with_capacity(merges.len());
    let mut synthetic_ids: HashMap<String, u32> = HashMap::new();
    let mut out = bpe::Merges::default();
    for (index, m) in merges.iter().enumerate() {
        // Split at the first space after the first character (llama.cpp's rule).
        let split = m.char_indices().skip(1).find(|&(_, c)| c == ' ');
        let Some((p, _)) = split else {
            return Err(TokenizerError::BadMerge {
                index,
                merge: m.clone(),
            });
        };
        let (left, right) = (&m[..p], &m[p + 1..]);
        if right.is_empty() {
            return Err(TokenizerError::BadMerge {
                index,
                merge: m.clone(),
            });
        }
        let merged = format!("{left}{right}");
        let merged_id = match by_text.get(merged.as_str()) {
            Some(&id) => id,
            None => {
                let next = (n_vocab + out.synthetic.len()) as u32;
                *synthetic_ids.entry(merged.clone()).or_insert_with(|| {
                    out.synthetic.push(decode_mapped(&merged));
                    next
                })
            }
        };
        parts.push((left, right, merged_id));
    }
    for (index, (left, right, merged_id)) in parts.into_iter().enumerate() {
        let resolve = |part: &str| {
            by_text
                .get(part)
                .or_else(|| synthetic_ids.get(part))
                .copied()
                .ok_or_else(|| TokenizerError::MergeUnknownToken {
                    index,
                    merge: merges.get(index).cloned().unwrap_or_default(),
                    part: part.to_string(),
                })
        };
        let key = (resolve(left)?, resolve(right)?);
        out.rules.entry(key).or_insert((index as u32, merged_id));
    }
    Ok(out)
}

/// Parses a list of token ids as a user types it: `1,2,3` or the JSON list
/// the tokenize example prints (`[1, 2, 3]`); brackets and spaces optional.
/// The error names the item that is not an id.
pub fn parse_id_list(s: &str) -> Result<Vec<u32>, String> {
    let t = s.trim();
    let t = t
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(t);
    t.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.parse::<u32>().map_err(|e| format!("token id '{t}': {e}")))
        .collect()
}
