//! GGUF v3 writer: metadata and aligned tensor data, with an atomic write-to-path.

use super::{
    GgmlType, GgufError, Value, ValueType, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION,
    KEY_ALIGNMENT, MAX_ARRAY_NESTING, MAX_DIMS, MAX_TENSOR_NAME_LEN,
};
use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

struct PendingTensor<'a> {
    name: String,
    ty: GgmlType,
    dims: Vec<u64>,
    n_bytes: u64,
    data: Cow<'a, [u8]>,
}

/// Builds a GGUF v3 file: metadata in insertion order, then tensor infos, then tensor
/// data, each tensor padded to the alignment (the layout llama.cpp requires).
///
/// Everything is validated before the first byte is written, so a failed
/// [`write_to`](Self::write_to) for bad content writes nothing; only I/O errors can
/// leave partial output in the writer passed in (use [`write_to_path`](Self::write_to_path)
/// for all-or-nothing files).
pub struct GgufWriter<'a> {
    alignment: u64,
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor<'a>>,
}

impl Default for GgufWriter<'_> {
    fn default() -> Self {
        Self::new()
    }
}

/// Layout decided before writing: alignment and each tensor's data offset.
struct Plan {
    alignment: u64,
    offsets: Vec<u64>,
}

impl<'a> GgufWriter<'a> {
    /// An empty writer with the default alignment (32).
    pub fn new() -> Self {
        GgufWriter {
            alignment: GGUF_DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Sets the alignment (a non-zero power of two that fits `u32`; checked when writing).
    /// A non-default alignment is recorded as `general.alignment` (u32) in the metadata.
    pub fn alignment(mut self, a: u64) -> Self {
        self.alignment = a;
        let present = self.metadata.iter().any(|kv| kv.0 == KEY_ALIGNMENT);
        match u32::try_from(a) {
            Ok(a32) if a != GGUF_DEFAULT_ALIGNMENT || present => {
                self.add_kv(KEY_ALIGNMENT, Value::U32(a32))
            }
            Ok(_) => {}
            // Not representable: drop any stale key so writing reports the bad value.
            Err(_) => self.metadata.retain(|kv| kv.0 != KEY_ALIGNMENT),
        }
        self
    }

    /// Adds a metadata pair; a pair with the same key is replaced in place.
    /// Adding `general.alignment` sets the alignment used for the data.
    pub fn add_kv(&mut self, key: impl Into<String>, v: Value) {
        let key = key.into();
        if let Some(kv) = self.metadata.iter_mut().find(|kv| kv.0 == key) {
            kv.1 = v;
        } else {
            self.metadata.push((key, v));
        }
    }

    /// Adds a tensor; checks the name (non-empty, unique, ≤ 63 bytes), the shape
    /// (1..=4 dims, each > 0, row length a multiple of the block size) and that `data`
    /// has exactly the bytes the shape needs.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        ty: GgmlType,
        dims: &[u64],
        data: impl Into<Cow<'a, [u8]>>,
    ) -> Result<(), GgufError> {
        let name = name.into();
        let data = data.into();
        if name.is_empty() {
            return Err(GgufError::EmptyTensorName {
                index: self.tensors.len() as u64,
            });
        }
        if name.len() > MAX_TENSOR_NAME_LEN {
            return Err(GgufError::TensorNameTooLong {
                len: name.len(),
                name,
            });
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(GgufError::DuplicateTensor { name });
        }
        if dims.is_empty() || dims.len() > MAX_DIMS {
            return Err(GgufError::BadDimCount {
                name,
                n_dims: u32::try_from(dims.len()).unwrap_or(u32::MAX),
            });
        }
        if let Some(d) = dims.iter().position(|&d| d == 0) {
            return Err(GgufError::ZeroDim { name, dim: d });
        }
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64);
        let Some(n_elements) = n_elements else {
            return Err(GgufError::ElementCountOverflow {
                name,
                dims: dims.to_vec(),
            });
        };
        let row_len = dims.first().copied().unwrap_or(1);
        if row_len % ty.block_size() as u64 != 0 {
            return Err(GgufError::RowNotBlockMultiple {
                name,
                row_len,
                ty,
                block: ty.block_size(),
            });
        }
        let Some(n_bytes) = ty
            .row_bytes(row_len)
            .and_then(|rb| rb.checked_mul(n_elements / row_len))
        else {
            return Err(GgufError::ByteSizeOverflow {
                name,
                dims: dims.to_vec(),
                ty,
            });
        };
        if data.len() as u64 != n_bytes {
            return Err(GgufError::DataLengthMismatch {
                name,
                dims: dims.to_vec(),
                ty,
                expected: n_bytes,
                got: data.len() as u64,
            });
        }
        self.tensors.push(PendingTensor {
            name,
            ty,
            dims: dims.to_vec(),
            n_bytes,
            data,
        });
        Ok(())
    }

