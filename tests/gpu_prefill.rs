//! Batched prompt processing (prefill) against CPU oracles, through mapped
//! readback: the matmul kernel for every format and input variant (plain,
//! accumulate, RMSNorm-fused, SwiGLU-fused) on odd shapes and token counts,
//! both reduction paths; the batched embedding; the chunk attention (RoPE,
//! KV-cache writes, causal GQA, more than one 256-position tile) against
//! `model::{rope, attention_head}`; and end to end on the real Q4_0 model:
//! batched prefill gives the per-token path's logits and greedy tokens.
//! Fresh random inputs, outputs poisoned with NaN first; no adapter is a
//! failure, not a skip.

mod common;

use common::{gpu_with as gpu, int8_input, rmsnorm, swiglu, Rng};

use q4gpu::gguf::{GgmlType, Gguf};
use q4gpu::gpu::prefill::{
    attention_prefill, chunk_words, embed_batch, AttnBuffers, HALF_INPUTS_MIN_ROWS, TOKENS_PER_TILE,
};
use q4gpu::gpu::shader::AttnParams;
use q4gpu::gpu::{compare, read_f32, Gpu, GpuMatrix, MatmulBinding, MatmulKernels, MatvecInput};
use q4gpu::model::{attention_head, rope_at, rope_freqs, rope_neox_at, Config, GpuModel, Weights};
use q4gpu::quant;

/// Relative L2 error allowed for kernels: f32 on both sides, only the order differs.
const TOL: f64 = 1e-5;

/// COOP matmuls (matrix units, f16 tiles): weights and inputs rounded to
/// f16 move each product by up to 2·2⁻¹¹ of itself; the relative L2 error
/// of random-sign sums stays near that (H100: 5.5e-4 over these shapes).
const TOL_COOP: f64 = 2e-3;

/// f16-input matmuls (quantize_rows HALF + matmul HALF_X) on f32 FMAs
/// against the oracle that rounds the inputs to f16 the same way: only the
/// f32 order and an input rounded the other way remain (one input off by
/// an f16 step moves a 64-column output by ~1e-5 of the largest).
const TOL_HALF: f64 = 1e-4;

/// Int8-input matmuls (quantize_rows + matmul_q8) against the oracle that
/// quantizes the inputs the same way (`quant::dot_q8`): exact integer block
/// sums, f32 order and the odd code rounded the other way remain.
///
/// Measured ≤ 6e-5 on lavapipe; one code off by one moves a 13-row, 64-column
/// case by ~1e-4, while a wrong scale or offset term costs 1e-1 and more.
const TOL_Q8: f64 = 1e-3;

/// Int8-input matmuls against the f32 oracle: the price of 8-bit inputs
/// (see tests/gpu_matvec.rs).
const TOL_Q8_VS_F32: f64 = 3e-2;

fn upload(gpu: &Gpu, label: &str, v: &[f32]) -> wgpu::Buffer {
    gpu.upload(label, bytemuck::cast_slice(v), wgpu::BufferUsages::COPY_SRC)
        .unwrap()
}

fn upload_u32(gpu: &Gpu, label: &str, v: &[u32]) -> wgpu::Buffer {
    gpu.upload(label, bytemuck::cast_slice(v), wgpu::BufferUsages::empty())
        .unwrap()
}

fn run(gpu: &Gpu, f: impl FnOnce(&mut wgpu::ComputePass<'_>)) {
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        f(&mut pass);
    }
    gpu.queue.submit([enc.finish()]);
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Plain,
    Accumulate,
    Norm,
    SwiGlu,
}

