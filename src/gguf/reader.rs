//! Validating GGUF parser and the [`Gguf`] handle (memory map or owned bytes).

use super::{
    GgmlType, GgufError, Value, ValueType, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, KEY_ALIGNMENT,
    MAX_ARRAY_NESTING, MAX_DIMS, MAX_TENSOR_NAME_LEN,
};
use std::path::Path;

/// Fewest bytes one metadata pair occupies: key length (8) + 1 key byte + type (4) + 1 value byte.
pub(crate) const MIN_KV_BYTES: u64 = 14;
/// Fewest bytes one tensor info occupies: name length (8) + 1 name byte + n_dims (4) + one dim
/// (8) + type (4) + offset (8).
pub(crate) const MIN_TENSOR_INFO_BYTES: u64 = 33;

/// Description of one tensor: where its bytes are and how to read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// Shape in ggml order: `dims[0]` is the row length (fastest varying).
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset of the first byte relative to the data section.
    pub offset: u64,
    pub n_elements: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of rows (product of all dims but the first).
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
}

enum Storage {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mmap(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A parsed, fully validated GGUF file. Tensor data is borrowed from the map, never copied.
pub struct Gguf {
    storage: Storage,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, Value)>,
    /// Indices into `metadata`, sorted by key, for binary search.
    kv_sorted: Vec<usize>,
    tensors: Vec<TensorInfo>,
    /// Indices into `tensors`, sorted by name.
    tensor_sorted: Vec<usize>,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("version", &self.version)
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .field("file_len", &self.storage.bytes().len())
            .field("n_kv", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .finish()
    }
}

impl Gguf {
    /// Opens and validates a GGUF file through a read-only memory map.
    ///
    /// The file must not be modified while the returned handle lives (the usual
    /// memory-map caveat: a concurrent writer could change bytes under us).
    pub fn open(path: impl AsRef<Path>) -> Result<Gguf, GgufError> {
        let path = path.as_ref();
        let io = |error| GgufError::Io {
            path: path.to_path_buf(),
            error,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            // Mapping a directory fails with "No such device".
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file (a GGUF model file is expected)",
            )));
        }
        let len = meta.len();
        let storage = if len == 0 {
            // Mapping an empty file fails on some platforms; parse it as empty bytes instead.
            Storage::Owned(Vec::new())
        } else {
            // SAFETY: the map is read-only and only read through safe slices; the bytes are
            // validated before use. Concurrent modification of the file by another process is
            // outside what we can guard against (documented above).
            Storage::Mmap(unsafe { memmap2::Mmap::map(&file) }.map_err(io)?)
        };
        Self::from_storage(storage)
    }

    /// Parses and validates GGUF bytes held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Gguf, GgufError> {
        Self::from_storage(Storage::Owned(bytes))
    }

    fn from_storage(storage: Storage) -> Result<Gguf, GgufError> {
        let p = parse(storage.bytes())?;
        Ok(Gguf {
            storage,
            version: p.version,
            alignment: p.alignment,
            data_offset: p.data_offset,
            metadata: p.metadata,
            kv_sorted: p.kv_sorted,
            tensors: p.tensors,
            tensor_sorted: p.tensor_sorted,
        })
    }

    /// GGUF version of the file (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of the data section and of tensor offsets.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset of the data section (tensor infos' end, aligned up).
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Size of the whole file in bytes.
    pub fn file_len(&self) -> u64 {
        self.storage.bytes().len() as u64
    }

    /// All metadata pairs in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let i = self
            .kv_sorted
            .binary_search_by(|&i| self.metadata.get(i).map_or("", |kv| kv.0.as_str()).cmp(key))
            .ok()?;
        self.metadata.get(*self.kv_sorted.get(i)?).map(|kv| &kv.1)
    }

    fn require(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            key: key.to_owned(),
        })
    }

    fn typed<'s, T>(
        &'s self,
        key: &str,
        expected: &'static str,
        f: impl FnOnce(&'s Value) -> Option<T>,
    ) -> Result<T, GgufError> {
        let v = self.require(key)?;
        f(v).ok_or_else(|| wrong_type(key, expected, v))
    }

    /// An integer value that fits `u32` losslessly (any integer type).
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.typed(key, "an integer in u32 range", Value::as_u32)
    }

    /// An integer value that fits `u64` losslessly (any integer type).
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.typed(key, "an integer in u64 range", Value::as_u64)
    }

    /// An integer value that fits `i64` losslessly (any integer type).
    pub fn get_i64(&self, key: &str) -> Result<i64, GgufError> {
        self.typed(key, "an integer in i64 range", Value::as_i64)
    }

    /// A float value (`f32`, or `f64` rounded to `f32`).
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        self.typed(key, "f32 or f64", Value::as_f32)
    }

    /// A bool value.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        self.typed(key, "bool", Value::as_bool)
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        self.typed(key, "string", Value::as_str)
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        self.typed(key, "array of strings", |v| {
            v.as_array()?.iter().map(Value::as_str).collect()
        })
    }

    /// An array of floats (`f32`, or `f64` rounded).
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, GgufError> {
        self.typed(key, "array of f32", |v| {
            v.as_array()?.iter().map(Value::as_f32).collect()
        })
    }

    /// An array of integers that each fit `i32` losslessly.
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>, GgufError> {
        self.typed(key, "array of integers in i32 range", |v| {
            v.as_array()?.iter().map(Value::as_i32).collect()
        })
    }

    /// All tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The info of tensor `name`; the error names the missing tensor.
    pub fn tensor_info(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.tensor_sorted
            .binary_search_by(|&i| {
                self.tensors
                    .get(i)
                    .map_or("", |t| t.name.as_str())
                    .cmp(name)
            })
            .ok()
            .and_then(|i| self.tensors.get(*self.tensor_sorted.get(i)?))
            .ok_or_else(|| GgufError::MissingTensor {
                name: name.to_owned(),
            })
    }

    /// The exact `n_bytes` of tensor `name`, borrowed from the file.
    pub fn tensor_data(&self, name: &str) -> Result<&[u8], GgufError> {
        let info = self.tensor_info(name)?;
        self.tensor_bytes(info)
    }

    /// The bytes of a tensor described by `info` (which must come from this file).
    pub fn tensor_bytes(&self, info: &TensorInfo) -> Result<&[u8], GgufError> {
        let bytes = self.storage.bytes();
        let out_of_bounds = || GgufError::TensorOutOfBounds {
            name: info.name.clone(),
            start: self.data_offset.saturating_add(info.offset),
            end: self
                .data_offset
                .saturating_add(info.offset)
                .saturating_add(info.n_bytes),
            file_len: bytes.len() as u64,
        };
        let start = self
            .data_offset
            .checked_add(info.offset)
            .and_then(|s| usize::try_from(s).ok())
            .ok_or_else(out_of_bounds)?;
        let len = usize::try_from(info.n_bytes).map_err(|_| out_of_bounds())?;
        let end = start.checked_add(len).ok_or_else(out_of_bounds)?;
        bytes.get(start..end).ok_or_else(out_of_bounds)
    }

    /// The whole file's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.storage.bytes()
    }
}

