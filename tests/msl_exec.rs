//! The hand-written MSL kernels executed on the CPU with Metal's semantics
//! (issue 19), on a machine without Metal: each variant is assembled from
//! the shipped `.metal` sources, compiled with g++ against
//! `tests/msl_shim/metal_shim.h` (Metal's types) and `metal_cpu.h` (their
//! behaviour), and run for every threadgroup of a real dispatch:
//!
//! * each thread is a fiber that runs until a barrier or SIMD-group function,
//!   rounds alternating direction, so a missing barrier reads unwritten
//!   (0xFF-poisoned) threadgroup memory instead of a lucky value;
//! * SIMD groups of 32 lanes, as on Apple GPUs;
//! * every buffer in its own mapping with inaccessible pages on both sides:
//!   an out-of-bounds access is a failure naming the buffer slot;
//! * buffers in the byte layouts and uniform structs the WGSL path uses.
//!
//! Results are compared with the same CPU references as the WGSL tests.
//! The WGSL COOP variants (cooperative matrices, which CI's lavapipe
//! lacks) run here too, as naga translates them to MSL (16×16 simdgroup
//! matrices, which the executor has and Metal does not).
//! Negative tests prove a missing barrier and an out-of-bounds read fail.
//! Needs g++ (C++20, glibc's ucontext) on Linux; elsewhere it skips.

mod common;
#[path = "common/naga_msl.rs"]
mod naga_msl;

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use common::{parallel, parenthesized, split_top, Rng};
use q4gpu::gguf::GgmlType;
use q4gpu::gpu::matvec::{Family, Fetch, MatvecVariant, Op};
use q4gpu::gpu::prefill::COOP;
use q4gpu::gpu::shader::{assemble_with, ArgmaxParams, Lang, MatvecParams, SampleParams};
use q4gpu::gpu::Inputs;
use q4gpu::quant;
use q4gpu::sampling::{Sampler, SamplerConfig};

/// A kernel variant compiled for the CPU.
struct Exec {
    what: String,
    bin: PathBuf,
}

/// Where compiled variants go (one binary per source text).
fn build_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("msl_exec");
    std::fs::create_dir_all(&dir).expect("build dir");
    dir
}

fn shim(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/msl_shim")
        .join(file)
}

/// Whether this machine can run the executor (g++ with glibc on Linux).
fn available() -> bool {
    if !cfg!(target_os = "linux") {
        eprintln!("msl_exec: not on Linux, skipped");
        return false;
    }
    let ok = Command::new("g++").arg("--version").output().is_ok();
    assert!(
        ok,
        "g++ not found: the MSL executor needs it (apt-get install g++)"
    );
    true
}

/// The C++ expression passed for one kernel parameter, from its attribute.
fn argument(param: &str) -> String {
    let attr = param
        .split("[[")
        .nth(1)
        .and_then(|a| a.split("]]").next())
        .unwrap_or_else(|| panic!("kernel parameter without an attribute: {param}"))
        .trim();
    if let Some(n) = attr
        .strip_prefix("buffer(")
        .and_then(|a| a.strip_suffix(')'))
    {
        return format!("q4cpu::buf({n})");
    }
    let builtin = match attr {
        "thread_index_in_threadgroup" => "q4cpu::scalar(tid)",
        "thread_position_in_threadgroup" => "q4cpu::Builtin{uint3(tid, 0u, 0u)}",
        "threadgroup_position_in_grid" => "q4cpu::Builtin{wid}",
        "thread_position_in_grid" => {
            "q4cpu::Builtin{uint3(wid.x * q4cpu::threads() + tid, wid.y, wid.z)}"
        }
        "threadgroups_per_grid" => "q4cpu::Builtin{q4cpu::grid()}",
        "thread_index_in_simdgroup" => "q4cpu::scalar(tid % 32u)",
        "simdgroup_index_in_threadgroup" => "q4cpu::scalar(tid / 32u)",
        "threads_per_simdgroup" => "q4cpu::scalar(32u)",
        "simdgroups_per_threadgroup" => "q4cpu::scalar((q4cpu::threads() + 31u) / 32u)",
        other => panic!("no CPU value for the builtin [[{other}]]"),
    };
    builtin.to_string()
}

/// The argument for a parameter only naga's MSL has, declaring what it
/// needs in `statics`: a workgroup variable (`threadgroup type_7& kh`,
/// which naga zeroes itself) becomes a static of that type, and the sizes
/// buffer (`_buffer_sizes`) the bound buffers' sizes. `None` for others.
fn naga_argument(param: &str, body: &str, statics: &mut String) -> Option<String> {
    let t: Vec<&str> = param.split_whitespace().collect();
    if let ["threadgroup", ty, name] = t.as_slice() {
        let ty = ty.trim_end_matches('&');
        statics.push_str(&format!("static {ty} q4tg_{name};\n"));
        return Some(format!("q4tg_{name}"));
    }
    if !param.contains("_buffer_sizes") {
        return None;
    }
    // `struct _mslBufferSizes { uint size1; uint size3; ... };`: field sizeN
    // is the byte size of buffer(N).
    let at = body.find("struct _mslBufferSizes {")?;
    let fields = &body[at..at + body[at..].find('}')?];
    statics.push_str("static _mslBufferSizes& q4_sizes() {\n    static _mslBufferSizes s;\n");
    for f in fields.split(';') {
        if let Some(n) = f.trim().strip_prefix("uint size") {
            statics.push_str(&format!(
                "    s.size{n} = uint(q4cpu::buffers()[{n}].size);\n"
            ));
        }
    }
    statics.push_str("    return s;\n}\n");
    Some("q4_sizes()".into())
}

/// The C++ program for MSL text `msl`: the kernel with its threadgroup
/// arrays made per-group statics (poisoned as each group starts), and a
/// main that runs a dispatch (see metal_cpu.h).
fn program(msl: &str) -> String {
    let mut body = String::new();
    for line in msl.lines() {
        let t = line.trim_start();
        if t.starts_with("#include <metal_stdlib>") || t.starts_with("#include <simd/simd.h>") {
            continue;
        }
        // `threadgroup T name[N];` at kernel scope.
        let parts: Vec<&str> = t.split_whitespace().collect();
        if let ["threadgroup", ty, decl] = parts.as_slice() {
            if let Some(name) = decl.strip_suffix(';').and_then(|d| d.split('[').next()) {
                if decl.contains('[') {
                    body.push_str(&format!(
                        "static {ty} {decl} q4cpu::poison({name}, sizeof({name}));\n"
                    ));
                    continue;
                }
            }
        }
        body.push_str(line);
        body.push('\n');
    }
    let at = body.find("compute_main(").expect("kernel compute_main") + "compute_main".len();
    let params = parenthesized(&body, at).expect("unbalanced parentheses in the kernel signature");
    let mut statics = String::new();
    let args: Vec<String> = split_top(params)
        .iter()
        .map(|p| naga_argument(p, &body, &mut statics).unwrap_or_else(|| argument(p)))
        .collect();
    format!(
        "#include <cmath>\n#include <csignal>\n#include <cstdio>\n#include <cstdlib>\n\
         #include <cstring>\n#include <string>\n#include <vector>\n#include <sys/mman.h>\n#include <ucontext.h>\n\
         #include <unistd.h>\n#include \"{shim}\"\n#include \"{cpu}\"\n{body}\n{statics}\
         static void q4_entry(uint tid, uint3 wid) {{\n    compute_main({args});\n}}\n\
         int main(int argc, char** argv) {{ return q4cpu::run_main(argc, argv, q4_entry); }}\n",
        shim = shim("metal_shim.h").display(),
        cpu = shim("metal_cpu.h").display(),
        args = args.join(", ")
    )
}

/// How the executor's programs are compiled.
const GXX_FLAGS: [&str; 3] = ["-std=c++20", "-O1", "-w"];

/// Compiles MSL text (cached by its hash); panics where g++ fails.
fn compile_text(what: &str, msl: &str) -> Exec {
    try_compile(what, msl).unwrap_or_else(|e| panic!("{e}"))
}

