//! GPU matvec kernels against the CPU oracle (`quant::dot`), through mapped
//! readback: fresh random weights and inputs, outputs poisoned with NaN first,
//! every format, SmolLM2-135M shapes and odd ones, both reduction paths, plain,
//! accumulating and RMSNorm-fused. Runs on whatever adapter wgpu finds (on CI:
//! lavapipe, subgroup size 8); no adapter is a failure, not a skip.

mod common;

use common::{gpu_with as gpu, int8_input, rmsnorm, swiglu, Rng};

use q4gpu::gguf::GgmlType;
use q4gpu::gpu::matvec::{Family, Op, Q8_ACT_FORMATS, RAW_FORMATS};
use q4gpu::gpu::{
    compare, read_f32, Gpu, GpuMatrix, Inputs, MatvecInput, MatvecKernels, MatvecTuning,
};

/// The device's matvec kernels with `inputs` and its default tuning changed by `f`.
fn tuned(gpu: &Gpu, inputs: Inputs, f: impl FnOnce(&mut MatvecTuning)) -> MatvecKernels {
    let mut t = gpu.tuning.matvec.clone();
    f(&mut t);
    MatvecKernels::new(gpu)
        .unwrap()
        .with_inputs(inputs)
        .with_tuning(t)
}
use q4gpu::quant;

/// Relative L2 error allowed: both sides accumulate in f32, only the order differs.
const TOL: f64 = 1e-5;

/// Int8-input (INT8) kernels against the oracle that quantizes x the same way
/// (`quant::dot_q8`): integer block sums agree exactly; what remains is f32
/// order and the odd code rounded the other way when x·(1/d) lands within an
/// ulp of a half.
///
/// Measured ≤ 6e-5 on lavapipe for most cases, 3.2e-4 for a 7-row, 14336-column
/// SwiGLU case (the GPU's exp differs from the CPU's in the last bits, which
/// flips codes at rounding ties); one code off by one moves a 13-row, 64-column
/// case by ~1e-4, while a wrong scale or offset term costs 1e-1 and more.
const TOL_Q8: f64 = 1e-3;

/// Int8-input kernels against the f32 oracle: the price of 8-bit inputs.
/// Each input is off by at most d/2 (d = max|x|/127 per block), about
/// d/√12 ≈ 2.3e-3 rms for inputs uniform in ±1 (rms 0.58): ~4e-3 relative,
/// with wide spread on shapes of few rows and columns (13×64: 1.1e-2).
const TOL_Q8_VS_F32: f64 = 3e-2;

/// Two-level int8 inputs (INT8X2) against the f32 oracle: each input is off by
/// at most d/508, d/880 rms: ≈ 1.5e-5 relative for inputs uniform in ±1,
/// spread wider on few rows and columns (worst seen 7e-5 on lavapipe).
const TOL_Q8X2_VS_F32: f64 = 2e-4;

/// int8x2 against the f32 dot with the two-level input: Q8_0, whose block dot
/// has no offset term, at TOL (the second level is ~4e-3 of the input, so a
/// wrong scale for it, d/256 for d/254, moves the result by ~3e-5); Q4_0 and
/// Q4_1 at TOL_Q8, as int8: their offset terms (−8·s, m·s) cancel most of the
/// integer dot, which magnifies f32 rounding.
fn tol_xq2(ty: GgmlType) -> f64 {
    if ty == GgmlType::Q8_0 {
        TOL
    } else {
        TOL_Q8
    }
}

/// For outputs that cancel to near zero (a 1-row accumulate, say), relative
/// error is meaningless; then the absolute error must stay at f32 rounding
/// scale for a sum of `cols` terms of magnitude ≤ 1: 1e-6·√cols.
fn abs_tol(cols: usize) -> f64 {
    1e-6 * (cols as f64).sqrt()
}

