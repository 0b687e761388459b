//! The GPU argmax (greedy sampling) against a CPU reference: first index of
//! the largest value, NaN never wins, on lengths around the kernel's 8×256
//! unrolled stride and the SmolLM2 vocabulary, with planted ties and NaNs.

mod common;

use common::Rng;
use q4gpu::gpu::matvec::layout;
use q4gpu::gpu::read_f32;
use q4gpu::gpu::shader::ArgmaxParams;
use q4gpu::gpu::Dispatch;

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

#[test]
fn argmax_matches_cpu_with_ties_and_nans() {
    let gpu = common::gpu();
    let l = layout(&gpu, "argmax", &[true, false]);
    let pipe = gpu
        .pipeline("argmax", &[], &[&l], (256, 1, 1))
        .expect("argmax pipeline");
    let mut rng = Rng(0xA4);
    for n in [1usize, 7, 255, 256, 2047, 2048, 2049, 4100, 49152] {
        for case in 0..4 {
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
            // Poisoned: the kernel must overwrite it.
            let tok = gpu
                .upload(
                    "tok",
                    bytemuck::cast_slice(&[u32::MAX; 4]),
                    wgpu::BufferUsages::COPY_SRC,
                )
                .expect("tok");
            let params = ArgmaxParams {
                n: n as u32,
                pad0: 0,
                pad1: 0,
                pad2: 0,
            };
            let d = Dispatch::new(&gpu, "argmax", &pipe, &l, &params, &[&logits, &tok], 1)
                .expect("bind");
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            d.encode_into(&mut enc);
            gpu.queue.submit([enc.finish()]);
            let got = read_f32(&gpu, &tok, 0, 1).expect("readback")[0].to_bits() as usize;
            let want = cpu_argmax(&v).expect("some value is not NaN");
            assert_eq!(got, want, "n={n} case={case}: GPU {got}, CPU {want}");
        }
    }
}
