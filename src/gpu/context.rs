//! The GPU context: instance, adapter, device and queue, the capabilities the
//! kernels use, and error capture (no wgpu error ever panics through us).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use std::collections::HashMap;

use super::shader::{self, Lang, Sources};
use super::tuning::Tuning;
use super::GpuError;

/// How kernels are compiled on this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelPath {
    /// Hand-written MSL through wgpu's shader passthrough (Metal only).
    Msl,
    /// WGSL compiled by naga.
    Wgsl,
}

/// Choices for [`Gpu::new`] and [`Gpu::from_device`]. The library reads no
/// environment variable: [`GpuOptions::from_env`] is for examples and tools.
#[derive(Debug, Clone)]
pub struct GpuOptions {
    /// Backends to look for adapters on.
    pub backends: wgpu::Backends,
    /// Use WGSL even on Metal.
    pub force_wgsl: bool,
    /// Reduce through workgroup memory even where subgroups exist.
    pub disable_subgroups: bool,
    /// Keep wgpu's runtime bounds checks in WGSL kernels. Off by default:
    /// the kernels guard their own indices and tests run both ways.
    pub checked_shaders: bool,
    /// Optional cap on the storage binding size requested (for testing limits).
    pub max_storage_binding: Option<u64>,
    /// Kernel thresholds; `None`: [`Tuning::for_adapter`].
    pub tuning: Option<Tuning>,
    /// Kernel development: `<name>.wgsl` / `<name>.metal` files in this
    /// folder replace the embedded sources of the same name (see
    /// [`Sources::with_dir`]). Replaced kernels run without wgpu's bounds
    /// checks like the shipped ones, so only a developer sets this.
    pub shader_dir: Option<std::path::PathBuf>,
    /// Take the MSL path even off Metal. Only for testing the fallback:
    /// there every MSL pipeline fails to build and its WGSL twin is used
    /// instead (see [`Gpu::msl_fallbacks`]).
    pub msl_off_metal: bool,
    /// wasm32 only: the browser's WebGPU device was created with the
    /// `subgroups` feature. wgpu 30's WebGPU backend neither requests nor
    /// reports that feature, so a page that requested it itself (see
    /// examples/web/app.js) says so here; the WGSL kernels then reduce with
    /// subgroups and begin with `enable subgroups;`. Ignored elsewhere.
    pub browser_subgroups: bool,
    /// Prefill matmuls on matrix units where the device has them: Vulkan's
    /// cooperative matrices (16×16×16, f16 tiles, f32 accumulators) through
    /// wgpu's experimental feature, simdgroup matrices in the MSL twins on
    /// Metal. Their tiles are f16 (relative error ~5e-4 against ~1e-6 for
    /// f32 FMAs); off: the f32 matmuls everywhere. On by default.
    pub matrix_units: bool,
}

impl Default for GpuOptions {
    fn default() -> Self {
        Self {
            backends: wgpu::Backends::all(),
            force_wgsl: false,
            disable_subgroups: false,
            checked_shaders: false,
            max_storage_binding: None,
            tuning: None,
            shader_dir: None,
            msl_off_metal: false,
            browser_subgroups: false,
            matrix_units: true,
        }
    }
}

/// Parses `auto|vulkan|metal|dx12|gl` into a backend set.
pub fn parse_backend(s: &str) -> Option<wgpu::Backends> {
    Some(match s.to_ascii_lowercase().as_str() {
        "auto" | "all" => wgpu::Backends::all(),
        "vulkan" => wgpu::Backends::VULKAN,
        "metal" => wgpu::Backends::METAL,
        "dx12" => wgpu::Backends::DX12,
        "gl" => wgpu::Backends::GL,
        _ => return None,
    })
}

/// How long one device poll may block before [`Gpu::wait`] checks whether the
/// device was lost meanwhile (the wait itself has no overall limit: slow
/// software devices may legitimately take minutes for a long prompt).
pub const WAIT_SLICE: Duration = Duration::from_millis(250);

type MapResult = Arc<Mutex<Option<Result<(), wgpu::BufferAsyncError>>>>;

/// A `map_async` in progress (see [`Gpu::start_map`]): its result once the
/// callback ran, and an event the callback sets, for awaiting it.
pub(crate) struct MapWait {
    result: MapResult,
    done: Arc<futures_intrusive::sync::ManualResetEvent>,
}

impl MapWait {
    /// Completes when the mapping is reported (when the device is polled
    /// after its work: by the browser on the web, natively by the host);
    /// never blocks. A failed mapping is an error naming `what`.
    pub(crate) async fn finished(self, what: &str) -> Result<(), GpuError> {
        self.done.wait().await;
        let res = self.result.lock().ok().and_then(|mut r| r.take());
        match res {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(GpuError::Map(format!("{what}: {e}"))),
            None => Err(GpuError::Map(format!(
                "{what}: the mapping reported nothing"
            ))),
        }
    }
}