/// One matmul case; returns its relative error (asserted within TOL).
#[allow(clippy::too_many_arguments)]
fn matmul_case(
    gpu: &Gpu,
    k: &MatmulKernels,
    rng: &mut Rng,
    ty: GgmlType,
    rows: usize,
    cols: usize,
    n: usize,
    mode: Mode,
) -> f64 {
    let wq = quant::quantize(ty, &rng.vec(rows * cols)).unwrap();
    let rb = ty.row_bytes(cols as u64).unwrap() as usize;
    let m = GpuMatrix::upload(gpu, "w", ty, rows, cols, &wq).unwrap();
    let x_len = if mode == Mode::SwiGlu { 2 * cols } else { cols };
    // Two token rows past n (the kernel must neither read nor write them),
    // padding between rows, y rows at an offset inside wider rows.
    let max_tokens = n + 2;
    let x_stride = x_len + 8;
    let y_off = 3;
    let y_stride = rows + y_off + 5;
    let mut xs = vec![f32::NAN; max_tokens * x_stride];
    let mut inputs = Vec::new();
    for t in 0..n {
        let v = rng.vec(x_len);
        xs[t * x_stride..t * x_stride + x_len].copy_from_slice(&v);
        inputs.push(v);
    }
    let mut y0 = vec![f32::NAN; max_tokens * y_stride];
    let mut prior = Vec::new();
    if mode == Mode::Accumulate {
        for t in 0..n {
            let v = rng.vec(rows);
            y0[t * y_stride + y_off..t * y_stride + y_off + rows].copy_from_slice(&v);
            prior.push(v);
        }
    }
    let gain = rng.vec(cols);
    let eps = 1e-5;
    let xb = upload(gpu, "x", &xs);
    let yb = upload(gpu, "y", &y0);
    let gb = upload(gpu, "gain", &gain);
    let ids = vec![0u32; n];
    let cb = upload_u32(gpu, "chunk", &chunk_words(0, &ids));
    let input = match mode {
        Mode::Norm => MatvecInput::RmsNorm { gain: &gb, eps },
        Mode::SwiGlu => MatvecInput::SwiGlu,
        _ => MatvecInput::Plain,
    };
    let b = MatmulBinding {
        x: &xb,
        x_stride: x_stride as u32,
        y: &yb,
        y_stride: y_stride as u32,
        y_offset: y_off as u32,
        chunk: &cb,
        max_tokens: max_tokens as u32,
        input,
        accumulate: mode == Mode::Accumulate,
    };
    let op = k.bind(gpu, &m, b).unwrap();
    run(gpu, |p| op.encode(p, n as u32));
    let out = read_f32(gpu, &yb, 0, y0.len()).unwrap();
    let mut got = Vec::new();
    let mut want = Vec::new();
    // f16 inputs on f32 FMAs also meet the oracle with the inputs rounded
    // to f16 the same way (computed only for them).
    let half_oracle = k.half_inputs(ty, rows as u32) && !k.matrix_units(ty);
    let mut want_half = Vec::new();
    for (t, x) in inputs.iter().enumerate() {
        let h: Vec<f32> = match mode {
            Mode::Norm => rmsnorm(x, &gain, eps),
            Mode::SwiGlu => swiglu(x, cols),
            _ => x.clone(),
        };
        let h16: Vec<f32> = if half_oracle {
            h.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect()
        } else {
            Vec::new()
        };
        for r in 0..rows {
            let wr = &wq[r * rb..(r + 1) * rb];
            let prior_v = if mode == Mode::Accumulate {
                prior[t][r]
            } else {
                0.0
            };
            want.push(quant::dot(ty, wr, &h).unwrap() + prior_v);
            if half_oracle {
                want_half.push(quant::dot(ty, wr, &h16).unwrap() + prior_v);
            }
        }
        got.extend_from_slice(&out[t * y_stride + y_off..t * y_stride + y_off + rows]);
    }
    let rep = if k.q8_activations(ty) {
        // The quantizer takes x ⊙ gain (Norm), the SwiGLU product or x, and
        // scales the blocks by the RMSNorm factor: mirror that.
        let mut want_q8 = Vec::new();
        for (t, x) in inputs.iter().enumerate() {
            let norm = (mode == Mode::Norm).then_some((gain.as_slice(), eps));
            let (h, scale) = int8_input(x, cols, norm, mode == Mode::SwiGlu);
            let hq = quant::q8_act::quantize(&h);
            for r in 0..rows {
                let mut v = quant::dot_q8(ty, &wq[r * rb..(r + 1) * rb], &hq).unwrap() * scale;
                if mode == Mode::Accumulate {
                    v += prior[t][r];
                }
                want_q8.push(v);
            }
        }
        let vs_f32 = compare(&got, &want);
        assert!(
            vs_f32.passes(TOL_Q8_VS_F32),
            "{ty} {rows}x{cols} n={n} {mode:?} int8 inputs against the f32 oracle: {vs_f32}"
        );
        let rep = compare(&got, &want_q8);
        assert!(
            rep.passes(TOL_Q8),
            "{ty} {rows}x{cols} n={n} {mode:?} int8 inputs subgroups={}: {rep}",
            gpu.subgroups
        );
        rep
    } else {
        let rep = compare(&got, &want);
        let f16_any = k.matrix_units(ty) || k.half_inputs(ty, rows as u32);
        let tol = if f16_any { TOL_COOP } else { TOL };
        let what = format!(
            "{ty} {rows}x{cols} n={n} {mode:?} subgroups={} matrix units={} f16 inputs={}",
            gpu.subgroups,
            k.matrix_units(ty),
            k.half_inputs(ty, rows as u32)
        );
        assert!(rep.passes(tol), "{what}: {rep}");
        if half_oracle {
            let rep = compare(&got, &want_half);
            assert!(
                rep.passes(TOL_HALF),
                "{what} against f16-rounded inputs: {rep}"
            );
            return rep.rel_err;
        }
        rep
    };
    // Everything outside the written rows stays poisoned.
    for (i, v) in out.iter().enumerate() {
        let (t, c) = (i / y_stride, i % y_stride);
        if t >= n || c < y_off || c >= y_off + rows {
            assert!(
                v.is_nan(),
                "{ty} {mode:?}: write outside Y at token {t} column {c}"
            );
        }
    }
    rep.rel_err
}

