//! Writes a synthetic llama GGUF: a real model's architecture, shapes, metadata
//! keys and vocabulary size, with random weights and a synthetic (but valid)
//! GPT-2 byte-level BPE vocabulary. Benchmarks run on it where the real model
//! is absent, and it gives shapes we do not ship (Llama-3.2-1B) for scaling.
//!
//!   cargo run --release --example synth -- out.gguf
//!   cargo run --release --example synth -- out.gguf --arch llama-3.2-1b --type q4_0 --embd q8_0
//!   cargo run --release --example synth -- tiny.gguf --layers 2 --vocab 512   # quick tests
//!
//! Loadable by q4gpu (`Model::open`) and llama.cpp (`llama-bench -m out.gguf`).
//! Tied output (no `output.weight`), like SmolLM2 and Llama-3.2-1B. Weights are
//! Gaussian (std 0.02; norm gains 1 ± 0.05), so activations stay finite and
//! logits stay O(1). The vocabulary: `<|endoftext|>`, `<|im_start|>`,
//! `<|im_end|>` (control), the 256 byte tokens in GPT-2's byte→character
//! mapping, then merged tokens, each the concatenation of two earlier tokens,
//! listed in `tokenizer.ggml.merges` in creation (= rank) order.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use q4gpu::gguf::{GgmlType, GgufWriter, Value};
use q4gpu::quant::convert::{mix_type, Mix, ModelShape, Target};

/// Which real model's shapes to copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    /// SmolLM2-135M: 30 layers, 576 wide, 9 heads / 3 KV heads, vocab 49152.
    #[value(name = "smollm2-135m")]
    Smollm2_135m,
    /// Llama-3.2-1B: 16 layers, 2048 wide, 32 heads / 8 KV heads, vocab 128256.
    #[value(name = "llama-3.2-1b")]
    Llama32_1b,
    /// Qwen2.5-0.5B (architecture qwen2: Q/K/V biases, NeoX RoPE): 24
    /// layers, 896 wide, 14 heads / 2 KV heads, vocab 151936.
    #[value(name = "qwen2.5-0.5b")]
    Qwen25_05b,
    /// Qwen3-0.6B (architecture qwen3: per-head Q/K RMSNorm, NeoX RoPE,
    /// 128-wide heads): 28 layers, 1024 wide, 16 heads / 8 KV heads.
    #[value(name = "qwen3-0.6b")]
    Qwen3_06b,
    /// TinyLlama-1.1B (llama, SentencePiece vocabulary): 22 layers, 2048
    /// wide, 32 heads / 4 KV heads, vocab 32000.
    #[value(name = "tinyllama-1.1b")]
    TinyLlama11b,
}

/// A llama model's hyper-parameters, as written to `llama.*`.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    pub name: &'static str,
    /// `general.architecture`, also the prefix of the hyper-parameter keys.
    pub arch: &'static str,
    /// Random biases on the Q, K and V projections (`blk.N.attn_{q,k,v}.bias`).
    pub qkv_bias: bool,
    /// Per-head Q/K RMSNorm gains (`blk.N.attn_{q,k}_norm.weight`, Qwen3).
    pub qk_norm: bool,
    /// Head width when not `dim / heads` (`attention.key_length`, Qwen3).
    pub head_dim: Option<usize>,
    /// `general.size_label`.
    pub size_label: &'static str,
    pub layers: usize,
    pub dim: usize,
    pub ffn: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub vocab: usize,
    pub context: usize,
    pub rope_base: f32,
    pub rms_eps: f32,
    /// `tokenizer.ggml.pre` (the synthetic vocabulary is GPT-2 style either way).
    pub pre: &'static str,
    /// Llama 3.x RoPE frequency factors (`rope_freqs.weight`), as
    /// llama.cpp's converter computes them from Llama 3.2's rope_scaling.
    pub llama3_rope: bool,
    /// A SentencePiece vocabulary (`tokenizer.ggml.model = llama`) instead
    /// of byte-level BPE.
    pub spm: bool,
}

