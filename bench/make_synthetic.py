"""Writes a synthetic clustered dataset in TEXMEX layout (base, query, exact
L2 ground truth by FAISS IndexFlatL2), deterministic for a seed.

usage: make_synthetic.py OUT_DIR N DIM [NQ]
"""
import os
import sys

import faiss
import numpy as np


def write_vecs(path, a):
    a = np.ascontiguousarray(a)
    rows = np.empty((a.shape[0], a.shape[1] + 1), dtype=np.int32)
    rows[:, 0] = a.shape[1]
    rows[:, 1:] = a.view(np.int32)
    rows.tofile(path)


def main():
    out, n, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    nq = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    if os.path.exists(f"{out}/gt.ivecs"):
        return
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(1234)
    centres = rng.normal(0, 4, size=(256, dim)).astype(np.float32)
    def draw(m):
        return (centres[rng.integers(0, 256, m)] + rng.normal(0, 1, size=(m, dim))).astype(np.float32)
    base, queries = draw(n), draw(nq)
    index = faiss.IndexFlatL2(dim)
    index.add(base)
    _, gt = index.search(queries, 100)
    write_vecs(f"{out}/base.fvecs", base)
    write_vecs(f"{out}/query.fvecs", queries)
    write_vecs(f"{out}/gt.ivecs", gt.astype(np.int32))


if __name__ == "__main__":
    main()