/// (rows, cols, tokens): odd row counts (partial 64-row tiles, alone or after
/// a full one), K from 64 to 1536, partial and full 64-token tiles.
const SHAPES: &[(usize, usize, usize)] = &[
    (13, 64, 1),
    (97, 64, 70),
    (13, 64, 3),
    (576, 576, 17),
    (1536, 576, 5),
    (13, 1536, 67),
    (45, 96, 64),
    (256, 128, 130),
];

/// Shapes for the K-quants (rows of whole 256-element super-blocks): one
/// super-block with partial tiles, 3 super-blocks on a full token tile.
const K_SHAPES: &[(usize, usize, usize)] = &[(13, 256, 1), (97, 256, 70), (45, 768, 64)];

/// Every shape and input mode for each of `formats`, plus a full chunk
/// through SmolLM2's down projection (one mode: slow on lavapipe); returns
/// the worst relative error.
fn matmul_cases(gpu: &Gpu, k: &MatmulKernels, rng: &mut Rng, formats: &[GgmlType]) -> f64 {
    let mut worst = 0.0f64;
    for &ty in formats {
        let block = ty.block_size();
        let extra = if block == 256 { K_SHAPES } else { &[] };
        for &(r, c, n) in SHAPES.iter().chain(extra).filter(|s| s.1 % block == 0) {
            for mode in [Mode::Plain, Mode::Accumulate, Mode::Norm, Mode::SwiGlu] {
                worst = worst.max(matmul_case(gpu, k, rng, ty, r, c, n, mode));
            }
        }
        worst = worst.max(matmul_case(gpu, k, rng, ty, 576, 1536, 64, Mode::SwiGlu));
    }
    worst
}

fn all_matmul(subgroups: bool) {
    let gpu = gpu(subgroups);
    eprintln!("adapter: {}", gpu.describe());
    let k = MatmulKernels::new(&gpu);
    let mut rng = Rng(0xBA7C4 + subgroups as u64);
    let worst = matmul_cases(&gpu, &k, &mut rng, &q4gpu::gpu::matvec::FORMATS);
    eprintln!(
        "matmul worst relative error (subgroups={subgroups}, matrix units={}): {worst:.3e}",
        gpu.matrix_units
    );
}

/// Matmuls take their COOP variants exactly where the device runs them:
/// the variant names a bound product records follow `Gpu::matrix_units`
/// (on lavapipe, which has no cooperative matrices, false: f32 variants;
/// on a device with them, `.coop` ones, which the shape tests above then
/// check against the CPU), and never on the int8 path or with the option
/// off; so do f16 inputs, for matrices of `HALF_INPUTS_MIN_ROWS` rows or
/// more.
#[test]
fn matmul_variants_follow_the_devices_matrix_units() {
    let gpu = common::gpu();
    let mut opts = common::device_options();
    opts.matrix_units = false;
    let off = Gpu::new(&opts).unwrap();
    assert!(!off.matrix_units, "matrix_units: false in GpuOptions");
    let on = gpu.matrix_units;
    eprintln!("adapter: {} (matrix units: {on})", gpu.describe());
    let mut rng = Rng(0xC00B);
    let (rows, cols, n) = (70usize, 64usize, 3usize);
    let wq = quant::quantize(GgmlType::Q4_0, &rng.vec(rows * cols)).unwrap();
    for (g, q8, want) in [(&gpu, false, on), (&off, false, false), (&gpu, true, false)] {
        let k = MatmulKernels::new(g).with_q8_activations(q8);
        assert_eq!(k.matrix_units(GgmlType::Q4_0), want);
        // f16 inputs by default exactly on matrix units, from 2048 rows.
        let min = HALF_INPUTS_MIN_ROWS;
        assert_eq!(k.half_inputs(GgmlType::Q4_0, min), want);
        assert!(!k.half_inputs(GgmlType::Q4_0, min - 1));
        let names = recorded_variants(g, &k, &wq, (rows, cols, n), false);
        let coop = names.iter().filter(|n| n.ends_with(".coop")).count();
        assert_eq!(coop, want as usize, "q8 {q8}: {names:?}");
    }
}