fn wrong_type(key: &str, expected: &'static str, v: &Value) -> GgufError {
    let mut found = v.type_description();
    match v {
        Value::Array(items) => {
            // Name the first element that does not convert, if the container type was right.
            if let Some((i, bad)) = items
                .iter()
                .enumerate()
                .find(|(_, x)| !matches!(x, Value::Array(_)))
            {
                found = format!("{found} (element {i} is {})", describe_scalar(bad));
            }
        }
        other => found = describe_scalar(other),
    }
    GgufError::WrongType {
        key: key.to_owned(),
        expected,
        found,
    }
}

fn describe_scalar(v: &Value) -> String {
    match v {
        Value::String(_) | Value::Array(_) => v.type_description(),
        Value::Bool(b) => format!("bool {b}"),
        Value::F32(x) => format!("f32 {x}"),
        Value::F64(x) => format!("f64 {x}"),
        other => match other.as_i64() {
            Some(i) => format!("{} {i}", other.value_type()),
            None => format!("{} {}", other.value_type(), other.as_u64().unwrap_or(0)),
        },
    }
}

/// Not enough bytes left for a read; turned into [`GgufError::Truncated`] with context.
struct Short {
    offset: u64,
    need: u64,
    left: u64,
}

/// Bounds-checked little-endian reader over a byte slice.
struct Cursor<'b> {
    buf: &'b [u8],
    pos: usize,
}

impl<'b> Cursor<'b> {
    fn left(&self) -> u64 {
        self.buf.len().saturating_sub(self.pos) as u64
    }

