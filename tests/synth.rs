//! The synthetic-model generator (examples/synth.rs): a small model written to
//! a temp dir loads with `Model::open`, its vocabulary tokenizes and detokenizes
//! text, and it decodes on the GPU with finite logits equal to the CPU
//! reference's; the full-size vocabularies are valid and exactly sized.

mod common;

#[allow(dead_code)]
#[path = "../examples/synth.rs"]
mod synth;

use q4gpu::gguf::GgmlType;
use q4gpu::gpu::compare;
use q4gpu::model::{CpuModel, GpuModel};
use q4gpu::tokenizer::{Tokenizer, TokenizerSpec};
use q4gpu::Model;

fn temp_path(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("q4gpu-synth-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d.join("model.gguf")
}

fn small(ty: GgmlType, layers: usize, vocab: usize) -> synth::SynthOptions {
    let mut shape = synth::Arch::Smollm2_135m.shape();
    shape.layers = layers;
    shape.vocab = vocab;
    synth::SynthOptions {
        shape,
        ty,
        embd: GgmlType::Q8_0,
        mix: None,
        seed: 7,
    }
}

#[test]
fn small_synthetic_model_loads_tokenizes_and_decodes_on_gpu() {
    let path = temp_path("small");
    let o = small(GgmlType::Q4_0, 2, 700);
    synth::write(&o, &path).expect("write");
    let model = Model::open(&path).expect("Model::open");
    let c = &model.config;
    assert_eq!(
        (c.n_layers, c.dim, c.ffn_dim, c.n_heads, c.n_kv_heads),
        (2, 576, 1536, 9, 3)
    );
    assert_eq!((c.vocab_size, c.context_len, c.head_dim), (700, 8192, 64));
    assert_eq!(c.rope_base, 100000.0);
    let w = model.weights().expect("weights");
    assert!(w.tied_output, "SmolLM2 ties the LM head to the embedding");
    assert_eq!(w.layers[0].wq.ty, GgmlType::Q4_0);
    assert_eq!(w.token_embd.ty, GgmlType::Q8_0);

    let tk = &model.tokenizer;
    assert_eq!(tk.vocab_size(), 700);
    assert_eq!((tk.bos_id(), tk.eos_id()), (Some(1), Some(2)));
    let text = "<|im_start|>user\nHello, wörld! 123 <|im_end|>";
    let ids = tk.encode(text, true);
    assert_eq!(ids[0], 1, "<|im_start|> is one special token: {ids:?}");
    assert_eq!(*ids.last().expect("ids"), 2);
    assert_eq!(tk.decode_lossy(&ids), text, "round trip");
    assert!(tk.is_stop(2));

    let gpu = common::gpu();
    let mut g = GpuModel::new(&gpu, c, &w, 32).expect("gpu model");
    let mut cpu = CpuModel::with_max_positions(c.clone(), model.weights().expect("w"), 32);
    let prompt = &ids[..6];
    for (pos, &t) in prompt.iter().enumerate() {
        let gl = g.forward(t, pos).expect("gpu forward");
        let cl = cpu.forward(t, pos).expect("cpu forward").to_vec();
        let rep = compare(&gl, &cl);
        assert!(rep.passes(1e-3), "pos {pos}: {rep}");
        let spread = cl.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            spread > 1e-3 && spread < 100.0,
            "logits O(1), got max |logit| {spread}"
        );
    }
    g.prefill(0, prompt).expect("prefill");
    let logits = g.read_logits().expect("logits");
    assert!(logits.iter().all(|v| v.is_finite()));
    let mut out = Vec::new();
    let n = g
        .generate_greedy(0, prompt.len(), 4, |t| {
            out.push(t);
            true
        })
        .expect("generate");
    assert_eq!(n, 4);
    assert!(out.iter().all(|&t| (t as usize) < 700), "{out:?}");
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

#[test]
fn same_options_give_the_same_bytes_and_types_follow_options() {
    let a = temp_path("det-a");
    let b = temp_path("det-b");
    let o = small(GgmlType::Q4_1, 1, 300);
    synth::write(&o, &a).expect("write a");
    synth::write(&o, &b).expect("write b");
    assert_eq!(std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"));
    let m = Model::open(&a).expect("open");
    assert_eq!(m.weights().expect("w").layers[0].w_down.ty, GgmlType::Q4_1);
    for p in [a, b] {
        let _ = std::fs::remove_dir_all(p.parent().expect("dir"));
    }
}

#[test]
fn full_size_vocabularies_are_valid_bpe() {
    for arch in [synth::Arch::Smollm2_135m, synth::Arch::Llama32_1b] {
        let n = arch.shape().vocab;
        let v = synth::vocab(n, 42).expect("vocab");
        assert_eq!(v.tokens.len(), n);
        assert_eq!(v.types.len(), n);
        assert_eq!(v.merges.len(), n - 259);
        // Every merge joins two tokens into the token created with it.
        for (m, t) in v.merges.iter().zip(&v.tokens[259..]) {
            let (l, r) = m.split_once(' ').expect("two parts");
            assert_eq!(format!("{l}{r}"), *t);
        }
        let tk = Tokenizer::from_spec(TokenizerSpec {
            model: "gpt2".into(),
            pre: Some("smollm".into()),
            tokens: v.tokens,
            token_types: v.types,
            merges: v.merges,
            bos_id: Some(1),
            eos_id: Some(2),
            ..Default::default()
        })
        .expect("tokenizer accepts the synthetic vocabulary");
        let text = "The quick brown fox jumps over the lazy dog. Ünïcödé ✓";
        let ids = tk.encode(text, false);
        assert_eq!(tk.decode_lossy(&ids), text);
        assert!(ids.len() < text.len(), "merges apply: {} ids", ids.len());
    }
}

/// Decode attention splits positions into 64-position chunks and merges them:
/// GPU logits must follow the CPU reference across the chunk boundaries
/// (positions 63/64/65, 127/128/129), for decode steps after a batched prefill.
#[test]
fn gpu_decode_matches_cpu_across_attention_chunks() {
    decode_matches_cpu_across_chunks("chunks", 576, 9, 3);
}

/// The same with 9 query heads on one KV head: the decode attention's
/// workgroups then take 4, 4 and 1 of the heads sharing it.
#[test]
fn gpu_decode_matches_cpu_with_many_heads_per_kv_head() {
    decode_matches_cpu_across_chunks("chunks-gqa9", 576, 9, 1);
}

/// Other head sizes: 16 (one vec4 per key quarter, 16 workgroup threads per
/// position), 128 and 256 (Llama-3's and Gemma's; 2 and 1 threads per
/// output value).
#[test]
fn gpu_decode_matches_cpu_with_other_head_sizes() {
    decode_matches_cpu_across_chunks("chunks-hd16", 576, 36, 12);
    decode_matches_cpu_across_chunks("chunks-hd128", 512, 4, 2);
    decode_matches_cpu_across_chunks("chunks-hd256", 512, 2, 1);
}

/// Logits in lockstep: a 1-layer synthetic model (width `dim`, `heads` query
/// heads, `kv_heads` KV heads), a 10-token prefill, then single GPU steps to
/// position 139 against the CPU reference.
fn decode_matches_cpu_across_chunks(name: &str, dim: usize, heads: usize, kv_heads: usize) {
    let path = temp_path(name);
    let mut o = small(GgmlType::Q8_0, 1, 300);
    o.shape.dim = dim;
    o.shape.heads = heads;
    o.shape.kv_heads = kv_heads;
    synth::write(&o, &path).expect("write");
    let model = Model::open(&path).expect("Model::open");
    let c = &model.config;
    assert_eq!(c.head_dim, dim / heads);
    let gpu = common::gpu();
    let mut g = GpuModel::new(&gpu, c, &model.weights().expect("w"), 192).expect("gpu model");
    let mut cpu = CpuModel::with_max_positions(c.clone(), model.weights().expect("w"), 192);
    let ids: Vec<u32> = (0..140u32).map(|i| (i * 37 + 11) % 300).collect();
    // Prompt of 10 tokens through the batched prefill, then single steps.
    g.prefill(0, &ids[..10]).expect("prefill");
    let mut worst = 0.0f64;
    for (pos, &t) in ids.iter().enumerate() {
        let cl = cpu.forward(t, pos).expect("cpu forward").to_vec();
        if pos < 9 {
            continue;
        }
        let gl = if pos == 9 {
            g.read_logits().expect("logits")
        } else {
            g.forward(t, pos).expect("gpu forward")
        };
        let rep = compare(&gl, &cl);
        worst = worst.max(rep.rel_err);
        assert!(rep.passes(1e-4), "pos {pos}: {rep}");
    }
    eprintln!("worst logits rel err over 140 positions: {worst:.3e}");
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

/// Greedy decoding with a repeat penalty, and sampling with a seed, give the
/// same tokens on the GPU (`Decoder::generate`: the GPU sampler, and the
/// host sampler over read-back logits) as the CPU reference with the same
/// sampler; without the penalty the GPU-resident argmax path runs and agrees
/// too. (Issue 20: the GPU path used to ignore the penalty.)
#[test]
fn gpu_greedy_applies_the_repeat_penalty_like_the_cpu() {
    use q4gpu::sampling::{Sampler, SamplerConfig};
    let path = temp_path("penalty");
    synth::write(&small(GgmlType::Q8_0, 2, 300), &path).expect("write");
    let model = Model::open(&path).expect("Model::open");
    let gpu = common::gpu();
    let mut dec = q4gpu::Decoder::new(&gpu, &model, 64).expect("decoder");
    let prompt: Vec<u32> = vec![5, 17, 42, 17, 99];
    let n = 12;
    let mut outs = Vec::new();
    let greedy = |penalty| SamplerConfig {
        repeat_penalty: penalty,
        repeat_last_n: 64,
        ..SamplerConfig::greedy()
    };
    let sampled = [
        SamplerConfig {
            seed: 7,
            ..SamplerConfig::default()
        },
        SamplerConfig {
            temperature: 1.2,
            top_k: 100,
            top_p: 0.9,
            min_p: 0.0,
            repeat_penalty: 1.3,
            repeat_last_n: 16,
            seed: 11,
        },
    ];
    let cfgs = [
        greedy(1.0),
        greedy(0.05),
        greedy(20.0),
        sampled[0],
        sampled[1],
    ];
    for (cfg, on_host) in cfgs.iter().flat_map(|c| [(*c, false), (*c, true)]) {
        assert!(dec.gpu_model.samples_on_gpu(&cfg), "{cfg:?}");
        dec.sample_on_host = on_host;
        let mut gpu_ids = Vec::new();
        dec.generate(&prompt, n, &cfg, |id| {
            gpu_ids.push(id);
            true
        })
        .expect("generate");
        let mut cpu =
            CpuModel::with_max_positions(model.config.clone(), model.weights().expect("w"), 64);
        let mut sampler = Sampler::new(cfg);
        let mut recent = prompt.clone();
        let mut logits = Vec::new();
        for (pos, &t) in prompt.iter().enumerate() {
            logits = cpu.forward(t, pos).expect("cpu").to_vec();
        }
        let mut cpu_ids = Vec::new();
        for pos in prompt.len()..prompt.len() + n {
            let id = sampler.sample(&logits, &recent);
            cpu_ids.push(id);
            recent.push(id);
            logits = cpu.forward(id, pos).expect("cpu").to_vec();
        }
        assert_eq!(gpu_ids, cpu_ids, "{cfg:?}, sampled on the host: {on_host}");
        outs.push(gpu_ids);
    }
    // The penalty and the sampler have to matter for this to test anything.
    assert!(
        outs[2] != outs[0] || outs[4] != outs[0],
        "no penalty changed the greedy tokens: {outs:?}"
    );
    assert!(
        outs[6] != outs[0] && outs[8] != outs[6],
        "sampling changed nothing: {outs:?}"
    );
}

/// A second `generate` whose prompt extends the first's prompt and output
/// prefills only the new tokens (the chat's next turn), and gives the same
/// tokens as a fresh decoder prefilling everything; using the model
/// directly in between voids the reuse.
#[test]
fn generate_reuses_the_kv_cache_across_turns() {
    use q4gpu::sampling::SamplerConfig;
    let path = temp_path("reuse");
    synth::write(&small(GgmlType::Q4_0, 2, 300), &path).expect("write");
    let model = Model::open(&path).expect("Model::open");
    let gpu = common::gpu();
    let greedy = SamplerConfig::greedy();
    let run = |dec: &mut q4gpu::Decoder, prompt: &[u32], n: usize| {
        let mut ids = Vec::new();
        let stats = dec
            .generate(prompt, n, &greedy, |id| {
                ids.push(id);
                true
            })
            .expect("generate");
        (ids, stats.reused_tokens)
    };
    let mut dec = q4gpu::Decoder::new(&gpu, &model, 96).expect("decoder");
    let turn1: Vec<u32> = vec![3, 14, 15, 92, 65, 35];
    let (out1, reused1) = run(&mut dec, &turn1, 7);
    assert_eq!((out1.len(), reused1), (7, 0));
    let turn2: Vec<u32> = [&turn1[..], &out1[..], &[89, 79, 32, 38]].concat();
    let (out2, reused2) = run(&mut dec, &turn2, 9);
    assert_eq!(
        reused2,
        turn1.len() + out1.len() - 1,
        "all but the last output reused"
    );
    let mut fresh = q4gpu::Decoder::new(&gpu, &model, 96).expect("decoder");
    let (want2, _) = run(&mut fresh, &turn2, 9);
    assert_eq!(out2, want2, "reused cache gives the fresh decoder's tokens");
    // A prompt that diverges early reuses only the common prefix.
    let turn3: Vec<u32> = [&turn1[..3], &[7, 7, 7]].concat();
    let (out3, reused3) = run(&mut dec, &turn3, 5);
    assert_eq!(reused3, 3);
    fresh.forget();
    let (want3, reused_fresh) = run(&mut fresh, &turn3, 5);
    assert_eq!(reused_fresh, 0);
    assert_eq!(out3, want3);
    // Driving the model directly voids what the decoder knows.
    dec.gpu_model.forward(5, 0).expect("forward");
    let (_, reused4) = run(&mut dec, &turn3, 2);
    assert_eq!(reused4, 0);
}

/// Every new block format inside a model: GPU logits (batched prefill, then
/// single steps) against the CPU reference on 1-layer synthetic models whose
/// weights are K-quants (width 512: whole super-blocks) or fall back to Q5_0
/// / Q5_1 / Q8_0 as llama.cpp's do (width 576), with K-quant and Q5
/// embeddings.
#[test]
fn gpu_matches_cpu_on_k_quants_and_q5() {
    for (name, ty, embd, dim, heads, kv) in [
        ("q4k", GgmlType::Q4_K, GgmlType::Q6_K, 512, 8, 2),
        ("q5k", GgmlType::Q5_K, GgmlType::Q4_K, 512, 8, 2),
        ("q6k", GgmlType::Q6_K, GgmlType::Q5_K, 512, 4, 4),
        ("q4k-576", GgmlType::Q4_K, GgmlType::Q5_1, 576, 9, 3),
        ("q5k-576", GgmlType::Q5_K, GgmlType::Q4_K, 576, 9, 3),
    ] {
        let path = temp_path(name);
        let mut o = small(ty, 1, 300);
        (o.embd, o.shape.dim, o.shape.heads, o.shape.kv_heads) = (embd, dim, heads, kv);
        synth::write(&o, &path).expect("write");
        let model = Model::open(&path).expect("Model::open");
        let w = model.weights().expect("w");
        let c = &model.config;
        let gpu = common::gpu();
        let mut g = GpuModel::new(&gpu, c, &w, 64).expect("gpu model");
        let mut cpu = CpuModel::with_max_positions(c.clone(), model.weights().expect("w"), 64);
        let ids: Vec<u32> = (0..24u32).map(|i| (i * 53 + 7) % 300).collect();
        g.prefill(0, &ids[..8]).expect("prefill");
        for (pos, &t) in ids.iter().enumerate() {
            let cl = cpu.forward(t, pos).expect("cpu forward").to_vec();
            if pos < 7 {
                continue;
            }
            let gl = if pos == 7 {
                g.read_logits().expect("logits")
            } else {
                g.forward(t, pos).expect("gpu forward")
            };
            let rep = compare(&gl, &cl);
            assert!(
                rep.passes(1e-4),
                "{name} ({ty} weights as {}, {} embedding) pos {pos}: {rep}",
                w.layers[0].w_up.ty,
                w.token_embd.ty
            );
        }
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }
}

/// A model whose embedding (and tied LM head) is larger than the device's
/// storage binding runs with both split by rows: a 2.9 MiB Q8_0 table under a
/// 1 MiB binding cap is three parts, one lookup and one head matvec each,
/// and the logits still equal the CPU reference's.
#[test]
fn tables_larger_than_a_binding_are_split() {
    let path = temp_path("split");
    let o = small(GgmlType::Q4_0, 2, 5000);
    synth::write(&o, &path).expect("write");
    let model = Model::open(&path).expect("Model::open");
    let (c, w) = (&model.config, model.weights().expect("w"));
    assert!(w.token_embd.data.len() > 2 << 20); // 2.9 MiB
    let mut opts = common::device_options();
    opts.max_storage_binding = Some(1 << 20);
    // The prefill buffers under the cap too.
    opts.tuning = Some(q4gpu::gpu::tuning::Tuning {
        prefill_tokens: 32,
        ..Default::default()
    });
    let gpu = q4gpu::gpu::Gpu::new(&opts).expect("gpu");
    assert_eq!(gpu.max_binding(), 1 << 20);
    let mut g = GpuModel::new(&gpu, c, &w, 64).expect("gpu model under the cap");
    let whole = GpuModel::new(&common::gpu(), c, &w, 64).expect("gpu model");
    // Three embedding lookups and three head matvecs instead of one each.
    assert_eq!(g.dispatches_at(70), whole.dispatches_at(70) + 4);
    let mut cpu = CpuModel::with_max_positions(c.clone(), model.weights().expect("w"), 64);
    let ids: Vec<u32> = (0..20u32).map(|i| (i * 977 + 3) % 5000).collect();
    g.prefill(0, &ids[..6]).expect("prefill");
    for (pos, &t) in ids.iter().enumerate() {
        let cl = cpu.forward(t, pos).expect("cpu").to_vec();
        if pos < 5 {
            continue;
        }
        let gl = if pos == 5 {
            g.read_logits().expect("logits")
        } else {
            g.forward(t, pos).expect("gpu forward")
        };
        let rep = compare(&gl, &cl);
        assert!(rep.passes(1e-4), "pos {pos}: {rep}");
    }
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

/// `Model::from_bytes` (for hosts without files, e.g. a web page) validates
/// and loads what `Model::open` does; truncated bytes are an error.
#[test]
fn model_from_bytes_equals_model_open() {
    let path = temp_path("bytes");
    let o = small(GgmlType::Q4_0, 1, 400);
    synth::write(&o, &path).expect("write");
    let bytes = std::fs::read(&path).expect("read");
    let a = Model::open(&path).expect("open");
    let b = Model::from_bytes(bytes.clone()).expect("from_bytes");
    assert_eq!(a.config, b.config);
    assert_eq!(
        a.tokenizer.encode("hello world", false),
        b.tokenizer.encode("hello world", false)
    );
    let wa = a.weights().expect("weights");
    let wb = b.weights().expect("weights");
    assert_eq!(wa.token_embd.data, wb.token_embd.data);
    let cut = Model::from_bytes(bytes[..bytes.len() / 2].to_vec());
    let e = cut.err().expect("truncated bytes refused").to_string();
    assert!(e.starts_with("GGUF: "), "{e}");
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

/// The awaitable readback never blocks: before the device is polled the
/// future is pending; with a host loop polling the device (as a web page's
/// browser or a winit app would) it yields the same logits as the blocking
/// read.
#[test]
fn async_logits_readback_completes_when_the_host_polls() {
    use std::future::Future;
    use std::task::{Context, Waker};
    let path = temp_path("async");
    let o = small(GgmlType::Q4_0, 1, 300);
    synth::write(&o, &path).expect("write");
    let model = Model::open(&path).expect("open");
    let gpu = common::gpu();
    let w = model.weights().expect("w");
    let mut g = GpuModel::new(&gpu, &model.config, &w, 16).expect("gpu model");
    let want = g.forward(7, 0).expect("forward");

    let mut fut = std::pin::pin!(g.read_logits_async());
    let mut cx = Context::from_waker(Waker::noop());
    assert!(
        fut.as_mut().poll(&mut cx).is_pending(),
        "completed without a device poll"
    );
    let got = while_polled(&gpu, || pollster::block_on(fut.as_mut())).expect("async readback");
    assert_eq!(got, want);
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

/// Greedy decoding through `step_async`, awaited while a host thread polls
/// the device, gives the ids the blocking greedy loop gives.
#[test]
fn async_greedy_steps_match_the_blocking_loop() {
    let path = temp_path("async-greedy");
    let o = small(GgmlType::Q4_0, 2, 300);
    synth::write(&o, &path).expect("write");
    let model = Model::open(&path).expect("open");
    let gpu = common::gpu();
    let w = model.weights().expect("w");
    let prompt = [5u32, 77, 123];
    let mut g = GpuModel::new(&gpu, &model.config, &w, 32).expect("gpu model");
    g.prefill(0, &prompt).expect("prefill");
    let want = greedy_ids(&mut g, prompt.len(), 8);

    let mut g = GpuModel::new(&gpu, &model.config, &w, 32).expect("gpu model");
    g.prefill(0, &prompt[..2]).expect("prefill");
    let got = while_polled(&gpu, || {
        let mut ids = Vec::new();
        let mut token = Some(prompt[2]);
        for pos in prompt.len() - 1..prompt.len() - 1 + 8 {
            ids.push(pollster::block_on(g.step_async(pos, token)).expect("step"));
            token = None; // the id argmax left on the GPU
        }
        ids
    });
    assert_eq!(got, want);
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

/// `Decoder::generate_async` (awaited while another thread polls the
/// device, as an event loop would) gives the blocking call's tokens and
/// leaves the same cache: greedy, GPU-sampled and host-sampled, run to the
/// end and stopped early, then a next turn reusing the cache.
#[test]
fn async_generation_matches_the_blocking_one() {
    use q4gpu::sampling::SamplerConfig;
    let path = temp_path("async-gen");
    synth::write(&small(GgmlType::Q4_0, 2, 300), &path).expect("write");
    let model = Model::open(&path).expect("open");
    let gpu = common::gpu();
    let sampled = SamplerConfig {
        seed: 5,
        repeat_penalty: 1.2,
        ..SamplerConfig::default()
    };
    let prompt = [5u32, 77, 123, 9];
    for (cfg, on_host) in [
        (SamplerConfig::greedy(), false),
        (sampled, false),
        (sampled, true),
    ] {
        let mut runs: Vec<Vec<Vec<u32>>> = Vec::new();
        for use_async in [false, true] {
            let mut dec = q4gpu::Decoder::new(&gpu, &model, 64).expect("decoder");
            dec.sample_on_host = on_host;
            let mut turns = Vec::new();
            let mut ctx = prompt.to_vec();
            for (turn, stop_after) in [(0, 10), (1, 4), (2, 10)] {
                let mut ids = Vec::new();
                let mut emit = |id| {
                    ids.push(id);
                    ids.len() < stop_after
                };
                let stats = if use_async {
                    while_polled(&gpu, || {
                        pollster::block_on(dec.generate_async(&ctx, 10, &cfg, None, &mut emit))
                    })
                } else {
                    dec.generate_cancellable(&ctx, 10, &cfg, None, &mut emit)
                }
                .expect("generate");
                assert_eq!(stats.generated, ids.len());
                if turn > 0 {
                    assert!(
                        stats.reused_tokens > prompt.len(),
                        "turn {turn} reused nothing"
                    );
                }
                ctx.extend_from_slice(&ids);
                ctx.extend_from_slice(&[42, 43]);
                turns.push(ids);
            }
            runs.push(turns);
        }
        assert_eq!(
            runs[0], runs[1],
            "{cfg:?}, on host {on_host}: blocking vs async"
        );
    }
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

/// Several decode steps per submission (`Tuning::steps_per_submit`, each
/// step's position and sampler draw copied into the step uniform before its
/// pass) and more submissions in flight give the tokens of one step per
/// submission: greedy and GPU-sampled, blocking and async, run to the end
/// and stopped early (the steps already in flight discarded), then a next
/// turn reusing the cache; and the model's own greedy loop cut by the end
/// of the context window in the middle of a submission.
#[test]
fn steps_per_submit_and_run_ahead_keep_the_tokens() {
    use q4gpu::sampling::SamplerConfig;
    let path = temp_path("steps-per-submit");
    synth::write(&small(GgmlType::Q4_0, 2, 300), &path).expect("write");
    let model = Model::open(&path).expect("open");
    let sampled = SamplerConfig {
        seed: 9,
        ..SamplerConfig::default()
    };
    let prompt = [5u32, 77, 123, 9];
    let run = |steps: usize, ahead: usize, cfg: &SamplerConfig| {
        let mut gpu = common::gpu();
        gpu.tuning.steps_per_submit = steps;
        gpu.tuning.run_ahead = ahead;
        let mut dec = q4gpu::Decoder::new(&gpu, &model, 26).expect("decoder");
        let mut turns = Vec::new();
        let mut ctx = prompt.to_vec();
        for (max_new, stop_after, use_async) in [(9, 9, false), (9, 2, true), (7, 7, false)] {
            let mut ids = Vec::new();
            let mut emit = |id| {
                ids.push(id);
                ids.len() < stop_after
            };
            if use_async {
                while_polled(&gpu, || {
                    pollster::block_on(dec.generate_async(&ctx, max_new, cfg, None, &mut emit))
                })
            } else {
                dec.generate(&ctx, max_new, cfg, &mut emit)
            }
            .expect("generate");
            ctx.extend_from_slice(&ids);
            ctx.push(42);
            turns.push(ids);
        }
        // 26 positions: after a 4-token prompt, 22 steps fit (23 ids with
        // the prefill's), whatever is asked for.
        let m = &mut dec.gpu_model;
        m.prefill(0, &prompt).expect("prefill");
        turns.push(greedy_ids(m, prompt.len(), 40));
        turns
    };
    for cfg in [SamplerConfig::greedy(), sampled] {
        let want = run(1, 1, &cfg);
        assert_eq!(want[1].len(), 2, "the early stop");
        assert_eq!(want[3].len(), 23, "the context window's cut");
        for (steps, ahead) in [(3, 1), (8, 2), (1, 2)] {
            assert_eq!(
                run(steps, ahead, &cfg),
                want,
                "{cfg:?}: {steps} steps per submit, {ahead} ahead"
            );
        }
    }
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

/// `--arch tinyllama-1.1b`: a SentencePiece vocabulary (`<0xXX>` byte
/// tokens, ▁ words with scores). llama.cpp 0c1e57098 loads the file and
/// tokenizes two prompts into the ids below (BOS first: the file asks for
/// it); q4gpu gives the same ids and the GPU decodes as the CPU does.
#[test]
fn tinyllama_sentencepiece_vocabulary_matches_llama_cpp() {
    let path = temp_path("tinyllama");
    let mut shape = synth::Arch::TinyLlama11b.shape();
    (shape.layers, shape.vocab) = (2, 2000);
    let o = synth::SynthOptions {
        shape,
        ty: GgmlType::Q4_0,
        embd: GgmlType::Q8_0,
        mix: None,
        seed: 42,
    };
    synth::write(&o, &path).expect("write");
    let model = Model::open(&path).expect("open");
    let tok = &model.tokenizer;
    assert!(tok.add_bos());
    // greedy_ids -m <file as F32> --prompt ... (add_special, parse_special)
    let cases: [(&str, &[u32]); 2] = [
        (
            "Hello world, this is a test",
            &[
                1, 345, 479, 664, 334, 745, 653, 47, 331, 554, 278, 320, 278, 312, 331, 486, 279,
            ],
        ),
        (
            " leading space and  double",
            &[
                1, 259, 323, 264, 367, 585, 266, 330, 275, 366, 264, 312, 705, 259, 315, 748, 401,
                264,
            ],
        ),
    ];
    for (text, want) in cases {
        let ids = tok.encode_prompt(text);
        assert_eq!(ids, want, "{text:?}");
        assert_eq!(
            String::from_utf8_lossy(&tok.decode(&ids[1..])),
            format!(" {text}")
        );
    }
    let (c, w) = (&model.config, model.weights().expect("w"));
    let gpu = common::gpu();
    let mut g = GpuModel::new(&gpu, c, &w, 32).expect("gpu model");
    let mut cpu = CpuModel::with_max_positions(c.clone(), model.weights().expect("w"), 32);
    for (pos, &t) in cases[0].1.iter().enumerate() {
        let rep = compare(
            &g.forward(t, pos).expect("gpu"),
            cpu.forward(t, pos).expect("cpu"),
        );
        assert!(rep.passes(1e-4), "pos {pos}: {rep}");
    }
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

/// Runs `f` while another thread polls the device, as a host's event loop
/// (or a browser) would, so awaited readbacks complete.
/// The ids `generate_greedy` emits after a prefill of `n_prompt` tokens
/// from position 0, up to `max_new`.
fn greedy_ids(m: &mut GpuModel, n_prompt: usize, max_new: usize) -> Vec<u32> {
    let mut ids = Vec::new();
    m.generate_greedy(0, n_prompt, max_new, |id| {
        ids.push(id);
        true
    })
    .expect("generate_greedy");
    ids
}

fn while_polled<T>(gpu: &q4gpu::Gpu, f: impl FnOnce() -> T) -> T {
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                let _ = gpu.device.poll(wgpu::PollType::Poll);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        let out = f();
        done.store(true, Ordering::SeqCst);
        out
    })
}