/// The variant names a product of the Q4_0 matrix `wq` (`rows`×`cols`),
/// bound by `k` over `n` tokens with plain or (`norm`) RMSNorm-fused
/// inputs, records (captured, not run).
fn recorded_variants(
    g: &Gpu,
    k: &MatmulKernels,
    wq: &[u8],
    (rows, cols, n): (usize, usize, usize),
    norm: bool,
) -> Vec<String> {
    use q4gpu::gpu::capture;
    let m = GpuMatrix::upload(g, "w", GgmlType::Q4_0, rows, cols, wq).unwrap();
    let xb = upload(g, "x", &vec![0.5; n * cols]);
    let yb = upload(g, "y", &vec![0.0; n * rows]);
    let gb = upload(g, "gain", &vec![1.0; cols]);
    let cb = upload_u32(g, "chunk", &chunk_words(0, &vec![0; n]));
    let input = match norm {
        true => MatvecInput::RmsNorm {
            gain: &gb,
            eps: 1e-5,
        },
        false => MatvecInput::Plain,
    };
    let b = MatmulBinding {
        x: &xb,
        x_stride: cols as u32,
        y: &yb,
        y_stride: rows as u32,
        y_offset: 0,
        chunk: &cb,
        max_tokens: n as u32,
        input,
        accumulate: false,
    };
    let op = k.bind(g, &m, b).unwrap();
    let (_, got) = capture(|| {
        let mut enc = g.device.create_command_encoder(&Default::default());
        op.encode_into(&mut enc, n as u32);
    });
    got.into_iter().map(|c| c.kernel.name.clone()).collect()
}

/// A COOP variant the device cannot build (here: asked for on a device
/// without cooperative matrices) falls back to the f32 variant, which then
/// matches the CPU; the failure is noted once, however many products bind
/// the variant (a model binds it once per layer).
#[test]
fn coop_variants_the_device_cannot_build_fall_back_to_f32() {
    let gpu = Gpu::new(&common::device_options()).unwrap();
    if gpu.matrix_units {
        eprintln!("this device runs COOP variants: matmul_variants_follow_the_devices_matrix_units covers it");
        return;
    }
    let k = MatmulKernels::new(&gpu).with_matrix_units(true);
    let mut rng = Rng(0xFA11);
    for _ in 0..3 {
        let e = matmul_case(&gpu, &k, &mut rng, GgmlType::Q4_0, 97, 64, 5, Mode::Plain);
        assert!(e < TOL, "{e}");
    }
    let (_, noted) = gpu.msl_fallbacks();
    let coop: Vec<&String> = noted
        .iter()
        .filter(|l| l.starts_with("matmul.q4_0.coop:"))
        .collect();
    assert_eq!(coop.len(), 1, "{noted:?}");
}

#[test]
fn matmul_matches_cpu_subgroup_path() {
    common::require_subgroups();
    all_matmul(true);
}

#[test]
fn matmul_matches_cpu_workgroup_memory_path() {
    all_matmul(false);
}

/// f16 inputs (quantize_rows HALF + matmul HALF_X) for every shape and
/// input mode, against the f16-rounded oracle (on f32 FMAs: lavapipe) and
/// the f32 one; three weight formats (a block format, a K-quant, a float
/// one: HALF_X changes only the input side). On a device with matrix units
/// the default path is this one on COOP tiles, which the shape tests above
/// cover for every format.
#[test]
fn matmul_half_inputs_match_cpu() {
    let gpu = gpu(false);
    let k = MatmulKernels::new(&gpu).with_half_inputs(true);
    assert!(k.half_inputs(GgmlType::Q4_0, 13) && k.half_inputs(GgmlType::F16, 13));
    let formats = [GgmlType::Q4_0, GgmlType::Q6_K, GgmlType::F16];
    let worst = matmul_cases(&gpu, &k, &mut Rng(0x0F16_BA7C), &formats);
    eprintln!("f16-input matmul worst relative error: {worst:.3e}");
}

/// Products of one K segment write Y themselves (DIRECT, no reduce pass)
/// where no RMSNorm scale is left to apply: with the K split off (a
/// target of one workgroup), every shape and input mode on f32 and f16
/// inputs against the CPU, on three weight formats; a plain product
/// records one launch, a norm-fused one on f32 inputs still two.
#[test]
fn matmul_direct_matches_cpu() {
    let mut opts = common::device_options();
    opts.disable_subgroups = true;
    opts.tuning = Some(q4gpu::gpu::Tuning {
        matmul_target_workgroups: 1,
        ..Default::default()
    });
    let gpu = Gpu::new(&opts).unwrap();
    let formats = [GgmlType::Q4_0, GgmlType::Q6_K, GgmlType::F16];
    for half in [false, true] {
        let k = MatmulKernels::new(&gpu).with_half_inputs(half);
        let worst = matmul_cases(&gpu, &k, &mut Rng(0xD1EC7 + half as u64), &formats);
        eprintln!("one-segment matmul (f16 inputs: {half}) worst relative error: {worst:.3e}");
    }
    let shape = (70usize, 64usize, 3usize);
    let wq = quant::quantize(GgmlType::Q4_0, &Rng(7).vec(shape.0 * shape.1)).unwrap();
    let k = MatmulKernels::new(&gpu);
    for (norm, want) in [
        (false, vec!["matmul.q4_0.direct"]),
        (true, vec!["matmul.q4_0.norm", "matmul_reduce.norm"]),
    ] {
        assert_eq!(recorded_variants(&gpu, &k, &wq, shape, norm), want);
    }
}

