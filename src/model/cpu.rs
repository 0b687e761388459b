//! Plain f32 reference forward pass of a llama model on the CPU, top to bottom like
//! llama2.c's `forward()`: the oracle the GPU forward pass is tested against.

use crate::quant::{self, QuantError};

use super::{Config, LayerWeights, ModelError, QTensor, Weights};

/// A llama model ready to run one token at a time on the CPU, with its KV cache.
pub struct CpuModel<'a> {
    cfg: Config,
    w: Weights<'a>,
    /// Positions allowed: `min(context_len, requested maximum)`.
    max_positions: usize,
    /// Positions `0..filled` hold valid keys and values.
    filled: usize,
    /// Worker threads for the matrix-vector products.
    threads: usize,
    /// Keys after RoPE: `[n_layers][positions * kv_dim]`, grown on demand.
    key_cache: Vec<Vec<f32>>,
    /// Values: `[n_layers][positions * kv_dim]`, grown on demand.
    value_cache: Vec<Vec<f32>>,
    /// Residual stream: `[dim]`.
    x: Vec<f32>,
    /// Attention output, all heads: `[n_heads * head_dim]` (= `[dim]`).
    xb: Vec<f32>,
    /// Normed input of a sub-block, then a projection back to the residual: `[dim]`.
    xb2: Vec<f32>,
    /// Queries: `[n_heads * head_dim]`.
    q: Vec<f32>,
    /// Keys of the current position: `[kv_dim]`.
    k: Vec<f32>,
    /// Values of the current position: `[kv_dim]`.
    v: Vec<f32>,
    /// Attention scores of one head: `[positions]`, grown on demand.
    att: Vec<f32>,
    /// Feed-forward gate, then silu(gate) * up: `[ffn_dim]`.
    hb: Vec<f32>,
    /// Feed-forward up: `[ffn_dim]`.
    hb2: Vec<f32>,
    /// Output of the last forward: `[vocab_size]`.
    logits: Vec<f32>,
    /// RoPE angle per position of each pair: `[head_dim / 2]`.
    rope_freqs: Vec<f64>,
}

impl<'a> CpuModel<'a> {
    /// A model allowed to run up to the full context length (the KV cache grows as needed).
    pub fn new(cfg: Config, w: Weights<'a>) -> Self {
        let max = cfg.context_len;
        Self::with_max_positions(cfg, w, max)
    }

    /// A model limited to `max_positions` positions (capped at the context length).
    pub fn with_max_positions(cfg: Config, w: Weights<'a>, max_positions: usize) -> Self {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8);
        let q_dim = cfg.n_heads * cfg.head_dim;
        CpuModel {
            max_positions: max_positions.min(cfg.context_len),
            filled: 0,
            threads,
            key_cache: vec![Vec::new(); cfg.n_layers],
            value_cache: vec![Vec::new(); cfg.n_layers],
            x: vec![0.0; cfg.dim],
            xb: vec![0.0; q_dim],
            xb2: vec![0.0; cfg.dim],
            q: vec![0.0; q_dim],
            k: vec![0.0; cfg.kv_dim()],
            v: vec![0.0; cfg.kv_dim()],
            att: Vec::new(),
            hb: vec![0.0; cfg.ffn_dim],
            hb2: vec![0.0; cfg.ffn_dim],
            logits: vec![0.0; cfg.vocab_size],
            rope_freqs: cfg.rope_freqs(),
            cfg,
            w,
        }
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The weights the model runs on.
    pub fn weights(&self) -> &Weights<'a> {
        &self.w
    }

    /// Most positions `forward` accepts.
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Positions currently held in the KV cache (the next `pos` to feed).
    pub fn positions(&self) -> usize {
        self.filled
    }

    /// Sets how many threads share each matrix-vector product (at least 1).
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// Forgets every cached position; the next call must be `forward(_, 0)`.
    pub fn reset(&mut self) {
        self.filled = 0;
    }

    /// Refuses a token outside the vocabulary and a position past the cache
    /// or ahead of what it holds.
    fn check_step(&self, token: u32, pos: usize) -> Result<(), ModelError> {
        if token as usize >= self.cfg.vocab_size {
            return Err(ModelError::TokenOutOfRange {
                token,
                vocab_size: self.cfg.vocab_size,
            });
        }
        if pos >= self.max_positions {
            return Err(ModelError::PositionOutOfRange {
                pos,
                max: self.max_positions,
            });
        }
        if pos > self.filled {
            return Err(ModelError::PositionSkipped {
                pos,
                filled: self.filled,
            });
        }
        Ok(())
    }

