//! GPT-2's reversible byte ↔ printable-character mapping used by byte-level BPE
//! vocabularies: each token string in the GGUF is written in these characters.

/// Whether byte `b` is one GPT-2 keeps as the code point of the same value.
fn is_kept(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The byte → character table: kept bytes map to themselves, the other 68
/// bytes map, in increasing order, to U+0100, U+0101, ...
pub(crate) fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let cp = if is_kept(b) {
            u32::from(b)
        } else {
            let cp = next;
            next += 1;
            cp
        };
        // All code points used are below U+0144, so always valid scalars.
        table[usize::from(b)] = char::from_u32(cp).unwrap_or('\u{FFFD}');
    }
    table
}

/// Inverse of [`byte_to_char_table`]: the byte a mapped character stands for.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let cp = u32::from(c);
    if cp < 256 {
        let b = cp as u8;
        return is_kept(b).then_some(b);
    }
    // Unkept bytes in increasing order map to 256.. ; find the k-th unkept byte.
    let k = cp - 256;
    (0..=255u8).filter(|&b| !is_kept(b)).nth(k as usize)
}

/// Decode a GGUF token string written in GPT-2 characters to raw bytes.
/// Returns `None` if a character is outside the mapping.
pub(crate) fn decode_token_text(s: &str) -> Option<Vec<u8>> {
    s.chars().map(char_to_byte).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_is_a_bijection() {
        let t = byte_to_char_table();
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(t[usize::from(b)]), Some(b));
        }
        // Known anchors of the GPT-2 scheme: space → 'Ġ' (U+0120), '\n' → 'Ċ' (U+010A).
        assert_eq!(t[usize::from(b' ')], 'Ġ');
        assert_eq!(t[usize::from(b'\n')], 'Ċ');
        assert_eq!(t[usize::from(b'A')], 'A');
        assert_eq!(char_to_byte('\u{0144}'), None);
        assert_eq!(char_to_byte(' '), None);
    }
}