    fn take(&mut self, n: u64) -> Result<&'b [u8], Short> {
        let short = Short {
            offset: self.pos as u64,
            need: n,
            left: self.left(),
        };
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .ok_or(short)?;
        let s = self.buf.get(self.pos..end).ok_or(Short {
            offset: self.pos as u64,
            need: n,
            left: self.left(),
        })?;
        self.pos = end;
        Ok(s)
    }

    fn arr<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        let s = self.take(N as u64)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.arr::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, Short> {
        self.arr().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, Short> {
        self.arr().map(u64::from_le_bytes)
    }
}

/// Attaches a description to a short read.
fn ctx<T>(r: Result<T, Short>, what: impl FnOnce() -> String) -> Result<T, GgufError> {
    r.map_err(|s| GgufError::Truncated {
        what: what(),
        offset: s.offset,
        need: s.need,
        left: s.left,
    })
}

fn read_string(c: &mut Cursor<'_>, what: &dyn Fn() -> String) -> Result<String, GgufError> {
    let at = c.pos as u64;
    let len = ctx(c.u64(), || format!("length of {}", what()))?;
    if len > c.left() {
        return Err(GgufError::StringPastEof {
            what: what(),
            offset: at,
            len,
            left: c.left(),
        });
    }
    let start = c.pos as u64;
    let bytes = ctx(c.take(len), what)?;
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(e) => Err(GgufError::InvalidUtf8 {
            what: what(),
            offset: start,
            valid_up_to: e.valid_up_to(),
        }),
    }
}

