//! Config, weight loading and forward-pass argument checks on tiny synthetic GGUF files.

use q4gpu::gguf::{GgmlType, Gguf, GgufWriter, Value};
use q4gpu::model::{Config, CpuModel, ModelError, Weights};

const DIM: u64 = 8;
const HEADS: u64 = 2;
const KV_HEADS: u64 = 1;
const FFN: u64 = 16;
const LAYERS: u64 = 2;
const VOCAB: u64 = 10;
const CTX: u64 = 16;

/// A tiny llama model (F32 weights) whose metadata and tensors tests can edit.
struct Tiny {
    kv: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<u64>, Vec<f32>)>,
}

/// Deterministic values in [-0.5, 0.5).
fn fill(n: u64, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

impl Tiny {
    fn new() -> Self {
        let kv = vec![
            ("general.architecture".into(), Value::String("llama".into())),
            ("llama.block_count".into(), Value::U32(LAYERS as u32)),
            ("llama.context_length".into(), Value::U32(CTX as u32)),
            ("llama.embedding_length".into(), Value::U32(DIM as u32)),
            ("llama.feed_forward_length".into(), Value::U32(FFN as u32)),
            (
                "llama.attention.head_count".into(),
                Value::U32(HEADS as u32),
            ),
            (
                "llama.attention.head_count_kv".into(),
                Value::U32(KV_HEADS as u32),
            ),
            ("llama.rope.freq_base".into(), Value::F32(500.0)),
            (
                "llama.attention.layer_norm_rms_epsilon".into(),
                Value::F32(1e-5),
            ),
            (
                "llama.rope.dimension_count".into(),
                Value::U32((DIM / HEADS) as u32),
            ),
            (
                "tokenizer.ggml.tokens".into(),
                Value::Array((0..VOCAB).map(|i| Value::String(format!("t{i}"))).collect()),
            ),
        ];
        let hd = DIM / HEADS;
        let mut t = Tiny {
            kv,
            tensors: Vec::new(),
        };
        let mut seed = 1;
        let mut add = |t: &mut Tiny, name: String, dims: Vec<u64>| {
            let n = dims.iter().product();
            let data = if name.contains("norm") {
                fill(n, seed).iter().map(|v| 1.0 + v).collect()
            } else {
                fill(n, seed)
            };
            seed += 1;
            t.tensors.push((name, dims, data));
        };
        add(&mut t, "token_embd.weight".into(), vec![DIM, VOCAB]);
        for i in 0..LAYERS {
            let b = |s: &str| format!("blk.{i}.{s}.weight");
            add(&mut t, b("attn_norm"), vec![DIM]);
            add(&mut t, b("attn_q"), vec![DIM, HEADS * hd]);
            add(&mut t, b("attn_k"), vec![DIM, KV_HEADS * hd]);
            add(&mut t, b("attn_v"), vec![DIM, KV_HEADS * hd]);
            add(&mut t, b("attn_output"), vec![HEADS * hd, DIM]);
            add(&mut t, b("ffn_norm"), vec![DIM]);
            add(&mut t, b("ffn_gate"), vec![DIM, FFN]);
            add(&mut t, b("ffn_up"), vec![DIM, FFN]);
            add(&mut t, b("ffn_down"), vec![FFN, DIM]);
        }
        add(&mut t, "output_norm.weight".into(), vec![DIM]);
        t
    }

    fn set_kv(mut self, key: &str, v: Value) -> Self {
        self.kv.retain(|(k, _)| k != key);
        self.kv.push((key.into(), v));
        self
    }

    fn remove_kv(mut self, key: &str) -> Self {
        self.kv.retain(|(k, _)| k != key);
        self
    }

    fn set_tensor(mut self, name: &str, dims: Vec<u64>, data: Vec<f32>) -> Self {
        self.tensors.retain(|(n, _, _)| n != name);
        self.tensors.push((name.into(), dims, data));
        self
    }

    fn remove_tensor(mut self, name: &str) -> Self {
        self.tensors.retain(|(n, _, _)| n != name);
        self
    }

    fn tensor(&self, name: &str) -> Vec<f32> {
        self.tensors
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap()
            .2
            .clone()
    }

    fn build(&self) -> Gguf {
        let mut w = GgufWriter::new();
        for (k, v) in &self.kv {
            w.add_kv(k.clone(), v.clone());
        }
        for (name, dims, data) in &self.tensors {
            let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            w.add_tensor(name.clone(), GgmlType::F32, dims, bytes)
                .unwrap();
        }
        let mut out = Vec::new();
        w.write_to(&mut out).unwrap();
        Gguf::from_bytes(out).unwrap()
    }
}

fn config_err(t: Tiny) -> ModelError {
    Config::from_gguf(&t.build()).unwrap_err()
}

#[test]
fn tiny_config_loads() {
    let g = Tiny::new().build();
    let cfg = Config::from_gguf(&g).unwrap();
    assert_eq!(
        cfg,
        Config {
            arch: q4gpu::model::Arch::Llama,
            n_layers: 2,
            dim: 8,
            ffn_dim: 16,
            n_heads: 2,
            n_kv_heads: 1,
            head_dim: 4,
            vocab_size: 10,
            context_len: 16,
            rope_base: 500.0,
            rope_scale: 1.0,
            rope_freq_factors: None,
            rms_eps: 1e-5,
        }
    );
    assert_eq!(cfg.kv_dim(), 4);
    assert_eq!(cfg.kv_group(), 2);
}

#[test]
fn optional_keys_have_defaults() {
    let t = Tiny::new()
        .remove_kv("llama.attention.head_count_kv")
        .remove_kv("llama.rope.freq_base")
        .remove_kv("llama.rope.dimension_count");
    let cfg = Config::from_gguf(&t.build()).unwrap();
    assert_eq!(cfg.n_kv_heads, cfg.n_heads);
    assert_eq!(cfg.rope_base, 10000.0);
}

#[test]
fn wrong_architecture_is_named() {
    let e = config_err(Tiny::new().set_kv("general.architecture", Value::String("gpt2".into())));
    assert!(
        matches!(&e, ModelError::UnsupportedArchitecture(a) if a == "gpt2"),
        "{e:?}"
    );
    assert!(e.to_string().contains("gpt2"));
}

/// RoPE scaling as llama.cpp reads it: Llama 3's per-pair factors
/// (`rope_freqs.weight`), linear scaling by `llama.rope.scaling.factor`
/// (type `linear`, the default) or none (type `none`); anything else, or a
/// bad factor, is refused with an error naming it.
#[test]
fn rope_scaling_is_read_or_refused_by_name() {
    let cfg = |t: Tiny| Config::from_gguf(&t.build()).unwrap();
    let c = cfg(Tiny::new().set_tensor("rope_freqs.weight", vec![2], vec![1.0, 4.0]));
    assert_eq!(c.rope_freq_factors, Some(vec![1.0, 4.0]));
    assert_eq!(c.rope_scale, 1.0);
    // head_dim 4, base 500: pair 1 turns 500^(-1/2) per position, divided by 4.
    let f = c.rope_freqs();
    assert!(
        (f[0] - 1.0).abs() < 1e-15 && (f[1] - 500f64.powf(-0.5) / 4.0).abs() < 1e-15,
        "{f:?}"
    );
    let c = cfg(Tiny::new().set_kv("llama.rope.scaling.factor", Value::F32(8.0)));
    assert_eq!((c.rope_scale, c.rope_freqs()[0]), (0.125, 0.125));
    let none = Tiny::new()
        .set_kv("llama.rope.scaling.type", Value::String("none".into()))
        .set_kv("llama.rope.scaling.factor", Value::F32(8.0));
    assert_eq!(cfg(none).rope_scale, 1.0);
    assert_eq!(
        Config::from_gguf(&Tiny::new().build())
            .unwrap()
            .rope_freq_factors,
        None
    );

    let e = config_err(Tiny::new().set_kv("llama.rope.scaling.type", Value::String("yarn".into())));
    assert!(matches!(&e, ModelError::UnsupportedVariant(_)), "{e:?}");
    assert!(e.to_string().contains("yarn"), "{e}");
    for bad in [vec![1.0, 0.0], vec![f32::NAN, 1.0], vec![-2.0, 1.0]] {
        let e = config_err(Tiny::new().set_tensor("rope_freqs.weight", vec![2], bad));
        assert!(e.to_string().contains("rope_freqs.weight"), "{e}");
    }
    let e = config_err(Tiny::new().set_tensor("rope_freqs.weight", vec![3], vec![1.0; 3]));
    assert!(e.to_string().contains("rope_freqs.weight"), "{e}");
    let e = config_err(Tiny::new().set_kv("llama.rope.scaling.factor", Value::F32(-1.0)));
    assert!(e.to_string().contains("llama.rope.scaling.factor"), "{e}");
}

#[test]
fn missing_required_key_is_named() {
    let e = config_err(Tiny::new().remove_kv("llama.embedding_length"));
    assert!(e.to_string().contains("llama.embedding_length"), "{e}");
}

#[test]
fn inconsistent_config_names_the_key() {
    let cases = [
        (
            "llama.attention.head_count",
            Value::U32(3),
            "llama.attention.head_count",
        ),
        (
            "llama.attention.head_count_kv",
            Value::U32(3),
            "llama.attention.head_count_kv",
        ),
        (
            "llama.context_length",
            Value::U32(0),
            "llama.context_length",
        ),
        ("llama.block_count", Value::U32(0), "llama.block_count"),
        (
            "llama.feed_forward_length",
            Value::U32(0),
            "llama.feed_forward_length",
        ),
    ];
    for (key, v, named) in cases {
        let e = config_err(Tiny::new().set_kv(key, v));
        match &e {
            ModelError::BadConfig { key, .. } => assert_eq!(key, named),
            other => panic!("{key}: expected BadConfig, got {other:?}"),
        }
        assert!(e.to_string().contains(named), "{e}");
    }
}

#[test]
fn partial_rotary_is_rejected() {
    let e = config_err(Tiny::new().set_kv("llama.rope.dimension_count", Value::U32(2)));
    assert!(
        matches!(
            e,
            ModelError::PartialRotary {
                rope_dims: 2,
                head_dim: 4
            }
        ),
        "{e:?}"
    );
}

#[test]
fn vocab_must_match_embedding_rows() {
    let tokens = Value::Array((0..11).map(|i| Value::String(format!("t{i}"))).collect());
    let e = config_err(Tiny::new().set_kv("tokenizer.ggml.tokens", tokens));
    assert!(
        matches!(
            e,
            ModelError::VocabMismatch {
                tokens: 11,
                embd_rows: 10
            }
        ),
        "{e:?}"
    );
}

#[test]
fn weights_load_with_tied_output() {
    let g = Tiny::new().build();
    let cfg = Config::from_gguf(&g).unwrap();
    let w = Weights::from_gguf(&g, &cfg).unwrap();
    assert!(w.tied_output);
    assert_eq!((w.output.rows, w.output.cols), (10, 8));
    assert_eq!(w.output.data, w.token_embd.data);
    assert_eq!(w.layers.len(), 2);
    let l = &w.layers[1];
    assert_eq!((l.wq.rows, l.wq.cols), (8, 8));
    assert_eq!((l.wk.rows, l.wk.cols), (4, 8));
    assert_eq!((l.w_down.rows, l.w_down.cols), (8, 16));
    assert_eq!(l.ffn_norm.len(), 8);
    assert_eq!(l.ffn_norm, Tiny::new().tensor("blk.1.ffn_norm.weight"));
    // Row access is bounds-checked.
    assert_eq!(w.token_embd.row(9).map(<[u8]>::len), Some(32));
    assert!(w.token_embd.row(10).is_none());
}

#[test]
fn wrong_tensor_shape_names_tensor_and_shapes() {
    let g = Tiny::new()
        .set_tensor("blk.1.attn_k.weight", vec![DIM, 8], fill(64, 99))
        .build();
    let cfg = Config::from_gguf(&g).unwrap();
    let e = Weights::from_gguf(&g, &cfg).unwrap_err();
    match &e {
        ModelError::TensorShape {
            name,
            expected,
            found,
        } => {
            assert_eq!(name, "blk.1.attn_k.weight");
            assert_eq!(expected, "[4, 8]");
            assert_eq!(found, "[8, 8]");
        }
        other => panic!("expected TensorShape, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("blk.1.attn_k.weight") && msg.contains("[4, 8]"),
        "{msg}"
    );

    let g = Tiny::new()
        .set_tensor("output_norm.weight", vec![4, 2], fill(8, 5))
        .build();
    let e = Weights::from_gguf(&g, &cfg).unwrap_err();
    assert!(
        matches!(&e, ModelError::TensorShape { name, .. } if name == "output_norm.weight"),
        "{e:?}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let g = Tiny::new().remove_tensor("blk.0.ffn_up.weight").build();
    let cfg = Config::from_gguf(&g).unwrap();
    let e = Weights::from_gguf(&g, &cfg).unwrap_err();
    assert!(e.to_string().contains("blk.0.ffn_up.weight"), "{e}");
}

#[test]
fn explicit_output_equal_to_embedding_gives_same_logits() {
    let tied = Tiny::new();
    let embd = tied.tensor("token_embd.weight");
    let untied = Tiny::new().set_tensor("output.weight", vec![DIM, VOCAB], embd);
    let (g1, g2) = (tied.build(), untied.build());
    let cfg = Config::from_gguf(&g1).unwrap();
    let w2 = Weights::from_gguf(&g2, &cfg).unwrap();
    assert!(!w2.tied_output);
    assert_eq!(w2.output.name, "output.weight");
    let mut m1 = CpuModel::new(cfg.clone(), Weights::from_gguf(&g1, &cfg).unwrap());
    let mut m2 = CpuModel::new(cfg, w2);
    for (pos, tok) in [3u32, 7, 1].into_iter().enumerate() {
        let a = m1.forward(tok, pos).unwrap().to_vec();
        let b = m2.forward(tok, pos).unwrap().to_vec();
        assert_eq!(a, b);
        assert_eq!(a.len(), 10);
        assert!(a.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn forward_rejects_bad_token_and_position() {
    let g = Tiny::new().build();
    let cfg = Config::from_gguf(&g).unwrap();
    let w = Weights::from_gguf(&g, &cfg).unwrap();
    let mut m = CpuModel::with_max_positions(cfg.clone(), w.clone(), 4);
    assert_eq!(m.max_positions(), 4);
    assert!(matches!(
        m.forward(10, 0),
        Err(ModelError::TokenOutOfRange {
            token: 10,
            vocab_size: 10
        })
    ));
    // Skipping ahead of the cache.
    assert!(matches!(
        m.forward(1, 1),
        Err(ModelError::PositionSkipped { pos: 1, filled: 0 })
    ));
    for pos in 0..4 {
        m.forward(1, pos).unwrap();
    }
    assert_eq!(m.positions(), 4);
    assert!(matches!(
        m.forward(1, 4),
        Err(ModelError::PositionOutOfRange { pos: 4, max: 4 })
    ));
    m.reset();
    assert_eq!(m.positions(), 0);
    assert!(m.forward(1, 1).is_err());

    // The maximum is capped at the context length.
    let mut big = CpuModel::with_max_positions(cfg, w, 1000);
    assert_eq!(big.max_positions(), 16);
    for pos in 0..16 {
        big.forward(2, pos).unwrap();
    }
    assert!(matches!(
        big.forward(2, 16),
        Err(ModelError::PositionOutOfRange { pos: 16, max: 16 })
    ));
}

#[test]
fn rewinding_recomputes_the_same_logits() {
    let g = Tiny::new().build();
    let cfg = Config::from_gguf(&g).unwrap();
    let mut m = CpuModel::new(cfg.clone(), Weights::from_gguf(&g, &cfg).unwrap());
    let toks = [4u32, 2, 9, 0, 5];
    let first: Vec<Vec<f32>> = toks
        .iter()
        .enumerate()
        .map(|(p, &t)| m.forward(t, p).unwrap().to_vec())
        .collect();
    // Rewind to position 2 with a different token, then back to the original.
    let other = m.forward(7, 2).unwrap().to_vec();
    assert_ne!(other, first[2]);
    assert_eq!(m.positions(), 3);
    for p in 2..5 {
        assert_eq!(
            m.forward(toks[p], p).unwrap(),
            &first[p][..],
            "position {p}"
        );
    }
    // A fresh model after reset agrees with the first run.
    m.reset();
    for (p, &t) in toks.iter().enumerate() {
        assert_eq!(m.forward(t, p).unwrap(), &first[p][..]);
    }
}

#[test]
fn logits_depend_on_context() {
    // Attention must mix earlier positions in: same token at pos 1, different history.
    let g = Tiny::new().build();
    let cfg = Config::from_gguf(&g).unwrap();
    let mut m = CpuModel::new(cfg.clone(), Weights::from_gguf(&g, &cfg).unwrap());
    m.forward(1, 0).unwrap();
    let a = m.forward(3, 1).unwrap().to_vec();
    m.reset();
    m.forward(8, 0).unwrap();
    let b = m.forward(3, 1).unwrap().to_vec();
    assert_ne!(a, b);
}