/// Int8 inputs (quantize_rows + matmul_q8) for Q4_0, Q4_1 and Q8_0 weights,
/// every shape and input mode, against both oracles.
#[test]
fn matmul_q8_activations_match_cpu() {
    let gpu = gpu(false);
    let k = MatmulKernels::new(&gpu).with_q8_activations(true);
    let formats = q4gpu::gpu::matvec::Q8_ACT_FORMATS;
    assert!(formats.iter().all(|&ty| k.q8_activations(ty)));
    assert!(!k.q8_activations(GgmlType::F16));
    let worst = matmul_cases(&gpu, &k, &mut Rng(0x0808_BA7C), &formats);
    eprintln!("int8-input matmul worst relative error against the int8 oracle: {worst:.3e}");
}

#[test]
fn matmul_bad_arguments_are_errors() {
    let gpu = gpu(false);
    let k = MatmulKernels::new(&gpu);
    let m = GpuMatrix::upload(&gpu, "w", GgmlType::F32, 2, 32, &[0u8; 256]).unwrap();
    let small = gpu
        .storage("x", 64 * 4, wgpu::BufferUsages::empty())
        .unwrap();
    let big = gpu
        .storage("big", 4096, wgpu::BufferUsages::empty())
        .unwrap();
    let y = gpu.storage("y", 4096, wgpu::BufferUsages::empty()).unwrap();
    let c = gpu
        .storage("chunk", 64, wgpu::BufferUsages::empty())
        .unwrap();
    let ok = MatmulBinding {
        x: &big,
        x_stride: 32,
        y: &y,
        y_stride: 2,
        y_offset: 0,
        chunk: &c,
        max_tokens: 4,
        input: MatvecInput::Plain,
        accumulate: false,
    };
    let bind = |b: MatmulBinding<'_>| k.bind(&gpu, &m, b);
    assert!(bind(ok).is_ok());
    let x_stride = |x_stride| MatmulBinding { x_stride, ..ok };
    assert!(bind(x_stride(28)).is_err(), "stride below cols");
    assert!(bind(x_stride(34)).is_err(), "stride not a multiple of 4");
    let y_stride = |y_stride| MatmulBinding { y_stride, ..ok };
    assert!(bind(y_stride(1)).is_err(), "y stride below rows");
    let offset = MatmulBinding { y_offset: 1, ..ok };
    assert!(bind(offset).is_err(), "y offset + rows past the y stride");
    assert!(
        bind(MatmulBinding { x: &small, ..ok }).is_err(),
        "x too small for 4 tokens"
    );
    assert!(
        bind(MatmulBinding {
            max_tokens: 0,
            ..ok
        })
        .is_err(),
        "no tokens"
    );
    let merge = MatvecInput::AttnMerge {
        step: &c,
        head_dim: 32,
    };
    assert!(
        bind(MatmulBinding { input: merge, ..ok }).is_err(),
        "the attention merge input"
    );
    // Pipelines compile on first use: a format no product used yet binds.
    let q = GpuMatrix::upload(
        &gpu,
        "q",
        GgmlType::Q4_0,
        1,
        32,
        &quant::quantize(GgmlType::Q4_0, &[0.5; 32]).unwrap(),
    )
    .unwrap();
    let one = MatmulBinding {
        y_stride: 1,
        max_tokens: 1,
        ..ok
    };
    assert!(
        k.bind(&gpu, &q, one).is_ok(),
        "format compiled on first use"
    );
}

