"""Runs hnswlib (Debian's python3-hnswlib) on a data file from gen_data.py; prints JSON results."""
import json
import os
import sys
import tempfile
import time
import numpy as np
import hnswlib


def load(path):
    with open(path, "rb") as f:
        n, nq, dim, kgt = np.fromfile(f, dtype=np.int32, count=4)
        base = np.fromfile(f, dtype=np.float32, count=n * dim).reshape(n, dim)
        queries = np.fromfile(f, dtype=np.float32, count=nq * dim).reshape(nq, dim)
        gt = np.fromfile(f, dtype=np.int32, count=nq * kgt).reshape(nq, kgt)
    return base, queries, gt


def recall(labels, gt, k):
    hits = 0
    for row, truth in zip(labels, gt):
        hits += len(set(row[:k].tolist()) & set(truth[:k].tolist()))
    return hits / (len(gt) * k)


def main():
    path, m, efc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    efs = [int(x) for x in sys.argv[4].split(",")]
    space = sys.argv[5] if len(sys.argv) > 5 else "l2"
    k = 10
    base, queries, gt = load(path)
    n, dim = base.shape
    index = hnswlib.Index(space=space, dim=dim)
    index.init_index(max_elements=n, M=m, ef_construction=efc, random_seed=100)
    index.set_num_threads(2)
    t = time.perf_counter()
    index.add_items(base, np.arange(n), num_threads=2)
    build = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "index.bin")
        index.save_index(p)
        bytes_per_vector = os.path.getsize(p) / n
    rows = []
    for ef in efs:
        index.set_ef(ef)
        index.knn_query(queries[:200], k=k, num_threads=1)  # warm-up
        # Throughput is the best of three passes, as for Atelier. Batch calls, so Python adds nothing per query.
        qps1 = qps2 = 0.0
        for _ in range(3):
            t = time.perf_counter()
            labels, _ = index.knn_query(queries, k=k, num_threads=1)
            qps1 = max(qps1, len(queries) / (time.perf_counter() - t))
        for _ in range(3):
            t = time.perf_counter()
            index.knn_query(queries, k=k, num_threads=2)
            qps2 = max(qps2, len(queries) / (time.perf_counter() - t))
        lat = np.empty(len(queries))
        for i in range(len(queries)):
            q = queries[i:i + 1]
            s = time.perf_counter()
            index.knn_query(q, k=k, num_threads=1)
            lat[i] = time.perf_counter() - s
        rows.append({"ef": ef, "recall": recall(labels, gt, k), "qps1": qps1, "qps2": qps2,
                     "p50_us": float(np.percentile(lat, 50) * 1e6), "p99_us": float(np.percentile(lat, 99) * 1e6)})
        print(f"hnswlib ef={ef} recall={rows[-1]['recall']:.4f} qps1={qps1:.0f} qps2={qps2:.0f} "
              f"p50={rows[-1]['p50_us']:.0f}us p99={rows[-1]['p99_us']:.0f}us", file=sys.stderr, flush=True)
    print(json.dumps({"engine": "hnswlib " + getattr(hnswlib, "__version__", "0.6.2 (Debian)"), "n": int(n), "dim": int(dim), "M": m, "metric": space,
                      "efConstruction": efc, "build_s": build, "bytes_per_vector": bytes_per_vector, "rows": rows}))


if __name__ == "__main__":
    main()
