#!/usr/bin/env python3
"""vx from Python, start to finish: an encrypted index on disk, upserts with
metadata, filtered queries, training, a read-only user, and a reopen.

    pip install ./bindings/python      # once, from the repository's root
    python examples/quickstart.py [DIR]

DIR (default: a temporary directory) receives the encrypted store.
"""

import sys
import tempfile
import time

import numpy as np

import vx


def main(directory: str) -> None:
    rng = np.random.default_rng(0)
    n, dim = 20_000, 64
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    ids = [f"doc-{i}" for i in range(n)]
    metadata = [{"lang": ["en", "de", "fr"][i % 3], "year": 2000 + i % 25} for i in range(n)]

    # The root key: 32 random bytes. In production it comes from your KMS;
    # it is never stored, and losing it loses the index.
    key = vx.generate_key()

    with vx.Client(f"file:{directory}") as client:
        index = client.create_index("articles", key, metric="cosine")
        t = time.perf_counter()
        index.upsert(ids, vectors, metadata=metadata)  # NumPy rows, passed to libvx in place
        index.upsert([{"id": "hello", "vector": vectors[0] + 0.01, "contents": b"hi", "metadata": {"lang": "en"}}])
        print(f"upserted {index.num_vectors()} vectors in {time.perf_counter() - t:.2f} s")

        hits = index.query(vectors[0], top_k=3, filters={"lang": "en", "year": {"$gte": 2010}}, include=["distance", "metadata"])
        for h in hits:
            print(f"  {h['id']:>10}  {h['distance']:.4f}  {h['metadata']}")

        print(f"training ({index.training_state}) ...")
        try:
            from tqdm import tqdm  # optional: a progress bar if tqdm is installed

            with tqdm(desc="k-means", unit="iter") as bar:
                index.train(max_iters=20, seed=1, progress=bar)
        except ImportError:
            index.train(max_iters=20, seed=1, progress=lambda i, m, obj: print(f"  iteration {i}/{m}: {obj:.4f}"))
        print(f"trained: {index.n_lists} lists, {index.auto_n_probes} probed by default")

        ids_found, distances = index.query_numpy(vectors[:5], top_k=2)  # the array fast path
        print("nearest of the first 5 vectors:", list(ids_found[:, 0]))

        # A read-only user with its own key: queries work, writes are refused.
        alice, alice_key = vx.generate_user_id(), vx.generate_key()
        index.create_user_keys(alice, alice_key, ["read"])
        as_alice = client.load_index("articles", alice_key, user_id=alice)
        print("alice sees", as_alice.query(vectors[1], top_k=1)[0]["id"])
        try:
            as_alice.delete(["doc-1"])
        except vx.PermissionDeniedError as e:
            print("alice cannot delete:", e.message)
        as_alice.close()
        epoch = index.epoch()  # keep outside the store to detect rollbacks
        index.close()

    with vx.Client(f"file:{directory}") as client, client.load_index("articles", key) as index:
        index.require_epoch(epoch)
        print("reopened:", index.num_vectors(), "vectors,", index.get("hello")[0]["contents"])
        try:
            client.load_index("articles", vx.generate_key())
        except vx.WrongKeyError:
            print("a wrong key is refused")
    vx.wipe(key)
    vx.wipe(alice_key)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as d:
            main(d)
