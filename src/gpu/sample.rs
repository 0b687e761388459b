//! Sampling on the GPU (`sample.wgsl` ↔ `sample.metal`) with the CPU
//! [`Sampler`](crate::sampling::Sampler)'s semantics: repeat penalty over
//! the last N ids (kept on the GPU), top-k, top-p, min-p, temperature and a
//! draw from the host's seeded generator, so decoding with a sampler runs
//! a step ahead of the host as greedy decoding does and reads back 4 bytes
//! per token instead of the logits.
//!
//! What it covers: top-k between 1 and [`MAX_TOP_K`] (top-k 0, "keep all",
//! only where the vocabulary has at most that many tokens). Other settings
//! sample on the host from read-back logits (`Decoder` chooses).

use super::matvec::Dispatch;
use super::shader::SampleParams;
use super::KernelSpec;
use super::{Gpu, GpuError};
use crate::sampling::SamplerConfig;

/// The largest top-k the kernels select (the final pass sorts this many).
pub const MAX_TOP_K: usize = 256;

/// Logits per workgroup of the span pass.
pub const SAMPLE_SPAN: u32 = 1024;

/// Span pass: logits, window counts (read); candidates (written).
const SPAN_BINDINGS: &[bool] = &[true, true, false];
/// Final pass: candidates, step (read); token, history, window counts (written).
const FINAL_BINDINGS: &[bool] = &[true, true, false, false, false];

/// The two sampling passes over one logits buffer, with the token history
/// and the penalty window's per-id counts they keep.
pub struct GpuSampler {
    span: Dispatch,
    fin: Dispatch,
    /// `[positions + 1]` u32: the id at each position (prompt from the
    /// host, sampled ids from the final pass).
    history: wgpu::Buffer,
    /// `[vocab]` u32: how often each id occurs in the penalty window.
    marks: wgpu::Buffer,
    /// `[spans × MAX_TOP_K × 2]` u32: each span's best (key, id) pairs.
    _cands: wgpu::Buffer,
    vocab: usize,
    spans: u32,
}

impl GpuSampler {
    /// Sampling of `vocab` logits into `tok[0]`, reading the step's
    /// position and draw from `step` ([pos, draw bits, ..]), for sequences
    /// of up to `positions` tokens.
    pub fn new(
        gpu: &Gpu,
        logits: &wgpu::Buffer,
        vocab: usize,
        step: &wgpu::Buffer,
        tok: &wgpu::Buffer,
        positions: usize,
    ) -> Result<GpuSampler, GpuError> {
        let spans = vocab.div_ceil(SAMPLE_SPAN as usize);
        if vocab == 0 || spans > 65535 || vocab as u64 * 4 > logits.size() {
            return Err(GpuError::BadArgument(format!(
                "sampling {vocab} logits from a {}-byte buffer",
                logits.size()
            )));
        }
        let spans = spans as u32;
        let u32s = |n: usize| n as u64 * 4;
        let history = gpu.storage(
            "sample history",
            u32s(positions + 1),
            wgpu::BufferUsages::empty(),
        )?;
        let marks = gpu.storage(
            "sample window counts",
            u32s(vocab),
            wgpu::BufferUsages::empty(),
        )?;
        let cands_len = spans as usize * MAX_TOP_K * 2;
        let cands = gpu.storage(
            "sample candidates",
            u32s(cands_len),
            wgpu::BufferUsages::empty(),
        )?;
        let params = SampleParams {
            n: vocab as u32,
            k: 1,
            spans,
            greedy: 1,
            ..Default::default()
        };
        let s = KernelSpec::new("sample", &[], SPAN_BINDINGS);
        let span = Dispatch::launch(
            gpu,
            "sample.span",
            &s,
            &params,
            &[logits, &marks, &cands],
            spans,
        )?;
        let s = KernelSpec::new("sample", &["FINAL"], FINAL_BINDINGS);
        let bufs = [&cands, step, tok, &history, &marks];
        let fin = Dispatch::launch(gpu, "sample.final", &s, &params, &bufs, 1)?;
        Ok(GpuSampler {
            span,
            fin,
            history,
            marks,
            _cands: cands,
            vocab,
            spans,
        })
    }

    /// The kernels' uniforms for `cfg`, or `None` where the GPU does not
    /// sample with these settings (top-k 0 or above [`MAX_TOP_K`] over a
    /// larger vocabulary).
    pub fn params(cfg: &SamplerConfig, vocab: usize, spans: u32) -> Option<SampleParams> {
        let sampler = crate::sampling::Sampler::new(*cfg);
        let greedy = sampler.is_greedy();
        let k = match (greedy, cfg.top_k) {
            (true, _) => 1,
            (false, 0) => vocab,
            (false, k) => k.min(vocab),
        };
        if k > MAX_TOP_K {
            return None;
        }
        let penalize = sampler.penalizes();
        Some(SampleParams {
            n: vocab as u32,
            k: k as u32,
            spans,
            greedy: greedy as u32,
            top_p: if cfg.top_p.is_nan() {
                1.0
            } else {
                cfg.top_p.min(1.0)
            },
            min_p: if cfg.min_p.is_nan() {
                0.0
            } else {
                cfg.min_p.max(0.0)
            },
            temperature: cfg.temperature,
            penalty: if penalize { cfg.repeat_penalty } else { 1.0 },
            last_n: if penalize {
                cfg.repeat_last_n.min(u32::MAX as usize) as u32
            } else {
                0
            },
            ..Default::default()
        })
    }

    /// Whether the kernels sample with `cfg`.
    pub fn supports(&self, cfg: &SamplerConfig) -> bool {
        Self::params(cfg, self.vocab, self.spans).is_some()
    }

    /// Queues the settings and the sequence so far (`recent`: every token
    /// at positions 0.., prompt and output): the history and the penalty
    /// window's counts start from it. Call before the first sampling pass
    /// of a sequence.
    pub fn configure(
        &self,
        gpu: &Gpu,
        cfg: &SamplerConfig,
        recent: &[u32],
    ) -> Result<(), GpuError> {
        let params = Self::params(cfg, self.vocab, self.spans).ok_or_else(|| {
            GpuError::BadArgument(format!(
                "GPU sampling covers top-k 1 to {MAX_TOP_K}; top-k {} over {} tokens samples on the host",
                cfg.top_k, self.vocab
            ))
        })?;
        if recent.len() as u64 * 4 > self.history.size() {
            return Err(GpuError::BadArgument(format!(
                "{} tokens exceed the sampler's history of {} positions",
                recent.len(),
                self.history.size() / 4
            )));
        }
        if let Some(&bad) = recent.iter().find(|&&id| id as usize >= self.vocab) {
            return Err(GpuError::BadArgument(format!(
                "token {bad} is outside the vocabulary of {} tokens",
                self.vocab
            )));
        }
        self.span.write_params(gpu, &params);
        self.fin.write_params(gpu, &params);
        gpu.queue
            .write_buffer(&self.history, 0, bytemuck::cast_slice(recent));
        if params.last_n > 0 {
            let mut counts = vec![0u32; self.vocab];
            let window = recent.len().saturating_sub(params.last_n as usize);
            for &id in &recent[window..] {
                counts[id as usize] += 1;
            }
            gpu.queue
                .write_buffer(&self.marks, 0, bytemuck::cast_slice(&counts));
        }
        Ok(())
    }

    /// Records the two passes. Allocates nothing.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.span.encode(pass);
        self.fin.encode(pass);
    }

    /// Dispatches per sampled token: 2.
    pub fn dispatches(&self) -> usize {
        2
    }
}
