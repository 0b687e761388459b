//! The GGUF re-encoder behind `examples/quantize.rs`, on small synthetic files.

use q4gpu::gguf::{GgmlType, Gguf, GgufWriter, Value};
use q4gpu::quant::{self, convert};

fn ramp(n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) * scale)
        .collect()
}

/// A tiny llama-like file: Q8_0 token_embd, an F32 and a Q4_1 2-D weight, an F32 norm,
/// and a 2-D F16 tensor whose rows (40) do not fit 32-blocks.
fn source() -> (Vec<u8>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let embd = ramp(64 * 8, 0.01);
    let wq = ramp(64 * 4, 0.02);
    let wk = ramp(32 * 2, 0.03);
    let norm: Vec<f32> = (0..64).map(|i| 1.0 + i as f32 * 0.001).collect();
    let odd = ramp(40 * 3, 0.5);
    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", Value::String("llama".into()));
    w.add_kv("general.file_type", Value::U32(3));
    w.add_kv("llama.embedding_length", Value::U32(64));
    w.add_tensor(
        "token_embd.weight",
        GgmlType::Q8_0,
        &[64, 8],
        quant::quantize(GgmlType::Q8_0, &embd).unwrap(),
    )
    .unwrap();
    w.add_tensor(
        "blk.0.attn_q.weight",
        GgmlType::F32,
        &[64, 4],
        quant::quantize(GgmlType::F32, &wq).unwrap(),
    )
    .unwrap();
    w.add_tensor(
        "blk.0.attn_k.weight",
        GgmlType::Q4_1,
        &[32, 2],
        quant::quantize(GgmlType::Q4_1, &wk).unwrap(),
    )
    .unwrap();
    w.add_tensor(
        "blk.0.attn_norm.weight",
        GgmlType::F32,
        &[64],
        quant::quantize(GgmlType::F32, &norm).unwrap(),
    )
    .unwrap();
    w.add_tensor(
        "odd.weight",
        GgmlType::F16,
        &[40, 3],
        quant::quantize(GgmlType::F16, &odd).unwrap(),
    )
    .unwrap();
    let mut bytes = Vec::new();
    w.write_to(&mut bytes).unwrap();
    (bytes, embd, wq, wk)
}

fn run(
    src: &Gguf,
    target: GgmlType,
    embd: convert::EmbdChoice,
) -> (Gguf, Vec<(usize, usize, String)>) {
    let mut seen = Vec::new();
    let opts = convert::ConvertOptions {
        target: target.into(),
        embd,
    };
    let w = convert::convert(src, &opts, |i, n, info, _| {
        seen.push((i, n, info.name.clone()))
    })
    .unwrap();
    let mut out = Vec::new();
    w.write_to(&mut out).unwrap();
    (Gguf::from_bytes(out).unwrap(), seen)
}

#[test]
fn q4_0_conversion_types_bytes_and_metadata() {
    let (bytes, _embd, wq, wk) = source();
    let src = Gguf::from_bytes(bytes).unwrap();
    let (out, seen) = run(&src, GgmlType::Q4_0, convert::EmbdChoice::Keep);
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[4], (4, 5, "odd.weight".to_string()));

    let ty = |n: &str| out.tensor_info(n).unwrap().ty;
    assert_eq!(ty("token_embd.weight"), GgmlType::Q8_0);
    assert_eq!(ty("blk.0.attn_q.weight"), GgmlType::Q4_0);
    assert_eq!(ty("blk.0.attn_k.weight"), GgmlType::Q4_0);
    assert_eq!(ty("blk.0.attn_norm.weight"), GgmlType::F32);
    assert_eq!(ty("odd.weight"), GgmlType::F16);
    // Kept and copied tensors are byte-identical to the source.
    for n in ["token_embd.weight", "blk.0.attn_norm.weight", "odd.weight"] {
        assert_eq!(
            out.tensor_data(n).unwrap(),
            src.tensor_data(n).unwrap(),
            "{n}"
        );
        assert_eq!(
            out.tensor_info(n).unwrap().dims,
            src.tensor_info(n).unwrap().dims
        );
    }
    // F32 source: quantized directly. Q4_1 source: dequantized to f32, then quantized.
    assert_eq!(
        out.tensor_data("blk.0.attn_q.weight").unwrap(),
        quant::quantize(GgmlType::Q4_0, &wq).unwrap()
    );
    let wk_deq = quant::dequantize_row_to_vec(
        GgmlType::Q4_1,
        src.tensor_data("blk.0.attn_k.weight").unwrap(),
        64,
    )
    .unwrap();
    assert_ne!(
        wk_deq, wk,
        "Q4_1 source should be lossy, else this check proves nothing"
    );
    assert_eq!(
        out.tensor_data("blk.0.attn_k.weight").unwrap(),
        quant::quantize(GgmlType::Q4_0, &wk_deq).unwrap()
    );

    // Metadata copied in order; file type updated; quantization version added.
    assert_eq!(out.get_u32("general.file_type").unwrap(), 2);
    assert_eq!(out.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(out.get_u32("llama.embedding_length").unwrap(), 64);
    assert_eq!(out.get_u32("general.quantization_version").unwrap(), 2);
    let keys: Vec<&str> = out.metadata().iter().map(|kv| kv.0.as_str()).collect();
    assert_eq!(
        &keys[..3],
        [
            "general.architecture",
            "general.file_type",
            "llama.embedding_length"
        ]
    );
}

#[test]
fn embd_option_and_float_targets() {
    let (bytes, embd, _, _) = source();
    let src = Gguf::from_bytes(bytes).unwrap();
    let (out, _) = run(&src, GgmlType::F16, convert::EmbdChoice::To(GgmlType::Q4_1));
    assert_eq!(
        out.tensor_info("token_embd.weight").unwrap().ty,
        GgmlType::Q4_1
    );
    assert_eq!(
        out.tensor_info("blk.0.attn_q.weight").unwrap().ty,
        GgmlType::F16
    );
    assert_eq!(out.get_u32("general.file_type").unwrap(), 1);
    let deq = quant::dequantize_row_to_vec(
        GgmlType::Q8_0,
        src.tensor_data("token_embd.weight").unwrap(),
        embd.len(),
    )
    .unwrap();
    assert_eq!(
        out.tensor_data("token_embd.weight").unwrap(),
        quant::quantize(GgmlType::Q4_1, &deq).unwrap()
    );
    for (t, ft) in [
        (GgmlType::F32, 0),
        (GgmlType::BF16, 32),
        (GgmlType::Q8_0, 7),
        (GgmlType::Q4_1, 3),
    ] {
        let (out, _) = run(&src, t, convert::EmbdChoice::Keep);
        assert_eq!(out.get_u32("general.file_type").unwrap(), ft);
        assert_eq!(out.tensor_info("blk.0.attn_q.weight").unwrap().ty, t);
        // Values survive within the format's precision.
        let q = out.tensor_data("blk.0.attn_q.weight").unwrap();
        let back = quant::dequantize_row_to_vec(t, q, 256).unwrap();
        let orig = quant::dequantize_row_to_vec(
            GgmlType::F32,
            src.tensor_data("blk.0.attn_q.weight").unwrap(),
            256,
        )
        .unwrap();
        let err = back
            .iter()
            .zip(&orig)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err <= 0.1, "{t}: max error {err}");
    }
}
