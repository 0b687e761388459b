//! Sampler behaviour: greedy is argmax, seeds reproduce, draws follow the
//! softmax, and each filter (top-k, top-p, min-p, repeat penalty) keeps
//! exactly what llama.cpp's definition keeps. Bad logits never panic.

use q4gpu::sampling::{Sampler, SamplerConfig};

/// Deterministic pseudo-random logits for tests (an LCG independent of the sampler).
fn logits(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 10.0 - 5.0
        })
        .collect()
}

fn naive_argmax(l: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in l.iter().enumerate() {
        if x > l[best] {
            best = i;
        }
    }
    best as u32
}

/// All filters off, temperature 1: draws follow softmax(logits).
fn plain(seed: u64) -> SamplerConfig {
    SamplerConfig {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repeat_penalty: 1.0,
        repeat_last_n: 64,
        seed,
    }
}

fn ln(p: &[f64]) -> Vec<f32> {
    p.iter().map(|&x| x.ln() as f32).collect()
}

fn frequencies(s: &mut Sampler, l: &[f32], draws: usize) -> Vec<f64> {
    let mut counts = vec![0usize; l.len()];
    for _ in 0..draws {
        counts[s.sample(l, &[]) as usize] += 1;
    }
    counts.iter().map(|&c| c as f64 / draws as f64).collect()
}

/// Pearson chi-square statistic of `freq` (over `draws`) against `expected`.
fn chi_square(freq: &[f64], expected: &[f64], draws: usize) -> f64 {
    freq.iter()
        .zip(expected)
        .map(|(f, e)| {
            let (o, e) = (f * draws as f64, e * draws as f64);
            (o - e) * (o - e) / e
        })
        .sum()
}

#[test]
fn defaults_are_llama_cpp_cli_defaults() {
    let d = SamplerConfig::default();
    assert_eq!(
        (
            d.temperature,
            d.top_k,
            d.top_p,
            d.min_p,
            d.repeat_penalty,
            d.repeat_last_n
        ),
        (0.8, 40, 0.95, 0.05, 1.0, 64)
    );
    assert!(!Sampler::new(d).is_greedy());
    assert!(Sampler::new(SamplerConfig::greedy()).is_greedy());
}

#[test]
fn greedy_is_argmax_with_lowest_id_on_ties() {
    let mut s = Sampler::new(SamplerConfig::greedy());
    for seed in 0..50 {
        let l = logits(1000, seed);
        assert_eq!(s.sample(&l, &[]), naive_argmax(&l));
    }
    assert_eq!(s.sample(&[1.0, 3.0, 3.0, 2.0], &[]), 1);
    let neg = Sampler::new(SamplerConfig {
        temperature: -1.0,
        ..SamplerConfig::default()
    });
    assert!(neg.is_greedy());
}

#[test]
fn top_k_one_equals_greedy() {
    let mut s = Sampler::new(SamplerConfig {
        top_k: 1,
        ..SamplerConfig::default()
    });
    assert!(s.is_greedy());
    for seed in 0..50 {
        let l = logits(500, seed);
        assert_eq!(s.sample(&l, &[]), naive_argmax(&l));
    }
}

