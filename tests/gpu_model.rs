//! The GPU forward pass on the real SmolLM2-135M-Instruct model: greedy tokens
//! equal to the independent numpy reference (tests/data/model_reference.json,
//! 64 steps, 6 prompts incl. 2 ChatML) on the Q4_1 model as shipped, equal to
//! the CPU reference on the Q4_0 requantization, and logits close to the CPU
//! reference's after the batched prefill and for the first generated steps.

mod common;

use q4gpu::gguf::Gguf;
use q4gpu::gpu::{compare, Inputs};
use q4gpu::model::{Config, CpuModel, GpuModel, ModelOptions, Weights};
use serde_json::Value as Json;

fn fixture() -> Json {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/model_reference.json"
    ))
    .expect("fixture");
    serde_json::from_str(&text).expect("fixture json")
}

fn ids(v: &Json) -> Vec<u32> {
    v.as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn gpu_greedy(m: &mut GpuModel, prompt: &[u32], n: usize) -> Vec<u32> {
    m.prefill(0, prompt).expect("prefill");
    let mut out = Vec::new();
    m.generate_greedy(0, prompt.len(), n, |t| {
        out.push(t);
        true
    })
    .expect("generate");
    out
}

#[test]
fn gpu_greedy_matches_numpy_reference_q4_1() {
    let g = Gguf::open(common::model_path(common::MODEL_Q4_1)).expect("open");
    let cfg = Config::from_gguf(&g).expect("config");
    let w = Weights::from_gguf(&g, &cfg).expect("weights");
    let gpu = common::gpu();
    // The separate merge pass after attention from position 64 (SmolLM2's
    // output projection merges the chunks itself by default, as the Q4_0
    // test below runs it).
    let opts = ModelOptions {
        fuse_attention_merge: Some(false),
        ..ModelOptions::default()
    };
    let mut m = GpuModel::with_options(&gpu, &cfg, &w, 256, opts).expect("gpu model");
    // The separate merge pass: one more dispatch per layer from position 64.
    assert_eq!(
        m.dispatches_at(64),
        m.dispatches_at(0) + cfg.n_layers,
        "dispatches with the merge pass"
    );
    eprintln!(
        "{}; {} dispatches/token",
        gpu.describe(),
        m.dispatches_per_token
    );
    let fx = fixture();
    let prompts = fx["prompts"].as_array().expect("prompts");
    assert!(prompts.len() >= 5);
    for p in prompts {
        let prompt = ids(&p["prompt_ids"]);
        let want = ids(&p["greedy"]);
        assert!(want.len() >= 64);
        let got = gpu_greedy(&mut m, &prompt, want.len());
        assert_eq!(
            got, want,
            "prompt '{}': GPU greedy tokens differ from numpy reference",
            p["name"]
        );
    }
}

#[test]
fn gpu_logits_and_tokens_match_cpu_reference_q4_0() {
    let g = Gguf::open(common::model_path(common::MODEL_Q4_0)).expect("open");
    let cfg = Config::from_gguf(&g).expect("config");
    let w = Weights::from_gguf(&g, &cfg).expect("weights");
    let w2 = Weights::from_gguf(&g, &cfg).expect("weights");
    let gpu = common::gpu();
    // The output projection merging attention's chunks from position 64 (the
    // default for SmolLM2; the Q4_1 test above runs the separate pass).
    let opts = ModelOptions {
        fuse_attention_merge: Some(true),
        ..ModelOptions::default()
    };
    let mut gm = GpuModel::with_options(&gpu, &cfg, &w, 128, opts).expect("gpu model");
    assert_eq!(gm.dispatches_at(0), gm.dispatches_at(64));
    let mut cm = CpuModel::with_max_positions(cfg.clone(), w2, 128);
    let fx = fixture();
    let mut worst = 0.0f64;
    for p in fx["prompts"].as_array().expect("prompts").iter().take(5) {
        let prompt = ids(&p["prompt_ids"]);
        // CPU greedy for 64 steps. The GPU takes the prompt through the
        // batched prefill (logits of its last token compared), then runs the
        // first 8 generated steps in lockstep with logits compared (lavapipe
        // is slow: the rest is checked through the greedy tokens).
        cm.reset();
        let mut tok = prompt[0];
        let mut cpu_tokens = Vec::new();
        let steps = prompt.len() + 64 - 1;
        gm.prefill(0, &prompt).expect("prefill");
        for pos in 0..steps {
            if pos < prompt.len() {
                tok = prompt[pos];
            }
            let cl = cm.forward(tok, pos).expect("cpu").to_vec();
            let gl = if pos + 1 == prompt.len() {
                Some(gm.read_logits().expect("logits"))
            } else if pos >= prompt.len() && pos < prompt.len() + 8 {
                Some(gm.forward(tok, pos).expect("gpu"))
            } else {
                None
            };
            if let Some(gl) = gl {
                let rep = compare(&gl, &cl);
                worst = worst.max(rep.rel_err);
                assert!(rep.passes(1e-3), "prompt '{}' pos {pos}: {rep}", p["name"]);
            }
            if pos + 1 >= prompt.len() {
                let mut best = 0;
                for (i, &v) in cl.iter().enumerate() {
                    if v > cl[best] {
                        best = i;
                    }
                }
                tok = best as u32;
                cpu_tokens.push(tok);
            }
        }
        let gpu_tokens = gpu_greedy(&mut gm, &prompt, 64);
        assert_eq!(
            gpu_tokens, cpu_tokens,
            "prompt '{}': GPU vs CPU greedy (Q4_0)",
            p["name"]
        );
    }
    eprintln!("worst logits relative error GPU vs CPU: {worst:.3e}");
}

/// Int8 inputs (ModelOptions::inputs = Int8: int8-input matvecs in decode,
/// quantize_rows + matmul_q8 in the prefill) on the real model, fed the
/// CPU's tokens in lockstep: logits within 0.2 relative of the f32 CPU
/// reference (measured on lavapipe: 2e-2 .. 1.0e-1 over 30 layers, against
/// ≤ 1e-3 with f32 inputs; a broken kernel gives ~1) and the GPU's top token
/// among the CPU's top 5 at every step. Greedy decoding starts from the
/// prefill's top token (on "capital" it is not the CPU's: int8 inputs part
/// from the f32 reference at near-ties).
#[test]
fn gpu_q8_activations_stay_close_to_cpu_reference_q4_0() {
    let g = Gguf::open(common::model_path(common::MODEL_Q4_0)).expect("open");
    let cfg = Config::from_gguf(&g).expect("config");
    let w = Weights::from_gguf(&g, &cfg).expect("weights");
    let w2 = Weights::from_gguf(&g, &cfg).expect("weights");
    let gpu = common::gpu();
    let opts = ModelOptions {
        inputs: Inputs::Int8,
        ..Default::default()
    };
    let mut gm = GpuModel::with_options(&gpu, &cfg, &w, 64, opts).expect("gpu model");
    let mut cm = CpuModel::with_max_positions(cfg.clone(), w2, 64);
    let fx = fixture();
    let mut worst = 0.0f64;
    for p in fx["prompts"].as_array().expect("prompts").iter().take(2) {
        let prompt = ids(&p["prompt_ids"]);
        cm.reset();
        gm.prefill(0, &prompt).expect("prefill");
        let mut tok = prompt[0];
        let mut gpu_first = None;
        for pos in 0..prompt.len() + 8 {
            if pos < prompt.len() {
                tok = prompt[pos];
            }
            let cl = cm.forward(tok, pos).expect("cpu").to_vec();
            let gl = if pos + 1 == prompt.len() {
                Some(gm.read_logits().expect("logits"))
            } else if pos >= prompt.len() {
                Some(gm.forward(tok, pos).expect("gpu"))
            } else {
                None
            };
            if let Some(gl) = gl {
                if pos + 1 == prompt.len() {
                    gpu_first = Some(
                        (0..gl.len()).fold(0, |b, i| if gl[i] > gl[b] { i } else { b }) as u32,
                    );
                }
                let rep = compare(&gl, &cl);
                worst = worst.max(rep.rel_err);
                assert!(rep.passes(0.2), "prompt '{}' pos {pos}: {rep}", p["name"]);
                let top = (0..gl.len()).fold(0, |b, i| if gl[i] > gl[b] { i } else { b });
                let above = cl.iter().filter(|&&v| v > cl[top]).count();
                assert!(
                    above < 5,
                    "prompt '{}' pos {pos}: the GPU's top token is the CPU's #{}",
                    p["name"],
                    above + 1
                );
            }
            if pos + 1 >= prompt.len() {
                tok = (0..cl.len()).fold(0, |b, i| if cl[i] > cl[b] { i } else { b }) as u32;
            }
        }
        let gpu_tokens = gpu_greedy(&mut gm, &prompt, 4);
        assert_eq!(
            Some(gpu_tokens[0]),
            gpu_first,
            "prompt '{}': greedy decoding does not start from the prefill's top token",
            p["name"]
        );
    }
    eprintln!("worst logits relative error, int8 inputs vs CPU f32: {worst:.3e}");
}

/// The real model in llama-quantize's Q4_K_M mix (166 Q5_0, 16 Q4_K, 14
/// Q6_K, 15 Q8_0 tensors, each on its own type's kernels): on two prompts
/// the GPU's prefill logits and 4 lockstep steps within 1e-3 of the CPU
/// reference, and 12 greedy tokens equal (lavapipe is slow; the longer
/// agreement with llama.cpp is in the closing note of issue 17).
#[test]
fn gpu_logits_and_tokens_match_cpu_reference_q4_k_m() {
    let g = Gguf::open(common::model_path(common::MODEL_Q4_K_M)).expect("open");
    let cfg = Config::from_gguf(&g).expect("config");
    let w = Weights::from_gguf(&g, &cfg).expect("weights");
    let types: std::collections::HashSet<_> = w
        .layers
        .iter()
        .flat_map(|l| [l.wq.ty, l.wv.ty, l.w_down.ty])
        .collect();
    assert_eq!(
        types.len(),
        4,
        "Q5_0, Q8_0, Q4_K and Q6_K layers: {types:?}"
    );
    let gpu = common::gpu();
    let mut gm = GpuModel::new(&gpu, &cfg, &w, 64).expect("gpu model");
    let mut cm =
        CpuModel::with_max_positions(cfg.clone(), Weights::from_gguf(&g, &cfg).expect("w"), 64);
    let fx = fixture();
    for p in fx["prompts"].as_array().expect("prompts").iter().take(2) {
        let prompt = ids(&p["prompt_ids"]);
        cm.reset();
        gm.prefill(0, &prompt).expect("prefill");
        let mut tok = prompt[0];
        let mut cpu_tokens = Vec::new();
        for pos in 0..prompt.len() + 11 {
            if pos < prompt.len() {
                tok = prompt[pos];
            }
            let cl = cm.forward(tok, pos).expect("cpu").to_vec();
            let gl = if pos + 1 == prompt.len() {
                Some(gm.read_logits().expect("logits"))
            } else if pos >= prompt.len() && pos < prompt.len() + 4 {
                Some(gm.forward(tok, pos).expect("gpu"))
            } else {
                None
            };
            if let Some(gl) = gl {
                let rep = compare(&gl, &cl);
                assert!(rep.passes(1e-3), "prompt '{}' pos {pos}: {rep}", p["name"]);
            }
            if pos + 1 >= prompt.len() {
                tok = (0..cl.len()).fold(0, |b, i| if cl[i] > cl[b] { i } else { b }) as u32;
                cpu_tokens.push(tok);
            }
        }
        let gpu_tokens = gpu_greedy(&mut gm, &prompt, cpu_tokens.len());
        assert_eq!(
            gpu_tokens, cpu_tokens,
            "prompt '{}': GPU vs CPU greedy (Q4_K_M)",
            p["name"]
        );
    }
}