    /// Checks the metadata and decides the data layout, before anything is written.
    fn plan(&self) -> Result<Plan, GgufError> {
        let alignment = match self.metadata.iter().find(|kv| kv.0 == KEY_ALIGNMENT) {
            Some((_, Value::U32(a))) if a.is_power_of_two() => u64::from(*a),
            Some((_, Value::U32(a))) => return Err(GgufError::BadAlignment { value: (*a).into() }),
            Some((_, other)) => {
                return Err(GgufError::AlignmentType {
                    found: other.type_description(),
                })
            }
            None if self.alignment == GGUF_DEFAULT_ALIGNMENT => GGUF_DEFAULT_ALIGNMENT,
            None => {
                return Err(GgufError::BadAlignment {
                    value: self.alignment,
                })
            }
        };
        for (i, (key, value)) in self.metadata.iter().enumerate() {
            if key.is_empty() {
                return Err(GgufError::EmptyKey { index: i as u64 });
            }
            check_value(key, value, 0)?;
        }
        let mut offsets = Vec::with_capacity(self.tensors.len());
        let mut next = 0u64;
        for t in &self.tensors {
            offsets.push(next);
            next = align_up(t.n_bytes, alignment)
                .and_then(|padded| next.checked_add(padded))
                .ok_or_else(|| GgufError::Unwritable("total tensor data size overflows".into()))?;
        }
        Ok(Plan { alignment, offsets })
    }

    /// Writes the whole file to `w` (validated first; see the type's docs).
    pub fn write_to<W: Write>(&self, mut w: W) -> Result<(), GgufError> {
        let plan = self.plan()?;
        self.write_planned(&mut w, &plan)
            .map_err(GgufError::Write)?;
        w.flush().map_err(GgufError::Write)
    }

    fn write_planned(&self, w: &mut dyn Write, plan: &Plan) -> std::io::Result<()> {
        let mut w = Counting { inner: w, pos: 0 };
        w.write_all(&GGUF_MAGIC)?;
        w.write_all(&GGUF_VERSION.to_le_bytes())?;
        w.write_all(&(self.tensors.len() as u64).to_le_bytes())?;
        w.write_all(&(self.metadata.len() as u64).to_le_bytes())?;
        for (key, value) in &self.metadata {
            write_str(&mut w, key)?;
            w.write_all(&(value.value_type() as u32).to_le_bytes())?;
            write_value(&mut w, value)?;
        }
        for (t, offset) in self.tensors.iter().zip(&plan.offsets) {
            write_str(&mut w, &t.name)?;
            w.write_all(&(t.dims.len() as u32).to_le_bytes())?;
            for d in &t.dims {
                w.write_all(&d.to_le_bytes())?;
            }
            w.write_all(&(t.ty as u32).to_le_bytes())?;
            w.write_all(&offset.to_le_bytes())?;
        }
        w.pad_to(plan.alignment)?;
        for t in &self.tensors {
            w.write_all(&t.data)?;
            w.pad_to(plan.alignment)?;
        }
        Ok(())
    }

    /// Writes the file to a temporary file in the destination's directory, syncs it and
    /// renames it over `path`. On any error the temporary file is removed and `path` is
    /// left as it was (never truncated or half-written). The new file gets default
    /// permissions. Refusing `path` == an input file being read is the caller's job.
    pub fn write_to_path(&self, path: impl AsRef<Path>) -> Result<(), GgufError> {
        let path = path.as_ref();
        let plan = self.plan()?;
        write_atomically(path, |w| self.write_planned(w, &plan))
    }
}

fn align_up(x: u64, alignment: u64) -> Option<u64> {
    Some(x.checked_add(alignment - 1)? & !(alignment - 1))
}

fn check_value(key: &str, v: &Value, depth: usize) -> Result<(), GgufError> {
    if let Value::Array(items) = v {
        if depth >= MAX_ARRAY_NESTING {
            return Err(GgufError::ArrayTooDeep {
                key: key.to_owned(),
                max: MAX_ARRAY_NESTING,
            });
        }
        let first = items.first().map(Value::value_type);
        for item in items {
            let ty = item.value_type();
            if let Some(first) = first.filter(|&f| f != ty) {
                return Err(GgufError::MixedArray {
                    key: key.to_owned(),
                    first,
                    other: ty,
                });
            }
            check_value(key, item, depth + 1)?;
        }
    }
    Ok(())
}

