//! GGUF v2/v3 reader (validating, zero-copy over a memory map) and v3 writer.
//!
//! The reader trusts nothing in the file: every count and length is checked against the
//! bytes actually left before anything is reserved, so a hostile file gets a precise
//! [`GgufError`] and never a panic, an out-of-bounds read or a huge allocation. Strings
//! (keys, string values, tensor names) must be valid UTF-8; invalid ones are rejected,
//! not replaced, so a value read back is exactly what the file holds.
//!
//! Checks made on every file (a superset of llama.cpp's `gguf_init_from_file`):
//! magic `GGUF`; version 2 or 3 (v1, 0 and byte-swapped versions rejected); `n_tensors`
//! and `n_kv` bounded by the bytes left; keys non-empty, unique, UTF-8; value types known;
//! array lengths bounded by the bytes left; arrays nested at most [`MAX_ARRAY_NESTING`]
//! deep; bools 0 or 1; `general.alignment` a non-zero power of two of type `u32`; tensor
//! names non-empty, unique, UTF-8, at most [`MAX_TENSOR_NAME_LEN`] bytes; 1..=4 dims,
//! each > 0, element count ≤ `i64::MAX`, byte size representable; tensor type supported
//! ([`GgmlType`]); row length a multiple of the block size; every tensor offset aligned,
//! equal to where the previous tensor ends (padded, as llama.cpp requires) and its bytes
//! inside the file.

mod reader;
mod types;
mod value;
mod writer;

pub use reader::{Gguf, TensorInfo};
pub use types::GgmlType;
pub use value::{Value, ValueType};
pub use writer::GgufWriter;

use std::path::PathBuf;

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// The version [`GgufWriter`] writes.
pub const GGUF_VERSION: u32 = 3;
/// Alignment of the data section and tensor offsets when `general.alignment` is absent.
pub const GGUF_DEFAULT_ALIGNMENT: u64 = 32;
/// Metadata key that overrides the alignment (must be a `u32` power of two).
pub const KEY_ALIGNMENT: &str = "general.alignment";
/// Deepest nesting of arrays accepted (1 = plain array, 2 = array of arrays, ...).
pub const MAX_ARRAY_NESTING: usize = 4;
/// Longest tensor name in bytes (llama.cpp's `GGML_MAX_NAME` − 1 for the NUL).
pub const MAX_TENSOR_NAME_LEN: usize = 63;
/// Most dimensions a tensor may have.
pub const MAX_DIMS: usize = 4;

