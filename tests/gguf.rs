//! GGUF reader/writer tests: one crafted bad file per class of defect, round trips
//! (fixed and property-based), atomic writes, and the real model.

use proptest::prelude::*;
use q4gpu::gguf::{GgmlType, Gguf, GgufError, GgufWriter, Value, ValueType, MAX_ARRAY_NESTING};
use std::path::PathBuf;

// ---------------------------------------------------------------- helpers

/// Deterministic pseudo-random bytes for tensor data.
fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A valid file with every value type, arrays, a nested array and three tensors.
fn sample_writer() -> GgufWriter<'static> {
    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", Value::from("llama"));
    w.add_kv("general.name", Value::from("tiny test model"));
    w.add_kv("key.a", Value::U32(7));
    w.add_kv("key.b", Value::U32(8));
    w.add_kv("test.u8", Value::U8(200));
    w.add_kv("test.i8", Value::I8(-5));
    w.add_kv("test.u16", Value::U16(60000));
    w.add_kv("test.i16", Value::I16(-30000));
    w.add_kv("test.i32", Value::I32(-7));
    w.add_kv("test.u64", Value::U64(1 << 40));
    w.add_kv("test.i64", Value::I64(-(1 << 40)));
    w.add_kv("test.f32", Value::F32(1.5));
    w.add_kv("test.f64", Value::F64(-2.25));
    w.add_kv("test.bool", Value::Bool(true));
    w.add_kv("test.arr", Value::array([1u32, 2, 3]));
    w.add_kv("test.strs", Value::array(["alpha", "beta", "gamma"]));
    w.add_kv("test.f32s", Value::array([0.5f32, -1.0]));
    w.add_kv(
        "test.nested",
        Value::Array(vec![Value::array([1i32, 2]), Value::array(["x"])]),
    );
    w.add_tensor("t.a", GgmlType::F32, &[4, 2], bytes(32, 1))
        .unwrap();
    w.add_tensor("t.b", GgmlType::Q8_0, &[32, 2], bytes(68, 2))
        .unwrap();
    w.add_tensor("t.c", GgmlType::Q4_1, &[64], bytes(40, 3))
        .unwrap();
    w
}

fn sample() -> Vec<u8> {
    let mut out = Vec::new();
    sample_writer().write_to(&mut out).unwrap();
    out
}

/// Position of the only occurrence of `needle`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    let hits: Vec<usize> = hay
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "{:?} occurs {} times",
        String::from_utf8_lossy(needle),
        hits.len()
    );
    hits[0]
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Offset of the type field of metadata key `key` (the value follows 4 bytes later).
fn kv_type_at(b: &[u8], key: &str) -> usize {
    find(b, key.as_bytes()) + key.len()
}

/// Offset of the n_dims field of tensor `name` (dims, type and offset follow).
fn tensor_ndims_at(b: &[u8], name: &str) -> usize {
    // Tensor names are preceded by their u64 length; include it to avoid matching data.
    let mut needle = (name.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(name.as_bytes());
    find(b, &needle) + needle.len()
}

/// Offset of the type field of tensor `name`, given its dimension count.
fn tensor_type_at(b: &[u8], name: &str, n_dims: usize) -> usize {
    tensor_ndims_at(b, name) + 4 + 8 * n_dims
}

fn parse_err(b: Vec<u8>) -> GgufError {
    match Gguf::from_bytes(b) {
        Ok(_) => panic!("crafted bad file was accepted"),
        Err(e) => e,
    }
}

fn assert_msg(e: &GgufError, parts: &[&str]) {
    let msg = e.to_string();
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} lacks {p:?}");
    }
}

/// Hand-assembled files for defects the writer refuses to produce.
struct Raw(Vec<u8>);

impl Raw {
    fn new(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw(b"GGUF".to_vec());
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &[u8]) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s);
        self
    }
    /// A one-dimensional F32 tensor info of `n` elements at `offset`.
    fn tensor(&mut self, name: &[u8], n: u64, offset: u64) -> &mut Self {
        self.str(name).u32(1).u64(n).u32(0).u64(offset)
    }
    fn pad(&mut self, align: usize) -> &mut Self {
        while !self.0.len().is_multiple_of(align) {
            self.0.push(0);
        }
        self
    }
    fn zeros(&mut self, n: usize) -> &mut Self {
        self.0.extend(std::iter::repeat_n(0u8, n));
        self
    }
}

// ---------------------------------------------------------------- sanity of the fixture

#[test]
fn sample_parses_and_raw_builder_matches_writer() {
    let g = Gguf::from_bytes(sample()).unwrap();
    assert_eq!(g.version(), 3);
    assert_eq!(g.tensors().len(), 3);
    // The hand assembler produces what the writer produces for the same content, so the
    // crafted files below differ from valid ones only in the defect.
    let mut w = GgufWriter::new();
    w.add_kv("k", Value::U32(5));
    w.add_tensor("t", GgmlType::F32, &[2], vec![1, 2, 3, 4, 5, 6, 7, 8])
        .unwrap();
    let mut out = Vec::new();
    w.write_to(&mut out).unwrap();
    let mut raw = Raw::new(3, 1, 1);
    raw.str(b"k").u32(4).u32(5).tensor(b"t", 2, 0).pad(32);
    raw.0.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    raw.pad(32);
    assert_eq!(out, raw.0);
}

