//! The hand-written MSL twins (`shaders/*.metal`) checked against their WGSL
//! kernels on a machine without Metal (Linux CI):
//!
//! * interface: every WGSL kernel has an MSL twin; for every variant (flag
//!   set), the assembled MSL declares `kernel void compute_main` with the same
//!   buffer slots as the WGSL bindings (wgpu gives Metal buffer slots in
//!   (group, binding) order), the same names, kinds (`constant T&` for
//!   uniforms, `device const T*` for read-only storage, `device T*` for
//!   read_write) and element types, the same builtins, the WGSL workgroup
//!   size as `[[max_total_threads_per_threadgroup(N)]]`, the WGSL workgroup
//!   arrays as kernel-local `threadgroup T name[N]` (passthrough pipelines get
//!   no dynamic threadgroup memory), and no redeclared shared struct;
//! * syntax and types: every assembled variant compiles as C++17 with g++
//!   against `tests/msl_shim/metal_shim.h`; a broken kernel must be rejected;
//! * address spaces: every variant also compiles with clang as C++ for
//!   OpenCL 2021 against the same shim in its `Q4GPU_SHIM_ADDRESS_SPACES`
//!   mode, where Metal's device, constant, threadgroup and thread are
//!   OpenCL's four distinct named spaces: a threadgroup pointer where a
//!   device one is declared, a write to constant memory or a thread pointer
//!   to device memory is an error, as under Apple's compiler (tested);
//! * the shim itself: naga's own MSL translation of every WGSL kernel
//!   compiles against the same shim, so the shim is no more lenient about
//!   ordinary MSL than it has to be to accept real generated code.
//!
//! Needs `g++` and clang 16 or newer on Linux (the tests fail without them;
//! `.ci/run` installs `g++ clang-19`). Elsewhere a missing compiler skips its
//! checks with a message.
//! What this cannot check without a Mac: that Metal's compiler accepts the
//! kernels (attributes, address spaces) and that they compute the right
//! numbers — run `cargo test --test gpu_matvec` on a Mac with the MSL path.

mod common;
#[path = "common/naga_msl.rs"]
mod naga_msl;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{parallel, parenthesized, split_top};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use q4gpu::gpu::matvec::MatvecVariant;
use q4gpu::gpu::prefill::COOP;
use q4gpu::gpu::shader::{
    assemble_with, has_source, Lang, ENTRY_POINT, MSL_SOURCES, SHARED_STRUCT_FIELDS, WGSL_SOURCES,
};

/// Sources that are only `//#include`d, never compiled on their own.
const INCLUDE_ONLY: &[&str] = &[
    "reduce",
    "words",
    "matvec_common",
    "matvec_stage",
    "block_q4_0",
    "block_q4_1",
    "block_q8_0",
    "block_f16",
    "block_q5_0",
    "block_q5_1",
    "block_q4_k",
    "block_q5_k",
    "block_q6_k",
    "block_codes",
    "embed_value",
    "block_f32",
];

/// How a kernel sees one buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Uniform,
    ReadOnly,
    ReadWrite,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Buffer {
    slot: u32,
    kind: Kind,
    /// MSL name of the element type (struct name for uniforms).
    ty: String,
    name: String,
}

/// What the host and the pipeline rely on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Interface {
    buffers: Vec<Buffer>,
    /// (MSL attribute, MSL type) of every builtin argument.
    builtins: BTreeSet<(String, String)>,
    /// Threads per workgroup.
    threads: u32,
    /// (element type, name, length) of every workgroup array.
    shared: BTreeSet<(String, String, u32)>,
}

// ---------------------------------------------------------------------------
// Kernels and variants.

fn source(table: &[(&'static str, &'static str)], name: &str) -> &'static str {
    table
        .iter()
        .find(|s| s.0 == name)
        .unwrap_or_else(|| panic!("no source '{name}'"))
        .1
}

/// Every kernel: WGSL sources other than the include-only pieces.
fn kernels() -> Vec<&'static str> {
    WGSL_SOURCES
        .iter()
        .map(|s| s.0)
        .filter(|n| !INCLUDE_ONLY.contains(n))
        .collect()
}

/// Flags tested by `//#if` in `name` and everything it includes.
fn flags_in(table: &[(&'static str, &'static str)], name: &str, out: &mut BTreeSet<String>) {
    for line in source(table, name).lines() {
        let t = line.trim();
        if let Some(f) = t.strip_prefix("//#if ") {
            out.insert(f.trim().trim_start_matches('!').trim().to_string());
        } else if let Some(inc) = t.strip_prefix("//#include ") {
            flags_in(table, inc.trim(), out);
        }
    }
}

/// The variants of a kernel file, each as flags (valued constants spelled
/// `NAME=value`, see [`asm`]), with and without SUBGROUPS. Matvec families:
/// every variant of the library's table ([`MatvecVariant::all`]). Other
/// kernels: no flag, then each of the kernel's flags alone.
fn variants(name: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for sg in [false, true] {
        let base: Vec<String> = if sg { vec!["SUBGROUPS".into()] } else { vec![] };
        if name.starts_with("matvec_") && name != "matvec_q4_0_naive" {
            for v in MatvecVariant::all().iter().filter(|v| v.file() == name) {
                let mut f = base.clone();
                f.extend(v.flags().iter().map(|s| s.to_string()));
                f.extend(v.consts().iter().map(|(k, n)| format!("{k}={n}")));
                out.push(f);
            }
            continue;
        }
        let mut flags = BTreeSet::new();
        flags_in(WGSL_SOURCES, name, &mut flags);
        flags.remove("SUBGROUPS");
        // Flags a source sets itself (a block format's RAW, BLOCK_VEC4) come
        // with the format flag that includes it, never alone.
        for (_, text) in WGSL_SOURCES {
            for line in text.lines() {
                if let Some(d) = line.trim().strip_prefix("//#define ") {
                    flags.remove(d.split_whitespace().next().unwrap_or(""));
                }
            }
        }
        out.push(base.clone());
        for f in &flags {
            let mut v = base.clone();
            v.push(f.clone());
            out.push(v);
        }
    }
    out
}