/// y = W·x on the CPU, the oracle.
fn cpu_matvec(ty: GgmlType, w: &[u8], rows: usize, cols: usize, x: &[f32]) -> Vec<f32> {
    let rb = ty.row_bytes(cols as u64).unwrap() as usize;
    (0..rows)
        .map(|r| quant::dot(ty, &w[r * rb..(r + 1) * rb], x).unwrap())
        .collect()
}

/// y = W·q8(x) on the CPU with x quantized to int8 blocks: the int8 oracle.
fn cpu_matvec_q8(ty: GgmlType, w: &[u8], rows: usize, cols: usize, x: &[f32]) -> Vec<f32> {
    let rb = ty.row_bytes(cols as u64).unwrap() as usize;
    let xq = quant::q8_act::quantize(x);
    (0..rows)
        .map(|r| quant::dot_q8(ty, &w[r * rb..(r + 1) * rb], &xq).unwrap())
        .collect()
}

thread_local! {
    /// Worst relative error of a int8 case against the f32 oracle, for the log.
    static WORST_VS_F32: std::cell::Cell<f64> = const { std::cell::Cell::new(0.0) };
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Plain,
    Accumulate,
    Norm,
    SwiGlu,
}

/// Runs one case and returns its relative error (asserting it is within TOL).
#[allow(clippy::too_many_arguments)]
fn run_case(
    gpu: &Gpu,
    k: &MatvecKernels,
    rng: &mut Rng,
    ty: GgmlType,
    rows: usize,
    cols: usize,
    mode: Mode,
) -> f64 {
    let wf = rng.vec(rows * cols);
    let wq = quant::quantize(ty, &wf).unwrap();
    // SwiGlu reads gate then up: 2·cols inputs.
    let x = rng.vec(if let Mode::SwiGlu = mode {
        2 * cols
    } else {
        cols
    });
    let gain = rng.vec(cols);
    let eps = 1e-5;
    let m = GpuMatrix::upload(gpu, "w", ty, rows, cols, &wq).unwrap();
    // x sits at an offset inside a larger buffer, y likewise, to exercise offsets.
    let x_off = 8;
    let y_off = 3;
    let mut xbuf = vec![f32::NAN; x_off];
    xbuf.extend_from_slice(&x);
    let xg = gpu
        .upload(
            "x",
            bytemuck::cast_slice(&xbuf),
            wgpu::BufferUsages::empty(),
        )
        .unwrap();
    let prior = rng.vec(rows);
    let mut y0 = vec![f32::NAN; y_off + rows + 5];
    if let Mode::Accumulate = mode {
        y0[y_off..y_off + rows].copy_from_slice(&prior);
    }
    let yg = gpu
        .upload("y", bytemuck::cast_slice(&y0), wgpu::BufferUsages::COPY_SRC)
        .unwrap();
    let gg = gpu
        .upload(
            "gain",
            bytemuck::cast_slice(&gain),
            wgpu::BufferUsages::empty(),
        )
        .unwrap();
    let input = match mode {
        Mode::Norm => MatvecInput::RmsNorm { gain: &gg, eps },
        Mode::SwiGlu => MatvecInput::SwiGlu,
        _ => MatvecInput::Plain,
    };
    let op = k
        .bind(
            gpu,
            &m,
            &xg,
            x_off as u32,
            &yg,
            y_off as u32,
            input,
            matches!(mode, Mode::Accumulate),
        )
        .unwrap();
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    op.encode_into(&mut enc);
    gpu.queue.submit([enc.finish()]);
    let out = read_f32(gpu, &yg, 0, y_off + rows + 5).unwrap();
    let expect = match mode {
        Mode::Plain => cpu_matvec(ty, &wq, rows, cols, &x),
        Mode::Accumulate => cpu_matvec(ty, &wq, rows, cols, &x)
            .iter()
            .zip(&prior)
            .map(|(a, b)| a + b)
            .collect(),
        Mode::Norm => cpu_matvec(ty, &wq, rows, cols, &rmsnorm(&x, &gain, eps)),
        Mode::SwiGlu => cpu_matvec(ty, &wq, rows, cols, &swiglu(&x, cols)),
    };
    let got = &out[y_off..y_off + rows];
    let inputs = k.inputs_for(ty, rows as u32, cols as u32);
    let rep = if inputs != Inputs::F32 {
        // The kernel quantizes its input (x, x ⊙ gain, or the SwiGLU product)
        // and applies the RMSNorm scale after the dot: mirror that, with the
        // int8 oracle (INT8) or the f32 dot with the input the two levels
        // stand for (INT8X2).
        let norm = matches!(mode, Mode::Norm).then_some((gain.as_slice(), eps));
        let (input, scale) = int8_input(&x, cols, norm, matches!(mode, Mode::SwiGlu));
        let (mut expect_q, tol, tol_vs_f32, kind) = if inputs == Inputs::Int8x2 {
            let xh = quant::q8_act::two_level_input(&input);
            let e = cpu_matvec(ty, &wq, rows, cols, &xh);
            (e, tol_xq2(ty), TOL_Q8X2_VS_F32, "int8x2")
        } else {
            let e = cpu_matvec_q8(ty, &wq, rows, cols, &input);
            (e, TOL_Q8, TOL_Q8_VS_F32, "int8")
        };
        for (i, v) in expect_q.iter_mut().enumerate() {
            *v *= scale;
            if let Mode::Accumulate = mode {
                *v += prior[i];
            }
        }
        let vs_f32 = compare(got, &expect);
        if rows > 1 {
            WORST_VS_F32.with(|w| w.set(w.get().max(vs_f32.rel_err)));
        }
        assert!(
            vs_f32.passes(tol_vs_f32) || (vs_f32.non_finite == 0 && rows == 1),
            "{ty} {rows}x{cols} {mode:?} {kind} against the f32 oracle: {vs_f32}"
        );
        let rep = compare(got, &expect_q);
        assert!(
            rep.passes(tol) || (rep.non_finite == 0 && rep.max_abs_err <= 10.0 * abs_tol(cols)),
            "{ty} {rows}x{cols} {mode:?} {kind} subgroups={}: {rep}",
            gpu.subgroups
        );
        rep
    } else {
        let rep = compare(got, &expect);
        assert!(
            rep.passes(TOL) || (rep.non_finite == 0 && rep.max_abs_err <= abs_tol(cols)),
            "{ty} {rows}x{cols} {mode:?} subgroups={}: {rep}",
            gpu.subgroups
        );
        rep
    };
    // Values around the output range stay poisoned: nothing wrote out of bounds.
    assert!(
        out[..y_off].iter().all(|v| v.is_nan()),
        "write before y range"
    );
    assert!(
        out[y_off + rows..].iter().all(|v| v.is_nan()),
        "write past y range"
    );
    rep.rel_err
}

