//! q4gpu inside a host wgpu application: the app owns the device, queue and
//! its own compute work; it loads the model onto that device and records a
//! decode step into its own command encoder between its own passes, one
//! submit per frame.
//!
//!   cargo run --release --example embed -- [model.gguf] [frames]

use anyhow::{Context, Result};
use clap::Parser;
use q4gpu::gpu::readback::read_u32;
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
    // The prompt up to its last token goes in as ordinary steps; from then on,
    // every frame records: app pass → q4gpu step (reads the id its previous
    // step left on the GPU) → app pass, in one encoder and one submit.
    gm.prefill(0, &prompt[..prompt.len() - 1])?;
    let mut stream = StreamDecoder::new();
    let mut text = String::new();
    let mut pos = prompt.len() - 1;
    let mut token = Some(prompt[pos]);
    for _ in 0..frames {
        if pos >= gm.max_ctx() {
            break;
        }
        gm.write_step(pos, token.take())?;
        let mut enc = device.create_command_encoder(&Default::default());
        let app_pass = |enc: &mut wgpu::CommandEncoder| {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&app_pipeline);
            pass.set_bind_group(0, &app_bg, &[]);
            pass.dispatch_workgroups(1, 1, 1);
        };
        app_pass(&mut enc);
        gm.encode_step_into(&mut enc, true);
        app_pass(&mut enc);
        queue.submit([enc.finish()]);
        // Read the chosen id (a real app would read it a frame later).
        let id = read_u32(&gpu, gm.token_buffer(), 0, 1)?[0];
        if model.tokenizer.is_stop(id) {
            break;
        }
        text.push_str(&stream.push(&model.tokenizer, id));
        pos += 1;
    }
    text.push_str(&stream.finish());
    let app_frames = read_u32(&gpu, &app_buf, 0, 1)?[0];
    println!("{text}");
    eprintln!(
        "app passes run: {app_frames} (two per frame), tokens generated at {} positions",
        pos + 1 - prompt.len()
    );
    Ok(())
}
