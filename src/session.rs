//! Chat sessions: a conversation kept on a [`Decoder`] (GPU) or a
//! [`crate::decoder::CpuDecoder`] (CPU reference), turn by turn.
//!
//! Each [`Session::send`] renders the whole conversation through the model's
//! chat template, but the KV cache keeps what the previous turns computed,
//! so only the new turn is prefilled. Replies stream as UTF-8 pieces; they
//! end at an end-of-turn token, a stop string, the reply-length limit or a
//! [`CancelHandle`] (usable from another thread).
//!
//! Context-full policy: when the conversation and room for a reply
//! (`max_reply_tokens`) no longer fit the context, the oldest exchanges are
//! dropped, the system prompt kept, and what remains is prefilled again
//! (the cache no longer matches its start). A message that does not fit even
//! alone is an error, and the conversation is left as it was.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::decoder::{Decoder, Generate, GenerateStats, Model};
use crate::error::Result;
use crate::gpu::GpuError;
use crate::sampling::SamplerConfig;
use crate::tokenizer::{ChatOptions, ChatTurn, Role, StreamDecoder};

/// How a session talks.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// The system prompt, kept first whatever is dropped.
    pub system: Option<String>,
    /// Most tokens one reply may have; also the room kept free in the context.
    pub max_reply_tokens: usize,
    pub sampling: SamplerConfig,
    /// A reply ends where one of these first appears (it is not part of the
    /// reply, and no piece of it is streamed).
    pub stop_strings: Vec<String>,
    pub chat: ChatOptions,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            system: None,
            max_reply_tokens: 256,
            sampling: SamplerConfig::greedy(),
            stop_strings: Vec::new(),
            chat: ChatOptions::default(),
        }
    }
}

/// Why a reply ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model ended its turn (an end-of-generation token).
    EndOfTurn,
    /// A stop string appeared.
    StopString,
    /// `max_reply_tokens` were generated, or the context filled up.
    Length,
    /// [`CancelHandle::cancel`] was called.
    Cancelled,
}

/// One reply.
#[derive(Clone, Debug)]
pub struct Reply {
    pub text: String,
    pub stop: StopReason,
    pub stats: GenerateStats,
    /// Turns dropped from the start of the conversation to make room.
    pub dropped_turns: usize,
}

/// Stops a session's reply in progress at its next token, from any thread.
#[derive(Clone, Debug, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    /// Asks the reply in progress (or the next one) to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a cancel is pending.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A conversation with a model on a [`Decoder`] or another [`Generate`]r.
/// See the module docs.
pub struct Session<'m, G: Generate = Decoder> {
    model: &'m Model,
    decoder: G,
    opts: SessionOptions,
    history: Vec<ChatTurn>,
    cancel: CancelHandle,
}