fn write_str(w: &mut dyn Write, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn write_value(w: &mut dyn Write, v: &Value) -> std::io::Result<()> {
    match v {
        Value::U8(x) => w.write_all(&x.to_le_bytes()),
        Value::I8(x) => w.write_all(&x.to_le_bytes()),
        Value::U16(x) => w.write_all(&x.to_le_bytes()),
        Value::I16(x) => w.write_all(&x.to_le_bytes()),
        Value::U32(x) => w.write_all(&x.to_le_bytes()),
        Value::I32(x) => w.write_all(&x.to_le_bytes()),
        Value::U64(x) => w.write_all(&x.to_le_bytes()),
        Value::I64(x) => w.write_all(&x.to_le_bytes()),
        Value::F32(x) => w.write_all(&x.to_le_bytes()),
        Value::F64(x) => w.write_all(&x.to_le_bytes()),
        Value::Bool(x) => w.write_all(&[u8::from(*x)]),
        Value::String(s) => write_str(w, s),
        Value::Array(items) => {
            // An empty array has no element to take the type from; u8 is as good as any.
            let elem = items.first().map_or(ValueType::U8, Value::value_type);
            w.write_all(&(elem as u32).to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|item| write_value(w, item))
        }
    }
}

/// Tracks the write position so padding can be computed.
struct Counting<'w> {
    inner: &'w mut dyn Write,
    pos: u64,
}

impl Counting<'_> {
    fn pad_to(&mut self, alignment: u64) -> std::io::Result<()> {
        const ZEROS: [u8; 256] = [0; 256];
        let mut pad = (alignment - self.pos % alignment) % alignment;
        while pad > 0 {
            let n = pad.min(ZEROS.len() as u64) as usize;
            self.write_all(&ZEROS[..n])?;
            pad -= n as u64;
        }
        Ok(())
    }
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Removes the temporary file unless disarmed (on success, after the rename).
struct TempGuard {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Runs `body` on a fresh temporary file next to `path`, then syncs and renames it into
/// place; on failure removes the temporary file and leaves `path` untouched.
pub(crate) fn write_atomically(
    path: &Path,
    body: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), GgufError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |error| GgufError::Io { path: p, error }
    };
    let file_name = path.file_name().ok_or_else(|| GgufError::Io {
        path: path.to_path_buf(),
        error: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name"),
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut attempts = 0u32;
    let (tmp_path, file) = loop {
        attempts += 1;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(".tmp-{}-{n}", std::process::id()));
        let tmp_path = dir.join(tmp_name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_path)
        {
            Ok(f) => break (tmp_path, f),
            // A stale file of a crashed run may hold the name: try the next one.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 1000 => continue,
            // Name the destination the caller asked for, not our temporary name.
            Err(e) => {
                let msg = format!("cannot create a temporary file in {}: {e}", dir.display());
                return Err(io(path)(std::io::Error::new(e.kind(), msg)));
            }
        }
    };
    let mut guard = TempGuard {
        path: tmp_path,
        armed: true,
    };
    let mut bw = std::io::BufWriter::with_capacity(1 << 20, file);
    body(&mut bw).map_err(io(&guard.path))?;
    // The file is closed (end of the block) before the rename.
    {
        let file = bw
            .into_inner()
            .map_err(|e| io(&guard.path)(e.into_error()))?;
        file.sync_all().map_err(io(&guard.path))?;
    }
    std::fs::rename(&guard.path, path).map_err(io(path))?;
    guard.armed = false;
    // Make the rename durable; failure here does not undo a completed write.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("q4gpu-gguf-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn failed_body_removes_temp_and_keeps_destination() {
        let dir = scratch_dir("atomic-fail");
        let dest = dir.join("out.gguf");
        std::fs::write(&dest, b"old contents").unwrap();
        let err = write_atomically(&dest, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("simulated failure"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("simulated failure"), "{err}");
        assert_eq!(std::fs::read(&dest).unwrap(), b"old contents");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.gguf")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn successful_body_replaces_destination() {
        let dir = scratch_dir("atomic-ok");
        let dest = dir.join("out.gguf");
        std::fs::write(&dest, b"old contents").unwrap();
        write_atomically(&dest, |w| w.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