// ---------------------------------------------------------------- one test per bad-file class

#[test]
fn bad_magic() {
    let mut b = sample();
    b[0] = b'X';
    let e = parse_err(b);
    assert!(
        matches!(e, GgufError::BadMagic { found } if &found == b"XGUF"),
        "{e:?}"
    );
    assert_msg(&e, &["bad magic \"XGUF\"", "not a GGUF file"]);
}

#[test]
fn bad_version() {
    for (v, hint) in [
        (1u32, "v1 is no longer supported"),
        (0, "byte order"),
        (4, "supported: 2 and 3"),
        (0x0300_0000, "byte order"),
    ] {
        let mut b = sample();
        put_u32(&mut b, 4, v);
        let e = parse_err(b);
        assert!(matches!(e, GgufError::UnsupportedVersion { version } if version == v));
        assert_msg(&e, &[&format!("version {v}"), hint]);
    }
    // Version 2 has the same layout and is accepted.
    let mut b = sample();
    put_u32(&mut b, 4, 2);
    assert_eq!(Gguf::from_bytes(b).unwrap().version(), 2);
}

#[test]
fn truncated_header() {
    for len in [0, 3, 6, 10, 20] {
        let b = sample()[..len].to_vec();
        let e = parse_err(b);
        assert!(matches!(e, GgufError::Truncated { .. }), "{len}: {e:?}");
        assert_msg(&e, &["truncated"]);
    }
    let e = parse_err(sample()[..20].to_vec());
    assert_msg(
        &e,
        &["metadata count", "offset 16", "needs 8 bytes", "only 4"],
    );
}

#[test]
fn truncated_metadata() {
    let b = sample();
    // Cut early: the claimed counts no longer fit what is left, caught before parsing them.
    let at = kv_type_at(&b, "test.u64") + 4 + 3;
    let e = parse_err(b[..at].to_vec());
    assert!(matches!(e, GgufError::TooManyKv { count: 18, .. }), "{e:?}");
    // Cut in the last value of a small file: a plain truncation.
    let mut w = GgufWriter::new();
    w.add_kv("first", Value::U32(1));
    w.add_kv("last", Value::U64(2));
    let mut b = Vec::new();
    w.write_to(&mut b).unwrap();
    let at = kv_type_at(&b, "last") + 4 + 3;
    let e = parse_err(b[..at].to_vec());
    assert!(matches!(e, GgufError::Truncated { .. }), "{e:?}");
    assert_msg(&e, &["u64 value of key 'last'", "needs 8 bytes", "only 3"]);
}

#[test]
fn string_length_past_eof() {
    let mut b = sample();
    let at = kv_type_at(&b, "general.name") + 4;
    let len = b.len() as u64;
    put_u64(&mut b, at, len);
    let e = parse_err(b);
    assert!(matches!(e, GgufError::StringPastEof { .. }), "{e:?}");
    assert_msg(&e, &["string value of key 'general.name'", "past the end"]);
    // A key's own length too.
    let mut b = sample();
    let at = find(&b, b"key.a") - 8;
    put_u64(&mut b, at, u64::MAX);
    let e = parse_err(b);
    assert!(matches!(e, GgufError::StringPastEof { .. }), "{e:?}");
    assert_msg(&e, &["metadata key #2", &u64::MAX.to_string()]);
}

#[test]
fn huge_array_count() {
    for n in [1u64 << 40, u64::MAX, u64::MAX / 8 + 1] {
        let mut b = sample();
        let at = kv_type_at(&b, "test.strs") + 4 + 4; // after array type and element type
        put_u64(&mut b, at, n);
        let e = parse_err(b);
        assert!(
            matches!(&e, GgufError::ArrayPastEof { key, len, elem: ValueType::String, .. } if key == "test.strs" && *len == n),
            "{e:?}"
        );
        assert_msg(&e, &["test.strs", &n.to_string(), "past the end"]);
    }
}

#[test]
fn huge_n_kv() {
    for n in [1u64 << 32, u64::MAX, 1000] {
        let mut b = sample();
        put_u64(&mut b, 16, n);
        let e = parse_err(b);
        assert!(
            matches!(e, GgufError::TooManyKv { count, .. } if count == n),
            "{e:?}"
        );
        assert_msg(&e, &[&format!("claims {n} metadata")]);
    }
}

#[test]
fn huge_n_tensors() {
    for n in [1u64 << 40, u64::MAX, 100_000] {
        let mut b = sample();
        put_u64(&mut b, 8, n);
        let e = parse_err(b);
        assert!(
            matches!(e, GgufError::TooManyTensors { count, .. } if count == n),
            "{e:?}"
        );
        assert_msg(&e, &[&format!("claims {n} tensors")]);
    }
}