/// A wgpu error as one line: wgpu's "Validation Error / Caused by:" layout
/// flattened to "In Device::create_bind_group, label = 'x': Usage flags ...",
/// with any source snippet of a shader error kept on the lines after it.
fn one_line(e: &wgpu::Error) -> String {
    let text = e.to_string();
    let mut head: Vec<&str> = Vec::new();
    let mut snippet: Vec<&str> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t == "Validation Error" || t == "Caused by:" {
            continue;
        }
        if !snippet.is_empty() || t.starts_with(['┌', '│', '·', '=']) || t.contains(" │ ") {
            snippet.push(line);
        } else {
            head.push(t);
        }
    }
    let mut out = head.join(": ");
    for l in snippet {
        out.push('\n');
        out.push_str(l);
    }
    if out.is_empty() {
        text
    } else {
        out
    }
}

/// How to build one kernel variant: its source file, the flags and valued
/// constants it is assembled with, its bindings after the uniform (`true`:
/// read-only storage) and its workgroup size.
#[derive(Debug, Clone, Copy)]
pub struct KernelSpec<'a> {
    pub file: &'a str,
    pub flags: &'a [&'a str],
    pub consts: &'a [(&'a str, u32)],
    pub bindings: &'a [bool],
    pub workgroup_size: (u32, u32, u32),
}

impl<'a> KernelSpec<'a> {
    /// Source `file` assembled with `flags`, no valued constants, taking
    /// the uniform and then the storage buffers `bindings` (`true`:
    /// read-only), 256 threads per workgroup: most kernels' shape.
    pub fn new(file: &'a str, flags: &'a [&'a str], bindings: &'a [bool]) -> Self {
        KernelSpec {
            file,
            flags,
            consts: &[],
            bindings,
            workgroup_size: (256, 1, 1),
        }
    }
}

/// Immediate-data bytes of every pipeline layout: none (on Metal, wgpu
/// would give immediates the first buffer slot, shifting every binding).
pub const IMMEDIATE_SIZE: u32 = 0;

/// The entries of every kernel's bind group layout (group 0): the uniform at
/// binding 0, then the storage buffers `storage` (`true`: read-only) at
/// 1, 2, …, all visible to compute. On Metal, wgpu gives them buffer slots
/// in this order (tests/msl_interface.rs checks the MSL twins against it).
pub fn layout_entries(storage: &[bool]) -> Vec<wgpu::BindGroupLayoutEntry> {
    let mut entries = vec![buffer_entry(0, wgpu::BufferBindingType::Uniform)];
    for (i, &read_only) in storage.iter().enumerate() {
        entries.push(buffer_entry(
            i as u32 + 1,
            wgpu::BufferBindingType::Storage { read_only },
        ));
    }
    entries
}

fn buffer_entry(binding: u32, ty: wgpu::BufferBindingType) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

/// The device features the prefill matmuls' COOP variants need.
pub const COOP_FEATURES: wgpu::Features =
    wgpu::Features::SHADER_F16.union(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);

/// Workgroup memory of a COOP matmul: 5,120 halves of tiles and 2,048
/// floats of results.
pub const COOP_WORKGROUP_BYTES: u32 = 5120 * 2 + 2048 * 4;

/// Whether `adapter` multiplies 16×16×16 f16 cooperative matrices into f32
/// (on Metal, any simdgroup matrices: the MSL twins use Metal's 8×8).
fn has_coop_16x16_f16(adapter: &wgpu::Adapter, info: &wgpu::AdapterInfo) -> bool {
    if !adapter.features().contains(COOP_FEATURES) {
        return false;
    }
    if info.backend == wgpu::Backend::Metal {
        return true;
    }
    adapter.cooperative_matrix_properties().iter().any(|c| {
        (c.m_size, c.n_size, c.k_size) == (16, 16, 16)
            && c.ab_type == wgpu::CooperativeScalarType::F16
            && c.cr_type == wgpu::CooperativeScalarType::F32
    })
}

/// Whether a device with `features` and `limits` runs the COOP matmuls:
/// on Vulkan with [`COOP_FEATURES`], subgroups of exactly 32 (the kernels
/// give each of a workgroup's 8 subgroups its own tiles) and the workgroup
/// memory; on Metal on the MSL path (simdgroups are 32 wide) with the
/// feature, which wgpu reports for Apple7+ GPUs, whose simdgroup matrices
/// the MSL twins use. A host's device ([`Gpu::from_device`]) is trusted to
/// have 16×16×16 f16 configurations when it enabled the features.
pub fn matrix_units_usable(
    info: &wgpu::AdapterInfo,
    features: wgpu::Features,
    limits: &wgpu::Limits,
    path: KernelPath,
) -> bool {
    let memory = limits.max_compute_workgroup_storage_size >= COOP_WORKGROUP_BYTES;
    if !features.contains(COOP_FEATURES) || !memory || cfg!(target_arch = "wasm32") {
        return false;
    }
    match info.backend {
        wgpu::Backend::Metal => path == KernelPath::Msl,
        wgpu::Backend::Vulkan => info.subgroup_min_size == 32 && info.subgroup_max_size == 32,
        _ => false,
    }
}

/// A device and queue with the capabilities q4gpu's kernels use.
#[derive(Clone)]
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    /// Kernels reduce with subgroup operations.
    pub subgroups: bool,
    /// Timestamp queries are available (for benchmarks).
    pub timestamps: bool,
    /// Prefill matmuls take their `COOP` variants (matrix units; see
    /// [`GpuOptions::matrix_units`] and [`matrix_units_usable`]).
    pub matrix_units: bool,
    /// Kernel language in use.
    pub path: KernelPath,
    /// wgpu runtime bounds checks kept in WGSL kernels.
    pub checked: bool,
    /// The thresholds kernel choices follow (set before building kernels).
    pub tuning: Tuning,
    /// Kernel sources: the embedded ones, or a developer's replacements.
    sources: Arc<Sources>,
    /// Every compiled pipeline, by variant name (see [`Gpu::kernel`]).
    pipelines: Arc<Mutex<HashMap<String, CachedKernel>>>,
    /// Variants that failed to build, by name: (their key, the error's
    /// text), returned again rather than rebuilt (see [`Gpu::kernel`]).
    failed: Arc<Mutex<HashMap<String, (String, String)>>>,
    /// Bind group layouts by signature (see [`Gpu::layout`]).
    layouts: Arc<Mutex<HashMap<Vec<bool>, wgpu::BindGroupLayout>>>,
    errors: Arc<Mutex<Vec<String>>>,
    lost: Arc<Mutex<Option<String>>>,
    /// Bytes of the buffers created through [`Gpu::create_buffer`] (see
    /// [`Gpu::allocated_bytes`]); shared by clones.
    allocated: Arc<AtomicU64>,
    /// Kernels the MSL path built: (MSL pipelines, the ones that failed
    /// and fell back to WGSL as "variant: error"). Shared by clones.
    msl_builds: Arc<Mutex<(usize, Vec<String>)>>,
}

