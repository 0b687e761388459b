//! GPU and runtime faults give clear errors, never panics or hangs: no adapter,
//! wgpu validation errors (bad kernels, bad bindings, absurd sizes), binding
//! limits smaller than a tensor, the workgroup-memory and wall-clock fallbacks,
//! a device destroyed mid-decode, failed buffer mappings, and decode misuse
//! (context overflow, empty prompt, out-of-vocabulary ids, bad prompt files).
//! Every test checks that the message names the problem.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use q4gpu::gguf::GgmlType;
use q4gpu::gpu::readback::map_and_copy;
use q4gpu::gpu::timing::GpuTimer;
use q4gpu::gpu::{compare, read_f32, Dispatch, Gpu, GpuError, GpuMatrix, GpuOptions};
use q4gpu::model::GpuModel;
use q4gpu::sampling::SamplerConfig;
use q4gpu::{Decoder, Error, Model};

/// Runs `f` on its own thread and fails the test if it takes longer than
/// `secs` (a hang), passing its panics through.
fn no_hang<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(h.join().expect_err("thread ended without a value"))
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("hung for more than {secs} s"),
    }
}

fn expect_err<T>(r: Result<T, impl std::fmt::Display>, what: &str) -> String {
    match r {
        Ok(_) => panic!("{what}: expected an error, got Ok"),
        Err(e) => {
            let m = e.to_string();
            eprintln!("[{what}] {m}");
            m
        }
    }
}

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message lacks {p:?}: {msg}");
    }
}

fn gpu_with(f: impl FnOnce(&mut GpuOptions)) -> Gpu {
    let mut o = GpuOptions::from_env().unwrap_or_else(|e| panic!("{e}"));
    f(&mut o);
    Gpu::new(&o).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"))
}

fn model_q4_0() -> Model {
    Model::open(common::model_path(common::MODEL_Q4_0)).expect("model")
}

fn prompt_ids(m: &Model, text: &str) -> Vec<u32> {
    let mut ids: Vec<u32> = m.tokenizer.bos_id().into_iter().collect();
    ids.extend(m.tokenizer.encode(text, true));
    ids
}

// ---------------------------------------------------------------- adapters

#[test]
fn no_adapter_says_how_to_get_one() {
    let r = Gpu::new(&GpuOptions {
        backends: wgpu::Backends::empty(),
        ..GpuOptions::default()
    });
    let m = expect_err(r.as_ref().map(|_| ()), "no backends");
    assert!(matches!(r, Err(GpuError::NoAdapter { .. })));
    assert_has(&m, &["no GPU adapter", "mesa-vulkan-drivers", "--cpu"]);
}

#[cfg(target_os = "linux")]
#[test]
fn absent_backend_is_no_adapter() {
    let r = Gpu::new(&GpuOptions {
        backends: wgpu::Backends::METAL,
        ..GpuOptions::default()
    });
    let m = expect_err(r.as_ref().map(|_| ()), "metal on linux");
    assert!(matches!(r, Err(GpuError::NoAdapter { .. })));
    assert_has(&m, &["METAL", "mesa-vulkan-drivers", "--cpu"]);
}

// ------------------------------------------------------ validation errors

#[test]
fn unknown_kernel_is_a_shader_error() {
    let gpu = common::gpu();
    let l = gpu.layout(&[true]).unwrap();
    let r = gpu.pipeline("no_such_kernel", &[], &[&l], (256, 1, 1));
    let m = expect_err(r, "unknown kernel");
    assert_has(&m, &["shader 'no_such_kernel'", "unknown"]);
}

#[test]
fn unknown_flag_is_refused() {
    let gpu = common::gpu();
    let l = gpu.layout(&[true, true, false]).unwrap();
    let r = gpu.pipeline("embed", &["Q4_O"], &[&l], (256, 1, 1));
    let m = expect_err(r, "misspelled flag");
    assert_has(&m, &["shader 'embed'", "unknown flag 'Q4_O'", "Q4_0"]);
}

#[test]
fn invalid_wgsl_is_a_validation_error() {
    let gpu = common::gpu();
    let l = gpu.layout(&[true, true, false]).unwrap();
    // Two format flags: the kernel declares `let o` twice, which naga rejects.
    let r = no_hang(120, move || {
        gpu.pipeline("embed", &["Q4_0", "Q4_1"], &[&l], (256, 1, 1))
            .map(|_| ())
    });
    let m = expect_err(r, "invalid WGSL");
    assert_has(
        &m,
        &[
            "validation error",
            "creating pipeline embed[Q4_0,Q4_1",
            "parsing error: redefinition of `o`",
        ],
    );
}

