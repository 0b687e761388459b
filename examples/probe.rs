//! Device probes for kernel design decisions (bench tool, not part of the
//! library): what a dependency between two decode steps costs as a kernel
//! boundary or as a grid barrier inside one dispatch, and the rate wgpu's
//! cooperative matrices reach with and without the prefill matmul's loads.
//!
//!   cargo run --release --example probe -- [--probe sync,coop] [--stages 1000]
//!
//! `sync` (benches/probe/sync.wgsl): `--stages` dependent stages over `--wgs`
//! workgroups, each stage reading the last stage's vector and `--wwords`
//! vec4 of weights per thread (rotating through up to 256 MiB), timed as a chain
//! of dispatches and as one dispatch with grid barriers (weights loaded
//! after the barrier, or prefetched while waiting). Every run checks that no
//! workgroup read a stale entry, that no barrier wait gave up, and the final
//! value. The grid barrier assumes all workgroups are resident at once; a
//! wait gives up after `--limit` polls, so a device that does not keep them
//! resident reports failures instead of hanging.
//!
//! `coop` (benches/probe/coop.wgsl): TFLOPS of 16×16×16 f16 products, where
//! the device has cooperative matrices.

use anyhow::{bail, Context, Result};
use clap::Parser;
use q4gpu::gpu::timing::{median, GpuTimer};
use q4gpu::{Gpu, GpuOptions};

#[derive(Parser, Debug)]
#[command(about = "Dispatch-boundary vs grid-barrier cost; cooperative-matrix rate")]
struct Args {
    /// Probes to run: sync, coop.
    #[arg(long, value_delimiter = ',', default_value = "sync,coop")]
    probe: Vec<String>,
    /// Dependent stages per measurement (sync).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    stages: u32,
    /// Workgroups per stage (sync), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,128")]
    wgs: Vec<u32>,
    /// vec4<u32> of weights per thread and stage (sync), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,1,4")]
    wwords: Vec<u32>,
    /// Polls before a grid-barrier wait gives up (sync).
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u32).range(1..=1 << 30))]
    limit: u32,
    /// Repeats per measurement (median reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Iterations per subgroup (coop).
    #[arg(long, default_value_t = 4096)]
    iters: u32,
}

/// Declares a probe's uniform struct (u32 fields) once, as the Rust type and
/// as WGSL text the probe prepends to its shader.
macro_rules! uniforms {
    ($(#[$m:meta])* struct $name:ident, $wgsl:ident { $($field:ident),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        struct $name { $($field: u32),* }
        const $wgsl: &str = concat!(
            "struct ", stringify!($name), " {\n",
            $("    ", stringify!($field), ": u32,\n",)*
            "}\n",
        );
    };
}

uniforms! {
    /// sync.wgsl's uniforms.
    struct SyncParams, SYNC_PARAMS_WGSL {
        width, stages, limit, wwords, slices, prefetch, stage, flags,
    }
}

uniforms! {
    /// coop.wgsl's uniforms.
    struct CoopParams, COOP_PARAMS_WGSL { iters, mode, pad0, pad1 }
}

/// sync.wgsl's vector: plain words, or atomics (visible across workgroups
/// after the grid barrier under the memory model, not only in practice).
const DATA_PLAIN: &str = "@group(0) @binding(1) var<storage, read_write> buf: array<u32>;
fn ld(i: u32) -> u32 { return buf[i]; }
fn st(i: u32, v: u32) { buf[i] = v; }
";
const DATA_ATOMIC: &str = "@group(0) @binding(1) var<storage, read_write> buf: array<atomic<u32>>;
fn ld(i: u32) -> u32 { return atomicLoad(&buf[i]); }
fn st(i: u32, v: u32) { atomicStore(&buf[i], v); }
";

/// Uniform slots are this far apart (WebGPU's largest offset alignment).
const SLOT: u64 = 256;

/// The weights the stages rotate through: 256 MiB (5× an H100's L2), or
/// the largest binding.
fn weight_bytes(gpu: &Gpu) -> u64 {
    gpu.max_binding().min(256 << 20) & !15
}

fn main() -> Result<()> {
    let args = Args::parse();
    let gpu = Gpu::new(&GpuOptions::from_env()?)?;
    println!("{}", gpu.describe());
    if !gpu.timestamps {
        bail!("the probes need timestamp queries, which this device lacks");
    }
    for probe in &args.probe {
        match probe.as_str() {
            "sync" => sync_probe(&gpu, &args)?,
            "coop" => coop_probe(&gpu, &args)?,
            other => bail!("unknown probe '{other}' (sync, coop)"),
        }
    }
    Ok(())
}

fn module(gpu: &Gpu, label: &str, src: &str) -> Result<wgpu::ShaderModule> {
    Ok(gpu.scoped(&format!("compiling {label}"), || {
        gpu.device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            })
    })?)
}

