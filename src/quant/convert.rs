//! Re-encodes the weights of a GGUF model to another type (what `examples/quantize.rs` runs).
//!
//! Rules: with one target type, every 2-D tensor whose row length is a whole
//! number of target blocks is converted to it (a K-quant falls back as
//! llama-quantize does, [`fallback_type`]); 1-D tensors (norms, biases)
//! become F32; anything else (rows that do not fit, 3-D/4-D tensors) is
//! copied unchanged. With a [`Mix`] (`q4_k_m`, `q5_k_m`) each weight gets
//! the type llama.cpp's llama-quantize gives it in a llama-family model
//! ([`mix_type`]). `token_embd.weight` follows [`EmbdChoice`]. A tensor already of its
//! output type is copied byte for byte; otherwise it is dequantized to f32 and
//! quantized with this crate's ggml-exact quantizers, one row at a time. All
//! metadata is copied in order, with `general.file_type` set to the target's
//! llama.cpp `LLAMA_FTYPE` value.

use super::{dequantize, quantize_into, QuantError};
use crate::gguf::{GgmlType, Gguf, GgufError, GgufWriter, TensorInfo, Value};
use std::borrow::Cow;
use std::io::ErrorKind;
use std::path::Path;

/// Name of the token embedding tensor (tied to the output projection in SmolLM2).
pub const TOKEN_EMBD: &str = "token_embd.weight";
/// Metadata key holding the llama.cpp file type.
pub const KEY_FILE_TYPE: &str = "general.file_type";
/// Metadata key holding ggml's quantization format version.
pub const KEY_QUANT_VERSION: &str = "general.quantization_version";
/// ggml's current quantization format version (`GGML_QNT_VERSION`).
pub const GGML_QNT_VERSION: u32 = 2;

/// What to do with `token_embd.weight`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbdChoice {
    /// Leave it in its source type, bytes unchanged. The default: with tied
    /// embeddings this matrix is also the output projection, which is the most
    /// precision-sensitive weight (llama.cpp gives it a higher-precision type,
    /// Q6_K, when quantizing to Q4_0/Q4_1; SmolLM2's source already uses Q8_0).
    Keep,
    /// Convert it to this type (if its row length allows; otherwise it is copied).
    To(GgmlType),
    /// What the target does with it: [`EmbdChoice::Keep`] for one type, the
    /// mix's own choice for a [`Mix`].
    Auto,
}

/// llama-quantize's K-quant mixes for llama-family models (no importance
/// matrix), with the same per-tensor choices ([`mix_type`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// `Q4_K_M`: Q4_K, with Q6_K for the output projection and for half
    /// the layers' attn_v and ffn_down.
    Q4KM,
    /// `Q5_K_M`: the same with Q5_K.
    Q5KM,
}

impl Mix {
    /// The command-line name (`q4_k_m`, `q5_k_m`).
    pub const fn name(self) -> &'static str {
        match self {
            Mix::Q4KM => "q4_k_m",
            Mix::Q5KM => "q5_k_m",
        }
    }

    /// The type of the weights no rule singles out.
    pub const fn base(self) -> GgmlType {
        match self {
            Mix::Q4KM => GgmlType::Q4_K,
            Mix::Q5KM => GgmlType::Q5_K,
        }
    }
}

/// What the 2-D weights become: one type, or a mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Type(GgmlType),
    Mix(Mix),
}

impl Target {
    /// Parses a type name (`q4_0`, `q6_k`, …) or a mix (`q4_k_m`, `q5_k_m`),
    /// case-insensitive.
    pub fn from_name(s: &str) -> Option<Target> {
        [Mix::Q4KM, Mix::Q5KM]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .map(Target::Mix)
            .or_else(|| GgmlType::from_name(s).map(Target::Type))
    }

    /// llama.cpp's `LLAMA_FTYPE_*` value for the output file.
    pub fn ftype(self) -> u32 {
        match self {
            Target::Type(t) => llama_ftype(t),
            Target::Mix(Mix::Q4KM) => 15,
            Target::Mix(Mix::Q5KM) => 17,
        }
    }
}

impl From<GgmlType> for Target {
    fn from(t: GgmlType) -> Target {
        Target::Type(t)
    }
}

/// What [`convert`] should produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvertOptions {
    /// Type (or mix) for the 2-D weights.
    pub target: Target,
    /// Type for `token_embd.weight`.
    pub embd: EmbdChoice,
}

