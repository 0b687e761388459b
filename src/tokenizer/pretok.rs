//! Pre-tokenization: splitting text into words before BPE, as llama.cpp does for
//! byte-level BPE vocabularies.
//!
//! The GPT-2 pattern `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//! needs a look-ahead, so it is written here as a scanner over character classes.
//! The `smollm` family first isolates every `\p{N}` character and then applies
//! the GPT-2 pattern to each piece separately.
//!
//! Llama 3's pattern (`llama-bpe` and the names llama.cpp maps to it)
//! `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
//! is a second scanner; Qwen2's is the same with `\p{N}` for `\p{N}{1,3}`.

use unicode_general_category::{get_general_category, GeneralCategory as Gc};

/// The classes the GPT-2 pattern distinguishes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Space,
    Letter,
    Number,
    Other,
}

fn class_of(c: char) -> Class {
    // White_Space property (same set as `\s` in the pattern and llama.cpp's table).
    if c.is_whitespace() {
        return Class::Space;
    }
    match get_general_category(c) {
        Gc::UppercaseLetter
        | Gc::LowercaseLetter
        | Gc::TitlecaseLetter
        | Gc::ModifierLetter
        | Gc::OtherLetter => Class::Letter,
        Gc::DecimalNumber | Gc::LetterNumber | Gc::OtherNumber => Class::Number,
        _ => Class::Other,
    }
}

/// Whether `c` is in `\p{N}`.
pub(crate) fn is_number(c: char) -> bool {
    class_of(c) == Class::Number
}

/// Split `text` into pieces where each `\p{N}` character stands alone; the
/// pieces cover `text` exactly, in order.
pub(crate) fn split_digits(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if is_number(c) {
            if start < i {
                out.push(&text[start..i]);
            }
            let end = i + c.len_utf8();
            out.push(&text[i..end]);
            start = end;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// The characters of a text with their byte offsets and classes, indexed by
/// char position (past the end: `None`, offset = the text's length).
struct Chars {
    chars: Vec<(usize, char, Class)>,
    len: usize,
}

impl Chars {
    fn new(text: &str) -> Chars {
        let chars = text
            .char_indices()
            .map(|(i, c)| (i, c, class_of(c)))
            .collect();
        Chars {
            chars,
            len: text.len(),
        }
    }
    fn n(&self) -> usize {
        self.chars.len()
    }
    /// Byte offset of char index k (k == n means the end of text).
    fn off(&self, k: usize) -> usize {
        self.chars.get(k).map_or(self.len, |&(o, _, _)| o)
    }
    fn ch(&self, k: usize) -> Option<char> {
        self.chars.get(k).map(|&(_, c, _)| c)
    }
    fn cls(&self, k: usize) -> Option<Class> {
        self.chars.get(k).map(|&(_, _, c)| c)
    }
    fn newline(&self, k: usize) -> bool {
        matches!(self.ch(k), Some('\r' | '\n'))
    }
}

/// Split `text` by the GPT-2 pattern, appending the words (which cover `text`
/// exactly, in order) to `out`. The end of `text` counts as end of input for
/// the `\s+(?!\S)` look-ahead.
pub(crate) fn split_gpt2<'a>(text: &'a str, out: &mut Vec<&'a str>) {
    let cs = Chars::new(text);
    let n = cs.n();
    let off = |k: usize| cs.off(k);
    let ch = |k: usize| cs.ch(k);
    let cls = |k: usize| cs.cls(k);

    let mut pos = 0;
    while pos < n {
        let start = pos;
        let c = ch(pos);
        // 's|'t|'re|'ve|'m|'ll|'d  (case-sensitive, like the pattern)
        if c == Some('\'') {
            match (ch(pos + 1), ch(pos + 2)) {
                (Some('s' | 't' | 'm' | 'd'), _) => {
                    pos += 2;
                    out.push(&text[off(start)..off(pos)]);
                    continue;
                }
                (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l')) => {
                    pos += 3;
                    out.push(&text[off(start)..off(pos)]);
                    continue;
                }
                _ => {}
            }
        }
        // An optional single ASCII space may lead a letter/number/other run.
        let lead = usize::from(c == Some(' '));
        let run_class = cls(pos + lead);
        if let Some(rc @ (Class::Letter | Class::Number | Class::Other)) = run_class {
            pos += lead;
            while cls(pos) == Some(rc) {
                pos += 1;
            }
            out.push(&text[off(start)..off(pos)]);
            continue;
        }
        // Whitespace run: \s+(?!\S) leaves the last space for the next word when a
        // non-space follows; otherwise \s+ takes the whole run.
        let mut end = pos;
        while cls(end) == Some(Class::Space) {
            end += 1;
        }
        let ws = end - pos;
        if ws > 1 && end < n {
            pos = end - 1;
        } else if ws > 0 {
            pos = end;
        } else {
            // Unreachable with the classes above; advance to stay total.
            pos += 1;
        }
        out.push(&text[off(start)..off(pos)]);
    }
}

/// Split `text` by Llama 3's pattern with digit runs of at most `max_digits`
/// (3: Llama 3; 1: Qwen2), appending the words to `out` as
/// [`split_gpt2`] does. The end of `text` ends every run and counts as end
/// of input for `\s+(?!\S)`.
pub(crate) fn split_llama3<'a>(text: &'a str, max_digits: usize, out: &mut Vec<&'a str>) {
    let cs = Chars::new(text);
    let mut pos = 0;
    while pos < cs.n() {
        let start = pos;
        pos = llama3_word_end(&cs, pos, max_digits).max(pos + 1);
        out.push(&text[cs.off(start)..cs.off(pos)]);
    }
}

