//! The high-level API: [`Model`] (a GGUF file with its config and tokenizer)
//! and [`Decoder`] (that model resident on a [`Gpu`], generating text).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::clock::Stopwatch;
use crate::error::Result;
use crate::gguf::Gguf;
use crate::gpu::{Gpu, GpuError};
use crate::model::{Config, CpuModel, GpuModel, ModelError, ModelOptions, Weights};
use crate::sampling::{Sampler, SamplerConfig};
use crate::tokenizer::Tokenizer;

/// A llama-architecture GGUF model: the mapped file, its config and tokenizer.
pub struct Model {
    pub gguf: Gguf,
    pub config: Config,
    pub tokenizer: Tokenizer,
}

impl Model {
    /// Opens and validates `path` (architecture, shapes, vocabulary).
    pub fn open(path: impl AsRef<Path>) -> Result<Model> {
        Self::from_gguf(Gguf::open(path)?)
    }

    /// A model from GGUF bytes in memory (a download, a file picker's
    /// contents), validated as [`Model::open`] validates a file: where there
    /// is no file to map, e.g. in a web page.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Model> {
        Self::from_gguf(Gguf::from_bytes(bytes)?)
    }

    fn from_gguf(gguf: Gguf) -> Result<Model> {
        let config = Config::from_gguf(&gguf)?;
        // Validate every weight's presence, type and shape up front.
        Weights::from_gguf(&gguf, &config)?;
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        Ok(Model {
            gguf,
            config,
            tokenizer,
        })
    }

    /// Zero-copy views of the weights.
    pub fn weights(&self) -> Result<Weights<'_>, ModelError> {
        Weights::from_gguf(&self.gguf, &self.config)
    }
}

/// Reads a prompt file, which must be UTF-8. Errors name the file and, for bad
/// UTF-8, the byte offset of the first invalid sequence (so it can be found with
/// a hex viewer) rather than substituting replacement characters silently.
pub fn read_prompt_file(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("reading prompt file {}: {e}", path.display()),
        )
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bad = e.as_bytes()[at..].iter().take(4);
        let hex: Vec<String> = bad.map(|b| format!("{b:02x}")).collect();
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "prompt file {} is not valid UTF-8: invalid byte sequence at byte offset {at} ({})",
                path.display(),
                hex.join(" ")
            ),
        )
        .into()
    })
}

/// Leading tokens of `prompt` a cache holding `cached` (positions 0..) can
/// keep: their common prefix, at most all of `prompt` but its last token,
/// whose logits must be computed again.
pub fn reusable_prefix(cached: &[u32], prompt: &[u32]) -> usize {
    let same = cached
        .iter()
        .zip(prompt)
        .take_while(|(a, b)| a == b)
        .count();
    same.min(prompt.len().saturating_sub(1))
}

/// Timing and counts of one [`Decoder::generate`] call.
#[derive(Debug, Clone, Default)]
pub struct GenerateStats {
    pub prompt_tokens: usize,
    /// Leading prompt tokens whose keys and values the previous call left in
    /// the cache: not prefilled again.
    pub reused_tokens: usize,
    pub generated: usize,
    pub prefill_secs: f64,
    pub decode_secs: f64,
}

impl GenerateStats {
    /// Prompt tokens per second.
    pub fn prefill_tok_s(&self) -> f64 {
        (self.prompt_tokens - self.reused_tokens) as f64 / self.prefill_secs.max(1e-9)
    }
    /// Generated tokens per second (after the first, whose time is prefill's).
    pub fn decode_tok_s(&self) -> f64 {
        self.generated.saturating_sub(1) as f64 / self.decode_secs.max(1e-9)
    }
}

