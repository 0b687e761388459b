//! Prints a GGUF file's header, metadata and tensor table; exits non-zero on a bad file.
//!
//! `cargo run --example inspect -- model.gguf [--max-elems N]`

use clap::Parser;
use q4gpu::gguf::{GgmlType, Gguf, GgufError, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "Inspect a GGUF file: version, alignment, metadata and tensors")]
struct Args {
    /// GGUF file to read.
    path: PathBuf,
    /// Array elements to show before summarizing.
    #[arg(long, default_value_t = 8)]
    max_elems: usize,
    /// Longest string shown before it is cut.
    #[arg(long, default_value_t = 120)]
    max_str: usize,
}

fn show_str(s: &str, max: usize) -> String {
    let cut: String = s.chars().take(max).collect();
    let more = s.chars().count() > max;
    format!("{:?}{}", cut, if more { "…" } else { "" })
}

fn show(v: &Value, a: &Args) -> String {
    match v {
        Value::String(s) => show_str(s, a.max_str),
        Value::Array(items) => {
            let shown: Vec<String> = items.iter().take(a.max_elems).map(|x| show(x, a)).collect();
            let more = if items.len() > a.max_elems {
                ", …"
            } else {
                ""
            };
            format!("{} [{}{}]", v.type_description(), shown.join(", "), more)
        }
        Value::U8(x) => x.to_string(),
        Value::I8(x) => x.to_string(),
        Value::U16(x) => x.to_string(),
        Value::I16(x) => x.to_string(),
        Value::U32(x) => x.to_string(),
        Value::I32(x) => x.to_string(),
        Value::U64(x) => x.to_string(),
        Value::I64(x) => x.to_string(),
        Value::F32(x) => x.to_string(),
        Value::F64(x) => x.to_string(),
        Value::Bool(x) => x.to_string(),
    }
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        let closed = e
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe);
        if closed {
            return;
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let g = Gguf::open(&args.path).map_err(|e| match e {
        // I/O errors already name the path.
        GgufError::Io { .. } => anyhow::Error::new(e),
        other => anyhow::anyhow!("{}: {other}", args.path.display()),
    })?;
    // Output goes through one locked, buffered stdout; a closed pipe
    // (`inspect f.gguf | head`) ends the program quietly (see main).
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(out, "file:        {}", args.path.display())?;
    writeln!(out, "size:        {} bytes", g.file_len())?;
    writeln!(out, "version:     {}", g.version())?;
    writeln!(out, "alignment:   {}", g.alignment())?;
    writeln!(out, "data offset: {}", g.data_offset())?;
    writeln!(out)?;
    writeln!(out, "metadata ({} keys):", g.metadata().len())?;
    let width = g.metadata().iter().map(|kv| kv.0.len()).max().unwrap_or(0);
    for (key, value) in g.metadata() {
        let ty = match value {
            Value::Array(_) => String::new(),
            other => format!("{}: ", other.value_type()),
        };
        writeln!(out, "  {key:<width$}  {ty}{}", show(value, args))?;
    }

    writeln!(out)?;
    writeln!(out, "tensors ({}):", g.tensors().len())?;
    let nw = g
        .tensors()
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "  {:<nw$}  {:<5}  {:<22}  {:>12}  {:>12}",
        "name", "type", "shape", "bytes", "offset"
    )?;
    let mut totals: BTreeMap<&'static str, (usize, u64, u64)> = BTreeMap::new();
    for t in g.tensors() {
        let shape = format!("{:?}", t.dims);
        writeln!(
            out,
            "  {:<nw$}  {:<5}  {:<22}  {:>12}  {:>12}",
            t.name,
            t.ty.name(),
            shape,
            t.n_bytes,
            t.offset
        )?;
        let e = totals.entry(t.ty.name()).or_default();
        e.0 += 1;
        e.1 += t.n_elements;
        e.2 += t.n_bytes;
    }
    writeln!(out)?;
    writeln!(out, "totals by type:")?;
    let (mut n, mut el, mut by) = (0usize, 0u64, 0u64);
    for (ty, (count, elems, bytes)) in &totals {
        let bpw = GgmlType::from_name(ty)
            .map(|t| t.type_size() as f64 * 8.0 / t.block_size() as f64)
            .unwrap_or(0.0);
        writeln!(
            out,
            "  {ty:<5}  {count:>4} tensors  {elems:>12} elements  {bytes:>12} bytes  ({bpw:.2} bits/weight)"
        )?;
        n += count;
        el += elems;
        by += bytes;
    }
    writeln!(
        out,
        "  all    {n:>4} tensors  {el:>12} elements  {by:>12} bytes"
    )?;
    out.flush()?;
    Ok(())
}