impl<'m, G: Generate> Session<'m, G> {
    /// A new conversation on `decoder` (which holds `model`).
    pub fn new(model: &'m Model, decoder: G, opts: SessionOptions) -> Session<'m, G> {
        Session {
            model,
            decoder,
            opts,
            history: Vec::new(),
            cancel: CancelHandle::default(),
        }
    }

    /// A handle that cancels this session's replies.
    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    /// The conversation so far (without the system prompt).
    pub fn history(&self) -> &[ChatTurn] {
        &self.history
    }

    /// Forgets the conversation (the system prompt stays).
    pub fn reset(&mut self) {
        self.history.clear();
        self.decoder.forget();
    }

    /// The decoder, e.g. a [`Decoder`]'s [`crate::model::GpuModel`].
    pub fn decoder(&self) -> &G {
        &self.decoder
    }

    /// Sends a user message and generates the reply, calling `on_text` with
    /// each piece of it as it is decoded (whole UTF-8 characters; nothing of
    /// a stop string). The reply joins the conversation, cancelled or not.
    pub fn send(&mut self, message: &str, mut on_text: impl FnMut(&str)) -> Result<Reply> {
        let (prompt, mut turn) = self.begin_turn(message)?;
        let tok = &self.model.tokenizer;
        let cancel = self.cancel.clone();
        let stats = self.decoder.generate(
            &prompt,
            self.opts.max_reply_tokens,
            &self.opts.sampling,
            Some(&cancel.0),
            &mut |id| turn.token(tok, &cancel, id, &mut on_text),
        );
        self.end_turn(turn, stats, &mut on_text)
    }

    /// The new message added to the conversation and the prompt ids of it
    /// all (oldest exchanges dropped to fit), with the turn's state; on an
    /// error the conversation is left as it was.
    fn begin_turn(&mut self, message: &str) -> Result<(Vec<u32>, Turn)> {
        let saved = self.history.clone();
        self.history.push(ChatTurn::new(Role::User, message));
        match self.fit_prompt() {
            Ok((prompt, dropped)) => Ok((
                prompt,
                Turn {
                    saved,
                    dropped,
                    text: Text::new(self.opts.stop_strings.clone()),
                    stop: StopReason::Length,
                },
            )),
            Err(e) => {
                self.history = saved;
                Err(e)
            }
        }
    }

    /// The reply from the turn's text, joined to the conversation; on a
    /// generation error the conversation is left as it was.
    fn end_turn(
        &mut self,
        turn: Turn,
        stats: Result<GenerateStats>,
        on_text: &mut impl FnMut(&str),
    ) -> Result<Reply> {
        let Turn {
            saved,
            dropped,
            text,
            mut stop,
        } = turn;
        let stats = match stats {
            Ok(s) => s,
            Err(e) => {
                self.history = saved;
                self.cancel.0.store(false, Ordering::SeqCst);
                return Err(e);
            }
        };
        // Cancelled during the prefill: nothing was generated.
        if stats.generated == 0 && self.cancel.is_cancelled() {
            stop = StopReason::Cancelled;
        }
        let reply = text.finish(stop == StopReason::StopString, on_text);
        // A cancel made during this reply (its last pieces included) is spent.
        self.cancel.0.store(false, Ordering::SeqCst);
        self.history
            .push(ChatTurn::new(Role::Assistant, reply.clone()));
        Ok(Reply {
            text: reply,
            stop,
            stats,
            dropped_turns: dropped,
        })
    }

    /// The prompt ids of the conversation, with the oldest exchanges dropped
    /// until it and a reply fit the context; and how many turns were dropped.
    fn fit_prompt(&mut self) -> Result<(Vec<u32>, usize)> {
        let ctx = self.decoder.max_ctx();
        let room = self.opts.max_reply_tokens.min(ctx / 2);
        let mut dropped = 0;
        loop {
            let ids = self.prompt_ids()?;
            if ids.len() + room <= ctx {
                return Ok((ids, dropped));
            }
            if self.history.len() <= 1 {
                return Err(GpuError::BadArgument(format!(
                    "the message needs {} prompt tokens, but the context of {ctx} positions keeps {room} for the reply",
                    ids.len()
                ))
                .into());
            }
            // The oldest exchange (a user turn and its reply), never the new message.
            let n = 2.min(self.history.len() - 1);
            self.history.drain(..n);
            dropped += n;
        }
    }

    /// The conversation rendered and tokenized (BOS first where the
    /// vocabulary adds it).
    fn prompt_ids(&self) -> Result<Vec<u32>> {
        let tok = &self.model.tokenizer;
        let mut messages = Vec::with_capacity(self.history.len() + 1);
        if let Some(s) = &self.opts.system {
            messages.push(ChatTurn::new(Role::System, s.as_str()));
        }
        messages.extend_from_slice(&self.history);
        let text = tok.render_chat(&messages, &self.opts.chat)?;
        Ok(tok.encode_prompt(&text))
    }
}

/// One turn in progress: the conversation before it, the turns dropped to
/// make room, the reply's text and why it ends.
struct Turn {
    saved: Vec<ChatTurn>,
    dropped: usize,
    text: Text,
    stop: StopReason,
}

impl Turn {
    /// Takes generated token `id`; false ends the reply (a cancel, an
    /// end-of-turn token or a stop string, recorded in `stop`).
    fn token(
        &mut self,
        tok: &crate::tokenizer::Tokenizer,
        cancel: &CancelHandle,
        id: u32,
        on_text: &mut impl FnMut(&str),
    ) -> bool {
        if cancel.is_cancelled() {
            self.stop = StopReason::Cancelled;
            return false;
        }
        if tok.is_stop(id) {
            self.stop = StopReason::EndOfTurn;
            return false;
        }
        if self.text.push(tok, id, on_text) {
            self.stop = StopReason::StopString;
            return false;
        }
        true
    }
}

impl Session<'_, Decoder> {
    /// [`Session::send`] for hosts with their own event loop (a web page, a
    /// winit app): awaits each token instead of blocking, so the device must
    /// be polled meanwhile (by the browser on the web; natively by the host,
    /// e.g. `device.poll` once a frame). Same tokens, text and conversation
    /// as `send`; a [`CancelHandle`] stops it at the next token.
    pub async fn send_async(
        &mut self,
        message: &str,
        mut on_text: impl FnMut(&str),
    ) -> Result<Reply> {
        let (prompt, mut turn) = self.begin_turn(message)?;
        let tok = &self.model.tokenizer;
        let cancel = self.cancel.clone();
        let stats = self
            .decoder
            .generate_async(
                &prompt,
                self.opts.max_reply_tokens,
                &self.opts.sampling,
                Some(&cancel.0),
                &mut |id| turn.token(tok, &cancel, id, &mut on_text),
            )
            .await;
        self.end_turn(turn, stats, &mut on_text)
    }
}