#[test]
fn embed_batch_matches_dequantized_rows() {
    let gpu = gpu(false);
    let mut rng = Rng(0xE3BED);
    for ty in q4gpu::gpu::matvec::FORMATS {
        // Two super-blocks per row for the K-quants.
        let (rows, cols) = (37, if ty.block_size() == 256 { 512 } else { 96 });
        let table = quant::quantize(ty, &rng.vec(rows * cols)).unwrap();
        let ids = [5u32, 0, 36, 5, 17];
        let max = ids.len() + 2;
        let mut words = chunk_words(7, &ids);
        words.extend([0, 0]);
        let cb = upload_u32(&gpu, "chunk", &words);
        let out = upload(&gpu, "out", &vec![f32::NAN; max * cols]);
        // The table whole, or split by rows in two parts (as one larger than
        // a storage binding is): one lookup per part, each writing its ids.
        let row_bytes = table.len() / rows;
        let split = if ty == GgmlType::Q8_0 { 17 } else { rows };
        let mut ops = Vec::new();
        for (row0, n) in [(0, split), (split, rows - split)] {
            if n == 0 {
                continue;
            }
            let part = &table[row0 * row_bytes..(row0 + n) * row_bytes];
            // As the model uploads it (Q6_K in its GPU layout).
            let tb = GpuMatrix::upload(&gpu, "table", ty, n, cols, part)
                .unwrap()
                .buffer;
            let rows = (row0 as u32, n as u32);
            let op = embed_batch(&gpu, ty, &tb, rows, cols as u32, &cb, &out, max as u32).unwrap();
            ops.push((op, tb));
        }
        run(&gpu, |p| {
            ops.iter()
                .for_each(|(op, _)| op.encode(p, ids.len() as u32))
        });
        let got = read_f32(&gpu, &out, 0, max * cols).unwrap();
        let all = quant::dequantize_row_to_vec(ty, &table, rows * cols).unwrap();
        let want: Vec<f32> = ids
            .iter()
            .flat_map(|&i| all[i as usize * cols..(i as usize + 1) * cols].to_vec())
            .collect();
        assert_eq!(&got[..ids.len() * cols], &want[..], "{ty}");
        assert!(
            got[ids.len() * cols..].iter().all(|v| v.is_nan()),
            "{ty}: wrote past n"
        );
    }
}

/// One chunk attention case: `start` positions already cached (random), then
/// `n` new tokens; checks outputs, the new cache slots, and that the old ones
/// and the other layer are untouched.
/// Odd `n` rotates NeoX pairs (Qwen2), even `n` adjacent ones (llama); with
/// `n % 4 == 3` the q and k heads are RMS-normalized first (Qwen3).
fn attention_case(gpu: &Gpu, rng: &mut Rng, start: usize, n: usize, max_ctx: usize) {
    let heads = (6, 2, 64, n % 2 == 1, n % 4 == 3);
    attention_case_heads(gpu, rng, start, n, max_ctx, heads);
}

