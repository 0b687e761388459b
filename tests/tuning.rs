//! Tuning as data: the environment knobs (applied only when asked, refused
//! by name when bad), the defaults per adapter class, the one kernel-choice
//! function over the variant table, and the rule that the library reads the
//! environment only in its `from_env` / `with_env` constructors. No GPU.

use std::collections::{BTreeSet, HashMap};

use q4gpu::env::ENV_KNOBS;
use q4gpu::gguf::GgmlType;
use q4gpu::gpu::matvec::{choose, Family, Fetch, MatvecVariant, Op};
use q4gpu::gpu::tuning::{AdapterClass, Tuning};
use q4gpu::gpu::Inputs;

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| m.get(k).cloned()
}

#[test]
fn knobs_apply_and_bad_values_name_the_variable() {
    let t = Tuning::default()
        .with_vars(vars(&[
            ("Q4GPU_EARLY_RPT", "2"),
            ("Q4GPU_DENSE_ROWS", "0"),
            ("Q4GPU_PREFILL_TOKENS", " 64 "),
            ("Q4GPU_EARLY_FETCH", "0"),
        ]))
        .unwrap();
    assert_eq!(t.matvec.early_rpt, 2);
    assert_eq!(t.matvec.dense_rows, 0);
    assert_eq!(t.prefill_tokens, 64);
    assert!(!t.matvec.early_fetch);
    // Untouched fields keep their defaults.
    assert_eq!(t.matvec.late_rpt, Tuning::default().matvec.late_rpt);

    for (var, value) in [
        ("Q4GPU_EARLY_RPT", "3"),
        ("Q4GPU_LATE_RPT", "four"),
        ("Q4GPU_DENSE_ROWS", "257"),
        ("Q4GPU_DENSE_MAX_BLOCKS", "65"),
        ("Q4GPU_PREFILL_TOKENS", "0"),
        ("Q4GPU_RUN_AHEAD", "3"),
        ("Q4GPU_EARLY_FETCH", "yes"),
        ("Q4GPU_STAGED_MIN_ROWS", "-1"),
    ] {
        let e = Tuning::default()
            .with_vars(vars(&[(var, value)]))
            .expect_err(var)
            .to_string();
        assert!(
            e.contains(var) && e.contains(value) && !e.contains('\n'),
            "{e}"
        );
    }
}

#[test]
fn knob_table_is_consistent() {
    let names: BTreeSet<&str> = ENV_KNOBS.iter().map(|k| k.var).collect();
    assert_eq!(names.len(), ENV_KNOBS.len(), "a variable listed twice");
    for k in ENV_KNOBS {
        assert!(
            k.var.starts_with("Q4GPU_") && !k.help.is_empty(),
            "{}",
            k.var
        );
        // Every knob is documented in the README's tuning table.
        let readme = include_str!("../README.md");
        assert!(readme.contains(k.var), "README does not list {}", k.var);
    }
}

#[test]
fn defaults_per_adapter_class() {
    for class in [
        AdapterClass::Nvidia,
        AdapterClass::Amd,
        AdapterClass::Intel,
        AdapterClass::Software,
        AdapterClass::Other,
    ] {
        assert!(Tuning::for_class(class).matvec.auto_int8, "{class:?}");
    }
    // Apple GPUs have no 4-way int8 dot instruction.
    assert!(!Tuning::for_class(AdapterClass::Apple).matvec.auto_int8);
}

