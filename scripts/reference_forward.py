#!/usr/bin/env python3
"""Independent numpy oracle for the llama forward pass of q4gpu's CPU model.

Reads a GGUF file with the `gguf` PyPI package (dequantizing every weight
with gguf.quants.dequantize, computing in float64), runs greedy decoding for
a few prompts and writes what the Rust tests compare against:

  * a JSON fixture: per prompt the prompt ids, the greedy tokens, the smallest
    top-1/top-2 logit margin seen, and a summary of the first-step logits
    (top-5 ids and values, L2 norm);
  * a binary file with the full first-step logits (float32 little endian,
    concatenated) of the prompts whose "full_logits_index" is set.

Nothing here is shared with the Rust code: the tokenizer below is a small
byte-level BPE over the GGUF vocab and merges (enough for ASCII prompts), and
the forward pass follows the llama architecture as written in GGUF by
llama.cpp's convert script (RoPE on adjacent pairs, since Q/K rows are
permuted at conversion).

Usage:
  pip install gguf numpy
  python3 scripts/reference_forward.py MODEL.gguf \
      --out tests/data/model_reference.json \
      --logits-out tests/data/model_reference_logits.bin --steps 64
  python3 scripts/reference_forward.py MODEL.gguf --ids 1,2,3 --steps 8
"""

import argparse
import json
import re
import sys

import numpy as np
import gguf

# ---------------------------------------------------------------- GGUF loading


def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def load_model(path):
    reader = gguf.GGUFReader(path)
    arch = field(reader, "general.architecture")
    if arch != "llama":
        sys.exit(f"unsupported architecture {arch!r}")
    n_heads = int(field(reader, "llama.attention.head_count"))
    cfg = {
        "n_layers": int(field(reader, "llama.block_count")),
        "dim": int(field(reader, "llama.embedding_length")),
        "ffn_dim": int(field(reader, "llama.feed_forward_length")),
        "n_heads": n_heads,
        "n_kv_heads": int(field(reader, "llama.attention.head_count_kv", n_heads)),
        "rope_base": float(field(reader, "llama.rope.freq_base", 10000.0)),
        "eps": float(field(reader, "llama.attention.layer_norm_rms_epsilon")),
    }
    cfg["head_dim"] = cfg["dim"] // n_heads

    weights = {}
    for t in reader.tensors:
        # gguf's numpy shape is reversed ggml order: (rows, cols) for matrices.
        w = gguf.quants.dequantize(t.data, t.tensor_type)
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        weights[t.name] = np.asarray(w, dtype=np.float64).reshape(shape)
    if "output.weight" not in weights:
        weights["output.weight"] = weights["token_embd.weight"]  # tied head
    tokens = field(reader, "tokenizer.ggml.tokens")
    merges = field(reader, "tokenizer.ggml.merges")
    return cfg, weights, tokens, merges


# ------------------------------------------------------------------ tokenizer


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character table."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


class Bpe:
    """Byte-level BPE for ASCII text; special tokens written literally."""

    # GPT-2 style split (ASCII approximation of the smollm pre-tokenizer,
    # which also splits digits one by one).
    SPLIT = re.compile(
        r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+|[0-9]| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+"
    )

    def __init__(self, tokens, merges):
        self.ids = {t: i for i, t in enumerate(tokens)}
        self.ranks = {tuple(m.split(" ")): r for r, m in enumerate(merges)}
        self.byte_map = bytes_to_unicode()
        self.specials = [t for t in tokens if t.startswith("<|") and t.endswith("|>")]

    def encode_word(self, word):
        parts = [self.byte_map[b] for b in word.encode("utf-8")]
        while len(parts) > 1:
            best = None
            for i in range(len(parts) - 1):
                r = self.ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            i = best[1]
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        return [self.ids[p] for p in parts]

    def encode(self, text):
        out = []
        pattern = "(" + "|".join(re.escape(s) for s in self.specials) + ")"
        for chunk in re.split(pattern, text):
            if not chunk:
                continue
            if chunk in self.ids and chunk in self.specials:
                out.append(self.ids[chunk])
                continue
            for word in self.SPLIT.findall(chunk):
                out.extend(self.encode_word(word))
        return out


# -------------------------------------------------------------- forward pass


def rmsnorm(x, g, eps):
    return x / np.sqrt(np.mean(x * x) + eps) * g


