//! q4gpu inside a host wgpu application: the app owns the device, queue and
//! its own compute work; it loads the model onto that device and records a
//! decode step into its own command encoder between its own passes, one
//! submit per frame. The token ids come back through awaitable readbacks
//! that the frame loop polls without blocking (the next step reads the id
//! the previous one left on the GPU, so generation never waits for the
//! host); the app's frame time is reported with and without the step.
//!
//!   cargo run --release --example embed -- [model.gguf] [frames]

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use q4gpu::gpu::readback::{read_u32, read_u32_async};
use q4gpu::tokenizer::StreamDecoder;
use q4gpu::{Gpu, GpuOptions, Model};

/// The app's own per-frame work: a compute pass that counts frames in a buffer.
const APP_SHADER: &str = r#"
@group(0) @binding(0) var<storage, read_write> frames: array<u32>;
@compute @workgroup_size(1)
fn main() { frames[0] += 1u; }
"#;

/// Errors print on one line (`error: what: why`), exit status 1.
fn main() -> std::process::ExitCode {
    q4gpu::env::exit_code(run())
}

#[derive(Parser)]
#[command(about = "q4gpu decoding inside a host wgpu application's frames")]
struct Args {
    /// GGUF model.
    #[arg(default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    model: String,
    /// Frames to run (one decode step each).
    #[arg(default_value_t = 24)]
    frames: usize,
}

fn run() -> Result<()> {
    // Arguments first: `--help` or a bad flag never creates a device.
    let Args {
        model: path,
        frames,
    } = Args::parse();

    // --- The host application's own device (as a game or editor creates it).
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
        .context("no GPU adapter")?;
    let info = adapter.get_info();
    // Ask for subgroups if available: q4gpu then uses them; it works without.
    let features = adapter.features() & wgpu::Features::SUBGROUP;
    let mut limits = wgpu::Limits::default().using_resolution(adapter.limits());
    limits.max_storage_buffer_binding_size = adapter.limits().max_storage_buffer_binding_size;
    limits.max_buffer_size = adapter.limits().max_buffer_size;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("host app"),
        required_features: features,
        required_limits: limits,
        ..Default::default()
    }))?;
    let app_module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("app"),
        source: wgpu::ShaderSource::Wgsl(APP_SHADER.into()),
    });
    let app_pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("app"),
        layout: None,
        module: &app_module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let app_buf = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app frames"),
        size: 16,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let app_bg = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("app"),
        layout: &app_pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry {
            binding: 0,
            resource: app_buf.as_entire_binding(),
        }],
    });

    // --- q4gpu on the app's device.
    let gpu = Gpu::from_device(
        device.clone(),
        queue.clone(),
        info,
        // An application passes its own choices; it reads no Q4GPU_* variable.
        &GpuOptions::default(),
    )?;
    let model = Model::open(&path).with_context(|| format!("loading {path}"))?;
    let mut dec = q4gpu::Decoder::new(&gpu, &model, 512)?;
    let prompt = model.tokenizer.encode("The three primary colors are", true);
    eprintln!("{} | prompt {} tokens", gpu.describe(), prompt.len());
    let gm = &mut dec.gpu_model;
    let app_pass = |enc: &mut wgpu::CommandEncoder| {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&app_pipeline);
        pass.set_bind_group(0, &app_bg, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    };
    // A frame: record, submit, and wait for it (standing in for the frame's
    // presentation); its time is what the app sees.
    let frame = |record: &mut dyn FnMut(&mut wgpu::CommandEncoder)| -> Result<f64> {
        let t = Instant::now();
        let mut enc = device.create_command_encoder(&Default::default());
        record(&mut enc);
        let idx = queue.submit([enc.finish()]);
        device.poll(wgpu::PollType::Wait {
            submission_index: Some(idx),
            timeout: None,
        })?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    let mut app_only = Vec::new();
    for _ in 0..frames {
        app_only.push(frame(&mut |enc| {
            app_pass(enc);
            app_pass(enc);
        })?);
    }

    // The prompt up to its last token is prefilled; from then on, every
    // frame records: app pass → q4gpu step (reading the id its previous step
    // left on the GPU) → app pass, in one encoder and one submit.
    gm.prefill(0, &prompt[..prompt.len() - 1])?;
    let mut stream = StreamDecoder::new();
    let mut text = String::new();
    let mut pos = prompt.len() - 1;
    let mut token = Some(prompt[pos]);
    let mut with_step = Vec::new();
    type IdFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u32>, q4gpu::gpu::GpuError>> + 'a>>;
    let mut pending: VecDeque<IdFuture<'_>> = VecDeque::new();
    let mut cx = TaskContext::from_waker(Waker::noop());
    let mut stopped = false;
    while with_step.len() < frames && pos < gm.max_ctx() && !stopped {
        gm.write_step(pos, token.take())?;
        with_step.push(frame(&mut |enc| {
            app_pass(enc);
            gm.encode_step_into(enc, true);
            app_pass(enc);
        })?);
        pos += 1;
        // This frame's id, read back without blocking; ids that arrived are
        // decoded (a stop token ends generation).
        pending.push_back(Box::pin(read_u32_async(&gpu, gm.token_buffer(), 0, 1)));
        device.poll(wgpu::PollType::Poll)?;
        while let Some(f) = pending.front_mut() {
            let Poll::Ready(ids) = f.as_mut().poll(&mut cx) else {
                break;
            };
            pending.pop_front();
            let id = ids?.first().copied().unwrap_or_default();
            if model.tokenizer.is_stop(id) {
                stopped = true;
                break;
            }
            text.push_str(&stream.push(&model.tokenizer, id));
        }
    }
    text.push_str(&stream.finish());
    let app_frames = read_u32(&gpu, &app_buf, 0, 1)?[0];
    println!("{text}");
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    eprintln!(
        "app passes run: {app_frames}; {} frames with a decode step; frame time (median) {:.3} ms without the step, {:.3} ms with it",
        with_step.len(),
        med(&mut app_only),
        med(&mut with_step)
    );
    Ok(())
}
