"""Index.train: the seed's example as written, defaults, progress callbacks,
tqdm bars, cancellation, and the training errors."""

from __future__ import annotations

import numpy as np
import pytest

import vx

N = 10_000  # the fewest vectors training accepts
DIM = 8


@pytest.fixture
def big(client, key):
    """An index of N clustered vectors, and the vectors."""
    r = np.random.default_rng(42)
    centers = r.standard_normal((20, DIM)).astype(np.float32) * 4
    vectors = (centers[r.integers(0, 20, N)] + r.standard_normal((N, DIM))).astype(np.float32)
    ix = client.create_index("big", key)
    ix.upsert([f"v{i}" for i in range(N)], vectors)
    yield ix, vectors
    ix.close()


def test_seed_example_as_written(client, key, big):
    """The issue's example: load an index, then three train calls."""
    index_name, index_key = "big", key
    index = client.load_index(index_name, index_key)
    index.train(batch_size=128, max_iters=10, tolerance=1e-4)
    assert index.is_trained() and index.training_state == "trained"
    index.train()
    index.train(index_key=index_key)
    assert index.is_trained()
    assert index.n_lists == round(N**0.5)  # the default: round(sqrt(n))
    assert 0 < index.auto_n_probes <= index.n_lists
    index.close()


def test_trained_queries_match_exhaustive_at_full_probes(big):
    ix, vectors = big
    q = vectors[:20] + 0.01
    exact = ix.query_numpy(q, top_k=10)[0]
    ix.train(n_lists=50, max_iters=20, seed=7)
    assert ix.n_lists == 50 and ix.is_trained()
    full = ix.query_numpy(q, top_k=10, n_probes=50)[0]
    np.testing.assert_array_equal(full, exact)
    few = ix.query(q[0], top_k=10, n_probes=1)
    assert len(few) == 10 and few[0]["id"] == "v0"
    # Trained indexes take writes: new items land in their nearest list.
    ix.upsert(["late"], vectors[:1] + 0.001)
    assert ix.query(vectors[0] + 0.001, top_k=1, n_probes=50)[0]["id"] == "late"


def test_seed_makes_training_reproducible(big):
    ix, vectors = big
    ix.train(n_lists=30, max_iters=5, seed=123)
    a = ix.query_numpy(vectors[:50], top_k=5, n_probes=1)[0]
    ix.train(n_lists=30, max_iters=5, seed=123)
    b = ix.query_numpy(vectors[:50], top_k=5, n_probes=1)[0]
    np.testing.assert_array_equal(a, b)


def test_progress_callback(big):
    ix, _ = big
    seen = []
    ix.train(n_lists=20, max_iters=7, tolerance=1e-12, progress=lambda i, m, obj: seen.append((i, m, obj)))
    assert [s[0] for s in seen] == list(range(1, 8))
    assert all(m == 7 for _, m, _ in seen)
    objectives = [o for _, _, o in seen]
    assert all(o > 0 for o in objectives) and objectives[-1] <= objectives[0]


def test_progress_cancel_leaves_index_unchanged(big):
    ix, _ = big
    calls = []

    def stop_at_3(i, m, obj):
        calls.append(i)
        return i >= 3

    with pytest.raises(vx.CancelledError) as e:
        ix.train(n_lists=20, max_iters=50, tolerance=1e-12, progress=stop_at_3)
    assert calls == [1, 2, 3] and e.value.code == vx.lib.VX_STATUS_CANCELLED
    assert not ix.is_trained() and ix.n_lists == 0
    ix.train(n_lists=20, max_iters=3)  # and it can be trained afterwards
    assert ix.n_lists == 20


def test_exception_in_callback_cancels_and_propagates(big):
    ix, _ = big

    def boom(i, m, obj):
        raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        ix.train(n_lists=20, max_iters=5, progress=boom)
    assert not ix.is_trained()

    def interrupt(i, m, obj):
        raise KeyboardInterrupt  # what Ctrl-C raises inside the callback

    with pytest.raises(KeyboardInterrupt):
        ix.train(n_lists=20, max_iters=5, progress=interrupt)
    assert not ix.is_trained()


def test_tqdm_bar(big):
    tqdm = pytest.importorskip("tqdm")
    ix, _ = big
    with tqdm.tqdm(disable=False, leave=False) as bar:
        ix.train(n_lists=20, max_iters=6, tolerance=1e-12, progress=bar)
        assert bar.total == 6 and bar.n == 6
        assert "objective" in bar.postfix


def test_tqdm_like_object(big):
    class Bar:
        def __init__(self):
            self.n, self.total, self.updates = 0, None, []

        def update(self, k):
            self.updates.append(k)
            self.n += k

    ix, _ = big
    bar = Bar()
    ix.train(n_lists=20, max_iters=4, tolerance=1e-12, progress=bar)
    assert bar.total == 4 and bar.n == 4 and bar.updates == [1, 1, 1, 1]


def test_training_errors(client, key, big):
    ix, _ = big
    small = client.create_index("small", key)
    small.upsert(["a", "b"], np.eye(2))
    with pytest.raises(vx.NotEnoughVectorsError, match="10000") as e:
        small.train()
    assert isinstance(e.value, RuntimeError) and not isinstance(e.value, ValueError)
    with pytest.raises(vx.NotEnoughVectorsError):
        ix.train(n_lists=6000)  # needs 2 * n_lists vectors
    with pytest.raises(vx.InvalidArgumentError):
        ix.train(tolerance=-1.0)
    with pytest.raises(vx.InvalidArgumentError):
        ix.train(n_lists=-1)
    with pytest.raises(vx.WrongKeyError):
        ix.train(index_key=vx.generate_key())
    assert not ix.is_trained()


def test_memory_limit(client, key):
    ix = client.create_index("wide", key)
    r = np.random.default_rng(0)
    ix.upsert([str(i) for i in range(N)], r.standard_normal((N, 256)).astype(np.float32))
    with pytest.raises(vx.MemoryLimitError):
        ix.train(n_lists=4000, max_memory=1)
    assert not ix.is_trained()


def test_state_while_training(big):
    """During training the state is "training" and queries answer from the
    previous (exhaustive) state; the callback may call the index itself."""
    ix, vectors = big
    seen = []

    def look(i, m, obj):
        seen.append((ix.training_state, ix.is_trained(), ix.query(vectors[5], top_k=1)[0]["id"]))

    ix.train(n_lists=20, max_iters=3, tolerance=1e-12, progress=look)
    assert seen == [("training", False, "v5")] * 3
    assert ix.training_state == "trained"
