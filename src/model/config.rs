//! Llama hyper-parameters read from GGUF metadata and checked for consistency.

use crate::gguf::{Gguf, Value};

use super::ModelError;

/// The model families the forward pass implements (`general.architecture`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama 1–3, SmolLM2, TinyLlama, Mistral: the plain llama block.
    Llama,
    /// Qwen2 / Qwen2.5: biases on the Q, K and V projections, NeoX RoPE.
    Qwen2,
    /// Qwen3 (dense): RMSNorm on each head of Q and K before RoPE (NeoX),
    /// heads wider than `dim / n_heads` (`attention.key_length`).
    Qwen3,
}

impl Arch {
    /// The `general.architecture` value, also the prefix of the model's keys.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
        }
    }

    /// RoPE rotates the pairs (i, i + head_dim/2) (llama.cpp's NeoX mode)
    /// instead of adjacent ones.
    pub fn rope_neox(self) -> bool {
        matches!(self, Arch::Qwen2 | Arch::Qwen3)
    }

    /// Each head of Q and K is RMS-normalized (gains `blk.N.attn_{q,k}_norm`).
    pub fn qk_norm(self) -> bool {
        self == Arch::Qwen3
    }

    /// Q, K and V projections carry biases (`blk.N.attn_{q,k,v}.bias`).
    pub fn qkv_bias(self) -> bool {
        self == Arch::Qwen2
    }
}

/// The shape of a llama-family model: everything the forward pass needs besides weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `general.architecture`.
    pub arch: Arch,
    /// Transformer blocks (`llama.block_count`).
    pub n_layers: usize,
    /// Residual stream width (`llama.embedding_length`).
    pub dim: usize,
    /// Hidden width of the SwiGLU feed-forward (`llama.feed_forward_length`).
    pub ffn_dim: usize,
    /// Query heads (`llama.attention.head_count`).
    pub n_heads: usize,
    /// Key/value heads, fewer than `n_heads` for grouped-query attention.
    pub n_kv_heads: usize,
    /// `dim / n_heads`; RoPE rotates the whole head.
    pub head_dim: usize,
    /// Number of tokens (`tokenizer.ggml.tokens` length = `token_embd` rows).
    pub vocab_size: usize,
    /// Longest sequence the model was trained for (`llama.context_length`).
    pub context_len: usize,
    /// RoPE frequency base (`llama.rope.freq_base`, default 10000).
    pub rope_base: f32,
    /// Linear RoPE scaling: positions times this (`1 / llama.rope.scaling.factor`;
    /// 1 without the key or with scaling type `none`).
    pub rope_scale: f32,
    /// Llama 3's per-pair frequency divisors (`rope_freqs.weight`, `[head_dim / 2]`).
    pub rope_freq_factors: Option<Vec<f32>>,
    /// RMSNorm epsilon (`llama.attention.layer_norm_rms_epsilon`).
    pub rms_eps: f32,
}

impl Config {
    /// Width of one layer's keys (or values) for one position: `n_kv_heads * head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// The RoPE angle per position of each rotated pair (see [`super::rope_freqs`]).
    pub fn rope_freqs(&self) -> Vec<f64> {
        super::rope_freqs(
            self.head_dim,
            self.rope_base,
            self.rope_scale,
            self.rope_freq_factors.as_deref(),
        )
    }

    /// Query heads sharing one key/value head.
    pub fn kv_group(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }

    /// Reads and validates the hyper-parameters of a GGUF file.
    ///
    /// Fails with an error naming the key when one is missing, zero or inconsistent,
    /// and when the architecture is not one of [`Arch`]'s.
    pub fn from_gguf(g: &Gguf) -> Result<Config, ModelError> {
        let arch = match g.get_str("general.architecture")? {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            other => return Err(ModelError::UnsupportedArchitecture(other.to_string())),
        };
        let k = |key: &str| format!("{}.{key}", arch.name());

        let rope_scale = rope_scaling(g, &k)?;
        let n_layers = positive(g, &k("block_count"))?;
        let dim = positive(g, &k("embedding_length"))?;
        let ffn_dim = positive(g, &k("feed_forward_length"))?;
        let n_heads = positive(g, &k("attention.head_count"))?;
        let n_kv_heads = if g.get(&k("attention.head_count_kv")).is_some() {
            positive(g, &k("attention.head_count_kv"))?
        } else {
            n_heads
        };
        let context_len = positive(g, &k("context_length"))?;
        let rope_base = if g.get(&k("rope.freq_base")).is_some() {
            g.get_f32(&k("rope.freq_base"))?
        } else {
            10000.0
        };
        let rms_eps = g.get_f32(&k("attention.layer_norm_rms_epsilon"))?;

        let head_dim = head_dim(g, &k, dim, n_heads)?;
        if n_kv_heads > n_heads || n_heads % n_kv_heads != 0 {
            return Err(bad(
                k("attention.head_count_kv"),
                format!("{n_kv_heads} key/value heads do not divide {n_heads} heads"),
            ));
        }
        if head_dim % 2 != 0 {
            return Err(bad(
                k("attention.head_count"),
                format!("head size {head_dim} is odd; RoPE rotates pairs"),
            ));
        }
        if g.get(&k("rope.dimension_count")).is_some() {
            let rope_dims = g.get_u64(&k("rope.dimension_count"))?;
            if rope_dims != head_dim as u64 {
                return Err(ModelError::PartialRotary {
                    rope_dims,
                    head_dim,
                });
            }
        }
        if !(rope_base.is_finite() && rope_base > 0.0) {
            return Err(bad(
                k("rope.freq_base"),
                format!("{rope_base} is not a positive number"),
            ));
        }
        if !(rms_eps.is_finite() && rms_eps >= 0.0) {
            return Err(bad(
                k("attention.layer_norm_rms_epsilon"),
                format!("{rms_eps} is not a non-negative number"),
            ));
        }

        let vocab_size = match g.get("tokenizer.ggml.tokens") {
            Some(Value::Array(tokens)) => tokens.len(),
            Some(_) => return Err(bad("tokenizer.ggml.tokens", "not an array".into())),
            None => return Err(bad("tokenizer.ggml.tokens", "missing".into())),
        };
        if vocab_size == 0 {
            return Err(bad("tokenizer.ggml.tokens", "empty vocabulary".into()));
        }
        let embd = g.tensor_info("token_embd.weight")?;
        let embd_rows = embd.dims.get(1).copied().unwrap_or(1);
        if embd_rows != vocab_size as u64 {
            return Err(ModelError::VocabMismatch {
                tokens: vocab_size,
                embd_rows,
            });
        }

        let rope_freq_factors = rope_freq_factors(g, head_dim)?;
        Ok(Config {
            arch,
            n_layers,
            dim,
            ffn_dim,
            n_heads,
            n_kv_heads,
            head_dim,
            vocab_size,
            context_len,
            rope_base,
            rope_scale,
            rope_freq_factors,
            rms_eps,
        })
    }
}

