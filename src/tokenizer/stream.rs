//! Streaming detokenization: tokens may end in the middle of a UTF-8 character
//! (byte-level BPE splits emoji and CJK), so incomplete tails are held back.

use super::Tokenizer;

/// Turns a stream of token ids into text pieces, never splitting a character.
///
/// Bytes that can never become valid UTF-8 are emitted as U+FFFD as soon as
/// that is certain; an incomplete tail is held until the next token or
/// [`StreamDecoder::finish`].
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add token `id` (unknown ids add nothing) and return the text completed by it.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        if let Some(b) = tok.token_bytes(id) {
            self.pending.extend_from_slice(b);
        }
        self.push_bytes_drain()
    }

    /// Add raw bytes and return the text completed by them.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        self.push_bytes_drain()
    }

    /// Number of bytes held back waiting for the rest of a character.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Flush what is held back (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }

    fn push_bytes_drain(&mut self) -> String {
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // `good` is valid by construction of valid_up_to.
                    out.push_str(&String::from_utf8_lossy(good));
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = bad.get(n..).unwrap_or(&[]);
                        }
                        None => {
                            rest = bad; // incomplete character: wait for more
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_incomplete_and_replaces_invalid() {
        let smile = "😀".as_bytes(); // F0 9F 98 80
        let mut d = StreamDecoder::new();
        assert_eq!(d.push_bytes(b"a"), "a");
        assert_eq!(d.push_bytes(&smile[..1]), "");
        assert_eq!(d.push_bytes(&smile[1..3]), "");
        assert_eq!(d.pending_len(), 3);
        assert_eq!(d.push_bytes(&smile[3..]), "😀");
        // A byte that can never start a character is replaced at once.
        assert_eq!(d.push_bytes(&[0xFF, b'b']), "\u{FFFD}b");
        // A lead byte followed by a non-continuation byte: replaced, rest kept.
        assert_eq!(d.push_bytes(&[0xE6, b'c']), "\u{FFFD}c");
        // An incomplete tail is flushed as U+FFFD by finish.
        assert_eq!(d.push_bytes(&[0xE6, 0x97]), "");
        assert_eq!(d.finish(), "\u{FFFD}");
        assert_eq!(d.pending_len(), 0);
        assert_eq!(d.finish(), "");
    }
}
