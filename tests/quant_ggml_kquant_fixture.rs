//! Bit-identity with ggml for Q5_0, Q5_1, Q4_K, Q5_K and Q6_K:
//! `tests/data/ggml_ref_kquant.bin` holds inputs, the bytes ggml's own reference
//! quantizers produced for them, and hashes of ggml's dequantized output (see
//! tests/data/README.md and tests/data/gen_ggml_kquant_fixture.c).

use q4gpu::gguf::GgmlType;
use q4gpu::quant;

const FNV0: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv_f32(v: &[f32]) -> u64 {
    let mut h = FNV0;
    for x in v {
        for b in x.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Values per super-block (every type sees the input as rows of these).
const SB: usize = 256;
/// Fixture order of the types, with their bytes per block.
const TYPES: [(GgmlType, usize); 5] = [
    (GgmlType::Q5_0, 22),
    (GgmlType::Q5_1, 24),
    (GgmlType::Q4_K, 144),
    (GgmlType::Q5_K, 176),
    (GgmlType::Q6_K, 210),
];
/// Input kind `k` of super-block `i` is `kinds[i]` (it rotates, `i % 16`).
const KIND_NAMES: [&str; 16] = [
    "gaussian",
    "uniform",
    "all-zero",
    "zero 16-groups",
    "constant sub-blocks",
    "one outlier",
    "sub-block scales 1e3..1e6 apart",
    "all positive",
    "all negative",
    "exact ties",
    "subnormals and zeros",
    "tiny",
    "large",
    "random bit patterns",
    "narrow range far from zero",
    "only +-a",
];

struct Fixture {
    n_sb: usize,
    hashes: [u64; 5],
    kinds: Vec<u8>,
    input: Vec<f32>,
    quant: [Vec<u8>; 5],
}

struct Reader<'a>(&'a [u8]);
impl Reader<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        assert!(self.0.len() >= n, "fixture truncated");
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }
}

fn load() -> Fixture {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/ggml_ref_kquant.bin"
    );
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let mut r = Reader(&bytes);
    assert_eq!(r.take(8), b"Q4GKQ001");
    let n_sb = r.u32() as usize;
    assert_eq!(r.u32(), 5, "n_types");
    assert_eq!(r.u32(), 16, "n_kinds");
    assert_eq!(n_sb, 352);
    let hashes = [r.u64(), r.u64(), r.u64(), r.u64(), r.u64()];
    let kinds = r.take(n_sb).to_vec();
    let input = r
        .take(n_sb * SB * 4)
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let quant = TYPES.map(|(_, bs)| r.take(n_sb * sb_bytes_for(bs)).to_vec());
    assert!(r.0.is_empty(), "trailing bytes in fixture");
    Fixture {
        n_sb,
        hashes,
        kinds,
        input,
        quant,
    }
}

/// Bytes one super-block of 256 values takes in a type with `bs`-byte blocks.
fn sb_bytes_for(bs: usize) -> usize {
    match bs {
        22 | 24 => 8 * bs, // 32-value blocks
        _ => bs,           // 256-value blocks
    }
}

fn check_block_geometry(ty: GgmlType, bs: usize) {
    assert_eq!(ty.type_size(), bs, "{ty} bytes per block");
    let per_sb = if bs < 100 { 32 } else { 256 };
    assert_eq!(ty.block_size(), per_sb, "{ty} values per block");
}

/// Our quantizer over the whole input equals ggml's bytes; a failure names the
/// super-blocks that differ (index, input kind, both byte strings).
fn assert_bytes_match(t: usize) {
    let (ty, bs) = TYPES[t];
    check_block_geometry(ty, bs);
    let fx = load();
    let want = &fx.quant[t];
    let got = quant::quantize(ty, &fx.input).unwrap();
    assert_eq!(got.len(), want.len(), "{ty} encoded length");
    let sbb = sb_bytes_for(bs);
    let mut bad = 0;
    for (i, (g, w)) in got.chunks(sbb).zip(want.chunks(sbb)).enumerate() {
        if g != w {
            if bad < 3 {
                let k = fx.kinds[i] as usize;
                let first = g.iter().zip(w).position(|(a, b)| a != b).unwrap();
                eprintln!(
                    "{ty} super-block {i} (kind {k}: {}), first differing byte {first} \
                     (block {} byte {}):\n  ours {g:02x?}\n  ggml {w:02x?}\n  input {:?}",
                    KIND_NAMES.get(k).unwrap_or(&"?"),
                    first / bs,
                    first % bs,
                    &fx.input[i * SB..(i + 1) * SB]
                );
            }
            bad += 1;
        }
    }
    assert_eq!(
        bad, 0,
        "{bad} of {} {ty} super-blocks differ from ggml",
        fx.n_sb
    );
}