/// The head width: `attention.key_length` where given (Qwen3; the value
/// length must agree), else `dim / n_heads`, which must divide.
fn head_dim(
    g: &Gguf,
    k: &dyn Fn(&str) -> String,
    dim: usize,
    n_heads: usize,
) -> Result<usize, ModelError> {
    Ok(if g.get(&k("attention.key_length")).is_some() {
        let hd = positive(g, &k("attention.key_length"))?;
        if g.get(&k("attention.value_length")).is_some()
            && positive(g, &k("attention.value_length"))? != hd
        {
            return Err(bad(
                k("attention.value_length"),
                format!("differs from attention.key_length {hd}"),
            ));
        }
        hd
    } else if !dim.is_multiple_of(n_heads) {
        return Err(bad(
            k("attention.head_count"),
            format!("{n_heads} heads do not divide embedding length {dim}"),
        ));
    } else {
        dim / n_heads
    })
}

/// Reads an integer key that must be present, non-zero and fit in `usize`.
fn positive(g: &Gguf, key: &str) -> Result<usize, ModelError> {
    let v = g.get_u64(key)?;
    if v == 0 {
        return Err(bad(key, "must be greater than zero".into()));
    }
    // Bound sizes so products like dim * ffn_dim cannot overflow on any target.
    if v > u32::MAX as u64 {
        return Err(bad(key, format!("{v} is implausibly large")));
    }
    usize::try_from(v).map_err(|_| bad(key, format!("{v} does not fit in usize")))
}

fn bad(key: impl Into<String>, reason: String) -> ModelError {
    ModelError::BadConfig {
        key: key.into(),
        reason,
    }
}

/// The position scale of RoPE, as llama.cpp reads it: scaling type
/// `linear` (the default) or `none`, `1 / llama.rope.scaling.factor` when
/// the factor is given and non-zero. YaRN and LongRoPE are refused by name
/// rather than decoded wrongly without a word.
fn rope_scaling(g: &Gguf, k: &dyn Fn(&str) -> String) -> Result<f32, ModelError> {
    let (type_key, factor_key) = (k("rope.scaling.type"), k("rope.scaling.factor"));
    let kind = match g.get(&type_key) {
        Some(_) => g.get_str(&type_key)?,
        None => "linear",
    };
    if kind != "linear" && kind != "none" {
        return Err(ModelError::UnsupportedVariant(format!(
            "RoPE scaling type `{kind}` ({type_key}) is not implemented; supported: linear, none"
        )));
    }
    let factor = match g.get(&factor_key) {
        Some(_) => g.get_f32(&factor_key)?,
        None => 0.0,
    };
    if !factor.is_finite() || factor < 0.0 {
        return Err(bad(
            factor_key,
            format!("{factor} is not a non-negative number"),
        ));
    }
    Ok(if factor == 0.0 || kind == "none" {
        1.0
    } else {
        1.0 / factor
    })
}

/// Llama 3's RoPE frequency factors (`rope_freqs.weight`, F32, one per
/// rotated pair), if the file has them; each must be a positive number.
fn rope_freq_factors(g: &Gguf, head_dim: usize) -> Result<Option<Vec<f32>>, ModelError> {
    const NAME: &str = "rope_freqs.weight";
    if !g.tensors().iter().any(|t| t.name == NAME) {
        return Ok(None);
    }
    let f = super::weights::load_vector(g, NAME, head_dim / 2)?;
    if let Some(v) = f.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
        return Err(ModelError::Invalid(format!(
            "tensor '{NAME}': factor {v} is not a positive number"
        )));
    }
    Ok(Some(f))
}