/// Assembles `name` with `flags`, where `NAME=value` entries are valued
/// constants.
fn asm(lang: Lang, name: &str, flags: &[&str]) -> Result<String, String> {
    let mut plain = Vec::new();
    let mut consts = Vec::new();
    for f in flags {
        match f.split_once('=') {
            Some((k, v)) => consts.push((k, v.parse::<u32>().map_err(|e| e.to_string())?)),
            None => plain.push(*f),
        }
    }
    assemble_with(lang, name, &plain, &consts)
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(|s| s.as_str()).collect()
}

// ---------------------------------------------------------------------------
// WGSL side: naga reflection.

fn validate_wgsl(name: &str, flags: &[&str]) -> (naga::Module, naga::valid::ModuleInfo) {
    let src = asm(Lang::Wgsl, name, flags).unwrap();
    let module = naga::front::wgsl::parse_str(&src)
        .unwrap_or_else(|e| panic!("{name}{flags:?}: WGSL parse: {}", e.emit_to_string(&src)));
    let info = Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&module)
        .unwrap_or_else(|e| {
            panic!(
                "{name}{flags:?}: WGSL validation: {}",
                e.emit_to_string(&src)
            )
        });
    (module, info)
}

fn msl_scalar(s: naga::Scalar) -> String {
    match (s.kind, s.width) {
        (naga::ScalarKind::Float, 4) => "float",
        (naga::ScalarKind::Float, 2) => "half",
        (naga::ScalarKind::Uint, 4) => "uint",
        (naga::ScalarKind::Sint, 4) => "int",
        (naga::ScalarKind::Uint, 2) => "ushort",
        (naga::ScalarKind::Sint, 2) => "short",
        (naga::ScalarKind::Bool, _) => "bool",
        other => panic!("no MSL name for scalar {other:?}"),
    }
    .to_string()
}

/// MSL spelling of a WGSL type (arrays: their element type).
fn msl_type(module: &naga::Module, ty: naga::Handle<naga::Type>) -> String {
    let t = &module.types[ty];
    match &t.inner {
        naga::TypeInner::Scalar(s) => msl_scalar(*s),
        naga::TypeInner::Vector { size, scalar } => {
            format!("{}{}", msl_scalar(*scalar), *size as u8)
        }
        naga::TypeInner::Array { base, .. } => msl_type(module, *base),
        naga::TypeInner::Struct { .. } => t.name.clone().expect("named struct"),
        naga::TypeInner::Atomic(s) => format!("atomic_{}", msl_scalar(*s)),
        other => panic!("no MSL name for type {other:?}"),
    }
}

fn msl_builtin(b: naga::BuiltIn) -> &'static str {
    match b {
        naga::BuiltIn::GlobalInvocationId => "thread_position_in_grid",
        naga::BuiltIn::LocalInvocationId => "thread_position_in_threadgroup",
        naga::BuiltIn::LocalInvocationIndex => "thread_index_in_threadgroup",
        naga::BuiltIn::WorkGroupId => "threadgroup_position_in_grid",
        naga::BuiltIn::NumWorkGroups => "threadgroups_per_grid",
        naga::BuiltIn::SubgroupSize => "threads_per_simdgroup",
        naga::BuiltIn::SubgroupInvocationId => "thread_index_in_simdgroup",
        naga::BuiltIn::SubgroupId => "simdgroup_index_in_threadgroup",
        naga::BuiltIn::NumSubgroups => "simdgroups_per_threadgroup",
        other => panic!("no MSL attribute for builtin {other:?}"),
    }
}

/// The interface of the WGSL kernel `name` with `flags`.
fn wgsl_interface(name: &str, flags: &[&str]) -> Interface {
    let (module, _) = validate_wgsl(name, flags);
    wgsl_module_interface(&module, &format!("{name}{flags:?}"))
}

