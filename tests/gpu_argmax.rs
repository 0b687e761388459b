//! The GPU argmax (greedy sampling) against a CPU reference: first index of
//! the largest value, NaN never wins, on lengths around the kernel's 8×256
//! unrolled stride (one workgroup's span in the two-pass `Argmax`) and the
//! SmolLM2 and Llama-3 vocabularies, with planted ties (also across spans),
//! all-NaN spans and NaNs; both the one-workgroup kernel and `gpu::Argmax`.

mod common;

use common::Rng;
use q4gpu::gpu::argmax::ARGMAX_SPAN;
use q4gpu::gpu::shader::ArgmaxParams;
use q4gpu::gpu::{read_u32, Argmax, Dispatch, Gpu};

/// First index of the largest non-NaN value (None if all are NaN).
fn cpu_argmax(v: &[f32]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, &x) in v.iter().enumerate() {
        if x.is_nan() {
            continue;
        }
        if best.is_none_or(|b| x > v[b]) {
            best = Some(i);
        }
    }
    best
}

/// A token buffer poisoned with u32::MAX: the kernel must overwrite it.
fn poisoned_tok(gpu: &Gpu) -> wgpu::Buffer {
    gpu.upload(
        "tok",
        bytemuck::cast_slice(&[u32::MAX; 4]),
        wgpu::BufferUsages::COPY_SRC,
    )
    .expect("tok")
}

/// gpu::Argmax of the first `n` logits into a poisoned token buffer: (the id
/// read back, dispatches used).
fn run_argmax(gpu: &Gpu, logits: &wgpu::Buffer, n: usize) -> (usize, usize) {
    let tok = poisoned_tok(gpu);
    let a = Argmax::new(gpu, logits, n, &tok).expect("argmax");
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        a.encode(&mut pass);
    }
    gpu.queue.submit([enc.finish()]);
    let got = read_u32(gpu, &tok, 0, 1).expect("readback")[0] as usize;
    (got, a.dispatches())
}

#[test]
fn argmax_matches_cpu_with_ties_and_nans() {
    let gpu = common::gpu();
    let l = gpu.layout(&[true, false]).unwrap();
    let pipe = gpu
        .pipeline("argmax", &[], &[&l], (256, 1, 1))
        .expect("argmax pipeline");
    let mut rng = Rng(0xA4);
    for n in [
        1usize, 7, 255, 256, 2047, 2048, 2049, 4100, 6145, 49152, 128256,
    ] {
        for case in 0..6 {
            let mut v = rng.vec(n);
            let top = rng.next() as usize % n;
            match case {
                // Plain random values.
                0 => {}
                // The maximum planted twice: the lower index must win.
                1 => {
                    let dup = rng.next() as usize % n;
                    v[top] = 3.0;
                    v[dup] = 3.0;
                }
                // NaNs everywhere around a planted maximum.
                2 => {
                    for x in v.iter_mut().step_by(3) {
                        *x = f32::NAN;
                    }
                    v[top] = 2.5;
                }
                // The maximum in a later span and tied in the first one: the
                // pass over the spans' pairs must keep the lower index.
                3 => {
                    let a = rng.next() as usize % n.min(ARGMAX_SPAN as usize);
                    let b = n - 1 - rng.next() as usize % n.min(ARGMAX_SPAN as usize);
                    v[b] = 4.0;
                    v[a] = 4.0;
                }
                // Whole spans of NaN (every span but the last), maximum after them.
                4 => {
                    let last = (n - 1) / ARGMAX_SPAN as usize * ARGMAX_SPAN as usize;
                    v[..last].iter_mut().for_each(|x| *x = f32::NAN);
                    v[last + rng.next() as usize % (n - last)] = 1.5;
                }
                // All equal: index 0.
                _ => v.iter_mut().for_each(|x| *x = -1.25),
            }
            let logits = gpu
                .upload(
                    "logits",
                    bytemuck::cast_slice(&v),
                    wgpu::BufferUsages::empty(),
                )
                .expect("logits");
            let tok = poisoned_tok(&gpu);
            let params = ArgmaxParams {
                n: n as u32,
                span: 0,
                total: n as u32,
                pad0: 0,
            };
            let d = Dispatch::new(&gpu, "argmax", &pipe, &l, &params, &[&logits, &tok], 1)
                .expect("bind");
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            d.encode_into(&mut enc);
            gpu.queue.submit([enc.finish()]);
            let want = cpu_argmax(&v).expect("some value is not NaN");
            let got = read_u32(&gpu, &tok, 0, 1).expect("readback")[0] as usize;
            assert_eq!(
                got, want,
                "one workgroup, n={n} case={case}: GPU {got}, CPU {want}"
            );
            // The same through gpu::Argmax (two passes past one span).
            let (got, dispatches) = run_argmax(&gpu, &logits, n);
            assert_eq!(dispatches, if n as u32 > ARGMAX_SPAN { 2 } else { 1 });
            assert_eq!(
                got, want,
                "gpu::Argmax, n={n} case={case}: GPU {got}, CPU {want}"
            );
        }
    }
    // Every logit NaN: the last id (in range) from both, not u32::MAX.
    for n in [2000usize, 49152] {
        let v = vec![f32::NAN; n];
        let logits = gpu
            .upload(
                "logits",
                bytemuck::cast_slice(&v),
                wgpu::BufferUsages::empty(),
            )
            .expect("logits");
        assert_eq!(run_argmax(&gpu, &logits, n).0, n - 1, "all NaN, n={n}");
    }
    // Arguments that do not fit are errors, not out-of-bounds reads.
    let small = gpu
        .storage("logits", 64, wgpu::BufferUsages::empty())
        .expect("buffer");
    let tok = gpu
        .storage("tok", 16, wgpu::BufferUsages::empty())
        .expect("buffer");
    // (More spans than one dispatch row of workgroups holds, too.)
    for n in [0usize, 17, 65535 * ARGMAX_SPAN as usize + 1] {
        match Argmax::new(&gpu, &small, n, &tok) {
            Err(e) => assert!(e.to_string().contains("argmax of"), "{e}"),
            Ok(_) => panic!("argmax of {n} logits in a 64-byte buffer was accepted"),
        }
    }
}