/// SmolLM2-135M projections, plus shapes that are not multiples of 8 rows or
/// 256 columns (24×3104: a full chunk of 64 blocks, then 33 more; fewer rows
/// than a workgroup of 2 or 4 rows per thread takes).
const SHAPES: &[(usize, usize)] = &[
    (576, 576),
    (192, 576),
    (1536, 576),
    (576, 1536),
    (13, 64),
    (1, 32),
    (9, 96),
    (1000, 4096),
    (37, 2048),
    (7, 14336),
    (24, 3104),
];

/// Shapes for the K-quants (rows of whole 256-element super-blocks) beside
/// SHAPES' multiples of 256: one super-block, 3 of them on 9 rows, and a
/// full chunk of 64 blocks then 24 more.
const K_SHAPES: &[(usize, usize)] = &[(13, 256), (1, 256), (9, 768), (24, 2816)];

/// The int8-input tests' shapes: all of a format's for Q4_0, Q4_1 and
/// Q8_0; for the formats that share `block_codes` (one int8 path) the
/// SmolLM2 projections, the odd ones and one past a 64-block chunk.
fn shapes_int8(ty: GgmlType) -> Vec<(usize, usize)> {
    let all = shapes(ty);
    if Q8_ACT_FORMATS.contains(&ty) {
        return all;
    }
    let keep = [
        (576, 576),
        (1536, 576),
        (13, 64),
        (9, 96),
        (24, 3104),
        (13, 256),
        (9, 768),
        (24, 2816),
        (37, 2048),
    ];
    all.into_iter().filter(|s| keep.contains(s)).collect()
}

