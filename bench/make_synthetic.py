"""Writes a synthetic clustered dataset in TEXMEX layout (base, query, exact
L2 ground truth by FAISS IndexFlatL2), deterministic for a seed.

usage: make_synthetic.py OUT_DIR N DIM [NQ] [--spread S]

256 Gaussian clusters: centres drawn N(0, 4^2) per coordinate, points N(0,
S^2) around their centre (S = 1 by default: clusters far apart, two centres
~4*sqrt(2*DIM) apart against a cluster radius of ~sqrt(DIM)). With S > 4*sqrt(2)
~ 5.7 a cluster's radius S*sqrt(DIM) exceeds the distance between centres and
the clusters overlap, closer to real embeddings than the default; e.g.
--spread 6 at DIM 384: radius ~118 vs centres ~111 apart.
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
    args = sys.argv[1:]
    spread = 1.0
    if "--spread" in args:
        i = args.index("--spread")
        spread = float(args[i + 1])
        del args[i : i + 2]
    out, n, dim = args[0], int(args[1]), int(args[2])
    nq = int(args[3]) if len(args) > 3 else 1000
    if os.path.exists(f"{out}/gt.ivecs"):
        return
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(1234)
    centres = rng.normal(0, 4, size=(256, dim)).astype(np.float32)
    def draw(m):
        return (centres[rng.integers(0, 256, m)] + rng.normal(0, spread, size=(m, dim))).astype(np.float32)
    base, queries = draw(n), draw(nq)
    index = faiss.IndexFlatL2(dim)
    index.add(base)
    _, gt = index.search(queries, 100)
    write_vecs(f"{out}/base.fvecs", base)
    write_vecs(f"{out}/query.fvecs", queries)
    write_vecs(f"{out}/gt.ivecs", gt.astype(np.int32))


if __name__ == "__main__":
    main()