impl Arch {
    pub fn shape(self) -> Shape {
        match self {
            Arch::Smollm2_135m => Shape {
                name: "SmolLM2-135M",
                arch: "llama",
                qkv_bias: false,
                qk_norm: false,
                head_dim: None,
                size_label: "135M",
                layers: 30,
                dim: 576,
                ffn: 1536,
                heads: 9,
                kv_heads: 3,
                vocab: 49152,
                context: 8192,
                rope_base: 100000.0,
                rms_eps: 1e-5,
                pre: "smollm",
                llama3_rope: false,
                spm: false,
            },
            Arch::Llama32_1b => Shape {
                name: "Llama-3.2-1B",
                arch: "llama",
                qkv_bias: false,
                qk_norm: false,
                head_dim: None,
                size_label: "1B",
                layers: 16,
                dim: 2048,
                ffn: 8192,
                heads: 32,
                kv_heads: 8,
                vocab: 128256,
                context: 131072,
                rope_base: 500000.0,
                rms_eps: 1e-5,
                pre: "llama-bpe",
                llama3_rope: true,
                spm: false,
            },
            Arch::Qwen25_05b => Shape {
                name: "Qwen2.5-0.5B",
                arch: "qwen2",
                qkv_bias: true,
                qk_norm: false,
                head_dim: None,
                size_label: "0.5B",
                layers: 24,
                dim: 896,
                ffn: 4864,
                heads: 14,
                kv_heads: 2,
                vocab: 151936,
                context: 32768,
                rope_base: 1000000.0,
                rms_eps: 1e-6,
                pre: "qwen2",
                llama3_rope: false,
                spm: false,
            },
            Arch::Qwen3_06b => Shape {
                name: "Qwen3-0.6B",
                arch: "qwen3",
                qkv_bias: false,
                qk_norm: true,
                head_dim: Some(128),
                size_label: "0.6B",
                layers: 28,
                dim: 1024,
                ffn: 3072,
                heads: 16,
                kv_heads: 8,
                vocab: 151936,
                context: 40960,
                rope_base: 1000000.0,
                rms_eps: 1e-6,
                pre: "qwen2",
                llama3_rope: false,
                spm: false,
            },
            Arch::TinyLlama11b => Shape {
                name: "TinyLlama-1.1B",
                arch: "llama",
                qkv_bias: false,
                qk_norm: false,
                head_dim: None,
                size_label: "1.1B",
                layers: 22,
                dim: 2048,
                ffn: 5632,
                heads: 32,
                kv_heads: 4,
                vocab: 32000,
                context: 2048,
                rope_base: 10000.0,
                rms_eps: 1e-5,
                pre: "default",
                llama3_rope: false,
                spm: true,
            },
        }
    }
}

/// Everything that decides the output file (same options, same bytes).
#[derive(Clone, Debug)]
pub struct SynthOptions {
    pub shape: Shape,
    /// Type of the 2-D weights in the blocks.
    pub ty: GgmlType,
    /// Type of `token_embd.weight` (also the tied LM head).
    pub embd: GgmlType,
    /// A llama-quantize mix (`q4_k_m`, `q5_k_m`) deciding every weight's type
    /// instead of `ty` and `embd`.
    pub mix: Option<Mix>,
    pub seed: u64,
}

/// Special tokens, in id order (0, 1, 2), as SmolLM2 numbers them.
pub const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
/// BOS and EOS ids (SmolLM2's: `<|im_start|>`, `<|im_end|>`).
pub const BOS_ID: u32 = 1;
pub const EOS_ID: u32 = 2;

/// A ChatML template (the format SmolLM2-Instruct uses).
const CHAT_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// SplitMix64: small, fast, and the same stream everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x51_7cc1_b727_220a)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * n as f64) as usize % n.max(1)
    }
    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
    /// Fills `out` with Gaussian values of standard deviation `std` (Box–Muller).
    pub fn gauss(&mut self, out: &mut [f32], std: f32) {
        for pair in out.chunks_mut(2) {
            let r = (-2.0 * self.unit().ln()).sqrt() * f64::from(std);
            let t = std::f64::consts::TAU * self.unit();
            pair[0] = (r * t.cos()) as f32;
            if let Some(v) = pair.get_mut(1) {
                *v = (r * t.sin()) as f32;
            }
        }
    }
}