#[test]
fn same_seed_same_sequence() {
    let run = |seed: u64| {
        let mut s = Sampler::new(SamplerConfig {
            seed,
            ..SamplerConfig::default()
        });
        (0..200)
            .map(|i| s.sample(&logits(300, i % 7), &[]))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
    // reseed restarts the sequence.
    let mut s = Sampler::new(SamplerConfig {
        seed: 7,
        ..SamplerConfig::default()
    });
    let first: Vec<u32> = (0..20).map(|_| s.sample(&logits(300, 1), &[])).collect();
    s.reseed(7);
    let again: Vec<u32> = (0..20).map(|_| s.sample(&logits(300, 1), &[])).collect();
    assert_eq!(first, again);
}

#[test]
fn draws_follow_softmax_at_temperature() {
    let p = [0.4, 0.3, 0.2, 0.1];
    let draws = 40_000;
    // Temperature 1: frequencies match p. Chi-square with 3 degrees of freedom:
    // 21.1 is the 99.99 % quantile, so a correct sampler fails 1 in 10^4 seeds.
    let mut s = Sampler::new(plain(1));
    let f = frequencies(&mut s, &ln(&p), draws);
    assert!(chi_square(&f, &p, draws) < 21.1, "T=1 freq {f:?}");
    // Temperature 0.5 squares the probabilities (then renormalises).
    let mut s = Sampler::new(SamplerConfig {
        temperature: 0.5,
        ..plain(2)
    });
    let sq: Vec<f64> = p.iter().map(|x| x * x).collect();
    let z: f64 = sq.iter().sum();
    let want: Vec<f64> = sq.iter().map(|x| x / z).collect();
    let f = frequencies(&mut s, &ln(&p), draws);
    assert!(
        chi_square(&f, &want, draws) < 21.1,
        "T=0.5 freq {f:?} want {want:?}"
    );
    // Temperature 2 flattens: the least likely token gets ~0.16, not 0.1.
    let mut s = Sampler::new(SamplerConfig {
        temperature: 2.0,
        ..plain(3)
    });
    let f = frequencies(&mut s, &ln(&p), draws);
    let sq: Vec<f64> = p.iter().map(|x| x.sqrt()).collect();
    let z: f64 = sq.iter().sum();
    let want: Vec<f64> = sq.iter().map(|x| x / z).collect();
    assert!(
        chi_square(&f, &want, draws) < 21.1,
        "T=2 freq {f:?} want {want:?}"
    );
}

#[test]
fn top_k_keeps_k_most_likely() {
    let l = logits(1000, 42);
    let s = Sampler::new(SamplerConfig {
        top_k: 5,
        ..plain(0)
    });
    let d = s.distribution(&l, &[]);
    let mut sorted: Vec<(usize, f32)> = l.iter().copied().enumerate().collect();
    sorted.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
    let mut want: Vec<u32> = sorted[..5].iter().map(|x| x.0 as u32).collect();
    let mut got: Vec<u32> = d.iter().map(|x| x.0).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
}

#[test]
fn top_p_keeps_smallest_set_reaching_p() {
    let p = [0.5, 0.3, 0.15, 0.05];
    let l = ln(&p);
    let cfg = |top_p: f32| SamplerConfig { top_p, ..plain(5) };
    let ids = |c: SamplerConfig| {
        Sampler::new(c)
            .distribution(&l, &[])
            .iter()
            .map(|x| x.0)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(cfg(0.4)), [0]);
    assert_eq!(ids(cfg(0.75)), [0, 1]);
    assert_eq!(ids(cfg(0.9)), [0, 1, 2]);
    assert_eq!(ids(cfg(1.0)), [0, 1, 2, 3]);
    // Renormalised over the kept set, and draws never leave it.
    let d = Sampler::new(cfg(0.75)).distribution(&l, &[]);
    assert!(
        (d[0].1 - 0.625).abs() < 1e-5 && (d[1].1 - 0.375).abs() < 1e-5,
        "{d:?}"
    );
    let mut s = Sampler::new(cfg(0.75));
    assert!((0..2000).all(|_| s.sample(&l, &[]) < 2));
}

#[test]
fn min_p_drops_tokens_below_fraction_of_top() {
    let p = [0.5, 0.3, 0.15, 0.05];
    let l = ln(&p);
    let ids = |min_p: f32| {
        Sampler::new(SamplerConfig { min_p, ..plain(9) })
            .distribution(&l, &[])
            .iter()
            .map(|x| x.0)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(0.2), [0, 1, 2]); // threshold 0.1
    assert_eq!(ids(0.5), [0, 1]); // threshold 0.25
    assert_eq!(ids(0.99), [0]);
    assert_eq!(ids(0.0), [0, 1, 2, 3]);
}

#[test]
fn repeat_penalty_divides_positive_multiplies_negative() {
    let l = [2.0f32, 1.9, -1.0, -1.1, 0.5];
    let cfg = SamplerConfig {
        repeat_penalty: 2.0,
        repeat_last_n: 3,
        ..plain(0)
    };
    let d = Sampler::new(cfg).distribution(&l, &[0, 2, 2]);
    let prob = |id: u32| d.iter().find(|x| x.0 == id).unwrap().1 as f64;
    // Penalised logits: [1.0, 1.9, -2.0, -1.1, 0.5]; ratios follow exp(Δlogit).
    assert!((prob(1) / prob(0) - (0.9f64).exp()).abs() < 1e-4);
    assert!((prob(3) / prob(2) - (0.9f64).exp()).abs() < 1e-4);
    assert!((prob(4) / prob(1) - (-1.4f64).exp()).abs() < 1e-4);
    // Greedy now picks token 1.
    let mut g = Sampler::new(SamplerConfig {
        temperature: 0.0,
        ..cfg
    });
    assert_eq!(g.sample(&l, &[0, 2, 2]), 1);
    // Token 0 outside the last-3 window is not penalised.
    assert_eq!(g.sample(&l, &[0, 4, 4, 4]), 0);
    // repeat_last_n = 0 disables.
    let mut off = Sampler::new(SamplerConfig {
        repeat_last_n: 0,
        ..cfg
    });
    let d0 = off.distribution(&l, &[0]);
    assert_eq!(d0[0].0, 0);
    let _ = off.sample(&l, &[0, 99_999]); // ids outside the vocabulary are ignored
}

#[test]
fn bad_logits_do_not_panic() {
    let nan = f32::NAN;
    let l = [nan, 1.0, nan, 0.5];
    let mut g = Sampler::new(SamplerConfig::greedy());
    assert_eq!(g.sample(&l, &[]), 1);
    let mut s = Sampler::new(plain(3));
    for _ in 0..1000 {
        let t = s.sample(&l, &[]);
        assert!(t == 1 || t == 3, "picked NaN token {t}");
    }
    // All NaN / −∞, empty, +∞.
    assert_eq!(s.sample(&[nan, nan], &[]), 0);
    assert_eq!(s.sample(&[f32::NEG_INFINITY; 3], &[]), 0);
    assert_eq!(s.sample(&[], &[]), 0);
    assert_eq!(g.sample(&[], &[]), 0);
    for _ in 0..100 {
        let t = s.sample(&[0.0, f32::INFINITY, 3.0, f32::INFINITY], &[]);
        assert!(t == 1 || t == 3);
    }
    // NaN temperature counts as greedy.
    let mut t = Sampler::new(SamplerConfig {
        temperature: nan,
        ..SamplerConfig::default()
    });
    assert!(t.is_greedy());
    assert_eq!(t.sample(&l, &[]), 1);
    // Default chain on real-sized random logits always returns a valid id.
    let mut d = Sampler::new(SamplerConfig {
        repeat_penalty: 1.3,
        ..SamplerConfig::default()
    });
    let big = logits(49_152, 11);
    let recent: Vec<u32> = (0..100).collect();
    for _ in 0..20 {
        assert!((d.sample(&big, &recent) as usize) < big.len());
    }
}
