"""Writes a clustered synthetic dataset of any size in TEXMEX layout (base,
query, exact L2 ground truth by FAISS IndexFlatL2), deterministic, one
block of base rows in memory at a time: each block is appended to
base.fvecs and searched exhaustively by the queries, and the per-block
top-100 lists are merged into the ground truth. gt.ivecs is written last,
so its presence means the set is complete (a rerun then does nothing).

usage: make_scale_data.py OUT_DIR N DIM [NQ]
"""
import os
import sys

import faiss
import numpy as np

from make_synthetic import write_vecs

BLOCK = 50_000
CENTRES = 1024
GT_K = 100


def main():
    out, n, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    nq = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    if os.path.exists(f"{out}/gt.ivecs"):
        return
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(1234)
    # Make_synthetic.py's model (a point is a random centre plus Gaussian
    # noise), but with clusters that overlap: centres spread about as wide
    # as the noise (scaled by dim^-1/4, which keeps the overlap about the
    # same across dimensions), and a noise scale per cluster from 0.5 to 2,
    # so that diffuse clusters spill over tight ones. Recall then climbs
    # with n_probes much as on real embeddings, and about equally at 200k
    # and 2M points; with one noise scale for all clusters, the search turns
    # from hopeless to trivial within a narrow range of spread and N.
    centres = rng.standard_normal((CENTRES, dim), dtype=np.float32) * (128 / dim) ** 0.25
    scales = rng.uniform(0.5, 2.0, CENTRES).astype(np.float32)

    def draw(m):
        c = rng.integers(0, CENTRES, m)
        return centres[c] + scales[c, None] * rng.standard_normal((m, dim), dtype=np.float32)

    queries = draw(nq)
    heap = faiss.ResultHeap(nq, GT_K)
    with open(f"{out}/base.fvecs", "wb") as f:
        for start in range(0, n, BLOCK):
            block = draw(min(BLOCK, n - start))
            write_vecs(f, block)
            dist, ids = faiss.knn(queries, block, min(GT_K, len(block)))
            heap.add_result(dist, ids + start)
            print(f"\r{start + len(block)} / {n}", end="", file=sys.stderr)
    print(file=sys.stderr)
    heap.finalize()
    write_vecs(f"{out}/query.fvecs", queries)
    write_vecs(f"{out}/gt.ivecs", heap.I.astype(np.int32))


if __name__ == "__main__":
    main()