    /// Runs `token` at position `pos` and returns the logits for the next token.
    ///
    /// `pos` may rewind (positions after it are forgotten) but not skip ahead of
    /// the cache; it must be below [`CpuModel::max_positions`].
    pub fn forward(&mut self, token: u32, pos: usize) -> Result<&[f32], ModelError> {
        self.check_step(token, pos)?;
        let Self {
            cfg,
            w,
            max_positions: _,
            filled,
            threads,
            key_cache,
            value_cache,
            x,
            xb,
            xb2,
            q,
            k,
            v,
            att,
            hb,
            hb2,
            logits,
            rope_freqs,
        } = self;
        let threads = *threads;
        // Until this call succeeds, position `pos` (and all after it) is invalid.
        *filled = pos;

        let dim = cfg.dim;
        let hd = cfg.head_dim;
        let kv_dim = cfg.kv_dim();
        let group = cfg.kv_group();
        let n_pos = pos + 1;
        let scale = 1.0 / (hd as f32).sqrt();
        let mismatch = || ModelError::Invalid("weights do not match the config".into());

        // Embedding: dequantize the token's row of the table.
        let row = w.token_embd.row(token as usize).ok_or_else(mismatch)?;
        quant::dequantize(w.token_embd.ty, row, x)?;

        if w.layers.len() != cfg.n_layers || key_cache.len() != cfg.n_layers {
            return Err(mismatch());
        }
        if att.len() < n_pos {
            att.resize(n_pos, 0.0);
        }
        let scores = att.get_mut(..n_pos).ok_or_else(mismatch)?;
        let att_out = xb;

        for ((layer, kc), vc) in w.layers.iter().zip(key_cache).zip(value_cache) {
            // Attention: normed input → Q, K, V → RoPE.
            rmsnorm(&mut xb2[..], x, &layer.attn_norm, cfg.rms_eps);
            matvec(q, &layer.wq, xb2, threads)?;
            matvec(k, &layer.wk, xb2, threads)?;
            matvec(v, &layer.wv, xb2, threads)?;
            position_qkv(cfg, layer, rope_freqs, pos, (q, k, v));

            store_kv(kc, vc, k, v, pos).ok_or_else(mismatch)?;
            let end = n_pos * kv_dim;

            // Grouped-query attention over positions 0..=pos.
            let keys = kc.get(..end).ok_or_else(mismatch)?;
            let values = vc.get(..end).ok_or_else(mismatch)?;
            for (h, (qh, out)) in q
                .chunks_exact(hd)
                .zip(att_out.chunks_exact_mut(hd))
                .enumerate()
            {
                let offset = (h / group) * hd;
                attention_head(qh, keys, values, kv_dim, offset, scale, scores, out)?;
            }

            // Output projection and residual.
            matvec(xb2, &layer.wo, att_out, threads)?;
            add_assign(x, xb2);

            // Feed-forward: normed input → silu(gate) * up → down → residual.
            rmsnorm(xb2, x, &layer.ffn_norm, cfg.rms_eps);
            matvec(hb, &layer.w_gate, xb2, threads)?;
            matvec(hb2, &layer.w_up, xb2, threads)?;
            for (g, u) in hb.iter_mut().zip(hb2.iter()) {
                *g = silu(*g) * u;
            }
            matvec(xb2, &layer.w_down, hb, threads)?;
            add_assign(x, xb2);
        }

        // Final norm and LM head.
        let normed = xb2.get_mut(..dim).ok_or_else(mismatch)?;
        rmsnorm(normed, x, &w.output_norm, cfg.rms_eps);
        matvec(logits, &w.output, normed, threads)?;
        *filled = n_pos;
        Ok(logits)
    }
}

/// Stores position `pos`'s keys `k` and values `v` (one kv_dim-long row
/// each) in the caches, growing them to hold positions 0..=pos; `None` if
/// the lengths disagree.
fn store_kv(kc: &mut Vec<f32>, vc: &mut Vec<f32>, k: &[f32], v: &[f32], pos: usize) -> Option<()> {
    let (start, end) = (pos * k.len(), (pos + 1) * k.len());
    if kc.len() < end {
        kc.resize(end, 0.0);
        vc.resize(end, 0.0);
    }
    kc.get_mut(start..end)?.copy_from_slice(k);
    vc.get_mut(start..end)?.copy_from_slice(v);
    Some(())
}

