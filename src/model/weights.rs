//! Zero-copy views of a llama model's weight tensors, shape-checked against the config.

use crate::gguf::{GgmlType, Gguf, TensorInfo};
use crate::quant;

use super::{Config, ModelError};

/// A 2-D weight matrix borrowed from the GGUF data: `rows` rows of `cols` elements,
/// row-major, each row `ty.row_bytes(cols)` bytes (ggml's `dims[0]` is `cols`).
#[derive(Clone)]
pub struct QTensor<'a> {
    pub name: String,
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl std::fmt::Debug for QTensor<'_> {
    /// Everything but the bytes, which can be hundreds of megabytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QTensor")
            .field("name", &self.name)
            .field("ty", &self.ty)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("bytes", &self.data.len())
            .finish()
    }
}

impl<'a> QTensor<'a> {
    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.data.len().checked_div(self.rows).unwrap_or(0)
    }

    /// The bytes of row `i`, or `None` past the last row.
    pub fn row(&self, i: usize) -> Option<&'a [u8]> {
        let rb = self.row_bytes();
        let start = i.checked_mul(rb)?;
        self.data.get(start..start.checked_add(rb)?)
    }

    /// Looks up a matrix tensor and checks it is `[rows, cols]` (ggml dims `[cols, rows]`).
    fn load(g: &'a Gguf, name: &str, rows: usize, cols: usize) -> Result<Self, ModelError> {
        let info = g.tensor_info(name)?;
        let found = matrix_shape(info);
        if found != Some((rows as u64, cols as u64)) {
            return Err(ModelError::TensorShape {
                name: name.to_string(),
                expected: format!("[{rows}, {cols}]"),
                found: shape_string(info),
            });
        }
        let data = g.tensor_data(name)?;
        let expected = info
            .ty
            .row_bytes(cols as u64)
            .and_then(|rb| rb.checked_mul(rows as u64));
        if expected != Some(data.len() as u64) {
            return Err(ModelError::TensorSize {
                name: name.to_string(),
                ty: info.ty,
                expected: expected.unwrap_or(0),
                found: data.len() as u64,
            });
        }
        Ok(QTensor {
            name: name.to_string(),
            ty: info.ty,
            rows,
            cols,
            data,
        })
    }
}

/// One transformer block's weights. Shapes are `[rows, cols]` (output × input).
#[derive(Debug, Clone)]
pub struct LayerWeights<'a> {
    /// RMSNorm gain before attention: `[dim]`.
    pub attn_norm: Vec<f32>,
    /// Query projection: `[n_heads * head_dim, dim]`.
    pub wq: QTensor<'a>,
    /// Key projection: `[n_kv_heads * head_dim, dim]`.
    pub wk: QTensor<'a>,
    /// Value projection: `[n_kv_heads * head_dim, dim]`.
    pub wv: QTensor<'a>,
    /// Attention output projection: `[dim, n_heads * head_dim]`.
    pub wo: QTensor<'a>,
    /// Biases of the Q, K and V projections, concatenated as the GPU's QKV
    /// rows are: `[n_heads * head_dim + 2 * kv_dim]` (`blk.N.attn_{q,k,v}.bias`,
    /// Qwen2; optional in llama files, as in llama.cpp).
    pub qkv_bias: Option<Vec<f32>>,
    /// Gains of the per-head RMSNorm of Q then K: `[2 * head_dim]`
    /// (`blk.N.attn_q_norm`, `blk.N.attn_k_norm`; Qwen3).
    pub qk_norm: Option<Vec<f32>>,
    /// RMSNorm gain before the feed-forward: `[dim]`.
    pub ffn_norm: Vec<f32>,
    /// SwiGLU gate projection: `[ffn_dim, dim]`.
    pub w_gate: QTensor<'a>,
    /// SwiGLU up projection: `[ffn_dim, dim]`.
    pub w_up: QTensor<'a>,
    /// Feed-forward down projection: `[dim, ffn_dim]`.
    pub w_down: QTensor<'a>,
}

/// All weights of a llama model, borrowed from a [`Gguf`] except the small norm vectors.
#[derive(Debug, Clone)]
pub struct Weights<'a> {
    /// Token embedding table: `[vocab_size, dim]`.
    pub token_embd: QTensor<'a>,
    /// Transformer blocks: `[n_layers]`.
    pub layers: Vec<LayerWeights<'a>>,
    /// Final RMSNorm gain: `[dim]`.
    pub output_norm: Vec<f32>,
    /// LM head: `[vocab_size, dim]`; a copy of `token_embd`'s view when tied.
    pub output: QTensor<'a>,
    /// True when the file has no `output.weight` and the head reuses `token_embd`.
    pub tied_output: bool,
}