#[test]
fn nested_array_depth() {
    // MAX_ARRAY_NESTING levels are fine, one more is rejected.
    for depth in [MAX_ARRAY_NESTING, MAX_ARRAY_NESTING + 1, 1000] {
        let mut r = Raw::new(3, 0, 1);
        r.str(b"deep").u32(9);
        for _ in 0..depth - 1 {
            r.u32(9).u64(1); // array of one array
        }
        r.u32(0).u64(1);
        r.0.push(42); // innermost: array of one u8
        let res = Gguf::from_bytes(r.0);
        if depth <= MAX_ARRAY_NESTING {
            let g = res.unwrap();
            let mut v = g.get("deep").unwrap();
            for _ in 0..depth {
                v = &v.as_array().unwrap()[0];
            }
            assert_eq!(v, &Value::U8(42));
        } else {
            let e = res.unwrap_err();
            assert!(
                matches!(&e, GgufError::ArrayTooDeep { key, .. } if key == "deep"),
                "{e:?}"
            );
            assert_msg(&e, &["key 'deep'", "nested deeper than 4"]);
        }
    }
    // The writer refuses to produce it.
    let mut v = Value::U8(1);
    for _ in 0..=MAX_ARRAY_NESTING {
        v = Value::Array(vec![v]);
    }
    let mut w = GgufWriter::new();
    w.add_kv("deep", v);
    let e = w.write_to(Vec::new()).unwrap_err();
    assert!(matches!(e, GgufError::ArrayTooDeep { .. }), "{e:?}");
}

#[test]
fn unknown_value_type() {
    for ty in [13u32, 255, u32::MAX] {
        let mut b = sample();
        let at = kv_type_at(&b, "test.bool");
        put_u32(&mut b, at, ty);
        let e = parse_err(b);
        assert!(
            matches!(&e, GgufError::UnknownValueType { key, ty: t } if key == "test.bool" && *t == ty)
        );
        assert_msg(
            &e,
            &["key 'test.bool'", &format!("unknown value type id {ty}")],
        );
    }
    // Also as an array element type.
    let mut b = sample();
    let at = kv_type_at(&b, "test.arr") + 4;
    put_u32(&mut b, at, 99);
    let e = parse_err(b);
    assert_msg(&e, &["key 'test.arr'", "unknown value type id 99"]);
}

#[test]
fn invalid_bool() {
    let mut b = sample();
    let at = kv_type_at(&b, "test.bool") + 4;
    b[at] = 2;
    let e = parse_err(b);
    assert!(
        matches!(e, GgufError::InvalidBool { value: 2, .. }),
        "{e:?}"
    );
    assert_msg(&e, &["key 'test.bool'", "bool value 2"]);
}

#[test]
fn duplicate_key() {
    let mut b = sample();
    let at = find(&b, b"key.b");
    b[at + 4] = b'a';
    let e = parse_err(b);
    assert!(
        matches!(&e, GgufError::DuplicateKey { key } if key == "key.a"),
        "{e:?}"
    );
    assert_msg(&e, &["duplicate metadata key 'key.a'"]);
}

#[test]
fn empty_key() {
    let mut r = Raw::new(3, 0, 2);
    r.str(b"ok").u32(4).u32(1).str(b"").u32(4).u32(2);
    let e = parse_err(r.0);
    assert!(matches!(e, GgufError::EmptyKey { index: 1 }), "{e:?}");
    assert_msg(&e, &["key #1 is empty"]);
    let mut w = GgufWriter::new();
    w.add_kv("", Value::U32(1));
    assert!(matches!(
        w.write_to(Vec::new()),
        Err(GgufError::EmptyKey { .. })
    ));
}

#[test]
fn bad_alignment() {
    let mk = || {
        let mut w = sample_writer().alignment(64);
        w.add_kv("after", Value::U8(1));
        let mut out = Vec::new();
        w.write_to(&mut out).unwrap();
        out
    };
    assert_eq!(Gguf::from_bytes(mk()).unwrap().alignment(), 64);
    for bad in [0u32, 48, 3, u32::MAX] {
        let mut b = mk();
        let at = kv_type_at(&b, "general.alignment") + 4;
        put_u32(&mut b, at, bad);
        let e = parse_err(b);
        assert!(
            matches!(e, GgufError::BadAlignment { value } if value == bad as u64),
            "{e:?}"
        );
        assert_msg(
            &e,
            &["general.alignment", &format!("alignment {bad} is not")],
        );
    }
    // Wrong type with the same size (i32 instead of u32).
    let mut b = mk();
    let at = kv_type_at(&b, "general.alignment");
    put_u32(&mut b, at, ValueType::I32 as u32);
    let e = parse_err(b);
    assert!(matches!(e, GgufError::AlignmentType { .. }), "{e:?}");
    assert_msg(&e, &["general.alignment", "must be of type u32, found i32"]);
    // The writer refuses a bad alignment too.
    for bad in [0u64, 48, 1 << 33] {
        let e = sample_writer()
            .alignment(bad)
            .write_to(Vec::new())
            .unwrap_err();
        assert!(matches!(e, GgufError::BadAlignment { .. }), "{bad}: {e:?}");
    }
}