fn wgsl_module_interface(module: &naga::Module, what: &str) -> Interface {
    let ep = module
        .entry_points
        .iter()
        .find(|e| e.name == ENTRY_POINT)
        .unwrap_or_else(|| panic!("{what}: no entry point {ENTRY_POINT}"));
    assert_eq!(
        ep.stage,
        naga::ShaderStage::Compute,
        "{what}: not a compute entry point"
    );

    let mut bound: Vec<(u32, u32, Buffer)> = Vec::new();
    let mut shared = BTreeSet::new();
    for (_, g) in module.global_variables.iter() {
        let name = g.name.clone().unwrap_or_default();
        match g.space {
            naga::AddressSpace::WorkGroup => {
                let len = match module.types[g.ty].inner {
                    naga::TypeInner::Array {
                        size: naga::ArraySize::Constant(n),
                        ..
                    } => n.get(),
                    _ => 1,
                };
                shared.insert((msl_type(module, g.ty), name, len));
            }
            naga::AddressSpace::Uniform | naga::AddressSpace::Storage { .. } => {
                let rb = g
                    .binding
                    .unwrap_or_else(|| panic!("{what}: {name} has no binding"));
                let kind = match g.space {
                    naga::AddressSpace::Uniform => Kind::Uniform,
                    naga::AddressSpace::Storage { access }
                        if access.contains(naga::StorageAccess::STORE) =>
                    {
                        Kind::ReadWrite
                    }
                    _ => Kind::ReadOnly,
                };
                let ty = msl_type(module, g.ty);
                bound.push((
                    rb.group,
                    rb.binding,
                    Buffer {
                        slot: 0,
                        kind,
                        ty,
                        name,
                    },
                ));
            }
            _ => {}
        }
    }
    bound.sort_by_key(|b| (b.0, b.1));
    let buffers = bound
        .into_iter()
        .enumerate()
        .map(|(i, (_, _, b))| Buffer {
            slot: i as u32,
            ..b
        })
        .collect();

    let mut builtins = BTreeSet::new();
    for arg in &ep.function.arguments {
        let mut add = |binding: &Option<naga::Binding>, ty: naga::Handle<naga::Type>| {
            if let Some(naga::Binding::BuiltIn(b)) = binding {
                builtins.insert((msl_builtin(*b).to_string(), msl_type(module, ty)));
            }
        };
        match (&arg.binding, &module.types[arg.ty].inner) {
            (None, naga::TypeInner::Struct { members, .. }) => {
                for m in members {
                    add(&m.binding, m.ty);
                }
            }
            _ => add(&arg.binding, arg.ty),
        }
    }
    Interface {
        buffers,
        builtins,
        threads: ep.workgroup_size.iter().product(),
        shared,
    }
}

// ---------------------------------------------------------------------------
// MSL side: a small parser of the kernel signature.