fn pipeline(
    gpu: &Gpu,
    m: &wgpu::ShaderModule,
    layout: &wgpu::BindGroupLayout,
    entry: &str,
) -> Result<wgpu::ComputePipeline> {
    Ok(gpu.scoped(&format!("creating pipeline {entry}"), || {
        let pl = gpu
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(entry),
                bind_group_layouts: &[Some(layout)],
                immediate_size: 0,
            });
        gpu.device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&pl),
                module: m,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
    })?)
}

fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

fn uniform_entry(dynamic: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: dynamic,
            min_binding_size: wgpu::BufferSize::new(32),
        },
        count: None,
    }
}

fn buffer(gpu: &Gpu, label: &str, size: u64, usage: wgpu::BufferUsages) -> Result<wgpu::Buffer> {
    Ok(gpu.scoped(&format!("creating buffer {label}"), || {
        gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        })
    })?)
}

fn read_u32s(gpu: &Gpu, src: &wgpu::Buffer, n: usize) -> Result<Vec<u32>> {
    let bytes = q4gpu::gpu::readback::map_and_copy(gpu, src, (n * 4) as u64)?;
    Ok(bytemuck::pod_collect_to_vec(&bytes))
}

/// The sync probe's buffers and pipelines.
struct SyncRig {
    chain: wgpu::ComputePipeline,
    /// grid_main with plain and with atomic `buf`.
    grid: [wgpu::ComputePipeline; 2],
    layout: wgpu::BindGroupLayout,
    params: wgpu::Buffer,
    buf: wgpu::Buffer,
    sync: wgpu::Buffer,
    weights: wgpu::Buffer,
    flags: wgpu::Buffer,
    read: wgpu::Buffer,
}

