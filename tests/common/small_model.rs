//! A small synthetic model for the GPU tests that run a whole model: two
//! layers of an architecture's real shapes, vocabulary 700, written by the
//! `synth` example to a temp file and opened. Include with
//! `#[path = "common/small_model.rs"] mod small_model;` (tests that need no
//! model then do not compile the generator), under `#[allow(dead_code)]`.

#[path = "../../examples/synth.rs"]
pub mod synth;

use q4gpu::gguf::GgmlType;
use q4gpu::quant::convert::Mix;

/// The model of `arch`'s shapes with weights of `ty` (or `mix`), a Q8_0
/// embedding and random weights from `seed`; `tag` keeps concurrent tests'
/// files apart.
pub fn small_model(
    tag: &str,
    arch: synth::Arch,
    ty: GgmlType,
    mix: Option<Mix>,
    seed: u64,
) -> q4gpu::Model {
    let dir = std::env::temp_dir().join(format!("q4gpu-small-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("model.gguf");
    let mut shape = arch.shape();
    (shape.layers, shape.vocab) = (2, 700);
    let o = synth::SynthOptions {
        shape,
        ty,
        embd: GgmlType::Q8_0,
        mix,
        seed,
    };
    synth::write(&o, &path).expect("synth");
    let m = q4gpu::Model::open(&path).expect("open");
    // The model holds what it needs; the file may go.
    let _ = std::fs::remove_dir_all(&dir);
    m
}

/// The SmolLM2-shaped Q4_0 model most tests use.
pub fn smollm2_q4_0(tag: &str, seed: u64) -> q4gpu::Model {
    small_model(tag, synth::Arch::Smollm2_135m, GgmlType::Q4_0, None, seed)
}