/// GPT-2's byte → character mapping (kept bytes are themselves; the other 68
/// map in order to U+0100..), as in src/tokenizer/bytes.rs.
pub fn byte_chars() -> [char; 256] {
    let kept = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let cp = if kept(b) {
            u32::from(b)
        } else {
            next += 1;
            next - 1
        };
        table[usize::from(b)] = char::from_u32(cp).unwrap_or('\u{FFFD}');
    }
    table
}

/// A synthetic vocabulary: token strings (GPT-2 characters), llama.cpp token
/// types, and merges in rank order.
pub struct Vocab {
    pub tokens: Vec<String>,
    pub types: Vec<i32>,
    pub merges: Vec<String>,
    /// SentencePiece merge priorities (empty for BPE).
    pub scores: Vec<f32>,
}

/// A SentencePiece vocabulary of exactly `n` tokens (at least 3 + 256 + 53):
/// `<unk>`, `<s>`, `</s>`, the 256 `<0xXX>` byte tokens, `▁` and the
/// letters, then [`vocab`]'s merged words with `▁` for its space, each
/// scored below the one before (earlier merges first).
pub fn spm_vocab(n: usize, seed: u64) -> Result<Vocab> {
    let singles: Vec<String> = std::iter::once("\u{2581}".to_string())
        .chain(
            (b'a'..=b'z')
                .chain(b'A'..=b'Z')
                .map(|b| (b as char).to_string()),
        )
        .collect();
    let base = 3 + 256 + singles.len();
    if n < base {
        bail!("a SentencePiece vocabulary needs at least {base} tokens, not {n}");
    }
    let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>"].map(String::from).to_vec();
    let mut types = vec![2, 3, 3];
    tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    types.extend(std::iter::repeat_n(6, 256));
    tokens.extend(singles);
    types.extend(std::iter::repeat_n(1, base - types.len()));
    let mut scores = vec![0.0; base];
    // The BPE generator's words (its letters and 'Ġ' space), in merge order.
    let bpe = vocab(SPECIALS.len() + 256 + (n - base), seed)?;
    let space = byte_chars()[usize::from(b' ')];
    for (k, t) in bpe.tokens[SPECIALS.len() + 256..].iter().enumerate() {
        tokens.push(t.replace(space, "\u{2581}"));
        types.push(1);
        scores.push(-(k as f32));
    }
    Ok(Vocab {
        tokens,
        types,
        merges: Vec::new(),
        scores,
    })
}