fn sync_probe(gpu: &Gpu, args: &Args) -> Result<()> {
    let src = include_str!("../benches/probe/sync.wgsl");
    let plain = module(
        gpu,
        "probe sync",
        &format!("{SYNC_PARAMS_WGSL}{DATA_PLAIN}{src}"),
    )?;
    let atomic = module(
        gpu,
        "probe sync atomic",
        &format!("{SYNC_PARAMS_WGSL}{DATA_ATOMIC}{src}"),
    )?;
    let layout = gpu
        .device
        .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("probe sync"),
            entries: &[
                uniform_entry(true),
                storage_entry(1, false),
                storage_entry(2, false),
                storage_entry(3, true),
                storage_entry(4, false),
            ],
        });
    let u =
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let max_wgs = args.wgs.iter().copied().max().unwrap_or(1) as u64;
    let s = SyncRig {
        chain: pipeline(gpu, &plain, &layout, "stage_main")?,
        grid: [
            pipeline(gpu, &plain, &layout, "grid_main")?,
            pipeline(gpu, &atomic, &layout, "grid_main")?,
        ],
        params: buffer(
            gpu,
            "params",
            SLOT * args.stages as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?,
        buf: buffer(gpu, "vector", 2 * 8 * 4 * max_wgs, u)?,
        sync: buffer(gpu, "sync", 16, u)?,
        weights: buffer(gpu, "weights", weight_bytes(gpu), u)?,
        flags: buffer(gpu, "flags", 4 * max_wgs, u)?,
        read: buffer(
            gpu,
            "read",
            16,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?,
        layout,
    };
    let timer = GpuTimer::new(gpu)?;
    println!(
        "\n| workgroups | weights KiB/stage | dispatch chain | grid barrier, plain data | grid, atomic data | grid, atomic, prefetch | flags, atomic, prefetch |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &wgs in &args.wgs {
        for &ww in &args.wwords {
            let mut cols = Vec::new();
            for mode in ["chain", "grid", "atomic", "prefetch", "flags"] {
                // A failed check is a result too: it goes in the table.
                cols.push(match sync_run(gpu, &s, &timer, args, wgs, ww, mode) {
                    Ok(us) => format!("{us:.2}"),
                    Err(e) => format!("FAIL: {e}"),
                });
            }
            let kib = wgs as u64 * 256 * 16 * ww as u64 / 1024;
            println!("| {wgs} | {kib} | {} |", cols.join(" | "));
        }
    }
    Ok(())
}

/// One mode's median µs per stage, after checking each run's results.
fn sync_run(
    gpu: &Gpu,
    s: &SyncRig,
    timer: &GpuTimer,
    args: &Args,
    wgs: u32,
    wwords: u32,
    mode: &str,
) -> Result<f64> {
    let width = wgs * 8;
    let per_slice = (wgs as u64 * 256 * 16 * wwords as u64).max(1);
    let slices = (s.weights.size() / per_slice).clamp(1, 1 << 20) as u32;
    let base = SyncParams {
        width,
        stages: args.stages,
        limit: args.limit,
        wwords,
        slices,
        prefetch: u32::from(mode == "prefetch" || mode == "flags"),
        stage: 0,
        flags: u32::from(mode == "flags"),
    };
    let mut slots = vec![0u8; (SLOT * args.stages as u64) as usize];
    for i in 0..args.stages {
        let p = SyncParams { stage: i, ..base };
        let o = i as usize * SLOT as usize;
        slots[o..o + 32].copy_from_slice(bytemuck::bytes_of(&p));
    }
    gpu.queue.write_buffer(&s.params, 0, &slots);
    let bg = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("probe sync"),
        layout: &s.layout,
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &s.params,
                    offset: 0,
                    size: wgpu::BufferSize::new(32),
                }),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: s.buf.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 2,
                resource: s.sync.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 3,
                resource: s.weights.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 4,
                resource: s.flags.as_entire_binding(),
            },
        ],
    });
    let mut times = Vec::new();
    for _ in 0..args.repeats.max(1) + 1 {
        let zeros = vec![0u8; s.buf.size() as usize];
        gpu.queue.write_buffer(&s.buf, 0, &zeros);
        gpu.queue.write_buffer(&s.sync, 0, &[0u8; 16]);
        gpu.queue
            .write_buffer(&s.flags, 0, &vec![0u8; s.flags.size() as usize]);
        let t = timer.time(gpu, |pass| {
            if mode == "chain" {
                pass.set_pipeline(&s.chain);
                for i in 0..args.stages {
                    pass.set_bind_group(0, &bg, &[i * SLOT as u32]);
                    pass.dispatch_workgroups(wgs, 1, 1);
                }
            } else {
                pass.set_pipeline(&s.grid[usize::from(mode != "grid")]);
                pass.set_bind_group(0, &bg, &[0]);
                pass.dispatch_workgroups(wgs, 1, 1);
            }
        })?;
        times.push(t.best_ns() / 1e3 / args.stages as f64);
        check_sync(gpu, s, args.stages, width, mode)?;
    }
    times.remove(0); // the first run warms up
    Ok(median(&mut times))
}

