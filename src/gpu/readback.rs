//! Mapped-buffer readback (copy to a MAP_READ staging buffer, `map_async`,
//! poll, read) and the comparison of GPU results with a CPU reference.

use super::{Gpu, GpuError};

/// Copies `count` 4-byte values from `src` at byte `offset` back to the host.
fn read_words(
    gpu: &Gpu,
    src: &wgpu::Buffer,
    offset: u64,
    count: usize,
) -> Result<Vec<u8>, GpuError> {
    match copy_to_staging(gpu, src, offset, count)? {
        Some((staging, size)) => map_and_copy(gpu, &staging, size),
        None => Ok(Vec::new()),
    }
}

/// A MAP_READ buffer holding a copy of `count` 4-byte values of `src` from
/// byte `offset` (the copy submitted), and its size; `None` for no values.
fn copy_to_staging(
    gpu: &Gpu,
    src: &wgpu::Buffer,
    offset: u64,
    count: usize,
) -> Result<Option<(wgpu::Buffer, u64)>, GpuError> {
    let size = count as u64 * 4;
    if !offset.is_multiple_of(4) || offset + size > src.size() {
        return Err(GpuError::BadArgument(format!(
            "readback of {size} bytes at {offset} from a {}-byte buffer",
            src.size()
        )));
    }
    if size == 0 {
        return Ok(None);
    }
    // Short-lived (dropped once read), so not counted in
    // `Gpu::allocated_bytes`, which adds up what stays allocated.
    let staging = gpu.scoped("creating readback buffer", || {
        gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    })?;
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(src, offset, &staging, 0, size);
    gpu.queue.submit([enc.finish()]);
    Ok(Some((staging, size)))
}

/// [`read_f32`] without blocking, for hosts with their own event loop (a
/// web page, a winit app): the copy is submitted at once and the future
/// completes when wgpu reports the mapping, which happens when the device
/// is polled (by the browser on the web; natively by the host's
/// `device.poll`, e.g. once a frame). It never calls `block_on` or waits.
pub async fn read_f32_async(
    gpu: &Gpu,
    src: &wgpu::Buffer,
    offset: usize,
    count: usize,
) -> Result<Vec<f32>, GpuError> {
    let bytes = read_words_async(gpu, src, offset as u64 * 4, count).await?;
    Ok(f32s(&bytes))
}

/// [`read_u32`] without blocking (see [`read_f32_async`]).
pub async fn read_u32_async(
    gpu: &Gpu,
    src: &wgpu::Buffer,
    offset: usize,
    count: usize,
) -> Result<Vec<u32>, GpuError> {
    let bytes = read_words_async(gpu, src, offset as u64 * 4, count).await?;
    Ok(u32s(&bytes))
}

/// [`read_words`] as a future that completes when the mapping is reported.
async fn read_words_async(
    gpu: &Gpu,
    src: &wgpu::Buffer,
    offset: u64,
    count: usize,
) -> Result<Vec<u8>, GpuError> {
    let Some((staging, size)) = copy_to_staging(gpu, src, offset, count)? else {
        return Ok(Vec::new());
    };
    let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
    staging.map_async(wgpu::MapMode::Read, 0..size, move |r| {
        let _ = tx.send(r);
    });
    match rx.receive().await {
        Some(Ok(())) => {}
        Some(Err(e)) => return Err(GpuError::Map(format!("readback: {e}"))),
        None => return Err(GpuError::Map("readback: the mapping was dropped".into())),
    }
    take_mapped(&staging, size)
}

/// The first `size` bytes of a mapped buffer, which is then unmapped.
fn take_mapped(staging: &wgpu::Buffer, size: u64) -> Result<Vec<u8>, GpuError> {
    let out = staging
        .get_mapped_range(0..size)
        .map_err(|e| GpuError::Map(e.to_string()))?
        .to_vec();
    staging.unmap();
    Ok(out)
}

/// Little-endian f32 words of `bytes`.
fn f32s(bytes: &[u8]) -> Vec<f32> {
    let word = |c: &[u8]| f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    bytes.chunks_exact(4).map(word).collect()
}

/// Little-endian u32 words of `bytes`.
fn u32s(bytes: &[u8]) -> Vec<u32> {
    let word = |c: &[u8]| u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    bytes.chunks_exact(4).map(word).collect()
}

/// Maps a MAP_READ buffer, waits for it (ending with an error, never a hang,
/// if the device is lost), and copies its first `size` bytes out.
pub fn map_and_copy(gpu: &Gpu, staging: &wgpu::Buffer, size: u64) -> Result<Vec<u8>, GpuError> {
    if size > staging.size() {
        return Err(GpuError::BadArgument(format!(
            "mapping {size} bytes of a {}-byte buffer",
            staging.size()
        )));
    }
    let map = gpu.start_map(staging, 0..size);
    gpu.finish_map(map, None, "readback")?;
    take_mapped(staging, size)
}

/// Reads `count` f32 values starting at element `offset` of `src`.
pub fn read_f32(
    gpu: &Gpu,
    src: &wgpu::Buffer,
    offset: usize,
    count: usize,
) -> Result<Vec<f32>, GpuError> {
    let bytes = read_words(gpu, src, offset as u64 * 4, count)?;
    Ok(f32s(&bytes))
}

/// Reads `count` u32 values starting at element `offset` of `src`.
pub fn read_u32(
    gpu: &Gpu,
    src: &wgpu::Buffer,
    offset: usize,
    count: usize,
) -> Result<Vec<u32>, GpuError> {
    let bytes = read_words(gpu, src, offset as u64 * 4, count)?;
    Ok(u32s(&bytes))
}

/// How far a GPU result is from its CPU reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValidationReport {
    /// Number of values compared.
    pub n: usize,
    /// ‖gpu − ref‖₂ / ‖ref‖₂ (infinite if any GPU value is not finite).
    pub rel_err: f64,
    /// max |gpu − ref|.
    pub max_abs_err: f64,
    /// Index of the largest absolute error.
    pub worst_index: usize,
    /// GPU values that are NaN or infinite (e.g. poison never overwritten).
    pub non_finite: usize,
}

impl ValidationReport {
    /// True when every value is finite, lengths matched and rel_err ≤ `tol`.
    pub fn passes(&self, tol: f64) -> bool {
        self.non_finite == 0 && self.rel_err <= tol
    }
}

impl std::fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n={} rel_err={:.3e} max_abs_err={:.3e} (at {}) non_finite={}",
            self.n, self.rel_err, self.max_abs_err, self.worst_index, self.non_finite
        )
    }
}

/// Compares `gpu` against `reference`; a length mismatch counts every missing
/// value as non-finite.
pub fn compare(gpu: &[f32], reference: &[f32]) -> ValidationReport {
    let mut num = 0.0f64;
    let mut den = 0.0f64;
    let mut max_abs = 0.0f64;
    let mut worst = 0;
    let mut non_finite = gpu.len().abs_diff(reference.len());
    for (i, (&g, &r)) in gpu.iter().zip(reference).enumerate() {
        if !g.is_finite() {
            non_finite += 1;
            continue;
        }
        let d = (g as f64 - r as f64).abs();
        num += d * d;
        den += (r as f64) * (r as f64);
        if d > max_abs {
            max_abs = d;
            worst = i;
        }
    }
    let rel_err = if non_finite > 0 {
        f64::INFINITY
    } else if den == 0.0 {
        if num == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (num / den).sqrt()
    };
    ValidationReport {
        n: gpu.len().min(reference.len()),
        rel_err,
        max_abs_err: max_abs,
        worst_index: worst,
        non_finite,
    }
}
