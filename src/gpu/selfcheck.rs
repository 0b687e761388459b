//! The kernel self-check (issue 19): on the MSL path, Apple's compiler is
//! the first to see the hand-written MSL twins, and a mistake there would
//! show up only as wrong text. So, when a model is loaded, the launches of
//! a short prefill chunk and of one decode step are captured
//! ([`super::matvec::capture`]) and replayed: once as built, once with every
//! *suspect* variant (built from an MSL twin, or from a `shader_dir`
//! replacement) on its pipeline built from the embedded WGSL, the kernels
//! every backend's tests check against the CPU reference. Equal outputs end
//! the check. Otherwise each suspect variant is tried alone among
//! references, and those that change the outputs are replaced for good: every
//! [`super::matvec::Dispatch`] of the variant records the reference
//! pipeline from then on, and [`Gpu::msl_fallbacks`] lists it.
//!
//! The reference is the WGSL twin, not the CPU model: a CPU forward of a
//! billion-parameter model takes seconds, one GPU replay milliseconds.
//! Replays are exact repeats because every captured sequence overwrites
//! what it reads later (the embedding writes the residual stream first, the
//! KV cache rows of the replayed positions are rewritten with equal values).

use std::collections::{BTreeMap, BTreeSet};

use super::matvec::Captured;
use super::readback::read_u32;
use super::{Gpu, GpuError, KernelSpec};
use crate::clock::Stopwatch;

/// Largest relative difference (max |a − b| / max |b| over an output)
/// between a suspect build and the reference that still passes. The
/// twins reduce in the same order, so real differences are rounding
/// (≈ 1e-6 per kernel, ≈ 1e-4 through a model); a wrong index, mask or
/// barrier moves outputs by tens of percent.
pub const TOLERANCE: f32 = 1e-2;

/// What [`check`]s found.
#[derive(Debug, Clone, Default)]
pub struct KernelCheck {
    /// Suspect variants run against their reference.
    pub checked: BTreeSet<String>,
    /// Variants that failed and now run their reference: (variant, relative
    /// difference of the outputs with it alone suspect; infinite for NaN).
    pub replaced: Vec<(String, f32)>,
    /// Replays run (each one captured sequence, start to end).
    pub replays: usize,
    /// Wall time of the check, ms (0 where the platform has no clock).
    pub ms: f64,
    /// The part of `ms` spent building the reference pipelines.
    pub reference_ms: f64,
}

/// An output a captured sequence writes: the buffer, its number of 32-bit
/// words from the start, and whether they are f32 (else compared exactly).
pub struct Output<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub words: usize,
    pub float: bool,
}

impl<'a> Output<'a> {
    /// `words` f32 values from the start of `buffer`.
    pub fn floats(buffer: &'a wgpu::Buffer, words: usize) -> Self {
        Output {
            buffer,
            words,
            float: true,
        }
    }

    /// `words` u32 values from the start of `buffer`, compared exactly.
    pub fn exact(buffer: &'a wgpu::Buffer, words: usize) -> Self {
        Output {
            buffer,
            words,
            float: false,
        }
    }
}