/// Where the Llama 3 word starting at char `pos` ends (a char index).
fn llama3_word_end(cs: &Chars, pos: usize, max_digits: usize) -> usize {
    let ch = |k: usize| cs.ch(k);
    let cls = |k: usize| cs.cls(k);
    let newline = |k: usize| cs.newline(k);
    let c = ch(pos);
    // (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if c == Some('\'') {
        let lower = |k: usize| ch(k).map(|c| c.to_ascii_lowercase());
        match (lower(pos + 1), lower(pos + 2)) {
            (Some('s' | 't' | 'm' | 'd'), _) => return pos + 2,
            (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l')) => {
                return pos + 3
            }
            _ => {}
        }
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if !newline(pos)
        && cls(pos) != Some(Class::Number)
        && (cls(pos) == Some(Class::Letter) || cls(pos + 1) == Some(Class::Letter))
    {
        let mut end = pos + 1;
        while cls(end) == Some(Class::Letter) {
            end += 1;
        }
        return end;
    }
    // \p{N}{1,max_digits}
    if cls(pos) == Some(Class::Number) {
        let mut end = pos + 1;
        while end - pos < max_digits && cls(end) == Some(Class::Number) {
            end += 1;
        }
        return end;
    }
    // ' '?[^\s\p{L}\p{N}]+[\r\n]*
    let lead = usize::from(c == Some(' '));
    if cls(pos + lead) == Some(Class::Other) {
        let mut end = pos + lead;
        while cls(end) == Some(Class::Other) {
            end += 1;
        }
        while newline(end) {
            end += 1;
        }
        return end;
    }
    // Whitespace: \s*[\r\n]+ up to the run's last newline, else \s+(?!\S)
    // (the last space left for the next word when one follows), else \s+.
    let mut end = pos;
    let mut last_newline = None;
    while cls(end) == Some(Class::Space) {
        if newline(end) {
            last_newline = Some(end + 1);
        }
        end += 1;
    }
    if let Some(e) = last_newline {
        e
    } else if end - pos > 1 && ch(end).is_some() {
        end - 1
    } else {
        end
    }
}