/// Builds a vocabulary of exactly `n` tokens (at least 3 + 256). Merged tokens
/// look like words: letters, optionally led by 'Ġ' (a space), up to 16
/// characters, grown by appending short pieces; each is new, and both halves
/// exist before it (so the ranks are consistent and every merge result is a
/// token).
pub fn vocab(n: usize, seed: u64) -> Result<Vocab> {
    let base = SPECIALS.len() + 256;
    if n < base {
        bail!("a vocabulary needs at least {base} tokens (3 special + 256 bytes), not {n}");
    }
    let chars = byte_chars();
    let mut tokens: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
    let mut types = vec![3; SPECIALS.len()];
    tokens.extend(chars.iter().map(|c| c.to_string()));
    types.extend(std::iter::repeat_n(1, 256));
    let mut seen: HashSet<String> = tokens.iter().cloned().collect();
    // Word pieces: lower-case letters, a few capitals and 'Ġ' (space) as a prefix.
    let space = chars[usize::from(b' ')];
    let mut pool: Vec<String> = (b'a'..=b'z')
        .chain(b'A'..=b'Z')
        .chain([b' ', b' ', b' ', b' '])
        .map(|b| chars[usize::from(b)].to_string())
        .collect();
    // Right halves: short pieces without a leading space.
    let mut short: Vec<String> = pool[..52].to_vec();
    let mut rng = Rng::new(seed.wrapping_add(0xB0CA));
    let mut merges = Vec::with_capacity(n - base);
    let mut misses = 0usize;
    // First the pairs any text uses (space + letter, then lower-case bigrams),
    // so real words compress; then random growth.
    let ch = |b: u8| chars[usize::from(b)].to_string();
    let mut pairs: Vec<(String, String)> = (b'a'..=b'z')
        .chain(b'A'..=b'Z')
        .map(|b| (space.to_string(), ch(b)))
        .collect();
    for x in b'a'..=b'z' {
        pairs.extend((b'a'..=b'z').map(|y| (ch(x), ch(y))));
    }
    let mut pairs = pairs.into_iter();
    while tokens.len() < n {
        let (a, b) = match pairs.next() {
            Some((a, b)) => (a, b),
            None => (
                pool[rng.below(pool.len())].clone(),
                short[rng.below(short.len())].clone(),
            ),
        };
        let merged = format!("{a}{b}");
        let len = merged.chars().count();
        if len > 16 || seen.contains(&merged) {
            misses += 1;
            if misses > 100 * n {
                bail!("could not build {n} distinct merged tokens");
            }
            continue;
        }
        merges.push(format!("{a} {b}"));
        seen.insert(merged.clone());
        tokens.push(merged.clone());
        types.push(1);
        if len <= 3 && !merged.starts_with(space) {
            short.push(merged.clone());
        }
        pool.push(merged);
    }
    Ok(Vocab {
        tokens,
        types,
        merges,
        scores: Vec::new(),
    })
}

