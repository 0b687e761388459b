//! Pre-tokenization: splitting text into words before BPE, as llama.cpp does for
//! byte-level BPE vocabularies.
//!
//! The GPT-2 pattern `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//! needs a look-ahead, so it is written here as a scanner over character classes.
//! The `smollm` family first isolates every `\p{N}` character and then applies
//! the GPT-2 pattern to each piece separately.

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

/// Split `text` by the GPT-2 pattern, appending the words (which cover `text`
/// exactly, in order) to `out`. The end of `text` counts as end of input for
/// the `\s+(?!\S)` look-ahead.
pub(crate) fn split_gpt2<'a>(text: &'a str, out: &mut Vec<&'a str>) {
    let chars: Vec<(usize, char, Class)> = text
        .char_indices()
        .map(|(i, c)| (i, c, class_of(c)))
        .collect();
    let n = chars.len();
    // Byte offset of char index k (k == n means the end of text).
    let off = |k: usize| chars.get(k).map_or(text.len(), |&(o, _, _)| o);
    let ch = |k: usize| chars.get(k).map(|&(_, c, _)| c);
    let cls = |k: usize| chars.get(k).map(|&(_, _, c)| c);

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

/// Full pre-tokenization of a piece of ordinary (non-special) text.
pub(crate) fn pre_tokenize(text: &str, isolate_digits: bool) -> Vec<&str> {
    let mut out = Vec::new();
    if isolate_digits {
        for piece in split_digits(text) {
            split_gpt2(piece, &mut out);
        }
    } else {
        split_gpt2(text, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<&str> {
        pre_tokenize(s, true)
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
        assert_eq!(pre_tokenize("x123 45", false), ["x", "123", " 45"]);
    }
}