/// A kernel variant in [`Gpu::kernel`]'s cache.
struct CachedKernel {
    /// What the pipeline depends on beyond its name.
    key: String,
    pipeline: wgpu::ComputePipeline,
    /// Built from something other than the embedded WGSL (an MSL twin, or a
    /// `shader_dir` replacement): what the kernel self-check verifies.
    suspect: bool,
    /// Set when the variant failed the self-check: its pipeline built from
    /// the embedded WGSL, which every [`super::matvec::Dispatch`] of the
    /// variant records from then on.
    replacement: Arc<OnceLock<wgpu::ComputePipeline>>,
}

impl CachedKernel {
    /// Suspect and not replaced: still to be checked.
    fn unchecked(&self) -> bool {
        self.suspect && self.replacement.get().is_none()
    }
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .field("path", &self.path)
            .field("subgroups", &self.subgroups)
            .finish()
    }
}

impl Gpu {
    /// Creates its own instance, adapter and device, asking for subgroups,
    /// timestamp queries and MSL passthrough where the adapter has them, and
    /// the adapter's largest buffer and storage-binding limits. Blocks
    /// until the device exists: [`Gpu::new_async`] run to completion.
    pub fn new(opts: &GpuOptions) -> Result<Gpu, GpuError> {
        pollster::block_on(Self::new_async(opts))
    }

