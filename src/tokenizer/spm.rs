//! SentencePiece-style tokenization as llama.cpp's `llama` vocabulary type
//! does it (Llama 2, TinyLlama, Mistral): spaces written as `▁`, the text
//! split into UTF-8 characters, then the adjacent pair whose concatenation
//! is the highest-scoring token merged first (ties to the leftmost), until no
//! pair forms a token; characters left without a token fall back to their
//! bytes' `<0xXX>` tokens.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::TokenType;

/// The whitespace marker of SentencePiece vocabularies (U+2581).
pub(crate) const SPACE: &str = "\u{2581}";

/// Settings of a SentencePiece vocabulary.
#[derive(Debug)]
pub(crate) struct Spm {
    /// `tokenizer.ggml.scores`: merge priority of each token.
    pub(crate) scores: Vec<f32>,
    /// A space is put before text at the start and after a special token
    /// (`tokenizer.ggml.add_space_prefix`, default true).
    pub(crate) add_space_prefix: bool,
    /// The token of each byte (`<0xXX>`), for characters without a token.
    pub(crate) byte_ids: [Option<u32>; 256],
    /// `tokenizer.ggml.unknown_token_id`: used for a byte without a token.
    pub(crate) unk: Option<u32>,
}

/// The bytes a token stands for: `<0xXX>` byte tokens their byte, control
/// and unknown tokens their text, the others their text with `▁` as space.
pub(crate) fn token_bytes(text: &str, ty: TokenType) -> Vec<u8> {
    match ty {
        TokenType::Byte => byte_of(text).map_or_else(|| text.as_bytes().to_vec(), |b| vec![b]),
        TokenType::Control | TokenType::Unknown => text.as_bytes().to_vec(),
        _ => text.replace(SPACE, " ").into_bytes(),
    }
}

/// The byte of a `<0xXX>` token text.
pub(crate) fn byte_of(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    (hex.len() == 2).then(|| u8::from_str_radix(hex, 16).ok())?
}

/// One piece of the text being merged: `len` bytes from `start`, linked to
/// its neighbours; `len == 0` once merged into its left neighbour.
#[derive(Clone, Copy)]
struct Sym {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge; the heap pops the highest score, then the leftmost.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl Ord for Bigram {
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .total_cmp(&o.score)
            .then_with(|| o.left.cmp(&self.left))
    }
}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}

/// Encodes one fragment of ordinary text (no special tokens), `prefix`: a
/// space goes first (see [`Spm::add_space_prefix`]); pushes ids onto `out`.
pub(crate) fn encode(
    spm: &Spm,
    by_text: &HashMap<String, u32>,
    text: &str,
    prefix: bool,
    out: &mut Vec<u32>,
) {
    let mut s = String::with_capacity(text.len() + 3);
    if prefix && spm.add_space_prefix {
        s.push(' ');
    }
    s.push_str(text);
    let s = s.replace(' ', SPACE);
    let starts: Vec<usize> = s.char_indices().map(|(i, _)| i).collect();
    let mut syms: Vec<Sym> = starts
        .iter()
        .enumerate()
        .map(|(k, &start)| Sym {
            start,
            len: starts.get(k + 1).unwrap_or(&s.len()) - start,
            prev: k.checked_sub(1),
            next: (k + 1 < starts.len()).then_some(k + 1),
        })
        .collect();
    let mut heap = BinaryHeap::new();
    let push = |heap: &mut BinaryHeap<Bigram>, syms: &[Sym], l: Option<usize>, r: Option<usize>| {
        let (Some(l), Some(r)) = (l, r) else { return };
        let (a, b) = (syms[l], syms[r]);
        let piece = &s[a.start..a.start + a.len + b.len];
        if let Some(&id) = by_text.get(piece) {
            if let Some(&score) = spm.scores.get(id as usize) {
                heap.push(Bigram {
                    score,
                    left: l,
                    right: r,
                    len: piece.len(),
                });
            }
        }
    };
    for k in 1..syms.len() {
        push(&mut heap, &syms, Some(k - 1), Some(k));
    }
    while let Some(bg) = heap.pop() {
        let (l, r) = (syms[bg.left], syms[bg.right]);
        // Skip a pair whose symbols changed since it was queued.
        if l.len == 0 || r.len == 0 || l.len + r.len != bg.len {
            continue;
        }
        syms[bg.left].len += r.len;
        syms[bg.right].len = 0;
        syms[bg.left].next = r.next;
        if let Some(n) = r.next {
            syms[n].prev = Some(bg.left);
        }
        push(&mut heap, &syms, syms[bg.left].prev, Some(bg.left));
        push(&mut heap, &syms, Some(bg.left), syms[bg.left].next);
    }
    // Every merged symbol is a token; a character left alone is one or
    // falls back to its bytes.
    let mut k = (!syms.is_empty()).then_some(0);
    while let Some(i) = k {
        let sym = syms[i];
        let piece = &s[sym.start..sym.start + sym.len];
        match by_text.get(piece) {
            Some(&id) => out.push(id),
            None => out.extend(
                piece
                    .bytes()
                    .filter_map(|b| spm.byte_ids[usize::from(b)].or(spm.unk)),
            ),
        }
        k = sym.next;
    }
}