/// How a vocabulary's text is split into words before BPE: llama.cpp's
/// pre-tokenizer types this crate implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2's pattern (`gpt2`, `gpt-2`, `phi-2`, or no `tokenizer.ggml.pre`).
    Gpt2,
    /// Every `\p{N}` alone, then GPT-2's pattern (`smollm`, `starcoder`, ...).
    Gpt2Digits,
    /// Llama 3's pattern (`llama-bpe`, `llama3`, `falcon3`, ...).
    Llama3,
    /// Llama 3's pattern with every digit alone (`qwen2`, `deepseek-r1-qwen`, ...).
    Qwen2,
}

impl PreTokenizer {
    /// The type llama.cpp gives `tokenizer.ggml.pre` = `name` (`None`: GPT-2),
    /// or `None` for one not implemented here.
    pub fn from_name(name: Option<&str>) -> Option<PreTokenizer> {
        Some(match name {
            None | Some("gpt2" | "gpt-2" | "phi-2") => PreTokenizer::Gpt2,
            Some(
                "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
                | "minerva",
            ) => PreTokenizer::Gpt2Digits,
            Some(
                "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
                | "midm-2.0" | "lfm2",
            ) => PreTokenizer::Llama3,
            Some("qwen2" | "deepseek-r1-qwen" | "kormo" | "megrez" | "stablelm2" | "hunyuan") => {
                PreTokenizer::Qwen2
            }
            Some(_) => return None,
        })
    }

    /// Words that are themselves tokens are emitted whole, without BPE
    /// merges (llama.cpp's `ignore_merges`, set for the Llama 3 type).
    pub fn ignores_merges(self) -> bool {
        self == PreTokenizer::Llama3
    }

    /// Whether a vocabulary of this type starts prompts with BOS when its
    /// file does not say (`tokenizer.ggml.add_bos_token` absent).
    pub fn adds_bos_by_default(self) -> bool {
        self == PreTokenizer::Llama3
    }
}

/// Full pre-tokenization of a piece of ordinary (non-special) text.
pub(crate) fn pre_tokenize(text: &str, pre: PreTokenizer) -> Vec<&str> {
    let mut out = Vec::new();
    match pre {
        PreTokenizer::Gpt2 => split_gpt2(text, &mut out),
        PreTokenizer::Gpt2Digits => {
            for piece in split_digits(text) {
                split_gpt2(piece, &mut out);
            }
        }
        PreTokenizer::Llama3 => split_llama3(text, 3, &mut out),
        PreTokenizer::Qwen2 => split_llama3(text, 1, &mut out),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<&str> {
        pre_tokenize(s, PreTokenizer::Gpt2Digits)
    }

    #[test]
    fn pieces_cover_text() {
        for s in [
            "Hello  world\n\n x",
            "a1b22",
            " 's 'S 'll",
            "日本 語!!  ",
            "\t\tx",
            "",
        ] {
            assert_eq!(words(s).concat(), s);
            assert!(words(s).iter().all(|w| !w.is_empty()));
        }
    }

    #[test]
    fn gpt2_rules() {
        assert_eq!(words("Hello world"), ["Hello", " world"]);
        assert_eq!(words("hello   world"), ["hello", "  ", " world"]);
        assert_eq!(words("it's"), ["it", "'s"]);
        assert_eq!(words("IT'S"), ["IT", "'", "S"]);
        assert_eq!(words("you'll"), ["you", "'ll"]);
        assert_eq!(words("a\tb"), ["a", "\t", "b"]);
        assert_eq!(words("end  "), ["end", "  "]);
        assert_eq!(words("x!!! y"), ["x", "!!!", " y"]);
        assert_eq!(words("a\n\nb"), ["a", "\n", "\n", "b"]);
    }

    #[test]
    fn digits_isolated() {
        assert_eq!(words("x123"), ["x", "1", "2", "3"]);
        assert_eq!(words("a 1"), ["a", " ", "1"]);
        assert_eq!(words("½²"), ["½", "²"]);
        assert_eq!(
            pre_tokenize("x123 45", PreTokenizer::Gpt2),
            ["x", "123", " 45"]
        );
    }
}
