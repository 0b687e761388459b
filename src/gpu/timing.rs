//! Timing of recorded GPU work for benchmarks: GPU timestamps around one
//! compute pass when the device has them, else host wall-clock around
//! submit-and-wait.

use std::time::Instant;

use super::readback::map_and_copy;
use super::{Gpu, GpuError};

/// Measures compute passes; create once, reuse for every measurement.
pub struct GpuTimer {
    queries: Option<(wgpu::QuerySet, wgpu::Buffer, wgpu::Buffer)>,
    period_ns: f64,
}

/// One measurement.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// GPU time of the pass (timestamps), if available.
    pub gpu_ns: Option<f64>,
    /// Host time from submit to completion.
    pub wall_ns: f64,
}

impl Timing {
    /// GPU time when measured, else wall time.
    pub fn best_ns(&self) -> f64 {
        self.gpu_ns.unwrap_or(self.wall_ns)
    }
}

impl GpuTimer {
    pub fn new(gpu: &Gpu) -> Result<GpuTimer, GpuError> {
        let queries = if gpu.timestamps {
            Some(gpu.scoped("creating timestamp queries", || {
                let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("timer"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2,
                });
                let resolve = gpu.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("timer resolve"),
                    size: 16,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                let read = gpu.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("timer read"),
                    size: 16,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                (set, resolve, read)
            })?)
        } else {
            None
        };
        Ok(GpuTimer {
            queries,
            period_ns: gpu.queue.get_timestamp_period() as f64,
        })
    }

    /// Records `f` into one compute pass, submits, waits, and returns its time.
    pub fn time(
        &self,
        gpu: &Gpu,
        f: impl FnOnce(&mut wgpu::ComputePass<'_>),
    ) -> Result<Timing, GpuError> {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let tw = self
                .queries
                .as_ref()
                .map(|(set, _, _)| wgpu::ComputePassTimestampWrites {
                    query_set: set,
                    beginning_of_pass_write_index: Some(0),
                    end_of_pass_write_index: Some(1),
                });
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("timed"),
                timestamp_writes: tw,
            });
            f(&mut pass);
        }
        if let Some((set, resolve, read)) = &self.queries {
            enc.resolve_query_set(set, 0..2, resolve, 0);
            enc.copy_buffer_to_buffer(resolve, 0, read, 0, 16);
        }
        let t0 = Instant::now();
        let idx = gpu.queue.submit([enc.finish()]);
        gpu.wait(Some(idx))?;
        let wall_ns = t0.elapsed().as_nanos() as f64;
        let gpu_ns = match &self.queries {
            Some((_, _, read)) => {
                let b = map_and_copy(gpu, read, 16)?;
                let t = |i: usize| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(&b[i * 8..i * 8 + 8]);
                    u64::from_le_bytes(a)
                };
                Some(t(1).wrapping_sub(t(0)) as f64 * self.period_ns)
            }
            None => None,
        };
        Ok(Timing { gpu_ns, wall_ns })
    }
}

/// Median of a sample (sorts it).
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