/// What a [`crate::Session`] generates with: the GPU [`Decoder`] or the CPU
/// reference [`CpuDecoder`], with the same sampler, prompt checks and cache
/// reuse.
pub trait Generate {
    /// Generates up to `max_new` tokens after `prompt` (positions from 0),
    /// calling `emit` for each (return false to stop); keys and values of
    /// the leading tokens `prompt` shares with the previous call are reused.
    /// When `cancel` becomes true during the prefill, it stops between
    /// chunks (GPU) or tokens (CPU) and returns with nothing generated; what
    /// it prefilled stays reusable.
    fn generate(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        sampling: &SamplerConfig,
        cancel: Option<&AtomicBool>,
        emit: &mut dyn FnMut(u32) -> bool,
    ) -> Result<GenerateStats>;
    /// The next call prefills its whole prompt.
    fn forget(&mut self);
    /// Positions the context holds.
    fn max_ctx(&self) -> usize;
}

impl Generate for Decoder {
    fn generate(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        sampling: &SamplerConfig,
        cancel: Option<&AtomicBool>,
        emit: &mut dyn FnMut(u32) -> bool,
    ) -> Result<GenerateStats> {
        self.generate_cancellable(prompt, max_new, sampling, cancel, emit)
    }
    fn forget(&mut self) {
        Decoder::forget(self)
    }
    fn max_ctx(&self) -> usize {
        self.gpu_model.max_ctx()
    }
}

/// The CPU reference model with the ids its cache holds, generating as
/// [`Decoder`] does on the GPU (same sampler, same reuse of a shared prefix).
pub struct CpuDecoder<'m> {
    pub cpu: CpuModel<'m>,
    cached: Vec<u32>,
}

impl<'m> CpuDecoder<'m> {
    /// `model` on the CPU with room for `max_ctx` positions (at most its context).
    pub fn new(model: &'m Model, max_ctx: usize) -> Result<CpuDecoder<'m>> {
        let ctx = max_ctx.min(model.config.context_len);
        Ok(CpuDecoder {
            cpu: CpuModel::with_max_positions(model.config.clone(), model.weights()?, ctx),
            cached: Vec::new(),
        })
    }
}

impl Generate for CpuDecoder<'_> {
    fn generate(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        sampling: &SamplerConfig,
        cancel: Option<&AtomicBool>,
        emit: &mut dyn FnMut(u32) -> bool,
    ) -> Result<GenerateStats> {
        let ctx = self.cpu.max_positions();
        check_prompt(prompt, ctx, self.cpu.config().vocab_size)?;
        let start = reusable_prefix(&self.cached, prompt);
        self.cached.clear();
        let t0 = Stopwatch::start();
        let mut logits = Vec::new();
        for (pos, &t) in prompt.iter().enumerate().skip(start) {
            if cancel.is_some_and(|c| c.load(Ordering::SeqCst)) {
                self.cached = prompt[..pos].to_vec();
                return Ok(GenerateStats {
                    prompt_tokens: prompt.len(),
                    reused_tokens: start,
                    ..Default::default()
                });
            }
            logits = self.cpu.forward(t, pos)?.to_vec();
        }
        let mut stats = GenerateStats {
            prompt_tokens: prompt.len(),
            reused_tokens: start,
            prefill_secs: t0.secs(),
            ..Default::default()
        };
        let t1 = Stopwatch::start();
        let mut sampler = Sampler::new(*sampling);
        let mut recent = prompt.to_vec();
        let mut pos = prompt.len();
        while stats.generated < max_new && pos < ctx {
            let id = sampler.sample(&logits, &recent);
            recent.push(id);
            stats.generated += 1;
            if !emit(id) || stats.generated == max_new {
                break;
            }
            logits = self.cpu.forward(id, pos)?.to_vec();
            pos += 1;
        }
        stats.decode_secs = t1.secs();
        // Every sampled id but the last was fed back.
        recent.truncate(pos);
        self.cached = recent;
        Ok(stats)
    }
    fn forget(&mut self) {
        self.cached.clear();
    }
    fn max_ctx(&self) -> usize {
        self.cpu.max_positions()
    }
}

/// What [`Decoder::start`] leaves: a generation to run, or the stats of
/// one cancelled during its prefill.
enum Started {
    Run(Run),
    Cancelled(GenerateStats),
}

