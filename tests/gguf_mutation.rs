//! Mutation suite for the GGUF reader: ≥ 100,000 deterministic corruptions of small valid
//! files (truncations, bit/byte flips, boundary values in every count/length/offset/dim
//! field, type confusion, duplicate names, bad versions, splices). Every case must return
//! `Ok` or `Err` — never panic — and allocate at most a fixed multiple of the file size
//! while parsing (measured with a per-thread counting global allocator).
//!
//! `Q4GPU_MUTATION_CASES=N` raises the number of cases (random classes fill up to N).

use q4gpu::gguf::{GgmlType, Gguf, GgufWriter, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

// ---------------------------------------------------------------- counting allocator

struct Counting;

thread_local! {
    static CURRENT: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = CURRENT.try_with(|c| {
        let now = c.get() + delta;
        c.set(now);
        let _ = PEAK.try_with(|p| {
            if now > p.get() {
                p.set(now)
            }
        });
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            track(l.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            track(l.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        track(-(l.size() as isize));
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            track(new as isize - l.size() as isize);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result with the peak bytes allocated on this thread meanwhile.
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = CURRENT.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let r = f();
    let peak = PEAK.with(Cell::get) - start;
    (r, peak.max(0) as usize)
}

// ---------------------------------------------------------------- deterministic PRNG

struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

// ---------------------------------------------------------------- base files

fn data(n: u64, seed: u8) -> Vec<u8> {
    (0..n as usize)
        .map(|i| (i as u8).wrapping_mul(37) ^ seed)
        .collect()
}

fn tensor(w: &mut GgufWriter<'_>, name: &str, ty: GgmlType, dims: &[u64], seed: u8) {
    let n = ty.row_bytes(dims[0]).unwrap() * dims[1..].iter().product::<u64>();
    w.add_tensor(name, ty, dims, data(n, seed)).unwrap();
}

fn finish(w: GgufWriter<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    w.write_to(&mut out).unwrap();
    Gguf::from_bytes(out.clone()).expect("base file must be valid");
    out
}

/// Several small valid files covering every value type, arrays, nested arrays, every
/// supported tensor type, 1–4 dims, and alignments 1, 32 (default) and 64.
fn base_files() -> Vec<(&'static str, Vec<u8>)> {
    let mut files = Vec::new();

    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", Value::from("llama"));
    w.add_kv("k.u8", Value::U8(1));
    w.add_kv("k.i8", Value::I8(-1));
    w.add_kv("k.u16", Value::U16(2));
    w.add_kv("k.i16", Value::I16(-2));
    w.add_kv("k.u32", Value::U32(3));
    w.add_kv("k.i32", Value::I32(-3));
    w.add_kv("k.u64", Value::U64(4));
    w.add_kv("k.i64", Value::I64(-4));
    w.add_kv("k.f32", Value::F32(0.5));
    w.add_kv("k.f64", Value::F64(0.25));
    w.add_kv("k.bol", Value::Bool(true));
    w.add_kv("k.str", Value::from("hello"));
    w.add_kv("k.arr", Value::array([1u32, 2, 3]));
    w.add_kv("k.sar", Value::array(["a", "bc", ""]));
    w.add_kv(
        "k.nst",
        Value::Array(vec![
            Value::array([1i16, 2]),
            Value::Array(vec![]),
            Value::Array(vec![Value::array([true])]),
        ]),
    );
    tensor(&mut w, "t.f32", GgmlType::F32, &[4, 2], 1);
    tensor(&mut w, "t.f16", GgmlType::F16, &[3], 2);
    tensor(&mut w, "t.b16", GgmlType::BF16, &[2, 1, 2], 3);
    tensor(&mut w, "t.q40", GgmlType::Q4_0, &[32, 2], 4);
    tensor(&mut w, "t.q41", GgmlType::Q4_1, &[64], 5);
    tensor(&mut w, "t.q80", GgmlType::Q8_0, &[32, 1, 1, 2], 6);
    let every = finish(w);
    let mut v2 = every.clone();
    v2[4..8].copy_from_slice(&2u32.to_le_bytes());
    files.push(("every-type", every));
    files.push(("every-type-v2", v2));

    let mut w = GgufWriter::new().alignment(64);
    w.add_kv("a", Value::U32(7));
    tensor(&mut w, "w", GgmlType::Q8_0, &[32], 9);
    files.push(("align64", finish(w)));

    let mut w = GgufWriter::new().alignment(1);
    w.add_kv("tok.list", Value::array(["x", "yy", "zzz", "<s>", "</s>"]));
    w.add_kv("tok.type", Value::array([1i32, 1, 1, 3, 3]));
    w.add_kv("tok.scr", Value::array([0.1f32, 0.2, 0.3, 0.4, 0.5]));
    tensor(&mut w, "a.0", GgmlType::F16, &[1], 1);
    tensor(&mut w, "a.1", GgmlType::F32, &[3, 1], 2);
    tensor(&mut w, "a.2", GgmlType::Q4_1, &[32], 3);
    files.push(("align1", finish(w)));

    let mut w = GgufWriter::new();
    w.add_kv("only.meta", Value::from("no tensors here"));
    w.add_kv(
        "deep",
        Value::Array(vec![Value::Array(vec![Value::Array(vec![Value::array(
            [5u64],
        )])])]),
    );
    w.add_kv("empty", Value::Array(vec![]));
    files.push(("meta-only", finish(w)));

    files
}

// ---------------------------------------------------------------- field map of a valid file

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Version,
    Count,     // n_tensors, n_kv, array length
    StrLen,    // string/key/name length prefix
    ValueType, // kv type or array element type
    NDims,
    Dim,
    TensorType,
    Offset,
    Alignment, // the general.alignment value
}

#[derive(Clone, Copy, Debug)]
struct Field {
    at: usize,
    width: usize,
    kind: Kind,
}

/// Records every structural field and name of a *valid* file (independently of the
/// reader under test, so a reader bug cannot hide a field).
struct Map {
    fields: Vec<Field>,
    names: Vec<(usize, usize)>, // (start, len) of keys and tensor names
}

fn rd(b: &[u8], at: usize, w: usize) -> u64 {
    let mut x = [0u8; 8];
    x[..w].copy_from_slice(&b[at..at + w]);
    u64::from_le_bytes(x)
}

fn map_file(b: &[u8]) -> Map {
    let mut m = Map {
        fields: vec![],
        names: vec![],
    };
    let f = |m: &mut Map, at, width, kind| m.fields.push(Field { at, width, kind });
    f(&mut m, 4, 4, Kind::Version);
    f(&mut m, 8, 8, Kind::Count);
    f(&mut m, 16, 8, Kind::Count);
    let n_tensors = rd(b, 8, 8);
    let n_kv = rd(b, 16, 8);
    let mut pos = 24;
    fn string(b: &[u8], m: &mut Map, pos: &mut usize) -> (usize, usize) {
        m.fields.push(Field {
            at: *pos,
            width: 8,
            kind: Kind::StrLen,
        });
        let len = rd(b, *pos, 8) as usize;
        let start = *pos + 8;
        *pos = start + len;
        (start, len)
    }
    fn value(b: &[u8], m: &mut Map, pos: &mut usize, ty: u64) {
        match ty {
            0 | 1 | 7 => *pos += 1,
            2 | 3 => *pos += 2,
            4..=6 => *pos += 4,
            10..=12 => *pos += 8,
            8 => {
                string(b, m, pos);
            }
            9 => {
                m.fields.push(Field {
                    at: *pos,
                    width: 4,
                    kind: Kind::ValueType,
                });
                let elem = rd(b, *pos, 4);
                m.fields.push(Field {
                    at: *pos + 4,
                    width: 8,
                    kind: Kind::Count,
                });
                let n = rd(b, *pos + 4, 8);
                *pos += 12;
                for _ in 0..n {
                    value(b, m, pos, elem);
                }
            }
            _ => unreachable!("valid file"),
        }
    }
    for _ in 0..n_kv {
        let (start, len) = string(b, &mut m, &mut pos);
        m.names.push((start, len));
        let key = &b[start..start + len];
        f(&mut m, pos, 4, Kind::ValueType);
        let ty = rd(b, pos, 4);
        pos += 4;
        if key == b"general.alignment" {
            f(&mut m, pos, 4, Kind::Alignment);
        }
        value(b, &mut m, &mut pos, ty);
    }
    for _ in 0..n_tensors {
        let name = string(b, &mut m, &mut pos);
        m.names.push(name);
        f(&mut m, pos, 4, Kind::NDims);
        let nd = rd(b, pos, 4) as usize;
        pos += 4;
        for _ in 0..nd {
            f(&mut m, pos, 8, Kind::Dim);
            pos += 8;
        }
        f(&mut m, pos, 4, Kind::TensorType);
        f(&mut m, pos + 4, 8, Kind::Offset);
        pos += 12;
    }
    m
}

// ---------------------------------------------------------------- allocation-maximizing files

fn le32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn le64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

/// Files of about `size` bytes whose counts each claim as much as the bytes left allow.
fn adversarial(size: usize) -> Vec<(&'static str, Vec<u8>)> {
    let header = |n_tensors: u64, n_kv: u64| {
        let mut b = b"GGUF".to_vec();
        le32(&mut b, 3);
        le64(&mut b, n_tensors);
        le64(&mut b, n_kv);
        b
    };
    let key = |b: &mut Vec<u8>, k: &[u8], ty: u32| {
        le64(b, k.len() as u64);
        b.extend_from_slice(k);
        le32(b, ty);
    };
    let mut out = Vec::new();

    // A u8 array claiming every byte left (32-byte values per 1-byte element).
    let mut b = header(0, 1);
    key(&mut b, b"a", 9);
    le32(&mut b, 0);
    let n = size - b.len() - 8;
    le64(&mut b, n as u64);
    b.resize(size, 7);
    out.push(("u8-array", b));

    // Many keys claimed, the first one holding arrays of arrays nested to the limit, each
    // level claiming all bytes left, the innermost a bool array; cut short.
    let total = size as u64;
    let mut b = header(0, (total - 24) / 14);
    key(&mut b, b"n", 9);
    for _ in 0..3 {
        le32(&mut b, 9);
        let left = total - b.len() as u64 - 8;
        le64(&mut b, left / 12);
    }
    le32(&mut b, 7);
    let left = total - b.len() as u64 - 8;
    le64(&mut b, left);
    b.resize(size, 1);
    out.push(("nested-max", b));

    // A string array of empty strings claiming every byte left.
    let mut b = header(0, 1);
    key(&mut b, b"s", 9);
    le32(&mut b, 8);
    let n = (size - b.len() - 8) / 8;
    le64(&mut b, n as u64);
    b.resize(size, 0);
    out.push(("empty-strings", b));

    // Tensor count claiming every byte, minimal infos, cut short.
    let mut b = header((total - 24) / 33, 0);
    while b.len() + 33 < size {
        le64(&mut b, 1);
        b.push(b'a' + (b.len() % 26) as u8);
        le32(&mut b, 1);
        le64(&mut b, 1);
        le32(&mut b, 0);
        le64(&mut b, 0);
    }
    out.push(("tensor-infos", b));

    // Key count claiming every byte, minimal pairs, cut short.
    let mut b = header(0, (total - 24) / 14);
    while b.len() + 14 < size {
        le64(&mut b, 1);
        b.push(b'a');
        le32(&mut b, 0);
        b.push(0);
    }
    out.push(("kv-pairs", b));
    out
}

// ---------------------------------------------------------------- the suite

#[derive(Default)]
struct Stats {
    cases: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    worst_ratio: f64,
    worst_peak: usize,
    worst_case: String,
    worst_big_ratio: f64,
    worst_big_case: String,
    failures: Vec<String>,
}

/// Allowed parse allocation: a fixed multiple of the file size plus a small constant.
const ALLOC_FACTOR: usize = 64;
const ALLOC_CONST: usize = 8 * 1024;

fn run_case(stats: &mut Stats, class: &str, label: &dyn Fn() -> String, bytes: Vec<u8>) {
    let len = bytes.len();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let (res, peak) = measure(|| Gguf::from_bytes(bytes));
        // Exercise every accessor on an accepted file: still no panics allowed.
        let kind = match &res {
            Ok(g) => {
                for t in g.tensors() {
                    let d = g
                        .tensor_data(&t.name)
                        .expect("validated tensor must be readable");
                    assert_eq!(d.len() as u64, t.n_bytes);
                    assert_eq!((g.data_offset() + t.offset) % g.alignment(), 0);
                }
                for (k, _) in g.metadata() {
                    assert!(g.get(k).is_some());
                    let _ = (g.get_u32(k), g.get_u64(k), g.get_i64(k), g.get_f32(k));
                    let _ = (g.get_bool(k), g.get_str(k), g.get_str_array(k));
                    let _ = (g.get_f32_array(k), g.get_i32_array(k));
                }
                None
            }
            Err(e) => {
                let dbg = format!("{e:?}");
                let _ = e.to_string();
                let name: String = dbg.chars().take_while(|c| c.is_alphanumeric()).collect();
                Some(name)
            }
        };
        (kind, peak)
    }));
    stats.cases += 1;
    let (kind, peak) = match outcome {
        Ok(x) => x,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            stats
                .failures
                .push(format!("PANIC in {class} {}: {msg}", label()));
            return;
        }
    };
    match kind {
        None => stats.ok += 1,
        Some(k) => *stats.errors.entry(k).or_default() += 1,
    }
    let ratio = peak as f64 / len.max(1) as f64;
    if ratio > stats.worst_ratio {
        stats.worst_ratio = ratio;
        stats.worst_peak = peak;
        stats.worst_case = format!("{class} {} (len {len}, peak {peak} B)", label());
    }
    if len >= 1024 && ratio > stats.worst_big_ratio {
        stats.worst_big_ratio = ratio;
        stats.worst_big_case = format!("{class} {} (len {len}, peak {peak} B)", label());
    }
    if peak > ALLOC_FACTOR * len + ALLOC_CONST {
        stats.failures.push(format!(
            "ALLOC {peak} B for a {len}-byte file in {class} {}",
            label()
        ));
    }
}