fn read_value(
    c: &mut Cursor<'_>,
    ty: ValueType,
    key: &str,
    depth: usize,
) -> Result<Value, GgufError> {
    let what = || format!("{} value of key '{key}'", ty.name());
    Ok(match ty {
        ValueType::U8 => Value::U8(ctx(c.u8(), what)?),
        ValueType::I8 => Value::I8(i8::from_le_bytes(ctx(c.arr(), what)?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(ctx(c.arr(), what)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(ctx(c.arr(), what)?)),
        ValueType::U32 => Value::U32(u32::from_le_bytes(ctx(c.arr(), what)?)),
        ValueType::I32 => Value::I32(i32::from_le_bytes(ctx(c.arr(), what)?)),
        ValueType::U64 => Value::U64(u64::from_le_bytes(ctx(c.arr(), what)?)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(ctx(c.arr(), what)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(ctx(c.arr(), what)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(ctx(c.arr(), what)?)),
        ValueType::Bool => match ctx(c.u8(), what)? {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            value => {
                return Err(GgufError::InvalidBool {
                    key: key.to_owned(),
                    value,
                })
            }
        },
        ValueType::String => {
            Value::String(read_string(c, &|| format!("string value of key '{key}'"))?)
        }
        ValueType::Array => {
            if depth >= MAX_ARRAY_NESTING {
                return Err(GgufError::ArrayTooDeep {
                    key: key.to_owned(),
                    max: MAX_ARRAY_NESTING,
                });
            }
            let raw = ctx(c.u32(), || format!("array element type of key '{key}'"))?;
            let elem = ValueType::from_u32(raw).ok_or_else(|| GgufError::UnknownValueType {
                key: key.to_owned(),
                ty: raw,
            })?;
            let len = ctx(c.u64(), || format!("array length of key '{key}'"))?;
            let min_each = elem.min_encoded_size();
            let fits = len
                .checked_mul(min_each)
                .is_some_and(|need| need <= c.left());
            if !fits {
                return Err(GgufError::ArrayPastEof {
                    key: key.to_owned(),
                    elem,
                    len,
                    min_each,
                    left: c.left(),
                });
            }
            // `len` ≤ bytes left, so this reservation is bounded by the file size.
            let mut items = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            for _ in 0..len {
                items.push(read_value(c, elem, key, depth + 1)?);
            }
            Value::Array(items)
        }
    })
}

/// Everything [`parse`] extracts from a file.
struct Parsed {
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, Value)>,
    kv_sorted: Vec<usize>,
    tensors: Vec<TensorInfo>,
    tensor_sorted: Vec<usize>,
}

fn align_up(x: u64, alignment: u64) -> Option<u64> {
    // alignment is a non-zero power of two here.
    Some(x.checked_add(alignment - 1)? & !(alignment - 1))
}

/// Sorted indices of `items` by `name`, or the first name that occurs twice.
fn sorted_unique<T>(items: &[T], name: impl Fn(&T) -> &str) -> Result<Vec<usize>, String> {
    let mut idx: Vec<usize> = (0..items.len()).collect();
    let key = |i: &usize| items.get(*i).map_or("", &name);
    idx.sort_unstable_by(|a, b| key(a).cmp(key(b)));
    for w in idx.windows(2) {
        if let [a, b] = w {
            if key(a) == key(b) {
                return Err(key(a).to_owned());
            }
        }
    }
    Ok(idx)
}

fn parse(buf: &[u8]) -> Result<Parsed, GgufError> {
    let mut c = Cursor { buf, pos: 0 };
    let file_len = buf.len() as u64;
    let (version, n_tensors, n_kv) = read_header(&mut c)?;
    let metadata = read_metadata(&mut c, n_kv)?;
    let kv_sorted = sorted_unique(&metadata, |kv| kv.0.as_str())
        .map_err(|key| GgufError::DuplicateKey { key })?;
    let alignment = alignment_of(&metadata)?;
    let tensors = read_tensor_infos(&mut c, n_tensors)?;
    let tensor_sorted = sorted_unique(&tensors, |t| t.name.as_str())
        .map_err(|name| GgufError::DuplicateTensor { name })?;

    let infos_end = c.pos as u64;
    let data_offset = align_up(infos_end, alignment).ok_or(GgufError::DataOffsetOverflow {
        end: infos_end,
        alignment,
    })?;
    if n_tensors > 0 && data_offset > file_len {
        return Err(GgufError::Truncated {
            what: "padding before the data section".to_owned(),
            offset: infos_end,
            need: data_offset - infos_end,
            left: c.left(),
        });
    }
    check_data_layout(&tensors, data_offset, alignment, file_len)?;
    Ok(Parsed {
        version,
        alignment,
        data_offset,
        metadata,
        kv_sorted,
        tensors,
        tensor_sorted,
    })
}

/// Magic, version, and the tensor and metadata counts, each count bounded
/// by the bytes left (every entry takes a minimum size).
fn read_header(c: &mut Cursor<'_>) -> Result<(u32, u64, u64), GgufError> {
    let magic: [u8; 4] = ctx(c.arr(), || "magic".to_owned())?;
    if magic != GGUF_MAGIC {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = ctx(c.u32(), || "version".to_owned())?;
    if version != 2 && version != 3 {
        return Err(GgufError::UnsupportedVersion { version });
    }
    let n_tensors = ctx(c.u64(), || "tensor count".to_owned())?;
    let n_kv = ctx(c.u64(), || "metadata count".to_owned())?;
    let left = c.left();
    let tensor_bytes = n_tensors
        .checked_mul(MIN_TENSOR_INFO_BYTES)
        .filter(|&b| b <= left)
        .ok_or(GgufError::TooManyTensors {
            count: n_tensors,
            left,
            min_each: MIN_TENSOR_INFO_BYTES,
        })?;
    let kv_left = left - tensor_bytes;
    if n_kv.checked_mul(MIN_KV_BYTES).is_none_or(|b| b > kv_left) {
        return Err(GgufError::TooManyKv {
            count: n_kv,
            left: kv_left,
            min_each: MIN_KV_BYTES,
        });
    }
    Ok((version, n_tensors, n_kv))
}

/// The metadata key/value pairs. The count was bounded by the bytes left,
/// so the reservation is too.
fn read_metadata(c: &mut Cursor<'_>, n_kv: u64) -> Result<Vec<(String, Value)>, GgufError> {
    let mut metadata: Vec<(String, Value)> = Vec::with_capacity(usize::try_from(n_kv).unwrap_or(0));
    for i in 0..n_kv {
        let key = read_string(c, &|| format!("metadata key #{i}"))?;
        if key.is_empty() {
            return Err(GgufError::EmptyKey { index: i });
        }
        let raw = ctx(c.u32(), || format!("value type of key '{key}'"))?;
        let ty = ValueType::from_u32(raw).ok_or_else(|| GgufError::UnknownValueType {
            key: key.clone(),
            ty: raw,
        })?;
        let value = read_value(c, ty, &key, 0)?;
        metadata.push((key, value));
    }
    Ok(metadata)
}

/// `general.alignment` (a power of two, as u32) or the default.
fn alignment_of(metadata: &[(String, Value)]) -> Result<u64, GgufError> {
    match metadata.iter().find(|kv| kv.0 == KEY_ALIGNMENT) {
        None => Ok(GGUF_DEFAULT_ALIGNMENT),
        Some((_, Value::U32(a))) => {
            if *a == 0 || !a.is_power_of_two() {
                return Err(GgufError::BadAlignment { value: (*a).into() });
            }
            Ok(u64::from(*a))
        }
        Some((_, other)) => Err(GgufError::AlignmentType {
            found: other.type_description(),
        }),
    }
}

/// The tensor infos, the count re-bounded by what is left after the metadata.
fn read_tensor_infos(c: &mut Cursor<'_>, n_tensors: u64) -> Result<Vec<TensorInfo>, GgufError> {
    if n_tensors
        .checked_mul(MIN_TENSOR_INFO_BYTES)
        .is_none_or(|b| b > c.left())
    {
        return Err(GgufError::TooManyTensors {
            count: n_tensors,
            left: c.left(),
            min_each: MIN_TENSOR_INFO_BYTES,
        });
    }
    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(usize::try_from(n_tensors).unwrap_or(0));
    for i in 0..n_tensors {
        tensors.push(read_tensor_info(c, i)?);
    }
    Ok(tensors)
}

/// Data layout: every tensor aligned, in order (llama.cpp's rule), inside the file.
fn check_data_layout(
    tensors: &[TensorInfo],
    data_offset: u64,
    alignment: u64,
    file_len: u64,
) -> Result<(), GgufError> {
    let mut expected = 0u64;
    for t in tensors {
        if t.offset % alignment != 0 {
            return Err(GgufError::TensorMisaligned {
                name: t.name.clone(),
                offset: t.offset,
                alignment,
            });
        }
        if t.offset != expected {
            return Err(GgufError::TensorOffsetMismatch {
                name: t.name.clone(),
                offset: t.offset,
                expected,
            });
        }
        let start = data_offset.saturating_add(t.offset);
        let end = start.saturating_add(t.n_bytes);
        if end > file_len {
            return Err(GgufError::TensorOutOfBounds {
                name: t.name.clone(),
                start,
                end,
                file_len,
            });
        }
        // In bounds, so neither the padding nor the sum can overflow.
        expected = expected.saturating_add(align_up(t.n_bytes, alignment).unwrap_or(u64::MAX));
    }
    Ok(())
}

fn read_tensor_info(c: &mut Cursor<'_>, index: u64) -> Result<TensorInfo, GgufError> {
    let name = read_string(c, &|| format!("name of tensor #{index}"))?;
    if name.is_empty() {
        return Err(GgufError::EmptyTensorName { index });
    }
    if name.len() > MAX_TENSOR_NAME_LEN {
        return Err(GgufError::TensorNameTooLong {
            len: name.len(),
            name,
        });
    }
    let n_dims = ctx(c.u32(), || format!("dimension count of tensor '{name}'"))?;
    if n_dims == 0 || n_dims as usize > MAX_DIMS {
        return Err(GgufError::BadDimCount { name, n_dims });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for d in 0..n_dims as usize {
        let v = ctx(c.u64(), || format!("dimension {d} of tensor '{name}'"))?;
        if v == 0 {
            return Err(GgufError::ZeroDim { name, dim: d });
        }
        dims.push(v);
    }
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64);
    let Some(n_elements) = n_elements else {
        return Err(GgufError::ElementCountOverflow { name, dims });
    };
    let raw = ctx(c.u32(), || format!("type of tensor '{name}'"))?;
    let Some(ty) = GgmlType::from_u32(raw) else {
        return Err(GgufError::UnknownTensorType { name, ty: raw });
    };
    let row_len = dims.first().copied().unwrap_or(0);
    if row_len % ty.block_size() as u64 != 0 {
        return Err(GgufError::RowNotBlockMultiple {
            name,
            row_len,
            ty,
            block: ty.block_size(),
        });
    }
    let n_bytes = ty
        .row_bytes(row_len)
        .and_then(|rb| rb.checked_mul(n_elements / row_len));
    let Some(n_bytes) = n_bytes else {
        return Err(GgufError::ByteSizeOverflow { name, dims, ty });
    };
    let offset = ctx(c.u64(), || format!("data offset of tensor '{name}'"))?;
    Ok(TensorInfo {
        name,
        dims,
        ty,
        offset,
        n_elements,
        n_bytes,
    })
}