/// The shapes a format is tested on: SHAPES whose rows hold whole blocks,
/// and K_SHAPES for the 256-element formats.
fn shapes(ty: GgmlType) -> Vec<(usize, usize)> {
    let block = ty.block_size();
    let extra = if block == 256 { K_SHAPES } else { &[] };
    SHAPES
        .iter()
        .chain(extra)
        .copied()
        .filter(|&(_, c)| c % block == 0)
        .collect()
}

fn all_formats(subgroups: bool) {
    let gpu = gpu(subgroups);
    eprintln!("adapter: {}", gpu.describe());
    let mut rng = Rng(0x5EED + subgroups as u64);
    // Every family: `wide` from 64 blocks per row (off by default) with
    // `staged` below that; `staged` at every size (the default; in chunks of
    // 64 blocks past 64) with `early` fetch for rows ≤ 32 blocks (4 rows per
    // thread from 16384 rows: the LM head where `dense` is off; `early2` for
    // fewer than 1024 rows of ≤ 64 blocks: 576×1536, 37×2048), without early
    // fetch (`late`), `early` with 4 rows per thread on every shape, `late`
    // with 4 rows per thread on every shape of more than 32 blocks per row;
    // then `lanes`. The LM head runs on `dense` where the device has room.
    type Config = (&'static str, fn(&mut MatvecTuning));
    let configs: [Config; 6] = [
        ("wide from 64 blocks", |t| t.wide_min_blocks = 64),
        ("default", |_| {}),
        ("late fetch", |t| t.early_fetch = false),
        ("early rpt 4", |t| {
            (t.early_rpt, t.early_rpt_min_rows) = (4, 0)
        }),
        ("late rpt 4", |t| set_late_rpt(t, 4)),
        ("lanes", |t| t.staged_min_rows = u32::MAX),
    ];
    for (i, (what, f)) in configs.into_iter().enumerate() {
        let k = tuned(&gpu, Inputs::F32, f);
        let mut worst = 0.0f64;
        for ty in q4gpu::gpu::matvec::FORMATS {
            // Formats without Raw run wide, staged late rpt 1 and lanes
            // whatever the tuning: configs 0, 1 and 5 reach all three.
            if !RAW_FORMATS.contains(&ty) && ![0, 1, 5].contains(&i) {
                continue;
            }
            for (r, c) in shapes(ty) {
                for mode in [Mode::Plain, Mode::Accumulate, Mode::Norm, Mode::SwiGlu] {
                    worst = worst.max(run_case(&gpu, &k, &mut rng, ty, r, c, mode));
                }
            }
        }
        // The tied LM head of SmolLM2 is 49152×576 (Q8_0 as shipped; Q4_0 requantized).
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0] {
            worst = worst.max(run_case(&gpu, &k, &mut rng, ty, 49152, 576, Mode::Norm));
        }
        eprintln!("worst relative error (subgroups={subgroups}, {what}): {worst:.3e}");
    }
}

#[test]
fn matvec_matches_cpu_subgroup_path() {
    common::require_subgroups();
    all_formats(true);
}

#[test]
fn matvec_matches_cpu_workgroup_memory_path() {
    all_formats(false);
}