#[test]
fn n_dims_zero_and_five() {
    for n in [0u32, 5, u32::MAX] {
        let mut b = sample();
        let at = tensor_ndims_at(&b, "t.b");
        put_u32(&mut b, at, n);
        let e = parse_err(b);
        assert!(
            matches!(&e, GgufError::BadDimCount { name, n_dims } if name == "t.b" && *n_dims == n)
        );
        assert_msg(&e, &["tensor 't.b'", &format!("{n} dimensions")]);
    }
}

#[test]
fn dim_zero() {
    let mut b = sample();
    let at = tensor_ndims_at(&b, "t.a") + 4 + 8;
    put_u64(&mut b, at, 0);
    let e = parse_err(b);
    assert!(
        matches!(&e, GgufError::ZeroDim { name, dim: 1 } if name == "t.a"),
        "{e:?}"
    );
    assert_msg(&e, &["tensor 't.a'", "dimension 1 is 0"]);
}

#[test]
fn element_count_overflow() {
    // 4 * 2^62 overflows u64; 4 * 2^61 = 2^63 exceeds i64::MAX (llama.cpp's limit).
    for d1 in [1u64 << 62, 1 << 61, u64::MAX] {
        let mut b = sample();
        let at = tensor_ndims_at(&b, "t.a") + 4 + 8;
        put_u64(&mut b, at, d1);
        let e = parse_err(b);
        assert!(
            matches!(&e, GgufError::ElementCountOverflow { name, .. } if name == "t.a"),
            "{e:?}"
        );
        assert_msg(&e, &["tensor 't.a'", "element count", &d1.to_string()]);
    }
}

#[test]
fn unknown_tensor_type() {
    for (ty, text) in [
        (99u32, "type id 99 is not a known ggml type".to_string()),
        (23, "type id 23 (iq4_xs) is not supported".to_string()),
        (u32::MAX, format!("type id {} is not a known", u32::MAX)),
    ] {
        let mut b = sample();
        let at = tensor_type_at(&b, "t.c", 1);
        put_u32(&mut b, at, ty);
        let e = parse_err(b);
        assert!(
            matches!(&e, GgufError::UnknownTensorType { name, ty: t } if name == "t.c" && *t == ty)
        );
        assert_msg(&e, &["tensor 't.c'", &text]);
    }
}

#[test]
fn row_not_multiple_of_block() {
    let mut b = sample();
    let at = tensor_ndims_at(&b, "t.b") + 4;
    put_u64(&mut b, at, 33);
    let e = parse_err(b);
    assert!(
        matches!(&e, GgufError::RowNotBlockMultiple { name, row_len: 33, .. } if name == "t.b")
    );
    assert_msg(&e, &["tensor 't.b'", "row length 33", "q8_0 block size 32"]);
}

#[test]
fn misaligned_tensor_offset() {
    let mut b = sample();
    let at = tensor_type_at(&b, "t.b", 2) + 4;
    let off = u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    assert_eq!(off, 32); // t.a is 32 bytes, so t.b starts at 32
    put_u64(&mut b, at, off + 4);
    let e = parse_err(b);
    assert!(
        matches!(&e, GgufError::TensorMisaligned { name, offset: 36, alignment: 32 } if name == "t.b")
    );
    assert_msg(&e, &["tensor 't.b'", "offset 36", "alignment 32"]);
}

#[test]
fn tensor_offset_not_in_order() {
    // Aligned but not where the previous tensor ends (llama.cpp rejects this too).
    let mut b = sample();
    let at = tensor_type_at(&b, "t.b", 2) + 4;
    put_u64(&mut b, at, 64);
    let e = parse_err(b);
    assert!(
        matches!(&e, GgufError::TensorOffsetMismatch { name, offset: 64, expected: 32 } if name == "t.b")
    );
    assert_msg(&e, &["tensor 't.b'", "offset 64", "(32)"]);
}

#[test]
fn tensor_data_past_eof() {
    let b = sample();
    let g = Gguf::from_bytes(b.clone()).unwrap();
    let last = g.tensor_info("t.c").unwrap();
    let end = (g.data_offset() + last.offset + last.n_bytes) as usize;
    // The final padding may be missing; the data itself may not.
    assert!(Gguf::from_bytes(b[..end].to_vec()).is_ok());
    let e = parse_err(b[..end - 1].to_vec());
    assert!(
        matches!(&e, GgufError::TensorOutOfBounds { name, .. } if name == "t.c"),
        "{e:?}"
    );
    assert_msg(
        &e,
        &[
            "tensor 't.c'",
            &format!("..{end}"),
            &format!("({} bytes)", end - 1),
        ],
    );
    // A huge offset that is aligned and would wrap around is caught too.
    let mut b2 = b.clone();
    let at = tensor_type_at(&b2, "t.a", 2) + 4;
    put_u64(&mut b2, at, u64::MAX - 31);
    assert!(Gguf::from_bytes(b2).is_err());
    // Data section start beyond the end of the file.
    let infos_end = tensor_type_at(&b, "t.c", 1) + 4 + 8;
    assert!(infos_end < g.data_offset() as usize);
    let e = parse_err(b[..infos_end + 1].to_vec());
    assert_msg(&e, &["padding before the data section"]);
}

