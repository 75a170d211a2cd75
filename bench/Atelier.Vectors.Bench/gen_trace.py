"""Writes a realistic stream of search queries over a data file from gen_data.py, for the cache policy part.

    gen_trace.py <data.bin> <out.bin> <queries> <clusters> [seed] [unit]

clusters, seed and unit must be those the data file was generated with: the queries are drawn around the
same cluster centres. The stream, in order (fractions of <queries>):
  40%  topical traffic: each query picks a cluster by Zipf (s = 1.0) over a seeded popularity ranking that
       is unrelated to cluster size, then a point around that cluster's centre (no two queries are equal);
  10%  a scan-like burst: a batch job searching with stored vectors in id order from a random offset
       (near-duplicate detection over a slice of the collection), each touching its region once;
  20%  topical traffic again, same ranking;
  30%  topical traffic after a popularity shift: half of the 50 most popular clusters (of clusters/4 when fewer) are swapped for
       clusters from the cold tail (new topics trending).
Layout (little endian): int32 nq, dim; float32 queries[nq*dim]; int32 phase[nq] (0 topical, 1 scan, 2 shifted).
"""
import sys
import numpy as np

from gen_data import around, model


def main():
    data, out, nq, clusters = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    seed = int(sys.argv[5]) if len(sys.argv) > 5 else 1234
    unit = len(sys.argv) > 6 and sys.argv[6] == "unit"
    n, _, dim, _ = np.fromfile(data, dtype=np.int32, count=4)
    _, centres, _, projection = model(int(dim), clusters, seed)
    rng = np.random.default_rng(seed + 1)

    ranking = rng.permutation(clusters)
    zipf = 1.0 / np.arange(1, clusters + 1) ** 1.0
    zipf /= zipf.sum()

    def topical(m, order):
        return around(rng, centres, projection, order[rng.choice(clusters, size=m, p=zipf)])

    shifted = ranking.copy()
    top = max(2, min(50, clusters // 4))
    hot = rng.choice(top, size=top // 2, replace=False)
    cold = clusters - 1 - rng.choice(clusters // 2, size=top // 2, replace=False)
    shifted[hot], shifted[cold] = ranking[cold], ranking[hot]

    sizes = [int(nq * f) for f in (0.4, 0.1, 0.2)]
    sizes.append(nq - sum(sizes))
    start = int(rng.integers(0, max(1, n - sizes[1])))
    base = np.memmap(data, dtype=np.float32, mode="r", offset=16, shape=(int(n), int(dim)))
    parts = [topical(sizes[0], ranking), np.array(base[start:start + sizes[1]]), topical(sizes[2], ranking), topical(sizes[3], shifted)]
    phases = [0, 1, 0, 2]
    queries = np.concatenate(parts).astype(np.float32)
    if unit:
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    phase = np.concatenate([np.full(len(p), ph, dtype=np.int32) for p, ph in zip(parts, phases)])
    with open(out, "wb") as f:
        np.array([len(queries), dim], dtype=np.int32).tofile(f)
        queries.tofile(f)
        phase.tofile(f)
    print(f"trace queries: {len(queries)} ({sizes[0]} topical, {sizes[1]} scan from id {start}, {sizes[2]} topical, "
          f"{sizes[3]} after a popularity shift)", flush=True)


if __name__ == "__main__":
    main()
