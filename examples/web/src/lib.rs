//! q4gpu in a web page: the functions the chat demo (`index.html`,
//! `app.js`) calls from JavaScript; the browser test and the screenshot
//! drive the same page through query parameters (see `app.js` and
//! scripts/web.py).
//!
//! Everything that waits for the GPU is awaited (adapter, device, token
//! readbacks), so the browser's event loop keeps running, which is what
//! drives WebGPU's callbacks. The page's state lives in one thread-local
//! slot; a call that needs the model takes it out for its duration, so a
//! second call meanwhile gets a "busy" error instead of a re-entrant borrow.

use std::cell::RefCell;

use q4gpu::gpu::matvec::MatvecVariant;
use q4gpu::gpu::shader::{self, Lang};
use q4gpu::sampling::SamplerConfig;
use q4gpu::{CancelHandle, Decoder, Gpu, GpuOptions, Model, Session, SessionOptions};
use wasm_bindgen::prelude::*;

/// The model on the GPU: a bare decoder (greedy ids for the test) or a
/// chat session holding it.
enum Engine {
    Decoder(Decoder),
    Chat(Session<'static, Decoder>),
}

#[derive(Default)]
struct State {
    gpu: Option<Gpu>,
    /// The loaded model. Leaked: a [`Session`] borrows it for the page's
    /// life (a page holds one model; loading another keeps the first's
    /// bytes until the page reloads).
    model: Option<&'static Model>,
    /// `None` while a call holds it.
    engine: Option<Engine>,
    cancel: Option<CancelHandle>,
    max_reply: usize,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::default();
}

/// A Rust error as a JavaScript `Error` with the same message.
fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// Panics reach the console (a web page has no stderr).
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&format!("q4gpu panicked: {info}").into());
    }));
}

/// Milliseconds on the page's monotonic clock (`performance.now()`).
fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map_or_else(js_sys::Date::now, |p| p.now())
}

/// Waits (without blocking) until the GPU finished everything submitted,
/// then reports any error the browser delivered meanwhile.
async fn settle(gpu: &Gpu) -> Result<(), JsError> {
    let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel::<()>();
    gpu.queue.on_submitted_work_done(move || {
        let _ = tx.send(());
    });
    rx.receive().await;
    gpu.check().map_err(js_err)
}

/// Requests the WebGPU adapter and device; returns a line naming the
/// adapter and the kernel path (subgroup or workgroup-memory reduction).
/// `subgroups`: the page makes the device request ask for the browser's
/// `subgroups` feature (wgpu 30 does not; see app.js), so the kernels may
/// use them.
#[wasm_bindgen]
pub async fn init_gpu(subgroups: bool) -> Result<String, JsError> {
    let opts = GpuOptions {
        browser_subgroups: subgroups,
        ..GpuOptions::default()
    };
    let gpu = Gpu::new_async(&opts).await.map_err(js_err)?;
    let line = gpu.describe();
    STATE.with_borrow_mut(|s| s.gpu = Some(gpu));
    Ok(line)
}

/// Loads a GGUF model from its bytes onto the GPU with a KV cache of `ctx`
/// positions; chat replies stop after `max_reply` tokens. Returns a line
/// describing the model.
#[wasm_bindgen]
pub async fn load_model(bytes: Vec<u8>, ctx: u32, max_reply: u32) -> Result<String, JsError> {
    let gpu = STATE
        .with_borrow(|s| s.gpu.clone())
        .ok_or_else(|| js_err("call init_gpu first"))?;
    if STATE.with_borrow(|s| s.model.is_some() && s.engine.is_none()) {
        return Err(js_err("busy: a reply is being generated"));
    }
    let size = bytes.len();
    let model = Model::from_bytes(bytes).map_err(js_err)?;
    let ctx = (ctx as usize).clamp(2, model.config.context_len.max(2));
    let decoder = Decoder::new(&gpu, &model, ctx).map_err(js_err)?;
    settle(&gpu).await?;
    let c = &model.config;
    let line = format!(
        "{:.1} MiB, {} layers, dim {}, vocab {}, context {ctx}, GPU memory {:.1} MiB",
        size as f64 / 1048576.0,
        c.n_layers,
        c.dim,
        c.vocab_size,
        gpu.allocated_bytes() as f64 / 1048576.0,
    );
    let model: &'static Model = Box::leak(Box::new(model));
    STATE.with_borrow_mut(|s| {
        s.model = Some(model);
        s.engine = Some(Engine::Decoder(decoder));
        s.cancel = None;
        s.max_reply = (max_reply as usize).max(1);
    });
    Ok(line)
}

