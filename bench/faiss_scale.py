"""FAISS side of the scale benchmark (bench/scale.sh): IndexIVFFlat on the
same files as `vx-bench --only scale`, with the list count, k-means
iterations and automatic n_probes that vx's run reported (its "train" line
in VX_RESULTS), the same threads and the same explicit n_probes. Prints
one JSON object per measurement.

The base is read a block at a time with np.fromfile, not mapped: pages of
a mapped file would count in the resident memory measured here.

usage: faiss_scale.py DATASET_DIR NAME VX_RESULTS [--threads T] [--queries N] [--probes 8,16]
"""
import argparse
import json
import os
import time

import faiss
import numpy as np

BLOCK = 100_000
POINTS_PER_LIST = 256
WARM_QUERIES = 200


def shape(path):
    dim = int(np.fromfile(path, dtype=np.int32, count=1)[0])
    return os.path.getsize(path) // (4 * (dim + 1)), dim


def read_rows(path, start, count, dim, dtype=np.float32):
    raw = np.fromfile(path, dtype=np.int32, count=count * (dim + 1), offset=start * (dim + 1) * 4)
    return np.ascontiguousarray(raw.reshape(count, dim + 1)[:, 1:]).view(dtype)


def blocks(path, n, dim):
    for start in range(0, n, BLOCK):
        yield start, read_rows(path, start, min(BLOCK, n - start), dim)


def sample(path, n, dim, count):
    """`count` distinct base rows drawn uniformly, like vx's training sample."""
    picked = np.sort(np.random.default_rng(1234).choice(n, size=count, replace=False))
    out = np.empty((count, dim), dtype=np.float32)
    filled = 0
    for start, block in blocks(path, n, dim):
        here = picked[(picked >= start) & (picked < start + len(block))] - start
        out[filled : filled + len(here)] = block[here]
        filled += len(here)
    return out


def reset_peak_rss():
    """VmHWM back to the current RSS (Linux 4.0+), as vx-bench does."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss():
    with open("/proc/self/status") as f:
        kb = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    return int(kb) * 1024


# The nb_bits of IndexIVFRaBitQ matching vx's codes, by vx-bench's --index.
RABITQ_BITS = {"ivf-rabitq": 2, "ivf-rabitq-4bit": 4}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("name")
    ap.add_argument("vx_results")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--queries", type=int, default=10**9)
    ap.add_argument("--probes", default="8,16,32,64,128")
    a = ap.parse_args()
    vx = next(r for r in map(json.loads, open(a.vx_results))
              if r["engine"] == "vx" and r["bench"] == "scale" and r["phase"] == "train")
    n_lists, iters, auto = vx["n_lists"], vx["iterations"], vx["auto_n_probes"]
    base_path = f"{a.dir}/base.fvecs"
    n, dim = shape(base_path)
    raw = n * dim * 4
    faiss.omp_set_num_threads(a.threads)

    def emit(phase, **fields):
        print(json.dumps({"engine": "faiss", "dataset": a.name, "bench": "scale", "phase": phase, "size": n,
                          **fields}), flush=True)

    train = sample(base_path, n, dim, min(n, POINTS_PER_LIST * n_lists))
    reset_peak_rss()
    km = faiss.Kmeans(dim, n_lists, niter=iters, seed=1234, max_points_per_centroid=POINTS_PER_LIST)
    start = time.perf_counter()
    km.train(train)
    train_s = time.perf_counter() - start
    emit("train", n_lists=n_lists, iterations=iters, sample_size=len(train),
         objective=round(float(km.obj[-1]) / len(train), 6), train_s=round(train_s, 3),
         peak_rss_bytes=peak_rss(), raw_vector_bytes=raw)
    del train

    quantizer = faiss.IndexFlatL2(dim)
    quantizer.add(km.centroids)
    index = faiss.IndexIVFFlat(quantizer, dim, n_lists)
    index.is_trained = True
    reset_peak_rss()
    busy = 0.0
    for _, block in blocks(base_path, n, dim):
        start = time.perf_counter()
        index.add(block)
        busy += time.perf_counter() - start
    emit("add", vectors=n, add_per_s=round(n / busy), add_s=round(busy, 3), peak_rss_bytes=peak_rss(),
         raw_vector_bytes=raw)

    queries = read_rows(f"{a.dir}/query.fvecs", 0, shape(f"{a.dir}/query.fvecs")[0], dim)[: a.queries]
    gt = read_rows(f"{a.dir}/gt.ivecs", 0, len(queries), shape(f"{a.dir}/gt.ivecs")[1], np.int32)[:, :10]
    probes = [(auto, True)] + [(int(p), False) for p in a.probes.split(",")]
    # Untimed queries at the most probes first, as vx-bench does.
    index.nprobe = max(p for p, _ in probes)
    for i in range(min(len(queries), WARM_QUERIES)):
        index.search(queries[i : i + 1], 10)
    for p, is_auto in probes:
        index.nprobe = p
        found = np.empty((len(queries), 10), dtype=np.int64)
        start = time.perf_counter()
        for i in range(len(queries)):
            found[i] = index.search(queries[i : i + 1], 10)[1][0]
        qps = len(queries) / (time.perf_counter() - start)
        recall = np.mean([len(set(found[i]) & set(gt[i])) / 10 for i in range(len(queries))])
        emit("query", threads=a.threads, n_probes=p, auto=is_auto, qps_single=round(qps, 1),
             recall_at_10=round(float(recall), 4))

    # vx's IVF_RABITQ training also codes every vector, which IndexIVFFlat's
    # add does not: its peer there is IndexIVFRaBitQ's add into the same
    # lists with vx's bits (k-means as above; FAISS keeps no full vectors
    # beside the codes, vx keeps them for its exact rerank).
    bits = RABITQ_BITS.get(vx.get("index"))
    if bits:
        del index
        rq = faiss.IndexIVFRaBitQ(quantizer, dim, n_lists, faiss.METRIC_L2, True, bits)
        # Read before the clock starts (~14 s at 10M), as for k-means above.
        train = sample(base_path, n, dim, min(n, POINTS_PER_LIST * n_lists))
        start = time.perf_counter()
        rq.train(train)  # the coarse lists are kept
        busy = time.perf_counter() - start
        del train
        for _, block in blocks(base_path, n, dim):
            start = time.perf_counter()
            rq.add(block)
            busy += time.perf_counter() - start
        emit("add-rabitq", nb_bits=bits, vectors=n, add_per_s=round(n / busy), add_s=round(busy, 3))


if __name__ == "__main__":
    main()