/// After a run: no stale reads, no wait that gave up, and every entry of
/// the last half written holds the stage count.
fn check_sync(gpu: &Gpu, s: &SyncRig, stages: u32, width: u32, mode: &str) -> Result<()> {
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(&s.sync, 0, &s.read, 0, 16);
    gpu.wait(Some(gpu.queue.submit([enc.finish()])))?;
    let c = read_u32s(gpu, &s.read, 4)?;
    if c[1] != 0 || c[2] != 0 {
        bail!(
            "{mode}: {} barrier waits gave up, {} stale entries read",
            c[1],
            c[2]
        );
    }
    let half = (stages & 1) as u64 * width as u64 * 4;
    let n = width as u64 * 4;
    let staging = buffer(
        gpu,
        "check",
        n,
        wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
    )?;
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(&s.buf, half, &staging, 0, n);
    gpu.wait(Some(gpu.queue.submit([enc.finish()])))?;
    let v: Vec<u32> =
        bytemuck::pod_collect_to_vec(&q4gpu::gpu::readback::map_and_copy(gpu, &staging, n)?);
    if let Some((i, x)) = v.iter().enumerate().find(|(_, &x)| x != stages) {
        bail!("{mode}: entry {i} ends at {x}, not {stages}");
    }
    Ok(())
}

/// Parses and validates `src` with naga (every capability allowed).
fn validate_wgsl(name: &str, src: &str) -> Result<()> {
    let module = naga::front::wgsl::parse_str(src)
        .map_err(|e| anyhow::anyhow!("{name}: {}", e.emit_to_string(src)))?;
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map_err(|e| anyhow::anyhow!("{name}: {}", e.emit_to_string(src)))?;
    Ok(())
}

fn coop_probe(gpu: &Gpu, args: &Args) -> Result<()> {
    // The struct after the `enable` directives, which must come first.
    let src = include_str!("../benches/probe/coop.wgsl").replacen(
        "\nstruct_here\n",
        &format!("\n{COOP_PARAMS_WGSL}"),
        1,
    );
    // WGSL cooperative matrices run on Vulkan only (on Metal, q4gpu's
    // matrix units are the MSL twins' simdgroup matrices).
    if !gpu.matrix_units || gpu.info.backend != wgpu::Backend::Vulkan {
        // Still parse and validate it, so a broken probe shows here.
        validate_wgsl("coop.wgsl", &src)?;
        println!("\ncoop: no Vulkan cooperative matrices here (coop.wgsl validates); skipped");
        return Ok(());
    }
    let m = module(gpu, "probe coop", &src)?;
    let layout = gpu
        .device
        .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("probe coop"),
            entries: &[uniform_entry(false), storage_entry(1, false)],
        });
    let pipe = pipeline(gpu, &m, &layout, "compute_main")?;
    let wgs = 1056u32;
    let out = buffer(
        gpu,
        "out",
        wgs as u64 * 8 * 2048 * 4,
        wgpu::BufferUsages::STORAGE,
    )?;
    let params = buffer(
        gpu,
        "params",
        32,
        wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    )?;
    let timer = GpuTimer::new(gpu)?;
    println!("\n| mode | products per iteration | fragment loads per product | TFLOPS |");
    println!("|---|---|---|---|");
    for (mode, products, loads) in [(0u32, 4u64, "0"), (1, 2, "1.5"), (2, 8, "0.75")] {
        gpu.queue.write_buffer(
            &params,
            0,
            bytemuck::bytes_of(&CoopParams {
                iters: args.iters,
                mode,
                pad0: 0,
                pad1: 0,
            }),
        );
        let bg = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("probe coop"),
            layout: &layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: params.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: out.as_entire_binding(),
                },
            ],
        });
        let mut times = Vec::new();
        for _ in 0..args.repeats.max(1) + 1 {
            let t = timer.time(gpu, |pass| {
                pass.set_pipeline(&pipe);
                pass.set_bind_group(0, &bg, &[]);
                pass.dispatch_workgroups(wgs, 1, 1);
            })?;
            times.push(t.best_ns());
        }
        times.remove(0);
        let ns = median(&mut times);
        let flops = wgs as f64 * 8.0 * args.iters as f64 * products as f64 * 8192.0;
        println!(
            "| {mode} | {products} | {loads} | {:.1} |",
            flops / ns / 1e3
        );
    }
    gpu.check().context("after the coop probe")?;
    Ok(())
}