#[test]
fn absurd_buffer_sizes_are_errors() {
    let gpu = common::gpu();
    let m = expect_err(
        gpu.storage("huge", u64::MAX, wgpu::BufferUsages::empty()),
        "u64::MAX buffer",
    );
    assert_has(&m, &["huge", "18446744073709551615", "storage binding"]);
    // Past max_buffer_size in a raw wgpu call: the error scope turns it into an Err.
    let size = gpu.device.limits().max_buffer_size.saturating_add(4096) & !3;
    let r = gpu.scoped("creating an oversized buffer", || {
        gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("oversized"),
            size,
            usage: wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    });
    let m = expect_err(r, "size > max_buffer_size");
    assert_has(
        &m,
        &[
            "creating an oversized buffer",
            "greater than the maximum buffer size",
        ],
    );
    // The error was consumed by the scope: the device is still usable.
    gpu.check().expect("device usable after a scoped error");
    gpu.storage("fine", 64, wgpu::BufferUsages::empty())
        .expect("small buffer after the error");
}

#[test]
fn binding_with_wrong_usage_is_a_validation_error() {
    let gpu = common::gpu();
    let l = gpu.layout(&[true, false]).unwrap();
    let pipe = gpu
        .pipeline("argmax", &[], &[&l], (256, 1, 1))
        .expect("pipeline");
    let logits = gpu
        .storage("logits", 64, wgpu::BufferUsages::empty())
        .unwrap();
    // A MAP_READ buffer cannot be a storage binding.
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("staging"),
        size: 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let params = [16u32, 0, 0, 0];
    let r = Dispatch::new(&gpu, "argmax", &pipe, &l, &params, &[&logits, &staging], 1);
    let m = expect_err(r, "MAP_READ buffer as storage");
    assert_has(
        &m,
        &[
            "validation error while binding argmax: In Device::create_bind_group",
            "'staging'",
            "do not contain required usage flags BufferUsages(STORAGE)",
        ],
    );
}

#[test]
fn too_small_uniform_is_reported_by_the_next_readback() {
    let gpu = common::gpu();
    let l = gpu.layout(&[true, false]).unwrap();
    let pipe = gpu
        .pipeline("argmax", &[], &[&l], (256, 1, 1))
        .expect("pipeline");
    let logits = gpu
        .storage("logits", 64, wgpu::BufferUsages::empty())
        .unwrap();
    let tok = gpu.storage("tok", 16, wgpu::BufferUsages::empty()).unwrap();
    // A 4-byte uniform where the kernel declares a 16-byte struct: only caught
    // when the dispatch is recorded, so it reaches the uncaptured-error handler.
    let d = Dispatch::new(&gpu, "argmax", &pipe, &l, &7u32, &[&logits, &tok], 1)
        .expect("bind group (sizes are checked at dispatch)");
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    d.encode_into(&mut enc);
    gpu.queue.submit([enc.finish()]);
    let m = expect_err(read_f32(&gpu, &tok, 0, 1), "4-byte uniform");
    assert_has(
        &m,
        &[
            "validation error while running GPU work",
            "bound with size 4 where the shader expects 16",
        ],
    );
    // Reported once, then the device is usable again.
    gpu.check().expect("error reported once");
    read_f32(&gpu, &logits, 0, 4).expect("readback after the reported error");
}

// ---------------------------------------------------------- binding limits

#[test]
fn matrix_larger_than_the_binding_limit_is_refused() {
    let gpu = gpu_with(|o| o.max_storage_binding = Some(64 << 10));
    assert_eq!(gpu.max_binding(), 64 << 10, "requested limit not applied");
    let (rows, cols) = (128, 1024);
    let bytes = vec![0u8; rows * GgmlType::Q8_0.row_bytes(cols as u64).unwrap() as usize];
    let r = GpuMatrix::upload(
        &gpu,
        "blk.0.ffn_up.weight",
        GgmlType::Q8_0,
        rows,
        cols,
        &bytes,
    );
    let m = expect_err(r.map(|_| ()), "matrix over the binding limit");
    assert_has(&m, &["blk.0.ffn_up.weight", "139264 bytes", "allows 65536"]);
    let m = expect_err(
        gpu.storage("kv", 1 << 20, wgpu::BufferUsages::empty()),
        "buffer over the binding limit",
    );
    assert_has(&m, &["kv needs 1048576 bytes", "allows 65536"]);
}

