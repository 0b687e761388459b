//! The GPU memory estimate ([`GpuModel::memory_estimate`]) against what
//! building the model really allocates ([`q4gpu::Gpu::allocated_bytes`]) on
//! synthetic models: Q4_0 and the Q4_K_M mix (Q|K and V stacked apart), two
//! context sizes each, int8 prefill inputs, the separate attention-merge
//! pass, and a device whose small binding limit splits the embedding table
//! and the LM head. The KV-cache part scales exactly with the positions, and
//! a memory budget one byte short of the estimate refuses the model before
//! anything is allocated, with one line naming the need, its parts and the
//! budget.

mod common;

#[allow(dead_code)]
#[path = "../examples/synth.rs"]
mod synth;

use q4gpu::gguf::GgmlType;
use q4gpu::gpu::{GpuError, Inputs};
use q4gpu::model::{GpuModel, MemoryEstimate, ModelOptions};
use q4gpu::quant::convert::Mix;
use q4gpu::{Error, Gpu, Model};

/// Largest relative difference allowed between the estimate and the bytes
/// allocated (the estimate replays every buffer, so it is exact today; the
/// slack only keeps a new 16-byte uniform from failing the test).
const TOLERANCE: f64 = 0.001;

/// A two-layer SmolLM2-shaped model with `vocab` tokens, written to a temp dir.
fn model(tag: &str, ty: GgmlType, mix: Option<Mix>, vocab: usize) -> Model {
    let dir = std::env::temp_dir().join(format!("q4gpu-memory-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("model.gguf");
    let mut shape = synth::Arch::Smollm2_135m.shape();
    (shape.layers, shape.vocab) = (2, vocab);
    let o = synth::SynthOptions {
        shape,
        ty,
        embd: GgmlType::Q8_0,
        mix,
        seed: 5,
    };
    synth::write(&o, &path).expect("synth");
    Model::open(&path).expect("open")
}

/// Builds `m` for `ctx` positions and checks the estimate against the bytes
/// building allocated; returns the estimate.
fn check(gpu: &Gpu, m: &Model, what: &str, ctx: usize, opts: ModelOptions) -> MemoryEstimate {
    let w = m.weights().expect("weights");
    let est = GpuModel::memory_estimate(gpu, &m.config, &w, ctx, opts).expect("estimate");
    let before = gpu.allocated_bytes();
    let gm = GpuModel::with_options(gpu, &m.config, &w, ctx, opts).expect("gpu model");
    let allocated = gpu.allocated_bytes() - before;
    let off = est.total.abs_diff(allocated) as f64 / allocated as f64;
    eprintln!(
        "{what}, ctx {ctx}: estimate {} bytes {est}, allocated {allocated} bytes ({:+} bytes, {:.4} %)",
        est.total,
        est.total as i64 - allocated as i64,
        off * 100.0
    );
    assert!(
        off <= TOLERANCE,
        "{what}, ctx {ctx}: estimate {} vs allocated {allocated}",
        est.total
    );
    assert_eq!(gm.memory(), &est, "the model keeps its estimate");
    assert_eq!(est.total, est.weights + est.kv_cache + est.activations);
    // K and V: 2 × layers × positions × kv_dim f32.
    let c = &m.config;
    let kv = 2 * c.n_layers as u64 * ctx as u64 * c.kv_dim() as u64 * 4;
    assert_eq!((est.kv_cache, est.positions), (kv, ctx), "{what}: KV cache");
    est
}

#[test]
fn estimate_matches_what_building_allocates() {
    let gpu = common::gpu();
    let q4 = model("q4_0", GgmlType::Q4_0, None, 2500);
    let km = model("q4_k_m", GgmlType::Q4_K, Some(Mix::Q4KM), 700);
    let w = km.weights().expect("weights");
    // The last layer's V (Q8_0) and down (Q6_K) get more bits than Q (Q5_0).
    let l = &w.layers[1];
    assert_eq!(
        (l.wq.ty, l.wv.ty, l.w_down.ty),
        (GgmlType::Q5_0, GgmlType::Q8_0, GgmlType::Q6_K)
    );

    let plain = ModelOptions::default();
    let int8 = ModelOptions {
        inputs: Inputs::Int8,
        fuse_attention_merge: Some(false),
        ..plain
    };
    for (what, m, opts) in [("Q4_0", &q4, plain), ("Q4_K_M", &km, int8)] {
        let short = check(&gpu, m, what, 100, opts);
        let long = check(&gpu, m, what, 700, opts);
        // The KV cache scales exactly; the rest grows only by the sampler's
        // history and attention's per-chunk partials.
        assert_eq!(short.kv_cache * 7, long.kv_cache, "{what}");
        assert_eq!(short.weights, long.weights, "{what}");
        assert!(long.activations - short.activations < long.kv_cache / 10);
    }
    // Int8 prefill inputs on Q4_0: the quantized-input scratch buffer too.
    check(&gpu, &q4, "Q4_0 int8", 300, int8);

    // A 1 MiB binding limit splits the 2500-row Q8_0 table (612 bytes a
    // row) and the tied LM head in two parts each; 32-token prefill chunks
    // keep the activations within it.
    let mut opts = common::device_options();
    opts.max_storage_binding = Some(1 << 20);
    let mut small = Gpu::new(&opts).expect("gpu");
    small.tuning.prefill_tokens = 32;
    let est = check(&small, &q4, "Q4_0, 1 MiB bindings", 300, plain);
    let full = check(&gpu, &q4, "Q4_0", 300, plain);
    assert!(est.activations < full.activations, "smaller prefill chunks");
    // Two parts of one table: each padded on its own, the head's each with a tail.
    assert!(est.weights > full.weights && est.weights < full.weights + 200);
}

#[test]
fn a_budget_below_the_estimate_refuses_the_model_before_allocating() {
    let gpu = common::gpu();
    let m = model("budget", GgmlType::Q4_0, None, 700);
    let w = m.weights().expect("weights");
    let cfg = &m.config;
    let est =
        GpuModel::memory_estimate(&gpu, cfg, &w, 4096, ModelOptions::default()).expect("estimate");
    let with_budget = |budget: u64, ctx: usize| {
        let opts = ModelOptions {
            memory_budget: Some(budget),
            ..Default::default()
        };
        GpuModel::with_options(&gpu, cfg, &w, ctx, opts)
    };

    let before = gpu.allocated_bytes();
    let e = match with_budget(est.total - 1, 4096) {
        Err(e) => e,
        Ok(_) => panic!("a budget one byte short must refuse the model"),
    };
    assert_eq!(gpu.allocated_bytes(), before, "refused before allocating");
    let msg = e.to_string();
    eprintln!("{msg}");
    match &e {
        Error::Gpu(GpuError::OverBudget { estimate, budget }) => {
            assert_eq!((estimate, *budget), (&est, est.total - 1));
        }
        other => panic!("expected OverBudget, got {other:?}"),
    }
    assert!(!msg.contains('\n'), "one line: {msg}");
    // One byte short: the figures in bytes, as the rounded MiB agree.
    let need = format!(
        "the model needs ≈ {} bytes of GPU memory",
        grouped(est.total)
    );
    let budget = format!("but the budget is {} bytes", grouped(est.total - 1));
    let kv = format!(
        "KV cache {} for 4096 positions",
        q4gpu::model::format_bytes(est.kv_cache)
    );
    for part in [&need, "(weights ", &kv, ", activations ", &budget, "--ctx"] {
        assert!(msg.contains(part), "{part:?} missing from: {msg}");
    }
    // The context it suggests fits the budget.
    let fit = msg
        .split("to at most ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no context suggested: {msg}"));
    assert!(fit < 4096 && fit > 4000, "{fit}");
    let smaller =
        GpuModel::memory_estimate(&gpu, cfg, &w, fit, ModelOptions::default()).expect("estimate");
    assert!(
        smaller.total < est.total,
        "{fit} positions fit a budget of the estimate − 1"
    );

    // A budget the weights alone exceed: no context helps.
    let e = with_budget(est.weights, 16).err().expect("refused");
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(
        msg.contains("use a smaller model or a larger budget"),
        "{msg}"
    );
    assert!(!msg.contains("--ctx"), "{msg}");
    assert_eq!(gpu.allocated_bytes(), before, "refused before allocating");

    // Exactly the estimate: built, and it allocates what was estimated.
    let gm = with_budget(est.total, 4096).expect("a budget equal to the estimate");
    assert_eq!(gm.memory(), &est);
    let allocated = gpu.allocated_bytes() - before;
    assert!(est.total.abs_diff(allocated) as f64 <= TOLERANCE * allocated as f64);

    // wgpu's out-of-memory error while building carries the estimate.
    let oom = GpuError::ModelOutOfMemory {
        context: "creating buffer k cache (25165824 bytes)".into(),
        estimate: est,
    };
    let msg = oom.to_string();
    eprintln!("{msg}");
    let start =
        "GPU out of memory while creating buffer k cache (25165824 bytes): the model needs ≈ ";
    assert!(msg.starts_with(start), "{msg}");
    assert!(msg.contains(&kv) && !msg.contains('\n'), "{msg}");
}

/// 1234567 → "1,234,567" (how the messages write byte counts).
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