    /// [`Gpu::new`] as a future, for hosts that must not block (a web
    /// page, where the adapter and device arrive through the browser's
    /// event loop).
    pub async fn new_async(opts: &GpuOptions) -> Result<Gpu, GpuError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: opts.backends,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|_| GpuError::NoAdapter {
                backends: format!("{:?}", opts.backends),
            })?;
        let info = adapter.get_info();
        let have = adapter.features();
        let mut wanted = wgpu::Features::SUBGROUP
            | wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
            | wgpu::Features::PASSTHROUGH_SHADERS;
        let coop = opts.matrix_units && has_coop_16x16_f16(&adapter, &info);
        if coop {
            wanted |= COOP_FEATURES;
        }
        let features = have & wanted;
        let alimits = adapter.limits();
        let mut limits = wgpu::Limits::default().using_resolution(alimits.clone());
        limits.max_buffer_size = alimits.max_buffer_size;
        limits.max_storage_buffer_binding_size = alimits.max_storage_buffer_binding_size;
        if let Some(cap) = opts.max_storage_binding {
            limits.max_storage_buffer_binding_size =
                limits.max_storage_buffer_binding_size.min(cap);
        }
        limits.max_compute_workgroup_size_x = limits.max_compute_workgroup_size_x.max(256);
        // All the adapter has: `dense` matvecs need more than the default 16 KiB.
        limits.max_compute_workgroup_storage_size = alimits.max_compute_workgroup_storage_size;
        limits.max_compute_invocations_per_workgroup =
            limits.max_compute_invocations_per_workgroup.max(256);
        limits.max_storage_buffers_per_shader_stage =
            alimits.max_storage_buffers_per_shader_stage.min(16);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("q4gpu"),
                required_features: features,
                required_limits: limits,
                // SAFETY: the one experimental feature asked for is
                // cooperative matrices, used only by the prefill matmuls'
                // COOP variants, which the self-check compares with their
                // f32 variants when a model loads.
                experimental_features: if coop {
                    unsafe { wgpu::ExperimentalFeatures::enabled() }
                } else {
                    wgpu::ExperimentalFeatures::disabled()
                },
                ..Default::default()
            })
            .await
            .map_err(|error| GpuError::RequestDevice {
                adapter: info.name.clone(),
                error,
            })?;
        Self::from_device_with_info(device, queue, info, opts, true)
    }

    /// Wraps a host application's existing device and queue. q4gpu uses the
    /// features that device was created with (subgroups if enabled, MSL
    /// passthrough on Metal if enabled) and never changes them. Nor does it
    /// touch the host's uncaptured-error handler or device-lost callback:
    /// its own calls report their errors through error scopes
    /// ([`Gpu::scoped`]), and errors nothing captures reach the host's
    /// handler as before.
    pub fn from_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        opts: &GpuOptions,
    ) -> Result<Gpu, GpuError> {
        Self::from_device_with_info(device, queue, info, opts, false)
    }

    /// `own_device`: q4gpu created the device, so it installs the handlers
    /// that collect uncaptured errors and a device loss.
    fn from_device_with_info(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        opts: &GpuOptions,
        own_device: bool,
    ) -> Result<Gpu, GpuError> {
        let sources = match &opts.shader_dir {
            Some(dir) => Sources::with_dir(dir).map_err(|message| GpuError::Shader {
                name: dir.display().to_string(),
                message,
            })?,
            None => Sources::embedded(),
        };
        let f = device.features();
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let lost: Arc<Mutex<Option<String>>> = Arc::default();
        if own_device {
            let errors = errors.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                if let Ok(mut v) = errors.lock() {
                    v.push(one_line(&e));
                }
            }));
            let lost = lost.clone();
            device.set_device_lost_callback(move |reason, msg| {
                if let Ok(mut l) = lost.lock() {
                    *l = Some(if msg.is_empty() {
                        format!("{reason:?}")
                    } else {
                        format!("{reason:?}: {msg}")
                    });
                }
            });
        }
        let msl_ok = (info.backend == wgpu::Backend::Metal
            && f.contains(wgpu::Features::PASSTHROUGH_SHADERS)
            || opts.msl_off_metal)
            && !opts.force_wgsl;
        let subgroups = (f.contains(wgpu::Features::SUBGROUP)
            || (cfg!(target_arch = "wasm32") && opts.browser_subgroups))
            && !opts.disable_subgroups;
        let path = if msl_ok {
            KernelPath::Msl
        } else {
            KernelPath::Wgsl
        };
        Ok(Gpu {
            subgroups,
            timestamps: f.contains(wgpu::Features::TIMESTAMP_QUERY),
            matrix_units: opts.matrix_units
                && subgroups
                && matrix_units_usable(&info, f, &device.limits(), path),
            path,
            checked: opts.checked_shaders,
            tuning: opts
                .tuning
                .clone()
                .unwrap_or_else(|| Tuning::for_adapter(&info)),
            sources: Arc::new(sources),
            pipelines: Arc::default(),
            failed: Arc::default(),
            layouts: Arc::default(),
            device,
            queue,
            info,
            errors,
            lost,
            allocated: Arc::default(),
            msl_builds: Arc::default(),
        })
    }

    /// On the MSL path: how many pipelines were built from MSL, and the
    /// variants whose MSL failed to build, each as "variant: error", which
    /// run their WGSL twin instead. Empty on the WGSL path.
    pub fn msl_fallbacks(&self) -> (usize, Vec<String>) {
        self.msl_builds
            .lock()
            .map(|b| b.clone())
            .unwrap_or_default()
    }

    /// One line describing adapter, backend and kernel path.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {}), kernels: {}, {}{}",
            self.info.name,
            self.info.backend,
            self.info.driver,
            match self.path {
                KernelPath::Msl => "MSL",
                KernelPath::Wgsl => "WGSL",
            },
            if self.subgroups {
                "subgroup reduction"
            } else {
                "workgroup-memory reduction"
            },
            if self.matrix_units {
                ", prefill on matrix units"
            } else {
                ""
            }
        )
    }

    /// Returns the first wgpu error reported outside an error scope, or the
    /// device-lost reason, since the last call.
    pub fn check(&self) -> Result<(), GpuError> {
        self.check_lost()?;
        if let Ok(mut v) = self.errors.lock() {
            if !v.is_empty() {
                let msg = v.join("; ");
                v.clear();
                return Err(GpuError::Validation {
                    context: "running GPU work".into(),
                    message: msg,
                });
            }
        }
        Ok(())
    }

    /// Runs `f` inside validation and out-of-memory error scopes and turns any
    /// error they catch into a [`GpuError`] naming `context`.
    ///
    /// On wasm32 the browser answers error scopes only through its event
    /// loop, which a blocking wait would stall: there `f` runs without
    /// scopes and its errors arrive at the device's error handler, which
    /// [`Gpu::check`] (called here) reports once they have come.
    // The wasm32 block returns early because the native call after it is the
    // function's tail on other targets.
    #[allow(clippy::needless_return)]
    pub fn scoped<T>(&self, context: &str, f: impl FnOnce() -> T) -> Result<T, GpuError> {
        #[cfg(target_arch = "wasm32")]
        {
            let _ = context;
            let out = f();
            self.check()?;
            return Ok(out);
        }
        #[cfg(not(target_arch = "wasm32"))]
        self.scoped_native(context, f)
    }

    /// [`Gpu::scoped`] with error scopes, which native wgpu answers at once.
    #[cfg(not(target_arch = "wasm32"))]
    fn scoped_native<T>(&self, context: &str, f: impl FnOnce() -> T) -> Result<T, GpuError> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let v = pollster::block_on(val.pop());
        let o = pollster::block_on(oom.pop());
        if let Some(e) = v {
            return Err(GpuError::Validation {
                context: context.to_string(),
                message: one_line(&e),
            });
        }
        if o.is_some() {
            return Err(GpuError::OutOfMemory {
                context: context.to_string(),
            });
        }
        self.check()?;
        Ok(out)
    }

    /// Blocks until `submission` (or all submitted work) is done, in slices of
    /// [`WAIT_SLICE`] so a device lost meanwhile ends the wait with
    /// [`GpuError::DeviceLost`] instead of a hang; then reports captured errors.
    pub fn wait(&self, submission: Option<wgpu::SubmissionIndex>) -> Result<(), GpuError> {
        let mut target = submission;
        let mut failed_submit = None;
        loop {
            self.check_lost()?;
            match self.device.poll(wgpu::PollType::Wait {
                submission_index: target.clone(),
                timeout: Some(WAIT_SLICE),
            }) {
                Ok(_) => break,
                Err(wgpu::PollError::Timeout) => continue,
                // The submission failed (e.g. on a destroyed device, whose loss wgpu
                // reports only once earlier work drains): wait for all work, so the
                // loss or the submit's validation error can be reported instead.
                Err(e) => {
                    failed_submit = Some(e.to_string());
                    target = None;
                }
            }
        }
        self.check()?;
        match failed_submit {
            Some(message) => Err(GpuError::Validation {
                context: "submitting GPU work".into(),
                message,
            }),
            None => Ok(()),
        }
    }

    /// Starts mapping `range` of a MAP_READ `buffer`; finish with [`Gpu::finish_map`].
    pub(crate) fn start_map(&self, buffer: &wgpu::Buffer, range: std::ops::Range<u64>) -> MapWait {
        let result: MapResult = Arc::default();
        let done = Arc::new(futures_intrusive::sync::ManualResetEvent::new(false));
        let (r, d) = (result.clone(), done.clone());
        buffer.map_async(wgpu::MapMode::Read, range, move |res| {
            if let Ok(mut slot) = r.lock() {
                *slot = Some(res);
            }
            d.set();
        });
        MapWait { result, done }
    }

    /// Waits for `submission` (see [`Gpu::wait`]) and for the mapping started by
    /// [`Gpu::start_map`]; a failed or never-completed mapping is an error naming `what`.
    pub(crate) fn finish_map(
        &self,
        map: MapWait,
        submission: Option<wgpu::SubmissionIndex>,
        what: &str,
    ) -> Result<(), GpuError> {
        self.wait(submission)?;
        let take = |m: &MapWait| m.result.lock().ok().and_then(|mut r| r.take());
        // The wait runs the callbacks of finished work; one more poll picks up a
        // mapping requested after the last submission.
        let res = match take(&map) {
            Some(r) => Some(r),
            None => {
                let _ = self.device.poll(wgpu::PollType::Poll);
                take(&map)
            }
        };
        match res {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(GpuError::Map(format!("{what}: {e}"))),
            None => Err(GpuError::Map(format!(
                "{what}: the mapping did not complete after its work finished"
            ))),
        }
    }

    /// The device-lost reason, if the device is lost.
    fn check_lost(&self) -> Result<(), GpuError> {
        match self.lost.lock() {
            Ok(l) => match l.as_ref() {
                Some(m) => Err(GpuError::DeviceLost(m.clone())),
                None => Ok(()),
            },
            Err(_) => Ok(()),
        }
    }

    /// Largest storage binding this device allows.
    pub fn max_binding(&self) -> u64 {
        self.device.limits().max_storage_buffer_binding_size
    }

    /// Bytes requested by every buffer q4gpu created on this device (all
    /// clones of this `Gpu` together) through [`Gpu::storage`],
    /// [`Gpu::upload`], [`Gpu::upload_with_tail`], [`Gpu::uniform`], the
    /// model's token readback slots and the benchmark timer. A running
    /// total, never decreased when a buffer is dropped, and without the
    /// short-lived staging buffers of [`super::read_f32`] and friends (freed
    /// once read) or buffers a host application creates itself. The driver
    /// may round each buffer up further; this counts the sizes asked for.
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    /// Creates a buffer and adds its size to [`Gpu::allocated_bytes`]:
    /// every long-lived buffer of the crate is made here. Callers wrap it
    /// in [`Gpu::scoped`] to catch wgpu's errors.
    pub(crate) fn create_buffer(&self, desc: &wgpu::BufferDescriptor<'_>) -> wgpu::Buffer {
        self.allocated.fetch_add(desc.size, Ordering::Relaxed);
        self.device.create_buffer(desc)
    }

    /// The bind group layout of a kernel taking one uniform (binding 0) and
    /// then storage buffers (bindings 1..), `true` meaning read-only; one
    /// object per signature, shared by every kernel that has it.
    pub fn layout(&self, storage: &[bool]) -> Result<wgpu::BindGroupLayout, GpuError> {
        // Entries are inserted only once built: a panic elsewhere while the
        // lock was held leaves the map valid.
        let mut cache = self
            .layouts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(l) = cache.get(storage) {
            return Ok(l.clone());
        }
        let entries = layout_entries(storage);
        let l = self.scoped("creating bind group layout", || {
            self.device
                .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: None,
                    entries: &entries,
                })
        })?;
        cache.insert(storage.to_vec(), l.clone());
        Ok(l)
    }

    /// The pipeline of kernel variant `name` (see [`KernelSpec`]), compiled
    /// on first use and kept for the device's lifetime: the one pipeline
    /// cache of the crate, shared by every kernel family. A name asked for
    /// again with a different spec is an error (two variants, one name).
    pub fn kernel(
        &self,
        name: &str,
        spec: &KernelSpec<'_>,
    ) -> Result<wgpu::ComputePipeline, GpuError> {
        // What the pipeline depends on beyond its name: the spec and the
        // device settings clones of this Gpu could change.
        let key = format!(
            "{spec:?} subgroups={} path={:?} checked={}",
            self.subgroups, self.path, self.checked
        );
        let mut cache = self.pipeline_cache();
        let two_kernels = |other: &str| GpuError::Shader {
            name: name.to_string(),
            message: format!("one variant name for two kernels: {other} and {key}"),
        };
        if let Some(c) = cache.get(name) {
            if c.key != key {
                return Err(two_kernels(&c.key));
            }
            return Ok(c.pipeline.clone());
        }
        let mut failed = self
            .failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((k, message)) = failed.get(name) {
            return Err(if *k == key {
                GpuError::BuildFailed(message.clone())
            } else {
                two_kernels(k)
            });
        }
        let layout = self.layout(spec.bindings)?;
        // A variant the device cannot build (a COOP one, say) fails once:
        // the callers that fall back ask again for every layer.
        let (p, lang) = self
            .pipeline_with(name, spec, &[&layout])
            .inspect_err(|e| {
                if matches!(e, GpuError::Shader { .. } | GpuError::Validation { .. }) {
                    failed.insert(name.to_string(), (key.clone(), e.to_string()));
                }
            })?;
        drop(failed);
        let kernel = CachedKernel {
            key,
            pipeline: p.clone(),
            // COOP kernels run on an experimental wgpu feature: the
            // self-check replays them against their f32 variants.
            suspect: lang == Lang::Msl
                || self.sources.replaces_any()
                || spec.flags.contains(&super::prefill::COOP),
            replacement: Arc::default(),
        };
        cache.insert(name.to_string(), kernel);
        Ok(p)
    }

    /// Where the self-check puts variant `name`'s replacement pipeline (see
    /// [`super::selfcheck`]); `None` for a name [`Gpu::kernel`] never built.
    pub(crate) fn replacement_slot(
        &self,
        name: &str,
    ) -> Option<Arc<OnceLock<wgpu::ComputePipeline>>> {
        self.pipeline_cache()
            .get(name)
            .map(|c| c.replacement.clone())
    }

    /// Whether variant `name` was built from something other than the
    /// embedded WGSL and has not been replaced yet.
    pub(crate) fn is_suspect(&self, name: &str) -> bool {
        self.pipeline_cache()
            .get(name)
            .is_some_and(CachedKernel::unchecked)
    }

    /// Whether any kernel built so far is suspect (see [`Gpu::is_suspect`]).
    pub(crate) fn has_suspects(&self) -> bool {
        self.pipeline_cache().values().any(CachedKernel::unchecked)
    }

    /// [`Gpu::kernel`]'s cache. Entries are inserted only once built: a
    /// panic elsewhere while the lock was held leaves the map valid.
    fn pipeline_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedKernel>> {
        self.pipelines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `flags` plus `SUBGROUPS` when this device reduces with subgroups:
    /// what a kernel is assembled with.
    fn with_subgroups<'f>(&self, flags: &[&'f str]) -> Vec<&'f str> {
        let mut all = flags.to_vec();
        if self.subgroups {
            all.push("SUBGROUPS");
        }
        all
    }

    /// Records `f`'s launches into one compute pass, labelled `label`, and
    /// submits it.
    pub(crate) fn submit_pass(&self, label: &str, f: impl FnOnce(&mut wgpu::ComputePass<'_>)) {
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes: None,
            });
            f(&mut pass);
        }
        self.queue.submit([enc.finish()]);
    }

    /// Kernel `spec` built from the embedded WGSL, whatever this device's
    /// path and source folder: the self-check's reference.
    pub(crate) fn reference_pipeline(
        &self,
        variant: &str,
        spec: &KernelSpec<'_>,
    ) -> Result<wgpu::ComputePipeline, GpuError> {
        let layout = self.layout(spec.bindings)?;
        let all = self.with_subgroups(spec.flags);
        let embedded = Sources::embedded();
        self.build_pipeline(variant, spec, &[&layout], &all, Lang::Wgsl, &embedded)
    }

    /// Notes a variant the self-check replaced, beside the MSL build
    /// failures [`Gpu::msl_fallbacks`] lists.
    pub(crate) fn note_replaced(&self, line: String) {
        if let Ok(mut b) = self.msl_builds.lock() {
            // Once: a model binds a variant once per layer.
            if !b.1.contains(&line) {
                b.1.push(line);
            }
        }
    }

    /// Compiles kernel file `name` with `flags` (plus `SUBGROUPS` when
    /// enabled) for this device's kernel path, with an explicit pipeline
    /// layout so both languages see the same bindings. Not cached: kernels
    /// with a variant name go through [`Gpu::kernel`].
    pub fn pipeline(
        &self,
        name: &str,
        flags: &[&str],
        layouts: &[&wgpu::BindGroupLayout],
        workgroup_size: (u32, u32, u32),
    ) -> Result<wgpu::ComputePipeline, GpuError> {
        let spec = KernelSpec {
            file: name,
            flags,
            consts: &[],
            bindings: &[],
            workgroup_size,
        };
        self.pipeline_with(name, &spec, layouts).map(|(p, _)| p)
    }

    fn pipeline_with(
        &self,
        variant: &str,
        spec: &KernelSpec<'_>,
        layouts: &[&wgpu::BindGroupLayout],
    ) -> Result<(wgpu::ComputePipeline, Lang), GpuError> {
        let name = spec.file;
        let all = self.with_subgroups(spec.flags);
        let use_msl = self.path == KernelPath::Msl && self.sources.get(Lang::Msl, name).is_some();
        if use_msl {
            match self.build_pipeline(variant, spec, layouts, &all, Lang::Msl, &self.sources) {
                Ok(p) => {
                    if let Ok(mut b) = self.msl_builds.lock() {
                        b.0 += 1;
                    }
                    return Ok((p, Lang::Msl));
                }
                // A kernel Metal's compiler rejects runs its WGSL twin.
                Err(e) => {
                    if let Ok(mut b) = self.msl_builds.lock() {
                        b.1.push(format!("{variant}: {e}"));
                    }
                }
            }
        }
        let p = self.build_pipeline(variant, spec, layouts, &all, Lang::Wgsl, &self.sources)?;
        Ok((p, Lang::Wgsl))
    }

    /// One pipeline of `spec` in `lang`, flags `all` (SUBGROUPS included).
    fn build_pipeline(
        &self,
        variant: &str,
        spec: &KernelSpec<'_>,
        layouts: &[&wgpu::BindGroupLayout],
        all: &[&str],
        lang: Lang,
        sources: &Sources,
    ) -> Result<wgpu::ComputePipeline, GpuError> {
        let (name, flags, workgroup_size) = (spec.file, spec.flags, spec.workgroup_size);
        let use_msl = lang == Lang::Msl;
        let shader_err = |message| GpuError::Shader {
            name: name.to_string(),
            message,
        };
        let known = sources.known_flags(lang, name).map_err(shader_err)?;
        if let Some(bad) = flags.iter().find(|f| !known.contains(**f)) {
            return Err(shader_err(format!(
                "unknown flag '{bad}' (this kernel tests: {})",
                known.iter().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        let mut src = sources
            .assemble(lang, name, all, spec.consts)
            .map_err(shader_err)?;
        // Browsers require the directive before subgroup builtins; naga
        // (every native backend) rejects it as unimplemented.
        if cfg!(target_arch = "wasm32") && lang == Lang::Wgsl && all.contains(&"SUBGROUPS") {
            src.insert_str(0, "enable subgroups;\n");
        }
        let label = if variant == name {
            format!("{name}[{}]", all.join(","))
        } else {
            variant.to_string()
        };
        self.scoped(&format!("creating pipeline {label}"), || {
            let module = if use_msl {
                let eps = [wgpu::PassthroughShaderEntryPoint {
                    name: shader::ENTRY_POINT.into(),
                    workgroup_size,
                }];
                // SAFETY: the MSL twins are written against the same binding
                // layout as the WGSL kernels and guard every index they use.
                unsafe {
                    self.device.create_shader_module_passthrough(
                        wgpu::ShaderModuleDescriptorPassthrough {
                            label: Some(&label),
                            entry_points: eps.as_slice().into(),
                            msl: Some(src.as_str().into()),
                            ..Default::default()
                        },
                    )
                }
            } else {
                let desc = wgpu::ShaderModuleDescriptor {
                    label: Some(&label),
                    source: wgpu::ShaderSource::Wgsl(src.as_str().into()),
                };
                if self.checked {
                    self.device.create_shader_module(desc)
                } else {
                    // SAFETY: every kernel bounds its own loads by the uniform
                    // sizes and buffers are padded to whole words; the checked
                    // build runs the same tests (Q4GPU_CHECKED=1).
                    unsafe {
                        self.device.create_shader_module_trusted(
                            desc,
                            wgpu::ShaderRuntimeChecks::unchecked(),
                        )
                    }
                }
            };
            let layout = self
                .device
                .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some(&label),
                    bind_group_layouts: &layouts.iter().map(|l| Some(*l)).collect::<Vec<_>>(),
                    immediate_size: IMMEDIATE_SIZE,
                });
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&label),
                    layout: Some(&layout),
                    module: &module,
                    entry_point: Some(shader::ENTRY_POINT),
                    compilation_options: Default::default(),
                    cache: None,
                })
        })
    }

    /// `size` rounded up to 16 bytes, refused (naming `label`) when it overflows or
    /// exceeds the storage binding limit: every storage buffer is bound whole, and
    /// wgpu would otherwise only fail later, at bind time, without the tensor's name.
    pub(crate) fn storage_size(&self, label: &str, size: u64) -> Result<u64, GpuError> {
        let limit = self.max_binding();
        let padded = size
            .checked_next_multiple_of(16)
            .filter(|&p| p <= limit)
            .ok_or_else(|| GpuError::BindingTooLarge {
                what: label.to_string(),
                needed: size,
                limit,
            })?;
        Ok(padded.max(16))
    }

    /// A storage buffer holding `bytes`, padded with zeros to a multiple of 16
    /// bytes so kernels may read whole vec4 words.
    pub fn upload(
        &self,
        label: &str,
        bytes: &[u8],
        extra: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer, GpuError> {
        self.upload_with_tail(label, bytes, 0, extra)
    }

    /// [`Gpu::upload`] with `tail` more zero bytes after `bytes`: room for
    /// kernels that load a fixed window of words past a block's last byte.
    pub fn upload_with_tail(
        &self,
        label: &str,
        bytes: &[u8],
        tail: u64,
        extra: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer, GpuError> {
        let size = self.storage_size(label, bytes.len() as u64 + tail)?;
        self.scoped(&format!("uploading {label} ({size} bytes)"), || {
            let buf = self.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                // COPY_SRC: tests read weights back to replay a launch elsewhere.
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC
                    | extra,
                mapped_at_creation: true,
            });
            {
                let mut view = buf
                    .slice(..)
                    .get_mapped_range_mut()
                    .map_err(|e| GpuError::Map(format!("{label}: {e}")))?;
                // Mapped-at-creation memory starts zeroed, so the padding is 0.
                view.slice(..bytes.len()).copy_from_slice(bytes);
            }
            buf.unmap();
            Ok(buf)
        })?
    }

    /// A zeroed storage buffer of `size` bytes (rounded up to 16).
    pub fn storage(
        &self,
        label: &str,
        size: u64,
        extra: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer, GpuError> {
        let size = self.storage_size(label, size)?;
        self.scoped(&format!("creating buffer {label} ({size} bytes)"), || {
            self.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC
                    | extra,
                mapped_at_creation: false,
            })
        })
    }

    /// A uniform buffer holding `value`.
    pub fn uniform<T: bytemuck::Pod>(
        &self,
        label: &str,
        value: &T,
    ) -> Result<wgpu::Buffer, GpuError> {
        let bytes = bytemuck::bytes_of(value);
        self.scoped(&format!("creating uniform {label}"), || {
            let buf = self.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes.len() as u64,
                // COPY_SRC: tests read uniforms back to replay a launch.
                usage: wgpu::BufferUsages::UNIFORM
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: true,
            });
            buf.slice(..)
                .get_mapped_range_mut()
                .map_err(|e| GpuError::Map(format!("{label}: {e}")))?
                .copy_from_slice(bytes);
            buf.unmap();
            Ok(buf)
        })?
    }
}
