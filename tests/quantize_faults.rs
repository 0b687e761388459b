//! Faults on the quantize path (what examples/quantize.rs runs): an output that
//! is the input (same path, `..`, symlink, hard link), a missing or non-directory
//! output parent, a disk that fills at any byte, a destination that cannot be
//! replaced. In every case the source file keeps its exact bytes and no partial
//! or temporary output file is left behind; each error names the problem.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use q4gpu::gguf::{GgmlType, Gguf, GgufError, GgufWriter, Value};
use q4gpu::quant::convert::{self, check_output_path, ConvertOptions, EmbdChoice};

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("q4gpu-qfaults-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn f32_bytes(n: usize, seed: u32) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            (((i as u32).wrapping_mul(2654435761) ^ seed) as f32 / 4e9 - 0.5).to_le_bytes()
        })
        .collect()
}

/// A small llama-like source file: metadata of several types and F32 tensors.
fn source_writer() -> GgufWriter<'static> {
    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", Value::String("llama".into()));
    w.add_kv("llama.block_count", Value::U32(1));
    w.add_kv(
        "tokenizer.ggml.tokens",
        Value::Array(vec![Value::String("a".into()), Value::String("b".into())]),
    );
    w.add_tensor(
        "token_embd.weight",
        GgmlType::F32,
        &[64, 4],
        f32_bytes(256, 1),
    )
    .unwrap();
    w.add_tensor(
        "blk.0.attn_q.weight",
        GgmlType::F32,
        &[64, 8],
        f32_bytes(512, 2),
    )
    .unwrap();
    w.add_tensor(
        "blk.0.attn_norm.weight",
        GgmlType::F32,
        &[64],
        f32_bytes(64, 3),
    )
    .unwrap();
    w
}

/// Writes the source into a fresh directory; returns (dir, path, bytes).
fn source_file(tag: &str) -> (PathBuf, PathBuf, Vec<u8>) {
    let dir = scratch(tag);
    let src = dir.join("src.gguf");
    source_writer().write_to_path(&src).expect("write source");
    let bytes = std::fs::read(&src).unwrap();
    (dir, src, bytes)
}

fn err_msg<T>(r: Result<T, GgufError>, what: &str) -> String {
    match r {
        Ok(_) => panic!("{what}: expected an error"),
        Err(e) => {
            let m = e.to_string();
            eprintln!("[{what}] {m}");
            m
        }
    }
}

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message lacks {p:?}: {msg}");
    }
}

fn q8_writer(src: &Gguf) -> GgufWriter<'_> {
    let opts = ConvertOptions {
        target: GgmlType::Q8_0.into(),
        embd: EmbdChoice::Keep,
    };
    convert::convert(src, &opts, |_, _, _, _| {}).expect("convert")
}

