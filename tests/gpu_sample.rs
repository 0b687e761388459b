//! The GPU sampler (`gpu::GpuSampler`: repeat penalty → top-k → top-p →
//! min-p → temperature → draw) against the CPU `Sampler` on the same logits
//! and the same draw: vocabularies around the kernel's 1024-logit span and a
//! real one, logits with many exact ties, NaN, −∞ and +∞, settings from
//! greedy-with-penalty to top-k 256, and a multi-step run where the GPU keeps
//! the penalty window itself. A different token is accepted only for logits
//! with many exact ties, where the draw or a cut lies within 1e-4 of a
//! boundary (f32 sums on the GPU, f64 and f32 on the CPU), and such
//! near-ties must stay rare.

mod common;

use common::Rng;
use q4gpu::gpu::{read_u32, Gpu, GpuSampler};
use q4gpu::sampling::{Sampler, SamplerConfig};

/// The buffers a decode step gives the sampler, and the sampler over them.
struct Rig {
    gpu: Gpu,
    logits: wgpu::Buffer,
    step: wgpu::Buffer,
    tok: wgpu::Buffer,
    sampler: GpuSampler,
}

fn rig(gpu: &Gpu, vocab: usize, positions: usize) -> Rig {
    let usage = wgpu::BufferUsages::COPY_SRC;
    let logits = gpu
        .storage("logits", vocab as u64 * 4, usage)
        .expect("logits");
    let step = gpu.storage("step", 16, usage).expect("step");
    let tok = gpu.storage("tok", 16, usage).expect("tok");
    let sampler = GpuSampler::new(gpu, &logits, vocab, &step, &tok, positions).expect("sampler");
    Rig {
        gpu: gpu.clone(),
        logits,
        step,
        tok,
        sampler,
    }
}

impl Rig {
    /// One sampling pass over `logits` at position `pos` with draw `u`; the
    /// token buffer is poisoned first.
    fn sample(&self, logits: &[f32], pos: usize, u: f32) -> u32 {
        let q = &self.gpu.queue;
        q.write_buffer(&self.logits, 0, bytemuck::cast_slice(logits));
        q.write_buffer(
            &self.step,
            0,
            bytemuck::cast_slice(&[pos as u32, u.to_bits(), 0, 0]),
        );
        q.write_buffer(&self.tok, 0, bytemuck::cast_slice(&[u32::MAX; 4]));
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            self.sampler.encode(&mut pass);
        }
        q.submit([enc.finish()]);
        read_u32(&self.gpu, &self.tok, 0, 1).expect("readback")[0]
    }
}

/// The CPU sampler's choice for draw `u` (as `Sampler::sample` walks).
fn cpu_choice(cfg: &SamplerConfig, logits: &[f32], recent: &[u32], u: f64) -> u32 {
    let s = Sampler::new(*cfg);
    let dist = s.distribution(logits, recent);
    if s.is_greedy() || dist.len() <= 1 {
        return dist.first().map_or(0, |d| d.0);
    }
    let mut cum = 0.0f64;
    for &(id, p) in &dist {
        cum += f64::from(p);
        if u < cum {
            return id;
        }
    }
    dist.last().map_or(0, |d| d.0)
}

/// Whether `got` is what the CPU picks with the draw or a cut moved by at
/// most 1e-4 (a near-tie, not a wrong token).
fn near_tie(cfg: &SamplerConfig, logits: &[f32], recent: &[u32], u: f64, got: u32) -> bool {
    let eps = 1e-4;
    let nudged = |top_p: f32, min_p: f32| SamplerConfig {
        top_p,
        min_p,
        ..*cfg
    };
    let (p, m) = (cfg.top_p, cfg.min_p);
    let cfgs = [
        nudged(p, m),
        nudged(p + eps, m),
        nudged(p - eps, m),
        nudged(p, m + eps),
        nudged(p, (m - eps).max(0.0)),
    ];
    cfgs.iter().any(|c| {
        [u - 1e-4, u, u + 1e-4]
            .iter()
            .any(|&v| cpu_choice(c, logits, recent, v.clamp(0.0, 1.0 - 1e-12)) == got)
    })
}

/// Logits of one of several kinds: spread out, coarse (many exact ties),
/// with NaN and −∞ holes, or with two +∞.
fn logits(rng: &mut Rng, n: usize, kind: usize) -> Vec<f32> {
    let scale = 1.0 + (rng.next() % 8) as f32;
    let mut v: Vec<f32> = rng.vec(n).iter().map(|x| x * scale).collect();
    match kind {
        1 => v.iter_mut().for_each(|x| *x = (*x * 2.0).round() / 2.0),
        2 => {
            for (i, x) in v.iter_mut().enumerate() {
                match i % 7 {
                    3 => *x = f32::NAN,
                    5 => *x = f32::NEG_INFINITY,
                    _ => {}
                }
            }
        }
        3 => {
            v[rng.next() as usize % n] = f32::INFINITY;
            v[rng.next() as usize % n] = f32::INFINITY;
        }
        _ => {}
    }
    v
}