/// The int8-input (INT8) kernels of Q4_0, Q4_1 and Q8_0, every shape and input
/// mode, with and without subgroups, against both oracles.
#[test]
fn matvec_q8_activations_match_cpu() {
    common::each_reduction_path(|gpu, subgroups| {
        let mut rng = Rng(0x0808 + subgroups as u64);
        let mut worst = 0.0f64;
        // The default (`early` for rows ≤ 32 blocks, `dense` for the LM
        // head), `late` everywhere, and 2 rows per thread on every shape,
        // `early` and `late` (past 32 blocks).
        let configs: [fn(&mut MatvecTuning); 3] = [
            |_| {},
            |t| t.early_fetch = false,
            |t| {
                (t.early_rpt, t.early_rpt_min_rows) = (2, 0);
                set_late_rpt(t, 2);
            },
        ];
        for f in configs {
            let k = tuned(&gpu, Inputs::Int8, f);
            for ty in RAW_FORMATS {
                assert_eq!(k.inputs_for(ty, 1, 32), Inputs::Int8);
                for (r, c) in shapes_int8(ty) {
                    for mode in [Mode::Plain, Mode::Accumulate, Mode::Norm, Mode::SwiGlu] {
                        worst = worst.max(run_case(&gpu, &k, &mut rng, ty, r, c, mode));
                    }
                }
            }
            worst = worst.max(run_case(
                &gpu,
                &k,
                &mut rng,
                GgmlType::Q4_0,
                49152,
                576,
                Mode::Norm,
            ));
        }
        eprintln!(
            "worst relative error int8 (subgroups={subgroups}): {worst:.3e} against the int8 oracle, {:.3e} against f32",
            WORST_VS_F32.with(|w| w.get())
        );
    });
}

/// The two-level int8-input (INT8X2) kernels of Q4_0, Q4_1 and Q8_0: every shape
/// and input mode, both reduction paths, each way of fetching weights (early and
/// early2 by default, late, early and late with 2 rows per thread, both with
/// 4) and the LM head's default kernel, against the f32 dot with the
/// two-level input and against the f32 oracle.
#[test]
fn matvec_q8_two_levels_match_cpu() {
    common::each_reduction_path(|gpu, subgroups| {
        let mut rng = Rng(0x0828 + subgroups as u64);
        let mut worst = 0.0f64;
        WORST_VS_F32.with(|w| w.set(0.0));
        let configs: [fn(&mut MatvecTuning); 4] = [
            |_| {},
            |t| t.early_fetch = false,
            |t| {
                (t.early_rpt, t.early_rpt_min_rows) = (2, 0);
                set_late_rpt(t, 2);
            },
            |t| {
                (t.early_rpt, t.early_rpt_min_rows) = (4, 0);
                set_late_rpt(t, 4);
                t.dense_rows = 0;
            },
        ];
        for f in configs {
            let k = tuned(&gpu, Inputs::Int8x2, f);
            for ty in RAW_FORMATS {
                for (r, c) in shapes_int8(ty) {
                    for mode in [Mode::Plain, Mode::Accumulate, Mode::Norm, Mode::SwiGlu] {
                        worst = worst.max(run_case(&gpu, &k, &mut rng, ty, r, c, mode));
                    }
                }
            }
        }
        // SmolLM2's tied LM head with the default kernel choice (`dense`, or
        // `early` with 4 rows per thread from 16384 rows where it does not
        // fit), int8x2 as `Inputs::Auto` picks it.
        let k = MatvecKernels::new(&gpu).unwrap().with_inputs(Inputs::Auto);
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0] {
            assert_eq!(k.inputs_for(ty, 49152, 576), Inputs::Int8x2);
            worst = worst.max(run_case(&gpu, &k, &mut rng, ty, 49152, 576, Mode::Norm));
        }
        eprintln!(
            "worst relative error int8x2 (subgroups={subgroups}): {worst:.3e} against the two-level oracle, {:.3e} against f32",
            WORST_VS_F32.with(|w| w.get())
        );
    });
}