/// Hands every matvec variant the library has ([`MatvecVariant::all`]:
/// each family, format, input mode and fused op), assembled for this
/// device's reduction, to the browser's WGSL compiler as a shader module,
/// each in its own validation error scope; reports the variants it
/// rejected (an error) or how many it accepted. (Modules, not pipelines:
/// the browser's own compiler is what is checked, and building ~600
/// pipelines on SwiftShader would take minutes.)
#[wasm_bindgen]
pub async fn check_matvec_wgsl() -> Result<String, JsError> {
    let gpu = STATE
        .with_borrow(|s| s.gpu.clone())
        .ok_or_else(|| js_err("call init_gpu first"))?;
    let all = MatvecVariant::all();
    let mut scopes = Vec::with_capacity(all.len());
    for v in &all {
        let mut flags = v.flags();
        if gpu.subgroups {
            flags.push("SUBGROUPS");
        }
        let src = match shader::assemble_with(Lang::Wgsl, v.file(), &flags, &v.consts()) {
            // As the library compiles it on this target (Gpu::kernel).
            Ok(src) if gpu.subgroups => format!("enable subgroups;\n{src}"),
            Ok(src) => src,
            Err(e) => return Err(js_err(format!("{}: {e}", v.name()))),
        };
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let name = v.name();
        let _module = gpu
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&name),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
        scopes.push((name, scope.pop()));
    }
    let mut failed = Vec::new();
    for (name, scope) in scopes {
        if let Some(e) = scope.await {
            failed.push(format!("{name}: {e}"));
        }
    }
    if !failed.is_empty() {
        return Err(js_err(format!(
            "the browser rejected {} of {} matvec variants: {}",
            failed.len(),
            all.len(),
            failed.join("\n")
        )));
    }
    Ok(format!(
        "the browser's WGSL compiler accepted all {} matvec variants",
        all.len()
    ))
}

/// The engine, taken out of the state for one call.
fn take_engine() -> Result<(&'static Model, Engine), JsError> {
    STATE.with_borrow_mut(|s| match (s.model, s.engine.take()) {
        (Some(m), Some(e)) => Ok((m, e)),
        (None, _) => Err(js_err("no model loaded")),
        (Some(_), None) => Err(js_err("busy: a reply is being generated")),
    })
}

fn put_engine(e: Engine) {
    STATE.with_borrow_mut(|s| s.engine = Some(e));
}

/// Greedy decoding of `n` tokens after `prompt` (encoded as the model reads
/// a prompt: BOS where the vocabulary adds it, special tokens parsed), on a
/// fresh cache. Returns JSON: `prompt_ids`, `ids`, `first_token_ms` (prompt
/// to first token) and `decode_tok_s` (the tokens after the first).
#[wasm_bindgen]
pub async fn greedy_ids(prompt: String, n: u32) -> Result<String, JsError> {
    let (model, engine) = take_engine()?;
    let Engine::Decoder(mut decoder) = engine else {
        put_engine(engine);
        return Err(js_err("the model is in a chat: reload it for greedy_ids"));
    };
    let prompt_ids = model.tokenizer.encode_prompt(&prompt);
    decoder.forget();
    let mut ids = Vec::new();
    let mut times = Vec::new();
    let t0 = now_ms();
    let res = decoder
        .generate_async(
            &prompt_ids,
            n as usize,
            &SamplerConfig::greedy(),
            None,
            |id| {
                ids.push(id);
                times.push(now_ms());
                true
            },
        )
        .await;
    put_engine(Engine::Decoder(decoder));
    res.map_err(js_err)?;
    let first = times.first().map_or(0.0, |t| t - t0);
    let decode_ms = match (times.first(), times.last()) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    let tok_s = after_first_tok_s(ids.len(), decode_ms);
    let step_ms: Vec<u64> = times.windows(2).map(|w| (w[1] - w[0]) as u64).collect();
    Ok(format!(
        "{{\"prompt_ids\":{prompt_ids:?},\"ids\":{ids:?},\"first_token_ms\":{first:.1},\"decode_tok_s\":{tok_s:.2},\"step_ms\":{step_ms:?}}}"
    ))
}