/// `x += y` element-wise.
fn add_assign(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// `out[r] = w[r] · x` for every row, split over `threads` scoped threads.
fn matvec(out: &mut [f32], w: &QTensor, x: &[f32], threads: usize) -> Result<(), ModelError> {
    let rb = w.row_bytes();
    if out.len() != w.rows || x.len() != w.cols || rb == 0 || w.data.len() != w.rows * rb {
        return Err(ModelError::Invalid(format!(
            "matvec with '{}' [{}, {}]: output {} / input {} elements",
            w.name,
            w.rows,
            w.cols,
            out.len(),
            x.len()
        )));
    }
    let ty = w.ty;
    let work = |out: &mut [f32], data: &[u8]| -> Result<(), QuantError> {
        for (o, row) in out.iter_mut().zip(data.chunks_exact(rb)) {
            *o = quant::dot(ty, row, x)?;
        }
        Ok(())
    };
    // Small products are not worth a thread.
    if threads <= 1 || w.rows * w.cols < 1 << 16 {
        return Ok(work(out, w.data)?);
    }
    let per = w.rows.div_ceil(threads);
    let mut chunks = out.chunks_mut(per).zip(w.data.chunks(per * rb));
    let first = chunks.next();
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks.map(|(o, d)| s.spawn(move || work(o, d))).collect();
        let mut result = match first {
            Some((o, d)) => work(o, d).map_err(ModelError::from),
            None => Ok(()),
        };
        for h in handles {
            let r = match h.join() {
                Ok(r) => r.map_err(ModelError::from),
                Err(_) => Err(ModelError::Invalid("matvec worker panicked".into())),
            };
            result = result.and(r);
        }
        result
    })
}

/// RMSNorm: `out[i] = x[i] / sqrt(mean(x²) + eps) * weight[i]`.
///
/// Works over the shortest of the three slices; the mean is over all of `x`.
pub fn rmsnorm(out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
    if x.is_empty() {
        return;
    }
    let ss: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let scale = (1.0 / (ss / x.len() as f64 + f64::from(eps)).sqrt()) as f32;
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(weight) {
        *o = v * scale * g;
    }
}

/// What follows the Q, K, V projections before attention: the biases
/// (Qwen2), each head's RMSNorm (Qwen3), RoPE on q and k (adjacent or NeoX
/// pairs).
fn position_qkv(
    cfg: &Config,
    layer: &LayerWeights<'_>,
    rope_freqs: &[f64],
    pos: usize,
    (q, k, v): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let (hd, kv_dim) = (cfg.head_dim, cfg.kv_dim());
    if let Some(b) = &layer.qkv_bias {
        let qd = q.len();
        let (bq, rest) = b.split_at(qd.min(b.len()));
        let (bk, bv) = rest.split_at(kv_dim.min(rest.len()));
        for (x, b) in q
            .iter_mut()
            .chain(k.iter_mut())
            .chain(v.iter_mut())
            .zip(bq.iter().chain(bk).chain(bv))
        {
            *x += b;
        }
    }
    if let Some(n) = &layer.qk_norm {
        let (qn, kn) = n.split_at(hd.min(n.len()));
        head_rmsnorm(q, qn, cfg.rms_eps);
        head_rmsnorm(k, kn, cfg.rms_eps);
    }
    let rotate = if cfg.arch.rope_neox() {
        rope_neox_at
    } else {
        rope_at
    };
    rotate(q, rope_freqs, pos);
    rotate(k, rope_freqs, pos);
}

/// RMSNorm in place on every head of `x` (heads of `gain.len()` elements):
/// Qwen3's normalization of Q and K before RoPE.
fn head_rmsnorm(x: &mut [f32], gain: &[f32], eps: f32) {
    if gain.is_empty() {
        return;
    }
    for head in x.chunks_exact_mut(gain.len()) {
        let v = head.to_vec();
        rmsnorm(head, &v, gain, eps);
    }
}

/// Softmax in place, numerically stable (the maximum is subtracted first).
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += f64::from(*v);
    }
    if sum > 0.0 {
        let inv = (1.0 / sum) as f32;
        for v in x.iter_mut() {
            *v *= inv;
        }
    }
}

/// SiLU (swish): `x * sigmoid(x)`.
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// RoPE in place on every head of `x` (heads of `head_dim` elements), llama.cpp's
/// "normal" mode as GGUF llama files need it: the adjacent pair `(x[2i], x[2i+1])`
/// is rotated by `pos * base^(-2i / head_dim)`.
pub fn rope(x: &mut [f32], head_dim: usize, pos: usize, base: f32) {
    rope_at(x, &rope_freqs(head_dim, base, 1.0, None), pos);
}

