"""Generates clustered float32 vectors, queries and exact L2 ground truth into one file.

Layout (little endian): int32 n, nq, dim, kgt; float32 base[n*dim]; float32 queries[nq*dim];
int32 gt[nq*kgt]. Both hnswlib and Atelier read this file, so they see the same vectors and queries.

    gen_data.py <path> <n> <nq> <dim> [clusters] [seed] [unit]

"unit" scales every vector and query to unit norm (text embeddings as served, compared by inner product
or cosine); the ground truth is then the same under L2, inner product and cosine.
"""
import sys
import time
import numpy as np


LATENT = 32
NOISE = np.float32(0.02)


def model(dim, clusters, seed):
    """The generator's random state, cluster centres, cluster weights and latent projection for a seed.

    gen_trace.py calls this with the data file's seed to draw more queries from the same clusters.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    # Cluster sizes follow a power law, like topics in a real corpus.
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.5
    weights /= weights.sum()
    # Real embeddings have a low intrinsic dimension: each point varies around its centre along a
    # 32-dimensional latent subspace with a decaying spectrum (a random projection), plus a little isotropic noise. Isotropic
    # gaussian blobs in the full dimension would be close to random data, where every neighbour is
    # almost equally far and no ANN index reaches high recall at a useful speed.
    # Decaying spectrum (variance of latent direction j falls as 1/j), as in SIFT or text embeddings.
    scales = (0.8 / np.sqrt(np.arange(1, LATENT + 1))).astype(np.float32)
    projection = rng.standard_normal((LATENT, dim), dtype=np.float32) * scales[:, None]
    return rng, centres, weights, projection


def around(rng, centres, projection, labels):
    """One point per label, around that cluster's centre."""
    m, dim = len(labels), centres.shape[1]
    z = rng.standard_normal((m, LATENT), dtype=np.float32)
    return (centres[labels] + z @ projection + NOISE * rng.standard_normal((m, dim), dtype=np.float32)).astype(np.float32)


def main():
    path, n, nq, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    clusters = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
    seed = int(sys.argv[6]) if len(sys.argv) > 6 else 1234
    unit = len(sys.argv) > 7 and sys.argv[7] == "unit"
    kgt = 100
    t = time.time()
    rng, centres, weights, projection = model(dim, clusters, seed)

    def sample(m):
        return around(rng, centres, projection, rng.choice(clusters, size=m, p=weights))

    base = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for s in range(0, n, step):
        m = min(step, n - s)
        base[s:s + m] = sample(m)
    queries = sample(nq)
    if unit:
        for s in range(0, n, step):
            base[s:s + step] /= np.linalg.norm(base[s:s + step], axis=1, keepdims=True)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)

    gt = np.empty((nq, kgt), dtype=np.int32)
    qn = (queries ** 2).sum(1)
    bn = (base ** 2).sum(1)
    best_d = np.full((nq, kgt), np.inf, dtype=np.float32)
    best_i = np.zeros((nq, kgt), dtype=np.int64)
    chunk_rows = 50_000  # keeps the nq x chunk distance matrix near 1 GB
    for s in range(0, n, chunk_rows):
        chunk = base[s:s + chunk_rows]
        d = qn[:, None] - 2.0 * queries @ chunk.T + bn[None, s:s + chunk_rows]
        part = np.argpartition(d, kgt, axis=1)[:, :kgt]
        pd = np.take_along_axis(d, part, 1)
        alld = np.concatenate([best_d, pd], 1)
        alli = np.concatenate([best_i, part + s], 1)
        order = np.argsort(alld, 1)[:, :kgt]
        best_d = np.take_along_axis(alld, order, 1)
        best_i = np.take_along_axis(alli, order, 1)
    gt[:] = best_i
    with open(path, "wb") as f:
        np.array([n, nq, dim, kgt], dtype=np.int32).tofile(f)
        base.tofile(f)
        queries.tofile(f)
        gt.tofile(f)
    print(f"generated {n} x {dim} ({clusters} clusters{', unit norm' if unit else ''}), {nq} queries, ground truth in {time.time() - t:.1f} s", flush=True)


if __name__ == "__main__":
    main()