#[test]
fn model_larger_than_the_binding_limit_is_refused() {
    let model = model_q4_0();
    let gpu = gpu_with(|o| o.max_storage_binding = Some(256 << 10));
    let w = model.weights().expect("weights");
    let r = GpuModel::new(&gpu, &model.config, &w, 16);
    let m = expect_err(r.map(|_| ()), "model over the binding limit");
    // The embedding table and LM head are split by rows (tests/synth.rs);
    // a layer matrix is not: the first over 256 KiB, 1536×576 Q4_0.
    assert_has(
        &m,
        &["blk.0.ffn_gate.weight needs 497664 bytes", "allows 262144"],
    );
}

// ------------------------------------------------------------- fallbacks

#[test]
fn workgroup_reduction_path_matches_subgroup_path() {
    let model = model_q4_0();
    let w = model.weights().expect("weights");
    let ids = prompt_ids(&model, "Hello");
    let run = |gpu: &Gpu| {
        let mut m = GpuModel::new(gpu, &model.config, &w, 8).expect("gpu model");
        let mut last = Vec::new();
        for (pos, &t) in ids.iter().enumerate() {
            last = m.forward(t, pos).expect("forward");
        }
        last
    };
    let sg = common::gpu();
    let wg = gpu_with(|o| o.disable_subgroups = true);
    assert!(!wg.subgroups);
    eprintln!(
        "subgroup path: {}; fallback: {}",
        sg.describe(),
        wg.describe()
    );
    let a = run(&sg);
    let b = run(&wg);
    let rep = compare(&b, &a);
    eprintln!(
        "workgroup vs subgroup logits after {} steps: {rep}",
        ids.len()
    );
    // Only the reduction order differs.
    assert!(rep.passes(1e-4), "{rep}");
    let argmax = |v: &[f32]| (0..v.len()).max_by(|&i, &j| v[i].total_cmp(&v[j]));
    assert_eq!(argmax(&a), argmax(&b));
}

#[test]
fn timer_without_timestamps_uses_the_wall_clock() {
    let mut gpu = common::gpu();
    gpu.timestamps = false;
    let timer = GpuTimer::new(&gpu).expect("timer");
    let l = gpu.layout(&[true, false]).unwrap();
    let pipe = gpu.pipeline("argmax", &[], &[&l], (256, 1, 1)).unwrap();
    let x = gpu
        .upload(
            "x",
            bytemuck::cast_slice(&[1.0f32, 3.0, 2.0, 0.5]),
            wgpu::BufferUsages::empty(),
        )
        .unwrap();
    let tok = gpu.storage("tok", 16, wgpu::BufferUsages::empty()).unwrap();
    let d = Dispatch::new(&gpu, "argmax", &pipe, &l, &[4u32, 0, 0, 0], &[&x, &tok], 1).unwrap();
    let t = timer.time(&gpu, |p| d.encode(p)).expect("timed pass");
    assert!(t.gpu_ns.is_none());
    assert!(t.wall_ns > 0.0);
    assert_eq!(t.best_ns(), t.wall_ns);
    assert_eq!(read_u32_one(&gpu, &tok), 1);
}

fn read_u32_one(gpu: &Gpu, b: &wgpu::Buffer) -> u32 {
    q4gpu::gpu::read_u32(gpu, b, 0, 1).expect("read")[0]
}

// ------------------------------------------------------------ device lost

#[test]
fn device_destroyed_between_steps_gives_errors_not_hangs() {
    let msgs = no_hang(300, || {
        let model = model_q4_0();
        let w = model.weights().expect("weights");
        let gpu = common::gpu();
        let mut m = GpuModel::new(&gpu, &model.config, &w, 16).expect("gpu model");
        let ids = prompt_ids(&model, "Hi");
        m.forward(ids[0], 0).expect("step before the loss");
        m.prefill(1, &ids[1..])
            .expect("prefill queued before the loss");
        // Lost with a step in flight.
        gpu.device.destroy();
        let mut msgs = vec![expect_err(
            m.generate_greedy(1, ids.len() - 1, 4, |_| true),
            "generate after destroy",
        )];
        msgs.push(expect_err(m.forward(ids[0], 3), "forward after destroy"));
        msgs.push(expect_err(m.read_logits(), "read_logits after destroy"));
        msgs.push(expect_err(
            gpu.storage("after", 16, wgpu::BufferUsages::empty()),
            "buffer after destroy",
        ));
        msgs
    });
    for m in &msgs {
        assert_has(m, &["GPU device lost: Destroyed"]);
    }
}

