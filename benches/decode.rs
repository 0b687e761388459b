//! Decode benchmark with in-memory random weights in a real model's shapes
//! (no model file needed): `cargo bench --bench decode`.
//!
//! Reports, for SmolLM2-135M shapes (Q4_0 weights, Q8_0 tied embedding):
//! greedy decode tok/s with 1, 256 and 1024 positions already in the KV cache
//! (host a step ahead, one submit per token), prefill tok/s on a 512-token
//! prompt, dispatches per token, GPU time of one step (timestamps) and host
//! time to record one step. Medians over repeats. Env: Q4GPU_BENCH_QUICK=1.

use std::time::Instant;

use q4gpu::gguf::GgmlType;
use q4gpu::gpu::timing::{median, GpuTimer};
use q4gpu::model::{Arch, Config, GpuModel, LayerWeights, ModelOptions, QTensor, Weights};

struct Rng(u64);
impl Rng {
    fn f(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

fn smollm2() -> Config {
    Config {
        arch: Arch::Llama,
        n_layers: 30,
        dim: 576,
        ffn_dim: 1536,
        n_heads: 9,
        n_kv_heads: 3,
        head_dim: 64,
        vocab_size: 49152,
        context_len: 8192,
        rope_base: 100000.0,
        rope_scale: 1.0,
        rope_freq_factors: None,
        rms_eps: 1e-5,
    }
}

fn main() {
    let quick = std::env::var("Q4GPU_BENCH_QUICK").is_ok();
    let cfg = smollm2();
    let mut rng = Rng(42);
    // Random matrices with a scale that keeps activations finite.
    let mut mat = |rows: usize, cols: usize, ty: GgmlType| -> Vec<u8> {
        let v: Vec<f32> = (0..rows * cols).map(|_| rng.f() * 0.05).collect();
        q4gpu::quant::quantize(ty, &v).expect("quantize")
    };
    let q = GgmlType::Q4_0;
    let kv = cfg.kv_dim();
    let mut store: Vec<Vec<u8>> = Vec::new();
    let embd = mat(cfg.vocab_size, cfg.dim, GgmlType::Q8_0);
    for _ in 0..cfg.n_layers {
        store.push(mat(cfg.dim, cfg.dim, q));
        store.push(mat(kv, cfg.dim, q));
        store.push(mat(kv, cfg.dim, q));
        store.push(mat(cfg.dim, cfg.dim, q));
        store.push(mat(cfg.ffn_dim, cfg.dim, q));
        store.push(mat(cfg.ffn_dim, cfg.dim, q));
        store.push(mat(cfg.dim, cfg.ffn_dim, q));
    }
    let t = |name: &str, ty: GgmlType, rows: usize, cols: usize, data: &'static [u8]| QTensor {
        name: name.into(),
        ty,
        rows,
        cols,
        data,
    };
    let leak = |v: &Vec<u8>| -> &'static [u8] { Box::leak(v.clone().into_boxed_slice()) };
    let layers = store
        .chunks(7)
        .map(|c| LayerWeights {
            attn_norm: vec![1.0; cfg.dim],
            wq: t("wq", q, cfg.dim, cfg.dim, leak(&c[0])),
            wk: t("wk", q, kv, cfg.dim, leak(&c[1])),
            wv: t("wv", q, kv, cfg.dim, leak(&c[2])),
            wo: t("wo", q, cfg.dim, cfg.dim, leak(&c[3])),
            qkv_bias: None,
            qk_norm: None,
            ffn_norm: vec![1.0; cfg.dim],
            w_gate: t("w_gate", q, cfg.ffn_dim, cfg.dim, leak(&c[4])),
            w_up: t("w_up", q, cfg.ffn_dim, cfg.dim, leak(&c[5])),
            w_down: t("w_down", q, cfg.dim, cfg.ffn_dim, leak(&c[6])),
        })
        .collect();
    let e = leak(&embd);
    let w = Weights {
        token_embd: t("token_embd", GgmlType::Q8_0, cfg.vocab_size, cfg.dim, e),
        layers,
        output_norm: vec![1.0; cfg.dim],
        output: t("output", GgmlType::Q8_0, cfg.vocab_size, cfg.dim, e),
        tied_output: true,
    };
    let gpu = q4gpu::env::gpu(None, true).unwrap_or_else(|e| panic!("{e}"));
    let opts = ModelOptions::from_env().expect("Q4GPU_* model variables");
    let mut m = GpuModel::with_options(&gpu, &cfg, &w, 2048, opts).expect("model");
    let timer = GpuTimer::new(&gpu).expect("timer");
    println!(
        "# q4gpu decode benchmark (SmolLM2-135M shapes, random Q4_0 weights, Q8_0 tied embedding)"
    );
    println!("adapter: {}", gpu.describe());
    println!(
        "dispatches/token: {}, submits/token: 1, weight bytes/token: {:.1} MB",
        m.dispatches_per_token,
        m.weight_bytes_per_token as f64 / 1e6
    );
    let n_gen = if quick { 8 } else { 128 };
    let reps = if quick { 1 } else { 5 };
    let fills: &[usize] = if quick { &[1, 16] } else { &[1, 256, 1024] };
    let prompt: Vec<u32> = (0..1100u32)
        .map(|i| (i * 7919) % cfg.vocab_size as u32)
        .collect();
    println!("\n| positions filled | decode tok/s | GPU µs/step | host record µs/step |");
    println!("|---|---|---|---|");
    for &fill in fills {
        let mut rates = Vec::new();
        for _ in 0..reps {
            m.prefill(0, &prompt[..fill]).expect("prefill");
            // Wait for the prefill so only decode is timed.
            let _ = m.read_logits().expect("logits");
            let t0 = Instant::now();
            let n = m
                .generate_greedy(0, fill, n_gen, |_| true)
                .expect("generate");
            rates.push(n.saturating_sub(1) as f64 / t0.elapsed().as_secs_f64());
        }
        // GPU time of one step at this fill, and host time to record it.
        m.write_step(fill, None).expect("step");
        let mut g: Vec<f64> = (0..reps.max(3))
            .map(|_| {
                timer
                    .time(&gpu, |p| m.encode_step(p, true))
                    .expect("time")
                    .best_ns()
                    / 1e3
            })
            .collect();
        let mut rec: Vec<f64> = (0..reps.max(3))
            .map(|_| {
                let t0 = Instant::now();
                let mut enc = gpu.device.create_command_encoder(&Default::default());
                m.encode_step_into(&mut enc, true);
                let cb = enc.finish();
                let dt = t0.elapsed().as_secs_f64() * 1e6;
                drop(cb);
                dt
            })
            .collect();
        println!(
            "| {fill} | {:.0} | {:.0} | {:.0} |",
            median(&mut rates),
            median(&mut g),
            median(&mut rec)
        );
    }
    // Where one step's GPU time goes (at the last fill measured).
    println!("\n| kernel kind | dispatches | GPU µs/step |");
    println!("|---|---|---|");
    let mut total = 0.0;
    let mut dispatches = 0;
    for (name, us, n) in m.breakdown(&timer).expect("breakdown") {
        total += us;
        dispatches += n;
        println!("| {name} | {n} | {us:.0} |");
    }
    println!("| sum (each kind in its own pass) | {dispatches} | {total:.0} |");
    // Where one prefill chunk's GPU time goes (the last 64 tokens of 512).
    let (pstart, pn) = if quick { (0, 32) } else { (448, 64) };
    println!("\n| prefill kernel kind (chunk of {pn} at position {pstart}) | dispatches | GPU µs/chunk |");
    println!("|---|---|---|");
    let mut total = 0.0;
    for (name, us, n) in m
        .prefill_breakdown(&timer, pstart, &prompt[pstart..pstart + pn])
        .expect("prefill breakdown")
    {
        total += us;
        println!("| {name} | {n} | {us:.0} |");
    }
    println!("| sum | | {total:.0} |");
    let plen = if quick { 32 } else { 512 };
    let mut pre = Vec::new();
    for _ in 0..reps {
        let t0 = Instant::now();
        m.prefill(0, &prompt[..plen]).expect("prefill");
        let _ = m.read_logits().expect("logits");
        pre.push(plen as f64 / t0.elapsed().as_secs_f64());
    }
    println!("\nprefill ({plen} tokens): {:.0} tok/s", median(&mut pre));
}
