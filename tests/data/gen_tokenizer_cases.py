#!/usr/bin/env python3
"""Regenerate tests/data/tokenizer_cases.json: reference token ids for SmolLM2.

Reference = Hugging Face `tokenizers` (independent Rust implementation) built from
the GGUF vocabulary and merges, with the pre-tokenizer llama.cpp uses for
`tokenizer.ggml.pre = smollm`: isolate every \\p{N}, then the GPT-2 split regex.
Chat prompts are rendered by the model's own `tokenizer.chat_template` (Jinja2).
Usage: pip install gguf tokenizers jinja2; python3 gen_tokenizer_cases.py [model.gguf]
"""
import json, os, sys
import gguf, jinja2
from tokenizers import Tokenizer, Regex, AddedToken, models, pre_tokenizers, decoders

HERE = os.path.dirname(os.path.abspath(__file__))
path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../../models/SmolLM2-135M-Instruct.Q4_1.gguf")
r = gguf.GGUFReader(path)
f = lambda k: r.fields[k].contents()
assert f("tokenizer.ggml.model") == "gpt2" and f("tokenizer.ggml.pre") == "smollm"
tokens, types = f("tokenizer.ggml.tokens"), f("tokenizer.ggml.token_type")
merges = [tuple(m.split(" ", 1)) for m in f("tokenizer.ggml.merges")]

tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
tok.pre_tokenizer = pre_tokenizers.Sequence([
    pre_tokenizers.Split(Regex(r"\p{N}"), behavior="isolated"),
    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
])
tok.decoder = decoders.ByteLevel()
tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                        for t, ty in zip(tokens, types) if ty in (3, 4)])

SYS = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
def chatml(turns, gen=True):
    return "".join(f"<|im_start|>{r}\n{c}<|im_end|>\n" for r, c in turns) + ("<|im_start|>assistant\n" if gen else "")

plain = [
    "", " ", "  ", "a", "Hello", "Hello world", "Hello, world!", " Hello world ", "hello   world",
    "The quick brown fox jumps over the lazy dog.",
    "0", "7", "42", "123", "1234567890", "3.14159265358979", "-12,345.67e+10", "x1y22z333",
    "Version 2.0.1 released on 2024-11-25 at 10:30", "Call 555-0100 now", "0x7fffffff", "1st 2nd 3rd 4th",
    " 1", "a 1", "1 a", "12 34  56", "￥100 and €2,50", "½ ¼ ² ³ ① ٣ ३ 五",
    "it's", "don't", "they're", "we've", "I'm", "you'll", "he'd", "IT'S", "DON'T", "I'M", "You'Ll",
    "'s", "'", "''", "'s's", "rock 'n' roll", "O'Neil's dog's bone", "'twas", " 's", "x'y", "‘curly’ quotes’s",
    "a\tb", "\t", "\t\t", "a\t\tb", "\tindented", "line1\nline2", "\n", "\n\n", "\n\n\n", "a\n\nb",
    "a\r\nb", "\r\n", "\r\n\r\n", "a \n b", "trailing space ", "trailing spaces   ", "   leading", " \t \n mix",
    "a  b", "a   b", "a    b", "     ", "end\n", "   \n   ", "x \u00a0 y", "em\u2003space", "ideographic\u3000space",
    "fn main() {\n    println!(\"Hello, world!\");\n}\n",
    "let v: Vec<u32> = (0..10).map(|x| x * 2).collect();",
    "impl<'a> Foo<'a> for &'a str { fn f(&self) -> Option<&'a [u8]> { None } }",
    "#[derive(Debug, Clone)]\npub struct S { x: f32 }",
    "def f(x):\n    return x ** 2  # square\n",
    "for i in range(10):\n\tprint(f\"{i:03d}\")",
    "if (a && b || !c) { x += 1; } else { y -= 2; }",
    "SELECT * FROM users WHERE id = 42;",
    "<html><body class=\"main\">Hi</body></html>",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
    "https://example.com/path?q=1&r=2#frag", "user@example.com", "C:\\Users\\name\\file.txt",
    "// comment\n/* block */", "x==y!=z<=w>=v", "a->b=>c::d", "...", "!!!???", "--- ***", "¡¿", "@#$%^&*()_+",
    "café", "naïve résumé", "Ångström", "e\u0301", "cafe\u0301 au lait", "Größe", "ﬁ ligature", "Ελληνικά", "Привет, мир!",
    "日本語のテキスト", "中文文本测试", "你好，世界！", "한국어 텍스트", "こんにちは世界", "漢字かなカナ",
    "مرحبا بالعالم", "שלום עולם", "हिन्दी भाषा", "ภาษาไทย", "Tiếng Việt có dấu",
    "😀", "Hello 😀 world", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇫🇷🇩🇪", "a😀b😀c", "😀😀😀", "✨ sparkle ✨",
    "English русский 中文 العربية 123", "Mixed: αβγ ABC абв 123 ☃", "Ω≈ç√∫˜µ≤≥÷", "™®©", "→←↑↓",
    "ALLCAPS SENTENCE HERE", "camelCaseIdentifier", "snake_case_identifier", "kebab-case-id", "CONSTANT_VALUE_42",
    "Mr. Smith went to Washington.", "The year 1999 was 25 years ago.", "Temperature: -3.5°C",
    "a" * 50, " " * 20, "ab" * 40, "=" * 30, "\n" * 6, "9" * 25,
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\nhi<|im_end|>",
    "text<|endoftext|>more", "<|im_start|><|im_end|>", "< |im_start| >", "<|im_start", "<filename>main.rs<file_sep>",
    "<jupyter_code>print(1)<jupyter_output>", "<|endoftext|><|endoftext|>", " <|im_end|> ",
    "<<|im_end|>>", "<|im_end|>\n<|im_start|>assistant\n",
    "\x00", "\x04", "a\x06b\x13c", "x\U00050000y", "\x7f\x1b[0m", "\ufeffBOM", "zero\u200bwidth", "\U0001d400\U0001d7d8",
]
long = ("In 1905, Einstein published four papers. The first explained the photoelectric effect; "
        "the second, Brownian motion; the third, special relativity; the fourth, E=mc². ") * 12