/// [`attention_case`] with (query heads, KV heads, head size, NeoX RoPE,
/// per-head q/k RMSNorm); the Q, K, V biases and the norm gains are random.
fn attention_case_heads(
    gpu: &Gpu,
    rng: &mut Rng,
    start: usize,
    n: usize,
    max_ctx: usize,
    heads: (usize, usize, usize, bool, bool),
) {
    let (n_heads, n_kv, hd, neox, qk_norm) = heads;
    let kv_dim = n_kv * hd;
    let qd = n_heads * hd;
    let row = qd + 2 * kv_dim;
    let layers = 2;
    let layer = 1;
    // Llama 3 style RoPE: per-pair factors in [1, 8] and linear scale ½.
    let factors: Vec<f32> = rng.vec(hd / 2).iter().map(|v| 4.5 + 3.5 * v).collect();
    let freqs = rope_freqs(hd, 10000.0, 0.5, Some(&factors));
    let freqs32: Vec<f32> = freqs.iter().map(|&f| f as f32).collect();
    let rotate = if neox { rope_neox_at } else { rope_at };
    let scale = 1.0 / (hd as f32).sqrt();
    let cache_len = layers * max_ctx * kv_dim;
    let mut kc = rng.vec(cache_len);
    let mut vc = rng.vec(cache_len);
    let qkv = rng.vec(n * row);
    let kb = upload(gpu, "k", &kc);
    let vb = upload(gpu, "v", &vc);
    let qb = upload(gpu, "qkv", &qkv);
    let ob = upload(gpu, "out", &vec![f32::NAN; (n + 1) * qd]);
    let ids = vec![0u32; n];
    let cb = upload_u32(gpu, "chunk", &chunk_words(start as u32, &ids));
    let params = AttnParams {
        n_heads: n_heads as u32,
        n_kv_heads: n_kv as u32,
        head_dim: hd as u32,
        kv_dim: kv_dim as u32,
        layer_offset: (layer * max_ctx * kv_dim) as u32,
        max_ctx: max_ctx as u32,
        rope_neox: u32::from(neox),
        scale,
        qk_norm: u32::from(qk_norm),
        eps: 1e-6,
        pad0: 0,
        pad1: 0,
    };
    let rb = upload(gpu, "rope", &freqs32);
    let gains: Vec<f32> = rng.vec(2 * hd).iter().map(|g| 1.0 + 0.5 * g).collect();
    let bias = rng.vec(row);
    let bb = upload(gpu, "bias", &[bias.clone(), gains.clone()].concat());
    // Biases, then (qk_norm) every q and k head RMS-normalized.
    let prepare = |r: &[f32]| -> Vec<f32> {
        let mut v: Vec<f32> = r.iter().zip(&bias).map(|(x, b)| x + b).collect();
        if qk_norm {
            for (h, head) in v[..qd + kv_dim].chunks_exact_mut(hd).enumerate() {
                let g = if h < n_heads {
                    &gains[..hd]
                } else {
                    &gains[hd..]
                };
                let normed = rmsnorm(head, g, 1e-6);
                head.copy_from_slice(&normed);
            }
        }
        v
    };
    let bufs = AttnBuffers {
        chunk: &cb,
        qkv: &qb,
        kcache: &kb,
        vcache: &vb,
        out: &ob,
        rope: &rb,
        bias: &bb,
    };
    let (rope_kv, attend) = attention_prefill(gpu, &params, &bufs, n as u32).unwrap();
    run(gpu, |p| {
        rope_kv.encode(p, n as u32);
        attend.encode(p, n as u32);
    });
    let got = read_f32(gpu, &ob, 0, (n + 1) * qd).unwrap();
    let gk = read_f32(gpu, &kb, 0, cache_len).unwrap();
    let gv = read_f32(gpu, &vb, 0, cache_len).unwrap();

    // CPU: rotate, write the cache, attend.
    let lo = layer * max_ctx * kv_dim;
    let mut want = Vec::new();
    for t in 0..n {
        let pos = start + t;
        let r = prepare(&qkv[t * row..(t + 1) * row]);
        let mut k = r[qd..qd + kv_dim].to_vec();
        rotate(&mut k, &freqs, pos);
        kc[lo + pos * kv_dim..lo + (pos + 1) * kv_dim].copy_from_slice(&k);
        vc[lo + pos * kv_dim..lo + (pos + 1) * kv_dim].copy_from_slice(&r[qd + kv_dim..]);
    }
    for t in 0..n {
        let pos = start + t;
        let mut q = prepare(&qkv[t * row..(t + 1) * row])[..qd].to_vec();
        rotate(&mut q, &freqs, pos);
        for h in 0..n_heads {
            let mut scores = vec![0.0; pos + 1];
            let mut o = vec![0.0; hd];
            let end = lo + (pos + 1) * kv_dim;
            attention_head(
                &q[h * hd..(h + 1) * hd],
                &kc[lo..end],
                &vc[lo..end],
                kv_dim,
                (h / (n_heads / n_kv)) * hd,
                scale,
                &mut scores,
                &mut o,
            )
            .unwrap();
            want.extend(o);
        }
    }
    let what = format!("start {start} n {n} max_ctx {max_ctx}");
    let rep = compare(&got[..n * qd], &want);
    assert!(rep.passes(TOL), "attention output, {what}: {rep}");
    assert!(
        got[n * qd..].iter().all(|v| v.is_nan()),
        "{what}: wrote past n"
    );
    let rk = compare(&gk, &kc);
    assert!(rk.passes(TOL), "K cache, {what}: {rk}");
    // Untouched slots must be bit-identical, V is a copy.
    for i in 0..cache_len {
        let p = (i % (max_ctx * kv_dim)) / kv_dim;
        let new = i / (max_ctx * kv_dim) == layer && p >= start && p < start + n;
        if !new {
            assert_eq!(gk[i], kc[i], "{what}: K slot {i} changed");
        }
        assert_eq!(gv[i], vc[i], "{what}: V slot {i}");
    }
}

/// Both attention kernels: tiles of 32 queries (attention_tiled, head
/// sizes ≤ 128, HD128 above 64) and one workgroup per token
/// (attention_prefill, and every head size).
#[test]
fn attention_prefill_matches_cpu() {
    for min_heads in [0, u32::MAX] {
        let mut opts = common::device_options();
        opts.disable_subgroups = true;
        opts.tuning = Some(q4gpu::gpu::Tuning {
            attention_tiled_min_heads: min_heads,
            ..Default::default()
        });
        let gpu = Gpu::new(&opts).unwrap();
        attention_cases(&gpu);
    }
}