/// The `dense` kernels (rows of ≤ 32 blocks as one slab of blocks per
/// workgroup, every thread busy): every format, f32, int8 and two-level int8
/// inputs, every input mode, both reduction paths, on every short-row shape
/// with the default rows per workgroup (up to 256, as many as DENSE_ITEMS
/// allows), with odd counts (7 rows: slabs that split rows between
/// threads unevenly and a partial last workgroup; 100 rows) and with 1000
/// asked for (held to 256 rows, or fewer by DENSE_ITEMS), and on
/// SmolLM2's LM head as the model runs it (the default kernels, RMSNorm
/// fused).
#[test]
fn matvec_dense_matches_cpu() {
    common::each_reduction_path(|gpu, subgroups| {
        assert!(
            MatvecKernels::new(&gpu).unwrap().dense_available(),
            "the adapter's workgroup memory is too small for `dense` kernels: they would go untested"
        );
        let mut rng = Rng(0xDE05 + subgroups as u64);
        let mut worst = [0.0f64; 3];
        for (i, inputs) in [Inputs::F32, Inputs::Int8, Inputs::Int8x2]
            .into_iter()
            .enumerate()
        {
            WORST_VS_F32.with(|w| w.set(0.0));
            for group_rows in [256, 7, 100, 1000] {
                let k = tuned(&gpu, inputs, |t| {
                    (t.dense_rows, t.dense_min_rows) = (group_rows, 0);
                });
                let dense = |ty, r: usize, c: usize| {
                    k.variant_for(ty, r as u32, c as u32, Op::Plain).family == Family::Dense
                };
                for ty in RAW_FORMATS {
                    for (r, c) in shapes_int8(ty).into_iter().filter(|s| s.1 <= 1024) {
                        assert!(dense(ty, r, c));
                        for mode in [Mode::Plain, Mode::Accumulate, Mode::Norm, Mode::SwiGlu] {
                            worst[i] = worst[i].max(run_case(&gpu, &k, &mut rng, ty, r, c, mode));
                        }
                    }
                }
                // (The 64- and 50-block rows run `dense` only with
                // Q4GPU_DENSE_MAX_BLOCKS=64.)
                for (r, c) in [(1001, 1024), (300, 800), (37, 2048), (130, 1600)] {
                    if c <= 1024 {
                        assert!(dense(GgmlType::Q4_0, r, c));
                    }
                    worst[i] = worst[i].max(run_case(
                        &gpu,
                        &k,
                        &mut rng,
                        GgmlType::Q4_0,
                        r,
                        c,
                        Mode::Plain,
                    ));
                }
            }
            let k = MatvecKernels::new(&gpu).unwrap().with_inputs(inputs);
            for ty in [GgmlType::Q8_0, GgmlType::Q4_0] {
                assert!(
                    k.variant_for(ty, 49152, 576, Op::Norm).family == Family::Dense,
                    "the LM head runs on `dense` by default"
                );
                worst[i] = worst[i].max(run_case(&gpu, &k, &mut rng, ty, 49152, 576, Mode::Norm));
            }
            eprintln!(
                "worst relative error dense {inputs:?} (subgroups={subgroups}): {:.3e}, {:.3e} against f32",
                worst[i],
                WORST_VS_F32.with(|w| w.get())
            );
        }
    });
}

#[test]
fn bad_arguments_are_errors() {
    let gpu = gpu(false);
    let wq = quant::quantize(GgmlType::Q4_0, &vec![0.5; 64]).unwrap();
    // Wrong byte length.
    assert!(GpuMatrix::upload(&gpu, "w", GgmlType::Q4_0, 2, 64, &wq[..30]).is_err());
    // Columns not a multiple of 32.
    assert!(GpuMatrix::upload(&gpu, "w", GgmlType::F32, 1, 31, &[0u8; 124]).is_err());
    let k = MatvecKernels::new(&gpu).unwrap();
    let m = GpuMatrix::upload(&gpu, "w", GgmlType::Q4_0, 2, 32, &wq[..36]).unwrap();
    let small = gpu.storage("x", 64, wgpu::BufferUsages::empty()).unwrap();
    let err = k
        .bind(&gpu, &m, &small, 32, &small, 0, MatvecInput::Plain, false)
        .err()
        .expect("x too small");
    assert!(err.to_string().contains("x buffer"), "{err}");
}

