//! Token sampling with llama.cpp's semantics and default chain:
//! repeat penalty → top-k → top-p → min-p → temperature → seeded draw.
//! Temperature ≤ 0 (or top-k = 1) is greedy: argmax, ties to the lowest id.
//!
//! NaN logits never win; +∞ logits share all the probability; an empty or
//! all-NaN/−∞ logit vector yields token 0 rather than a panic.

/// Sampling settings. `Default` is llama.cpp's CLI default (temperature 0.8,
/// top-k 40, top-p 0.95, min-p 0.05, no repeat penalty over the last 64 tokens)
/// with the fixed seed [`DEFAULT_SEED`] so runs are reproducible.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerConfig {
    /// Logits are divided by this before the draw; ≤ 0 means greedy.
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches
    /// `top_p`; ≥ 1 keeps all.
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` × the top probability;
    /// ≤ 0 keeps all.
    pub min_p: f32,
    /// Positive logits of recently seen tokens are divided by this, negative
    /// ones multiplied; 1 disables.
    pub repeat_penalty: f32,
    /// How many of the most recent tokens the penalty looks at; 0 disables.
    pub repeat_last_n: usize,
    /// Seed of the random generator: same seed and inputs → same tokens.
    pub seed: u64,
}

/// Seed used by [`SamplerConfig::default`].
pub const DEFAULT_SEED: u64 = 0x5EED;

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: DEFAULT_SEED,
        }
    }
}

impl SamplerConfig {
    /// Greedy decoding (argmax), no penalty.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }
}

/// SplitMix64: a small, fast, well-distributed 64-bit generator.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Picks the next token from logits. Holds the random state.
#[derive(Clone, Debug)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: SplitMix64,
}

impl Sampler {
    /// A sampler seeded with `cfg.seed`.
    pub fn new(cfg: SamplerConfig) -> Self {
        Self {
            cfg,
            rng: SplitMix64(cfg.seed),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Restart the random sequence from `seed`.
    pub fn reseed(&mut self, seed: u64) {
        self.cfg.seed = seed;
        self.rng = SplitMix64(seed);
    }

    /// The next uniform draw in [0, 1) of the seeded sequence (what
    /// [`Sampler::sample`] uses; the GPU sampler takes them from here).
    pub fn next_draw(&mut self) -> f64 {
        self.rng.next_f64()
    }

    /// Whether sampling is deterministic argmax (temperature ≤ 0 or NaN, or top-k = 1).
    pub fn is_greedy(&self) -> bool {
        self.cfg.temperature.is_nan() || self.cfg.temperature <= 0.0 || self.cfg.top_k == 1
    }

    /// Whether the repeat penalty changes any logit (penalty ≠ 1 over a
    /// window of at least one token): greedy decoding then is not the plain
    /// argmax of the logits.
    pub fn penalizes(&self) -> bool {
        self.cfg.repeat_penalty != 1.0 && self.cfg.repeat_last_n > 0
    }

    /// Choose a token id. `recent` are the tokens so far (prompt and output),
    /// oldest first; only its last `repeat_last_n` count for the penalty.
    ///
    /// Every call with non-greedy settings takes one draw from the random
    /// sequence (also when one token is left), so the n-th token always
    /// uses the n-th draw: the GPU sampler gets the same draws in advance.
    pub fn sample(&mut self, logits: &[f32], recent: &[u32]) -> u32 {
        let dist = self.distribution(logits, recent);
        if self.is_greedy() || dist.len() <= 1 {
            if !self.is_greedy() {
                self.next_draw();
            }
            return dist.first().map_or(0, |&(id, _)| id);
        }
        let u = self.next_draw();
        let mut cum = 0.0f64;
        for &(id, p) in &dist {
            cum += f64::from(p);
            if u < cum {
                return id;
            }
        }
        // Rounding left u ≥ the total: take the last kept token.
        dist.last().map_or(0, |&(id, _)| id)
    }

    /// The final distribution the draw is made from: `(id, probability)`,
    /// most likely first (ties: lower id first), probabilities summing to 1.
    /// Greedy settings give the single argmax with probability 1. Empty only
    /// when `logits` is empty.
    pub fn distribution(&self, logits: &[f32], recent: &[u32]) -> Vec<(u32, f32)> {
        let mut cands = sanitize(logits);
        if cands.is_empty() {
            return Vec::new();
        }
        apply_repeat_penalty(&mut cands, recent, &self.cfg);
        if self.is_greedy() {
            return argmax(&cands).map(|id| vec![(id, 1.0)]).unwrap_or_default();
        }
        // Drop −∞ (NaN included); if nothing finite is left, fall back to argmax.
        let finite: Vec<(u32, f32)> = cands
            .iter()
            .copied()
            .filter(|&(_, l)| l > f32::NEG_INFINITY)
            .collect();
        if finite.is_empty() {
            return argmax(&cands).map(|id| vec![(id, 1.0)]).unwrap_or_default();
        }
        cands = finite;
        top_k(&mut cands, self.cfg.top_k);
        sort_desc(&mut cands);
        top_p(&mut cands, self.cfg.top_p);
        min_p(&mut cands, self.cfg.min_p);
        let t = self.cfg.temperature;
        for c in &mut cands {
            c.1 /= t;
        }
        softmax(&cands)
    }
}

/// `(id, logit)` pairs with NaN → −∞; if any logit is +∞, only those remain,
/// sharing the probability equally (logit 0).
fn sanitize(logits: &[f32]) -> Vec<(u32, f32)> {
    if logits.contains(&f32::INFINITY) {
        return logits
            .iter()
            .enumerate()
            .filter(|&(_, &l)| l == f32::INFINITY)
            .map(|(i, _)| (i as u32, 0.0))
            .collect();
    }
    logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, if l.is_nan() { f32::NEG_INFINITY } else { l }))
        .collect()
}

/// llama.cpp's repeat penalty: each distinct token among the last
/// `repeat_last_n` has its logit divided by the penalty if positive, else
/// multiplied by it. `cands` is indexed by id here (fresh from `sanitize`
/// unless +∞ filtering shortened it, in which case ids are looked up).
fn apply_repeat_penalty(cands: &mut [(u32, f32)], recent: &[u32], cfg: &SamplerConfig) {
    let penalty = cfg.repeat_penalty;
    if cfg.repeat_last_n == 0 || penalty == 1.0 || penalty.is_nan() {
        return;
    }
    let window = recent
        .get(recent.len().saturating_sub(cfg.repeat_last_n)..)
        .unwrap_or(&[]);
    let mut seen: Vec<u32> = window.to_vec();
    seen.sort_unstable();
    seen.dedup();
    let indexed = cands
        .iter()
        .enumerate()
        .all(|(i, &(id, _))| id as usize == i);
    for id in seen {
        let slot = if indexed {
            cands.get_mut(id as usize)
        } else {
            cands.iter_mut().find(|c| c.0 == id)
        };
        if let Some(c) = slot {
            if c.1 <= 0.0 {
                c.1 *= penalty;
            } else {
                c.1 /= penalty;
            }
        }
    }
}

/// Highest logit, ties to the lowest id.
fn argmax(cands: &[(u32, f32)]) -> Option<u32> {
    let mut best: Option<(u32, f32)> = None;
    for &(id, l) in cands {
        match best {
            Some((bid, bl)) if l < bl || (l == bl && id > bid) => {}
            _ => best = Some((id, l)),
        }
    }
    best.map(|(id, _)| id)
}

/// Descending logit, ties to the lower id (total order: no NaN here).
fn cmp_desc(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

fn sort_desc(cands: &mut [(u32, f32)]) {
    cands.sort_unstable_by(cmp_desc);
}

fn top_k(cands: &mut Vec<(u32, f32)>, k: usize) {
    if k == 0 || k >= cands.len() {
        return;
    }
    cands.select_nth_unstable_by(k - 1, cmp_desc);
    cands.truncate(k);
}

/// Keep the shortest prefix (of a descending list) whose probability mass
/// reaches `p`, at least one token.
fn top_p(cands: &mut Vec<(u32, f32)>, p: f32) {
    if p.is_nan() || p >= 1.0 {
        return;
    }
    let probs = softmax(cands);
    let mut cum = 0.0f32;
    let mut keep = cands.len();
    for (i, &(_, q)) in probs.iter().enumerate() {
        cum += q;
        if cum >= p {
            keep = i + 1;
            break;
        }
    }
    cands.truncate(keep.max(1));
}

/// Keep tokens with probability ≥ `p` × the top probability (a logit test:
/// logit ≥ max + ln p), at least one token. Expects a descending list.
fn min_p(cands: &mut Vec<(u32, f32)>, p: f32) {
    if p.is_nan() || p <= 0.0 {
        return;
    }
    let Some(&(_, max)) = cands.first() else {
        return;
    };
    let min_logit = max + p.ln();
    let keep = cands.iter().take_while(|c| c.1 >= min_logit).count();
    cands.truncate(keep.max(1));
}

/// Probabilities of the candidates (same order), computed stably.
fn softmax(cands: &[(u32, f32)]) -> Vec<(u32, f32)> {
    let max = cands.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = cands.iter().map(|c| f64::from(c.1 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    cands
        .iter()
        .zip(exps)
        .map(|(c, e)| (c.0, (e / sum) as f32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // First outputs of SplitMix64 seeded with 0, as published with the algorithm.
        let mut r = SplitMix64(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }
}
