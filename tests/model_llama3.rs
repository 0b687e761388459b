//! Llama 3.x RoPE (`rope_freqs.weight` frequency factors) against llama.cpp:
//! a two-layer synthetic model with Llama-3.2-1B's shapes, metadata and
//! RoPE factors (examples/synth.rs, `--arch llama-3.2-1b --layers 2
//! --vocab 2000 --type q4_0`, seed 42), teacher-forced over 64 ids; the
//! logits of five positions were computed by llama.cpp 0c1e57098 in exact
//! F32 math on the same file (`llama-quantize --allow-requantize in out
//! F32`, then tests/data/llama_logits_ids.cpp: CPU, F32 KV cache, flash
//! attention off, one thread) and kept in tests/data/llama3_rope_logits.bin
//! (5 × 2000 little-endian f32). Without the factors the CPU logits are off
//! by 2.5e-3 (position 15) to 1.4e-2 (position 63), so the tolerance below
//! tells the two apart.

mod common;

#[allow(dead_code)]
#[path = "../examples/synth.rs"]
mod synth;

use q4gpu::gguf::GgmlType;
use q4gpu::gpu::compare;
use q4gpu::model::{CpuModel, GpuModel};
use q4gpu::Model;

const IDS: [u32; 64] = [
    663, 1941, 308, 808, 1333, 98, 148, 1681, 1097, 192, 748, 1193, 118, 1863, 1039, 439, 76, 176,
    888, 856, 143, 492, 185, 1128, 869, 121, 1693, 1158, 253, 1940, 457, 1291, 1284, 1193, 1940,
    126, 1181, 1199, 812, 101, 1999, 452, 95, 1140, 1758, 272, 593, 858, 295, 1107, 241, 1169, 631,
    1147, 1671, 1396, 370, 211, 1191, 1169, 1308, 384, 762, 199,
];
/// Positions whose llama.cpp logits the fixture holds.
const POSITIONS: [usize; 5] = [0, 15, 31, 47, 63];
const VOCAB: usize = 2000;
/// Relative error per position: the CPU reference lands at ~1e-6 of
/// llama.cpp, the GPU (two-level int8 inputs on the large matrices) at ~1e-4.
const TOL: f64 = 5e-4;

fn reference() -> Vec<Vec<f32>> {
    let p =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/llama3_rope_logits.bin");
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

fn model_file() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("q4gpu-llama3-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("llama3.gguf");
    let mut shape = synth::Arch::Llama32_1b.shape();
    (shape.layers, shape.vocab) = (2, VOCAB);
    let o = synth::SynthOptions {
        shape,
        ty: GgmlType::Q4_0,
        embd: GgmlType::Q8_0,
        mix: None,
        seed: 42,
    };
    synth::write(&o, &path).expect("synth");
    path
}

#[test]
fn llama3_rope_factors_match_llama_cpp_on_cpu_and_gpu() {
    let want = reference();
    let path = model_file();
    let model = Model::open(&path).expect("open");
    let c = &model.config;
    let factors = c
        .rope_freq_factors
        .as_ref()
        .expect("rope_freqs.weight read");
    assert_eq!(factors.len(), c.head_dim / 2);
    assert!(factors.contains(&32.0) && factors.contains(&1.0));

    let mut cpu = CpuModel::with_max_positions(c.clone(), model.weights().expect("w"), IDS.len());
    let gpu = common::gpu();
    let w = model.weights().expect("w");
    let mut g = GpuModel::new(&gpu, c, &w, IDS.len()).expect("gpu model");
    let mut next = POSITIONS.iter().zip(&want).peekable();
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
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}