#[test]
fn duplicate_tensor_name() {
    let mut b = sample();
    let at = tensor_ndims_at(&b, "t.c") - 1;
    b[at] = b'a';
    let e = parse_err(b);
    assert!(
        matches!(&e, GgufError::DuplicateTensor { name } if name == "t.a"),
        "{e:?}"
    );
    assert_msg(&e, &["duplicate tensor name 't.a'"]);
    let mut w = sample_writer();
    let e = w
        .add_tensor("t.a", GgmlType::F32, &[1], vec![0; 4])
        .unwrap_err();
    assert!(matches!(e, GgufError::DuplicateTensor { .. }));
}

#[test]
fn empty_and_long_tensor_names() {
    let mut r = Raw::new(3, 1, 0);
    r.tensor(b"", 1, 0).pad(32).zeros(4);
    let e = parse_err(r.0);
    assert!(
        matches!(e, GgufError::EmptyTensorName { index: 0 }),
        "{e:?}"
    );
    assert_msg(&e, &["tensor #0 has an empty name"]);

    let ok = vec![b'n'; 63];
    let mut r = Raw::new(3, 1, 0);
    r.tensor(&ok, 1, 0).pad(32).zeros(4);
    assert!(Gguf::from_bytes(r.0).is_ok());
    let long = vec![b'n'; 64];
    let mut r = Raw::new(3, 1, 0);
    r.tensor(&long, 1, 0).pad(32).zeros(4);
    let e = parse_err(r.0);
    assert!(
        matches!(e, GgufError::TensorNameTooLong { len: 64, .. }),
        "{e:?}"
    );
    assert_msg(&e, &["64 bytes long", "63 allowed"]);
}

#[test]
fn invalid_utf8() {
    // In a string value.
    let mut b = sample();
    let at = find(&b, b"tiny test model");
    b[at + 2] = 0xff;
    let e = parse_err(b);
    assert!(
        matches!(e, GgufError::InvalidUtf8 { valid_up_to: 2, .. }),
        "{e:?}"
    );
    assert_msg(
        &e,
        &["string value of key 'general.name'", "not valid UTF-8"],
    );
    // In a key.
    let mut b = sample();
    let at = find(&b, b"test.i16");
    b[at] = 0xc3; // a lead byte followed by ASCII
    let e = parse_err(b);
    assert_msg(&e, &["metadata key #", "not valid UTF-8"]);
    // In a string array element and in a tensor name.
    let mut b = sample();
    let at = find(&b, b"gamma");
    b[at] = 0x80;
    assert_msg(&parse_err(b), &["key 'test.strs'", "not valid UTF-8"]);
    let mut b = sample();
    let at = tensor_ndims_at(&b, "t.b") - 1;
    b[at] = 0xfe;
    assert_msg(&parse_err(b), &["name of tensor #1", "not valid UTF-8"]);
}

// ---------------------------------------------------------------- accessors

#[test]
fn typed_accessors_convert_and_name_the_key() {
    let g = Gguf::from_bytes(sample()).unwrap();
    assert_eq!(g.get_u32("key.a").unwrap(), 7);
    assert_eq!(g.get_u32("test.u8").unwrap(), 200);
    assert_eq!(g.get_u64("test.u64").unwrap(), 1 << 40);
    assert_eq!(g.get_i64("test.i64").unwrap(), -(1 << 40));
    assert_eq!(g.get_i64("test.u16").unwrap(), 60000);
    assert_eq!(g.get_f32("test.f32").unwrap(), 1.5);
    assert_eq!(g.get_f32("test.f64").unwrap(), -2.25);
    assert!(g.get_bool("test.bool").unwrap());
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(
        g.get_str_array("test.strs").unwrap(),
        ["alpha", "beta", "gamma"]
    );
    assert_eq!(g.get_f32_array("test.f32s").unwrap(), [0.5, -1.0]);
    assert_eq!(g.get_i32_array("test.arr").unwrap(), [1, 2, 3]);

    let e = g.get_u32("no.such.key").unwrap_err();
    assert!(matches!(&e, GgufError::MissingKey { key } if key == "no.such.key"));
    assert_msg(&e, &["'no.such.key' not found"]);
    let e = g.get_u32("test.i8").unwrap_err();
    assert_msg(&e, &["'test.i8'", "u32 range", "found i8 -5"]);
    let e = g.get_u32("test.u64").unwrap_err();
    assert_msg(&e, &["'test.u64'", &format!("found u64 {}", 1u64 << 40)]);
    let e = g.get_str("key.a").unwrap_err();
    assert_msg(&e, &["'key.a'", "expected string", "found u32 7"]);
    let e = g.get_str_array("test.arr").unwrap_err();
    assert_msg(&e, &["'test.arr'", "array of strings", "array[u32; 3]"]);
    let e = g.get_f32("test.bool").unwrap_err();
    assert_msg(&e, &["'test.bool'", "found bool true"]);

    let t = g.tensor_info("t.b").unwrap();
    assert_eq!(
        (t.ty, t.dims.as_slice(), t.n_elements, t.n_bytes),
        (GgmlType::Q8_0, &[32u64, 2][..], 64, 68)
    );
    assert_eq!(g.tensor_data("t.b").unwrap(), bytes(68, 2));
    let e = g.tensor_data("t.zzz").unwrap_err();
    assert!(matches!(&e, GgufError::MissingTensor { name } if name == "t.zzz"));
    assert_msg(&e, &["tensor 't.zzz' not found"]);
}

