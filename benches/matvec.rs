//! Matvec benchmark: `cargo bench --bench matvec`.
//!
//! Prints, per kernel and shape, the median time (GPU timestamps when the
//! adapter has them), the effective GB/s of weight bytes read, and the % of the
//! read bandwidth the same adapter reaches with plain vec4 loads, in two modes:
//! - chain: dependent dispatches in one pass (each y += W·x waits for the
//!   previous), reported as µs per matvec — what one decode step sees;
//! - throughput: independent dispatches, GB/s.
//!
//! Every measurement rotates through enough copies of the weights to read
//! Q4GPU_BENCH_BYTES (default 512 MiB; several times an H100's 50 MB L2) so
//! the numbers measure memory, not cache. The seed's naive struct-read kernel
//! runs beside the coalesced one. Env: Q4GPU_BENCH_QUICK=1 for a short run,
//! Q4GPU_BENCH_SHAPES=<text> for only the shapes whose name contains it
//! (CI-sized), Q4GPU_BENCH_TYPES=q6_K,q4_K for only those formats, plus the
//! usual Q4GPU_* GPU options.

use q4gpu::gguf::GgmlType;
use q4gpu::gpu::matvec::Dispatch;
use q4gpu::gpu::matvec::{Op, Q8_ACT_FORMATS, RAW_FORMATS};
use q4gpu::gpu::shader::{BandwidthParams, MatvecParams};
use q4gpu::gpu::timing::{median, GpuTimer};
use q4gpu::gpu::{Gpu, GpuMatrix, Inputs, MatvecInput, MatvecKernels, MatvecTuning};

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