/// `src` without comments, whitespace runs collapsed to one space.
fn normalize(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i].is_ascii_whitespace() {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if !out.is_empty() {
                out.push(' ');
            }
        } else {
            // Copy one UTF-8 character.
            let ch = src[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Byte offsets of `word` as a whole identifier in `s`.
fn find_word(s: &str, word: &str) -> Vec<usize> {
    let b = s.as_bytes();
    s.match_indices(word)
        .map(|(i, _)| i)
        .filter(|&i| {
            (i == 0 || !is_ident(b[i - 1])) && b.get(i + word.len()).is_none_or(|&c| !is_ident(c))
        })
        .collect()
}

/// Tokens of a declaration, `&` and `*` as tokens of their own.
fn tokens(decl: &str) -> Vec<String> {
    decl.replace('&', " & ")
        .replace('*', " * ")
        .split_whitespace()
        .map(|s| s.to_string())
        .collect()
}

/// The interface the assembled MSL `src` declares. Errors say what is wrong.
fn msl_interface(src: &str) -> Result<Interface, String> {
    let s = normalize(src);
    let kernels = find_word(&s, "kernel");
    if kernels.len() != 1 {
        return Err(format!(
            "expected exactly one `kernel` function, found {}",
            kernels.len()
        ));
    }
    let k = kernels[0];
    let head = "kernel void compute_main(";
    if !s[k..].starts_with(head) {
        let end = (k + 60).min(s.len());
        return Err(format!("expected `{head}`, found `{}`", &s[k..end]));
    }

    // [[max_total_threads_per_threadgroup(N)]] right before `kernel`.
    let before = s[..k].trim_end();
    let attr = "[[max_total_threads_per_threadgroup(";
    let threads = before
        .strip_suffix(")]]")
        .and_then(|b| b.rfind(attr).map(|i| &b[i + attr.len()..]))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .ok_or("expected `[[max_total_threads_per_threadgroup(N)]]` right before `kernel void compute_main`")?;

    // Parameter list up to the matching parenthesis.
    let open = k + head.len();
    let params = parenthesized(&s, open - 1).ok_or("unterminated parameter list")?;
    let close = open + params.len();

    let mut buffers = Vec::new();
    let mut builtins = BTreeSet::new();
    for param in split_top(params) {
        let a = param
            .find("[[")
            .ok_or_else(|| format!("parameter `{param}` has no [[attribute]]"))?;
        let b = param[a..]
            .find("]]")
            .ok_or_else(|| format!("parameter `{param}`: unterminated attribute"))?;
        let attr = param[a + 2..a + b].trim().replace(' ', "");
        if !param[a + b + 2..].trim().is_empty() {
            return Err(format!("parameter `{param}`: text after the attribute"));
        }
        let t = tokens(&param[..a]);
        let t: Vec<&str> = t.iter().map(|s| s.as_str()).collect();
        if let Some(n) = attr
            .strip_prefix("buffer(")
            .and_then(|r| r.strip_suffix(')'))
        {
            let slot: u32 = n.parse().map_err(|_| format!("bad slot in `{param}`"))?;
            let (kind, ty, name) = match t.as_slice() {
                ["constant", ty, "&", name] => (Kind::Uniform, ty, name),
                ["device", "const", ty, "*", name] => (Kind::ReadOnly, ty, name),
                ["device", ty, "*", name] if *ty != "const" => (Kind::ReadWrite, ty, name),
                _ => {
                    return Err(format!(
                        "buffer parameter `{param}` is none of `constant T& name`, \
                         `device const T* name`, `device T* name`"
                    ))
                }
            };
            buffers.push(Buffer {
                slot,
                kind,
                ty: ty.to_string(),
                name: name.to_string(),
            });
        } else if attr.contains('(') {
            return Err(format!(
                "parameter `{param}`: only [[buffer(n)]] and builtins are possible \
                 (passthrough pipelines have no threadgroup-memory or other bindings)"
            ));
        } else {
            match t.as_slice() {
                [ty, _name] => {
                    builtins.insert((attr, ty.to_string()));
                }
                _ => {
                    return Err(format!(
                        "builtin parameter `{param}` is not `T name [[attr]]`"
                    ))
                }
            }
        }
    }

    // Kernel-local threadgroup arrays: `threadgroup T name[N];`.
    let mut shared = BTreeSet::new();
    for i in find_word(&s, "threadgroup") {
        let rest = &s[i + "threadgroup".len()..];
        let Some(semi) = rest.find(';') else { continue };
        let t = tokens(&rest[..semi].replace('[', " [ ").replace(']', " ] "));
        let t: Vec<&str> = t.iter().map(|s| s.as_str()).collect();
        if let [ty, name, "[", n, "]"] = t.as_slice() {
            // A literal, or a `constant uint N = <literal>;` (the prelude's
            // shared constants).
            let lit = |v: &str| v.trim_end_matches('u').parse::<u32>().ok();
            let n = lit(n)
                .or_else(|| {
                    let decl = format!("constant uint {n} = ");
                    let at = s.find(&decl)? + decl.len();
                    lit(s[at..].split(';').next()?.trim())
                })
                .ok_or_else(|| format!("array length of {name}"))?;
            if i < close {
                return Err(format!(
                    "threadgroup array {name} must be declared inside the kernel"
                ));
            }
            shared.insert((ty.to_string(), name.to_string(), n));
        }
    }

    Ok(Interface {
        buffers,
        builtins,
        threads,
        shared,
    })
}

/// Checks the MSL text `msl` against the WGSL interface `want`.
fn check_msl(msl: &str, want: &Interface) -> Result<(), String> {
    let got = msl_interface(msl)?;
    for (i, b) in got.buffers.iter().enumerate() {
        if b.slot != i as u32 {
            return Err(format!(
                "buffer `{}` has slot {}, but is parameter {i}: slots go 0, 1, 2, ... in order",
                b.name, b.slot
            ));
        }
    }
    if got.buffers != want.buffers {
        return Err(format!(
            "buffers differ:\n  WGSL: {:?}\n  MSL:  {:?}",
            want.buffers, got.buffers
        ));
    }
    if got.builtins != want.builtins {
        return Err(format!(
            "builtins differ:\n  WGSL: {:?}\n  MSL:  {:?}",
            want.builtins, got.builtins
        ));
    }
    if got.threads != want.threads {
        return Err(format!(
            "threadgroup size: WGSL @workgroup_size has {} threads, MSL declares {}",
            want.threads, got.threads
        ));
    }
    if got.shared != want.shared {
        return Err(format!(
            "threadgroup arrays differ:\n  WGSL: {:?}\n  MSL:  {:?}",
            want.shared, got.shared
        ));
    }
    let s = normalize(msl);
    for (name, _) in SHARED_STRUCT_FIELDS {
        let n = find_word(&s, name)
            .into_iter()
            .filter(|&i| s[..i].ends_with("struct "))
            .count();
        if n != 1 {
            return Err(format!(
                "struct {name} declared {n} times (the prelude declares it; kernels must not)"
            ));
        }
    }
    Ok(())
}

#[test]
fn include_only_pieces_are_included() {
    for piece in INCLUDE_ONLY {
        for (table, lang) in [(WGSL_SOURCES, "WGSL"), (MSL_SOURCES, "MSL")] {
            let directive = format!("//#include {piece}");
            assert!(
                table
                    .iter()
                    .any(|(_, text)| text.lines().any(|l| l.trim() == directive)),
                "{lang} piece {piece} is listed as include-only but nothing includes it"
            );
        }
    }
}

/// Every variant the library can build parses and validates as WGSL, and
/// the matvec families cover the whole variant table.
#[test]
fn every_wgsl_variant_validates() {
    let mut n = 0;
    for name in kernels() {
        for flags in variants(name) {
            validate_wgsl(name, &refs(&flags));
            n += 1;
        }
    }
    let table = MatvecVariant::all();
    assert!(
        n >= 2 * table.len(),
        "{n} variants checked, table has {}",
        table.len()
    );
    let names: BTreeSet<String> = table.iter().map(|v| v.name()).collect();
    assert_eq!(names.len(), table.len(), "two variants share a name");
}

/// The COOP variants (matmul's, attention_tiled's) run only where wgpu
/// compiles them to SPIR-V (Vulkan with cooperative matrices), which CI's
/// lavapipe lacks: every format and input (fused or f16) must at least
/// translate, under the bounds-check policies q4gpu builds with (none:
/// `create_shader_module_trusted`) and wgpu's default (checked shaders). A
/// naga writer panic here would be one in the library there.
#[test]
fn coop_variants_translate_to_spirv() {
    use naga::back::spv;
    use naga::proc::{BoundsCheckPolicies, BoundsCheckPolicy};
    let mut n = 0;
    let formats = [
        "", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K", "F16",
    ];
    let matmuls = formats.iter().flat_map(|f| {
        ["", "NORM", "SWIGLU", "HALF_X"]
            .into_iter()
            .map(move |u| ("matmul", *f, u))
    });
    for (file, fmt, fused) in matmuls.chain([("attention_tiled", "", "")]) {
        let flags: Vec<&str> = [COOP, "SUBGROUPS", fmt, fused]
            .into_iter()
            .filter(|f| !f.is_empty())
            .collect();
        let (module, info) = validate_wgsl(file, &flags);
        // The workgroup memory the host checks the device for is what the
        // variant declares.
        let bytes: u32 = module
            .global_variables
            .iter()
            .filter(|(_, g)| g.space == naga::AddressSpace::WorkGroup)
            .map(|(_, g)| module.types[g.ty].inner.size(module.to_ctx()))
            .sum();
        let want = match file {
            "attention_tiled" => q4gpu::gpu::prefill::ATTENTION_COOP_WORKGROUP_BYTES,
            _ => q4gpu::gpu::COOP_WORKGROUP_BYTES,
        };
        assert_eq!(bytes, want, "{file}{flags:?}: workgroup bytes");
        for policy in [BoundsCheckPolicy::Unchecked, BoundsCheckPolicy::Restrict] {
            let options = spv::Options {
                lang_version: (1, 3),
                bounds_check_policies: BoundsCheckPolicies {
                    index: policy,
                    buffer: policy,
                    image_load: policy,
                    binding_array: policy,
                },
                ..Default::default()
            };
            let pipeline = spv::PipelineOptions {
                shader_stage: naga::ShaderStage::Compute,
                entry_point: ENTRY_POINT.to_string(),
            };
            let words = std::panic::catch_unwind(|| {
                spv::write_vec(&module, &info, &options, Some(&pipeline))
            })
            .unwrap_or_else(|_| panic!("{file}{flags:?} {policy:?}: naga's SPIR-V writer panicked"))
            .unwrap_or_else(|e| panic!("{file}{flags:?} {policy:?}: SPIR-V: {e}"));
            assert!(words.len() > 100);
            n += 1;
        }
    }
    assert_eq!(n, 82, "translations");
}

#[test]
fn every_wgsl_kernel_has_an_msl_twin_with_the_same_interface() {
    let wgsl: BTreeSet<&str> = WGSL_SOURCES.iter().map(|s| s.0).collect();
    let msl: BTreeSet<&str> = MSL_SOURCES.iter().map(|s| s.0).collect();
    assert_eq!(
        wgsl, msl,
        "WGSL_SOURCES and MSL_SOURCES must name the same sources"
    );

    let mut failures = Vec::new();
    let mut checked = 0;
    for name in kernels() {
        assert!(
            has_source(Lang::Msl, name),
            "kernel {name} has no MSL twin shaders/{name}.metal"
        );
        let mut wf = BTreeSet::new();
        let mut mf = BTreeSet::new();
        flags_in(WGSL_SOURCES, name, &mut wf);
        flags_in(MSL_SOURCES, name, &mut mf);
        assert_eq!(
            wf, mf,
            "{name}: the WGSL and MSL sources test different flags"
        );
        for flags in variants(name) {
            let flags = refs(&flags);
            let want = wgsl_interface(name, &flags);
            // Workgroup memory: `dense` matvecs within what the host checks
            // the device for, every other kernel within WebGPU's default.
            let bytes: u32 = want
                .shared
                .iter()
                .map(|(ty, _, n)| {
                    n * match (ty.as_str(), ty.chars().last()) {
                        ("f16" | "half", _) => 2,
                        (_, Some('4' | '3')) => 16,
                        (_, Some('2')) => 8,
                        _ => 4,
                    }
                })
                .sum();
            let cap = if name == "matvec_dense" {
                q4gpu::gpu::matvec::DENSE_WORKGROUP_BYTES
            } else if flags.contains(&COOP) && name == "attention_tiled" {
                // Native only, where the host checks the device for it.
                q4gpu::gpu::prefill::ATTENTION_COOP_WORKGROUP_BYTES
            } else if flags.contains(&COOP) {
                q4gpu::gpu::COOP_WORKGROUP_BYTES
            } else {
                16384
            };
            if bytes > cap {
                failures.push(format!(
                    "{name}{flags:?}: {bytes} bytes of workgroup memory, more than {cap}"
                ));
            }
            let msl = asm(Lang::Msl, name, &flags).unwrap();
            if let Err(e) = check_msl(&msl, &want) {
                failures.push(format!("{name}{flags:?}: {e}"));
            }
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "MSL interface mismatches:\n{}",
        failures.join("\n")
    );
    assert!(checked >= 2 * kernels().len());
}

/// The checker itself: mismatches a twin could have are caught.
#[test]
fn interface_checker_rejects_mismatches() {
    let flags = ["SUBGROUPS", "Q4_0", "NORM", "EARLY", "RPT=1"];
    let want = wgsl_interface("matvec_staged", &flags);
    let good = asm(Lang::Msl, "matvec_staged", &flags).unwrap();
    check_msl(&good, &want).unwrap();
    let bad = [
        // Read-only storage declared writable.
        ("device const uint4* w [[buffer(1)]]", "device uint4* w [[buffer(1)]]"),
        // Two read-only float4 buffers swapped.
        ("device const float4* x [[buffer(2)]]", "device const float4* gain [[buffer(2)]]"),
        // Slot out of order.
        ("device float* y [[buffer(3)]]", "device float* y [[buffer(5)]]"),
        // Uniform as a device pointer.
        ("constant MatvecParams& p", "device const MatvecParams* p"),
        // Wrong element type.
        ("device float* y [[buffer(3)]]", "device half* y [[buffer(3)]]"),
        // Missing builtin.
        ("    , uint sg_size [[threads_per_simdgroup]]\n", ""),
        // Wrong threadgroup size.
        ("max_total_threads_per_threadgroup(256)", "max_total_threads_per_threadgroup(128)"),
        // Wrong threadgroup array.
        ("threadgroup float4 red4[256];", "threadgroup float4 red4[128];"),
        // Dynamic threadgroup memory (unsupported by passthrough).
        (
            "uint tid [[thread_index_in_threadgroup]],",
            "uint tid [[thread_index_in_threadgroup]], threadgroup float* scratch [[threadgroup(0)]],",
        ),
        // Wrong entry point name.
        ("kernel void compute_main(", "kernel void main0("),
    ];
    for (from, to) in bad {
        assert!(good.contains(from), "test input lacks `{from}`");
        let broken = good.replacen(from, to, 1);
        assert!(
            check_msl(&broken, &want).is_err(),
            "checker accepted `{from}` -> `{to}`"
        );
    }
    // A redeclared shared struct.
    let dup = good.replacen(
        "struct MatvecParams {",
        "struct MatvecParams { uint rows; };\nstruct MatvecParams {",
        1,
    );
    assert!(check_msl(&dup, &want).is_err());
}

// ---------------------------------------------------------------------------
// g++ against the shim.

fn shim_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/msl_shim/metal_shim.h")
}

/// A C++ compiler checking MSL against the shim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cxx {
    /// g++ as C++17: syntax and types, address spaces erased.
    Gxx,
    /// clang as C++ for OpenCL 2021 (`-x clcpp`), the shim's
    /// `Q4GPU_SHIM_ADDRESS_SPACES` mode: Metal's device, constant,
    /// threadgroup and thread become distinct address spaces, as Apple's
    /// compiler keeps them.
    ClangAddressSpaces,
}

fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Cxx {
    /// The program that runs: g++, or the newest clang++ (Debian names them
    /// `clang++-N`; 16 is the oldest tried).
    fn program(self) -> Option<&'static str> {
        match self {
            Cxx::Gxx => Some("g++").filter(|p| runs(p)),
            Cxx::ClangAddressSpaces => [
                "clang++-19",
                "clang++-18",
                "clang++-17",
                "clang++-16",
                "clang++",
            ]
            .into_iter()
            .find(|p| runs(p)),
        }
    }

    /// Whether the compiler runs. On Linux its absence is a failure (CI
    /// installs both); elsewhere the check is skipped with a message.
    fn available(self) -> bool {
        let found = self.program().is_some();
        if !found {
            let (what, package) = match self {
                Cxx::Gxx => ("g++", "g++"),
                Cxx::ClangAddressSpaces => ("clang++ (16 or newer)", "clang-19"),
            };
            if cfg!(target_os = "linux") {
                panic!("{what} not found: the MSL {self:?} check needs it on Linux (apt-get install {package})");
            }
            eprintln!("{what} not found: skipping the MSL {self:?} check");
        }
        found
    }

    fn args(self, cmd: &mut Command, strict: bool) {
        match self {
            Cxx::Gxx => {
                cmd.args(["-std=c++17", "-fsyntax-only", "-Wno-attributes"]);
            }
            Cxx::ClangAddressSpaces => {
                cmd.args([
                    "-x",
                    "clcpp",
                    "-cl-std=clc++2021",
                    "-cl-no-stdinc",
                    "-fsyntax-only",
                    "-Wno-unknown-attributes",
                    "-DQ4GPU_SHIM_ADDRESS_SPACES",
                ]);
            }
        }
        if strict && self == Cxx::Gxx {
            cmd.args([
                "-Wall",
                "-Wextra",
                "-Werror",
                "-Wno-unused-parameter",
                // Variants without their format flag (embed) leave locals unused.
                "-Wno-unused-variable",
                "-Wno-unused-but-set-variable",
            ]);
        }
        cmd.arg("-include").arg(shim_path());
        if self == Cxx::Gxx {
            cmd.args(["-x", "c++"]);
        }
        cmd.arg("-");
    }
}