#[test]
fn handle_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Gguf>();
    check::<GgufError>();
}

#[test]
fn tensor_data_is_zero_copy() {
    let b = sample();
    let g = Gguf::from_bytes(b).unwrap();
    let whole = g.as_bytes().as_ptr_range();
    for t in g.tensors() {
        let d = g.tensor_data(&t.name).unwrap();
        assert_eq!(d.len() as u64, t.n_bytes);
        assert!(whole.contains(&d.as_ptr()));
        assert_eq!(
            d.as_ptr() as usize - whole.start as usize,
            (g.data_offset() + t.offset) as usize
        );
        assert_eq!((g.data_offset() + t.offset) % g.alignment(), 0);
    }
}

// ---------------------------------------------------------------- writer

#[test]
fn writer_rejects_bad_tensors() {
    let mut w = GgufWriter::new();
    let e = w
        .add_tensor("x", GgmlType::Q4_0, &[32], vec![0; 17])
        .unwrap_err();
    assert!(
        matches!(
            e,
            GgufError::DataLengthMismatch {
                expected: 18,
                got: 17,
                ..
            }
        ),
        "{e:?}"
    );
    assert_msg(&e, &["tensor 'x'", "17 bytes", "needs 18"]);
    assert!(matches!(
        w.add_tensor("x", GgmlType::Q4_0, &[31], vec![]),
        Err(GgufError::RowNotBlockMultiple { .. })
    ));
    assert!(matches!(
        w.add_tensor("x", GgmlType::F32, &[], vec![]),
        Err(GgufError::BadDimCount { .. })
    ));
    assert!(matches!(
        w.add_tensor("x", GgmlType::F32, &[1, 1, 1, 1, 1], vec![]),
        Err(GgufError::BadDimCount { .. })
    ));
    assert!(matches!(
        w.add_tensor("x", GgmlType::F32, &[1, 0], vec![]),
        Err(GgufError::ZeroDim { .. })
    ));
    assert!(matches!(
        w.add_tensor("x", GgmlType::F32, &[1 << 32, 1 << 32], vec![]),
        Err(GgufError::ElementCountOverflow { .. })
    ));
    assert!(matches!(
        w.add_tensor("", GgmlType::F32, &[1], vec![0; 4]),
        Err(GgufError::EmptyTensorName { .. })
    ));
    // Nothing rejected was added.
    let mut out = Vec::new();
    w.write_to(&mut out).unwrap();
    assert!(Gguf::from_bytes(out).unwrap().tensors().is_empty());
}

#[test]
fn writer_rejects_mixed_arrays() {
    let mut w = GgufWriter::new();
    w.add_kv("mixed", Value::Array(vec![Value::U32(1), Value::I32(2)]));
    let mut out = Vec::new();
    let e = w.write_to(&mut out).unwrap_err();
    assert!(matches!(
        e,
        GgufError::MixedArray {
            first: ValueType::U32,
            other: ValueType::I32,
            ..
        }
    ));
    assert_msg(&e, &["key 'mixed'", "u32 and i32"]);
    assert!(out.is_empty(), "nothing is written for invalid content");
}

