//! Re-encodes the weights of a GGUF model to another type (what `examples/quantize.rs` runs).
//!
//! Rules: every 2-D tensor whose row length is a whole number of target blocks is
//! converted to the target type; 1-D tensors (norms, biases) become F32; anything
//! else (rows that do not fit the target's blocks, 3-D/4-D tensors) is copied
//! unchanged. `token_embd.weight` follows [`EmbdChoice`]. A tensor already of its
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
}

/// What [`convert`] should produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvertOptions {
    /// Type for the 2-D weights.
    pub target: GgmlType,
    /// Type for `token_embd.weight`.
    pub embd: EmbdChoice,
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

/// The type tensor `info` gets in the output under `opts`.
pub fn output_type(info: &TensorInfo, opts: &ConvertOptions) -> GgmlType {
    let wanted = match info.dims.len() {
        1 => GgmlType::F32,
        2 if info.name == TOKEN_EMBD => match opts.embd {
            EmbdChoice::Keep => info.ty,
            EmbdChoice::To(t) => t,
        },
        2 => opts.target,
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
    w.add_kv(KEY_FILE_TYPE, Value::U32(llama_ftype(opts.target)));
    let quantized = |t: GgmlType| t.block_size() > 1;
    let n = src.tensors().len();
    let mut any_quantized = false;
    for (i, info) in src.tensors().iter().enumerate() {
        let to = output_type(info, opts);
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
            target: GgmlType::Q4_0,
            embd: EmbdChoice::Keep,
        };
        let t = |name, dims: &[u64], ty| output_type(&info(name, dims, ty), &o);
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
            target: GgmlType::F16,
            embd: EmbdChoice::To(GgmlType::Q4_1),
        };
        assert_eq!(
            output_type(&info(TOKEN_EMBD, &[64, 4], GgmlType::Q8_0), &o2),
            GgmlType::Q4_1
        );
        assert_eq!(
            output_type(&info("w", &[40, 8], GgmlType::F32), &o2),
            GgmlType::F16
        );
    }

    #[test]
    fn ftype_values_follow_llama_cpp() {
        assert_eq!(llama_ftype(GgmlType::F32), 0);
        assert_eq!(llama_ftype(GgmlType::F16), 1);
        assert_eq!(llama_ftype(GgmlType::Q4_0), 2);
        assert_eq!(llama_ftype(GgmlType::Q4_1), 3);
        assert_eq!(llama_ftype(GgmlType::Q8_0), 7);
        assert_eq!(llama_ftype(GgmlType::BF16), 32);
    }
}