fn boundary_values(len: usize) -> Vec<u64> {
    let l = len as u64;
    vec![
        0,
        1,
        2,
        3,
        4,
        31,
        32,
        33,
        64,
        1 << 31,
        (1 << 31) - 1,
        (1 << 32) - 1,
        1 << 32,
        1 << 63,
        (1 << 63) - 1,
        u64::MAX,
        u64::MAX - 31,
        l.saturating_sub(1),
        l,
        l + 1,
        l / 2,
    ]
}

fn put(b: &mut [u8], f: Field, v: u64) {
    b[f.at..f.at + f.width].copy_from_slice(&v.to_le_bytes()[..f.width]);
}

#[test]
fn mutation_suite() {
    let target: u64 = std::env::var("Q4GPU_MUTATION_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let t0 = Instant::now();
    let bases = base_files();
    let maps: Vec<Map> = bases.iter().map(|(_, b)| map_file(b)).collect();
    let mut per_class: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut stats = Stats::default();
    let mut rng = SplitMix64(0x4747_5546_2024);

    macro_rules! case {
        ($class:expr, $bytes:expr, $label:expr) => {{
            *per_class.entry($class).or_default() += 1;
            run_case(&mut stats, $class, &|| $label, $bytes);
        }};
    }

    for ((name, base), map) in bases.iter().zip(&maps) {
        // 1. Truncation at every byte offset.
        for cut in 0..base.len() {
            case!("truncate", base[..cut].to_vec(), format!("{name} at {cut}"));
        }
        // 2. Every structural field set to boundary values.
        for (fi, f) in map.fields.iter().enumerate() {
            for v in boundary_values(base.len()) {
                let mut b = base.clone();
                put(&mut b, *f, v);
                case!(
                    "field-boundary",
                    b,
                    format!("{name} field {fi} {:?}@{} = {v}", f.kind, f.at)
                );
            }
        }
        // 3. Type confusion and unknown types in every type field; bad versions.
        for f in map
            .fields
            .iter()
            .filter(|f| matches!(f.kind, Kind::ValueType | Kind::TensorType | Kind::Version))
        {
            for v in (0u64..=40).chain([255, 1 << 16, 0x0300_0000, u32::MAX as u64]) {
                let mut b = base.clone();
                put(&mut b, *f, v);
                case!(
                    "type-or-version",
                    b,
                    format!("{name} {:?}@{} = {v}", f.kind, f.at)
                );
            }
        }
        // 4. Duplicate names: copy each name over every other of the same length.
        for (i, &(si, li)) in map.names.iter().enumerate() {
            for (j, &(sj, lj)) in map.names.iter().enumerate() {
                if i != j && li == lj {
                    let mut b = base.clone();
                    b.copy_within(si..si + li, sj);
                    case!("duplicate-name", b, format!("{name} name {i} over {j}"));
                }
            }
        }
    }

    // 5. Files crafted to make the parser reserve as much as the bounds allow: counts
    //    claiming all bytes left, at every nesting level, then cut short.
    for size in [1usize << 10, 1 << 12, 1 << 16] {
        for (label, b) in adversarial(size) {
            case!("alloc-adversarial", b, format!("{label} {size}"));
        }
    }

    // 6. Random classes until the target is reached (round-robin, deterministic).
    let mut k = 0u64;
    while stats.cases < target {
        let bi = rng.below(bases.len());
        let (name, base) = (&bases[bi].0, &bases[bi].1);
        let mut b = base.clone();
        let seed_state = rng.0;
        match k % 5 {
            0 => {
                let n = 1 + rng.below(3);
                for _ in 0..n {
                    let bit = rng.below(b.len() * 8);
                    b[bit / 8] ^= 1 << (bit % 8);
                }
                case!("bit-flip", b, format!("{name} rng {seed_state:#x}"));
            }
            1 => {
                let n = 1 + rng.below(4);
                for _ in 0..n {
                    let at = rng.below(b.len());
                    b[at] = rng.next() as u8;
                }
                case!("byte-overwrite", b, format!("{name} rng {seed_state:#x}"));
            }
            2 => {
                let fields = &maps[bi].fields;
                let f = fields[rng.below(fields.len())];
                let v = match rng.below(3) {
                    0 => rng.next(),
                    1 => rng.next() % (b.len() as u64 * 2 + 1),
                    _ => 1u64 << rng.below(64),
                };
                put(&mut b, f, v);
                case!("field-random", b, format!("{name} rng {seed_state:#x}"));
            }
            3 => {
                let at = rng.below(b.len());
                let n = 1 + rng.below(16.min(b.len() - at));
                if rng.below(2) == 0 {
                    b.drain(at..at + n);
                } else {
                    let ins: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                    b.splice(at..at, ins);
                }
                case!("splice", b, format!("{name} rng {seed_state:#x}"));
            }
            _ => {
                // Several mutations of different kinds at once, then a random cut.
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(b.len());
                    b[at] = rng.next() as u8;
                }
                let f = maps[bi].fields[rng.below(maps[bi].fields.len())];
                put(&mut b, f, rng.next() >> rng.below(64));
                let cut = b.len() - rng.below(b.len() / 4 + 1);
                b.truncate(cut);
                case!("combined", b, format!("{name} rng {seed_state:#x}"));
            }
        }
        k += 1;
    }

    let elapsed = t0.elapsed();
    println!("GGUF mutation suite");
    println!(
        "  base files: {}",
        bases
            .iter()
            .map(|(n, b)| format!("{n} ({} B)", b.len()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  cases: {} in {:.2?} ({} ok, {} rejected)",
        stats.cases,
        elapsed,
        stats.ok,
        stats.cases - stats.ok
    );
    println!("  classes ({}):", per_class.len());
    for (c, n) in &per_class {
        println!("    {c:<16} {n:>7}");
    }
    println!("  error kinds ({}):", stats.errors.len());
    for (e, n) in &stats.errors {
        println!("    {e:<22} {n:>7}");
    }
    println!(
        "  worst parse allocation: {:.2}x file size ({} B) in {}",
        stats.worst_ratio, stats.worst_peak, stats.worst_case
    );
    println!(
        "  worst parse allocation for files >= 1 KiB: {:.2}x in {}",
        stats.worst_big_ratio, stats.worst_big_case
    );
    println!("  limit: {ALLOC_FACTOR}x file size + {ALLOC_CONST} B");
    assert!(stats.cases >= target);
    assert!(
        stats.failures.is_empty(),
        "{} failing cases, first ones:\n{}",
        stats.failures.len(),
        stats
            .failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The suite must actually reach deep checks, not just fail at the header.
    for must in [
        "Truncated",
        "DuplicateKey",
        "DuplicateTensor",
        "UnknownValueType",
        "UnknownTensorType",
        "TensorMisaligned",
        "TensorOutOfBounds",
        "ArrayPastEof",
        "StringPastEof",
        "UnsupportedVersion",
        "InvalidUtf8",
        "BadAlignment",
    ] {
        assert!(stats.errors.contains_key(must), "no case produced {must}");
    }
}
