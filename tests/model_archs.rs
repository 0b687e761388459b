//! Each architecture against llama.cpp: a two-layer synthetic model with a
//! real model's shapes and metadata (examples/synth.rs, `--arch A --layers 2
//! --vocab 2000 --type q4_0`, seed 42), teacher-forced over 64 ids; the
//! logits of five positions were computed by llama.cpp 0c1e57098 in exact
//! F32 math on the same file (`llama-quantize --allow-requantize in out
//! F32`, then tests/data/llama_logits_ids.cpp: CPU, F32 KV cache, flash
//! attention off, one thread) and kept in tests/data/<name>_logits.bin
//! (5 × 2000 little-endian f32; see tests/data/README.md). The tolerance
//! tells right from wrong: without Llama 3's RoPE factors the CPU logits are
//! off by 2.5e-3 (position 15) to 1.4e-2 (position 63), with Qwen2's RoPE
//! pairs taken as llama's by 7e-2 to 1.2e-1.

mod common;

#[allow(dead_code)]
#[path = "../examples/synth.rs"]
mod synth;

use q4gpu::gguf::GgmlType;
use q4gpu::gpu::compare;
use q4gpu::model::{Arch, CpuModel, GpuModel};
use q4gpu::Model;

const IDS: [u32; 64] = [
    663, 1941, 308, 808, 1333, 98, 148, 1681, 1097, 192, 748, 1193, 118, 1863, 1039, 439, 76, 176,
    888, 856, 143, 492, 185, 1128, 869, 121, 1693, 1158, 253, 1940, 457, 1291, 1284, 1193, 1940,
    126, 1181, 1199, 812, 101, 1999, 452, 95, 1140, 1758, 272, 593, 858, 295, 1107, 241, 1169, 631,
    1147, 1671, 1396, 370, 211, 1191, 1169, 1308, 384, 762, 199,
];
/// Positions whose llama.cpp logits the fixtures hold.
const POSITIONS: [usize; 5] = [0, 15, 31, 47, 63];
const VOCAB: usize = 2000;
/// Relative error per position: the CPU reference lands at ~1e-6 of
/// llama.cpp, the GPU (two-level int8 inputs on the large matrices) at ~1e-4.
const TOL: f64 = 5e-4;

fn reference(fixture: &str) -> Vec<Vec<f32>> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(fixture);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(bytes.len(), POSITIONS.len() * VOCAB * 4, "fixture size");
    bytes
        .chunks_exact(VOCAB * 4)
        .map(|row| {
            row.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
        .collect()
}

/// The synthetic model of `arch` in a temp dir (removed on drop).
struct Synthetic {
    model: Model,
    dir: std::path::PathBuf,
}

impl Drop for Synthetic {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn synthetic(arch: synth::Arch) -> Synthetic {
    let dir = std::env::temp_dir().join(format!("q4gpu-arch-{arch:?}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("model.gguf");
    let mut shape = arch.shape();
    (shape.layers, shape.vocab) = (2, VOCAB);
    let o = synth::SynthOptions {
        shape,
        ty: GgmlType::Q4_0,
        embd: GgmlType::Q8_0,
        mix: None,
        seed: 42,
    };
    synth::write(&o, &path).expect("synth");
    let model = Model::open(&path).expect("open");
    Synthetic { model, dir }
}

/// CPU and GPU decode (and GPU prefill of all 64 ids) against the fixture.
fn check(model: &Model, want: &[Vec<f32>]) {
    let c = &model.config;
    let mut cpu = CpuModel::with_max_positions(c.clone(), model.weights().expect("w"), IDS.len());
    let gpu = common::gpu();
    let w = model.weights().expect("w");
    let mut g = GpuModel::new(&gpu, c, &w, IDS.len()).expect("gpu model");
    let mut next = POSITIONS.iter().zip(want).peekable();
    for (pos, &t) in IDS.iter().enumerate() {
        let cl = cpu.forward(t, pos).expect("cpu forward").to_vec();
        let gl = g.forward(t, pos).expect("gpu forward");
        if let Some((_, reference)) = next.next_if(|(&p, _)| p == pos) {
            let rep = compare(&cl, reference);
            assert!(rep.passes(TOL), "CPU vs llama.cpp, position {pos}: {rep}");
            let rep = compare(&gl, reference);
            assert!(rep.passes(TOL), "GPU vs llama.cpp, position {pos}: {rep}");
        }
    }
    assert!(next.next().is_none());

    // Prefill (the batched RoPE kernel) of the whole sequence: its last
    // position's logits.
    let mut g = GpuModel::new(&gpu, c, &w, IDS.len()).expect("gpu model");
    g.prefill(0, &IDS).expect("prefill");
    let rep = compare(
        &g.read_logits().expect("logits"),
        &want[POSITIONS.len() - 1],
    );
    assert!(
        rep.passes(TOL),
        "GPU prefill vs llama.cpp, position 63: {rep}"
    );
}

/// Llama-3.2-1B's shapes: Llama 3 RoPE frequency factors
/// (`rope_freqs.weight`), the `llama-bpe` vocabulary type.
#[test]
fn llama3_matches_llama_cpp_on_cpu_and_gpu() {
    let s = synthetic(synth::Arch::Llama32_1b);
    let c = &s.model.config;
    let factors = c
        .rope_freq_factors
        .as_ref()
        .expect("rope_freqs.weight read");
    assert_eq!(factors.len(), c.head_dim / 2);
    assert!(factors.contains(&32.0) && factors.contains(&1.0));
    check(&s.model, &reference("llama3_rope_logits.bin"));
}

/// Qwen2.5-0.5B's shapes (architecture `qwen2`): Q/K/V biases, NeoX RoPE.
#[test]
fn qwen2_matches_llama_cpp_on_cpu_and_gpu() {
    let s = synthetic(synth::Arch::Qwen25_05b);
    assert_eq!(s.model.config.arch, Arch::Qwen2);
    let w = s.model.weights().expect("weights");
    assert!(w.layers.iter().all(|l| l.qkv_bias.is_some()));
    check(&s.model, &reference("qwen2_logits.bin"));
}

/// Qwen3-0.6B's shapes (architecture `qwen3`): per-head Q/K RMSNorm before
/// NeoX RoPE, 128-wide heads (q is 2048 wide on a 1024-wide model).
#[test]
fn qwen3_matches_llama_cpp_on_cpu_and_gpu() {
    let s = synthetic(synth::Arch::Qwen3_06b);
    let c = &s.model.config;
    assert_eq!(
        (c.arch, c.head_dim, c.n_heads * c.head_dim, c.dim),
        (Arch::Qwen3, 128, 2048, 1024)
    );
    let w = s.model.weights().expect("weights");
    assert!(w
        .layers
        .iter()
        .all(|l| l.qk_norm.as_ref().is_some_and(|n| n.len() == 256)));
    check(&s.model, &reference("qwen3_logits.bin"));
}