impl<'a> Weights<'a> {
    /// Borrows every weight of a llama model and checks its shape against `cfg`.
    ///
    /// Errors name the tensor and give expected vs found shapes.
    pub fn from_gguf(g: &'a Gguf, cfg: &Config) -> Result<Self, ModelError> {
        let (dim, hd) = (cfg.dim, cfg.head_dim);
        let q_dim = cfg.n_heads * hd;
        let kv_dim = cfg.n_kv_heads * hd;

        let token_embd = QTensor::load(g, "token_embd.weight", cfg.vocab_size, dim)?;
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let name = |t: &str| format!("blk.{i}.{t}.weight");
            layers.push(LayerWeights {
                attn_norm: load_vector(g, &name("attn_norm"), dim)?,
                wq: QTensor::load(g, &name("attn_q"), q_dim, dim)?,
                wk: QTensor::load(g, &name("attn_k"), kv_dim, dim)?,
                wv: QTensor::load(g, &name("attn_v"), kv_dim, dim)?,
                wo: QTensor::load(g, &name("attn_output"), dim, q_dim)?,
                qkv_bias: qkv_bias(g, i, q_dim, kv_dim)?,
                qk_norm: if cfg.arch.qk_norm() {
                    let mut n = load_vector(g, &name("attn_q_norm"), hd)?;
                    n.extend(load_vector(g, &name("attn_k_norm"), hd)?);
                    Some(n)
                } else {
                    None
                },
                ffn_norm: load_vector(g, &name("ffn_norm"), dim)?,
                w_gate: QTensor::load(g, &name("ffn_gate"), cfg.ffn_dim, dim)?,
                w_up: QTensor::load(g, &name("ffn_up"), cfg.ffn_dim, dim)?,
                w_down: QTensor::load(g, &name("ffn_down"), dim, cfg.ffn_dim)?,
            });
        }
        let output_norm = load_vector(g, "output_norm.weight", dim)?;
        let has_output = g.tensors().iter().any(|t| t.name == "output.weight");
        let output = if has_output {
            QTensor::load(g, "output.weight", cfg.vocab_size, dim)?
        } else {
            token_embd.clone()
        };
        Ok(Weights {
            token_embd,
            layers,
            output_norm,
            output,
            tied_output: !has_output,
        })
    }
}

/// Layer `i`'s Q, K and V biases, concatenated, if the file has them: all
/// three or none (a file with only some is an error naming the first missing).
fn qkv_bias(
    g: &Gguf,
    i: usize,
    q_dim: usize,
    kv_dim: usize,
) -> Result<Option<Vec<f32>>, ModelError> {
    let name = |t: &str| format!("blk.{i}.{t}.bias");
    let present = |n: &str| g.tensors().iter().any(|t| t.name == n);
    let parts = [("attn_q", q_dim), ("attn_k", kv_dim), ("attn_v", kv_dim)];
    if !parts.iter().any(|(t, _)| present(&name(t))) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(q_dim + 2 * kv_dim);
    for (t, n) in parts {
        out.extend(load_vector(g, &name(t), n)?);
    }
    Ok(Some(out))
}

/// Reads a 1-D tensor of `n` elements (any supported type) into f32.
pub(super) fn load_vector(g: &Gguf, name: &str, n: usize) -> Result<Vec<f32>, ModelError> {
    let info = g.tensor_info(name)?;
    let len = info.dims.first().copied();
    let trailing_ones = info.dims.iter().skip(1).all(|&d| d == 1);
    if len != Some(n as u64) || !trailing_ones {
        return Err(ModelError::TensorShape {
            name: name.to_string(),
            expected: format!("[{n}]"),
            found: shape_string(info),
        });
    }
    let data = g.tensor_data(name)?;
    let expected = info.ty.row_bytes(n as u64);
    if expected != Some(data.len() as u64) {
        return Err(ModelError::TensorSize {
            name: name.to_string(),
            ty: info.ty,
            expected: expected.unwrap_or(0),
            found: data.len() as u64,
        });
    }
    Ok(quant::dequantize_row_to_vec(info.ty, data, n)?)
}

/// `(rows, cols)` of a tensor with two dims (extra trailing dims of 1 allowed).
fn matrix_shape(info: &TensorInfo) -> Option<(u64, u64)> {
    match info.dims.as_slice() {
        [cols, rows, rest @ ..] if rest.iter().all(|&d| d == 1) => Some((*rows, *cols)),
        _ => None,
    }
}

/// Shape in `[rows, cols]` order (reversed ggml dims), for error messages.
fn shape_string(info: &TensorInfo) -> String {
    let dims: Vec<String> = info.dims.iter().rev().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}