/// What a mix needs to know about the whole model: its layer count (the
/// number of attn_v tensors, as llama-quantize counts them) and whether the
/// output projection is the token embedding (no `output.weight`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelShape {
    pub n_layer: usize,
    pub tied: bool,
}

impl ModelShape {
    /// The shape of the model whose tensors are `tensors`.
    pub fn of(tensors: &[TensorInfo]) -> ModelShape {
        ModelShape {
            n_layer: tensors.iter().filter(|t| is_attn_v(&t.name)).count(),
            tied: !tensors.iter().any(|t| t.name == OUTPUT),
        }
    }
}

/// Name of the untied output projection.
pub const OUTPUT: &str = "output.weight";

fn is_attn_v(name: &str) -> bool {
    ["attn_v.weight", "attn_qkv.weight", "attn_kv_b.weight"]
        .iter()
        .any(|k| name.contains(k))
}

/// Layer index `N` of a `blk.N.…` tensor.
fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and
/// every third one between them get more bits.
fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The type `mix` gives the quantizable 2-D weight `name` with rows of
/// `row_len` elements, as llama-quantize's `llama_tensor_get_type` does for
/// a dense llama-family model without an importance matrix, row fallback
/// included: the output projection (or the tied embedding) Q6_K (Q8_0 when
/// rows are not whole super-blocks); attn_v and ffn_down of the
/// `use_more_bits` layers (first and last eighth, every third between) Q6_K; everything else the mix's base type
/// (Q4_K / Q5_K); then [`fallback_type`].
pub fn mix_type(mix: Mix, name: &str, row_len: u64, shape: ModelShape) -> GgmlType {
    let more = |n: usize| layer_of(name).is_some_and(|i| i < n && use_more_bits(i, n));
    let ty = if name == OUTPUT || (name == TOKEN_EMBD && shape.tied) {
        if row_len.is_multiple_of(256) {
            GgmlType::Q6_K
        } else {
            GgmlType::Q8_0
        }
    } else if (is_attn_v(name) || name.contains("ffn_down")) && more(shape.n_layer) {
        GgmlType::Q6_K
    } else {
        mix.base()
    };
    fallback_type(ty, row_len)
}

/// Whether llama-quantize quantizes the tensor: 2-D or more, named
/// `…weight`, not a norm.
fn quantizable(info: &TensorInfo) -> bool {
    let dims = info.dims.iter().rev().skip_while(|&&d| d == 1).count();
    dims >= 2 && info.name.ends_with("weight") && !info.name.contains("_norm.weight")
}

/// llama.cpp's `LLAMA_FTYPE_*` value for a file whose weights are mostly `ty`.
pub fn llama_ftype(ty: GgmlType) -> u32 {
    match ty {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q4_1 => 3,
        GgmlType::Q8_0 => 7,
        GgmlType::Q5_0 => 8,
        GgmlType::Q5_1 => 9,
        GgmlType::Q4_K => 14, // Q4_K_S: mostly Q4_K
        GgmlType::Q5_K => 16, // Q5_K_S
        GgmlType::Q6_K => 18,
        GgmlType::BF16 => 32,
    }
}

/// The type llama.cpp's llama-quantize writes when `ty` does not fit rows of
/// `row_len` elements: Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0 (same bits per
/// weight or more, 32-element blocks), then F16 if even that does not fit;
/// `ty` itself when its blocks fit.
pub fn fallback_type(ty: GgmlType, row_len: u64) -> GgmlType {
    let fits = |t: GgmlType| row_len.is_multiple_of(t.block_size() as u64);
    if fits(ty) {
        return ty;
    }
    let next = match ty {
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        _ => GgmlType::F16,
    };
    if fits(next) {
        next
    } else {
        GgmlType::F16
    }
}

/// A K-quant's [`fallback_type`] where rows are not whole super-blocks;
/// other types as they are (rows that do not fit them are copied).
fn k_fallback(ty: GgmlType, row_len: u64) -> GgmlType {
    if ty.block_size() == 256 {
        fallback_type(ty, row_len)
    } else {
        ty
    }
}