struct Rng(u64);
impl Rng {
    fn f(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Measures the read bandwidth of plain vec4<u32> loads over `bytes`, in GB/s.
fn read_bandwidth(gpu: &Gpu, timer: &GpuTimer, bytes: u64, reps: usize) -> f64 {
    let words = (bytes / 16) as u32;
    let src = gpu
        .storage("bw src", bytes, wgpu::BufferUsages::empty())
        .expect("bw buffer");
    let groups = 132 * 16u32;
    let dst = gpu
        .storage("bw dst", groups as u64 * 4, wgpu::BufferUsages::empty())
        .expect("bw dst");
    let l = gpu.layout(&[true, false]).expect("layout");
    let pipe = gpu
        .pipeline("bandwidth", &[], &[&l], (256, 1, 1))
        .expect("bandwidth pipeline");
    let params = BandwidthParams {
        words,
        stride: groups * 256,
        pad0: 0,
        pad1: 0,
    };
    let d =
        Dispatch::new(gpu, "bandwidth", &pipe, &l, &params, &[&src, &dst], groups).expect("bind");
    let mut t: Vec<f64> = (0..reps + 1)
        .map(|_| timer.time(gpu, |p| d.encode(p)).expect("time").best_ns())
        .skip(1)
        .collect();
    bytes as f64 / median(&mut t)
}

struct Case<'a> {
    name: &'a str,
    ty: GgmlType,
    rows: usize,
    cols: usize,
}

fn main() {
    let quick = std::env::var("Q4GPU_BENCH_QUICK").is_ok();
    let gpu = q4gpu::env::gpu(None, true).unwrap_or_else(|e| panic!("{e}"));
    let timer = GpuTimer::new(&gpu).expect("timer");
    let budget = env_u64("Q4GPU_BENCH_BYTES", if quick { 8 << 20 } else { 512 << 20 });
    let reps = if quick { 3 } else { 15 };
    println!("# q4gpu matvec benchmark");
    println!("adapter: {}", gpu.describe());
    println!(
        "timing: {}",
        if gpu.timestamps {
            "GPU timestamps"
        } else {
            "host wall clock (no timestamp queries)"
        }
    );
    let bw_bytes = (if quick { 64u64 << 20 } else { 1u64 << 30 }).min(gpu.max_binding() / 16 * 16);
    let bw = read_bandwidth(&gpu, &timer, bw_bytes, reps);
    println!(
        "read bandwidth (vec4<u32> loads, {} MiB): {:.1} GB/s\n",
        bw_bytes >> 20,
        bw
    );

    // Kernel sets: the defaults with each input mode (f32: the default on
    // small matrices and on Metal; int8x2: the default off Metal on matrices
    // of ≥ 2048 columns or ≥ 16384 rows), then the same inputs with other
    // tuning, so one table compares variants of a shape.
    let tuned = |inputs: Inputs, f: &dyn Fn(&mut MatvecTuning)| {
        let mut t = gpu.tuning.matvec.clone();
        f(&mut t);
        MatvecKernels::new(&gpu)
            .expect("kernels")
            .with_inputs(inputs)
            .with_tuning(t)
    };
    let (f32_, i8_, i8x2) = (Inputs::F32, Inputs::Int8, Inputs::Int8x2);
    let k = tuned(f32_, &|_| {});
    let k8 = tuned(i8_, &|_| {});
    let k82 = tuned(i8x2, &|_| {});
    // Beside the defaults (`dense` from 16384 rows of ≤ 32 blocks, else
    // `early` for rows of ≤ 32 blocks, `early2` for ≤ 64 blocks under 1024
    // rows): the same shapes with `late` fetch, and `early` with 2 or 4 rows
    // per thread on the tall ones (`dense` off).
    let early = |inputs: Inputs, on: bool, rpt: u32| {
        tuned(inputs, &move |t: &mut MatvecTuning| {
            t.early_fetch = on;
            (t.early_rpt, t.early_rpt_min_rows) = (rpt, 0);
            t.dense_rows = 0;
        })
    };
    let early_sets = [
        ("f32 late", early(f32_, false, 1), 1u32),
        ("int8 late", early(i8_, false, 1), 1),
        ("int8x2 late", early(i8x2, false, 1), 1),
        ("f32 early rpt2", early(f32_, true, 2), 2),
        ("int8 early rpt2", early(i8_, true, 2), 2),
        ("int8x2 early rpt2", early(i8x2, true, 2), 2),
        ("f32 early rpt4", early(f32_, true, 4), 4),
        ("int8 early rpt4", early(i8_, true, 4), 4),
        ("int8x2 early rpt4", early(i8x2, true, 4), 4),
    ];
    // The tall short-row shapes with `dense` at 32, 64 and 128 rows per
    // workgroup.
    let dense = |inputs: Inputs, rows: u32| {
        tuned(inputs, &move |t: &mut MatvecTuning| {
            (t.dense_rows, t.dense_min_rows) = (rows, 0)
        })
    };
    let dense_sets = [
        ("f32 dense 32 rows/wg", dense(f32_, 32)),
        ("int8 dense 32 rows/wg", dense(i8_, 32)),
        ("int8x2 dense 32 rows/wg", dense(i8x2, 32)),
        ("f32 dense 64 rows/wg", dense(f32_, 64)),
        ("int8 dense 64 rows/wg", dense(i8_, 64)),
        ("int8x2 dense 64 rows/wg", dense(i8x2, 64)),
        ("f32 dense 128 rows/wg", dense(f32_, 128)),
        ("int8 dense 128 rows/wg", dense(i8_, 128)),
        ("int8x2 dense 128 rows/wg", dense(i8x2, 128)),
    ];
    // Rows of more than 32 blocks with 1, 2 or 4 rows per thread in `late`
    // fetch, beside whatever the default is.
    let late = |inputs: Inputs, rpt: u32| {
        tuned(inputs, &move |t: &mut MatvecTuning| {
            (t.late_rpt, t.q6_k_late_rpt, t.q4_k_late_rpt) = (rpt, rpt, rpt);
            t.late_rpt_min_rows = 0
        })
    };
    let late_sets = [
        ("f32 late rpt1", late(f32_, 1)),
        ("int8 late rpt1", late(i8_, 1)),
        ("int8x2 late rpt1", late(i8x2, 1)),
        ("f32 late rpt2", late(f32_, 2)),
        ("int8 late rpt2", late(i8_, 2)),
        ("int8x2 late rpt2", late(i8x2, 2)),
        ("f32 late rpt4", late(f32_, 4)),
        ("int8 late rpt4", late(i8_, 4)),
        ("int8x2 late rpt4", late(i8x2, 4)),
    ];
    // Q4GPU_BENCH_SHAPES: run only the shapes whose name contains it.
    let only = std::env::var("Q4GPU_BENCH_SHAPES").unwrap_or_default();
    let naive_layout = gpu.layout(&[true, true, false]).expect("layout");
    let naive_pipe = gpu
        .pipeline("matvec_q4_0_naive", &[], &[&naive_layout], (32, 1, 1))
        .expect("naive pipeline");
    // Beside the sets every format runs, `lanes` and `wide` for the formats
    // new in issue 17 (Q5_0, Q5_1, the K-quants).
    let plain_sets = [
        ("f32 lanes", tuned(f32_, &|t| t.staged_min_rows = u32::MAX)),
        ("f32 wide", tuned(f32_, &|t| t.wide_min_blocks = 0)),
    ];
    let mut cases = vec![];
    let formats = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::Q5_0,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ];
    for ty in formats {
        for (name, r, c) in [
            ("attn 576x576", 576, 576),
            ("ffn up 1536x576", 1536, 576),
            ("ffn down 576x1536", 576, 1536),
            ("lm head 49152x576", 49152, 576),
        ] {
            cases.push(Case {
                name,
                ty,
                rows: r,
                cols: c,
            });
        }
        if !quick {
            for (name, r, c) in [
                ("4096x4096", 4096, 4096),
                ("14336x4096", 14336, 4096),
                ("1b qkv 3072x2048", 3072, 2048),
                ("1b gate|up 16384x2048", 16384, 2048),
                ("1b down 2048x8192", 2048, 8192),
                ("1b lm head 128256x2048", 128256, 2048),
            ] {
                cases.push(Case {
                    name,
                    ty,
                    rows: r,
                    cols: c,
                });
            }
        }
    }
    println!(
        "| kernel | variant | shape | MB | chain µs/matvec | chain GB/s | throughput GB/s | % of read BW | chain µs, cache-resident |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut rng = Rng(7);
    // Q4GPU_BENCH_TYPES: only these formats (comma-separated GGUF names, e.g. q6_K,q4_K).
    let types = std::env::var("Q4GPU_BENCH_TYPES").unwrap_or_default();
    let typed = |ty: GgmlType| types.is_empty() || types.split(',').any(|t| t == ty.name());
    let fits = |c: &&Case| {
        c.cols.is_multiple_of(c.ty.block_size()) && c.name.contains(only.as_str()) && typed(c.ty)
    };
    for c in cases.iter().filter(fits) {
        // 64 random rows repeated (quantizing a whole 14336×4096 matrix to
        // Q6_K takes seconds; what is in the rows does not change the time).
        let wf: Vec<f32> = (0..64 * c.cols).map(|_| rng.f()).collect();
        let wq64 = q4gpu::quant::quantize(c.ty, &wf).expect("quantize");
        let row_bytes = wq64.len() / 64;
        let wq: Vec<u8> = (0..c.rows)
            .flat_map(|r| wq64[(r % 64) * row_bytes..][..row_bytes].iter().copied())
            .collect();
        let copies = ((budget / wq.len() as u64).max(1) as usize).min(4096);
        let mats: Vec<GpuMatrix> = (0..copies)
            .map(|i| {
                GpuMatrix::upload(&gpu, &format!("w{i}"), c.ty, c.rows, c.cols, &wq)
                    .expect("upload")
            })
            .collect();
        let xv: Vec<f32> = (0..c.cols).map(|_| rng.f()).collect();
        let x = gpu
            .upload("x", bytemuck::cast_slice(&xv), wgpu::BufferUsages::empty())
            .expect("x");
        let y = gpu
            .storage("y", c.rows as u64 * 4, wgpu::BufferUsages::empty())
            .expect("y");
        let ys: Vec<wgpu::Buffer> = (0..copies.min(64))
            .map(|_| {
                gpu.storage("y", c.rows as u64 * 4, wgpu::BufferUsages::empty())
                    .expect("y")
            })
            .collect();
        let mut variants: Vec<(&str, String, Vec<Dispatch>, Vec<Dispatch>)> = Vec::new();
        let mut sets = vec![("f32", &k), ("int8", &k8)];
        if !Q8_ACT_FORMATS.contains(&c.ty) {
            sets.extend(plain_sets.iter().map(|(n, kk)| (*n, kk)));
        }
        if k82.inputs_for(c.ty, c.rows as u32, c.cols as u32) == Inputs::Int8x2 {
            sets.push(("int8x2", &k82));
        }
        let raw = RAW_FORMATS.contains(&c.ty);
        for (n, kk, rpt) in early_sets.iter().filter(|_| raw) {
            let no_pf = *rpt == 1 && c.cols <= 2048;
            if no_pf || (c.cols <= 1024 && c.rows >= 16384) {
                sets.push((n, kk));
            }
        }
        if raw && c.cols <= 1024 && c.rows >= 16384 {
            sets.extend(dense_sets.iter().map(|(n, kk)| (*n, kk)));
        }
        if raw && c.cols > 1024 {
            sets.extend(late_sets.iter().map(|(n, kk)| (*n, kk)));
        }
        for (vname, kk) in sets {
            let chain: Vec<Dispatch> = mats
                .iter()
                .map(|m| {
                    kk.bind(&gpu, m, &x, 0, &y, 0, MatvecInput::Plain, true)
                        .expect("bind")
                })
                .collect();
            let indep: Vec<Dispatch> = mats
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    kk.bind(
                        &gpu,
                        m,
                        &x,
                        0,
                        &ys[i % ys.len()],
                        0,
                        MatvecInput::Plain,
                        false,
                    )
                    .expect("bind")
                })
                .collect();
            let chosen = kk.variant_for(c.ty, c.rows as u32, c.cols as u32, Op::Plain);
            variants.push((vname, chosen.name(), chain, indep));
        }
        if c.ty == GgmlType::Q4_0 {
            let naive = |yb: &wgpu::Buffer, m: &GpuMatrix| {
                let p = MatvecParams {
                    rows: m.rows,
                    cols: m.cols,
                    blocks: m.cols / 32,
                    accumulate: 0,
                    x_offset: 0,
                    y_offset: 0,
                    eps: 0.0,
                    head_dim: 0,
                    max_chunks: 0,
                    group_rows: 0,
                    pad1: 0,
                    pad2: 0,
                };
                let mut d = Dispatch::new(
                    &gpu,
                    "naive",
                    &naive_pipe,
                    &naive_layout,
                    &p,
                    &[&m.buffer, &x, yb],
                    m.rows,
                )
                .expect("bind naive");
                d.weight_bytes = m.weight_bytes();
                d
            };
            let chain = mats.iter().map(|m| naive(&y, m)).collect();
            let indep = mats
                .iter()
                .enumerate()
                .map(|(i, m)| naive(&ys[i % ys.len()], m))
                .collect();
            variants.push(("naive (seed)", "matvec_q4_0_naive".into(), chain, indep));
        }
        let mb = wq.len() as f64 / 1e6;
        // The cache-resident chain: one matrix, 64 dependent dispatches (how
        // llama.cpp's test-backend-ops times its kernels).
        const CACHED: usize = 64;
        // Every variant is measured twice and the second round printed: on an
        // H100 the first variant measured after a new large shape was
        // uploaded (128256×2048, 148–279 MB) ran 2–5× slow, cache-resident
        // chain included, even after 300 ms of untimed passes.
        for (round, (vname, variant, chain, indep)) in std::iter::repeat_n(&variants, 2)
            .enumerate()
            .flat_map(|(r, v)| v.iter().map(move |x| (r, x)))
        {
            let mut tc: Vec<f64> = (0..reps + 1)
                .map(|_| {
                    timer
                        .time(&gpu, |p| chain.iter().for_each(|d| d.encode(p)))
                        .expect("time")
                        .best_ns()
                })
                .skip(1)
                .collect();
            let mut ti: Vec<f64> = (0..reps + 1)
                .map(|_| {
                    timer
                        .time(&gpu, |p| indep.iter().for_each(|d| d.encode(p)))
                        .expect("time")
                        .best_ns()
                })
                .skip(1)
                .collect();
            let mut tr: Vec<f64> = (0..reps + 1)
                .map(|_| {
                    timer
                        .time(&gpu, |p| (0..CACHED).for_each(|_| chain[0].encode(p)))
                        .expect("time")
                        .best_ns()
                })
                .skip(1)
                .collect();
            let per = median(&mut tc) / chain.len() as f64;
            let per_cached = median(&mut tr) / CACHED as f64;
            let thr = wq.len() as f64 * indep.len() as f64 / median(&mut ti);
            if round == 0 {
                continue;
            }
            println!(
                "| {} {} | {} | {} | {:.2} | {:.2} | {:.1} | {:.1} | {:.0}% | {:.2} |",
                c.ty,
                vname,
                variant,
                c.name,
                mb,
                per / 1e3,
                wq.len() as f64 / per,
                thr,
                100.0 * thr / bw,
                per_cached / 1e3
            );
        }
    }
}