/// The attention merge fused into the output projection (`AttnMerge`, kernel
/// flag ATTN): x holds per-chunk records (m, l, −, −, o) of random chunks, the
/// step buffer a position in the last of `n` chunks; the CPU merges them
/// (Σ_c e^(m_c−M)·o_c / Σ_c e^(m_c−M)·l_c) and runs the oracle. The record past
/// the last chunk is poisoned with a huge m, which would dominate a kernel
/// that read one chunk too many; other cases hold exactly n chunks with a
/// position past them, which the kernel clamps to the buffer. f32, int8 and
/// two-level int8 inputs, early fetch on and off, 1, 2 or 4 rows per thread on rows of more than 32
/// blocks (the 1152-column case), both reduction paths.
#[test]
fn matvec_attention_merge_matches_cpu() {
    common::each_reduction_path(|gpu, subgroups| {
        let mut rng = Rng(0xA77 + subgroups as u64);
        let mut worst = 0.0f64;
        for (inputs, pf, cr) in [
            (Inputs::F32, true, 1),
            (Inputs::F32, false, 2),
            (Inputs::Int8, true, 1),
            (Inputs::Int8, false, 4),
            (Inputs::Int8x2, true, 1),
            (Inputs::Int8x2, false, 2),
        ] {
            let k = tuned(&gpu, inputs, |t| {
                t.early_fetch = pf;
                set_late_rpt(t, cr);
            });
            for (ty, rows, heads, hd, n) in [
                (GgmlType::Q4_0, 576, 9, 64, 2),
                (GgmlType::Q4_0, 576, 9, 64, 17),
                (GgmlType::Q8_0, 13, 4, 16, 3),
                (GgmlType::Q8_0, 7, 8, 4, 2),
                (GgmlType::Q4_1, 100, 32, 64, 5),
                (GgmlType::Q4_0, 100, 18, 64, 3),
                (GgmlType::F32, 9, 3, 32, 2),
            ] {
                let cols = heads * hd;
                let rec = hd + 4;
                // Records for n chunks and one poisoned chunk after them.
                let mut part = vec![0f32; (n + 1) * heads * rec];
                for c in 0..=n {
                    for h in 0..heads {
                        let b = (c * heads + h) * rec;
                        let m = if c == n { 1e30 } else { 4.0 * rng.f() };
                        let l = 1.0 + 10.0 * (rng.f() + 1.0);
                        part[b] = m;
                        part[b + 1] = l;
                        part[b + 2] = f32::NAN;
                        part[b + 3] = f32::NAN;
                        for d in 0..hd {
                            part[b + 4 + d] = l * rng.f();
                        }
                    }
                }
                let mut x = vec![0f32; cols];
                for h in 0..heads {
                    let mx = (0..n)
                        .map(|c| part[(c * heads + h) * rec])
                        .fold(f32::MIN, f32::max);
                    let mut l = 0.0;
                    let mut o = vec![0f32; hd];
                    for c in 0..n {
                        let b = (c * heads + h) * rec;
                        let e = (part[b] - mx).exp();
                        l += e * part[b + 1];
                        for d in 0..hd {
                            o[d] += e * part[b + 4 + d];
                        }
                    }
                    for d in 0..hd {
                        x[h * hd + d] = o[d] / l;
                    }
                }
                let wf = rng.vec(rows * cols);
                let wq = quant::quantize(ty, &wf).unwrap();
                let m = GpuMatrix::upload(&gpu, "w", ty, rows, cols, &wq).unwrap();
                // A position inside chunk n − 1; or, every other case, a
                // buffer of exactly n chunks and a position 3 chunks past
                // them: the kernel must stop at what the buffer holds
                // (max_chunks). A weak check: reads past the buffer that
                // return zeros would not change the merge either; it fails
                // only where they return other data.
                let clamp = rng.next().is_multiple_of(2);
                let mut pos = 64 * (n as u32 - 1) + (rng.next() % 64) as u32;
                if clamp {
                    part.truncate(n * heads * rec);
                    pos += 3 * 64;
                }
                let xb = gpu
                    .upload(
                        "part",
                        bytemuck::cast_slice(&part),
                        wgpu::BufferUsages::empty(),
                    )
                    .unwrap();
                let step = gpu
                    .upload(
                        "step",
                        bytemuck::cast_slice(&[pos, 0, 0, 0]),
                        wgpu::BufferUsages::empty(),
                    )
                    .unwrap();
                let y = gpu
                    .upload(
                        "y",
                        bytemuck::cast_slice(&vec![f32::NAN; rows]),
                        wgpu::BufferUsages::COPY_SRC,
                    )
                    .unwrap();
                let op = k
                    .bind(
                        &gpu,
                        &m,
                        &xb,
                        0,
                        &y,
                        0,
                        MatvecInput::AttnMerge {
                            step: &step,
                            head_dim: hd as u32,
                        },
                        false,
                    )
                    .unwrap();
                let mut enc = gpu.device.create_command_encoder(&Default::default());
                op.encode_into(&mut enc);
                gpu.queue.submit([enc.finish()]);
                let got = read_f32(&gpu, &y, 0, rows).unwrap();
                let (want, tol) = match k.inputs_for(ty, rows as u32, cols as u32) {
                    Inputs::Int8 => (cpu_matvec_q8(ty, &wq, rows, cols, &x), TOL_Q8),
                    Inputs::Int8x2 => (
                        cpu_matvec(ty, &wq, rows, cols, &quant::q8_act::two_level_input(&x)),
                        tol_xq2(ty),
                    ),
                    _ => (cpu_matvec(ty, &wq, rows, cols, &x), TOL),
                };
                let rep = compare(&got, &want);
                assert!(
                    rep.passes(tol),
                    "{ty} {rows}x{cols} ({heads} heads of {hd}, {n} chunks, position {pos}, inputs {inputs:?}, early fetch {pf}, late rows per thread {cr}, subgroups {subgroups}): {rep}"
                );
                worst = worst.max(rep.rel_err);
            }
        }
        eprintln!("worst relative error, attention merge (subgroups={subgroups}): {worst:.3e}");
    });
}

