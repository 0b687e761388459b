//! The kernel self-check at load (issue 19, item 4): kernels built from
//! anything but the embedded WGSL (the MSL twins on Metal; here, a
//! `shader_dir` of replaced sources, the one way to get such kernels off a
//! Mac) are replayed against the embedded WGSL when a model loads, and the
//! ones that change the outputs are replaced. Needs: any adapter (lavapipe
//! on CI), no subgroups, no optional features.

mod common;
#[allow(dead_code)]
#[path = "common/small_model.rs"]
mod small_model;

use q4gpu::model::{GpuModel, ModelOptions};

/// A two-layer SmolLM2-shaped Q4_0 model (vocabulary 700).
fn small_model(tag: &str) -> q4gpu::Model {
    small_model::smollm2_q4_0(&format!("check-{tag}"), 5)
}

/// A device whose kernels come from a folder holding `block_q4_0.wgsl`,
/// with `from` replaced by `to` (no change when they are equal).
fn device_with_q4_0(tag: &str, from: &str, to: &str) -> q4gpu::Gpu {
    let dir = std::env::temp_dir().join(format!("q4check-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let text = q4gpu::gpu::shader::Sources::embedded()
        .get(q4gpu::gpu::shader::Lang::Wgsl, "block_q4_0")
        .expect("block_q4_0.wgsl")
        .to_string();
    assert!(text.contains(from), "block_q4_0.wgsl lacks `{from}`");
    std::fs::write(dir.join("block_q4_0.wgsl"), text.replacen(from, to, 1)).expect("write");
    let mut opts = common::device_options();
    opts.shader_dir = Some(dir.clone());
    let gpu = q4gpu::Gpu::new(&opts).expect("gpu");
    let _ = std::fs::remove_dir_all(&dir);
    gpu
}

/// Greedy ids after a fixed prompt, and the model's self-check report.
fn decode(
    gpu: &q4gpu::Gpu,
    model: &q4gpu::Model,
    check: Option<bool>,
) -> (Vec<u32>, q4gpu::gpu::selfcheck::KernelCheck) {
    let w = model.weights().expect("weights");
    let opts = ModelOptions {
        kernel_check: check,
        ..ModelOptions::default()
    };
    let mut m = GpuModel::with_options(gpu, &model.config, &w, 64, opts).expect("model");
    m.prefill(0, &[5, 17, 42, 99, 3]).expect("prefill");
    let mut ids = Vec::new();
    m.generate_greedy(0, 5, 8, |id| {
        ids.push(id);
        true
    })
    .expect("decode");
    (ids, m.kernel_check().clone())
}

// The Q4_0 dot with every block's scale doubled: what a wrong scale offset
// in an MSL twin would do.
const SCALE: &str = "return k.d * (dot(lo, Q4_LO_SCALE) + dot(hi, Q4_HI_SCALE));";
const SCALE_WRONG: &str = "return 2.0 * k.d * (dot(lo, Q4_LO_SCALE) + dot(hi, Q4_HI_SCALE));";

#[test]
fn the_embedded_kernels_are_not_checked() {
    let model = small_model("plain");
    let (_, report) = decode(&common::gpu(), &model, None);
    assert!(
        report.checked.is_empty() && report.replays == 0,
        "{report:?}"
    );
}

#[test]
fn unchanged_replacements_pass_the_check() {
    let model = small_model("same");
    let (want, _) = decode(&common::gpu(), &model, None);
    let gpu = device_with_q4_0("same", SCALE, SCALE);
    let (ids, report) = decode(&gpu, &model, None);
    eprintln!(
        "self-check: {} variants, {} replays, {:.0} ms ({:.0} ms building references)",
        report.checked.len(),
        report.replays,
        report.ms,
        report.reference_ms
    );
    assert!(report.checked.len() >= 8, "{report:?}");
    assert!(report.replaced.is_empty(), "false alarm: {report:?}");
    assert_eq!(ids, want);
    assert!(gpu.msl_fallbacks().1.is_empty());
}

#[test]
fn a_broken_kernel_is_found_and_replaced() {
    let model = small_model("broken");
    let (want, _) = decode(&common::gpu(), &model, None);
    // Unchecked, the broken kernel changes the text (the mutation matters).
    let gpu = device_with_q4_0("broken-off", SCALE, SCALE_WRONG);
    let (ids, report) = decode(&gpu, &model, Some(false));
    assert!(report.checked.is_empty());
    assert_ne!(ids, want, "the doubled scale did not change the ids");
    // Checked, the variants that use the Q4_0 dot are replaced, no others,
    // and the ids are the embedded kernels' again.
    let gpu = device_with_q4_0("broken", SCALE, SCALE_WRONG);
    let (ids, report) = decode(&gpu, &model, None);
    eprintln!("{report:#?}");
    assert!(!report.replaced.is_empty());
    for (name, d) in &report.replaced {
        assert!(name.contains("q4_0"), "{name} replaced (difference {d})");
        assert!(*d > 0.1, "{name}: difference {d}");
    }
    let listed = gpu.msl_fallbacks().1;
    assert_eq!(listed.len(), report.replaced.len(), "{listed:#?}");
    assert!(listed.iter().all(|l| l.contains("self-check")));
    assert_eq!(ids, want);
}

/// The check fits any context: with one position, the decode step rewrites
/// the chunk's position instead of following it.
#[test]
fn a_one_position_context_is_checked_too() {
    let model = small_model("one");
    let gpu = device_with_q4_0("one", SCALE, SCALE);
    let w = model.weights().expect("weights");
    let m = GpuModel::with_options(&gpu, &model.config, &w, 1, ModelOptions::default())
        .expect("model with one position");
    let report = m.kernel_check();
    assert!(
        report.checked.len() >= 8 && report.replaced.is_empty(),
        "{report:?}"
    );
}