/// Our dequantizer applied to ggml's bytes gives ggml's floats (FNV-1a 64 of the
/// LE f32 bytes of ggml's dequantize_row_* output).
fn assert_dequant_matches(t: usize) {
    let (ty, bs) = TYPES[t];
    check_block_geometry(ty, bs);
    let fx = load();
    let mut out = vec![0.0f32; fx.n_sb * SB];
    quant::dequantize(ty, &fx.quant[t], &mut out).unwrap();
    assert!(out.iter().all(|x| x.is_finite()), "{ty}: non-finite output");
    assert_eq!(
        fnv_f32(&out),
        fx.hashes[t],
        "{ty} dequantized values differ from ggml's"
    );
}

#[test]
fn q5_0_bytes_match_ggml() {
    assert_bytes_match(0);
}

#[test]
fn q5_1_bytes_match_ggml() {
    assert_bytes_match(1);
}

#[test]
fn q4_k_bytes_match_ggml() {
    assert_bytes_match(2);
}

#[test]
fn q5_k_bytes_match_ggml() {
    assert_bytes_match(3);
}

#[test]
fn q6_k_bytes_match_ggml() {
    assert_bytes_match(4);
}

#[test]
fn q5_0_dequant_matches_ggml() {
    assert_dequant_matches(0);
}

#[test]
fn q5_1_dequant_matches_ggml() {
    assert_dequant_matches(1);
}

#[test]
fn q4_k_dequant_matches_ggml() {
    assert_dequant_matches(2);
}

#[test]
fn q5_k_dequant_matches_ggml() {
    assert_dequant_matches(3);
}

#[test]
fn q6_k_dequant_matches_ggml() {
    assert_dequant_matches(4);
}

#[test]
fn fixture_covers_the_edge_cases() {
    // Guards against a regenerated fixture that silently lost its hard cases.
    let fx = load();
    assert_eq!(fx.kinds.len(), fx.n_sb);
    assert!(fx
        .kinds
        .iter()
        .enumerate()
        .all(|(i, &k)| k as usize == i % 16));
    let sbs = || fx.input.chunks_exact(SB);
    let has = |p: &dyn Fn(f32) -> bool| fx.input.iter().any(|&x| p(x));
    assert!(has(&|x: f32| x == 0.0 && x.is_sign_negative()));
    assert!(has(&|x: f32| x.is_subnormal()));
    assert!(has(&|x: f32| x != 0.0 && x.abs() < 1e-30));
    assert!(has(&|x: f32| x.abs() > 1e5));
    assert!(sbs().any(|s| s.iter().all(|&x| x == 0.0)));
    assert!(sbs().any(|s| s.iter().all(|&x| x > 0.0)));
    assert!(sbs().any(|s| s.iter().all(|&x| x < 0.0)));
    // Q6_K super-blocks ggml zeroed entirely, and ones with a zero sub-block scale.
    let q6 = fx.quant[4].chunks_exact(210);
    assert!(q6.clone().any(|b| b.iter().all(|&v| v == 0)));
    assert!(q6
        .clone()
        .any(|b| b[208..] != [0, 0] && b[192..208].contains(&0)));
    // Q4_K super-blocks with a 6-bit sub-block scale of 0 next to non-zero ones.
    assert!(fx.quant[2].chunks_exact(144).any(|b| {
        let sc = &b[4..16];
        let s = |j: usize| {
            if j < 4 {
                sc[j] & 63
            } else {
                (sc[j + 4] & 0xf) | ((sc[j - 4] >> 6) << 4)
            }
        };
        (0..8).any(|j| s(j) == 0) && (0..8).any(|j| s(j) != 0)
    }));
}