/// The attention merge input rejects a head size that does not fit.
#[test]
fn attention_merge_bad_arguments_are_errors() {
    let gpu = gpu(false);
    let k = MatvecKernels::new(&gpu).unwrap();
    let wq = quant::quantize(GgmlType::Q4_0, &vec![0.5; 2 * 64]).unwrap();
    let m = GpuMatrix::upload(&gpu, "w", GgmlType::Q4_0, 2, 64, &wq).unwrap();
    let buf = gpu.storage("x", 4096, wgpu::BufferUsages::empty()).unwrap();
    for hd in [0u32, 3, 24, 128] {
        let err = k
            .bind(
                &gpu,
                &m,
                &buf,
                0,
                &buf,
                0,
                MatvecInput::AttnMerge {
                    step: &buf,
                    head_dim: hd,
                },
                false,
            )
            .err()
            .expect("bad head size");
        assert!(err.to_string().contains("head size"), "{hd}: {err}");
    }
}

/// `late` kernels with `rpt` rows per thread from the first row, every
/// format included (Q4_K and Q6_K have their own defaults).
fn set_late_rpt(t: &mut MatvecTuning, rpt: u32) {
    (t.late_rpt, t.q4_k_late_rpt, t.q6_k_late_rpt) = (rpt, rpt, rpt);
    t.late_rpt_min_rows = 0;
}
