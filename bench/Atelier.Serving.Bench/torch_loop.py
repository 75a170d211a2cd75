"""PyTorch peer of bench/serving.sh: a plain generation loop over the same weights and requests.

A Mistral-shaped model (RMSNorm, rotary embeddings as mistral-inference applies them, grouped-query
attention, SwiGLU) as a torch.nn.Module in float32, loaded from the safetensors file the C# bench wrote
(parsed here with numpy: Debian ships no python3-safetensors). Requests are served one after another,
each with its own KV cache: the prompt in one forward pass, then one token per pass, greedy, exactly
max_tokens tokens, as the engine serves them (no stop token).

Usage: python3 torch_loop.py WEIGHTS.safetensors JOB.json  ->  one JSON line on stdout.
JOB.json: {"args": {dim, n_layers, head_dim, hidden_dim, n_heads, n_kv_heads, norm_eps, vocab_size,
rope_theta}, "threads": N, "max_tokens": T, "prompts": [[...], ...]}
"""
import json
import struct
import sys
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    payload = np.fromfile(path, dtype=np.uint8, offset=8 + n)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = payload[begin:end]
        if info["dtype"] == "F32":
            values = raw.view(np.float32)
        elif info["dtype"] == "BF16":
            # bf16 is the upper half of a float32: widen exactly. PyTorch 1.13's CPU kernels are fastest
            # in float32, so the peer computes on the same values in its best precision.
            values = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"{name}: unsupported dtype {info['dtype']}")
        tensors[name] = torch.from_numpy(values.reshape(info["shape"]))
    return tensors


class RMSNorm(nn.Module):
    def __init__(self, weight, eps):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def linear(weight):
    out_features, in_features = weight.shape
    layer = nn.Linear(in_features, out_features, bias=False)
    layer.weight = nn.Parameter(weight, requires_grad=False)
    return layer


def apply_rotary(x, freqs):
    # x [seq, heads, head_dim]; freqs [seq, head_dim / 2] complex: pairs (2i, 2i+1) rotate together.
    xc = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * freqs[:, None, :]).flatten(-2)


class Block(nn.Module):
    def __init__(self, w, l, a):
        super().__init__()
        p = f"layers.{l}."
        self.n_heads, self.n_kv, self.head_dim = a["n_heads"], a["n_kv_heads"], a["head_dim"]
        self.wq = linear(w[p + "attention.wq.weight"])
        self.wk = linear(w[p + "attention.wk.weight"])
        self.wv = linear(w[p + "attention.wv.weight"])
        self.wo = linear(w[p + "attention.wo.weight"])
        self.w1 = linear(w[p + "feed_forward.w1.weight"])
        self.w2 = linear(w[p + "feed_forward.w2.weight"])
        self.w3 = linear(w[p + "feed_forward.w3.weight"])
        self.attention_norm = RMSNorm(w[p + "attention_norm.weight"], a["norm_eps"])
        self.ffn_norm = RMSNorm(w[p + "ffn_norm.weight"], a["norm_eps"])

    def forward(self, x, freqs, start, cache_k, cache_v):
        seq = x.shape[0]
        h = self.attention_norm(x)
        q = apply_rotary(self.wq(h).view(seq, self.n_heads, self.head_dim), freqs)
        k = apply_rotary(self.wk(h).view(seq, self.n_kv, self.head_dim), freqs)
        v = self.wv(h).view(seq, self.n_kv, self.head_dim)
        cache_k[start:start + seq] = k
        cache_v[start:start + seq] = v
        keys = cache_k[:start + seq].repeat_interleave(self.n_heads // self.n_kv, dim=1)
        values = cache_v[:start + seq].repeat_interleave(self.n_heads // self.n_kv, dim=1)
        scores = torch.matmul(q.transpose(0, 1), keys.permute(1, 2, 0)) / self.head_dim ** 0.5
        if seq > 1:
            mask = torch.full((seq, start + seq), float("-inf")).triu(start + 1)
            scores = scores + mask
        attn = torch.matmul(scores.softmax(-1), values.transpose(0, 1))
        x = x + self.wo(attn.transpose(0, 1).reshape(seq, -1))
        h = self.ffn_norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class Mistral(nn.Module):
    def __init__(self, w, a, max_positions):
        super().__init__()
        self.a = a
        self.tok_embeddings = nn.Embedding.from_pretrained(w["tok_embeddings.weight"], freeze=True)
        self.layers = nn.ModuleList(Block(w, l, a) for l in range(a["n_layers"]))
        self.norm = RMSNorm(w["norm.weight"], a["norm_eps"])
        self.output = linear(w["output.weight"])
        inv = 1.0 / (a["rope_theta"] ** (torch.arange(0, a["head_dim"], 2, dtype=torch.float64) / a["head_dim"]))
        angles = torch.outer(torch.arange(max_positions, dtype=torch.float64), inv)
        self.freqs = torch.polar(torch.ones_like(angles), angles).to(torch.complex64)

    def new_cache(self, positions):
        a = self.a
        shape = (a["n_layers"], positions, a["n_kv_heads"], a["head_dim"])
        return torch.empty(shape), torch.empty(shape)

    def forward(self, tokens, start, cache):
        x = self.tok_embeddings(tokens)
        freqs = self.freqs[start:start + tokens.shape[0]]
        for l, layer in enumerate(self.layers):
            x = layer(x, freqs, start, cache[0][l], cache[1][l])
        return self.output(self.norm(x[-1:]))[0]


def main():
    weights_path, job_path = sys.argv[1], sys.argv[2]
    with open(job_path) as f:
        job = json.load(f)
    torch.set_num_threads(job["threads"])
    a = job["args"]
    prompts, max_tokens = job["prompts"], job["max_tokens"]
    positions = max(len(p) for p in prompts) + max_tokens

    t = time.perf_counter()
    model = Mistral(load_safetensors(weights_path), a, positions)
    model.eval()
    load_s = time.perf_counter() - t

    def generate(prompt, tokens):
        cache = model.new_cache(len(prompt) + tokens)
        logits = model(torch.tensor(prompt), 0, cache)
        first = time.perf_counter()
        out = [int(logits.argmax())]
        for _ in range(tokens - 1):
            logits = model(torch.tensor(out[-1:]), len(prompt) + len(out) - 1, cache)
            out.append(int(logits.argmax()))
        return out, first

    with torch.inference_mode():
        generate(prompts[0][:4], 2)  # warm-up: first-call allocations and thread pool start
        total = 0
        decode_s = 0.0
        t = time.perf_counter()
        for prompt in prompts:
            out, first = generate(prompt, max_tokens)
            decode_s += time.perf_counter() - first
            total += len(out)
        elapsed = time.perf_counter() - t

    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_s": load_s,
        "requests": len(prompts),
        "tokens": total,
        "seconds": elapsed,
        "tokens_per_s": total / elapsed,
        "decode_tokens_per_s": len(prompts) * (max_tokens - 1) / decode_s,
    }))


if __name__ == "__main__":
    main()
