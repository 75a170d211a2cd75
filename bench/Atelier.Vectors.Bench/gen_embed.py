"""Generates embedding-like unit-norm vectors larger than memory, with exact top-100 ground truth.

The scale part's data (bench/vectors-scale.sh). gen_scale.py's clusters (10000 isolated gaussian islands
around a 32-dimensional subspace) were far harder for every graph index than real embedding sets: hnswlib
itself reached recall@10 0.80 at ef=160 on 200k of them. Real text and image embeddings are a continuum of
topics and subtopics whose points vary locally along a few directions, with a decaying spectrum, and they are
served unit norm. This generator draws them that way:

  topic      1000 centres in a 96-dimensional global subspace with a power-law spectrum (variance of direction
             j falls as 1/j), sizes Zipf-like (weight of topic r as 1/r^0.7): a continuum, not islands;
  subtopic   32 per topic, offset from the topic along the same global subspace;
  point      around its subtopic along the topic's own 24 local directions (a random orthonormal basis per
             topic; variance of local direction j falls as 1/j^0.3, a low-dimensional local manifold), plus a
             little isotropic noise in all 384 dimensions (norm 0.1 against a local spread of 1.2);
  then scaled to unit norm (text embeddings are served unit norm; L2 and cosine then rank alike).

The scales are the generator's knobs (GEN_* variables override them for experiments; the bench uses the defaults).
They were set so that the local intrinsic dimensionality (Levina-Bickel MLE over the 100 nearest neighbours of
each query) stays in the tens, a continuum rather than islands, and hnswlib (M=16, efConstruction=100) reaches
recall@10 0.98 at ef=40 on 200k of it, as it does on real sets; the bench prints the measured LID beside where the
published figures of real sets are, for the reader to compare (data_line.py). A flat local spectrum over few directions keeps the LID nearly
independent of n (15.5 at 200k, 17.4 at 1M); with a 1/j spectrum over 96 directions it rose from 17.8 to 23.6,
because each tenfold of points resolves weaker directions.
The model does not depend on n: the first n vectors of a larger set are a smaller set of the same kind.

Ground truth: exact, by numpy (OpenBLAS) over chunks; it never uses the index under test. Queries are drawn
from the same model (in-distribution, like held-out documents).

Writes into <dir>: base.f32 (n x dim, row-major), queries.f32 (nq x dim), gt.i32 (nq x 100 ids, nearest first),
gt_dist.f32 (their L2 distances) and meta.json (with the measured LID and contrast).
Usage: gen_embed.py <dir> <n> <nq> [dim] [seed]
"""
import json
import os
import sys
import time
import numpy as np

TOPICS = 1000
SUBTOPICS = 32
GLOBAL = 96
LOCAL = int(os.environ.get("GEN_LOCAL_DIMS", "24"))
TOPIC_SCALE = 1.0
SUBTOPIC_SCALE = float(os.environ.get("GEN_SUB", "0.45"))
LOCAL_SCALE = float(os.environ.get("GEN_LOCAL", "1.2"))
LOCAL_DECAY = float(os.environ.get("GEN_LOCAL_DECAY", "0.3"))
NOISE = float(os.environ.get("GEN_NOISE", "0.1"))  # norm of the isotropic part (per coordinate NOISE / sqrt(dim))
KGT = 100


def spectrum(k, total, decay=1.0):
    """Standard deviations of k directions whose variances fall as 1/j^decay and sum to total^2."""
    var = 1.0 / np.arange(1, k + 1) ** decay
    return (total * np.sqrt(var / var.sum())).astype(np.float32)


class Model:
    def __init__(self, dim, seed):
        rng = np.random.default_rng(seed)
        self.dim = dim
        glob, _ = np.linalg.qr(rng.standard_normal((dim, GLOBAL)))
        glob = glob.T.astype(np.float32)  # GLOBAL x dim, orthonormal rows
        self.topics = (rng.standard_normal((TOPICS, GLOBAL), dtype=np.float32) * spectrum(GLOBAL, TOPIC_SCALE)) @ glob
        offsets = (rng.standard_normal((TOPICS * SUBTOPICS, GLOBAL), dtype=np.float32) * spectrum(GLOBAL, SUBTOPIC_SCALE)) @ glob
        self.subtopics = (np.repeat(self.topics, SUBTOPICS, axis=0) + offsets).astype(np.float32)
        # One orthonormal local basis per topic, its directions scaled by the local spectrum: LOCAL x dim each.
        local = spectrum(LOCAL, LOCAL_SCALE, LOCAL_DECAY)
        self.bases = np.empty((TOPICS, LOCAL, dim), dtype=np.float32)
        for t in range(TOPICS):
            q, _ = np.linalg.qr(rng.standard_normal((dim, LOCAL)))
            self.bases[t] = q.T * local[:, None]
        w = 1.0 / np.arange(1, TOPICS + 1) ** 0.7
        self.cdf = np.cumsum(w / w.sum())

    def sample(self, rng, m):
        topic = np.minimum(np.searchsorted(self.cdf, rng.random(m)), TOPICS - 1)
        sub = topic * SUBTOPICS + rng.integers(0, SUBTOPICS, m)
        out = self.subtopics[sub]
        z = rng.standard_normal((m, LOCAL), dtype=np.float32)
        order = np.argsort(topic, kind="stable")
        bounds = np.searchsorted(topic[order], np.arange(TOPICS + 1))
        for t in range(TOPICS):
            rows = order[bounds[t]:bounds[t + 1]]
            if len(rows):
                out[rows] += z[rows] @ self.bases[t]
        out += rng.standard_normal((m, self.dim), dtype=np.float32) * np.float32(NOISE / np.sqrt(self.dim))
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out


