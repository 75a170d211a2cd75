# PyTorch reference for bench/train.sh: the same LoRA fine-tuning step as Atelier's LoraTrainer, on the
# same safetensors weights, adapter initialisation and tokens that the bench wrote for both engines.
#   fp32; Mistral block (RMSNorm, GQA attention with RoPE, SwiGLU); LoRA on the projections the adapter
#   file holds, y = x·Wᵀ + (alpha/r)·(x·Aᵀ)·Bᵀ; mean cross-entropy over every position; backward;
#   global-norm clipping; torch.optim.AdamW with the same hyper-parameters and learning-rate schedule.
# Protocol (stdin/stdout, one line each): it prints "ready <first-step loss>" once loaded and warmed up;
# then for each "run N" line it trains N steps and prints the elapsed seconds; "quit" ends it.
import json
import math
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise SystemExit(f"{path}: {name} is {info['dtype']}, the bench writes F32")
        lo, hi = info["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data, dtype="<f4", count=(hi - lo) // 4, offset=lo).copy()).view(*info["shape"])
    return out


def main():
    directory, threads = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(threads)
    p = json.load(open(f"{directory}/bench.json"))
    dim, n_layers, head_dim, n_heads, n_kv = p["dim"], p["n_layers"], p["head_dim"], p["n_heads"], p["n_kv_heads"]
    eps, theta, scaling = p["norm_eps"], p["rope_theta"], p["lora_scaling"]
    batch, seq = p["batch"], p["seq"]
    w = read_safetensors(f"{directory}/consolidated.safetensors")
    lora = read_safetensors(f"{directory}/lora.safetensors")
    tokens = torch.from_numpy(np.fromfile(f"{directory}/tokens.bin", dtype="<i4").astype(np.int64)).view(batch, seq + 1)
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    kinds = ["attention.wq", "attention.wk", "attention.wv", "attention.wo", "feed_forward.w1", "feed_forward.w2", "feed_forward.w3"]
    params = []
    adapters = {}
    for l in range(n_layers):
        for k in kinds:
            a_name = f"layers.{l}.{k}.lora_A.weight"
            b_name = f"layers.{l}.{k}.lora_B.weight"
            # Atelier's checkpoint holds zero pairs for projections it does not adapt; skip those.
            if k in p["targets"]:
                a = torch.nn.Parameter(lora[a_name].clone())
                b = torch.nn.Parameter(lora[b_name].clone())
                adapters[(l, k)] = (a, b)
                params += [a, b]

    def linear(x, l, k):
        y = F.linear(x, w[f"layers.{l}.{k}.weight"])
        ab = adapters.get((l, k))
        if ab is not None:
            y = y + scaling * F.linear(F.linear(x, ab[0]), ab[1])
        return y

    def rms_norm(x, weight):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight

    # mistral-inference's rotary embedding: interleaved pairs rotated as complex numbers.
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = torch.outer(torch.arange(seq, dtype=torch.float64), freqs)
    rot = torch.polar(torch.ones_like(angles), angles).to(torch.complex64)  # [seq, hd/2]

    def rope(x):  # x [B, S, H, hd]
        xc = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2))
        return torch.view_as_real(xc * rot[None, :, None, :]).flatten(3)

    mask = torch.full((seq, seq), float("-inf")).triu(1)
    group = n_heads // n_kv

    def attention(x, l):
        q = rope(linear(x, l, "attention.wq").view(batch, seq, n_heads, head_dim))
        k = rope(linear(x, l, "attention.wk").view(batch, seq, n_kv, head_dim))
        v = linear(x, l, "attention.wv").view(batch, seq, n_kv, head_dim)
        k = k.repeat_interleave(group, dim=2)
        v = v.repeat_interleave(group, dim=2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if hasattr(F, "scaled_dot_product_attention"):
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(head_dim)) + mask
            o = torch.softmax(s, dim=-1) @ v
        return linear(o.transpose(1, 2).reshape(batch, seq, n_heads * head_dim), l, "attention.wo")

    def forward_loss():
        h = F.embedding(inputs, w["tok_embeddings.weight"])
        for l in range(n_layers):
            h = h + attention(rms_norm(h, w[f"layers.{l}.attention_norm.weight"]), l)
            x = rms_norm(h, w[f"layers.{l}.ffn_norm.weight"])
            h = h + linear(F.silu(linear(x, l, "feed_forward.w1")) * linear(x, l, "feed_forward.w3"), l, "feed_forward.w2")
        logits = F.linear(rms_norm(h, w["norm.weight"]), w["output.weight"])
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))

    opt = torch.optim.AdamW(params, lr=p["lr"], betas=(p["beta1"], p["beta2"]), eps=p["adam_eps"], weight_decay=p["weight_decay"])
    peak, warmup, total, floor = p["lr"], p["warmup"], p["total_steps"], 0.0
    step_count = [0]

    def lr_at(step):  # Atelier's WarmupCosineSchedule
        if step < warmup:
            return peak * (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    def train_step():
        for g in opt.param_groups:
            g["lr"] = lr_at(step_count[0])
        opt.zero_grad(set_to_none=True)
        loss = forward_loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, p["max_grad_norm"])
        opt.step()
        step_count[0] += 1
        return loss.item()

    first = train_step()
    for _ in range(p["warmup_steps"] - 1):
        train_step()
    print(f"ready {first:.6f} torch {torch.__version__} threads {torch.get_num_threads()}", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        n = int(cmd[1])
        t = time.perf_counter()
        for _ in range(n):
            train_step()
        print(f"{time.perf_counter() - t:.6f}", flush=True)


if __name__ == "__main__":
    main()