#[test]
fn readback_after_device_destroyed_is_an_error() {
    let m = no_hang(60, || {
        let gpu = common::gpu();
        let b = gpu
            .upload(
                "b",
                bytemuck::cast_slice(&[1.0f32; 8]),
                wgpu::BufferUsages::empty(),
            )
            .unwrap();
        gpu.device.destroy();
        expect_err(read_f32(&gpu, &b, 0, 8), "read_f32 after destroy")
    });
    assert_has(&m, &["GPU device lost: Destroyed"]);
}

// ---------------------------------------------------------- map failures

fn map_read_buffer(gpu: &Gpu, mapped: bool) -> wgpu::Buffer {
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("map test"),
        size: 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: mapped,
    })
}

#[test]
fn mapping_an_already_mapped_buffer_fails() {
    let gpu = common::gpu();
    let b = map_read_buffer(&gpu, true);
    let m = no_hang(60, move || {
        expect_err(map_and_copy(&gpu, &b, 16), "already mapped")
    });
    assert_has(&m, &["buffer mapping failed", "readback"]);
}

#[test]
fn mapping_a_destroyed_buffer_fails() {
    let gpu = common::gpu();
    let b = map_read_buffer(&gpu, false);
    b.destroy();
    let m = no_hang(60, move || {
        expect_err(map_and_copy(&gpu, &b, 16), "destroyed buffer")
    });
    assert_has(
        &m,
        &[
            "In Buffer::map_async",
            "'map test' label has been destroyed",
        ],
    );
}

#[test]
fn mapping_without_map_read_usage_fails() {
    let gpu = common::gpu();
    let b = gpu
        .storage("not mappable", 16, wgpu::BufferUsages::empty())
        .unwrap();
    let m = no_hang(60, move || {
        expect_err(map_and_copy(&gpu, &b, 16), "no MAP_READ")
    });
    assert_has(
        &m,
        &[
            "In Buffer::map_async",
            "do not contain required usage flags BufferUsages(MAP_READ)",
        ],
    );
}

#[test]
fn mapping_past_the_end_is_refused() {
    let gpu = common::gpu();
    let b = map_read_buffer(&gpu, false);
    let m = expect_err(map_and_copy(&gpu, &b, 32), "map past end");
    assert_has(&m, &["mapping 32 bytes of a 16-byte buffer"]);
}

// ---------------------------------------------------------------- decode

#[test]
fn decode_misuse_gives_clear_errors_and_context_end_stops_cleanly() {
    const CTX: usize = 8;
    let model = model_q4_0();
    let gpu = common::gpu();
    let mut dec = Decoder::new(&gpu, &model, CTX).expect("decoder");
    let greedy = SamplerConfig::greedy();
    let long: Vec<u32> = (0..CTX as u32 + 4).map(|i| 100 + i).collect();

    let m = expect_err(dec.generate(&long, 4, &greedy, |_| true), "prompt > ctx");
    assert_has(&m, &["12 tokens", "context window holds 8 positions"]);
    let m = expect_err(
        dec.generate(&long[..CTX], 4, &greedy, |_| true),
        "prompt == ctx",
    );
    assert_has(&m, &["8 tokens", "holds 8 positions"]);
    let m = expect_err(dec.generate(&[], 4, &greedy, |_| true), "empty prompt");
    assert_has(&m, &["prompt is empty"]);
    let vocab = model.config.vocab_size as u32;
    let m = expect_err(
        dec.generate(&[1, 2, vocab + 7], 4, &greedy, |_| true),
        "out-of-vocabulary id",
    );
    assert_has(
        &m,
        &[
            "prompt token 2",
            &format!("id {}", vocab + 7),
            "vocabulary of 49152",
        ],
    );
    let m = expect_err(dec.gpu_model.forward(vocab, 0), "forward with id = vocab");
    assert_has(&m, &["token 49152 out of range"]);
    let m = expect_err(dec.gpu_model.forward(1, CTX), "forward at pos = ctx");
    assert_has(
        &m,
        &["position 8 is past the context window of 8 positions"],
    );

    // max_new far past the context: fewer tokens, no error (greedy and sampled).
    let prompt = &prompt_ids(&model, "The capital of France is")[..CTX - 2];
    let mut got = Vec::new();
    let s = dec
        .generate(prompt, 1000, &greedy, |t| {
            got.push(t);
            true
        })
        .expect("greedy generation to the end of the context");
    eprintln!(
        "greedy past the context: {} of 1000 tokens: {got:?}",
        s.generated
    );
    assert!(
        s.generated >= 1 && s.generated <= CTX - prompt.len(),
        "{s:?}"
    );
    let sampled = SamplerConfig {
        seed: 7,
        ..SamplerConfig::default()
    };
    let s2 = dec
        .generate(prompt, 1000, &sampled, |_| true)
        .expect("sampled generation to the end of the context");
    assert!(
        s2.generated >= 1 && s2.generated <= CTX - prompt.len(),
        "{s2:?}"
    );
    // The decoder still works after all of the above.
    let s3 = dec
        .generate(&prompt[..2], 1, &greedy, |_| true)
        .expect("reuse");
    assert_eq!(s3.generated, 1);
}