/// Gaussian weights of `rows × cols` (ggml dims `[cols, rows]`) encoded as
/// `ty`, or as llama.cpp's fallback type where rows do not hold whole blocks
/// of `ty` (returned with the bytes).
fn matrix(
    rng: &mut Rng,
    ty: GgmlType,
    rows: usize,
    cols: usize,
    std: f32,
) -> Result<(GgmlType, Vec<u8>)> {
    let ty = q4gpu::quant::convert::fallback_type(ty, cols as u64);
    let row_bytes = ty.row_bytes(cols as u64).context("row size overflows")? as usize;
    let mut out = vec![0u8; row_bytes * rows];
    // The values are drawn in row order (same seed, same file); up to 1024
    // rows at a time are then quantized on every core (K-quants are slow).
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut vals = vec![0f32; cols * 1024];
    for dst in out.chunks_mut(row_bytes * 1024) {
        let n = dst.len() / row_bytes;
        for row in vals.chunks_mut(cols).take(n) {
            rng.gauss(row, std);
        }
        let per = n.div_ceil(threads);
        std::thread::scope(|sc| {
            let jobs: Vec<_> = dst
                .chunks_mut(row_bytes * per)
                .zip(vals.chunks(cols * per))
                .map(|(d, v)| {
                    sc.spawn(move || -> Result<()> {
                        for (d, v) in d.chunks_mut(row_bytes).zip(v.chunks(cols)) {
                            q4gpu::quant::quantize_into(ty, v, d)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            jobs.into_iter().try_for_each(|j| {
                j.join()
                    .map_err(|_| anyhow::anyhow!("quantizing thread panicked"))?
            })
        })?;
    }
    Ok((ty, out))
}

/// Norm gains 1 ± 0.05, as F32 bytes.
fn gains(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut v = vec![0f32; n];
    rng.gauss(&mut v, 0.05);
    v.iter()
        .flat_map(|x| (1.0 + x.clamp(-0.15, 0.15)).to_le_bytes())
        .collect()
}

/// llama.cpp's `general.file_type` for a file whose block weights are `ty`.
fn file_type(ty: GgmlType) -> u32 {
    q4gpu::quant::convert::llama_ftype(ty)
}

/// Llama 3.x's RoPE frequency factors for one head, one per rotated pair,
/// as llama.cpp's converter derives them from the rope_scaling of
/// Llama-3.2-1B's config (factor 32, low_freq_factor 1, high_freq_factor 4,
/// original context 8192): wavelengths under 8192/4 positions keep their
/// frequency, those over 8192/1 are divided by 32, and the band between is
/// interpolated smoothly.
pub fn llama3_rope_factors(head_dim: usize, base: f32) -> Vec<f32> {
    let (factor, low, high, old_ctx) = (32.0f64, 1.0f64, 4.0f64, 8192.0f64);
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / f64::from(base).powf(2.0 * i as f64 / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let f = if wavelen < old_ctx / high {
                1.0
            } else if wavelen > old_ctx / low {
                factor
            } else {
                let smooth = (old_ctx / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            };
            f as f32
        })
        .collect()
}

/// Builds the whole file in memory (≈ the model's size).
pub fn build(o: &SynthOptions) -> Result<GgufWriter<'static>> {
    let s = &o.shape;
    if !s.dim.is_multiple_of(s.heads) || !s.heads.is_multiple_of(s.kv_heads) {
        bail!(
            "{} heads / {} KV heads do not fit width {}",
            s.heads,
            s.kv_heads,
            s.dim
        );
    }
    for (what, n, ty) in [
        ("width", s.dim, o.ty),
        ("ffn width", s.ffn, o.ty),
        ("width", s.dim, o.embd),
    ] {
        let ty = q4gpu::quant::convert::fallback_type(ty, n as u64);
        if n % ty.block_size() != 0 {
            bail!(
                "{what} {n} is not a multiple of the {ty} block size {}",
                ty.block_size()
            );
        }
    }
    let head_dim = s.head_dim.unwrap_or(s.dim / s.heads);
    let q_dim = s.heads * head_dim;
    let kv_dim = s.kv_heads * head_dim;
    let v = if s.spm {
        spm_vocab(s.vocab, o.seed)?
    } else {
        vocab(s.vocab, o.seed)?
    };
    let mut w = GgufWriter::new();
    let u32v = |x: usize| -> Result<Value> { Ok(Value::U32(u32::try_from(x)?)) };
    let strs = |v: &[String]| Value::Array(v.iter().map(|t| Value::String(t.clone())).collect());
    let kvs: Vec<(&str, Value)> = vec![
        ("general.architecture", s.arch.into()),
        ("general.type", "model".into()),
        (
            "general.name",
            Value::String(format!("synthetic {} (random weights)", s.name)),
        ),
        ("general.size_label", Value::String(s.size_label.into())),
        ("llama.block_count", u32v(s.layers)?),
        ("llama.context_length", u32v(s.context)?),
        ("llama.embedding_length", u32v(s.dim)?),
        ("llama.feed_forward_length", u32v(s.ffn)?),
        ("llama.attention.head_count", u32v(s.heads)?),
        ("llama.attention.head_count_kv", u32v(s.kv_heads)?),
        ("llama.rope.freq_base", Value::F32(s.rope_base)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::F32(s.rms_eps),
        ),
        (
            "general.file_type",
            Value::U32(o.mix.map_or(file_type(o.ty), |m| Target::Mix(m).ftype())),
        ),
        ("llama.vocab_size", u32v(s.vocab)?),
        ("llama.rope.dimension_count", u32v(head_dim)?),
        ("tokenizer.ggml.add_space_prefix", Value::Bool(s.spm)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(s.spm)),
        (
            "tokenizer.ggml.model",
            if s.spm { "llama" } else { "gpt2" }.into(),
        ),
        ("tokenizer.ggml.pre", s.pre.into()),
        ("tokenizer.ggml.tokens", strs(&v.tokens)),
        (
            "tokenizer.ggml.token_type",
            Value::Array(v.types.iter().map(|&t| Value::I32(t)).collect()),
        ),
        ("tokenizer.ggml.merges", strs(&v.merges)),
        ("tokenizer.ggml.bos_token_id", Value::U32(BOS_ID)),
        ("tokenizer.ggml.eos_token_id", Value::U32(EOS_ID)),
        ("tokenizer.ggml.unknown_token_id", Value::U32(0)),
        ("tokenizer.ggml.padding_token_id", Value::U32(EOS_ID)),
        ("tokenizer.chat_template", CHAT_TEMPLATE.into()),
        (
            "general.quantization_version",
            Value::U32(q4gpu::quant::convert::GGML_QNT_VERSION),
        ),
    ];
    // The hyper-parameters under the architecture's own prefix; a
    // SentencePiece vocabulary has scores instead of merges.
    let kvs = kvs
        .into_iter()
        .filter(|(k, _)| !(s.spm && *k == "tokenizer.ggml.merges"));
    if s.spm {
        let scores = v.scores.iter().map(|&x| Value::F32(x)).collect();
        w.add_kv("tokenizer.ggml.scores", Value::Array(scores));
    }
    for (k, val) in kvs {
        match k.strip_prefix("llama.") {
            Some(rest) => w.add_kv(format!("{}.{rest}", s.arch), val),
            None => w.add_kv(k, val),
        }
    }
    if let Some(hd) = s.head_dim {
        for k in ["key_length", "value_length"] {
            w.add_kv(format!("{}.attention.{k}", s.arch), u32v(hd)?);
        }
    }

    let mut rng = Rng::new(o.seed);
    let std = 0.02;
    let d = |n: usize| n as u64;
    // The type a mix gives tensor `name` (rows of `cols`), else `ty`.
    let mixed = |name: &str, cols: usize, ty: GgmlType| match o.mix {
        Some(m) => {
            let shape = ModelShape {
                n_layer: s.layers,
                tied: true,
            };
            mix_type(m, name, cols as u64, shape)
        }
        None => ty,
    };
    if s.llama3_rope {
        let f = llama3_rope_factors(head_dim, s.rope_base);
        let bytes: Vec<u8> = f.iter().flat_map(|x| x.to_le_bytes()).collect();
        w.add_tensor("rope_freqs.weight", GgmlType::F32, &[d(f.len())], bytes)?;
    }
    let embd = mixed("token_embd.weight", s.dim, o.embd);
    let (ty, e) = matrix(&mut rng, embd, s.vocab, s.dim, std)?;
    w.add_tensor("token_embd.weight", ty, &[d(s.dim), d(s.vocab)], e)?;
    for i in 0..s.layers {
        let name = |t: &str| format!("blk.{i}.{t}.weight");
        // SmolLM2's tensor order; (rows, cols) = (outputs, inputs).
        w.add_tensor(
            name("attn_norm"),
            GgmlType::F32,
            &[d(s.dim)],
            gains(&mut rng, s.dim),
        )?;
        for (t, rows, cols) in [
            ("ffn_down", s.dim, s.ffn),
            ("ffn_gate", s.ffn, s.dim),
            ("ffn_up", s.ffn, s.dim),
        ] {
            let (ty, m) = matrix(&mut rng, mixed(&name(t), cols, o.ty), rows, cols, std)?;
            w.add_tensor(name(t), ty, &[d(cols), d(rows)], m)?;
        }
        w.add_tensor(
            name("ffn_norm"),
            GgmlType::F32,
            &[d(s.dim)],
            gains(&mut rng, s.dim),
        )?;
        for (t, rows, cols) in [
            ("attn_k", kv_dim, s.dim),
            ("attn_output", s.dim, q_dim),
            ("attn_q", q_dim, s.dim),
            ("attn_v", kv_dim, s.dim),
        ] {
            let (ty, m) = matrix(&mut rng, mixed(&name(t), cols, o.ty), rows, cols, std)?;
            w.add_tensor(name(t), ty, &[d(cols), d(rows)], m)?;
        }
        if s.qk_norm {
            for t in ["attn_q_norm", "attn_k_norm"] {
                w.add_tensor(
                    name(t),
                    GgmlType::F32,
                    &[d(head_dim)],
                    gains(&mut rng, head_dim),
                )?;
            }
        }
        if s.qkv_bias {
            // Qwen2's biases are large next to the projections' outputs.
            for (t, n) in [("attn_q", q_dim), ("attn_k", kv_dim), ("attn_v", kv_dim)] {
                let mut b = vec![0f32; n];
                rng.gauss(&mut b, 0.5);
                let bytes: Vec<u8> = b.iter().flat_map(|x| x.to_le_bytes()).collect();
                w.add_tensor(format!("blk.{i}.{t}.bias"), GgmlType::F32, &[d(n)], bytes)?;
            }
        }
    }
    w.add_tensor(
        "output_norm.weight",
        GgmlType::F32,
        &[d(s.dim)],
        gains(&mut rng, s.dim),
    )?;
    Ok(w)
}

/// Builds and writes the file atomically.
pub fn write(o: &SynthOptions, path: &Path) -> Result<()> {
    build(o)?
        .write_to_path(path)
        .with_context(|| format!("writing {}", path.display()))
}

fn parse_target(s: &str) -> Result<Target> {
    match Target::from_name(s) {
        Some(Target::Mix(m)) => Ok(Target::Mix(m)),
        _ => parse_type(s).map(Target::Type),
    }
}

fn parse_type(s: &str) -> Result<GgmlType> {
    match GgmlType::from_name(s) {
        Some(GgmlType::BF16) | None => bail!(
            "unsupported type {s:?}; expected q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k, f16, f32 (or a mix for --type: q4_k_m, q5_k_m)"
        ),
        Some(t) => Ok(t),
    }
}

#[derive(Parser, Debug)]
#[command(
    about = "Write a synthetic llama GGUF (real shapes, random weights, valid BPE vocabulary)"
)]
struct Args {
    /// Output GGUF path.
    out: PathBuf,
    #[arg(long, value_enum, default_value = "smollm2-135m")]
    arch: Arch,
    /// Type of the block weights: q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k,
    /// q6_k, f16 or f32 (K-quants fall back as llama.cpp's do where rows are
    /// not multiples of 256), or a llama-quantize mix, q4_k_m or q5_k_m,
    /// which also decides the embedding's type.
    #[arg(long = "type", default_value = "q4_0")]
    ty: String,
    /// Type of the token embedding / tied LM head.
    #[arg(long, default_value = "q8_0")]
    embd: String,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Override the layer count (quick tests).
    #[arg(long)]
    layers: Option<usize>,
    /// Override the vocabulary size (quick tests; at least 259).
    #[arg(long)]
    vocab: Option<usize>,
}

/// Errors print on one line (`error: what: why`), exit status 1.
fn main() -> std::process::ExitCode {
    q4gpu::env::exit_code(run())
}

fn run() -> Result<()> {
    let a = Args::parse();
    let mut shape = a.arch.shape();
    if let Some(n) = a.layers {
        if n == 0 {
            bail!("--layers must be at least 1");
        }
        shape.layers = n;
    }
    if let Some(n) = a.vocab {
        shape.vocab = n;
    }
    let target = parse_target(&a.ty)?;
    let o = SynthOptions {
        shape,
        ty: match target {
            Target::Type(t) => t,
            Target::Mix(m) => m.base(),
        },
        embd: parse_type(&a.embd)?,
        mix: match target {
            Target::Mix(m) => Some(m),
            Target::Type(_) => None,
        },
        seed: a.seed,
    };
    let t = std::time::Instant::now();
    write(&o, &a.out)?;
    let bytes = std::fs::metadata(&a.out)?.len();
    let s = &o.shape;
    eprintln!(
        "wrote {} ({:.1} MiB) in {:.1}s: {} layers, dim {}, ffn {}, heads {}/{}, vocab {}, {} weights, {} embedding, seed {}",
        a.out.display(),
        bytes as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64(),
        s.layers,
        s.dim,
        s.ffn,
        s.heads,
        s.kv_heads,
        s.vocab,
        o.mix.map_or(o.ty.to_string(), |m| m.name().to_string()),
        o.mix.map_or(o.embd.to_string(), |_| "mix-chosen".to_string()),
        o.seed
    );
    Ok(())
}
