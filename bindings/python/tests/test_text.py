"""Text fields (0.8): create_index(text_fields=, bm25_k1=, bm25_b=), keyword
search (query_metadata(text=)), hybrid search (query(text=, alpha=, rrf_k=,
vector_depth=, text_depth=)) and the hits' "score"."""

from __future__ import annotations

import math

import numpy as np
import pytest

import vx

TITLES = [
    "encrypted vector search",
    "running dogs",
    "the cat sat on the mat",
    "fast approximate nearest neighbour search",
    "dogs and cats living together",
    "a quiet evening",
]


@pytest.fixture
def texts(client, key):
    """t<i> at (i, 0) titled TITLES[i]."""
    ix = client.create_index("texts", key, text_fields=["title"], bm25_k1=1.2, bm25_b=0.75)
    ix.upsert(
        [f"t{i}" for i in range(len(TITLES))],
        np.array([[i, 0] for i in range(len(TITLES))], dtype=np.float32),
        metadata=[{"title": t, "n": i} for i, t in enumerate(TITLES)],
    )
    yield ix
    ix.close()


def test_keyword_search_ranks_by_bm25(texts):
    hits = texts.query_metadata(text="run")  # stemmed: finds "running"
    assert [h["id"] for h in hits] == ["t1"]
    assert set(hits[0]) == {"id", "metadata", "score"}
    assert hits[0]["metadata"]["title"] == "running dogs"
    assert math.isfinite(hits[0]["score"]) and hits[0]["score"] > 0
    both = texts.query_metadata(text="Dogs SEARCH", include=[])
    assert sorted(h["id"] for h in both) == ["t0", "t1", "t3", "t4"] and both[0]["id"] == "t1"
    scores = [h["score"] for h in both]
    assert all(math.isfinite(s) and s > 0 for s in scores) and scores == sorted(scores, reverse=True)
    # With a filter, ordered by a field instead of the score; a page of it.
    by_n = texts.query_metadata({"n": {"$gte": 1}}, order_by="n", ascending=False, text="dogs search")
    assert [h["id"] for h in by_n] == ["t4", "t3", "t1"]
    assert [h["id"] for h in texts.query_metadata(text="dogs search", top_k=1, offset=1, order_by="n")] == ["t1"]
    # Only stop words: nothing.
    assert texts.query_metadata(text="the and a") == []
    # Without text: no score.
    assert "score" not in texts.query_metadata({"n": 1})[0]


def test_hybrid_search_fuses_rankings(texts):
    q = np.array([1.2, 0], dtype=np.float32)
    hits = texts.query(q, top_k=6, text="dogs search")
    assert len(hits) == 6 and hits[0]["id"] == "t1"  # the nearest and the best text match
    for h in hits:
        assert set(h) == {"id", "distance", "score"}
        assert h["distance"] == pytest.approx(abs(1.2 - int(h["id"][1:])), abs=1e-5)  # exact distances
        assert math.isfinite(h["score"]) and h["score"] > 0
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    # A batch: the same text for every query.
    batch = texts.query([[1.2, 0], [4.1, 0.5]], top_k=6, text="dogs search", rrf_k=60, vector_depth=6, text_depth=6)
    assert [h["id"] for h in batch[0]] == [h["id"] for h in hits] and batch[1][0]["id"] == "t4"
    # alpha 1: the vector ranking alone; a plain query has no score.
    plain = texts.query(q, top_k=6, include=["distance", "metadata"])
    assert all(set(h) == {"id", "distance", "metadata"} for h in plain)
    by_vector = texts.query(q, top_k=6, text="dogs", alpha=1.0, vector_depth=6, include=["distance", "metadata"])
    assert [h["id"] for h in by_vector] == [h["id"] for h in plain]
    assert all(set(h) == {"id", "distance", "metadata", "score"} for h in by_vector)
    # alpha 0: the text ranking decides.
    assert texts.query(q, top_k=3, text="dogs search", alpha=0)[0]["id"] == "t1"
    # A filter applies to both rankings.
    filtered = texts.query(q, top_k=6, text="dogs search", filters={"n": {"$gte": 2}})
    assert filtered and all(int(h["id"][1:]) >= 2 for h in filtered)


def test_text_refusals(client, key, texts):
    plain = client.create_index("plain", key)
    plain.upsert(["a"], [[1.0, 0.0]], metadata=[{"title": "running dogs"}])
    with pytest.raises(vx.InvalidArgumentError):
        plain.query_metadata(text="run")
    with pytest.raises(vx.InvalidArgumentError):
        plain.query([1.0, 0.0], text="run")
    with pytest.raises(vx.InvalidArgumentError):
        client.create_index("bad", key, text_fields=["title"], bm25_b=2)
    with pytest.raises(vx.InvalidArgumentError):
        client.create_index("bad", key, text_fields=["title"], bm25_k1=-1.0)
    with pytest.raises(vx.InvalidArgumentError, match="list of paths"):
        client.create_index("bad", key, text_fields="title")
    with pytest.raises(vx.InvalidArgumentError):
        client.create_index("bad", key, text_fields=["a..b"])
    with pytest.raises(TypeError, match="bm25_b must be a number"):
        client.create_index("bad", key, text_fields=["title"], bm25_b="0.5")
    assert "bad" not in client.list_indexes()
    with pytest.raises(vx.InvalidArgumentError):
        texts.query([1.0, 0.0], text="dogs", alpha=1.5)
    with pytest.raises(vx.InvalidArgumentError):
        texts.query([1.0, 0.0], text="dogs", text_depth=65537)
    with pytest.raises(vx.InvalidArgumentError):
        texts.query([1.0, 0.0], text="dogs", rrf_k=-1)


def test_plain_query_score_is_nan(texts):
    """vx_results_score: NaN for a plain vector query (the hits carry no score)."""
    from vx._native import ffi, lib

    p = ffi.new("vx_query_params *")
    lib.vx_query_params_init(p)
    assert p.text == ffi.NULL and p.alpha == 0.5 and p.rrf_k == p.vector_depth == p.text_depth == 0
    cfg = ffi.new("vx_index_config *")
    lib.vx_index_config_init(cfg)
    assert cfg.text_fields_json == ffi.NULL and cfg.bm25_k1 == pytest.approx(1.2) and cfg.bm25_b == 0.75
    q = ffi.new("float[]", [1.2, 0.0])
    out = ffi.new("vx_results **")
    assert lib.vx_index_query(texts._h.ptr, q, 1, 2, p, ffi.NULL, ffi.NULL, out) == 0
    try:
        assert lib.vx_results_len(out[0], 0) == 6
        assert all(math.isnan(lib.vx_results_score(out[0], 0, i)) for i in range(6))
    finally:
        lib.vx_results_free(out[0])