/// How a run chooses its tokens.
enum How {
    /// On the GPU (argmax or the GPU sampler), the host a step ahead.
    Gpu(crate::model::GpuTokens),
    /// On the host from read-back logits.
    Host(HostSampling),
}

/// Host sampling: the sampler and the sequence so far (prompt, then the
/// ids sampled).
struct HostSampling {
    sampler: Sampler,
    recent: Vec<u32>,
    prompt_len: usize,
}

impl HostSampling {
    /// The last sampled id and its position, which the next logits need fed
    /// through the model; `None` before the first (the prefill left them).
    fn to_feed(&self) -> Option<(u32, usize)> {
        let last = *self.recent.last()?;
        (self.recent.len() > self.prompt_len).then_some((last, self.recent.len() - 1))
    }

    /// Chooses from `logits` and appends the id to the sequence.
    fn sample(&mut self, logits: &[f32]) -> u32 {
        let id = self.sampler.sample(logits, &self.recent);
        self.recent.push(id);
        id
    }
}

/// A generation in progress.
struct Run {
    how: How,
    max_new: usize,
    out: Vec<u32>,
    stats: GenerateStats,
    /// Started before the prefill; `t1` at the first token.
    t0: Stopwatch,
    t1: Option<Stopwatch>,
}

impl Run {
    /// Records token `id` (the first ends the prefill's time).
    fn took(&mut self, id: u32) -> u32 {
        if self.t1.is_none() {
            let t1 = Stopwatch::start();
            self.stats.prefill_secs = self.t0.secs_until(&t1);
            self.t1 = Some(t1);
        }
        self.out.push(id);
        self.stats.generated += 1;
        id
    }
}

/// A model on the GPU, ready to generate.
pub struct Decoder {
    pub gpu_model: GpuModel,
    /// The token ids whose keys and values the cache holds at positions
    /// 0.., as the last `generate` left them, and the model's
    /// [`GpuModel::cache_epoch`] then (any other use of the model since
    /// voids them).
    cached: Vec<u32>,
    cached_epoch: u64,
    /// Sample on the host from read-back logits even where the GPU sampler
    /// covers the settings (for comparisons; slower).
    pub sample_on_host: bool,
}

impl Decoder {
    /// Uploads `model` to `gpu` with a KV cache of `max_ctx` positions.
    pub fn new(gpu: &Gpu, model: &Model, max_ctx: usize) -> Result<Decoder> {
        Self::with_options(gpu, model, max_ctx, ModelOptions::default())
    }

    /// [`Decoder::new`] with explicit model options.
    pub fn with_options(
        gpu: &Gpu,
        model: &Model,
        max_ctx: usize,
        opts: ModelOptions,
    ) -> Result<Decoder> {
        let w = model.weights()?;
        Ok(Decoder {
            gpu_model: GpuModel::with_options(gpu, &model.config, &w, max_ctx, opts)?,
            cached: Vec::new(),
            cached_epoch: 0,
            sample_on_host: false,
        })
    }

    /// Generates up to `max_new` tokens after `prompt` (positions from 0),
    /// calling `emit` for each (return false to stop). Tokens are chosen on
    /// the GPU with the host a step ahead: argmax for greedy settings, the
    /// GPU sampler ([`crate::gpu::GpuSampler`]: the CPU [`Sampler`]'s chain
    /// and draws) otherwise; settings it does not cover (top-k 0 or above
    /// 256 over a larger vocabulary), or `sample_on_host`, read the logits
    /// back each step and apply the [`Sampler`] on the host.
    /// Stop tokens are passed to `emit` like any other.
    ///
    /// The leading tokens `prompt` shares with the previous call's prompt
    /// and output keep their keys and values: only the rest is prefilled
    /// (a chat's next turn prefills the new turn, not the conversation).
    /// Driving `gpu_model` directly in between voids that, as does
    /// [`Decoder::forget`].
    pub fn generate(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        sampling: &SamplerConfig,
        emit: impl FnMut(u32) -> bool,
    ) -> Result<GenerateStats> {
        self.generate_cancellable(prompt, max_new, sampling, None, emit)
    }

