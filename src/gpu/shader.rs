//! Shader sources, the small preprocessor that assembles them, and the structs
//! host and shaders share.
//!
//! Every kernel exists twice under one name: `shaders/<name>.wgsl` (all
//! backends, compiled by naga) and `shaders/<name>.metal` (hand-written MSL,
//! used on Metal through wgpu's shader passthrough). Both take the same
//! bindings in the same order; the uniform structs they read are generated
//! from the Rust definitions below and prepended to both, so they cannot drift.

use std::collections::{BTreeSet, HashMap, HashSet};

/// Declares `#[repr(C)]` uniform structs once, and emits their WGSL and MSL
/// declarations from the same tokens. Fields are `u32` or `f32` only, so the
/// three layouts coincide (4-byte fields, no padding); keep sizes a multiple of 16.
macro_rules! shared_structs {
    ($( $(#[$m:meta])* struct $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ident),* $(,)? } )*) => {
        $(
            $(#[$m])*
            #[repr(C)]
            #[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
            pub struct $name { $($(#[$fm])* pub $field: $ty),* }
            const _: () = assert!(std::mem::size_of::<$name>() % 16 == 0);
        )*
        /// WGSL declarations of the shared structs.
        pub const WGSL_STRUCTS: &str = concat!($(
            "struct ", stringify!($name), " {\n",
            $("    ", stringify!($field), ": ", stringify!($ty), ",\n",)*
            "}\n",
        )*);
        /// MSL declarations of the shared structs.
        pub const MSL_STRUCTS: &str = concat!($(
            "struct ", stringify!($name), " {\n",
            $("    ", msl_type!($ty), " ", stringify!($field), ";\n",)*
            "};\n",
        )*);
        /// (struct name, field names) of every shared struct, for interface tests.
        pub const SHARED_STRUCT_FIELDS: &[(&str, &[&str])] = &[$(
            (stringify!($name), &[$(stringify!($field)),*]),
        )*];
    };
}

macro_rules! msl_type {
    (u32) => {
        "uint"
    };
    (f32) => {
        "float"
    };
}

shared_structs! {
    /// Uniforms of every matvec kernel (the `matvec_<family>` files).
    struct MatvecParams {
        /// Output rows of W.
        rows: u32,
        /// Columns of W = length of x (multiple of 32).
        cols: u32,
        /// 32-element blocks per row = cols / 32.
        blocks: u32,
        /// Non-zero: y += W·x (fused residual add) instead of y = W·x.
        accumulate: u32,
        /// Offset of x in its buffer, in `vec4<f32>` units.
        x_offset: u32,
        /// Offset of y in its buffer, in f32 units.
        y_offset: u32,
        /// RMSNorm epsilon (fused kernels only).
        eps: f32,
        /// Attention head size (ATTN kernels only: the input is attention's
        /// per-chunk partials, merged while staged).
        head_dim: u32,
        /// Chunks the ATTN input buffer holds: the merge never reads past
        /// them, whatever the step's position says.
        max_chunks: u32,
        /// Rows per workgroup (`dense` kernels only: their slab of items).
        group_rows: u32,
        pad1: u32,
        pad2: u32,
    }

    /// Uniforms of the embedding lookup (`embed`).
    struct EmbedParams {
        /// Rows of the table (vocabulary size).
        rows: u32,
        /// Columns (embedding length, multiple of 32).
        cols: u32,
        /// The vocabulary row this table part starts at (a table larger
        /// than one storage binding is split by rows).
        row0: u32,
        pad1: u32,
    }

    /// Uniforms of `argmax`.
    struct ArgmaxParams {
        /// Logits to scan (FINAL: partial results to reduce).
        n: u32,
        /// PART: logits per workgroup.
        span: u32,
        /// Vocabulary size: the id written when every logit is NaN is total − 1.
        total: u32,
        pad0: u32,
    }

    /// Uniforms of `sample` (GPU sampling, see `gpu::sample`).
    struct SampleParams {
        /// Logits (vocabulary size).
        n: u32,
        /// Top-k: candidates each span keeps and the final pass selects (1..=256).
        k: u32,
        /// Span workgroups (1024 logits each).
        spans: u32,
        /// Non-zero: take the best candidate, no draw (penalized greedy).
        greedy: u32,
        top_p: f32,
        min_p: f32,
        temperature: f32,
        /// Repeat penalty for ids the window holds (`marks[id] > 0`).
        penalty: f32,
        /// Tokens the penalty window spans; 0: no penalty, marks untouched.
        last_n: u32,
        pad0: u32,
        pad1: u32,
        pad2: u32,
    }

    /// Uniforms of one layer's `attention` (RoPE + KV write + GQA).
    struct AttnParams {
        n_heads: u32,
        n_kv_heads: u32,
        head_dim: u32,
        /// n_kv_heads × head_dim.
        kv_dim: u32,
        /// This layer's first float in the K and V caches.
        layer_offset: u32,
        /// Positions the cache holds per layer.
        max_ctx: u32,
        /// RoPE rotates pairs (i, i + head_dim/2) (NeoX, Qwen2) instead of
        /// adjacent ones: 0 or 1.
        rope_neox: u32,
        /// 1/sqrt(head_dim).
        scale: f32,
        /// Each head of q and k is RMS-normalized before RoPE (Qwen3): 0 or 1;
        /// the gains follow the biases in the `bias` buffer.
        qk_norm: u32,
        /// That RMSNorm's epsilon.
        eps: f32,
        pad0: u32,
        pad1: u32,
    }

    /// Uniforms of the read-bandwidth probe.
    struct BandwidthParams {
        /// Number of `vec4<u32>` words to read.
        words: u32,
        /// Grid stride in words = workgroups × 256.
        stride: u32,
        pad0: u32,
        pad1: u32,
    }

    /// Uniforms of the batched matrix products (`matmul`, prompt processing).
    struct MatmulParams {
        /// Output rows of W.
        rows: u32,
        /// Columns of W = input length per token (multiple of 32).
        cols: u32,
        /// 32-element blocks per row = cols / 32.
        blocks: u32,
        /// Non-zero: Y += W·X (fused residual add) instead of Y = W·X.
        accumulate: u32,
        /// Distance between consecutive tokens' input rows, in `vec4<f32>` units.
        x_stride: u32,
        /// Distance between consecutive tokens' output rows, in f32 units.
        y_stride: u32,
        /// Offset of the output within a token's row, in f32 units.
        y_offset: u32,
        /// RMSNorm epsilon (NORM variant only).
        eps: f32,
        /// K segments the product is split into (workgroup y of `matmul`).
        n_seg: u32,
        /// Blocks per K segment (the last may have fewer).
        seg_blocks: u32,
        /// Tokens per segment in the partials buffer (the op's max tokens).
        part_tokens: u32,
        pad0: u32,
    }
}

/// The shader languages q4gpu ships every kernel in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    /// WGSL, compiled by naga for every backend.
    Wgsl,
    /// Metal Shading Language, passed through to Metal unchanged.
    Msl,
}

macro_rules! sources {
    ($dir:literal, $ext:literal: $($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../shaders/", $name, ".", $ext)))),*]
    };
}

/// WGSL sources, embedded at compile time: (name, text).
pub const WGSL_SOURCES: &[(&str, &str)] = sources!("shaders", "wgsl":
    "reduce", "words", "bandwidth", "embed", "argmax", "attention", "attention_combine", "matvec_q4_0_naive",
    "matvec_common", "matvec_stage", "matvec_lanes", "matvec_wide", "matvec_staged", "matvec_dense",
    "block_q4_0", "block_q4_1", "block_q8_0", "block_f16", "block_f32",
    "block_q5_0", "block_q5_1", "block_q4_k", "block_q5_k", "block_q6_k", "block_codes", "embed_value",
    "matmul", "matmul_reduce", "embed_batch", "attention_prefill", "attention_tiled",
    "quantize_rows", "matmul_q8", "sample",
);

/// MSL sources, embedded at compile time: (name, text).
pub const MSL_SOURCES: &[(&str, &str)] = sources!("shaders", "metal":
    "reduce", "words", "bandwidth", "embed", "argmax", "attention", "attention_combine", "matvec_q4_0_naive",
    "matvec_common", "matvec_stage", "matvec_lanes", "matvec_wide", "matvec_staged", "matvec_dense",
    "block_q4_0", "block_q4_1", "block_q8_0", "block_f16", "block_f32",
    "block_q5_0", "block_q5_1", "block_q4_k", "block_q5_k", "block_q6_k", "block_codes", "embed_value",
    "matmul", "matmul_reduce", "embed_batch", "attention_prefill", "attention_tiled",
    "quantize_rows", "matmul_q8", "sample",
);

/// Entry point name of every kernel, in both languages.
pub const ENTRY_POINT: &str = "compute_main";

/// Block dots a `dense` matvec workgroup holds in workgroup memory: its rows ×
/// blocks per row may not exceed this.
pub const DENSE_ITEMS: u32 = 4096;

/// Constants host and shaders share, declared in both preludes as `u32`.
const SHARED_CONSTS: &[(&str, u32)] = &[("DENSE_ITEMS", DENSE_ITEMS)];

/// Where kernel sources come from: the embedded files, or (kernel
/// development, [`super::GpuOptions::shader_dir`]) a folder whose
/// `<name>.wgsl` / `<name>.metal` files replace those of the same name.
#[derive(Debug, Default)]
pub struct Sources {
    overrides: HashMap<(Lang, &'static str), String>,
}

impl Sources {
    /// The sources compiled into the crate.
    pub fn embedded() -> Sources {
        Sources::default()
    }

    /// The embedded sources with every `<name>.wgsl` / `<name>.metal` in
    /// `dir` replacing its namesake. An unreadable folder or file, or a file
    /// that names no kernel, is an error.
    pub fn with_dir(dir: &std::path::Path) -> Result<Sources, String> {
        let mut overrides = HashMap::new();
        let entries = std::fs::read_dir(dir).map_err(|e| format!("shader folder: {e}"))?;
        for e in entries {
            let e = e.map_err(|e| format!("shader folder: {e}"))?;
            let file = e.file_name().to_string_lossy().into_owned();
            let (lang, table, stem) = if let Some(n) = file.strip_suffix(".wgsl") {
                (Lang::Wgsl, WGSL_SOURCES, n)
            } else if let Some(n) = file.strip_suffix(".metal") {
                (Lang::Msl, MSL_SOURCES, n)
            } else {
                continue;
            };
            let (name, _) = table
                .iter()
                .find(|s| s.0 == stem)
                .ok_or_else(|| format!("{file} names no kernel"))?;
            let text = std::fs::read_to_string(e.path()).map_err(|err| format!("{file}: {err}"))?;
            overrides.insert((lang, *name), text);
        }
        Ok(Sources { overrides })
    }

    /// Whether any embedded file is replaced.
    pub fn replaces_any(&self) -> bool {
        !self.overrides.is_empty()
    }

    /// The text of file `name` in `lang`, if there is one.
    pub fn get(&self, lang: Lang, name: &str) -> Option<&str> {
        let table = match lang {
            Lang::Wgsl => WGSL_SOURCES,
            Lang::Msl => MSL_SOURCES,
        };
        let (n, text) = table.iter().find(|s| s.0 == name)?;
        Some(
            self.overrides
                .get(&(lang, *n))
                .map_or(*text, |s| s.as_str()),
        )
    }

    /// The flags file `name` in `lang` tests with `//#if` (its includes
    /// too), so callers can refuse a misspelled flag instead of silently
    /// compiling without it.
    pub fn known_flags(&self, lang: Lang, name: &str) -> Result<BTreeSet<String>, String> {
        let mut flags = BTreeSet::new();
        let mut pending = vec![(name.to_string(), 0usize)];
        let mut seen = HashSet::new();
        while let Some((n, depth)) = pending.pop() {
            if depth > 8 {
                return Err(format!("shader include depth exceeded at '{n}'"));
            }
            if !seen.insert(n.clone()) {
                continue;
            }
            let text = self
                .get(lang, &n)
                .ok_or_else(|| format!("unknown {lang:?} shader '{n}'"))?;
            for line in text.lines() {
                let t = line.trim();
                if let Some(rest) = t.strip_prefix("//#if ") {
                    let rest = rest.trim();
                    flags.insert(rest.strip_prefix('!').unwrap_or(rest).trim().to_string());
                } else if let Some(inc) = t.strip_prefix("//#include ") {
                    pending.push((inc.trim().to_string(), depth + 1));
                }
            }
        }
        Ok(flags)
    }

    /// Assembles file `name` in `lang` with `flags` set and the valued
    /// constants `consts`: a prelude with the shared struct declarations and
    /// constants (`consts` among them, which `//#if` also sees as set), then
    /// the file with `//#include`, `//#define`, `//#if [!]FLAG`, `//#else`,
    /// `//#endif` resolved (the same directives in both languages). WGSL
    /// `enable` directives the file keeps are moved to the very top, where
    /// WGSL wants them. Errors name the problem.
    pub fn assemble(
        &self,
        lang: Lang,
        name: &str,
        flags: &[&str],
        consts: &[(&str, u32)],
    ) -> Result<String, String> {
        let mut out = String::from(match lang {
            Lang::Wgsl => WGSL_STRUCTS,
            Lang::Msl => "#include <metal_stdlib>\nusing namespace metal;\n",
        });
        if lang == Lang::Msl {
            out.push_str(MSL_STRUCTS);
        }
        for (c, v) in SHARED_CONSTS.iter().chain(consts) {
            out.push_str(&match lang {
                Lang::Wgsl => format!("const {c}: u32 = {v}u;\n"),
                Lang::Msl => format!("constant uint {c} = {v}u;\n"),
            });
        }
        let mut defined: HashSet<String> = flags.iter().map(|s| s.to_string()).collect();
        defined.extend(consts.iter().map(|c| c.0.to_string()));
        let mut included = HashSet::new();
        let mut body = String::new();
        self.expand(lang, name, &mut defined, &mut included, &mut body, 0)?;
        if lang == Lang::Wgsl {
            let (enables, rest): (Vec<&str>, Vec<&str>) = body
                .lines()
                .partition(|l| l.trim_start().starts_with("enable "));
            if !enables.is_empty() {
                let mut hoisted = enables.join("\n");
                hoisted.push('\n');
                out.insert_str(0, &hoisted);
                body = rest.join("\n") + "\n";
            }
        }
        out.push_str(&body);
        Ok(out)
    }

    fn expand(
        &self,
        lang: Lang,
        name: &str,
        defined: &mut HashSet<String>,
        included: &mut HashSet<String>,
        out: &mut String,
        depth: usize,
    ) -> Result<(), String> {
        if depth > 8 {
            return Err(format!("shader include depth exceeded at '{name}'"));
        }
        if !included.insert(name.to_string()) {
            return Ok(());
        }
        let text = self
            .get(lang, name)
            .ok_or_else(|| format!("unknown {lang:?} shader '{name}'"))?;
        // Stack of (this branch active, any enclosing inactive).
        let mut stack: Vec<(bool, bool)> = Vec::new();
        for line in text.lines() {
            let t = line.trim();
            let active = stack.iter().all(|&(a, _)| a);
            if let Some(rest) = t.strip_prefix("//#if ") {
                let rest = rest.trim();
                let (neg, flag) = match rest.strip_prefix('!') {
                    Some(f) => (true, f.trim()),
                    None => (false, rest),
                };
                stack.push((defined.contains(flag) != neg, !active));
            } else if t == "//#else" {
                let top = stack
                    .last_mut()
                    .ok_or_else(|| format!("{name}: //#else without //#if"))?;
                top.0 = !top.0;
            } else if t == "//#endif" {
                stack
                    .pop()
                    .ok_or_else(|| format!("{name}: //#endif without //#if"))?;
            } else if !active {
                continue;
            } else if let Some(f) = t.strip_prefix("//#define ") {
                defined.insert(f.trim().to_string());
            } else if let Some(inc) = t.strip_prefix("//#include ") {
                self.expand(lang, inc.trim(), defined, included, out, depth + 1)?;
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        if !stack.is_empty() {
            return Err(format!("{name}: unterminated //#if"));
        }
        Ok(())
    }
}

/// Whether kernel file `name` exists in `lang` (embedded sources).
pub fn has_source(lang: Lang, name: &str) -> bool {
    Sources::embedded().get(lang, name).is_some()
}

/// [`Sources::known_flags`] of the embedded sources.
pub fn known_flags(lang: Lang, name: &str) -> Result<BTreeSet<String>, String> {
    Sources::embedded().known_flags(lang, name)
}

/// [`Sources::assemble`] of the embedded sources, without valued constants.
pub fn assemble(lang: Lang, name: &str, flags: &[&str]) -> Result<String, String> {
    Sources::embedded().assemble(lang, name, flags, &[])
}

/// [`Sources::assemble`] of the embedded sources.
pub fn assemble_with(
    lang: Lang,
    name: &str,
    flags: &[&str],
    consts: &[(&str, u32)],
) -> Result<String, String> {
    Sources::embedded().assemble(lang, name, flags, consts)
}