/// The variant the default tuning gives SmolLM2's and Llama-3.2-1B's
/// matrices (the names the H100 benchmarks measure).
#[test]
fn default_choices_on_model_shapes() {
    let t = Tuning::default().matvec;
    let (f32_, i8x2) = (Inputs::F32, Inputs::Int8x2);
    use GgmlType::{F16, Q4_0, Q8_0};
    // (format, rows × cols, inputs, op, dense fits, variant)
    type Case = (GgmlType, (u32, u32), Inputs, Op, bool, &'static str);
    let cases: &[Case] = &[
        (
            Q4_0,
            (960, 576),
            f32_,
            Op::Norm,
            true,
            "matvec.staged.q4_0.early.rpt1.norm",
        ),
        (
            Q4_0,
            (576, 576),
            f32_,
            Op::Attn,
            true,
            "matvec.staged.q4_0.early.rpt1.attn",
        ),
        (
            Q4_0,
            (3072, 576),
            f32_,
            Op::Norm,
            true,
            "matvec.staged.q4_0.early.rpt1.norm",
        ),
        (
            Q4_0,
            (576, 1536),
            f32_,
            Op::SwiGlu,
            true,
            "matvec.staged.q4_0.early2.rpt1.swiglu",
        ),
        (
            Q4_0,
            (49152, 576),
            i8x2,
            Op::Norm,
            true,
            "matvec.dense.q4_0.int8x2.norm",
        ),
        // Without the workgroup memory `dense` needs: 4 rows per thread.
        (
            Q4_0,
            (49152, 576),
            i8x2,
            Op::Norm,
            false,
            "matvec.staged.q4_0.early.rpt4.int8x2.norm",
        ),
        (
            Q4_0,
            (3072, 2048),
            i8x2,
            Op::Norm,
            true,
            "matvec.staged.q4_0.late.rpt1.int8x2.norm",
        ),
        (
            Q4_0,
            (16384, 2048),
            i8x2,
            Op::Norm,
            true,
            "matvec.staged.q4_0.late.rpt4.int8x2.norm",
        ),
        (
            Q4_0,
            (128256, 2048),
            i8x2,
            Op::Norm,
            true,
            "matvec.staged.q4_0.late.rpt4.int8x2.norm",
        ),
        // Q8_0 takes 4 rows per thread only from 8 × 8192 rows.
        (
            Q8_0,
            (16384, 2048),
            i8x2,
            Op::Norm,
            true,
            "matvec.staged.q8_0.late.rpt1.int8x2.norm",
        ),
        (
            Q8_0,
            (128256, 2048),
            i8x2,
            Op::Norm,
            true,
            "matvec.staged.q8_0.late.rpt4.int8x2.norm",
        ),
        (
            F16,
            (576, 576),
            f32_,
            Op::Plain,
            true,
            "matvec.staged.f16.late.rpt1",
        ),
    ];
    for &(ty, shape, inputs, op, dense_fits, want) in cases {
        let v = choose(&t, dense_fits, ty, shape, inputs, op);
        assert_eq!(v.name(), want, "{ty} {shape:?}");
        assert!(v.is_valid(), "{want} is not in the variant table");
    }
    // Tuning reaches the other families.
    let mut t2 = t.clone();
    t2.staged_min_rows = u32::MAX;
    let v = choose(&t2, true, Q4_0, (576, 576), f32_, Op::Norm);
    assert_eq!(v.family, Family::Lanes);
    t2.wide_min_blocks = 8;
    let v = choose(&t2, true, Q4_0, (576, 576), f32_, Op::Plain);
    assert_eq!(v.family, Family::Wide);
    // Early fetch off: `late`, and `dense` unaffected.
    t2 = t.clone();
    t2.early_fetch = false;
    let v = choose(&t2, true, Q4_0, (576, 576), f32_, Op::Plain);
    assert_eq!(
        v.family,
        Family::Staged {
            fetch: Fetch::Late,
            rpt: 1
        }
    );
    let v = choose(&t2, true, Q4_0, (49152, 576), f32_, Op::Plain);
    assert_eq!(v.family, Family::Dense);
}

/// Every variant `choose` can return under any tuning is in the table the
/// tests compile and run, and every name is distinct.
#[test]
fn choose_stays_inside_the_variant_table() {
    let table: BTreeSet<String> = MatvecVariant::all().iter().map(|v| v.name()).collect();
    assert_eq!(table.len(), MatvecVariant::all().len());
    let mut seen = BTreeSet::new();
    let tunings = [
        |_: &mut q4gpu::gpu::MatvecTuning| {},
        |t: &mut q4gpu::gpu::MatvecTuning| t.early_fetch = false,
        |t: &mut q4gpu::gpu::MatvecTuning| {
            (
                t.early_rpt,
                t.early_rpt_min_rows,
                t.late_rpt,
                t.late_rpt_min_rows,
            ) = (2, 0, 2, 0)
        },
        |t: &mut q4gpu::gpu::MatvecTuning| t.staged_min_rows = u32::MAX,
        |t: &mut q4gpu::gpu::MatvecTuning| t.wide_min_blocks = 1,
        |t: &mut q4gpu::gpu::MatvecTuning| (t.dense_min_rows, t.dense_max_blocks) = (0, 64),
    ];
    for f in tunings {
        let mut t = Tuning::default().matvec;
        f(&mut t);
        for ty in q4gpu::gpu::matvec::FORMATS {
            for shape in [
                (7, 32),
                (576, 576),
                (576, 1536),
                (49152, 576),
                (16384, 2048),
                (9, 4096),
            ] {
                for inputs in [Inputs::F32, Inputs::Int8, Inputs::Int8x2] {
                    let inputs = if q4gpu::gpu::matvec::RAW_FORMATS.contains(&ty) {
                        inputs
                    } else {
                        Inputs::F32
                    };
                    for op in [Op::Plain, Op::Norm, Op::SwiGlu, Op::Attn] {
                        for dense_fits in [true, false] {
                            let v = choose(&t, dense_fits, ty, shape, inputs, op);
                            assert!(table.contains(&v.name()), "{} not in the table", v.name());
                            seen.insert(v.name());
                        }
                    }
                }
            }
        }
    }
    assert!(
        seen.len() > table.len() / 2,
        "{} of {}",
        seen.len(),
        table.len()
    );
}

/// The library reads the environment in one module, `src/env.rs` (the
/// `from_env` / `with_env` constructors examples and benchmarks call).
#[test]
fn library_reads_the_environment_only_in_env_rs() {
    let src = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
    let mut stack = vec![src.clone()];
    let mut checked = 0;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, line) in text.lines().enumerate() {
                if line.contains("env::var") && !line.trim_start().starts_with("//") {
                    checked += 1;
                    assert!(
                        path == src.join("env.rs"),
                        "{}:{}: reads the environment outside src/env.rs",
                        path.display(),
                        i + 1
                    );
                }
            }
        }
    }
    assert!(
        checked >= 3,
        "found only {checked} reads: the scan is broken"
    );
}