/// Decode speed of the `tokens − 1` tokens after the first, decoded in
/// `decode_ms` (from the first token to the last).
fn after_first_tok_s(tokens: usize, decode_ms: f64) -> f64 {
    tokens.saturating_sub(1) as f64 * 1000.0 / decode_ms.max(1e-9)
}

/// The chat session, made from the loaded decoder on the first message.
fn session_of(
    model: &'static Model,
    engine: Engine,
    max_reply: usize,
) -> Session<'static, Decoder> {
    match engine {
        Engine::Chat(s) => s,
        Engine::Decoder(d) => {
            let opts = SessionOptions {
                max_reply_tokens: max_reply,
                ..SessionOptions::default()
            };
            Session::new(model, d, opts)
        }
    }
}

/// Sends a user message; the reply streams to `on_piece(text)` as it is
/// decoded (greedy). Returns JSON: `text`, `stop` (why it ended),
/// `tokens`, `prompt_tokens` (prefilled this turn), `first_token_ms`,
/// `decode_tok_s`.
#[wasm_bindgen]
pub async fn chat(message: String, on_piece: js_sys::Function) -> Result<String, JsError> {
    let (model, engine) = take_engine()?;
    let max_reply = STATE.with_borrow(|s| s.max_reply);
    let mut session = session_of(model, engine, max_reply);
    let cancel = session.cancel_handle();
    STATE.with_borrow_mut(|s| s.cancel = Some(cancel));
    let t0 = now_ms();
    let mut first: Option<f64> = None;
    let mut piece_error = None;
    let res = session
        .send_async(&message, |piece| {
            first.get_or_insert_with(now_ms);
            if let Err(e) = on_piece.call1(&JsValue::NULL, &JsValue::from_str(piece)) {
                piece_error.get_or_insert(e);
            }
        })
        .await;
    put_engine(Engine::Chat(session));
    let t1 = now_ms();
    if let Some(e) = piece_error {
        web_sys::console::error_2(&"on_piece failed:".into(), &e);
    }
    let reply = res.map_err(js_err)?;
    let st = &reply.stats;
    let first_ms = first.map_or(0.0, |f| f - t0);
    let decode_ms = first.map_or(0.0, |f| t1 - f);
    let tok_s = after_first_tok_s(st.generated, decode_ms);
    Ok(format!(
        "{{\"text\":{},\"stop\":\"{:?}\",\"tokens\":{},\"prompt_tokens\":{},\"first_token_ms\":{first_ms:.1},\"decode_tok_s\":{tok_s:.2}}}",
        json_string(&reply.text)?,
        reply.stop,
        st.generated,
        st.prompt_tokens - st.reused_tokens,
    ))
}

/// Stops the reply in progress at its next token.
#[wasm_bindgen]
pub fn cancel() {
    STATE.with_borrow(|s| {
        if let Some(c) = &s.cancel {
            c.cancel();
        }
    });
}

/// Forgets the conversation (the model stays loaded).
#[wasm_bindgen]
pub fn reset_chat() -> Result<(), JsError> {
    let (_, engine) = take_engine()?;
    let engine = match engine {
        Engine::Chat(mut s) => {
            s.reset();
            Engine::Chat(s)
        }
        e => e,
    };
    put_engine(engine);
    Ok(())
}

/// `s` as a JSON string literal (the browser's `JSON.stringify`).
fn json_string(s: &str) -> Result<String, JsError> {
    js_sys::JSON::stringify(&JsValue::from_str(s))
        .map(String::from)
        .map_err(|_| js_err("JSON.stringify failed on the reply"))
}