plain.append(long)
plain.append("\n".join(f"    let x{i} = {i * 37 % 101};  // ok" for i in range(40)))
# Deterministic random mixes of every character class the pre-tokenizer cares about.
import random
rng = random.Random(1234)
atoms = list("aZéßЖж中語カ한ا") + list("0795½٣²") + [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000"] + \
    list("'.,!?;:-_()[]{}<>/\\\"#$%&*+=@^`|~") + ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "e\u0301",
    "😀", "👍🏽", "👨‍👩‍👧", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<file_sep>", "fn", " the", "Hello", "123456"]
for _ in range(60):
    plain.append("".join(rng.choice(atoms) for _ in range(rng.randint(1, 30))))

chats = [
    chatml([("system", SYS), ("user", "What is the capital of France?")]),
    chatml([("system", "You are a pirate."), ("user", "Hello!"), ("assistant", "Arr, hello!"), ("user", "Tell me a joke.")]),
    chatml([("system", SYS), ("user", "Write a Rust function that adds two numbers.")]),
    chatml([("system", SYS), ("user", "Translate 'good morning' into 日本語 😀")]),
    chatml([("user", "hi")]),
    chatml([("system", SYS), ("user", "  spaces  \n\n and lines\t")], gen=False),
]

cases = []
for s in plain:
    for special in (True, False):
        tok.encode_special_tokens = not special
        ids = tok.encode(s, add_special_tokens=False).ids
        cases.append({"text": s, "parse_special": special, "ids": ids})
def encode_chats():
  for s in chats:
    tok.encode_special_tokens = False
    cases.append({"text": s, "parse_special": True, "ids": tok.encode(s, add_special_tokens=False).ids})
    tok.encode_special_tokens = True
    cases.append({"text": s, "parse_special": False, "ids": tok.encode(s, add_special_tokens=False).ids})
  tok.encode_special_tokens = False

# Chat prompts from the real template, for Tokenizer::chat_prompt.
template = jinja2.Environment().from_string(f("tokenizer.chat_template"))
conversations = [
    (None, [("user", "What is the capital of France?")]),
    ("You are a pirate.", [("user", "Hello!"), ("assistant", "Arr, hello!"), ("user", "Tell me a joke.")]),
    (None, [("user", "hi"), ("assistant", "Hello! How can I help?"), ("user", "2+2?")]),
    (None, [("system", "Be brief."), ("user", "Why is the sky blue?")]),
    (None, []),
]
chat_cases = []
for system, turns in conversations:
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": r, "content": c} for r, c in turns]
    text = template.render(messages=msgs, add_generation_prompt=True)
    chat_cases.append({"system": system, "turns": turns, "text": text})
    chats.append(text)

encode_chats()

# Deduplicate (parse_special is irrelevant for texts without special-token text).
seen, out = set(), []
for c in cases:
    key = (c["text"], c["parse_special"])
    special_text = any(tokens[i] in c["text"] for i, ty in enumerate(types) if ty in (3, 4))
    if not c["parse_special"] and not special_text:
        continue
    if key not in seen:
        seen.add(key)
        # False where the vocabulary lacks a byte of the text (such bytes are dropped).
        c["lossless"] = tok.decode(c["ids"], skip_special_tokens=False) == c["text"]
        out.append(c)
meta = {"reference": f"huggingface tokenizers (python) built from GGUF vocab+merges; Split(\\p{{N}}, isolated) + ByteLevel(add_prefix_space=False)",
        "model": os.path.basename(path), "n_vocab": len(tokens), "n_merges": len(merges),
        "add_bos_token": bool(f("tokenizer.ggml.add_bos_token")), "chat_template": f("tokenizer.chat_template")}
meta["default_system"] = SYS
with open(os.path.join(HERE, "tokenizer_cases.json"), "w", encoding="utf-8") as fh:
    dump = lambda x: json.dumps(x, ensure_ascii=False)
    fh.write('{"meta": %s,\n"chat_cases": [\n%s\n],\n"cases": [\n%s\n]}\n' % (
        dump(meta), ",\n".join(map(dump, chat_cases)), ",\n".join(map(dump, out))))
print(len(out), "cases,", sum(not c["lossless"] for c in out), "lossy,", len(chat_cases), "chat cases")
