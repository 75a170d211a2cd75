"""hnswlib on a data set written by gen_scale.py: the peer's recall on the same vectors and queries.

Usage: scale_peer.py <data dir> <n> <efConstruction> [queries]. Builds hnswlib (M=16, 2 threads) on the
first n vectors and prints recall@10 per ef against gt.i32, which must be the ground truth of those n
vectors (gen_scale.py with that n). Used to tell a hard data set from a weak index: where hnswlib's recall
is as low as Atelier's, the graph, not the quantisation or the collection, is the limit.
"""
import sys
import time
import numpy as np
import hnswlib


def main():
    d, n, efc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    nq = int(sys.argv[4]) if len(sys.argv) > 4 else 300
    b = np.fromfile(f"{d}/base.f32", dtype=np.float32, count=n * 384).reshape(-1, 384)
    q = np.fromfile(f"{d}/queries.f32", dtype=np.float32).reshape(-1, 384)[:nq]
    g = np.fromfile(f"{d}/gt.i32", dtype=np.int32).reshape(-1, 100)[:nq, :10]
    p = hnswlib.Index(space="l2", dim=384)
    p.init_index(max_elements=n, M=16, ef_construction=efc, random_seed=42)
    p.set_num_threads(2)
    t = time.time()
    p.add_items(b, np.arange(n))
    print(f"hnswlib built {n} in {time.time() - t:.0f} s", flush=True)
    p.set_num_threads(1)
    for ef in (40, 80, 160, 320, 1024):
        p.set_ef(ef)
        labels, _ = p.knn_query(q, k=10)
        recall = np.mean([len(set(labels[i]) & set(g[i])) / 10 for i in range(len(q))])
        print(f"hnswlib ef={ef} recall@10={recall:.4f}", flush=True)


if __name__ == "__main__":
    main()