fn settings() -> Vec<SamplerConfig> {
    let base = SamplerConfig {
        repeat_last_n: 0,
        ..SamplerConfig::default()
    };
    vec![
        // The CLI defaults: T 0.8, top-k 40, top-p 0.95, min-p 0.05.
        SamplerConfig::default(),
        SamplerConfig {
            temperature: 1.0,
            top_k: 256,
            top_p: 1.0,
            min_p: 0.0,
            ..base
        },
        SamplerConfig {
            temperature: 0.5,
            top_k: 5,
            top_p: 0.5,
            min_p: 0.3,
            ..base
        },
        SamplerConfig {
            temperature: 1.5,
            top_k: 100,
            top_p: 0.9,
            min_p: 0.0,
            repeat_penalty: 1.3,
            repeat_last_n: 8,
            ..base
        },
        SamplerConfig {
            repeat_penalty: 1.5,
            repeat_last_n: 64,
            ..SamplerConfig::greedy()
        },
        SamplerConfig { top_k: 1, ..base },
        // Keep all: on the GPU only where the vocabulary fits one top-k.
        SamplerConfig {
            top_k: 0,
            top_p: 0.8,
            ..base
        },
    ]
}

#[test]
fn gpu_sampler_picks_the_cpu_samplers_token() {
    let gpu = common::gpu();
    let mut rng = Rng(0x5A3);
    let (mut trials, mut ties) = (0usize, 0usize);
    let mut bad = Vec::new();
    for vocab in [5usize, 300, 1024, 1500, 49152 + 37] {
        let r = rig(&gpu, vocab, 64);
        for cfg in settings() {
            if !r.sampler.supports(&cfg) {
                assert!(
                    cfg.top_k == 0 && vocab > 256,
                    "{cfg:?} over {vocab} unsupported"
                );
                continue;
            }
            for kind in 0..4 {
                for _ in 0..2 {
                    let l = logits(&mut rng, vocab, kind);
                    let recent: Vec<u32> = (0..1 + rng.next() % 40)
                        .map(|_| (rng.next() % vocab as u64) as u32)
                        .collect();
                    r.sampler.configure(&gpu, &cfg, &recent).expect("configure");
                    let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
                    let got = r.sample(&l, recent.len() - 1, u as f32);
                    let want = cpu_choice(&cfg, &l, &recent, u);
                    trials += 1;
                    if got != want {
                        // Near-ties only where many logits are exactly
                        // equal: 40 tied candidates put a top-p cut exactly
                        // on 0.95, which f32 sums decide either way.
                        if kind == 1 && near_tie(&cfg, &l, &recent, u, got) {
                            ties += 1;
                        } else {
                            bad.push(format!(
                                "vocab {vocab}, logits kind {kind}, {cfg:?}, u {u}: GPU {got}, CPU {want}"
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {trials} differ:\n{}",
        bad.len(),
        bad.join("\n")
    );
    assert!(ties * 25 <= trials, "{ties} near-ties in {trials} trials");
    eprintln!("{trials} trials, {ties} near-ties");
}

/// Several steps in a row with the GPU keeping the history and the penalty
/// window's counts itself (as in decoding): the same tokens as the CPU
/// sampler fed the same draws, and the penalty must change them.
#[test]
fn gpu_sampler_keeps_the_penalty_window_across_steps() {
    let gpu = common::gpu();
    let vocab = 1500;
    let r = rig(&gpu, vocab, 128);
    let mut rng = Rng(0x77);
    // A few strong tokens, so an unpenalized run repeats them.
    let mut l: Vec<f32> = rng.vec(vocab);
    for (i, id) in [17usize, 400, 1499, 1024].iter().enumerate() {
        l[*id] = 6.0 - i as f32 * 0.1;
    }
    let mut runs = Vec::new();
    for (penalty, last_n) in [(1.0f32, 0usize), (3.0, 4), (3.0, 64)] {
        let cfg = SamplerConfig {
            temperature: 0.3,
            top_k: 8,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: penalty,
            repeat_last_n: last_n,
            seed: 9,
        };
        let mut recent: Vec<u32> = vec![17, 3, 400, 17];
        r.sampler.configure(&gpu, &cfg, &recent).expect("configure");
        let mut draws = Sampler::new(cfg);
        let mut cpu = Sampler::new(cfg);
        let mut ids = Vec::new();
        for _ in 0..24 {
            let u = draws.next_draw();
            let got = r.sample(&l, recent.len() - 1, u as f32);
            let want = cpu.sample(&l, &recent);
            assert_eq!(got, want, "penalty {penalty} over {last_n}, after {ids:?}");
            ids.push(got);
            recent.push(got);
        }
        runs.push(ids);
    }
    assert_ne!(runs[0], runs[1], "the penalty changed nothing");
    assert_ne!(runs[1], runs[2], "the window length changed nothing");
}

/// Settings the GPU does not cover are refused by `configure` with a
/// message naming them; out-of-vocabulary history ids are refused too.
#[test]
fn gpu_sampler_refuses_what_it_cannot_do() {
    let gpu = common::gpu();
    let r = rig(&gpu, 1500, 16);
    let all = SamplerConfig {
        top_k: 0,
        ..SamplerConfig::default()
    };
    let e = r.sampler.configure(&gpu, &all, &[1]).expect_err("top-k 0");
    assert!(e.to_string().contains("top-k"), "{e}");
    let e = r
        .sampler
        .configure(&gpu, &SamplerConfig::default(), &[1500])
        .expect_err("id past the vocabulary");
    assert!(e.to_string().contains("1500"), "{e}");
    let long = vec![1u32; 40];
    let e = r
        .sampler
        .configure(&gpu, &SamplerConfig::default(), &long)
        .expect_err("history too long");
    assert!(e.to_string().contains("history"), "{e}");
}