    /// [`Decoder::generate`] that stops between prefill chunks once
    /// `cancel` is true (see [`Generate::generate`]).
    pub fn generate_cancellable(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        sampling: &SamplerConfig,
        cancel: Option<&AtomicBool>,
        mut emit: impl FnMut(u32) -> bool,
    ) -> Result<GenerateStats> {
        let mut run = match self.start(prompt, max_new, sampling, cancel)? {
            Started::Run(run) => run,
            Started::Cancelled(stats) => return Ok(stats),
        };
        let mut stopped = false;
        while let Some(id) = self.next(&mut run)? {
            if !emit(id) {
                stopped = true;
                break;
            }
        }
        if stopped {
            if let How::Gpu(t) = &mut run.how {
                self.gpu_model.stop_tokens(t)?;
            }
        }
        Ok(self.finish(run, prompt))
    }

    /// [`Decoder::generate_cancellable`] for hosts with their own event
    /// loop (a web page, a winit app): every wait for the GPU is an await
    /// (nothing blocks or calls `device.poll`), so the device must be
    /// polled meanwhile, by the browser on the web and natively by the host
    /// (e.g. `device.poll` once a frame). The same steps as the blocking
    /// call, which differs only in how it waits: same tokens, same cache.
    pub async fn generate_async(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        sampling: &SamplerConfig,
        cancel: Option<&AtomicBool>,
        mut emit: impl FnMut(u32) -> bool,
    ) -> Result<GenerateStats> {
        let mut run = match self.start(prompt, max_new, sampling, cancel)? {
            Started::Run(run) => run,
            Started::Cancelled(stats) => return Ok(stats),
        };
        let mut stopped = false;
        while let Some(id) = self.next_async(&mut run).await? {
            if !emit(id) {
                stopped = true;
                break;
            }
        }
        if stopped {
            if let How::Gpu(t) = &mut run.how {
                self.gpu_model.stop_tokens_async(t).await?;
            }
        }
        Ok(self.finish(run, prompt))
    }

    /// Checks the prompt, prefills what the cache does not hold (chunk by
    /// chunk, stopping between chunks once `cancel` is true) and sets up the
    /// token choice: argmax or the GPU sampler with the host a step ahead,
    /// or host sampling from read-back logits.
    fn start(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        sampling: &SamplerConfig,
        cancel: Option<&AtomicBool>,
    ) -> Result<Started> {
        self.check_prompt(prompt)?;
        let ctx = self.gpu_model.max_ctx();
        let max_new = max_new.min(ctx - prompt.len());
        let reused = self.reusable(prompt);
        let stats = GenerateStats {
            prompt_tokens: prompt.len(),
            reused_tokens: reused,
            ..Default::default()
        };
        // Until this call ends well, nothing in the cache is known.
        self.cached.clear();
        let t0 = Stopwatch::start();
        let piece = self.gpu_model.prefill_capacity().max(1);
        for (k, ids) in prompt[reused..].chunks(piece).enumerate() {
            let at = reused + k * piece;
            if cancel.is_some_and(|c| c.load(Ordering::SeqCst)) {
                // Positions 0..at hold the prompt's keys and values.
                self.cached = prompt[..at].to_vec();
                self.cached_epoch = self.gpu_model.cache_epoch();
                return Ok(Started::Cancelled(stats));
            }
            self.gpu_model.prefill(at, ids)?;
        }
        let sampler = Sampler::new(*sampling);
        let how = if sampler.is_greedy() && !sampler.penalizes() {
            How::Gpu(self.gpu_model.start_tokens(prompt.len(), max_new, None)?)
        } else if self.gpu_model.samples_on_gpu(sampling) && !self.sample_on_host {
            How::Gpu(self.gpu_model.start_tokens(
                prompt.len(),
                max_new,
                Some((sampling, prompt)),
            )?)
        } else {
            How::Host(HostSampling {
                sampler,
                recent: prompt.to_vec(),
                prompt_len: prompt.len(),
            })
        };
        Ok(Started::Run(Run {
            how,
            max_new,
            out: Vec::new(),
            stats,
            t0,
            t1: None,
        }))
    }

