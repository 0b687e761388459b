//! Bit-identity with ggml: `tests/data/ggml_ref_quant.bin` holds inputs and the
//! bytes ggml's own reference quantizers produced for them (see tests/data/README.md).

use q4gpu::gguf::GgmlType;
use q4gpu::quant::{self, f16, BlockQ4_0, BlockQ4_1, BlockQ8_0};

const FNV0: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn fnv_f32(v: &[f32]) -> u64 {
    v.iter().fold(FNV0, |h, x| fnv(&x.to_le_bytes(), h))
}

struct Fixture {
    n_blocks: usize,
    hashes: [u64; 5],
    input: Vec<f32>,
    q4_0: Vec<u8>,
    q4_1: Vec<u8>,
    q8_0: Vec<u8>,
    conv_in: Vec<f32>,
    f16: Vec<u16>,
    bf16: Vec<u16>,
}

struct Reader<'a>(&'a [u8]);
impl Reader<'_> {
    fn take(&mut self, n: usize) -> Vec<u8> {
        assert!(self.0.len() >= n, "fixture truncated");
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a.to_vec()
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }
    fn f32s(&mut self, n: usize) -> Vec<f32> {
        self.take(4 * n)
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
    fn u16s(&mut self, n: usize) -> Vec<u16> {
        self.take(2 * n)
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
}

fn load() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ggml_ref_quant.bin");
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let mut r = Reader(&bytes);
    assert_eq!(r.take(8), b"Q4GREF01");
    let n_blocks = r.u32() as usize;
    let n_conv = r.u32() as usize;
    let hashes = [r.u64(), r.u64(), r.u64(), r.u64(), r.u64()];
    let f = Fixture {
        n_blocks,
        hashes,
        input: r.f32s(n_blocks * 32),
        q4_0: r.take(n_blocks * 18),
        q4_1: r.take(n_blocks * 20),
        q8_0: r.take(n_blocks * 34),
        conv_in: r.f32s(n_conv),
        f16: r.u16s(n_conv),
        bf16: r.u16s(n_conv),
    };
    assert!(r.0.is_empty(), "trailing bytes in fixture");
    assert_eq!(n_blocks, 2000);
    assert_eq!(n_conv, 8192);
    f
}

/// Compares block by block so a failure names the block (its kind is index % 16,
/// see tests/data/README.md) and both byte strings.
fn assert_blocks_equal(ty: GgmlType, fx: &Fixture, want: &[u8]) {
    let got = quant::quantize(ty, &fx.input).unwrap();
    assert_eq!(got.len(), want.len());
    let bs = ty.type_size();
    let mut bad = 0;
    for (i, (g, w)) in got.chunks(bs).zip(want.chunks(bs)).enumerate() {
        if g != w {
            if bad < 5 {
                eprintln!(
                    "{ty} block {i} (kind {}): ours {g:02x?} ggml {w:02x?}\n  input {:?}",
                    i % 16,
                    &fx.input[i * 32..i * 32 + 32]
                );
            }
            bad += 1;
        }
    }
    assert_eq!(
        bad, 0,
        "{bad} of {} {ty} blocks differ from ggml",
        fx.n_blocks
    );
}

#[test]
fn q4_0_bytes_match_ggml() {
    let fx = load();
    assert_blocks_equal(GgmlType::Q4_0, &fx, &fx.q4_0);
    // The per-format row function agrees with the type-erased one.
    let mut blocks = vec![
        BlockQ4_0 {
            d: [0; 2],
            qs: [0; 16]
        };
        fx.n_blocks
    ];
    quant::q4_0::quantize_row(&fx.input, &mut blocks);
    assert_eq!(bytemuck::cast_slice::<BlockQ4_0, u8>(&blocks), &fx.q4_0[..]);
}

#[test]
fn q4_1_bytes_match_ggml() {
    let fx = load();
    assert_blocks_equal(GgmlType::Q4_1, &fx, &fx.q4_1);
    let mut blocks = vec![
        BlockQ4_1 {
            d: [0; 2],
            m: [0; 2],
            qs: [0; 16]
        };
        fx.n_blocks
    ];
    quant::q4_1::quantize_row(&fx.input, &mut blocks);
    assert_eq!(bytemuck::cast_slice::<BlockQ4_1, u8>(&blocks), &fx.q4_1[..]);
}