/// Compiles MSL text against the shim; Err carries the compiler's messages
/// and the numbered source.
fn cxx_check(cxx: Cxx, msl: &str, strict: bool) -> Result<(), String> {
    let text: String = msl
        .lines()
        .filter(|l| {
            !l.trim_start().starts_with("#include <metal_stdlib>")
                && !l.trim_start().starts_with("#include <simd/simd.h>")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let program = cxx.program().ok_or("no compiler")?;
    let mut cmd = Command::new(program);
    cxx.args(&mut cmd, strict);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("running {program}: {e}"))?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .map_err(|e| format!("writing to {program}: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for {program}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let listing: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| format!("{:4} {l}\n", i + 1))
        .collect();
    Err(format!(
        "{}\n{listing}",
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Every distinct assembled MSL variant: (label, text).
fn msl_variants() -> Vec<(String, String)> {
    let mut seen = BTreeMap::new();
    for name in kernels() {
        for flags in variants(name) {
            let flags = refs(&flags);
            let text = asm(Lang::Msl, name, &flags).unwrap();
            seen.entry(text)
                .or_insert_with(|| format!("{name}{flags:?}"));
        }
    }
    seen.into_iter().map(|(t, l)| (l, t)).collect()
}

fn compile_every_variant(cxx: Cxx) {
    if !cxx.available() {
        return;
    }
    let jobs = msl_variants();
    assert!(jobs.len() >= kernels().len());
    let failures = parallel(&jobs, |(label, text)| {
        cxx_check(cxx, text, true).map_err(|e| format!("== {label}\n{e}"))
    });
    assert!(
        failures.is_empty(),
        "{} of {} MSL variants fail ({cxx:?}):\n{}",
        failures.len(),
        jobs.len(),
        failures.join("\n")
    );
}

#[test]
fn msl_kernels_compile_as_cpp_against_the_shim() {
    compile_every_variant(Cxx::Gxx);
}

#[test]
fn msl_kernels_keep_metal_address_spaces_apart() {
    compile_every_variant(Cxx::ClangAddressSpaces);
}

/// The syntax check has teeth: broken kernels are rejected.
#[test]
fn gxx_rejects_broken_kernels() {
    if !Cxx::Gxx.available() {
        return;
    }
    let good = asm(Lang::Msl, "matvec_lanes", &["SUBGROUPS", "Q4_0"]).unwrap();
    cxx_check(Cxx::Gxx, &good, true).unwrap();
    let bad = [
        // Syntax: a missing semicolon.
        ("uint s = o & 15u;", "uint s = o & 15u"),
        // Undeclared identifier.
        (
            "v.x += block_dot(m, row, b, xv);",
            "v.x += block_dot(m, row, blk, xv);",
        ),
        // Implicit vector conversion (Metal requires an explicit one).
        ("uint4 q = k.q;", "float4 q = k.q;"),
        // as_type between types of different sizes.
        ("as_type<half2>(odd", "as_type<half4>(odd"),
        // Bitwise operator on a float vector.
        ("(q4_lo(q.x) - lo8) * xv[0]", "(q4_lo(q.x) - lo8) & xv[0]"),
        // Missing return value.
        ("    return k.d * (dot(lo", "    k.d * (dot(lo"),
    ];
    for (from, to) in bad {
        assert!(good.contains(from), "test input lacks `{from}`");
        let broken = good.replacen(from, to, 1);
        assert!(
            cxx_check(Cxx::Gxx, &broken, true).is_err(),
            "g++ accepted `{from}` -> `{to}`"
        );
    }
}

/// The address-space check has teeth: each mistake below is one Apple's
/// compiler rejects, g++ (address spaces erased) accepts, and clang in the
/// shim's address-space mode rejects.
#[test]
fn clang_rejects_address_space_mistakes() {
    if !Cxx::Gxx.available() || !Cxx::ClangAddressSpaces.available() {
        return;
    }
    let matvec = asm(Lang::Msl, "matvec_lanes", &["SUBGROUPS", "Q4_0"]).unwrap();
    let argmax = asm(Lang::Msl, "argmax", &[]).unwrap();
    let mistakes = [
        // A threadgroup array passed where a device pointer is declared.
        (
            &matvec,
            "float4 reduce_row4(float4 v, threadgroup float4* red4",
            "float4 reduce_row4(float4 v, device float4* red4",
            "address space",
        ),
        // A result written through constant memory.
        (
            &argmax,
            "device uint* tok [[buffer(2)]]",
            "constant uint* tok [[buffer(2)]]",
            "read-only variable is not assignable",
        ),
        // A device pointer to threadgroup memory.
        (
            &argmax,
            "threadgroup uint best_i[256];",
            "threadgroup uint best_i[256];\n    device float* alias = best_v;",
            "'__global float *__private' with an lvalue of type '__local float[256]'",
        ),
        // A thread pointer to device memory.
        (
            &argmax,
            "float v = logits[i];",
            "thread const float* lp = logits;\n        float v = lp[i];",
            "'const __private float *__private' with an lvalue of type 'const __global float",
        ),
    ];
    for (good, from, to, why) in mistakes {
        assert!(good.contains(from), "test input lacks `{from}`");
        cxx_check(Cxx::ClangAddressSpaces, good, true).unwrap();
        let bad = good.replacen(from, to, 1);
        assert!(
            cxx_check(Cxx::Gxx, &bad, true).is_ok(),
            "g++ rejected `{to}`: the mistake is not one only address spaces catch"
        );
        let err = cxx_check(Cxx::ClangAddressSpaces, &bad, true)
            .expect_err(&format!("clang accepted `{from}` -> `{to}`"));
        assert!(
            err.contains(why),
            "`{to}`: not the expected error ({why}): {err}"
        );
    }
}

// ---------------------------------------------------------------------------
// The shim against naga's own MSL.

/// naga's MSL for a WGSL kernel (see common/naga_msl.rs).
fn naga_msl(name: &str, flags: &[&str]) -> String {
    let (module, info) = validate_wgsl(name, flags);
    naga_msl::naga_msl(&module, &info, &format!("{name}{flags:?}"))
}

#[test]
fn naga_msl_compiles_against_the_shim() {
    if !Cxx::Gxx.available() {
        return;
    }
    let mut jobs = Vec::new();
    for name in kernels() {
        // naga writes 16×16 cooperative matrices as simdgroup_half16x16,
        // which Metal lacks; on Metal COOP runs only its MSL twin (8×8).
        for flags in variants(name)
            .iter()
            .filter(|f| !f.iter().any(|f| f == COOP))
        {
            let flags = refs(flags);
            jobs.push((format!("{name}{flags:?}"), naga_msl(name, &flags)));
        }
    }
    let failures = parallel(&jobs, |(label, text)| {
        cxx_check(Cxx::Gxx, text, false).map_err(|e| format!("== naga {label}\n{e}"))
    });
    assert!(
        failures.is_empty(),
        "{} of {} naga MSL outputs fail:\n{}",
        failures.len(),
        jobs.len(),
        failures.join("\n")
    );
}

/// Metal buffer slots as wgpu-hal 30.0.2 assigns them to a compute
/// pipeline layout (`metal/device.rs`, `create_pipeline_layout`),
/// transcribed: per stage, an immediates buffer first when
/// `immediate_size` is non-zero, then, group by group and entry by entry in
/// the layout's order, one slot per buffer entry visible to the stage
/// (samplers and textures count separately). A sizes buffer for
/// runtime-sized arrays would come after all of them.
fn hal_metal_buffer_slots(
    immediate_size: u32,
    groups: &[Vec<wgpu::BindGroupLayoutEntry>],
) -> BTreeMap<(u32, u32), u32> {
    let mut next = u32::from(immediate_size != 0);
    let mut slots = BTreeMap::new();
    for (g, entries) in groups.iter().enumerate() {
        for e in entries {
            if !e.visibility.contains(wgpu::ShaderStages::COMPUTE) {
                continue;
            }
            if let wgpu::BindingType::Buffer { .. } = e.ty {
                slots.insert((g as u32, e.binding), next);
                next += 1;
            }
        }
    }
    slots
}

/// (group, binding) → (name, uniform or read-only storage) of the WGSL
/// kernel's buffers.
fn wgsl_bindings(name: &str, flags: &[&str]) -> BTreeMap<(u32, u32), (String, Option<bool>)> {
    let (module, _) = validate_wgsl(name, flags);
    let mut out = BTreeMap::new();
    for (_, g) in module.global_variables.iter() {
        let Some(rb) = g.binding else { continue };
        let kind = match g.space {
            naga::AddressSpace::Uniform => None,
            naga::AddressSpace::Storage { access } => {
                Some(!access.contains(naga::StorageAccess::STORE))
            }
            _ => continue,
        };
        out.insert(
            (rb.group, rb.binding),
            (g.name.clone().unwrap_or_default(), kind),
        );
    }
    out
}

/// Every MSL variant's `[[buffer(n)]]` is the slot wgpu-hal's Metal rule
/// gives its binding in the layout q4gpu creates for it
/// (`gpu::layout_entries`, immediates `gpu::IMMEDIATE_SIZE`): the uniform
/// at binding 0, storage at 1.., one group. A kernel whose WGSL bindings do
/// not fit that layout (a gap, a second group, the uniform elsewhere) fails
/// too. The rule itself is checked on a layout with immediates and two
/// groups, where slots shift.
#[test]
fn msl_buffer_slots_follow_wgpu_hal_metal_rule() {
    let shifted = hal_metal_buffer_slots(
        16,
        &[
            q4gpu::gpu::layout_entries(&[true]),
            q4gpu::gpu::layout_entries(&[false]),
        ],
    );
    let want: BTreeMap<(u32, u32), u32> =
        [((0, 0), 1), ((0, 1), 2), ((1, 0), 3), ((1, 1), 4)].into();
    assert_eq!(shifted, want);

    let mut failures = Vec::new();
    let mut checked = 0;
    for name in kernels() {
        for flags in variants(name) {
            let flags = refs(&flags);
            let wgsl = wgsl_bindings(name, &flags);
            let storage: Vec<bool> = wgsl
                .values()
                .skip(1)
                .map(|(_, k)| k.unwrap_or(false))
                .collect();
            let layout = q4gpu::gpu::layout_entries(&storage);
            let expected: Vec<((u32, u32), Option<bool>)> = layout
                .iter()
                .map(|e| match e.ty {
                    wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only },
                        ..
                    } => ((0, e.binding), Some(read_only)),
                    _ => ((0, e.binding), None),
                })
                .collect();
            let have: Vec<((u32, u32), Option<bool>)> =
                wgsl.iter().map(|(k, (_, kind))| (*k, *kind)).collect();
            if have != expected {
                failures.push(format!(
                    "{name}{flags:?}: WGSL bindings {have:?} are not q4gpu's layout {expected:?}"
                ));
                continue;
            }
            let slots = hal_metal_buffer_slots(q4gpu::gpu::IMMEDIATE_SIZE, &[layout]);
            let msl = msl_interface(&asm(Lang::Msl, name, &flags).unwrap())
                .unwrap_or_else(|e| panic!("{name}{flags:?}: {e}"));
            for (key, (var, _)) in &wgsl {
                let slot = slots[key];
                match msl.buffers.iter().find(|b| &b.name == var) {
                    Some(b) if b.slot == slot => {}
                    Some(b) => failures.push(format!(
                        "{name}{flags:?}: {var} is [[buffer({})]], wgpu-hal gives binding {key:?} slot {slot}",
                        b.slot
                    )),
                    None => failures.push(format!("{name}{flags:?}: no MSL buffer named {var}")),
                }
            }
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("{checked} variants' buffer slots follow wgpu-hal's Metal rule");
}