/// [`compile_text`] returning g++'s messages as the error.
fn try_compile(what: &str, msl: &str) -> Result<Exec, String> {
    use std::hash::{Hash, Hasher};
    let src = program(msl);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    src.hash(&mut h);
    // The flags too: a binary built with other flags is another program.
    GXX_FLAGS.hash(&mut h);
    std::fs::read(shim("metal_cpu.h"))
        .expect("runtime")
        .hash(&mut h);
    std::fs::read(shim("metal_shim.h"))
        .expect("shim")
        .hash(&mut h);
    let dir = build_dir();
    let bin = dir.join(format!("k{:016x}", h.finish()));
    if !bin.exists() {
        // Unique per compile: parallel jobs may build the same program.
        let unique = format!(
            "{:016x}-{}-{:?}",
            h.finish(),
            std::process::id(),
            std::thread::current().id()
        );
        let unique: String = unique
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let cpp = dir.join(format!("k{unique}.cpp"));
        std::fs::File::create(&cpp)
            .and_then(|mut f| f.write_all(src.as_bytes()))
            .expect("write program");
        let tmp = dir.join(format!("k{unique}.tmp"));
        let out = Command::new("g++")
            .args(GXX_FLAGS)
            .arg("-o")
            .arg(&tmp)
            .arg(&cpp)
            .output()
            .map_err(|e| format!("running g++: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{what}: g++ failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        std::fs::rename(&tmp, &bin).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&cpp);
    }
    Ok(Exec {
        what: what.to_string(),
        bin,
    })
}

/// Compiles the shipped kernel `name` with `flags`.
fn compile(name: &str, flags: &[&str]) -> Exec {
    let msl = assemble_with(Lang::Msl, name, flags, &[]).expect("assemble");
    compile_text(&format!("{name}{flags:?}"), &msl)
}

impl Exec {
    /// Runs one dispatch of `groups` threadgroups of `threads` threads over
    /// `bufs` (by slot; slot 0 the uniform), which it updates. Err: what the
    /// executor reported (an out-of-bounds access, a barrier divergence).
    fn run(
        &self,
        bufs: &mut [Vec<u8>],
        groups: (u32, u32, u32),
        threads: u32,
    ) -> Result<(), String> {
        let dir = tempdir(&self.what);
        for (i, b) in bufs.iter().enumerate() {
            std::fs::write(dir.join(format!("buf{i}")), b).expect("write buffer");
        }
        let out = Command::new(&self.bin)
            .arg(&dir)
            .args([groups.0, groups.1, groups.2, threads, bufs.len() as u32].map(|v| v.to_string()))
            .output()
            .expect("run kernel");
        if !out.status.success() {
            return Err(format!(
                "{}: {}",
                self.what,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        for (i, b) in bufs.iter_mut().enumerate() {
            *b = std::fs::read(dir.join(format!("buf{i}"))).expect("read buffer");
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}

fn tempdir(what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let tag: String = what.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let n = N.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("q4msl-{}-{tag}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn bytes<T: bytemuck::Pod>(v: &[T]) -> Vec<u8> {
    bytemuck::cast_slice(v).to_vec()
}

fn words(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// First index of the largest non-NaN value.
fn cpu_argmax(v: &[f32]) -> u32 {
    let mut best: Option<usize> = None;
    for (i, &x) in v.iter().enumerate() {
        if !x.is_nan() && best.is_none_or(|b| x > v[b]) {
            best = Some(i);
        }
    }
    best.map_or(v.len() as u32 - 1, |b| b as u32)
}

/// Random logits with planted ties and NaNs.
fn logits(rng: &mut Rng, n: usize, case: usize) -> Vec<f32> {
    let mut v = rng.vec(n);
    let top = rng.next() as usize % n;
    match case {
        1 => {
            let dup = rng.next() as usize % n;
            v[top] = 3.0;
            v[dup] = 3.0;
        }
        2 => v.iter_mut().step_by(3).for_each(|x| *x = f32::NAN),
        _ => v[top] = 2.0,
    }
    v
}

/// The two-pass argmax (PART then FINAL) as gpu::Argmax dispatches it.
fn argmax_two_pass(part: &Exec, fin: &Exec, v: &[f32]) -> Result<u32, String> {
    let n = v.len() as u32;
    let span = 2048u32;
    let groups = n.div_ceil(span);
    let p = ArgmaxParams {
        n,
        span,
        total: n,
        pad0: 0,
    };
    let mut bufs = vec![bytes(&[p]), bytes(v), vec![0xFFu8; groups as usize * 8]];
    part.run(&mut bufs, (groups, 1, 1), 256)?;
    let pairs = bufs.pop().unwrap_or_default();
    let p = ArgmaxParams {
        n: groups,
        span: 0,
        total: n,
        pad0: 0,
    };
    let mut bufs = vec![bytes(&[p]), pairs, vec![0xFFu8; 16]];
    fin.run(&mut bufs, (1, 1, 1), 256)?;
    Ok(words(&bufs[2])[0])
}

#[test]
fn argmax_kernels_match_the_cpu() {
    if !available() {
        return;
    }
    let one = compile("argmax", &[]);
    let part = compile("argmax", &["PART"]);
    let fin = compile("argmax", &["FINAL"]);
    let mut rng = Rng(0x3E7);
    for n in [1usize, 7, 255, 2047, 2049, 6145, 49152] {
        for case in 0..3 {
            let v = logits(&mut rng, n, case);
            let want = cpu_argmax(&v);
            if n <= 2048 {
                let p = ArgmaxParams {
                    n: n as u32,
                    span: n as u32,
                    total: n as u32,
                    pad0: 0,
                };
                let mut bufs = vec![bytes(&[p]), bytes(&v), vec![0xFFu8; 16]];
                one.run(&mut bufs, (1, 1, 1), 256).expect("argmax");
                assert_eq!(words(&bufs[2])[0], want, "one pass, n {n}, case {case}");
            }
            let got = argmax_two_pass(&part, &fin, &v).expect("two passes");
            assert_eq!(got, want, "two passes, n {n}, case {case}");
        }
    }
}

/// The sampler's two passes (span, then final) as gpu::GpuSampler
/// dispatches them: the chosen id.
fn sample(span: &Exec, fin: &Exec, p: &SampleParams, l: &[f32], recent: &[u32], u: f32) -> u32 {
    let vocab = l.len();
    let mut marks = vec![0u32; vocab];
    if p.last_n > 0 {
        let from = recent.len().saturating_sub(p.last_n as usize);
        recent[from..]
            .iter()
            .for_each(|&id| marks[id as usize] += 1);
    }
    let cands = vec![0xFFu8; p.spans as usize * 256 * 8];
    let mut bufs = vec![bytes(&[*p]), bytes(l), bytes(&marks), cands];
    span.run(&mut bufs, (p.spans, 1, 1), 256)
        .expect("span pass");
    let cands = bufs.pop().unwrap_or_default();
    let mut history = recent.to_vec();
    history.resize(recent.len() + 1, 0);
    let step = [recent.len() as u32 - 1, u.to_bits(), 0, 0];
    let mut bufs = vec![
        bytes(&[*p]),
        cands,
        bytes(&step),
        vec![0xFFu8; 16],
        bytes(&history),
        bytes(&marks),
    ];
    fin.run(&mut bufs, (1, 1, 1), 256).expect("final pass");
    words(&bufs[3])[0]
}

#[test]
fn sample_kernels_match_the_cpu_sampler() {
    if !available() {
        return;
    }
    let span = compile("sample", &[]);
    let fin = compile("sample", &["FINAL"]);
    let mut rng = Rng(0x5A4);
    let cfgs = [
        SamplerConfig::default(),
        SamplerConfig {
            temperature: 1.3,
            top_k: 100,
            top_p: 0.9,
            min_p: 0.0,
            repeat_penalty: 1.3,
            repeat_last_n: 8,
            seed: 1,
        },
        SamplerConfig {
            repeat_penalty: 1.5,
            ..SamplerConfig::greedy()
        },
        // For the coarse logits: many exact ties at the top-k boundary, no
        // cut whose f32 sum could fall exactly on its threshold.
        SamplerConfig {
            temperature: 1.0,
            top_k: 40,
            top_p: 1.0,
            min_p: 0.0,
            ..SamplerConfig::default()
        },
    ];
    let mut trials = 0;
    for vocab in [300usize, 2500] {
        let spans = vocab.div_ceil(1024) as u32;
        for (c, cfg) in cfgs.iter().enumerate() {
            let p = q4gpu::gpu::GpuSampler::params(cfg, vocab, spans).expect("supported");
            for _ in 0..3 {
                let coarse = c == 3;
                let scale = |x: &f32| if coarse { (x * 4.0).round() } else { x * 4.0 };
                let l: Vec<f32> = rng.vec(vocab).iter().map(scale).collect();
                let recent: Vec<u32> = (0..12)
                    .map(|_| (rng.next() % vocab as u64) as u32)
                    .collect();
                let u = (rng.next() >> 40) as f32 / (1u64 << 24) as f32;
                let got = sample(&span, &fin, &p, &l, &recent, u);
                let s = Sampler::new(*cfg);
                let dist = s.distribution(&l, &recent);
                let mut cum = 0.0f64;
                let mut want = dist.last().map_or(0, |d| d.0);
                if !s.is_greedy() {
                    for &(id, q) in &dist {
                        cum += f64::from(q);
                        if f64::from(u) < cum {
                            want = id;
                            break;
                        }
                    }
                } else {
                    want = dist[0].0;
                }
                assert_eq!(got, want, "vocab {vocab}, {cfg:?}, u {u}");
                trials += 1;
            }
        }
    }
    eprintln!("{trials} sampling trials agree");
}

/// The executor catches what Metal would leave to chance: argmax with its
/// reduction's barriers removed gives a wrong id (or a divergence error),
/// and a read one element past the logits is reported as out of bounds.
#[test]
fn missing_barriers_and_out_of_bounds_reads_fail() {
    if !available() {
        return;
    }
    let msl = assemble_with(Lang::Msl, "argmax", &[], &[]).expect("assemble");
    let cut = msl.replacen("threadgroup_barrier(mem_flags::mem_threadgroup);", "", 8);
    assert_ne!(cut, msl, "no barrier to remove");
    let broken = compile_text("argmax without barriers", &cut);
    let mut rng = Rng(9);
    let mut wrong = 0;
    for case in 0..4 {
        let v = logits(&mut rng, 2000, case % 3);
        let p = ArgmaxParams {
            n: 2000,
            span: 2000,
            total: 2000,
            pad0: 0,
        };
        let mut bufs = vec![bytes(&[p]), bytes(&v), vec![0xFFu8; 16]];
        match broken.run(&mut bufs, (1, 1, 1), 256) {
            Ok(()) => wrong += (words(&bufs[2])[0] != cpu_argmax(&v)) as usize,
            Err(_) => wrong += 1,
        }
    }
    assert_eq!(
        wrong,
        4,
        "the barrier-less argmax was right {} times of 4",
        4 - wrong
    );

    // n one past the buffer: the kernel reads logits[n - 1] beyond its end.
    let ok = compile("argmax", &[]);
    let v = rng.vec(1000);
    let p = ArgmaxParams {
        n: 1001,
        span: 1001,
        total: 1001,
        pad0: 0,
    };
    let mut bufs = vec![bytes(&[p]), bytes(&v), vec![0xFFu8; 16]];
    let e = ok
        .run(&mut bufs, (1, 1, 1), 256)
        .expect_err("out-of-bounds read");
    assert!(
        e.contains("out-of-bounds") && e.contains("buffer(1)"),
        "{e}"
    );
}

/// The matvec variants run here: f32 inputs (what Apple GPUs use: they have
/// no 4-way int8 dot) for every format, in every family with the plain op,
/// and the fused RMSNorm and SwiGLU ops in the staged family the model uses
/// for them, each with and without SIMD-group reductions.
fn matvec_variants() -> Vec<(MatvecVariant, bool)> {
    let mut out = Vec::new();
    for v in MatvecVariant::all() {
        let late = Family::Staged {
            fetch: Fetch::Late,
            rpt: 1,
        };
        let wanted = v.inputs == Inputs::F32
            && (v.op == Op::Plain || (v.family == late && matches!(v.op, Op::Norm | Op::SwiGlu)));
        if wanted {
            out.extend([(v, false), (v, true)]);
        }
    }
    out
}

/// A matvec's `dense` slab (`MatvecParams::group_rows`, 0 elsewhere) and
/// rows per workgroup, as `MatvecKernels::bind` dispatches them with the
/// default tuning for rows of `blocks` blocks.
fn matvec_groups(v: &MatvecVariant, blocks: u32) -> (u32, u32) {
    q4gpu::gpu::matvec::launch_rows(&q4gpu::gpu::MatvecTuning::default(), v, blocks)
}

/// Matrix bytes as `GpuMatrix::upload` leaves them on the GPU: in the
/// kernels' layout (Q6_K's GPU layout), padded to whole 16-byte words, then
/// the zero tail.
fn uploaded_matrix(ty: GgmlType, bytes: &[u8]) -> Vec<u8> {
    use q4gpu::gpu::matvec::{gpu_bytes, uploaded_len};
    let mut w = gpu_bytes(ty, bytes).expect("whole blocks").into_owned();
    w.resize(uploaded_len(ty, bytes.len()) as usize, 0);
    w
}

/// One matvec dispatch on the CPU executor against `quant::dot`: 13 rows
/// (not a multiple of a workgroup's rows) × 256 columns (every family's and
/// format's limits), x and y at offsets, y poisoned with NaN.
fn run_matvec(v: &MatvecVariant, subgroups: bool, seed: u64) -> Result<f64, String> {
    run_mutated_matvec(v, subgroups, seed, &[])
}

/// [`run_matvec`] with each `(from, to)` replacing the first `from` in the
/// assembled MSL (panics when `from` is missing: the mutation must apply).
fn run_mutated_matvec(
    v: &MatvecVariant,
    subgroups: bool,
    seed: u64,
    mutations: &[(&str, &str)],
) -> Result<f64, String> {
    let (rows, cols) = (13usize, 256usize);
    let mut flags = v.flags();
    if subgroups {
        flags.push("SUBGROUPS");
    }
    let consts = v.consts();
    let mut msl = assemble_with(Lang::Msl, v.file(), &flags, &consts)?;
    for (from, to) in mutations {
        assert!(msl.contains(from), "{} lacks `{from}`", v.name());
        msl = msl.replacen(from, to, 1);
    }
    let exec = compile_text(
        &format!("{}{}", v.name(), if subgroups { "+sg" } else { "" }),
        &msl,
    );
    let mut rng = Rng(seed);
    let wq = quant::quantize(v.format, &rng.vec(rows * cols)).map_err(|e| e.to_string())?;
    let x = rng.vec(if v.op == Op::SwiGlu { 2 * cols } else { cols });
    let gain = rng.vec(cols);
    let (x_off, y_off, eps) = (8usize, 3usize, 1e-5f32);
    let blocks = cols as u32 / 32;
    let (group_rows, per_group) = matvec_groups(v, blocks);
    let params = MatvecParams {
        rows: rows as u32,
        cols: cols as u32,
        blocks,
        x_offset: x_off as u32 / 4,
        y_offset: y_off as u32,
        eps,
        group_rows,
        ..Default::default()
    };
    let w = uploaded_matrix(v.format, &wq);
    let mut xb = vec![f32::NAN; x_off];
    xb.extend_from_slice(&x);
    let mut bufs = vec![
        bytes(&[params]),
        w,
        bytes(&xb),
        bytes(&vec![f32::NAN; y_off + rows + 5]),
    ];
    if v.op == Op::Norm {
        bufs.push(bytes(&gain));
    }
    exec.run(&mut bufs, ((rows as u32).div_ceil(per_group), 1, 1), 256)?;
    let input = match v.op {
        Op::Norm => common::rmsnorm(&x, &gain, eps),
        Op::SwiGlu => common::swiglu(&x, cols),
        _ => x,
    };
    let rb = wq.len() / rows;
    let y = f32s(&bufs[3]);
    let mut worst = 0.0f64;
    for r in 0..rows {
        let want =
            quant::dot(v.format, &wq[r * rb..(r + 1) * rb], &input).map_err(|e| e.to_string())?;
        let got = y[y_off + r];
        let err = f64::from((got - want).abs()) / f64::from(want.abs().max(1.0));
        worst = if got.is_nan() {
            f64::INFINITY
        } else {
            worst.max(err)
        };
    }
    let untouched = y[..y_off]
        .iter()
        .chain(&y[y_off + rows..])
        .all(|v| v.is_nan());
    if worst > 1e-4 || !untouched {
        return Err(format!(
            "{}{}: worst error {worst:.2e}, outside rows untouched: {untouched}",
            v.name(),
            if subgroups { " (SIMD groups)" } else { "" }
        ));
    }
    Ok(worst)
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn matvec_kernels_match_the_cpu() {
    if !available() {
        return;
    }
    let jobs = matvec_variants();
    let worst = std::sync::Mutex::new(0.0f64);
    let failures = parallel(&jobs, |(v, sg)| {
        let w = run_matvec(v, *sg, 0x77)?;
        let mut m = worst.lock().unwrap_or_else(|e| e.into_inner());
        *m = m.max(w);
        Ok(())
    });
    assert!(
        failures.is_empty(),
        "{} of {} matvec variants fail:\n{}",
        failures.len(),
        jobs.len(),
        failures.join("\n")
    );
    let worst = worst.into_inner().unwrap_or_else(|e| e.into_inner());
    eprintln!(
        "{} matvec variants run and match (worst relative error {worst:.2e}, bound 1e-4)",
        jobs.len()
    );
}

/// The decode embedding lookup (`embed.<format>`) of every format: the row
/// of the id in `tok` from a table part starting at vocabulary row `row0`,
/// dequantized as `quant::dequantize` does; ids outside the part leave the
/// (NaN-poisoned) output alone.
/// Deliberately broken MSL matvecs fail against the CPU (issue 19's
/// mutation table): each mutation, applied to the assembled text of one
/// variant the model path uses, must make the executor's result wrong.
#[test]
fn broken_matvec_twins_fail() {
    if !available() {
        return;
    }
    let staged = |format| MatvecVariant {
        family: Family::Staged {
            fetch: Fetch::Late,
            rpt: 1,
        },
        format,
        inputs: Inputs::F32,
        op: Op::Plain,
    };
    let q4_0 = staged(GgmlType::Q4_0);
    let mutations: [(&str, MatvecVariant, &str, &str); 5] = [
        (
            "wrong nibble mask (element 1 of each word loses bit 3)",
            q4_0,
            "uint4(q & 0xFu, q & 0xF00u,",
            "uint4(q & 0xFu, q & 0x700u,",
        ),
        (
            "wrong block offset (16-byte instead of 18-byte blocks)",
            q4_0,
            "uint i = (row * m.blocks + b) * 18u >> 4u;",
            "uint i = (row * m.blocks + b) * 16u >> 4u;",
        ),
        (
            "wrong scale (Q6_K's first group takes the second's int8 scale)",
            staged(GgmlType::Q6_K),
            "float(as_type<int>(sw << 24u) >> 24)",
            "float(as_type<int>(sw << 16u) >> 24)",
        ),
        (
            "removed barrier (x read from threadgroup memory before all of it is staged)",
            q4_0,
            "= xg(m, c0 * 8u + i);\n    }\n    threadgroup_barrier(mem_flags::mem_threadgroup);",
            "= xg(m, c0 * 8u + i);\n    }",
        ),
        (
            "wrong shuffle (xor distance halved: lanes add their own value)",
            q4_0,
            "t += simd_shuffle_xor(t, ushort(off));",
            "t += simd_shuffle_xor(t, ushort(off >> 1u));",
        ),
    ];
    for (what, v, from, to) in mutations {
        run_mutated_matvec(&v, true, 11, &[]).unwrap_or_else(|e| panic!("unmutated: {e}"));
        let e = run_mutated_matvec(&v, true, 11, &[(from, to)])
            .expect_err(&format!("{what}: not caught"));
        eprintln!("{what}: {e}");
    }
}

#[test]
fn embed_kernels_match_dequantized_rows() {
    if !available() {
        return;
    }
    let (rows, cols, row0) = (5usize, 512usize, 7u32);
    let mut failures = Vec::new();
    for ty in q4gpu::gpu::matvec::FORMATS {
        let flag = q4gpu::gpu::matvec::format_flag(ty).expect("embedding format");
        let exec = compile("embed", &[flag]);
        let mut rng = Rng(ty as u64 + 1);
        let table = quant::quantize(ty, &rng.vec(rows * cols)).expect("quantize");
        let rb = table.len() / rows;
        let padded = uploaded_matrix(ty, &table);
        let params = q4gpu::gpu::shader::EmbedParams {
            rows: rows as u32,
            cols: cols as u32,
            row0,
            pad1: 0,
        };
        for id in [
            row0,
            row0 + 3,
            row0 + rows as u32 - 1,
            row0 - 1,
            row0 + rows as u32,
        ] {
            let mut bufs = vec![
                bytes(&[params]),
                padded.clone(),
                bytes(&[id, 0, 0, 0]),
                bytes(&vec![f32::NAN; cols]),
            ];
            if let Err(e) = exec.run(&mut bufs, ((cols as u32).div_ceil(256), 1, 1), 256) {
                failures.push(e);
                continue;
            }
            let got = f32s(&bufs[3]);
            let inside = (row0..row0 + rows as u32).contains(&id);
            let ok = if inside {
                let r = (id - row0) as usize;
                let want = quant::dequantize_row_to_vec(ty, &table[r * rb..(r + 1) * rb], cols)
                    .expect("dequantize");
                got == want
            } else {
                got.iter().all(|v| v.is_nan())
            };
            if !ok {
                failures.push(format!(
                    "embed.{ty}: id {id} (part rows {row0}..{})",
                    row0 + rows as u32
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One kernel dispatch for the twin check: the kernel, its uniform and
/// storage buffers (by binding), which storage buffers are read-only, and
/// the grid.
struct Twin<'a, P: bytemuck::Pod> {
    name: &'a str,
    flags: &'a [&'a str],
    /// Valued constants (matvec variants).
    consts: &'a [(&'a str, u32)],
    params: P,
    storage: Vec<Vec<u8>>,
    read_only: &'a [bool],
    groups: (u32, u32),
    /// Threads per workgroup.
    threads: u32,
}

/// Runs the MSL kernel on the CPU executor and its WGSL twin on the test
/// GPU (lavapipe on CI) with the same buffers; every writable buffer must
/// come out the same (floats within `tol` relative to the buffer's largest
/// value; NaN where both left a poisoned value). The WGSL kernels are
/// checked against CPU references by the GPU tests, so agreement carries
/// that check over to the MSL.
fn twin_check<P: bytemuck::Pod>(gpu: &q4gpu::Gpu, t: &Twin<'_, P>, tol: f32) -> Result<(), String> {
    let what = format!("{}{:?}{:?}", t.name, t.flags, t.consts);
    let msl = assemble_with(Lang::Msl, t.name, t.flags, t.consts)?;
    let exec = try_compile(&what, &msl)?;
    let mut cpu = vec![bytes(&[t.params])];
    cpu.extend(t.storage.iter().cloned());
    exec.run(&mut cpu, (t.groups.0, t.groups.1, 1), t.threads)?;
    let bufs: Vec<wgpu::Buffer> = t
        .storage
        .iter()
        .map(|b| {
            gpu.upload("twin", b, wgpu::BufferUsages::COPY_SRC)
                .expect("upload")
        })
        .collect();
    let spec = q4gpu::gpu::KernelSpec {
        workgroup_size: (t.threads, 1, 1),
        consts: t.consts,
        ..q4gpu::gpu::KernelSpec::new(t.name, t.flags, t.read_only)
    };
    let refs: Vec<&wgpu::Buffer> = bufs.iter().collect();
    let d = q4gpu::gpu::Dispatch::launch(gpu, &what, &spec, &t.params, &refs, 1)
        .map_err(|e| e.to_string())?;
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        d.encode_grid(&mut pass, t.groups.0, t.groups.1);
    }
    gpu.queue.submit([enc.finish()]);
    for (i, b) in bufs.iter().enumerate() {
        if t.read_only[i] {
            continue;
        }
        let n = t.storage[i].len() / 4;
        let wgsl = q4gpu::gpu::read_f32(gpu, b, 0, n).map_err(|e| e.to_string())?;
        let msl = f32s(&cpu[i + 1]);
        let scale = wgsl
            .iter()
            .filter(|v| v.is_finite())
            .fold(1e-30f32, |m, v| m.max(v.abs()));
        for (j, (a, b)) in msl.iter().zip(&wgsl).enumerate() {
            let same = (a.is_nan() && b.is_nan()) || (a - b).abs() <= tol * scale;
            if !same {
                return Err(format!(
                    "{what}: binding {} element {j}: MSL {a}, WGSL {b}",
                    i + 1
                ));
            }
        }
    }
    Ok(())
}

/// Decode attention (RoPE, KV write, chunk partials) and the chunk merge:
/// MSL on the CPU executor against WGSL on the test GPU, for one chunk
/// (attention writes the output itself) and three (partials, then
/// attention_combine), head sizes 64 and 128, grouped KV heads, NeoX RoPE
/// and Qwen3's per-head norms.
#[test]
fn attention_kernels_match_their_wgsl_twins() {
    if !available() {
        return;
    }
    let gpu = common::gpu();
    let mut rng = Rng(0xA77);
    let mut failures = Vec::new();
    for (hd, n_heads, n_kv, neox, norm, pos) in [
        (64u32, 6u32, 2u32, 0u32, 0u32, 5u32),
        (64, 6, 2, 1, 1, 130),
        (128, 4, 4, 0, 1, 70),
    ] {
        let (max_ctx, layer_offset) = (160u32, 0u32);
        let kv_dim = n_kv * hd;
        let gq = n_heads * hd + 2 * kv_dim;
        let chunks = pos / 64 + 1;
        let p = q4gpu::gpu::shader::AttnParams {
            n_heads,
            n_kv_heads: n_kv,
            head_dim: hd,
            kv_dim,
            layer_offset,
            max_ctx,
            rope_neox: neox,
            scale: 1.0 / (hd as f32).sqrt(),
            qk_norm: norm,
            eps: 1e-6,
            pad0: 0,
            pad1: 0,
        };
        let cache = |rng: &mut Rng| bytes(&rng.vec((max_ctx * kv_dim) as usize));
        let rope: Vec<f32> = (0..hd / 2)
            .map(|i| 10000f32.powf(-2.0 * i as f32 / hd as f32))
            .collect();
        let part = bytes(&vec![f32::NAN; (chunks * n_heads * (hd + 4)) as usize]);
        let storage = vec![
            bytes(&[pos, 0, 0, 0]),
            bytes(&rng.vec(gq as usize)),
            cache(&mut rng),
            cache(&mut rng),
            part,
            bytes(&vec![f32::NAN; (n_heads * hd) as usize]),
            bytes(&rope),
            bytes(&rng.vec((gq + 2 * hd) as usize)),
        ];
        let att = Twin {
            name: "attention",
            flags: &[],
            consts: &[],
            params: p,
            storage,
            read_only: &[true, true, false, false, false, false, true, true],
            groups: (n_heads, chunks),
            threads: 256,
        };
        if let Err(e) = twin_check(&gpu, &att, 1e-5) {
            failures.push(e);
        }
        if chunks > 1 {
            let part: Vec<f32> = (0..chunks * n_heads * (hd + 4))
                .map(|i| {
                    // Plausible records: m, l > 0, two unused, o.
                    match i % (hd + 4) {
                        0 => rng.f() * 4.0,
                        1 => 1.0 + rng.f().abs() * 10.0,
                        _ => rng.f(),
                    }
                })
                .collect();
            let combine = Twin {
                name: "attention_combine",
                flags: &[],
                consts: &[],
                params: p,
                storage: vec![
                    bytes(&[pos, 0, 0, 0]),
                    bytes(&part),
                    bytes(&vec![f32::NAN; (n_heads * hd) as usize]),
                ],
                read_only: &[true, true, false],
                groups: (n_heads, 1),
                threads: 256,
            };
            if let Err(e) = twin_check(&gpu, &combine, 1e-5) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// A model's own launches, replayed one by one.

#[allow(dead_code)]
#[path = "common/small_model.rs"]
mod small_model;
use small_model::{small_model, synth};

/// A whole buffer's bytes, read back from the GPU.
fn read_all(gpu: &q4gpu::Gpu, b: &wgpu::Buffer) -> Vec<u8> {
    bytes(&q4gpu::gpu::read_u32(gpu, b, 0, (b.size() / 4) as usize).expect("read back"))
}

/// Whether two f32 buffers agree within `tol` of the larger buffer's largest
/// finite value (NaN where both are NaN); `codes`: int8 blocks (packed
/// codes and f32 scales and sums), where each word must be equal, an f32
/// within 1e-5 relative, or four codes each off by at most one (a code
/// rounded the other way: at most 1 word in 50).
fn agree(msl: &[u8], wgsl: &[u8], tol: f32, codes: bool) -> Result<(), String> {
    let (a, b) = (f32s(msl), f32s(wgsl));
    if codes {
        let (mut flips, mut bad) = (0, Vec::new());
        for (j, (x, y)) in msl.chunks(4).zip(wgsl.chunks(4)).enumerate() {
            let (fx, fy) = (a[j], b[j]);
            let close = fx.is_finite()
                && fy.is_finite()
                && (fx - fy).abs() <= 1e-5 * fx.abs().max(fy.abs());
            if x == y || close {
                continue;
            }
            if x.iter()
                .zip(y)
                .all(|(p, q)| (i32::from(*p as i8) - i32::from(*q as i8)).abs() <= 1)
            {
                flips += 1;
            } else {
                bad.push(j);
            }
        }
        return if bad.is_empty() && flips * 50 <= a.len().max(1) {
            Ok(())
        } else {
            Err(format!(
                "{} words differ, {flips} by one code (first: {:?})",
                bad.len(),
                bad.first()
            ))
        };
    }
    let scale = b
        .iter()
        .filter(|v| v.is_finite())
        .fold(1e-30f32, |m, v| m.max(v.abs()));
    for (j, (x, y)) in a.iter().zip(&b).enumerate() {
        if !((x.is_nan() && y.is_nan()) || (x - y).abs() <= tol * scale) {
            return Err(format!("element {j}: MSL {x}, WGSL {y} (largest {scale})"));
        }
    }
    Ok(())
}

/// A recorded launch's source in `lang`, with SIMD groups (Apple GPUs have
/// them) and `extra` flags.
fn record_source(
    k: &q4gpu::gpu::KernelRecord,
    extra: &[&str],
    lang: Lang,
) -> Result<String, String> {
    let mut flags: Vec<&str> = k.flags.iter().map(String::as_str).collect();
    flags.push("SUBGROUPS");
    flags.extend(extra);
    let consts: Vec<(&str, u32)> = k.consts.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    assemble_with(lang, &k.file, &flags, &consts)
}

/// The MSL program of a recorded launch (see `record_source`).
fn compile_record(k: &q4gpu::gpu::KernelRecord, extra: &[&str]) -> Result<Exec, String> {
    try_compile(&k.name, &record_source(k, extra, Lang::Msl)?)
}

/// naga's MSL of a recorded launch's WGSL (see `record_source`): how the
/// executor runs the WGSL COOP variants (cooperative matrices as 16×16
/// simdgroup matrices), whose hand-written twins use 8×8 fragments in
/// their own order.
fn compile_naga(k: &q4gpu::gpu::KernelRecord, extra: &[&str]) -> Result<Exec, String> {
    use naga::valid::{Capabilities, ValidationFlags, Validator};
    let src = record_source(k, extra, Lang::Wgsl)?;
    let module = naga::front::wgsl::parse_str(&src).map_err(|e| e.emit_to_string(&src))?;
    let info = Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&module)
        .map_err(|e| e.emit_to_string(&src))?;
    let msl = naga_msl::naga_msl(&module, &info, &k.name);
    try_compile(&format!("{} (naga)", k.name), &msl)
}

/// How `replay_with` builds a launch's program: the hand-written MSL twin
/// or naga's translation of the WGSL.
type Compile = fn(&q4gpu::gpu::KernelRecord, &[&str]) -> Result<Exec, String>;

/// Each launch of `launches` in order: its buffers read back, the launch
/// run alone on the GPU (WGSL) and its MSL twin on the executor from the
/// same contents; every buffer it may write must agree. Returns failures.
fn replay(gpu: &q4gpu::Gpu, launches: &[q4gpu::gpu::Captured], what: &str) -> Vec<String> {
    replay_with(gpu, launches, what, &[], compile_record).0
}

/// `replay` with `extra` flags on the MSL side, for the launches of kernels
/// that test them. With matmul's COOP the executor runs the simdgroup-matrix
/// twin against the f32 WGSL variant the test GPU runs (lavapipe has no
/// cooperative matrices), to f16's tolerance. Returns the failures and the
/// largest relative difference seen.
fn replay_with(
    gpu: &q4gpu::Gpu,
    launches: &[q4gpu::gpu::Captured],
    what: &str,
    extra: &[&str],
    compile: Compile,
) -> (Vec<String>, f32) {
    let launches: Vec<_> = launches
        .iter()
        .filter(|c| extra.is_empty() || COOP_FILES.contains(&c.kernel.file.as_str()))
        .collect();
    let records: Vec<_> = launches.iter().map(|c| c.kernel.clone()).collect();
    // Compile the distinct variants in parallel first (cached by source).
    let mut failures = parallel(&records, |k| compile(k, extra).map(|_| ()));
    let mut worst = 0f32;
    for (i, c) in launches.iter().enumerate() {
        let k = &c.kernel;
        let before: Vec<Vec<u8>> = k.buffers.iter().map(|b| read_all(gpu, b)).collect();
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            c.encode(&mut pass);
        }
        gpu.queue.submit([enc.finish()]);
        let mut cpu = before.clone();
        let threads = k.workgroup_size.0 * k.workgroup_size.1 * k.workgroup_size.2;
        let run = compile(k, extra).and_then(|e| e.run(&mut cpu, c.grid, threads));
        if let Err(e) = run {
            failures.push(format!("{what} launch {i} {}: {e}", k.name));
            continue;
        }
        let int8 = k.flags.iter().any(|f| f.starts_with("INT8")) || k.file == "matmul_q8";
        let tol = if extra.contains(&COOP) {
            COOP_TOLERANCE
        } else if int8 {
            2e-3
        } else {
            1e-4
        };
        for (j, read_only) in k.bindings.iter().enumerate() {
            if *read_only {
                continue;
            }
            let wgsl = read_all(gpu, &k.buffers[j + 1]);
            let codes = k.file == "quantize_rows";
            worst = worst.max(relative_difference(&cpu[j + 1], &wgsl));
            if let Err(e) = agree(&cpu[j + 1], &wgsl, tol, codes) {
                failures.push(format!(
                    "{what} launch {i} {} binding {}: {e}",
                    k.name,
                    j + 1
                ));
            }
        }
    }
    (failures, worst)
}

/// The kernels with COOP variants (`replay_with` and `COOP` replays only
/// their launches).
const COOP_FILES: [&str; 2] = ["matmul", "attention_tiled"];

/// COOP kernels against f32 ones, relative to the largest output: weights
/// and inputs rounded to f16 put each product within 2·2⁻¹¹ ≈ 1e-3 of
/// itself, and over 256 columns of random signs the errors add to a few
/// times that of the largest output at most. Attention rounds q, k, v and
/// the probabilities P to f16: each output is a P-weighted mean of v rows,
/// within a few 2⁻¹¹ of itself too.
const COOP_TOLERANCE: f32 = 4e-3;

/// Largest |a − b| over the largest finite |b|, both read as f32 (NaN pairs
/// and non-finite values skipped).
fn relative_difference(a: &[u8], b: &[u8]) -> f32 {
    let (a, b): (&[f32], &[f32]) = (bytemuck::cast_slice(a), bytemuck::cast_slice(b));
    let scale = b
        .iter()
        .filter(|v| v.is_finite())
        .fold(1e-30f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .fold(0f32, |m, (x, y)| m.max((x - y).abs() / scale))
}

/// Every launch of a prefill chunk (positions 70..78, after 70 prefilled
/// tokens) and of the decode step after it (two attention chunks), for a
/// SmolLM2-shaped Q4_0 model with the default options, a SmolLM2-shaped
/// Q8_0 one with int8 inputs (the int8 prefill path) and a Qwen3-shaped
/// Q4_K_M one (per-head norms, NeoX RoPE, 128-wide heads) with int8 inputs:
/// MSL on the executor equals WGSL on the test GPU, launch by launch.
#[test]
fn a_models_launches_run_the_same_in_msl() {
    use q4gpu::gpu::capture;
    use q4gpu::model::{GpuModel, ModelOptions};
    if !available() {
        return;
    }
    let gpu = common::gpu();
    let mut failures = Vec::new();
    let cases = [
        (
            synth::Arch::Smollm2_135m,
            GgmlType::Q4_0,
            None,
            Inputs::Auto,
        ),
        // int8 prefill inputs: quantize_rows and matmul_q8.
        (
            synth::Arch::Smollm2_135m,
            GgmlType::Q8_0,
            None,
            Inputs::Int8,
        ),
        (
            synth::Arch::Qwen3_06b,
            GgmlType::Q4_K,
            Some(q4gpu::quant::convert::Mix::Q4KM),
            Inputs::Int8,
        ),
    ];
    let mut launches = 0;
    for (arch, ty, mix, inputs) in cases {
        let model = small_model(&format!("msl-{arch:?}"), arch, ty, mix, 3);
        let opts = ModelOptions {
            inputs,
            ..Default::default()
        };
        let w = model.weights().expect("weights");
        let mut m = GpuModel::with_options(&gpu, &model.config, &w, 128, opts).expect("model");
        let ids: Vec<u32> = (0..78u32).map(|i| (i * 37 + 5) % 700).collect();
        m.prefill(0, &ids[..70]).expect("prefill");
        let (r, chunk) = capture(|| m.prefill(70, &ids[70..]));
        r.expect("prefill chunk");
        failures.extend(replay(&gpu, &chunk, &format!("{arch:?} prefill")));
        m.write_step(78, Some(ids[77])).expect("step");
        let (_, step) = capture(|| {
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            m.encode_step_into(&mut enc, true);
        });
        failures.extend(replay(&gpu, &step, &format!("{arch:?} decode")));
        launches += chunk.len() + step.len();
        let mut names: Vec<&str> = chunk
            .iter()
            .chain(&step)
            .map(|c| c.kernel.name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        eprintln!(
            "{arch:?}: {} launches of {}",
            chunk.len() + step.len(),
            names.join(", ")
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("{launches} launches agree");
}

/// The two kernels outside the model: the read-bandwidth probe and the
/// seed's naive Q4_0 matvec (32 threads a workgroup), as twins.
#[test]
fn probe_and_naive_kernels_match_their_wgsl_twins() {
    if !available() {
        return;
    }
    let gpu = common::gpu();
    let mut rng = Rng(0xB0);
    let (groups, words) = (4u32, 5000u32);
    let src: Vec<u32> = (0..words * 4).map(|_| rng.next() as u32).collect();
    let probe = Twin {
        name: "bandwidth",
        flags: &[],
        consts: &[],
        params: q4gpu::gpu::shader::BandwidthParams {
            words,
            stride: groups * 256,
            pad0: 0,
            pad1: 0,
        },
        storage: vec![bytes(&src), vec![0xFFu8; groups as usize * 4 * 4]],
        read_only: &[true, false],
        groups: (groups, 1),
        threads: 256,
    };
    let (rows, cols) = (13u32, 256u32);
    let w = quant::quantize(GgmlType::Q4_0, &rng.vec((rows * cols) as usize)).expect("quantize");
    let naive = Twin {
        name: "matvec_q4_0_naive",
        flags: &[],
        consts: &[],
        params: MatvecParams {
            rows,
            cols,
            blocks: cols / 32,
            ..Default::default()
        },
        storage: vec![
            w,
            bytes(&rng.vec(cols as usize)),
            bytes(&vec![f32::NAN; rows as usize]),
        ],
        read_only: &[true, true, false],
        groups: (rows, 1),
        threads: 32,
    };
    let failures: Vec<String> = [
        twin_check(&gpu, &probe, 0.0),
        twin_check(&gpu, &naive, 1e-5),
    ]
    .into_iter()
    .filter_map(Result::err)
    .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The int8- and two-level-input matvec variants (every format that has
/// them, every family, plain and fused RMSNorm/SwiGLU; the attention merge
/// runs in the model replay), with SIMD groups as on Apple GPUs: MSL on the
/// executor against WGSL on the test GPU, 13×256, within 2e-3 (a code
/// rounded the other way at a tie moves a row by ~1e-4).
#[test]
fn int8_matvec_variants_match_their_wgsl_twins() {
    if !available() {
        return;
    }
    let gpu = common::gpu();
    let jobs: Vec<MatvecVariant> = MatvecVariant::all()
        .into_iter()
        .filter(|v| v.inputs != Inputs::F32 && v.op != Op::Attn)
        .collect();
    // Compile in parallel first (the twins then find them cached).
    let mut failures = parallel(&jobs, |v| {
        let mut flags = v.flags();
        flags.push("SUBGROUPS");
        let msl = assemble_with(Lang::Msl, v.file(), &flags, &v.consts())?;
        try_compile(&v.name(), &msl).map(|_| ())
    });
    let (rows, cols) = (13u32, 256u32);
    let mut rng = Rng(0x18);
    for v in &jobs {
        let wq = quant::quantize(v.format, &rng.vec((rows * cols) as usize)).expect("quantize");
        let w = uploaded_matrix(v.format, &wq);
        let n_x = if v.op == Op::SwiGlu { 2 * cols } else { cols };
        let blocks = cols / 32;
        let (group_rows, per_group) = matvec_groups(v, blocks);
        let mut storage = vec![
            w,
            bytes(&rng.vec(n_x as usize)),
            bytes(&vec![f32::NAN; rows as usize]),
        ];
        if v.op == Op::Norm {
            storage.push(bytes(&rng.vec(cols as usize)));
        }
        let mut flags = v.flags();
        flags.push("SUBGROUPS");
        let consts = v.consts();
        let twin = Twin {
            name: v.file(),
            flags: &flags,
            consts: &consts,
            params: MatvecParams {
                rows,
                cols,
                blocks,
                eps: 1e-5,
                group_rows,
                ..Default::default()
            },
            storage,
            read_only: v.bindings(),
            groups: (rows.div_ceil(per_group), 1),
            threads: 256,
        };
        if let Err(e) = twin_check(&gpu, &twin, 2e-3) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fail:\n{}",
        failures.len(),
        jobs.len(),
        failures.join("\n")
    );
    eprintln!("{} int8-input matvec variants agree", jobs.len());
}

/// A storage buffer holding `v`, readable back.
fn gpu_buffer<T: bytemuck::Pod>(gpu: &q4gpu::Gpu, v: &[T]) -> wgpu::Buffer {
    gpu.upload(
        "replay",
        bytemuck::cast_slice(v),
        wgpu::BufferUsages::COPY_SRC,
    )
    .expect("upload")
}

/// The prefill family for every format, bound by the library and replayed
/// in MSL launch by launch (see `replay`): matmul (plain, fused RMSNorm,
/// SwiGLU, accumulate) and its reduce, the int8 path (quantize_rows,
/// matmul_q8) for the formats that have it, the f16-input path
/// (quantize_rows HALF, matmul HALF_X), and the batched embedding
/// lookup; 5 tokens, 70 rows × 256 columns (a partial row tile), strided
/// and offset rows.
#[test]
fn prefill_kernels_of_every_format_run_the_same_in_msl() {
    use q4gpu::gpu::prefill::{chunk_words, embed_batch, MatmulBinding, MatmulKernels};
    use q4gpu::gpu::{capture, GpuMatrix, MatvecInput};
    if !available() {
        return;
    }
    let gpu = common::gpu();
    let mut rng = Rng(0xE1);
    let (rows, cols, n) = (70usize, 256usize, 5usize);
    let mut launches = Vec::new();
    for ty in q4gpu::gpu::matvec::FORMATS {
        let wq = quant::quantize(ty, &rng.vec(rows * cols)).expect("quantize");
        let m = GpuMatrix::upload(&gpu, "w", ty, rows, cols, &wq).expect("upload");
        let x_stride = 2 * cols + 8;
        let xb = gpu_buffer(&gpu, &rng.vec((n + 2) * x_stride));
        let y_stride = rows + 8;
        let yb = gpu_buffer(&gpu, &rng.vec((n + 2) * y_stride));
        let gb = gpu_buffer(&gpu, &rng.vec(cols));
        let ids: Vec<u32> = (0..n as u32).map(|i| i * 13 % rows as u32).collect();
        let cb = gpu_buffer(&gpu, &chunk_words(0, &ids));
        for (q8, half) in [(false, false), (true, false), (false, true)] {
            let k = MatmulKernels::new(&gpu)
                .with_q8_activations(q8)
                .with_half_inputs(half);
            if (q8 && !k.q8_activations(ty)) || half != k.half_inputs(ty, rows as u32) {
                continue;
            }
            let inputs = [
                (MatvecInput::Plain, false),
                (MatvecInput::Plain, true),
                (
                    MatvecInput::RmsNorm {
                        gain: &gb,
                        eps: 1e-5,
                    },
                    false,
                ),
                (MatvecInput::SwiGlu, false),
            ];
            for (input, accumulate) in inputs {
                let b = MatmulBinding {
                    x: &xb,
                    x_stride: x_stride as u32,
                    y: &yb,
                    y_stride: y_stride as u32,
                    y_offset: 3,
                    chunk: &cb,
                    max_tokens: (n + 2) as u32,
                    input,
                    accumulate,
                };
                let op = k.bind(&gpu, &m, b).expect("bind");
                let (_, got) = capture(|| {
                    let mut enc = gpu.device.create_command_encoder(&Default::default());
                    op.encode_into(&mut enc, n as u32);
                });
                launches.extend(got);
            }
        }
        let table = gpu_buffer(&gpu, &{
            let mut t = wq.clone();
            t.resize(wq.len().div_ceil(4) * 4, 0);
            t
        });
        let out = gpu_buffer(&gpu, &vec![f32::NAN; (n + 2) * cols]);
        let e = embed_batch(
            &gpu,
            ty,
            &table,
            (0, rows as u32),
            cols as u32,
            &cb,
            &out,
            (n + 2) as u32,
        )
        .expect("embed_batch");
        let (_, got) = capture(|| {
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            e.encode_into(&mut enc, n as u32);
        });
        launches.extend(got);
    }
    let failures = replay(&gpu, &launches, "prefill family");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let mut names: Vec<&str> = launches.iter().map(|c| c.kernel.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    eprintln!(
        "{} launches of {} variants agree",
        launches.len(),
        names.len()
    );
    // The same matmuls on simdgroup matrices (COOP) against the f32 WGSL.
    let (failures, worst) = replay_with(
        &gpu,
        &launches,
        "prefill family COOP",
        &[COOP],
        compile_record,
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("COOP matmuls agree with f32 within {worst:.2e} (bound {COOP_TOLERANCE:.0e})");
}

/// The COOP twins on a chunk that fills a 64-token tile and spills into the
/// next (70 tokens) and 130 rows (two full row tiles and a partial one),
/// which the 5-token, 70-row family test above never reaches, over 5 blocks
/// of K in segments of 3 and 2, and in one segment of 5 (DIRECT: the
/// products written to Y without a reduce pass). f32 inputs with the fused RMSNorm, f16 inputs,
/// and a plain product adding into Y, against the f32 WGSL (after the
/// whole sequence ran, quantize_rows included, in both languages); MSL
/// twins and WGSL (through naga).
#[test]
fn coop_matmul_twins_fill_whole_tiles() {
    if !available() {
        return;
    }
    // Segments of 3 and 2 blocks, then one of 5 (DIRECT where no norm
    // scale is left: f16 inputs and the plain product).
    for target in [6, 1] {
        let mut opts = common::device_options();
        opts.tuning = Some(q4gpu::gpu::Tuning {
            matmul_target_workgroups: target,
            ..Default::default()
        });
        let gpu = q4gpu::Gpu::new(&opts).expect("gpu");
        let launches = full_tile_launches(&gpu);
        // Every launch first (quantize_rows writes the f16 inputs), then
        // the matmuls again on simdgroup matrices.
        let failures = replay(&gpu, &launches, "full-tile");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        let (worst, naga) = coop_replays(&gpu, &launches, "full-tile", &[COOP]);
        eprintln!(
            "target {target}: full-tile COOP matmuls agree with f32 within {worst:.2e} (MSL twins), {naga:.2e} (WGSL)"
        );
    }
}

/// The COOP launches among `launches` (run once already) replayed with
/// `extra` flags against the f32 WGSL on the test GPU, as MSL twins and as
/// naga's MSL of the WGSL variants; asserts they agree and returns the
/// largest relative differences (twins, WGSL).
fn coop_replays(
    gpu: &q4gpu::Gpu,
    launches: &[q4gpu::gpu::Captured],
    what: &str,
    extra: &[&str],
) -> (f32, f32) {
    let mut worst = [0f32; 2];
    for (i, compile) in [compile_record as Compile, compile_naga]
        .into_iter()
        .enumerate()
    {
        let lang = ["MSL", "WGSL"][i];
        let (failures, w) = replay_with(
            gpu,
            launches,
            &format!("{what} {lang} {extra:?}"),
            extra,
            compile,
        );
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        worst[i] = w;
    }
    (worst[0], worst[1])
}

/// The launches of `coop_matmul_twins_fill_whole_tiles` on `gpu`: a
/// 130×160 Q4_0 product over 70 tokens with the fused RMSNorm on f32 and
/// f16 inputs, and a plain one adding into Y.
fn full_tile_launches(gpu: &q4gpu::Gpu) -> Vec<q4gpu::gpu::Captured> {
    use q4gpu::gpu::prefill::{chunk_words, MatmulBinding, MatmulKernels};
    use q4gpu::gpu::{capture, GpuMatrix, MatvecInput};
    let mut rng = Rng(0xC0_0B);
    let (rows, cols, n) = (130usize, 160usize, 70usize);
    let ty = GgmlType::Q4_0;
    let wq = quant::quantize(ty, &rng.vec(rows * cols)).expect("quantize");
    let m = GpuMatrix::upload(gpu, "w", ty, rows, cols, &wq).expect("upload");
    let xb = gpu_buffer(gpu, &rng.vec((n + 2) * cols));
    let yb = gpu_buffer(gpu, &rng.vec((n + 2) * rows));
    let gb = gpu_buffer(gpu, &rng.vec(cols));
    let cb = gpu_buffer(gpu, &chunk_words(0, &vec![0u32; n]));
    let norm = MatvecInput::RmsNorm {
        gain: &gb,
        eps: 1e-5,
    };
    let mut launches = Vec::new();
    for (half, input) in [(false, norm), (true, norm), (false, MatvecInput::Plain)] {
        let k = MatmulKernels::new(gpu).with_half_inputs(half);
        let b = MatmulBinding {
            x: &xb,
            x_stride: cols as u32,
            y: &yb,
            y_stride: rows as u32,
            y_offset: 0,
            chunk: &cb,
            max_tokens: (n + 2) as u32,
            input,
            accumulate: matches!(input, MatvecInput::Plain),
        };
        let op = k.bind(gpu, &m, b).expect("bind");
        let (_, got) = capture(|| {
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            op.encode_into(&mut enc, n as u32);
        });
        launches.extend(got);
    }
    launches
}

/// One chunk of prefill attention for `coop_attention_twin_matches_f32`:
/// (query heads, KV heads, head size), the chunk's start and length, and
/// whether the scores jump (no RoPE, every q and k near one vector u, and
/// the cached keys at positions 64..70 near 3u: their tile's max exceeds
/// the first tile's by about 16, past RESCALE_AT, so the accumulated output
/// must be rescaled).
struct AttnCase {
    heads: (u32, u32, u32),
    start: u32,
    n: u32,
    jump: bool,
}

impl AttnCase {
    fn new(heads: (u32, u32, u32), start: u32, n: u32, jump: bool) -> AttnCase {
        AttnCase {
            heads,
            start,
            n,
            jump,
        }
    }
}

/// The captured launches (RoPE/KV write, then attention_tiled) of `c`, on
/// fresh random inputs; the output and the cache past the chunk are NaN.
fn attention_launches(gpu: &q4gpu::Gpu, rng: &mut Rng, c: &AttnCase) -> Vec<q4gpu::gpu::Captured> {
    use q4gpu::gpu::prefill::{attention_prefill, chunk_words, AttnBuffers};
    use q4gpu::gpu::shader::AttnParams;
    let (nh, nkv, hd) = c.heads;
    let (kv_dim, qd, max_ctx) = (nkv * hd, nh * hd, 160u32);
    let row = (qd + 2 * kv_dim) as usize;
    let u: Vec<f32> = (0..hd)
        .map(|d| if d % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    let near = |rng: &mut Rng, k: f32, i: usize| {
        if c.jump {
            k * u[i % hd as usize] + 0.3 * rng.f()
        } else {
            rng.f()
        }
    };
    let mut qkv = vec![0f32; c.n as usize * row];
    for (i, v) in qkv.iter_mut().enumerate() {
        *v = near(rng, 1.0, i % row);
    }
    // Two layers' caches, layer 1 used; positions past the chunk poisoned.
    let layer = (max_ctx * kv_dim) as usize;
    let mut kc = vec![f32::NAN; 2 * layer];
    let mut vc = vec![f32::NAN; 2 * layer];
    for pos in 0..(c.start + c.n) as usize {
        for i in 0..kv_dim as usize {
            let k = if (64..70).contains(&pos) { 3.0 } else { 1.0 };
            kc[layer + pos * kv_dim as usize + i] = near(rng, k, i);
            vc[layer + pos * kv_dim as usize + i] = rng.f();
        }
    }
    let rope: Vec<f32> = (0..hd / 2)
        .map(|i| {
            if c.jump {
                0.0
            } else {
                10000f32.powf(-2.0 * i as f32 / hd as f32)
            }
        })
        .collect();
    let params = AttnParams {
        n_heads: nh,
        n_kv_heads: nkv,
        head_dim: hd,
        kv_dim,
        layer_offset: layer as u32,
        max_ctx,
        rope_neox: 0,
        scale: 1.0 / (hd as f32).sqrt(),
        qk_norm: 0,
        eps: 1e-6,
        pad0: 0,
        pad1: 0,
    };
    let chunk = gpu_buffer(gpu, &chunk_words(c.start, &vec![0; c.n as usize]));
    let qkv = gpu_buffer(gpu, &qkv);
    let (kcache, vcache) = (gpu_buffer(gpu, &kc), gpu_buffer(gpu, &vc));
    let out = gpu_buffer(gpu, &vec![f32::NAN; (c.n as usize + 1) * qd as usize]);
    let rope = gpu_buffer(gpu, &rope);
    let bias = gpu_buffer(gpu, &vec![0f32; row + 2 * hd as usize]);
    let bufs = AttnBuffers {
        chunk: &chunk,
        qkv: &qkv,
        kcache: &kcache,
        vcache: &vcache,
        out: &out,
        rope: &rope,
        bias: &bias,
    };
    let (rope_kv, attend) = attention_prefill(gpu, &params, &bufs, c.n).expect("attention");
    let (_, got) = q4gpu::gpu::capture(|| {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        rope_kv.encode_into(&mut enc, c.n);
        attend.encode_into(&mut enc, c.n);
    });
    got
}

/// The test GPU with prefill attention tiled for any number of heads.
fn tiled_attention_gpu() -> q4gpu::Gpu {
    let mut opts = common::device_options();
    opts.tuning = Some(q4gpu::gpu::Tuning {
        attention_tiled_min_heads: 0,
        ..Default::default()
    });
    q4gpu::Gpu::new(&opts).expect("gpu")
}

/// The launches of `c` ([`attention_launches`]), which must include an
/// attention_tiled variant named `variant` (or `variant.…`), replayed as
/// MSL twins against the WGSL on the test GPU; returns them and the case's
/// label.
fn replayed_tiled(
    gpu: &q4gpu::Gpu,
    rng: &mut Rng,
    c: &AttnCase,
    variant: &str,
) -> (Vec<q4gpu::gpu::Captured>, String) {
    let launches = attention_launches(gpu, rng, c);
    let what = format!("heads {:?} start {} n {}", c.heads, c.start, c.n);
    assert!(
        launches.iter().any(|l| l.kernel.name.starts_with(variant)),
        "{what}: no {variant} launch"
    );
    let failures = replay(gpu, &launches, &what);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    (launches, what)
}

/// attention_tiled's COOP twin (simdgroup matrices, 64 keys a step, the
/// output rescaled only when a query's max rises past RESCALE_AT) against
/// the f32 WGSL variant on the test GPU: grouped KV heads, full and partial
/// 32-query tiles, several 64-key steps after a prefilled start, a head
/// size below 64, and scores that jump in a later tile (the rescale path).
#[test]
fn coop_attention_twin_matches_f32() {
    if !available() {
        return;
    }
    let gpu = tiled_attention_gpu();
    let mut rng = Rng(0xA7_C0);
    let cases = [
        AttnCase::new((4, 2, 64), 70, 70, false),
        AttnCase::new((3, 1, 32), 0, 45, false),
        AttnCase::new((2, 1, 64), 70, 40, true),
    ];
    for c in &cases {
        let (launches, what) = replayed_tiled(&gpu, &mut rng, c, "attention_tiled");
        let (worst, naga) = coop_replays(&gpu, &launches, &what, &[COOP]);
        eprintln!("{what}: COOP attention agrees with f32 within {worst:.2e} (MSL twin), {naga:.2e} (WGSL)");
    }
}

/// attention_tiled's HD128 variant (head sizes 68..128: 16-key tiles, S
/// through workgroup memory, the output split over a query's lanes), MSL
/// twin against WGSL on the test GPU: grouped KV heads, several 32-query
/// and 16-key tiles after a prefilled start, a head size that leaves lanes
/// idle, and scores that jump in a later tile.
#[test]
fn tiled_attention_hd128_twin_matches_wgsl() {
    if !available() {
        return;
    }
    let gpu = tiled_attention_gpu();
    let mut rng = Rng(0xA7_128);
    for c in [
        AttnCase::new((4, 2, 128), 70, 70, false),
        AttnCase::new((3, 1, 96), 0, 45, false),
        AttnCase::new((2, 1, 128), 70, 40, true),
    ] {
        replayed_tiled(&gpu, &mut rng, &c, "attention_tiled.hd128");
    }
}

/// At run time a kernel whose MSL fails to build runs its WGSL twin: with
/// the MSL path taken off Metal (where no MSL pipeline can build), a small
/// model still decodes the tokens of the plain WGSL path, and
/// `Gpu::msl_fallbacks` names every variant that fell back.
#[test]
fn kernels_whose_msl_fails_to_build_fall_back_to_wgsl() {
    use q4gpu::model::GpuModel;
    let model = small_model(
        "msl-check",
        synth::Arch::Smollm2_135m,
        GgmlType::Q4_0,
        None,
        3,
    );
    let w = model.weights().expect("weights");
    let decode = |gpu: &q4gpu::Gpu| {
        let mut m = GpuModel::new(gpu, &model.config, &w, 64).expect("model");
        m.prefill(0, &[5, 17, 42]).expect("prefill");
        let mut ids = Vec::new();
        m.generate_greedy(0, 3, 6, |id| {
            ids.push(id);
            true
        })
        .expect("decode");
        ids
    };
    let want = decode(&common::gpu());
    let mut opts = common::device_options();
    opts.msl_off_metal = true;
    let gpu = q4gpu::Gpu::new(&opts).expect("gpu");
    assert_eq!(gpu.path, q4gpu::gpu::KernelPath::Msl);
    assert_eq!(decode(&gpu), want);
    let (built, fell_back) = gpu.msl_fallbacks();
    assert_eq!(built, 0, "MSL pipelines built off Metal");
    assert!(
        fell_back.iter().any(|f| f.starts_with("argmax")) && fell_back.len() >= 8,
        "fallbacks: {fell_back:#?}"
    );
}