#[test]
fn add_kv_replaces_in_place() {
    let mut w = GgufWriter::new();
    w.add_kv("a", Value::U8(1));
    w.add_kv("b", Value::U8(2));
    w.add_kv("a", Value::U8(3));
    let mut out = Vec::new();
    w.write_to(&mut out).unwrap();
    let g = Gguf::from_bytes(out).unwrap();
    assert_eq!(
        g.metadata(),
        &[
            ("a".to_string(), Value::U8(3)),
            ("b".to_string(), Value::U8(2))
        ]
    );
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("q4gpu-gguf-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn dir_names(d: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn write_to_path_is_atomic() {
    let d = scratch("atomic");
    let dest = d.join("model.gguf");
    std::fs::write(&dest, b"previous contents").unwrap();

    // Invalid content: the destination is untouched and no temporary file is left.
    let mut bad = sample_writer();
    bad.add_kv("mixed", Value::Array(vec![Value::U8(1), Value::Bool(true)]));
    assert!(bad.write_to_path(&dest).is_err());
    assert_eq!(std::fs::read(&dest).unwrap(), b"previous contents");
    assert_eq!(dir_names(&d), ["model.gguf"]);

    // Success replaces it with exactly what write_to produces, via Gguf::open (mmap).
    sample_writer().write_to_path(&dest).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), sample());
    assert_eq!(dir_names(&d), ["model.gguf"]);
    let g = Gguf::open(&dest).unwrap();
    assert_eq!(g.tensor_data("t.c").unwrap(), bytes(40, 3));

    // A missing directory is an error naming the path.
    let e = sample_writer()
        .write_to_path(d.join("nope/x.gguf"))
        .unwrap_err();
    assert_msg(&e, &["nope"]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn open_reports_path_and_empty_file() {
    let d = scratch("open");
    let e = Gguf::open(d.join("missing.gguf")).unwrap_err();
    assert!(matches!(e, GgufError::Io { .. }));
    assert_msg(&e, &["missing.gguf"]);
    let empty = d.join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let e = Gguf::open(&empty).unwrap_err();
    assert_msg(&e, &["truncated", "magic"]);
    std::fs::remove_dir_all(&d).unwrap();
}

// ---------------------------------------------------------------- round trips

#[test]
fn round_trip_every_type_and_alignment() {
    for align in [1u64, 8, 32, 64, 4096] {
        let kinds = [
            (GgmlType::F32, 3u64),
            (GgmlType::F16, 5),
            (GgmlType::BF16, 7),
            (GgmlType::Q4_0, 64),
            (GgmlType::Q4_1, 32),
            (GgmlType::Q8_0, 96),
        ];
        let mut w = sample_writer().alignment(align);
        let mut expect = Vec::new();
        for (i, (ty, row)) in kinds.iter().enumerate() {
            let dims = [*row, 3, 1, 2];
            let n = ty.row_bytes(*row).unwrap() * 6;
            let data = bytes(n as usize, i as u8);
            w.add_tensor(format!("k.{i}"), *ty, &dims, data.clone())
                .unwrap();
            expect.push((format!("k.{i}"), *ty, dims.to_vec(), data));
        }
        let mut out = Vec::new();
        w.write_to(&mut out).unwrap();
        let g = Gguf::from_bytes(out).unwrap();
        assert_eq!(g.alignment(), align);
        assert_eq!(g.get("general.alignment").is_some(), align != 32);
        assert_eq!(g.data_offset() % align, 0);
        assert_eq!(g.tensors().len(), 3 + kinds.len());
        for (name, ty, dims, data) in &expect {
            let t = g.tensor_info(name).unwrap();
            assert_eq!((&t.ty, &t.dims), (ty, dims));
            assert_eq!(t.offset % align, 0);
            assert_eq!(g.tensor_data(name).unwrap(), &data[..]);
        }
        let sample = Gguf::from_bytes(sample()).unwrap();
        for (k, v) in sample.metadata() {
            assert_eq!(g.get(k), Some(v), "{k}");
        }
    }
}

/// Values equal with floats compared by bit pattern (so NaN round-trips count as equal).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits(),
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        _ => a == b,
    }
}

fn scalar_array(max_len: usize) -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::collection::vec(any::<u8>().prop_map(Value::U8), 0..max_len),
        prop::collection::vec(any::<i8>().prop_map(Value::I8), 0..max_len),
        prop::collection::vec(any::<u16>().prop_map(Value::U16), 0..max_len),
        prop::collection::vec(any::<i16>().prop_map(Value::I16), 0..max_len),
        prop::collection::vec(any::<u32>().prop_map(Value::U32), 0..max_len),
        prop::collection::vec(any::<i32>().prop_map(Value::I32), 0..max_len),
        prop::collection::vec(any::<u64>().prop_map(Value::U64), 0..max_len),
        prop::collection::vec(any::<i64>().prop_map(Value::I64), 0..max_len),
        prop::collection::vec(any::<f32>().prop_map(Value::F32), 0..max_len),
        prop::collection::vec(any::<f64>().prop_map(Value::F64), 0..max_len),
        prop::collection::vec(any::<bool>().prop_map(Value::Bool), 0..max_len),
        prop::collection::vec(any::<String>().prop_map(Value::String), 0..max_len),
    ]
    .prop_map(Value::Array)
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u8>().prop_map(Value::U8),
        any::<i8>().prop_map(Value::I8),
        any::<u16>().prop_map(Value::U16),
        any::<i16>().prop_map(Value::I16),
        any::<u32>().prop_map(Value::U32),
        any::<i32>().prop_map(Value::I32),
        any::<u64>().prop_map(Value::U64),
        any::<i64>().prop_map(Value::I64),
        any::<f32>().prop_map(Value::F32),
        any::<f64>().prop_map(Value::F64),
        any::<bool>().prop_map(Value::Bool),
        any::<String>().prop_map(Value::String),
        scalar_array(6),
        // Arrays of arrays (inner element types may differ), up to three levels.
        prop::collection::vec(scalar_array(4), 0..4).prop_map(Value::Array),
        prop::collection::vec(
            prop::collection::vec(scalar_array(3), 0..3).prop_map(Value::Array),
            0..3
        )
        .prop_map(Value::Array),
    ]
}

