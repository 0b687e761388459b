//! Helpers shared by the integration tests: locating (and fetching once) the
//! real model, creating the test GPU.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The model as shipped (Q4_1 weights, Q8_0 tied embedding).
pub const MODEL_Q4_1: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The crate's own Q4_0 requantization of it (made by scripts/fetch_model.sh).
pub const MODEL_Q4_0: &str = "SmolLM2-135M-Instruct.Q4_0.gguf";

/// Path of `models/<file>`, running `scripts/fetch_model.sh` once per machine
/// if it is absent. Fails (never skips) if it cannot be obtained.
pub fn model_path(file: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("models").join(file);
    if !path.exists() {
        let script = root.join("scripts").join("fetch_model.sh");
        let status = Command::new("bash")
            .arg(&script)
            .current_dir(&root)
            .status()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(status.success(), "{} failed: {status}", script.display());
        assert!(
            path.exists(),
            "{} still missing after fetch",
            path.display()
        );
    }
    path
}

/// The test GPU (on CI: lavapipe). No adapter is a test failure.
pub fn gpu() -> q4gpu::gpu::Gpu {
    q4gpu::gpu::Gpu::new(&q4gpu::gpu::GpuOptions::from_env())
        .unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"))
}
