#!/usr/bin/env python3
"""Regenerate tests/data/tokenizer_tricky.json: llama.cpp's token ids for a
corpus of tricky strings, for every vocabulary type q4gpu supports.

Reference = llama.cpp's own `llama_tokenize` (add_special = false,
parse_special off and on) through tokenize_ids.cpp in this directory, built
against llama.cpp 0c1e57098 (the llama-cpp-python 0.3.36 sdist's
vendor/llama.cpp). For each id list the fixture also records whether
llama.cpp's `llama_detokenize` (remove_special = false, unparse_special =
true) gives the string back.

Usage: python3 gen_tokenizer_tricky.py TOKENIZE_IDS [CRATE_ROOT]
  TOKENIZE_IDS  the built tokenize_ids binary
  CRATE_ROOT    where models/ lives (default: two folders up from here)
Only the standard library is needed.
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
LLAMA_CPP = "0c1e57098bba43ac29e6e3b677cdceebdd22334f"

# (name, file under models/, the vocabulary's own special-token texts)
VOCABS = [
    ("llama-bpe", "llama-vocab/ggml-vocab-llama-bpe.gguf",
     ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]),
    ("qwen2", "llama-vocab/ggml-vocab-qwen2.gguf", ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]),
    ("gpt-2", "llama-vocab/ggml-vocab-gpt-2.gguf", ["<|endoftext|>"]),
    ("starcoder", "llama-vocab/ggml-vocab-starcoder.gguf",
     ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>"]),
    ("refact", "llama-vocab/ggml-vocab-refact.gguf",
     ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>"]),
    ("llama-spm", "llama-vocab/ggml-vocab-llama-spm.gguf", ["<s>", "</s>", "<unk>"]),
    ("smollm", "SmolLM2-135M-Instruct.Q4_1.gguf", ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]),
]

LONG_WORD = "".join("supercalifragilistic"[i % 20] for i in range(230))
PY = "def f(x):\n    if x > 0:\n        return x * 2\n    else:\n\treturn -x  # tab\n\n\nprint(f(21))\n"
RUST = "fn main() {\n    let v: Vec<u32> = (0..10).map(|i| i * i).collect();\n    println!(\"{v:?}\");\n}\n"
JSON = '{"name": "q4gpu", "ids": [1, 22, 333], "ok": true, "nested": {"a": null}}'
SHELL = "#!/bin/sh\nset -eu\nfor f in *.txt; do wc -l \"$f\" | awk '{print $1}'; done 2>&1 >/dev/null\n"
HTML = '<!DOCTYPE html>\n<html><body class="x">\n  <p>Hi &amp; bye&nbsp;!</p><br/>\n</body></html>'

CORPUS = [
    # whitespace
    "", " ", "  ", "   ", " " * 7, " " * 20, "\t", "\t\t", "\n", "\n\n", "\n\n\n",
    " \n", "\n ", " \t\n \t", "hello world", "  leading", "trailing   ", "  both  ",
    "a\tb\t\tc", "word\n\nword\n", "one  two   three    four     five", "x" + " " * 13 + "y",
    "line1\r\nline2\r\n", "lone\rcarriage\rreturns", "\r\n\r\n", " \r\n  \r",
    # digits
    "0", "12", "123", "1234", "12345678901234567890", "3.14159", "1,000,000", "1_000_000",
    "2024-06-01T12:34:56Z", "abc123def4567", "v1.2.3-rc4", "-0.5e-10", " 42 ", "٣٤٥ ३४५ ①②",
    # contractions
    "it's", "don't", "we're they've I'm you'll he'd", "IT'S DON'T WE'LL SHE'D",
    "It'S We'Re You'Ll", "don\u2019t won\u2019t it\u2019s", "don't\ndon't\n don't",
    "'s 't 're", "''quoted'' ''", "rock'n'roll o'clock y'all'd've",
    # code
    PY, RUST, JSON, SHELL, HTML,
    # scripts
    "中文分词测试：你好，世界！", "日本語のテキスト、カタカナとひらがなと漢字。",
    "한국어 텍스트 토큰화 테스트입니다.", "مرحبا بالعالم، هذا اختبار.", "שלום עולם, זה מבחן.",
    "नमस्ते दुनिया, यह परीक्षण है।", "สวัสดีชาวโลก นี่คือการทดสอบ", "Tiếng Việt có dấu: ệ ở ữ ặ",
    "e\u0301 cafe\u0301 n\u0303 a\u0300\u0301\u0302", "Ñandú ÅÄÖ ß ǅ ﬁ",
    # emoji
    "😀😃😄", "👨‍👩‍👧‍👦 family", "👍🏻👍🏿 skin", "🇺🇸🇯🇵🇪🇺 flags", "1️⃣ #️⃣ keycaps",
    "🏳️‍🌈 rainbow ❤️ heart",
    # invisible and odd characters
    "no\u00a0break\u00a0space", "zero\u200bwidth\u200cjoiner\u200d", "\ufeffBOM at start",
    "soft\u00adhyphen\u2028line\u2029para", "\u3000ideographic\u3000space",
    # symbols
    "∑∫√∞ ≤≥≠ ± × ÷ π²", "$100 €50 £20 ¥1000 ₹500 ₿0.1", "©®™ §¶ † ‡ • …",
    "https://example.com/path?q=1&r=two#frag", "mailto:user.name+tag@example.co.uk",
    # long and repeated
    LONG_WORD, "a" * 250, "=" * 64, "ab" * 60, "\U0001f600" * 30,
    "!!!???...", "----", "...---...", "?!?!", ",,,;;;:::",
    # special-token text embedded in ordinary text
    "<|begin_of_text|>Hello<|eot_id|>",
    "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|end_of_text|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n",
    "text<|endoftext|>more text <|endoftext|> end",
    "<fim_prefix>def f():<fim_suffix>\n    pass<fim_middle>",
    "<s>[INST] hello [/INST] hi</s>",
    "before <unk> after",
    " <s> spaced </s> ",
    "<|im_start|><|im_start|><|im_end|>",
    "almost <|im_start| and <|endoftext and <s",
    "mixed <|eot_id|><s><|im_end|><|endoftext|></s> all",
]

def corpus_bytes(strings):
    out = bytearray()
    for s in strings:
        b = s.encode("utf-8")
        out += b"%d\n" % len(b) + b + b"\n"
    return bytes(out)

def run_tool(tool, model, corpus_path, strings):
    # llama.cpp's warnings (e.g. a token type it overrides) pass through to stderr.
    proc = subprocess.run([tool, model, corpus_path], stdout=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        sys.exit(f"{tool} {model}: exit {proc.returncode}")
    lines = proc.stdout.decode("ascii").splitlines()
    head = lines[0].split()
    assert head[0] == "vocab", head
    eog_line = lines[1].split()
    assert eog_line[0] == "eog", eog_line
    eog = [int(t) for t in eog_line[1].split(",")] if len(eog_line) > 1 else []
    ids = {False: [None] * len(strings), True: [None] * len(strings)}
    trip = {False: [None] * len(strings), True: [None] * len(strings)}
    for line in lines[2:]:
        index, mode, id_list, detok = line.split("\t")
        i, ps = int(index), mode == "1"
        ids[ps][i] = [int(t) for t in id_list.split(",")] if id_list else []
        trip[ps][i] = bytes.fromhex(detok) == strings[i].encode("utf-8")
    assert all(v is not None for m in (False, True) for v in ids[m]), "missing output lines"
    return int(head[1]), int(head[2]), eog, ids, trip

def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    tool = sys.argv[1]
    root = sys.argv[2] if len(sys.argv) == 3 else os.path.join(HERE, "..", "..")
    assert len(set(CORPUS)) == len(CORPUS), "duplicate corpus strings"
    with tempfile.NamedTemporaryFile(suffix=".corpus", delete=False) as f:
        f.write(corpus_bytes(CORPUS))
        corpus_path = f.name
    vocabs = []
    try:
        for name, file, specials in VOCABS:
            vtype, n_tokens, eog, ids, trip = run_tool(tool, os.path.join(root, "models", file), corpus_path, CORPUS)
            vocabs.append({
                "name": name, "file": os.path.basename(file), "vocab_type": vtype, "n_tokens": n_tokens,
                "eog": eog, "specials": specials,
                "plain": ids[False], "special": ids[True],
                "plain_roundtrip": trip[False], "special_roundtrip": trip[True],
            })
            print(f"{name}: type {vtype}, {n_tokens} tokens, {len(CORPUS)} strings", file=sys.stderr)
    finally:
        os.unlink(corpus_path)
    doc = {
        "generator": "tests/data/gen_tokenizer_tricky.py + tokenize_ids.cpp",
        "llama_cpp": LLAMA_CPP,
        "corpus": CORPUS,
        "vocabs": vocabs,
    }
    with open(os.path.join(HERE, "tokenizer_tricky.json"), "w", encoding="ascii") as f:
        f.write(dump(doc))

def dump(value, indent=""):
    """JSON with one line per corpus string and per id list (readable, small diffs)."""
    inner = indent + "  "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {dump(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}" + ("\n" if not indent else "")
    if isinstance(value, list) and any(isinstance(v, (list, dict, str)) for v in value):
        return "[\n" + ",\n".join(inner + dump(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))

if __name__ == "__main__":
    main()