fn tensor() -> impl Strategy<Value = (GgmlType, Vec<u64>, u64)> {
    let ty = prop::sample::select(vec![
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q8_0,
    ]);
    (
        ty,
        1usize..=3,
        prop::collection::vec(1u64..=3, 3),
        any::<u64>(),
    )
        .prop_map(|(ty, blocks, rest, seed)| {
            let mut dims = vec![blocks as u64 * ty.block_size() as u64];
            dims.extend(rest.into_iter().take((seed % 4) as usize));
            (ty, dims, seed)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn writer_reader_round_trip(
        kvs in prop::collection::btree_map("[a-z.]{1,12}", value(), 0..12),
        tensors in prop::collection::vec(tensor(), 0..6),
        align_log2 in 0u32..9,
    ) {
        let align = 1u64 << align_log2;
        let mut w = GgufWriter::new().alignment(align);
        for (k, v) in &kvs {
            w.add_kv(k.clone(), v.clone());
        }
        let mut datas = Vec::new();
        for (i, (ty, dims, seed)) in tensors.iter().enumerate() {
            let n: u64 = ty.row_bytes(dims[0]).unwrap() * dims[1..].iter().product::<u64>();
            let data = bytes(n as usize, *seed as u8);
            w.add_tensor(format!("tensor.{i}"), *ty, dims, data.clone()).unwrap();
            datas.push(data);
        }
        let mut out = Vec::new();
        w.write_to(&mut out).unwrap();
        let g = Gguf::from_bytes(out).unwrap();

        let mut expect: Vec<(String, Value)> = Vec::new();
        if align != 32 {
            expect.push(("general.alignment".into(), Value::U32(align as u32)));
        }
        expect.extend(kvs.iter().map(|(k, v)| (k.clone(), v.clone())));
        // Empty arrays come back as empty arrays (their element type is not kept).
        prop_assert_eq!(g.metadata().len(), expect.len());
        for ((k1, v1), (k2, v2)) in g.metadata().iter().zip(&expect) {
            prop_assert_eq!(k1, k2);
            prop_assert!(same(v1, v2), "{}: {:?} != {:?}", k1, v1, v2);
        }
        prop_assert_eq!(g.alignment(), align);
        prop_assert_eq!(g.tensors().len(), tensors.len());
        for (i, ((ty, dims, _), data)) in tensors.iter().zip(&datas).enumerate() {
            let t = &g.tensors()[i];
            prop_assert_eq!(&t.name, &format!("tensor.{i}"));
            prop_assert_eq!(t.ty, *ty);
            prop_assert_eq!(&t.dims, dims);
            prop_assert_eq!(g.tensor_data(&t.name).unwrap(), &data[..]);
        }
    }
}

// ---------------------------------------------------------------- the real model

/// Path of the real model: `<crate>/models/…`, fetched by `scripts/fetch_model.sh` if absent.
fn model_path() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.exists() {
        let script = root.join("scripts/fetch_model.sh");
        if script.exists() {
            let status = std::process::Command::new("bash")
                .arg(&script)
                .current_dir(&root)
                .status();
            assert!(
                matches!(status, Ok(s) if s.success()),
                "{} failed: {status:?}",
                script.display()
            );
        }
    }
    assert!(
        path.exists(),
        "real model missing at {}: run scripts/fetch_model.sh (or link models/ to a copy)",
        path.display()
    );
    path
}

#[test]
fn real_model() {
    let g = Gguf::open(model_path()).unwrap();
    assert_eq!(g.version(), 3);
    assert_eq!(g.tensors().len(), 272);
    assert_eq!(g.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(g.get_u32("llama.embedding_length").unwrap(), 576);
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    let tokens = g.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 49152);
    assert_eq!(tokens[2], "<|im_end|>");
    let mut counts = std::collections::BTreeMap::new();
    for t in g.tensors() {
        *counts.entry(t.ty.name()).or_insert(0) += 1;
        assert_eq!(g.tensor_data(&t.name).unwrap().len() as u64, t.n_bytes);
    }
    assert_eq!(
        counts.keys().copied().collect::<Vec<_>>(),
        ["f32", "q4_1", "q8_0"]
    );
    assert_eq!(counts["q8_0"], 1);
    let emb = g.tensor_info("token_embd.weight").unwrap();
    assert_eq!(
        (emb.ty, emb.dims.as_slice()),
        (GgmlType::Q8_0, &[576u64, 49152][..])
    );
    // Last tensor ends exactly at the end of the file.
    let end = g
        .tensors()
        .iter()
        .map(|t| g.data_offset() + t.offset + t.n_bytes)
        .max()
        .unwrap();
    assert_eq!(end, g.file_len());
}
