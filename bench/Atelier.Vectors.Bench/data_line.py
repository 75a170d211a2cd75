"""Prints the scale bench's "data:" line from a data set's meta.json: what the data is and how hard it is.

The local intrinsic dimensionality (Levina-Bickel MLE over each query's 100 exact nearest neighbours, the estimator
ann-benchmarks and Aumüller & Ceccarello use) and the ratio of the 10th to the 1st neighbour's distance, measured
by the generator on its own ground truth, so a reader can set them beside the published figures of real sets.
gen_scale.py's older data sets carry no such measurement; for them this script measures nothing and says so.
Usage: data_line.py <meta.json>
"""
import json
import sys

# Where the published figures of real sets are. No number is quoted here that was not read at its source.
REFERENCES = ("real sets: LID per data set in Aumüller & Ceccarello, 'The Role of Local Intrinsic Dimensionality in "
              "Benchmarking Nearest Neighbor Search' (SISAP 2019, https://arxiv.org/abs/1907.07387) and in "
              "Aumüller, Bernhardsson & Faithfull, 'ANN-Benchmarks' (https://arxiv.org/abs/1807.05614); "
              "LID of text-embedding models on BEIR sets in Marqo/benchmark-embeddings "
              "(https://huggingface.co/datasets/Marqo/benchmark-embeddings) and Elliott & Clark "
              "(https://arxiv.org/abs/2405.17813)")


def main():
    with open(sys.argv[1]) as f:
        meta = json.load(f)
    if "lid_mle_k100_mean" not in meta:
        print(f"data: {meta.get('clusters', '?')} gaussian clusters (gen_scale.py), LID and contrast not measured")
        return
    print(f"data: {meta['generator']} embedding-like, unit norm ({meta['topics']} topics x {meta['subtopics']} subtopics, "
          f"{meta['local_dims']}-dim local manifolds, seed {meta['seed']}); over the {meta['nq']} queries' exact "
          f"neighbours: LID (MLE, k=100) mean {meta['lid_mle_k100_mean']} median {meta['lid_mle_k100_median']}, "
          f"d10/d1 mean {meta['d10_over_d1_mean']} median {meta['d10_over_d1_median']}; {REFERENCES}")


if __name__ == "__main__":
    main()