/// Tiled attention's COOP variant asked for on a device that cannot build
/// it (the test GPU without cooperative matrices, told it has matrix
/// units): noted once however many layers bind it, and the f32 variant
/// taken, which matches the CPU.
#[test]
fn coop_attention_the_device_cannot_build_falls_back_to_f32() {
    let mut opts = common::device_options();
    opts.tuning = Some(q4gpu::gpu::Tuning {
        attention_tiled_min_heads: 0,
        attention_matrix_units: true,
        ..Default::default()
    });
    let mut gpu = Gpu::new(&opts).unwrap();
    if gpu.matrix_units {
        eprintln!("this device runs COOP variants: the msl_exec twins cover the kernel");
        return;
    }
    gpu.matrix_units = true;
    let mut rng = Rng(0xFA12);
    attention_case(&gpu, &mut rng, 3, 70, 80);
    attention_case(&gpu, &mut rng, 0, 19, 40);
    let (_, noted) = gpu.msl_fallbacks();
    let coop = noted
        .iter()
        .filter(|l| l.starts_with("attention_tiled.coop:"))
        .count();
    assert_eq!(coop, 1, "{noted:?}");
    // Asked again, the variant is not rebuilt: the first failure comes back
    // with its text (the bindings of prefill.rs's ATTENTION_PREFILL).
    let sig = [true, false, false, false, false, true, true];
    let spec = q4gpu::gpu::KernelSpec::new("attention_tiled", &["COOP"], &sig);
    match gpu.kernel("attention_tiled.coop", &spec) {
        Err(q4gpu::gpu::GpuError::BuildFailed(text)) => {
            assert!(
                noted.contains(&format!("attention_tiled.coop: {text}")),
                "{text}"
            );
        }
        other => panic!("expected the cached failure, got {:?}", other.err()),
    }
}

fn attention_cases(gpu: &Gpu) {
    let gpu = gpu.clone();
    let mut rng = Rng(0xA77E);
    // Several tiles of 32 queries, and of 32 keys.
    attention_case(&gpu, &mut rng, 3, 70, 80);
    attention_case(&gpu, &mut rng, 0, 1, 8);
    attention_case(&gpu, &mut rng, 0, 19, 40);
    attention_case(&gpu, &mut rng, 5, 19, 40);
    // Positions past one 256-position tile: the online softmax rescales.
    attention_case(&gpu, &mut rng, 250, 20, 300);
    // Query heads per KV head: 9 (workgroups of 4, 4 and 1 heads), 1, and 4
    // with a smaller head size.
    attention_case_heads(&gpu, &mut rng, 250, 9, 300, (9, 1, 32, false, false));
    attention_case_heads(&gpu, &mut rng, 3, 7, 16, (4, 4, 64, true, true));
    attention_case_heads(&gpu, &mut rng, 5, 19, 40, (8, 2, 16, true, false));
    attention_case_heads(&gpu, &mut rng, 5, 19, 40, (8, 2, 16, false, true));
    attention_case_heads(&gpu, &mut rng, 2, 5, 16, (16, 8, 128, true, true));
    // Above 64 (attention_tiled's HD128): several query and 16-key tiles
    // (the running max rescales), and head sizes that leave lanes' last
    // vec4s idle.
    attention_case_heads(&gpu, &mut rng, 3, 70, 80, (4, 2, 128, false, true));
    attention_case_heads(&gpu, &mut rng, 250, 20, 300, (6, 3, 96, true, false));
    attention_case_heads(&gpu, &mut rng, 0, 1, 8, (2, 1, 68, false, false));
}

#[test]
fn batched_prefill_matches_per_token_path_on_real_model() {
    let g = Gguf::open(common::model_path(common::MODEL_Q4_0)).expect("open");
    let cfg = Config::from_gguf(&g).expect("config");
    let w = Weights::from_gguf(&g, &cfg).expect("weights");
    let gpu = common::gpu();
    let mut m = GpuModel::new(&gpu, &cfg, &w, 64).expect("gpu model");
    // A 40-token prompt of ordinary ids.
    let prompt: Vec<u32> = (0..40u32).map(|i| 100 + i * 997 % 20000).collect();
    let greedy = |m: &mut GpuModel| {
        let mut out = Vec::new();
        m.generate_greedy(0, prompt.len(), 16, |t| {
            out.push(t);
            true
        })
        .expect("generate");
        out
    };

    m.prefill_per_token(0, &prompt).expect("per-token prefill");
    let want = m.read_logits().expect("logits");
    let want_tokens = greedy(&mut m);

    m.prefill(0, &prompt).expect("batched prefill");
    let got = m.read_logits().expect("logits");
    let rep = compare(&got, &want);
    eprintln!("batched vs per-token logits: {rep}");
    assert!(rep.passes(1e-4), "batched prefill logits: {rep}");
    assert_eq!(greedy(&mut m), want_tokens, "greedy continuation");

    // Chunk boundaries (16 + 16 + 8) and a prompt continued at a later start.
    m.set_prefill_chunk(16);
    m.prefill(0, &prompt[..25]).expect("prefill head");
    m.prefill(25, &prompt[25..]).expect("prefill tail");
    let rep = compare(&m.read_logits().expect("logits"), &want);
    assert!(rep.passes(1e-4), "chunked prefill logits: {rep}");

    assert!(
        m.prefill(60, &prompt[..5]).is_err(),
        "past the context window"
    );
    assert!(m.prefill(0, &[u32::MAX]).is_err(), "token out of range");
    assert!(m.prefill(0, &[]).is_err(), "empty prompt");
    assert_eq!(TOKENS_PER_TILE, 64);
}