def lid_mle(dist):
    """Levina-Bickel MLE of the local intrinsic dimensionality from each row's sorted neighbour distances."""
    d = np.maximum(dist, 1e-12)
    return -1.0 / np.mean(np.log(d / d[:, -1:]), axis=1)


def main():
    out, n, nq = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    dim = int(sys.argv[4]) if len(sys.argv) > 4 else 384
    seed = int(sys.argv[5]) if len(sys.argv) > 5 else 1234
    os.makedirs(out, exist_ok=True)
    t = time.time()
    model = Model(dim, seed)
    # Queries from their own stream, so the base vectors do not depend on nq.
    queries = model.sample(np.random.default_rng([seed, 1]), nq)
    queries.tofile(os.path.join(out, "queries.f32"))
    rng = np.random.default_rng([seed, 2])
    best_d = np.full((nq, KGT), -np.inf, dtype=np.float32)  # inner products: larger is nearer (unit norm)
    best_i = np.zeros((nq, KGT), dtype=np.int64)
    step = 250_000
    with open(os.path.join(out, "base.f32.partial"), "wb") as f:
        for s in range(0, n, step):
            m = min(step, n - s)
            chunk = model.sample(rng, m)
            chunk.tofile(f)
            dots = queries @ chunk.T
            k = min(KGT, m)
            part = np.argpartition(-dots, k - 1, axis=1)[:, :k]
            pd = np.take_along_axis(dots, part, 1)
            alld = np.concatenate([best_d, pd], 1)
            alli = np.concatenate([best_i, part + s], 1)
            order = np.argsort(-alld, 1)[:, :KGT]
            best_d = np.take_along_axis(alld, order, 1)
            best_i = np.take_along_axis(alli, order, 1)
            if (s // step) % 8 == 0:
                print(f"  {s + m} / {n} in {time.time() - t:.0f} s", flush=True)
    dist = np.sqrt(np.maximum(2.0 - 2.0 * best_d, 0.0)).astype(np.float32)
    best_i.astype(np.int32).tofile(os.path.join(out, "gt.i32"))
    dist.tofile(os.path.join(out, "gt_dist.f32"))
    os.replace(os.path.join(out, "base.f32.partial"), os.path.join(out, "base.f32"))
    lid = lid_mle(dist)
    contrast = dist[:, 9] / np.maximum(dist[:, 0], 1e-12)
    meta = {
        "n": n, "nq": nq, "dim": dim, "kgt": KGT, "seed": seed, "generator": "gen_embed.py",
        "topics": TOPICS, "subtopics": SUBTOPICS, "global_dims": GLOBAL, "local_dims": LOCAL,
        "scales": {"topic": TOPIC_SCALE, "subtopic": SUBTOPIC_SCALE, "local": LOCAL_SCALE, "noise": NOISE},
        "lid_mle_k100_mean": round(float(lid.mean()), 2), "lid_mle_k100_median": round(float(np.median(lid)), 2),
        "d10_over_d1_mean": round(float(contrast.mean()), 3), "d10_over_d1_median": round(float(np.median(contrast)), 3),
        "seconds": round(time.time() - t, 1),
    }
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f)
    print(f"generated {n} x {dim} (embedding-like, unit norm), {nq} queries, ground truth in {time.time() - t:.1f} s; "
          f"LID (MLE, k=100) mean {meta['lid_mle_k100_mean']} median {meta['lid_mle_k100_median']}; "
          f"d10/d1 mean {meta['d10_over_d1_mean']} median {meta['d10_over_d1_median']}", flush=True)


if __name__ == "__main__":
    main()