#[test]
fn q8_0_bytes_match_ggml() {
    let fx = load();
    assert_blocks_equal(GgmlType::Q8_0, &fx, &fx.q8_0);
    let mut blocks = vec![
        BlockQ8_0 {
            d: [0; 2],
            qs: [0; 32]
        };
        fx.n_blocks
    ];
    quant::q8_0::quantize_row(&fx.input, &mut blocks);
    assert_eq!(bytemuck::cast_slice::<BlockQ8_0, u8>(&blocks), &fx.q8_0[..]);
}

#[test]
fn dequantized_values_match_ggml() {
    // ggml's dequantize_row_* output over the fixture blocks, hashed (FNV-1a 64 over LE f32 bits).
    let fx = load();
    let n = fx.n_blocks * 32;
    for (ty, bytes, h) in [
        (GgmlType::Q4_0, &fx.q4_0, fx.hashes[0]),
        (GgmlType::Q4_1, &fx.q4_1, fx.hashes[1]),
        (GgmlType::Q8_0, &fx.q8_0, fx.hashes[2]),
    ] {
        let y = quant::dequantize_row_to_vec(ty, bytes, n).unwrap();
        assert_eq!(fnv_f32(&y), h, "{ty} dequantized values differ from ggml");
    }
}

#[test]
fn half_to_f32_matches_ggml_for_all_bit_patterns() {
    let fx = load();
    let all: Vec<u16> = (0..=u16::MAX).collect();
    let f16s: Vec<f32> = all.iter().map(|&h| f16::f16_to_f32(h)).collect();
    let bf16s: Vec<f32> = all.iter().map(|&h| f16::bf16_to_f32(h)).collect();
    assert_eq!(fnv_f32(&f16s), fx.hashes[3], "f16 -> f32 differs from ggml");
    assert_eq!(
        fnv_f32(&bf16s),
        fx.hashes[4],
        "bf16 -> f32 differs from ggml"
    );
}

#[test]
fn f32_to_half_matches_ggml() {
    let fx = load();
    let mut bad = 0;
    for (i, &x) in fx.conv_in.iter().enumerate() {
        let (h, b) = (f16::f32_to_f16(x), f16::f32_to_bf16(x));
        if h != fx.f16[i] || b != fx.bf16[i] {
            if bad < 5 {
                eprintln!(
                    "value {i} = {x:e} ({:#010x}): f16 ours {h:#06x} ggml {:#06x}, bf16 ours {b:#06x} ggml {:#06x}",
                    x.to_bits(),
                    fx.f16[i],
                    fx.bf16[i]
                );
            }
            bad += 1;
        }
    }
    assert_eq!(bad, 0, "{bad} conversions differ from ggml");
    // Through the type-erased API too.
    assert_eq!(
        quant::quantize(GgmlType::F16, &fx.conv_in).unwrap(),
        bytemuck::cast_slice::<u16, u8>(&fx.f16)
    );
    assert_eq!(
        quant::quantize(GgmlType::BF16, &fx.conv_in).unwrap(),
        bytemuck::cast_slice::<u16, u8>(&fx.bf16)
    );
}

#[test]
fn fixture_covers_the_edge_cases() {
    // Guards against a fixture that silently lost its hard cases.
    let fx = load();
    let has = |p: &dyn Fn(f32) -> bool| fx.input.iter().any(|&x| p(x));
    assert!(has(&|x: f32| x == 0.0 && x.is_sign_negative()));
    assert!(has(&|x: f32| x.is_subnormal()));
    assert!(has(&|x: f32| x.abs() > 1e30));
    assert!(has(&|x: f32| x != 0.0 && x.abs() < 1e-30));
    assert!(fx.conv_in.iter().any(|x| x.is_nan()));
    assert!(fx.conv_in.iter().any(|x| x.is_infinite()));
    // Q4_0 blocks whose scale overflows f16 (stored as +-inf) or is an f16 subnormal.
    let q40: &[BlockQ4_0] = bytemuck::cast_slice(&fx.q4_0);
    assert!(q40.iter().any(|b| b.d().is_infinite()));
    let f16_subnormal = |d: [u8; 2]| {
        let h = u16::from_le_bytes(d);
        h & 0x7c00 == 0 && h & 0x03ff != 0
    };
    assert!(q40.iter().any(|b| f16_subnormal(b.d)));
}
