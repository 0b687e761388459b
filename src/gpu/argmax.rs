//! Greedy sampling on the GPU (`argmax.wgsl` ↔ `argmax.metal`): the id of
//! the largest logit, ties to the lowest index, NaN never wins, written where
//! the next step's embedding lookup reads it.

use super::matvec::Dispatch;
use super::shader::ArgmaxParams;
use super::KernelSpec;
use super::{Gpu, GpuError};

/// Logits per workgroup of the first pass (256 threads × 8 loads).
pub const ARGMAX_SPAN: u32 = 2048;

/// Storage bindings of every argmax variant: the values read, the result.
const BINDINGS: &[bool] = &[true, false];

/// The argmax of `n` logits into `tok[0]`: one workgroup when `n` fits one
/// span, else a pass with one workgroup per [`ARGMAX_SPAN`] logits writing
/// (value, index) pairs and a one-workgroup pass over the pairs. A single
/// workgroup over SmolLM2's 49,152 logits took ~15 µs on an H100.
pub struct Argmax {
    passes: Vec<Dispatch>,
    /// The first pass's (value bits, index) pairs, kept alive for its bind groups.
    _parts: Option<wgpu::Buffer>,
}

impl Argmax {
    /// The pairs buffer and bind groups, created once; the pipelines
    /// (variants `argmax`, or `argmax.part` and `argmax.final`) come from
    /// the device's cache.
    pub fn new(
        gpu: &Gpu,
        logits: &wgpu::Buffer,
        n: usize,
        tok: &wgpu::Buffer,
    ) -> Result<Argmax, GpuError> {
        // One PART workgroup per span along x only: at most 65535 of them.
        const MAX_LOGITS: u64 = 65535 * ARGMAX_SPAN as u64;
        if n == 0 || n as u64 > MAX_LOGITS || n as u64 * 4 > logits.size() {
            return Err(GpuError::BadArgument(format!(
                "argmax of {n} logits in a {}-byte buffer (1 to {MAX_LOGITS} logits)",
                logits.size()
            )));
        }
        let n = n as u32;
        let params = |n, span| ArgmaxParams {
            n,
            span,
            total: n,
            pad0: 0,
        };
        if n <= ARGMAX_SPAN {
            let s = KernelSpec::new("argmax", &[], BINDINGS);
            let d = Dispatch::launch(gpu, "argmax", &s, &params(n, n), &[logits, tok], 1)?;
            return Ok(Argmax {
                passes: vec![d],
                _parts: None,
            });
        }
        let groups = n.div_ceil(ARGMAX_SPAN);
        let parts = gpu.storage(
            "argmax pairs",
            groups as u64 * 8,
            wgpu::BufferUsages::empty(),
        )?;
        let s = KernelSpec::new("argmax", &["PART"], BINDINGS);
        let part = Dispatch::launch(
            gpu,
            "argmax.part",
            &s,
            &params(n, ARGMAX_SPAN),
            &[logits, &parts],
            groups,
        )?;
        let fin_params = ArgmaxParams {
            n: groups,
            span: 0,
            total: n,
            pad0: 0,
        };
        let s = KernelSpec::new("argmax", &["FINAL"], BINDINGS);
        let fin = Dispatch::launch(gpu, "argmax.final", &s, &fin_params, &[&parts, tok], 1)?;
        Ok(Argmax {
            passes: vec![part, fin],
            _parts: Some(parts),
        })
    }

    /// Records the pass(es) into `pass`. Allocates nothing.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        for d in &self.passes {
            d.encode(pass);
        }
    }

    /// Dispatches per call: 1 or 2.
    pub fn dispatches(&self) -> usize {
        self.passes.len()
    }
}
