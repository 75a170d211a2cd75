"""Generates a data set larger than memory for the scale part of bench/vectors.sh, streaming to disk.

Same distribution as gen_data.py (power-law clusters around a 32-dimensional latent subspace with a
decaying spectrum, a little isotropic noise), but written chunk by chunk so that 10M x 384 (15 GB of
float32) never has to fit in memory, and with exact L2 ground truth computed by numpy in chunks.

Writes into <dir>: base.f32 (n x dim, row-major), queries.f32 (nq x dim), gt.i32 (nq x 100 ids,
nearest first) and meta.json. Usage: gen_scale.py <dir> <n> <nq> <dim> [clusters] [seed]
"""
import json
import os
import sys
import time
import numpy as np

from gen_data import around, model


def main():
    out, n, nq, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    clusters = int(sys.argv[5]) if len(sys.argv) > 5 else 10000
    seed = int(sys.argv[6]) if len(sys.argv) > 6 else 1234
    kgt = 100
    os.makedirs(out, exist_ok=True)
    t = time.time()
    rng, centres, weights, projection = model(dim, clusters, seed)

    def sample(m):
        return around(rng, centres, projection, rng.choice(clusters, size=m, p=weights))

    queries = sample(nq)
    queries.tofile(os.path.join(out, "queries.f32"))
    qn = (queries ** 2).sum(1)
    best_d = np.full((nq, kgt), np.inf, dtype=np.float32)
    best_i = np.zeros((nq, kgt), dtype=np.int64)
    step = 100_000
    with open(os.path.join(out, "base.f32.partial"), "wb") as f:
        for s in range(0, n, step):
            m = min(step, n - s)
            chunk = sample(m)
            chunk.tofile(f)
            d = qn[:, None] - 2.0 * queries @ chunk.T + (chunk ** 2).sum(1)[None, :]
            k = min(kgt, m)
            part = np.argpartition(d, k - 1, axis=1)[:, :k]
            pd = np.take_along_axis(d, part, 1)
            alld = np.concatenate([best_d, pd], 1)
            alli = np.concatenate([best_i, part + s], 1)
            order = np.argsort(alld, 1)[:, :kgt]
            best_d = np.take_along_axis(alld, order, 1)
            best_i = np.take_along_axis(alli, order, 1)
            if (s // step) % 10 == 0:
                print(f"  {s + m} / {n} in {time.time() - t:.0f} s", flush=True)
    best_i.astype(np.int32).tofile(os.path.join(out, "gt.i32"))
    os.replace(os.path.join(out, "base.f32.partial"), os.path.join(out, "base.f32"))
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump({"n": n, "nq": nq, "dim": dim, "kgt": kgt, "clusters": clusters, "seed": seed}, f)
    print(f"generated {n} x {dim} ({clusters} clusters), {nq} queries, ground truth in {time.time() - t:.1f} s", flush=True)


if __name__ == "__main__":
    main()