/// The angle per position of each rotated pair `i < head_dim / 2` of a head:
/// `scale · base^(−2i / head_dim) / factors[i]` (llama.cpp's `freq_scale`,
/// the linear RoPE scaling, and Llama 3's `rope_freqs.weight` factors).
pub fn rope_freqs(head_dim: usize, base: f32, scale: f32, factors: Option<&[f32]>) -> Vec<f64> {
    (0..head_dim / 2)
        .map(|i| {
            let f = f64::from(scale) * f64::from(base).powf(-2.0 * i as f64 / head_dim as f64);
            f / factors
                .and_then(|ff| ff.get(i))
                .map_or(1.0, |&v| f64::from(v))
        })
        .collect()
}

/// RoPE in place on every head of `x`, heads of `2 · freqs.len()` elements:
/// pair `(x[2i], x[2i+1])` rotated by `pos · freqs[i]` (see [`rope_freqs`]).
pub fn rope_at(x: &mut [f32], freqs: &[f64], pos: usize) {
    let head_dim = 2 * freqs.len();
    if head_dim < 2 {
        return;
    }
    let rot: Vec<(f32, f32)> = freqs
        .iter()
        .map(|&freq| {
            let (s, c) = (pos as f64 * freq).sin_cos();
            (c as f32, s as f32)
        })
        .collect();
    for head in x.chunks_exact_mut(head_dim) {
        for (pair, &(c, s)) in head.chunks_exact_mut(2).zip(&rot) {
            if let [a, b] = pair {
                let (x0, x1) = (*a, *b);
                *a = x0 * c - x1 * s;
                *b = x0 * s + x1 * c;
            }
        }
    }
}

/// RoPE in llama.cpp's NeoX mode (Qwen2): in every head of `2 · freqs.len()`
/// elements, the pair `(x[i], x[i + head_dim/2])` rotated by `pos · freqs[i]`.
pub fn rope_neox_at(x: &mut [f32], freqs: &[f64], pos: usize) {
    let half = freqs.len();
    if half == 0 {
        return;
    }
    for head in x.chunks_exact_mut(2 * half) {
        let (lo, hi) = head.split_at_mut(half);
        for ((a, b), &freq) in lo.iter_mut().zip(hi.iter_mut()).zip(freqs) {
            let (s, c) = (pos as f64 * freq).sin_cos();
            let (c, s) = (c as f32, s as f32);
            let (x0, x1) = (*a, *b);
            *a = x0 * c - x1 * s;
            *b = x0 * s + x1 * c;
        }
    }
}

/// One attention head over `scores.len()` positions.
///
/// `keys` and `values` hold one row of `stride` floats per position; this head's
/// slice starts at `offset` and has `q.len()` floats. Scores are `q·k * scale`,
/// softmaxed (left in `scores`), and `out` receives the weighted sum of values.
#[allow(clippy::too_many_arguments)]
pub fn attention_head(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    stride: usize,
    offset: usize,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) -> Result<(), ModelError> {
    let hd = q.len();
    let n_pos = scores.len();
    let need = n_pos.checked_mul(stride);
    if out.len() != hd
        || stride == 0
        || offset.checked_add(hd).is_none_or(|e| e > stride)
        || need.is_none_or(|n| n > keys.len() || n > values.len())
    {
        return Err(ModelError::Invalid(format!(
            "attention head: {hd} floats at offset {offset} of rows of {stride}, \
             {n_pos} positions, {} keys, {} values, {} outputs",
            keys.len(),
            values.len(),
            out.len()
        )));
    }
    fn head(row: &[f32], offset: usize, hd: usize) -> &[f32] {
        row.get(offset..offset + hd).unwrap_or(&[])
    }
    for (s, krow) in scores.iter_mut().zip(keys.chunks_exact(stride)) {
        let dot: f32 = q
            .iter()
            .zip(head(krow, offset, hd))
            .map(|(a, b)| a * b)
            .sum();
        *s = dot * scale;
    }
    softmax(scores);
    out.fill(0.0);
    for (&a, vrow) in scores.iter().zip(values.chunks_exact(stride)) {
        for (o, &v) in out.iter_mut().zip(head(vrow, offset, hd)) {
            *o += a * v;
        }
    }
    Ok(())
}