// ----------------------------------------------------------- prompt files

fn scratch(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("q4gpu-faults-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn prompt_file_of_invalid_utf8_names_the_offset() {
    let d = scratch("utf8");
    let p = d.join("prompt.txt");
    std::fs::write(&p, b"The caf\xc3\xa9 is \xff\xfe open").unwrap();
    let r = q4gpu::decoder::read_prompt_file(&p);
    let m = expect_err(r, "invalid UTF-8 prompt file");
    assert_has(
        &m,
        &[
            &p.display().to_string(),
            "not valid UTF-8",
            "byte offset 13",
            "ff fe",
        ],
    );
    // A truncated multi-byte sequence at the end.
    std::fs::write(&p, b"ok \xe2\x82").unwrap();
    let m = expect_err(q4gpu::decoder::read_prompt_file(&p), "truncated UTF-8");
    assert_has(&m, &["byte offset 3", "e2 82"]);
    std::fs::write(&p, "caf\u{e9} \u{1F600}").unwrap();
    assert_eq!(
        q4gpu::decoder::read_prompt_file(&p).unwrap(),
        "caf\u{e9} \u{1F600}"
    );
    let missing = d.join("missing.txt");
    let r = q4gpu::decoder::read_prompt_file(&missing);
    assert!(matches!(r, Err(Error::Io(_))));
    let m = expect_err(r, "missing prompt file");
    assert_has(&m, &["missing.txt"]);
    std::fs::remove_dir_all(&d).unwrap();
}

/// A host that wraps its own device keeps its error handler: q4gpu's
/// `from_device` installs none, its own failing call still reports an error
/// naming it (error scopes), and an error the host makes afterwards reaches
/// the host's handler. (Issue 20: it used to replace the handler.)
#[test]
fn from_device_keeps_the_hosts_error_handler() {
    let own = gpu_with(|_| {});
    let host_errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let seen = host_errors.clone();
        own.device
            .on_uncaptured_error(std::sync::Arc::new(move |e: wgpu::Error| {
                seen.lock().unwrap().push(e.to_string());
            }));
    }
    let gpu = Gpu::from_device(
        own.device.clone(),
        own.queue.clone(),
        own.info.clone(),
        &GpuOptions::default(),
    )
    .expect("from_device");
    // q4gpu's own bad call: a matrix of the wrong size is an error, not a host-handler event.
    let e = expect_err(
        GpuMatrix::upload(&gpu, "w", GgmlType::Q4_K, 1, 256, &[0u8; 100]),
        "bad matrix",
    );
    assert_has(&e, &["w", "144"]);
    assert!(
        host_errors.lock().unwrap().is_empty(),
        "host handler saw q4gpu's error"
    );
    // The host's own invalid buffer (MAP_READ with STORAGE) reaches its handler.
    let _bad = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("host mistake"),
        size: 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let _ = gpu.device.poll(wgpu::PollType::wait_indefinitely());
    let seen = host_errors.lock().unwrap();
    assert!(
        seen.iter()
            .any(|m| m.contains("host mistake") || m.contains("MAP_READ")),
        "the host's handler got: {seen:?}"
    );
}
