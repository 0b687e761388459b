//! Byte-level BPE merging: the lowest-ranked adjacent pair merges first, ties
//! to the leftmost pair, as in llama.cpp and Hugging Face `tokenizers`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// Merge rules keyed by the ids of the two parts.
///
/// Ids at or above the vocabulary size are synthetic: merge results whose text
/// is not itself a token. Such a symbol left at the end is replaced the way
/// llama.cpp does it: only its printable-ASCII bytes survive, as their tokens.
#[derive(Debug, Default)]
pub(crate) struct Merges {
    /// (left, right) → (rank, merged id).
    pub(crate) rules: HashMap<(u32, u32), (u32, u32)>,
    /// Bytes of synthetic id `n_vocab + i`.
    pub(crate) synthetic: Vec<Vec<u8>>,
}

/// Symbol id of a byte that has no token: never merges, never emitted.
const NO_TOKEN: u32 = u32::MAX;

/// A queued merge: (rank, left position, right position, left id, right id);
/// the smallest tuple (lowest rank, then leftmost) pops first.
type Pair = (u32, usize, usize, u32, u32);

#[derive(Clone, Copy)]
struct Sym {
    id: u32,
    prev: Option<usize>,
    next: Option<usize>,
    alive: bool,
}

/// Encode one pre-tokenized word (raw bytes) and push its token ids onto `out`.
/// `byte_ids[b]` is the token of the single byte `b`; a byte without one (some
/// vocabularies lack control bytes) is dropped, as llama.cpp drops it.
pub(crate) fn encode_word(
    word: &[u8],
    byte_ids: &[Option<u32>; 256],
    merges: &Merges,
    n_vocab: u32,
    out: &mut Vec<u32>,
) {
    let mut syms: Vec<Sym> = word
        .iter()
        .enumerate()
        .map(|(i, &b)| Sym {
            id: byte_ids[usize::from(b)].unwrap_or(NO_TOKEN),
            prev: i.checked_sub(1),
            next: (i + 1 < word.len()).then_some(i + 1),
            alive: true,
        })
        .collect();

    let mut heap: BinaryHeap<Reverse<Pair>> = BinaryHeap::new();
    let push_pair = |heap: &mut BinaryHeap<_>, syms: &[Sym], l: usize, r: usize| {
        if let (Some(a), Some(b)) = (syms.get(l), syms.get(r)) {
            if let Some(&(rank, _)) = merges.rules.get(&(a.id, b.id)) {
                heap.push(Reverse((rank, l, r, a.id, b.id)));
            }
        }
    };
    for i in 1..syms.len() {
        push_pair(&mut heap, &syms, i - 1, i);
    }

    while let Some(Reverse((_, l, r, lid, rid))) = heap.pop() {
        let (Some(&ls), Some(&rs)) = (syms.get(l), syms.get(r)) else {
            continue;
        };
        // Skip stale entries: either side merged away or changed since queued.
        if !ls.alive || !rs.alive || ls.next != Some(r) || ls.id != lid || rs.id != rid {
            continue;
        }
        let Some(&(_, merged)) = merges.rules.get(&(lid, rid)) else {
            continue;
        };
        if let Some(s) = syms.get_mut(l) {
            s.id = merged;
            s.next = rs.next;
        }
        if let Some(s) = syms.get_mut(r) {
            s.alive = false;
        }
        if let Some(nx) = rs.next {
            if let Some(s) = syms.get_mut(nx) {
                s.prev = Some(l);
            }
            push_pair(&mut heap, &syms, l, nx);
        }
        if let Some(pv) = ls.prev {
            push_pair(&mut heap, &syms, pv, l);
        }
    }

    let mut cur = (!syms.is_empty()).then_some(0);
    while let Some(i) = cur {
        let Some(s) = syms.get(i) else { break };
        if s.id < n_vocab {
            out.push(s.id);
        } else if let Some(bytes) =
            s.id.checked_sub(n_vocab)
                .and_then(|k| merges.synthetic.get(k as usize))
        {
            out.extend(
                bytes
                    .iter()
                    .filter(|b| b.is_ascii_graphic())
                    .filter_map(|&b| byte_ids[usize::from(b)]),
            );
        }
        cur = s.next;
    }
}