    /// The next token (blocking), or `None` once `max_new` are out.
    fn next(&mut self, run: &mut Run) -> Result<Option<u32>> {
        if run.out.len() == run.max_new {
            return Ok(None);
        }
        let id = match &mut run.how {
            How::Gpu(t) => self.gpu_model.next_token(t)?,
            How::Host(h) => {
                let l = match h.to_feed() {
                    Some((id, pos)) => self.gpu_model.forward(id, pos)?,
                    None => self.gpu_model.read_logits()?,
                };
                Some(h.sample(&l))
            }
        };
        Ok(id.map(|id| run.took(id)))
    }

    /// [`Decoder::next`] awaiting the GPU instead of blocking.
    async fn next_async(&mut self, run: &mut Run) -> Result<Option<u32>> {
        if run.out.len() == run.max_new {
            return Ok(None);
        }
        let id = match &mut run.how {
            How::Gpu(t) => self.gpu_model.next_token_async(t).await?,
            How::Host(h) => {
                let l = match h.to_feed() {
                    Some((id, pos)) => self.gpu_model.forward_async(id, pos).await?,
                    None => self.gpu_model.read_logits_async().await?,
                };
                Some(h.sample(&l))
            }
        };
        Ok(id.map(|id| run.took(id)))
    }

    /// The stats of a finished run; the cache holds the prompt and every
    /// output but the last, which was never fed back (steps run ahead of a
    /// stop wrote positions past these; the next prefill overwrites them).
    fn finish(&mut self, mut run: Run, prompt: &[u32]) -> GenerateStats {
        if let Some(t1) = run.t1 {
            run.stats.decode_secs = t1.secs();
        }
        run.out.pop();
        self.cached = [prompt, &run.out].concat();
        self.cached_epoch = self.gpu_model.cache_epoch();
        run.stats
    }

    /// Forgets what the cache holds: the next `generate` prefills its whole prompt.
    pub fn forget(&mut self) {
        self.cached.clear();
    }

    /// Leading tokens of `prompt` whose keys and values the cache holds
    /// (at most all but the last: its logits are computed again).
    fn reusable(&self, prompt: &[u32]) -> usize {
        if self.cached_epoch != self.gpu_model.cache_epoch() {
            return 0;
        }
        reusable_prefix(&self.cached, prompt)
    }

    /// Refuses an empty prompt, one that leaves no room in the context, and
    /// ids outside the vocabulary.
    fn check_prompt(&self, prompt: &[u32]) -> Result<()> {
        let gm = &self.gpu_model;
        check_prompt(prompt, gm.max_ctx(), gm.config().vocab_size)
    }
}

/// Refuses an empty prompt, one that leaves no room in a context of `ctx`
/// positions, and ids outside the vocabulary.
fn check_prompt(prompt: &[u32], ctx: usize, vocab: usize) -> Result<()> {
    if prompt.is_empty() {
        return Err(GpuError::BadArgument("the prompt is empty".into()).into());
    }
    if prompt.len() >= ctx {
        return Err(GpuError::BadArgument(format!(
            "the prompt has {} tokens but the context window holds {ctx} positions (raise --ctx or shorten the prompt)",
            prompt.len()
        ))
        .into());
    }
    if let Some((i, t)) = prompt
        .iter()
        .enumerate()
        .find(|(_, &t)| t as usize >= vocab)
    {
        return Err(GpuError::BadArgument(format!(
            "prompt token {i} is id {t}, outside the vocabulary of {vocab} tokens"
        ))
        .into());
    }
    Ok(())
}