/// A reply's text as it streams: the decoded text, how much of it was
/// passed on, and the stop strings to hold back for.
struct Text {
    stream: StreamDecoder,
    text: String,
    sent: usize,
    stops: Vec<String>,
}

impl Text {
    fn new(stops: Vec<String>) -> Self {
        Text {
            stream: StreamDecoder::new(),
            text: String::new(),
            sent: 0,
            stops,
        }
    }

    /// Adds token `id`; passes on the text that can no longer be the start of
    /// a stop string. True when a stop string appeared (the text is cut there).
    fn push(
        &mut self,
        tok: &crate::tokenizer::Tokenizer,
        id: u32,
        out: &mut impl FnMut(&str),
    ) -> bool {
        self.text.push_str(&self.stream.push(tok, id));
        if let Some(at) = self.stop_at() {
            self.text.truncate(at);
            self.flush_to(self.text.len(), out);
            return true;
        }
        let safe = self.text.len() - self.held_back();
        self.flush_to(safe, out);
        false
    }

    /// The whole reply, the rest passed on (unless a stop string cut it).
    fn finish(mut self, stopped: bool, out: &mut impl FnMut(&str)) -> String {
        if !stopped {
            self.text.push_str(&self.stream.finish());
            if let Some(at) = self.stop_at() {
                self.text.truncate(at);
            }
        }
        self.flush_to(self.text.len(), out);
        self.text
    }

    /// Where the first stop string starts, if one appeared.
    fn stop_at(&self) -> Option<usize> {
        self.stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.text.find(s.as_str()))
            .min()
    }

    /// Bytes at the end of the text that may begin a stop string.
    fn held_back(&self) -> usize {
        let t = &self.text;
        self.stops
            .iter()
            .flat_map(|s| {
                (1..s.len())
                    .filter(|&n| s.is_char_boundary(n))
                    .map(|n| &s[..n])
            })
            .filter(|p| t.ends_with(p))
            .map(str::len)
            .max()
            .unwrap_or(0)
    }

    fn flush_to(&mut self, end: usize, out: &mut impl FnMut(&str)) {
        if end > self.sent {
            out(&self.text[self.sent..end]);
            self.sent = end;
        }
    }
}
