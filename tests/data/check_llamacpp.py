#!/usr/bin/env python3
"""Cross-check tokenizer_cases.json against llama.cpp itself (llama_tokenize via
the CPU library in the `llama-cpp-cffi` wheel, loaded vocab-only).

pip install --no-deps llama-cpp-cffi cffi. Its library is built with GCC 14; on
an older libstdc++ preload a shim defining `__cxa_call_terminate` (calls
std::terminate), e.g. LD_PRELOAD=/tmp/libcxa_shim.so.
Usage: python3 check_llamacpp.py [model.gguf]
"""
import glob, importlib.util, json, os, sys

HERE = os.path.dirname(os.path.abspath(__file__))
path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../../models/SmolLM2-135M-Instruct.Q4_1.gguf")
pkg = os.path.dirname(importlib.util.find_spec("llama").origin)
so = glob.glob(os.path.join(pkg, "_llama_cpp_cpu*.so"))[0]
spec = importlib.util.spec_from_file_location("_llama_cpp_cpu", so)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
lib, ffi = mod.lib, mod.ffi
lib.llama_backend_init()
params = lib.llama_model_default_params()
params.vocab_only = True
vocab = lib.llama_model_get_vocab(lib.llama_model_load_from_file(path.encode(), params))

def tokenize(text, parse_special):
    b = text.encode()
    buf = ffi.new("llama_token[]", len(b) + 16)
    n = lib.llama_tokenize(vocab, b, len(b), buf, len(b) + 16, False, parse_special)
    return [buf[i] for i in range(n)]

cases = json.load(open(os.path.join(HERE, "tokenizer_cases.json"), encoding="utf-8"))["cases"]
bad = [c for c in cases if tokenize(c["text"], c["parse_special"]) != c["ids"]]
for c in bad:
    print("DIFF", repr(c["text"]), c["parse_special"], c["ids"], tokenize(c["text"], c["parse_special"]))
print(f"llama.cpp agrees on {len(cases) - len(bad)}/{len(cases)} cases")
sys.exit(1 if bad else 0)
