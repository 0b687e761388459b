//! Chat sessions (src/session.rs) on a small synthetic model on the test GPU:
//! the KV cache carries over between turns, stop strings cut the reply and
//! are never streamed, cancelling works from another thread and from the
//! stream, a full context drops the oldest exchanges, and a message that
//! cannot fit is refused without touching the conversation.

mod common;

#[allow(dead_code)]
#[path = "common/small_model.rs"]
mod small_model;

use q4gpu::sampling::SamplerConfig;
use q4gpu::{Decoder, Model, Session, SessionOptions, StopReason};

fn model(tag: &str) -> Model {
    small_model::smollm2_q4_0(&format!("session-{tag}"), 11)
}

fn session<'m>(m: &'m Model, ctx: usize, opts: SessionOptions) -> Session<'m> {
    let dec = Decoder::new(&common::gpu(), m, ctx).expect("decoder");
    Session::new(m, dec, opts)
}

/// Sampled at temperature 1 from the whole vocabulary with a fixed seed (a
/// random model's greedy text repeats itself): varied text, the same on
/// every run.
fn opts(max_reply: usize) -> SessionOptions {
    SessionOptions {
        system: Some("You are a test.".into()),
        max_reply_tokens: max_reply,
        sampling: SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 3,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn sessions_reuse_the_cache_stop_cancel_and_fit_the_context() {
    let m = model("api");

    // Streaming and KV reuse: the pieces make up the reply; the second turn
    // prefills only what is new.
    let mut s = session(&m, 256, opts(12));
    let mut pieces = Vec::new();
    let r1 = s
        .send("Hello there", |p| pieces.push(p.to_string()))
        .expect("turn 1");
    assert_eq!(pieces.concat(), r1.text);
    assert_eq!(r1.stats.reused_tokens, 0);
    let r2 = s.send("And again", |_| {}).expect("turn 2");
    assert!(
        r2.stats.reused_tokens >= r1.stats.prompt_tokens,
        "turn 2 reused {} of {} prompt tokens; turn 1's prompt was {}",
        r2.stats.reused_tokens,
        r2.stats.prompt_tokens,
        r1.stats.prompt_tokens
    );
    assert_eq!(s.history().len(), 4);

    // A stop string from the middle of the reply: the same seed's reply ends
    // before it, and no streamed piece contains any of it.
    let chars: Vec<char> = r1.text.chars().collect();
    // Three characters whose first appearance is at least 3 characters in.
    let stop: String = (3..chars.len().saturating_sub(3))
        .map(|i| chars[i..i + 3].iter().collect::<String>())
        .find(|w| r1.text.find(w.as_str()).is_some_and(|at| at >= 3))
        .unwrap_or_else(|| panic!("no stop string to cut {:?} at", r1.text));
    let mut o = opts(12);
    o.stop_strings = vec![stop.clone()];
    let mut s = session(&m, 256, o);
    let mut streamed = String::new();
    let r = s
        .send("Hello there", |p| streamed.push_str(p))
        .expect("stop string");
    let want = &r1.text[..r1.text.find(&stop).expect("stop in reply")];
    assert_eq!((r.stop, r.text.as_str()), (StopReason::StopString, want));
    assert_eq!(streamed, want);
    assert!(!want.is_empty());

    // Cancelled from another thread before the turn: it stops before the
    // prefill (checked between prefill chunks), no text; cancelled
    // from the stream: it stops at once, and the next turn runs normally.
    let mut s = session(&m, 256, opts(12));
    let h = s.cancel_handle();
    std::thread::spawn(move || h.cancel())
        .join()
        .expect("thread");
    let r = s.send("Hello there", |_| {}).expect("cancelled turn");
    assert_eq!((r.stop, r.text.as_str()), (StopReason::Cancelled, ""));
    // It stopped before the prefill, so no token was generated.
    assert_eq!(r.stats.generated, 0);
    let h = s.cancel_handle();
    let r = s
        .send("Hello there", |_| h.cancel())
        .expect("cancel mid-reply");
    assert_eq!(r.stop, StopReason::Cancelled);
    assert!(
        r.stats.generated <= 3,
        "{} tokens after cancel",
        r.stats.generated
    );
    assert_ne!(
        s.send("Hi", |_| {}).expect("after cancel").stop,
        StopReason::Cancelled
    );

    // A small context: turns keep coming, the oldest are dropped, the
    // system prompt stays; a message that cannot fit is refused.
    let mut s = session(&m, 96, opts(8));
    let mut dropped = 0;
    for i in 0..8 {
        let r = s
            .send(&format!("message number {i}"), |_| {})
            .expect("turn");
        dropped += r.dropped_turns;
        assert!(r.stats.prompt_tokens + 8 <= 96);
    }
    assert!(dropped > 0, "no turn dropped in a 96-position context");
    assert!(s.history().len() < 16);
    let before = s.history().to_vec();
    let e = s.send(&"word ".repeat(200), |_| {}).unwrap_err();
    assert!(e.to_string().contains("context of 96 positions"), "{e}");
    assert_eq!(s.history(), &before[..]);
}

/// The same conversation on the GPU and on the CPU reference gives the same
/// replies, greedy and sampled with one seed, and reuses the same prefix.
#[test]
fn gpu_and_cpu_sessions_agree() {
    let m = model("cpu");
    for sampling in [SamplerConfig::greedy(), opts(1).sampling] {
        let o = SessionOptions {
            sampling,
            ..opts(10)
        };
        let mut g = session(&m, 128, o.clone());
        let mut c = Session::new(&m, q4gpu::CpuDecoder::new(&m, 128).expect("cpu"), o);
        for msg in ["Hello there", "And again"] {
            let (rg, rc) = (
                g.send(msg, |_| {}).expect("gpu"),
                c.send(msg, |_| {}).expect("cpu"),
            );
            assert_eq!(rg.text, rc.text, "{msg}");
            assert_eq!(rg.stats.reused_tokens, rc.stats.reused_tokens, "{msg}");
        }
        // The CPU path stops its prefill on a cancel too.
        c.cancel_handle().cancel();
        let r = c.send("Stop", |_| {}).expect("cancelled");
        assert_eq!((r.stop, r.stats.generated), (StopReason::Cancelled, 0));
    }
}

/// `Session::send_async`, awaited while another thread polls the device
/// (as a host's event loop would), streams the same pieces and replies as
/// `send`, turn after turn, with the GPU sampler (top-k 40) this time.
#[test]
fn async_sessions_stream_what_blocking_ones_do() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let m = model("async");
    let mut o = opts(10);
    o.sampling.top_k = 40;
    let messages = ["Hello there", "And again", "One more"];
    let mut blocking = session(&m, 256, o.clone());
    let mut want = Vec::new();
    for msg in messages {
        let mut pieces = Vec::new();
        let r = blocking
            .send(msg, |p| pieces.push(p.to_string()))
            .expect("send");
        want.push((r.text, pieces, r.stats.reused_tokens));
    }
    let mut s = session(&m, 256, o);
    let gpu = s.decoder().gpu_model.gpu().clone();
    let done = AtomicBool::new(false);
    let got = std::thread::scope(|t| {
        t.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                let _ = gpu.device.poll(wgpu::PollType::Poll);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        let mut got = Vec::new();
        for msg in messages {
            let mut pieces = Vec::new();
            let r = pollster::block_on(s.send_async(msg, |p| pieces.push(p.to_string())))
                .expect("send_async");
            got.push((r.text, pieces, r.stats.reused_tokens));
        }
        done.store(true, Ordering::SeqCst);
        got
    });
    assert_eq!(got, want);
    assert!(want[1].2 > 0, "the second turn reused nothing");
}
