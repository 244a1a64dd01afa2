"""FAISS side of the benchmark: the same measurements as vx-bench, on the
same files, printed as one JSON object per line.

usage: faiss_bench.py DATASET_DIR NAME [--threads 1,2] [--queries N]
"""
import argparse
import json
import time

import faiss
import numpy as np


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    dim = int(raw[0])
    rows = raw.reshape(-1, dim + 1)[:, 1:]
    return np.ascontiguousarray(rows.view(dtype))


def recall_at_10(ids, gt):
    return float(np.mean([len(set(ids[i, :10]) & set(gt[i, :10])) / 10 for i in range(len(ids))]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("name")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--queries", type=int, default=10**9)
    ap.add_argument("--only", default="all")
    ap.add_argument("--ivf-lists", type=int, default=0)
    ap.add_argument("--ivf-iters", type=int, default=10)
    ap.add_argument("--ivf-probes", default="1,2,4,8,16,24,32,40,48,64")
    a = ap.parse_args()
    base = read_vecs(f"{a.dir}/base.fvecs", np.float32)
    queries = read_vecs(f"{a.dir}/query.fvecs", np.float32)[: a.queries]
    gt = read_vecs(f"{a.dir}/gt.ivecs", np.int32)
    dim = base.shape[1]
    threads = [int(x) for x in a.threads.split(",")]
    if a.only in ("all", "flat"):
        flat(a, base, queries, gt, dim, threads)
    if a.only in ("all", "ivf"):
        ivf(a, base, queries, gt, dim, threads)


def rates(index, queries, gt):
    index.search(queries[:1], 10)
    start = time.perf_counter()
    _, ids = index.search(queries, 10)
    batched = len(queries) / (time.perf_counter() - start)
    single_n = min(len(queries), 300)
    start = time.perf_counter()
    for i in range(single_n):
        index.search(queries[i : i + 1], 10)
    return batched, single_n / (time.perf_counter() - start), recall_at_10(ids, gt)


def ivf(a, base, queries, gt, dim, threads):
    n_lists = a.ivf_lists or max(1, round(len(base) ** 0.5))
    for t in threads:
        faiss.omp_set_num_threads(t)
        km = faiss.Kmeans(dim, n_lists, niter=a.ivf_iters, seed=1234, max_points_per_centroid=256)
        start = time.perf_counter()
        km.train(base)
        train_s = time.perf_counter() - start
        sample = min(len(base), 256 * n_lists)
        quantizer = faiss.IndexFlatL2(dim)
        quantizer.add(km.centroids)
        index = faiss.IndexIVFFlat(quantizer, dim, n_lists)
        index.is_trained = True
        start = time.perf_counter()
        index.add(base)
        add_rate = len(base) / (time.perf_counter() - start)
        print(json.dumps({
            "engine": "faiss", "dataset": a.name, "bench": "ivf_train", "index": "IndexIVFFlat", "threads": t,
            "n_lists": n_lists, "iterations": a.ivf_iters, "train_s": round(train_s, 3),
            "objective": round(float(km.obj[-1]) / sample, 6), "add_per_s": round(add_rate),
        }), flush=True)
        for p in [int(x) for x in a.ivf_probes.split(",")]:
            index.nprobe = p
            batched, single, recall = rates(index, queries, gt)
            print(json.dumps({
                "engine": "faiss", "dataset": a.name, "bench": "ivf", "threads": t, "n_probes": p,
                "qps_batch": round(batched, 1), "qps_single": round(single, 1), "recall_at_10": round(recall, 4),
            }), flush=True)


def flat(a, base, queries, gt, dim, threads):
    for t in threads:
        faiss.omp_set_num_threads(t)
        index = faiss.IndexFlatL2(dim)
        start = time.perf_counter()
        index.add(base)
        add_rate = len(base) / (time.perf_counter() - start)
        batched, single, recall = rates(index, queries, gt)
        print(json.dumps({
            "engine": "faiss", "dataset": a.name, "bench": "exhaustive", "index": "IndexFlatL2",
            "threads": t, "qps_batch": round(batched, 1), "qps_single": round(single, 1),
            "recall_at_10": round(recall, 4), "add_per_s": round(add_rate),
        }), flush=True)


if __name__ == "__main__":
    main()