#[test]
fn output_that_is_the_input_is_refused() {
    let (dir, src, before) = source_file("same");
    let g = Gguf::open(&src).unwrap();
    let _w = q8_writer(&g);
    let m = err_msg(check_output_path(&src, &src), "same path");
    assert_has(
        &m,
        &[
            "src.gguf",
            "is the input file",
            "refusing to overwrite the source",
        ],
    );
    let dotted = dir
        .join("..")
        .join(dir.file_name().unwrap())
        .join("./src.gguf");
    let m = err_msg(check_output_path(&src, &dotted), "same file via ..");
    assert_has(&m, &["is the input file"]);
    #[cfg(unix)]
    {
        let link = dir.join("link.gguf");
        std::os::unix::fs::symlink(&src, &link).unwrap();
        let m = err_msg(check_output_path(&src, &link), "symlink to the input");
        assert_has(&m, &["link.gguf", "is the input file"]);
        // The other way round too: the input named through the link.
        let m = err_msg(check_output_path(&link, &src), "input via symlink");
        assert_has(&m, &["is the input file"]);
    }
    let hard = dir.join("hard.gguf");
    std::fs::hard_link(&src, &hard).unwrap();
    let m = err_msg(check_output_path(&src, &hard), "hard link to the input");
    assert_has(
        &m,
        &["hard.gguf", "hard link", "refusing to overwrite the source"],
    );
    drop(g);
    assert_eq!(std::fs::read(&src).unwrap(), before, "source modified");
    let mut want: BTreeSet<String> = ["src.gguf", "hard.gguf"].map(String::from).into();
    if cfg!(unix) {
        want.insert("link.gguf".into());
    }
    assert_eq!(listing(&dir), want);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_input_or_output_directory_is_named() {
    let (dir, src, before) = source_file("missing");
    let out = dir.join("no_such_dir").join("out.gguf");
    let m = err_msg(check_output_path(&src, &out), "output dir missing");
    assert_has(
        &m,
        &[
            "out.gguf",
            "output directory",
            "no_such_dir",
            "does not exist",
        ],
    );
    // The writer on its own fails the same way, creating nothing.
    let g = Gguf::open(&src).unwrap();
    let m = err_msg(q8_writer(&g).write_to_path(&out), "write into missing dir");
    assert_has(
        &m,
        &[
            "no_such_dir/out.gguf: cannot create a temporary file",
            "No such file or directory",
        ],
    );
    // A regular file where the directory should be.
    let under_file = src.join("out.gguf");
    let m = err_msg(check_output_path(&src, &under_file), "parent is a file");
    assert_has(&m, &["src.gguf", "out.gguf"]);
    let m = err_msg(
        q8_writer(&g).write_to_path(&under_file),
        "write under a file",
    );
    assert_has(
        &m,
        &[
            "src.gguf/out.gguf: cannot create a temporary file",
            "Not a directory",
        ],
    );
    let m = err_msg(
        check_output_path(&dir.join("absent.gguf"), &dir.join("out.gguf")),
        "input missing",
    );
    assert_has(&m, &["absent.gguf", "No such file or directory"]);
    drop(g);
    assert_eq!(std::fs::read(&src).unwrap(), before, "source modified");
    assert_eq!(listing(&dir), BTreeSet::from(["src.gguf".to_string()]));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A writer that accepts `room` bytes and then fails like a full disk.
struct FullDisk {
    room: usize,
    written: Vec<u8>,
}

impl Write for FullDisk {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let left = self.room - self.written.len();
        if left == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "No space left on device (simulated)",
            ));
        }
        let n = buf.len().min(left);
        self.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn disk_full_at_every_byte_is_a_write_error() {
    let (dir, src, before) = source_file("full");
    let g = Gguf::open(&src).unwrap();
    let w = q8_writer(&g);
    let mut full = Vec::new();
    w.write_to(&mut full).expect("unlimited write");
    assert!(full.len() > 1000);
    for room in 0..full.len() {
        let mut disk = FullDisk {
            room,
            written: Vec::new(),
        };
        let r = w.write_to(&mut disk);
        let Err(e) = r else {
            panic!(
                "write with {room} of {} bytes of room succeeded",
                full.len()
            )
        };
        let m = e.to_string();
        assert!(matches!(e, GgufError::Write(_)), "{m}");
        assert_has(&m, &["write failed", "No space left on device"]);
        // What did reach the disk is a prefix of the real file.
        assert_eq!(disk.written, full[..room]);
        if room == full.len() / 2 {
            eprintln!("[disk full after {room} bytes] {m}");
        }
    }
    // A writer that stops accepting bytes (Ok(0)) is an error too, not a loop.
    struct Stuck;
    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Ok(0)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let m = err_msg(w.write_to(Stuck), "writer accepting 0 bytes");
    assert_has(&m, &["write failed"]);
    drop(g);
    assert_eq!(std::fs::read(&src).unwrap(), before);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn destination_that_cannot_be_replaced_leaves_no_temp_file() {
    let (dir, src, before) = source_file("norename");
    let g = Gguf::open(&src).unwrap();
    // A directory (non-empty, so it cannot be replaced) where the output should go:
    // the data is written to a temporary file, the rename fails, the temp file goes.
    let out = dir.join("out.gguf");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep"), b"x").unwrap();
    let m = err_msg(
        q8_writer(&g).write_to_path(&out),
        "destination is a directory",
    );
    assert_has(&m, &["out.gguf"]);
    assert_eq!(
        listing(&dir),
        BTreeSet::from(["src.gguf".to_string(), "out.gguf".to_string()])
    );
    assert_eq!(listing(&out), BTreeSet::from(["keep".to_string()]));
    drop(g);
    assert_eq!(std::fs::read(&src).unwrap(), before);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn successful_conversion_leaves_source_and_one_output() {
    let (dir, src, before) = source_file("ok");
    let out = dir.join("out.gguf");
    check_output_path(&src, &out).expect("distinct paths");
    let g = Gguf::open(&src).unwrap();
    q8_writer(&g).write_to_path(&out).expect("write");
    drop(g);
    assert_eq!(std::fs::read(&src).unwrap(), before);
    assert_eq!(
        listing(&dir),
        BTreeSet::from(["src.gguf".to_string(), "out.gguf".to_string()])
    );
    let o = Gguf::open(&out).expect("output readable");
    let q = o
        .tensors()
        .iter()
        .find(|t| t.name == "blk.0.attn_q.weight")
        .unwrap();
    assert_eq!(q.ty, GgmlType::Q8_0);
    // Overwriting an existing output (not the input) is allowed.
    check_output_path(&src, &out).expect("existing output may be replaced");
    std::fs::remove_dir_all(&dir).unwrap();
}