/// Checks the suspect variants among `launches` (one captured sequence
/// whose results are `outputs`), replacing those that fail; adds what it
/// did to `report`.
pub fn check(
    gpu: &Gpu,
    launches: &[Captured],
    outputs: &[Output<'_>],
    report: &mut KernelCheck,
) -> Result<(), GpuError> {
    let clock = Stopwatch::start();
    let mut first = BTreeMap::new();
    for l in launches {
        if gpu.is_suspect(&l.kernel.name) {
            first.entry(l.kernel.name.clone()).or_insert(l);
        }
    }
    if first.is_empty() {
        return Ok(());
    }
    let references = references(gpu, first.into_iter().collect())?;
    report.reference_ms += clock.secs() * 1e3;
    report.checked.extend(references.keys().cloned());
    // `as_built`: none of the suspects on its reference, or only this one.
    let run = |as_built: Option<&str>, report: &mut KernelCheck| {
        report.replays += 1;
        replay(gpu, launches, outputs, |l| {
            let name = l.kernel.name.as_str();
            match references.get(name) {
                Some(r) if as_built.is_some_and(|b| b != name) => r,
                _ => &l.pipeline,
            }
        })
    };
    let want = run(Some(""), report)?;
    let built = run(None, report)?;
    if difference(&built, &want, outputs) <= TOLERANCE {
        report.ms += clock.secs() * 1e3;
        return Ok(());
    }
    let mut bad = Vec::new();
    for name in references.keys() {
        let got = run(Some(name), report)?;
        let d = difference(&got, &want, outputs);
        if d > TOLERANCE {
            bad.push((name.clone(), d));
        }
    }
    // Outputs differ but no variant alone makes them: replace them all.
    if bad.is_empty() {
        let d = difference(&built, &want, outputs);
        bad = references.keys().map(|n| (n.clone(), d)).collect();
    }
    for (name, d) in &bad {
        if let (Some(slot), Some(r)) = (gpu.replacement_slot(name), references.get(name)) {
            let _ = slot.set(r.clone());
        }
        gpu.note_replaced(format!(
            "{name}: self-check: outputs differ from its embedded WGSL by {d:.2e} (relative)"
        ));
    }
    report.replaced.extend(bad);
    report.ms += clock.secs() * 1e3;
    Ok(())
}

/// Each launch's variant built from the embedded WGSL, by variant name (on
/// wasm32 one after another: there wgpu's objects are neither `Send` nor
/// `Sync`, so the threaded version below does not compile).
#[cfg(target_arch = "wasm32")]
fn references(
    gpu: &Gpu,
    launches: Vec<(String, &Captured)>,
) -> Result<BTreeMap<String, wgpu::ComputePipeline>, GpuError> {
    launches
        .into_iter()
        .map(|(n, l)| Ok((n, reference(gpu, l)?)))
        .collect()
}

/// Each launch's variant built from the embedded WGSL, on as many threads
/// as the host has cores (each build is a shader compile; Metal compiles in
/// parallel), by variant name.
#[cfg(not(target_arch = "wasm32"))]
fn references(
    gpu: &Gpu,
    launches: Vec<(String, &Captured)>,
) -> Result<BTreeMap<String, wgpu::ComputePipeline>, GpuError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = launches.len().div_ceil(threads.min(launches.len()));
    std::thread::scope(|s| {
        let jobs: Vec<_> = launches
            .chunks(per)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|(n, l)| Ok((n.clone(), reference(gpu, l)?)))
                        .collect::<Result<Vec<_>, GpuError>>()
                })
            })
            .collect();
        let mut all = BTreeMap::new();
        for j in jobs {
            let built = j.join().map_err(|_| GpuError::Shader {
                name: "self-check".into(),
                message: "a reference build panicked".into(),
            })??;
            all.extend(built);
        }
        Ok(all)
    })
}

/// The launch's variant built from the embedded WGSL.
fn reference(gpu: &Gpu, l: &Captured) -> Result<wgpu::ComputePipeline, GpuError> {
    let k = &l.kernel;
    // A COOP matmul's reference is its f32 variant: the same bindings,
    // grid and partials, products in f32.
    let flags: Vec<&str> = k
        .flags
        .iter()
        .map(String::as_str)
        .filter(|f| *f != super::prefill::COOP)
        .collect();
    let consts: Vec<(&str, u32)> = k.consts.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    let spec = KernelSpec {
        file: &k.file,
        flags: &flags,
        consts: &consts,
        bindings: &k.bindings,
        workgroup_size: k.workgroup_size,
    };
    gpu.reference_pipeline(&k.name, &spec)
}

/// Runs `launches` in order, each with the pipeline `pick` gives, in one
/// submission, and reads `outputs` back (as words).
fn replay<'p>(
    gpu: &Gpu,
    launches: &'p [Captured],
    outputs: &[Output<'_>],
    pick: impl Fn(&'p Captured) -> &'p wgpu::ComputePipeline,
) -> Result<Vec<Vec<u32>>, GpuError> {
    gpu.submit_pass("q4gpu self-check replay", |pass| {
        for l in launches {
            l.encode_with(pass, pick(l));
        }
    });
    outputs
        .iter()
        .map(|o| read_u32(gpu, o.buffer, 0, o.words))
        .collect()
}

/// The largest relative difference of `got` from `want` over the outputs:
/// max |a − b| / max |b| per f32 output (infinite where `got` has a NaN or
/// infinity `want` lacks), 0 or infinite for exact ones.
fn difference(got: &[Vec<u32>], want: &[Vec<u32>], outputs: &[Output<'_>]) -> f32 {
    let mut worst = 0f32;
    for ((g, w), o) in got.iter().zip(want).zip(outputs) {
        let d = if o.float {
            let (mut err, mut scale) = (0f32, 0f32);
            for (a, b) in g.iter().zip(w) {
                let (a, b) = (f32::from_bits(*a), f32::from_bits(*b));
                if a.is_finite() != b.is_finite() {
                    err = f32::INFINITY;
                } else if b.is_finite() {
                    err = err.max((a - b).abs());
                    scale = scale.max(b.abs());
                }
            }
            if err == 0.0 {
                0.0
            } else {
                err / scale.max(f32::MIN_POSITIVE)
            }
        } else if g == w {
            0.0
        } else {
            f32::INFINITY
        };
        worst = worst.max(d);
    }
    worst
}
