//! Real chat templates (Llama 3.1, Llama 3.2, Qwen2.5, Qwen3, from llama.cpp's
//! models/templates, fetched by scripts/fetch_llama_vocab.sh) rendered by
//! the tokenizer's minijinja path equal Jinja2's renderings with Hugging
//! Face's settings (tests/data/chat_template_cases.json, written by
//! tests/data/gen_chat_template_cases.py): conversations with and without a
//! system turn, multi-turn, Qwen3 reasoning in history, non-ASCII text,
//! with and without the generation prompt and Qwen3's enable_thinking.

mod common;

use q4gpu::tokenizer::{ChatOptions, ChatTurn, Role, Tokenizer, TokenizerError, TokenizerSpec};
use serde_json::Value;

/// A tokenizer whose vocabulary holds just `bos` and `eos`, with `template`.
fn tokenizer(template: &str, bos: &str, eos: &str, add_bos: bool) -> Tokenizer {
    Tokenizer::from_spec(TokenizerSpec {
        model: "gpt2".into(),
        tokens: vec![bos.into(), eos.into()],
        token_types: vec![3, 3],
        bos_id: Some(0),
        eos_id: Some(1),
        add_bos,
        chat_template: Some(template.into()),
        ..Default::default()
    })
    .expect("tokenizer")
}

fn turns(v: &Value) -> Vec<ChatTurn> {
    v.as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            let role = match m[0].as_str().expect("role") {
                "system" => Role::System,
                "user" => Role::User,
                _ => Role::Assistant,
            };
            ChatTurn::new(role, m[1].as_str().expect("content"))
        })
        .collect()
}

fn cases() -> Vec<Value> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/chat_template_cases.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let v: Value = serde_json::from_str(&text).expect("json");
    v["cases"].as_array().expect("cases").clone()
}

fn template(name: &str) -> String {
    let p = common::llama_vocab_path(&format!("{name}.jinja"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn real_templates_render_as_jinja2_does() {
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut names = std::collections::BTreeSet::new();
    for c in &cases {
        let name = c["template"].as_str().expect("template");
        names.insert(name.to_string());
        let (bos, eos) = (c["bos"].as_str().unwrap(), c["eos"].as_str().unwrap());
        let tok = tokenizer(&template(name), bos, eos, false);
        let opts = ChatOptions {
            add_generation_prompt: c["add_generation_prompt"].as_bool().unwrap(),
            enable_thinking: c["enable_thinking"].as_bool().unwrap(),
            date: Some(c["date"].as_str().unwrap().into()),
        };
        let got = tok
            .render_chat(&turns(&c["messages"]), &opts)
            .expect("render");
        let want = c["text"].as_str().unwrap();
        assert_eq!(got, want, "{name}, {:?}, {opts:?}", c["messages"]);
    }
    assert_eq!(names.len(), 4, "{names:?}");
}

/// A tokenizer that adds BOS itself gets the template's text without the
/// leading BOS (llama.cpp's rule), so the prompt does not start with two.
#[test]
fn leading_bos_dropped_when_the_tokenizer_adds_it() {
    let t = template("meta-llama-Llama-3.2-3B-Instruct");
    let msgs = [ChatTurn::new(Role::User, "hi")];
    let with = tokenizer(&t, "<|begin_of_text|>", "<|eot_id|>", false)
        .render_chat(&msgs, &ChatOptions::default())
        .unwrap();
    let without = tokenizer(&t, "<|begin_of_text|>", "<|eot_id|>", true)
        .render_chat(&msgs, &ChatOptions::default())
        .unwrap();
    assert!(
        with.starts_with("<|begin_of_text|><|start_header_id|>system"),
        "{with}"
    );
    assert_eq!(format!("<|begin_of_text|>{without}"), with);
}

/// Without `date`, Llama 3's template asks `strftime_now` for today's date.
#[test]
fn strftime_now_gives_a_date() {
    let t = template("meta-llama-Llama-3.1-8B-Instruct");
    let out = tokenizer(&t, "<|begin_of_text|>", "<|eot_id|>", false)
        .render_chat(&[ChatTurn::new(Role::User, "x")], &ChatOptions::default())
        .unwrap();
    let line = out
        .lines()
        .find(|l| l.starts_with("Today Date: "))
        .expect("date line");
    let date = &line["Today Date: ".len()..];
    let parts: Vec<&str> = date.split(' ').collect();
    assert_eq!(parts.len(), 3, "{date}");
    assert!(
        parts[0].len() == 2 && parts[0].parse::<u32>().is_ok_and(|d| (1..=31).contains(&d)),
        "{date}"
    );
    assert!(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
            .contains(&parts[1]),
        "{date}"
    );
    assert!(parts[2].parse::<u32>().is_ok_and(|y| y >= 2024), "{date}");
}

/// Template errors (a `raise_exception`, bad syntax) are errors naming the
/// template, not panics or silent ChatML.
#[test]
fn template_errors_are_reported() {
    let t = tokenizer(
        "{{ raise_exception('roles must alternate') }}",
        "<s>",
        "</s>",
        false,
    );
    let e = t.render_chat(&[], &ChatOptions::default()).unwrap_err();
    assert!(matches!(e, TokenizerError::ChatTemplate(_)), "{e:?}");
    assert!(e.to_string().contains("roles must alternate"), "{e}");
    let t = tokenizer("{% for m in messages %}", "<s>", "</s>", false);
    let e = t.render_chat(&[], &ChatOptions::default()).unwrap_err();
    assert!(
        e.to_string().starts_with("tokenizer.chat_template: "),
        "{e}"
    );
}