/// The type tensor `info` of a model of `shape` gets in the output under `opts`.
pub fn output_type(info: &TensorInfo, opts: &ConvertOptions, shape: ModelShape) -> GgmlType {
    let row_len = info.dims.first().copied().unwrap_or(1);
    let wanted = match (info.dims.len(), opts.target) {
        (1, _) => GgmlType::F32,
        (2, _) if info.name == TOKEN_EMBD && opts.embd != EmbdChoice::Auto => match opts.embd {
            EmbdChoice::To(t) => k_fallback(t, row_len),
            _ => info.ty,
        },
        (2, Target::Mix(m)) if quantizable(info) => return mix_type(m, &info.name, row_len, shape),
        (2, Target::Type(_)) if info.name == TOKEN_EMBD => info.ty,
        (2, Target::Type(t)) => k_fallback(t, row_len),
        _ => info.ty,
    };
    let row_fits = info
        .dims
        .first()
        .is_some_and(|&n| n % wanted.block_size() as u64 == 0);
    if row_fits {
        wanted
    } else {
        info.ty
    }
}

/// Refuses an output path that would overwrite the input: the same canonical path
/// (so also through a symlink or `..`), or on Unix the same file through another
/// hard link. Also reports a missing input or output directory up front, before
/// any conversion work. Errors name the offending path.
pub fn check_output_path(input: &Path, output: &Path) -> Result<(), GgufError> {
    let err = |p: &Path, kind: ErrorKind, msg: String| GgufError::Io {
        path: p.to_path_buf(),
        error: std::io::Error::new(kind, msg),
    };
    let inp = input.canonicalize().map_err(|e| GgufError::Io {
        path: input.to_path_buf(),
        error: e,
    })?;
    let out = match output.canonicalize() {
        Ok(p) => p,
        Err(_) => {
            // Output does not exist yet (or is a dangling link): resolve its directory.
            let name = output.file_name().ok_or_else(|| {
                err(
                    output,
                    ErrorKind::InvalidInput,
                    "output path has no file name".into(),
                )
            })?;
            let parent = match output.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let dir = parent.canonicalize().map_err(|e| {
                err(
                    output,
                    e.kind(),
                    format!("output directory {} does not exist ({e})", parent.display()),
                )
            })?;
            if !dir.is_dir() {
                return Err(err(
                    output,
                    ErrorKind::NotADirectory,
                    format!("{} is not a directory", parent.display()),
                ));
            }
            dir.join(name)
        }
    };
    if inp == out {
        return Err(err(
            output,
            ErrorKind::AlreadyExists,
            format!(
                "is the input file {}; refusing to overwrite the source",
                input.display()
            ),
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(a), Ok(b)) = (std::fs::metadata(&inp), std::fs::metadata(&out)) {
            if a.dev() == b.dev() && a.ino() == b.ino() {
                return Err(err(
                    output,
                    ErrorKind::AlreadyExists,
                    format!(
                        "is the same file as the input {} (hard link); refusing to overwrite the source",
                        input.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Re-encodes all `n` elements of `data` (type `from`) as `to`, row by row (`row_len` elements).
fn reencode(
    from: GgmlType,
    to: GgmlType,
    data: &[u8],
    n: u64,
    row_len: u64,
) -> Result<Vec<u8>, QuantError> {
    let too_large = |elements: u64| QuantError::TooLarge {
        ty: to,
        elements: usize::try_from(elements).unwrap_or(usize::MAX),
    };
    let row = usize::try_from(row_len).map_err(|_| too_large(row_len))?;
    let n = usize::try_from(n).map_err(|_| too_large(n))?;
    if row == 0 || n % row != 0 {
        return Err(QuantError::NotBlockMultiple {
            ty: from,
            len: n,
            block: row,
        });
    }
    let in_row = super::encoded_len(from, row)?;
    let out_row = super::encoded_len(to, row)?;
    let total_in = super::encoded_len(from, n)?;
    if data.len() != total_in {
        return Err(QuantError::ByteLengthMismatch {
            ty: from,
            elements: n,
            expected: total_in,
            actual: data.len(),
        });
    }
    let mut out = vec![0u8; super::encoded_len(to, n)?];
    let mut buf = vec![0.0f32; row];
    for (src, dst) in data.chunks_exact(in_row).zip(out.chunks_exact_mut(out_row)) {
        dequantize(from, src, &mut buf)?;
        quantize_into(to, &buf, dst)?;
    }
    Ok(out)
}

/// Builds a writer holding `src`'s metadata and tensors re-encoded per `opts`.
/// `progress(i, n, info, out_ty)` is called before tensor `i` (0-based) of `n` is processed.
/// Tensors that are copied borrow their bytes from `src`.
pub fn convert<'a>(
    src: &'a Gguf,
    opts: &ConvertOptions,
    mut progress: impl FnMut(usize, usize, &TensorInfo, GgmlType),
) -> Result<GgufWriter<'a>, crate::Error> {
    let mut w = GgufWriter::new().alignment(src.alignment());
    for (k, v) in src.metadata() {
        w.add_kv(k.clone(), v.clone());
    }
    w.add_kv(KEY_FILE_TYPE, Value::U32(opts.target.ftype()));
    let shape = ModelShape::of(src.tensors());
    let quantized = |t: GgmlType| t.block_size() > 1;
    let n = src.tensors().len();
    let mut any_quantized = false;
    for (i, info) in src.tensors().iter().enumerate() {
        let to = output_type(info, opts, shape);
        progress(i, n, info, to);
        any_quantized |= quantized(to);
        let data = src.tensor_bytes(info)?;
        let bytes: Cow<'a, [u8]> = if to == info.ty {
            Cow::Borrowed(data)
        } else {
            let row_len = info.dims.first().copied().unwrap_or(1);
            Cow::Owned(reencode(info.ty, to, data, info.n_elements, row_len)?)
        };
        w.add_tensor(info.name.clone(), to, &info.dims, bytes)?;
    }
    if any_quantized && src.get(KEY_QUANT_VERSION).is_none() {
        w.add_kv(KEY_QUANT_VERSION, Value::U32(GGML_QNT_VERSION));
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, dims: &[u64], ty: GgmlType) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dims: dims.to_vec(),
            ty,
            offset: 0,
            n_elements: dims.iter().product(),
            n_bytes: 0,
        }
    }

    #[test]
    fn type_choice() {
        let o = ConvertOptions {
            target: GgmlType::Q4_0.into(),
            embd: EmbdChoice::Keep,
        };
        let shape = ModelShape {
            n_layer: 1,
            tied: true,
        };
        let t = |name, dims: &[u64], ty| output_type(&info(name, dims, ty), &o, shape);
        assert_eq!(
            t("blk.0.attn_q.weight", &[576, 576], GgmlType::Q4_1),
            GgmlType::Q4_0
        );
        assert_eq!(
            t("blk.0.attn_norm.weight", &[576], GgmlType::F32),
            GgmlType::F32
        );
        assert_eq!(
            t("blk.0.attn_norm.weight", &[576], GgmlType::F16),
            GgmlType::F32
        );
        assert_eq!(t(TOKEN_EMBD, &[576, 100], GgmlType::Q8_0), GgmlType::Q8_0);
        // Row length 40 is not a multiple of 32: copied as is.
        assert_eq!(t("odd.weight", &[40, 8], GgmlType::F16), GgmlType::F16);
        let o2 = ConvertOptions {
            target: GgmlType::F16.into(),
            embd: EmbdChoice::To(GgmlType::Q4_1),
        };
        assert_eq!(
            output_type(&info(TOKEN_EMBD, &[64, 4], GgmlType::Q8_0), &o2, shape),
            GgmlType::Q4_1
        );
        assert_eq!(
            output_type(&info("w", &[40, 8], GgmlType::F32), &o2, shape),
            GgmlType::F16
        );
        // A K-quant target falls back as llama-quantize does.
        let o3 = ConvertOptions {
            target: GgmlType::Q6_K.into(),
            embd: EmbdChoice::Auto,
        };
        let t3 = |name, dims: &[u64]| output_type(&info(name, dims, GgmlType::F32), &o3, shape);
        assert_eq!(t3("blk.0.attn_q.weight", &[576, 576]), GgmlType::Q8_0);
        assert_eq!(t3("blk.0.ffn_down.weight", &[1536, 576]), GgmlType::Q6_K);
        assert_eq!(t3(TOKEN_EMBD, &[512, 9]), GgmlType::F32);
    }

    /// The llama-family tensor list of a model: (name, [cols, rows]).
    fn llama_tensors(layers: usize, dim: u64, ffn: u64, kv: u64, vocab: u64) -> Vec<TensorInfo> {
        let mut v = vec![
            info(TOKEN_EMBD, &[dim, vocab], GgmlType::F32),
            info("output_norm.weight", &[dim], GgmlType::F32),
        ];
        for i in 0..layers {
            let n = |t: &str| format!("blk.{i}.{t}.weight");
            for (t, dims) in [
                ("attn_norm", vec![dim]),
                ("ffn_norm", vec![dim]),
                ("attn_q", vec![dim, dim]),
                ("attn_k", vec![dim, kv]),
                ("attn_v", vec![dim, kv]),
                ("attn_output", vec![dim, dim]),
                ("ffn_gate", vec![dim, ffn]),
                ("ffn_up", vec![dim, ffn]),
                ("ffn_down", vec![ffn, dim]),
            ] {
                v.push(info(&n(t), &dims, GgmlType::F32));
            }
        }
        v
    }

    fn type_counts(tensors: &[TensorInfo], target: Target) -> Vec<(GgmlType, usize)> {
        let o = ConvertOptions {
            target,
            embd: EmbdChoice::Auto,
        };
        let shape = ModelShape::of(tensors);
        let mut counts = std::collections::BTreeMap::new();
        for t in tensors {
            *counts.entry(output_type(t, &o, shape) as u32).or_insert(0) += 1;
        }
        counts
            .into_iter()
            .map(|(k, n)| (GgmlType::from_u32(k).unwrap(), n))
            .collect()
    }

    /// llama-quantize's Q4_K_M / Q5_K_M of SmolLM2-135M (known from the
    /// file it writes: 166 Q5_0, 16 Q4_K, 14 Q6_K, 15 Q8_0, 61 F32) and of
    /// Llama-3.2-1B's shapes (96 Q4_K, 17 Q6_K, norms F32).
    #[test]
    fn mixes_make_llama_quantizes_choices() {
        use GgmlType::*;
        let smol = llama_tensors(30, 576, 1536, 192, 49152);
        assert_eq!(
            type_counts(&smol, Target::Mix(Mix::Q4KM)),
            [(F32, 61), (Q5_0, 166), (Q8_0, 15), (Q4_K, 16), (Q6_K, 14)]
        );
        assert_eq!(
            type_counts(&smol, Target::Mix(Mix::Q5KM)),
            [(F32, 61), (Q5_1, 166), (Q8_0, 15), (Q5_K, 16), (Q6_K, 14)]
        );
        let llama = llama_tensors(16, 2048, 8192, 512, 128256);
        assert_eq!(
            type_counts(&llama, Target::Mix(Mix::Q4KM)),
            [(F32, 33), (Q4_K, 96), (Q6_K, 17)]
        );
        // The more-bits layers of 30: 0-2, every third from 5, 26-29.
        let q6: Vec<usize> = (0..30).filter(|&i| use_more_bits(i, 30)).collect();
        assert_eq!(q6, [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]);
        let shape = ModelShape::of(&smol);
        assert_eq!(
            mix_type(Mix::Q4KM, "blk.5.ffn_down.weight", 1536, shape),
            Q6_K
        );
        assert_eq!(
            mix_type(Mix::Q4KM, "blk.6.ffn_down.weight", 1536, shape),
            Q4_K
        );
        assert_eq!(mix_type(Mix::Q4KM, "blk.5.attn_v.weight", 576, shape), Q8_0);
        assert_eq!(mix_type(Mix::Q4KM, "blk.6.attn_v.weight", 576, shape), Q5_0);
        // An untied output projection gets Q6_K, the embedding the base type.
        let mut untied = llama.clone();
        untied.push(info(OUTPUT, &[2048, 128256], F32));
        let shape = ModelShape::of(&untied);
        assert!(!shape.tied);
        assert_eq!(mix_type(Mix::Q4KM, OUTPUT, 2048, shape), Q6_K);
        assert_eq!(mix_type(Mix::Q4KM, TOKEN_EMBD, 2048, shape), Q4_K);
    }

    #[test]
    fn ftype_values_follow_llama_cpp() {
        assert_eq!(llama_ftype(GgmlType::F32), 0);
        assert_eq!(llama_ftype(GgmlType::F16), 1);
        assert_eq!(llama_ftype(GgmlType::Q4_0), 2);
        assert_eq!(llama_ftype(GgmlType::Q4_1), 3);
        assert_eq!(llama_ftype(GgmlType::Q8_0), 7);
        assert_eq!(llama_ftype(GgmlType::BF16), 32);
        assert_eq!(llama_ftype(GgmlType::Q6_K), 18);
        assert_eq!(Target::Mix(Mix::Q4KM).ftype(), 15);
        assert_eq!(Target::from_name("Q5_K_M"), Some(Target::Mix(Mix::Q5KM)));
        assert_eq!(
            Target::from_name("q4_k"),
            Some(Target::Type(GgmlType::Q4_K))
        );
    }
}
