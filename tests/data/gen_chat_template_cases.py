#!/usr/bin/env python3
"""Writes tests/data/chat_template_cases.json: real chat templates rendered
by Jinja2 the way Hugging Face's apply_chat_template renders them (sandboxed
environment, trim_blocks and lstrip_blocks, loop controls, tojson,
raise_exception), the reference for tests/chat_templates.rs.

    python3 tests/data/gen_chat_template_cases.py models/llama-vocab

The templates are the .jinja files scripts/fetch_llama_vocab.sh extracts from
llama.cpp's models/templates (llama-cpp-python 0.3.36 sdist). Needs jinja2.
"""
import json, sys
from pathlib import Path

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

TEMPLATES = {
    # name: (bos_token, eos_token) as the models' GGUFs name them
    "meta-llama-Llama-3.1-8B-Instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "meta-llama-Llama-3.2-3B-Instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "Qwen-Qwen2.5-7B-Instruct": ("<|endoftext|>", "<|im_end|>"),
    "Qwen-Qwen3-0.6B": ("<|endoftext|>", "<|im_end|>"),
}

CONVERSATIONS = [
    [("user", "What is the capital of France?")],
    [("system", "You are terse."), ("user", "Hi  there\n")],
    [("user", "1+1?"), ("assistant", "2"), ("user", "And 2+2?")],
    [("system", "S"), ("user", "a"), ("assistant", "<think>\nreasoning\n</think>\n\nanswer"), ("user", "b")],
    [("user", "Grüße 👋🏽 日本\tend")],
]


def raise_exception(msg):
    raise jinja2.exceptions.TemplateError(msg)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def main(folder):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    cases = []
    for name, (bos, eos) in TEMPLATES.items():
        source = (Path(folder) / f"{name}.jinja").read_text()
        t = env.from_string(source)
        for conv in CONVERSATIONS:
            for gen in (True, False):
                for thinking in ((True, False) if "Qwen3" in name else (True,)):
                    messages = [{"role": r, "content": c} for r, c in conv]
                    text = t.render(messages=messages, bos_token=bos, eos_token=eos,
                                    add_generation_prompt=gen, enable_thinking=thinking,
                                    date_string="06 Dec 2026")
                    cases.append({"template": name, "bos": bos, "eos": eos, "messages": conv,
                                  "add_generation_prompt": gen, "enable_thinking": thinking,
                                  "date": "06 Dec 2026", "text": text})
    out = Path(__file__).parent / "chat_template_cases.json"
    out.write_text(json.dumps({"jinja2": jinja2.__version__, "cases": cases}, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