def rope(x, pos, base):
    """Rotate adjacent pairs (x[2i], x[2i+1]) of each head by pos * base^(-2i/d)."""
    d = x.shape[-1]
    i = np.arange(d // 2, dtype=np.float64)
    theta = pos * base ** (-2.0 * i / d)
    c, s = np.cos(theta), np.sin(theta)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


class Model:
    def __init__(self, cfg, w):
        self.cfg, self.w = cfg, w
        self.reset()

    def reset(self):
        self.k_cache = [[] for _ in range(self.cfg["n_layers"])]
        self.v_cache = [[] for _ in range(self.cfg["n_layers"])]

    def forward(self, token, pos):
        c, w = self.cfg, self.w
        hd, nh, nkv = c["head_dim"], c["n_heads"], c["n_kv_heads"]
        x = w["token_embd.weight"][token].copy()
        for l in range(c["n_layers"]):
            p = f"blk.{l}."
            h = rmsnorm(x, w[p + "attn_norm.weight"], c["eps"])
            q = (w[p + "attn_q.weight"] @ h).reshape(nh, hd)
            k = (w[p + "attn_k.weight"] @ h).reshape(nkv, hd)
            v = (w[p + "attn_v.weight"] @ h).reshape(nkv, hd)
            q, k = rope(q, pos, c["rope_base"]), rope(k, pos, c["rope_base"])
            assert len(self.k_cache[l]) == pos
            self.k_cache[l].append(k)
            self.v_cache[l].append(v)
            K = np.stack(self.k_cache[l])  # [pos+1, nkv, hd]
            V = np.stack(self.v_cache[l])
            att = np.empty((nh, hd))
            group = nh // nkv
            for hh in range(nh):
                kv = hh // group
                scores = K[:, kv, :] @ q[hh] / np.sqrt(hd)
                scores = np.exp(scores - scores.max())
                scores /= scores.sum()
                att[hh] = scores @ V[:, kv, :]
            x = x + w[p + "attn_output.weight"] @ att.reshape(-1)
            h = rmsnorm(x, w[p + "ffn_norm.weight"], c["eps"])
            gate = w[p + "ffn_gate.weight"] @ h
            up = w[p + "ffn_up.weight"] @ h
            silu = gate / (1.0 + np.exp(-gate))
            x = x + w[p + "ffn_down.weight"] @ (silu * up)
        x = rmsnorm(x, w["output_norm.weight"], c["eps"])
        return w["output.weight"] @ x


def greedy(model, prompt, steps):
    """Feed the prompt, then `steps` greedy tokens. Returns tokens, first logits, min margin."""
    model.reset()
    logits = None
    for pos, tok in enumerate(prompt):
        logits = model.forward(tok, pos)
    first = logits.copy()
    out, margin = [], float("inf")
    pos = len(prompt)
    for _ in range(steps):
        top2 = np.argsort(logits)[-2:]
        margin = min(margin, float(logits[top2[1]] - logits[top2[0]]))
        nxt = int(np.argmax(logits))
        out.append(nxt)
        if len(out) == steps:
            break
        logits = model.forward(nxt, pos)
        pos += 1
    return out, first, margin


# ------------------------------------------------------------------- prompts

CHAT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def chatml(user):
    return (
        f"<|im_start|>system\n{CHAT_SYSTEM}<|im_end|>\n"
        f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )


PROMPTS = [
    ("capital", "The capital of France is", True),
    ("story", "Once upon a time, there was a little", False),
    ("code", "def fibonacci(n):\n", False),
    ("chat_capital", chatml("What is the capital of France?"), True),
    ("chat_poem", chatml("Write a short poem about the sea."), False),
    ("one_token", "Hello", False),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--ids", help="comma-separated prompt ids (prints instead of writing)")
    ap.add_argument("--out", help="JSON fixture to write")
    ap.add_argument("--logits-out", help="binary f32 first-step logits to write")
    args = ap.parse_args()

    cfg, weights, tokens, merges = load_model(args.model)
    model = Model(cfg, weights)

    if args.ids:
        ids = [int(s) for s in args.ids.split(",")]
        toks, first, margin = greedy(model, ids, args.steps)
        top = np.argsort(first)[::-1][:5]
        print("greedy:", toks)
        print("top5:", [(int(i), float(first[i])) for i in top], "margin:", margin)
        return

    bpe = Bpe(tokens, merges)
    fixture = {
        "model": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "generator": "scripts/reference_forward.py (numpy float64 over gguf-dequantized weights)",
        "steps": args.steps,
        "vocab_size": len(tokens),
        "prompts": [],
    }
    full = []
    for name, text, keep_logits in PROMPTS:
        ids = bpe.encode(text)
        toks, first, margin = greedy(model, ids, args.steps)
        top = np.argsort(first)[::-1][:5]
        entry = {
            "name": name,
            "text": text,
            "prompt_ids": ids,
            "greedy": toks,
            "min_top2_margin": margin,
            "first_logits": {
                "top5_ids": [int(i) for i in top],
                "top5_values": [float(first[i]) for i in top],
                "l2_norm": float(np.linalg.norm(first)),
                "full_logits_index": len(full) if keep_logits else None,
            },
        }
        if keep_logits:
            full.append(first.astype("<f4"))
        fixture["prompts"].append(entry)
        print(name, ids, "->", toks[:16], "... margin", round(margin, 4), flush=True)
        print("   ", repr("".join(tokens[t] for t in toks)), flush=True)

    if args.out:
        with open(args.out, "w") as f:
            json.dump(fixture, f, indent=1)
            f.write("\n")
    if args.logits_out:
        with open(args.logits_out, "wb") as f:
            for arr in full:
                f.write(arr.tobytes())


if __name__ == "__main__":
    main()