/// Errors from reading or writing GGUF files. Each names the problem and, where there is
/// one, the key or tensor concerned.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The I/O error is shown in the message (not chained as a source) so one line says it all.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("write failed: {0}")]
    Write(std::io::Error),
    #[error("bad magic \"{}\": not a GGUF file (expected \"GGUF\")", found.escape_ascii())]
    BadMagic { found: [u8; 4] },
    #[error("unsupported GGUF version {version}{}", version_hint(*.version))]
    UnsupportedVersion { version: u32 },
    #[error(
        "file truncated: {what} needs {need} bytes at offset {offset} but only {left} are left"
    )]
    Truncated {
        what: String,
        offset: u64,
        need: u64,
        left: u64,
    },
    #[error("header claims {count} tensors but only {left} bytes follow the header (each tensor info needs at least {min_each})")]
    TooManyTensors {
        count: u64,
        left: u64,
        min_each: u64,
    },
    #[error("header claims {count} metadata key-value pairs but only {left} bytes are left for them (each needs at least {min_each})")]
    TooManyKv {
        count: u64,
        left: u64,
        min_each: u64,
    },
    #[error("string length {len} of {what} at offset {offset} runs past the end of the file ({left} bytes left)")]
    StringPastEof {
        what: String,
        offset: u64,
        len: u64,
        left: u64,
    },
    #[error("array length {len} of key '{key}' (elements of type {elem}, at least {min_each} bytes each) runs past the end of the file ({left} bytes left)")]
    ArrayPastEof {
        key: String,
        elem: ValueType,
        len: u64,
        min_each: u64,
        left: u64,
    },
    #[error("key '{key}': arrays nested deeper than {max} levels")]
    ArrayTooDeep { key: String, max: usize },
    #[error("key '{key}': unknown value type id {ty}")]
    UnknownValueType { key: String, ty: u32 },
    #[error("key '{key}': bool value {value} is neither 0 nor 1")]
    InvalidBool { key: String, value: u8 },
    #[error("metadata key #{index} is empty")]
    EmptyKey { index: u64 },
    #[error("duplicate metadata key '{key}'")]
    DuplicateKey { key: String },
    #[error("{what} at offset {offset} is not valid UTF-8 (valid up to byte {valid_up_to})")]
    InvalidUtf8 {
        what: String,
        offset: u64,
        valid_up_to: usize,
    },
    #[error("key 'general.alignment': alignment {value} is not a non-zero power of two")]
    BadAlignment { value: u64 },
    #[error("key 'general.alignment' must be of type u32, found {found}")]
    AlignmentType { found: String },
    #[error("tensor #{index} has an empty name")]
    EmptyTensorName { index: u64 },
    #[error("tensor '{name}': name is {len} bytes long, more than the {max} allowed", max = MAX_TENSOR_NAME_LEN)]
    TensorNameTooLong { name: String, len: usize },
    #[error("duplicate tensor name '{name}'")]
    DuplicateTensor { name: String },
    #[error("tensor '{name}': {n_dims} dimensions (must be 1..={max})", max = MAX_DIMS)]
    BadDimCount { name: String, n_dims: u32 },
    #[error("tensor '{name}': dimension {dim} is 0")]
    ZeroDim { name: String, dim: usize },
    #[error("tensor '{name}': element count of shape {dims:?} overflows (max i64::MAX)")]
    ElementCountOverflow { name: String, dims: Vec<u64> },
    #[error("tensor '{name}': byte size of shape {dims:?} as {ty} overflows")]
    ByteSizeOverflow {
        name: String,
        dims: Vec<u64>,
        ty: GgmlType,
    },
    #[error("tensor '{name}': {}", tensor_type_problem(*.ty))]
    UnknownTensorType { name: String, ty: u32 },
    #[error(
        "tensor '{name}': row length {row_len} is not a multiple of the {ty} block size {block}"
    )]
    RowNotBlockMultiple {
        name: String,
        row_len: u64,
        ty: GgmlType,
        block: usize,
    },
    #[error(
        "tensor '{name}': data offset {offset} is not a multiple of the alignment {alignment}"
    )]
    TensorMisaligned {
        name: String,
        offset: u64,
        alignment: u64,
    },
    #[error("tensor '{name}': data offset {offset} is not where the previous tensor ends ({expected}); tensors must be stored in order, each padded to the alignment")]
    TensorOffsetMismatch {
        name: String,
        offset: u64,
        expected: u64,
    },
    #[error("tensor '{name}': data bytes {start}..{end} lie outside the file ({file_len} bytes)")]
    TensorOutOfBounds {
        name: String,
        start: u64,
        end: u64,
        file_len: u64,
    },
    #[error(
        "data section offset overflows (after tensor infos ending at {end}, alignment {alignment})"
    )]
    DataOffsetOverflow { end: u64, alignment: u64 },
    #[error("metadata key '{key}' not found")]
    MissingKey { key: String },
    #[error("metadata key '{key}': expected {expected}, found {found}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("tensor '{name}' not found")]
    MissingTensor { name: String },
    #[error("tensor '{name}': data is {got} bytes but shape {dims:?} as {ty} needs {expected}")]
    DataLengthMismatch {
        name: String,
        dims: Vec<u64>,
        ty: GgmlType,
        expected: u64,
        got: u64,
    },
    #[error("key '{key}': array mixes element types {first} and {other}")]
    MixedArray {
        key: String,
        first: ValueType,
        other: ValueType,
    },
    #[error("cannot write: {0}")]
    Unwritable(String),
}

fn version_hint(v: u32) -> &'static str {
    match v {
        1 => " (GGUF v1 is no longer supported; convert the file again)",
        v if v & 0xffff == 0 => " (wrong byte order? big-endian files are not supported)",
        _ => " (supported: 2 and 3)",
    }
}

fn tensor_type_problem(ty: u32) -> String {
    match types::ggml_type_name(ty) {
        Some(n) => {
            let names: Vec<&str> = GgmlType::ALL.iter().map(|t| t.name()).collect();
            format!(
                "type id {ty} ({n}) is not supported (supported: {})",
                names.join(", ")
            )
        }
        None => format!("type id {ty} is not a known ggml type"),
    }
}
