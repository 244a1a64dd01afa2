"""vx.Index data calls: upsert (dicts, NumPy, lists), get, delete, list_ids,
query_metadata, query (single, batch, filters, include, NumPy fast path), epochs, getters."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import DIM, address, make_items

import vx


def exact_ids(base: np.ndarray, ids: list, q: np.ndarray, k: int, metric: str = "euclidean") -> list:
    """Brute-force reference: ids of the k nearest rows of `base` to `q`."""
    if metric == "euclidean":
        d = np.linalg.norm(base - q, axis=1)
    elif metric == "cosine":
        d = 1 - base @ q / (np.linalg.norm(base, axis=1) * np.linalg.norm(q))
    else:  # inner product
        d = -(base @ q)
    return [ids[i] for i in np.argsort(d, kind="stable")[:k]]


# ---------------------------------------------------------------- upsert


def test_upsert_dicts_roundtrip(index, items):
    assert index.num_vectors() == len(items)
    assert index.dimension == DIM
    got = index.get([it["id"] for it in items])
    assert [g["id"] for g in got] == [it["id"] for it in items]
    for g, it in zip(got, items):
        np.testing.assert_array_equal(g["vector"], it["vector"])
        assert g["metadata"] == it["metadata"]
        assert g["contents"] == it["contents"]


def test_upsert_numpy_is_zero_copy(client, key, record):
    ix = client.create_index("np", key)
    vectors = np.arange(6 * 4, dtype=np.float32).reshape(6, 4)
    rec = record("vx_index_upsert")
    ix.upsert([f"id{i}" for i in range(6)], vectors)
    (args,) = rec.calls["vx_index_upsert"]
    # (handle, n, ids, vectors, dim, contents, contents_len, metadata, key, user)
    assert args[1] == 6 and args[4] == 4
    assert address(args[3]) == vectors.ctypes.data, "a C-contiguous float32 array must be passed in place"
    # Other layouts are converted first: a copy, but the same values.
    f64 = vectors.astype(np.float64) + 100
    ix.upsert([f"f{i}" for i in range(6)], f64)
    assert address(rec.calls["vx_index_upsert"][1][3]) != f64.ctypes.data
    strided = np.asfortranarray(vectors + 200)
    ix.upsert([f"s{i}" for i in range(6)], strided)
    np.testing.assert_array_equal(ix.get("f3")[0]["vector"], f64[3].astype(np.float32))
    np.testing.assert_array_equal(ix.get("s5")[0]["vector"], strided[5])
    np.testing.assert_array_equal(ix.get("id2")[0]["vector"], vectors[2])


def test_upsert_lists_and_parallel_fields(client, key):
    ix = client.create_index("lists", key)
    ix.upsert(
        ["a", "b", "c"],
        [[1, 0], [0, 1], [1, 1]],
        contents=[b"A", None, "c\u00e9"],
        metadata=[{"x": 1}, None, '{"raw": "json"}'],
    )
    a, b, c = ix.get(["a", "b", "c"])
    assert (a["contents"], b["contents"], c["contents"]) == (b"A", None, "c\u00e9".encode())
    assert (a["metadata"], b["metadata"], c["metadata"]) == ({"x": 1}, None, {"raw": "json"})
    ix.upsert("d", [2, 2])  # a single id and vector
    ix.upsert({"id": "e", "vector": (3.0, 3.0)})  # a single dict
    assert ix.list_ids() == ["a", "b", "c", "d", "e"]
    ix.upsert([])  # nothing to do
    ix.upsert([], np.empty((0, 2), dtype=np.float32))
    assert ix.num_vectors() == 5


def test_upsert_replaces_whole_item(index):
    index.upsert([{"id": "item-0001", "vector": np.zeros(DIM)}])
    (got,) = index.get("item-0001")
    assert got["metadata"] is None and got["contents"] is None
    assert not got["vector"].any()


def test_empty_contents_roundtrip(client, key):
    ix = client.create_index("e", key)
    ix.upsert([{"id": "a", "vector": [1], "contents": b""}, {"id": "b", "vector": [2]}])
    a, b = ix.get(["a", "b"])
    assert a["contents"] == b"" and b["contents"] is None


def test_upsert_errors_store_nothing(index):
    before = index.num_vectors()
    bad = [
        (vx.DimensionMismatchError, lambda: index.upsert(["x"], np.zeros((1, DIM + 1)))),
        (vx.DimensionMismatchError, lambda: index.upsert([{"id": "x", "vector": [1, 2]}, {"id": "y", "vector": [1]}])),
        (vx.DimensionMismatchError, lambda: index.upsert(["x", "y"], [[1, 2], [1]])),
        (vx.InvalidArgumentError, lambda: index.upsert(["x"], [[np.nan] * DIM])),
        (vx.InvalidArgumentError, lambda: index.upsert(["x"], [[np.inf] * DIM])),
        (vx.InvalidArgumentError, lambda: index.upsert([""], np.zeros((1, DIM)))),
        (vx.InvalidArgumentError, lambda: index.upsert(["x" * 1025], np.zeros((1, DIM)))),
        (vx.InvalidArgumentError, lambda: index.upsert(["x", "y"], np.zeros((1, DIM)))),
        (vx.InvalidArgumentError, lambda: index.upsert(["x"], np.zeros((1, DIM)), metadata=[None, None])),
        (vx.InvalidArgumentError, lambda: index.upsert(["x"], np.zeros((1, 1, DIM)))),
        (vx.InvalidArgumentError, lambda: index.upsert([{"vector": [0] * DIM}])),
        (vx.InvalidArgumentError, lambda: index.upsert(["x"], [["a"] * DIM])),
        (vx.InvalidArgumentError, lambda: index.upsert([{"id": "x", "vector": ["a"] * DIM}])),
        (vx.InvalidUTF8Error, lambda: index.upsert([b"\xff"], np.zeros((1, DIM)))),
        (vx.InvalidJSONError, lambda: index.upsert(["x"], np.zeros((1, DIM)), metadata=["{not json"])),
        (vx.InvalidJSONError, lambda: index.upsert(["x"], np.zeros((1, DIM)), metadata=[[1, 2]])),
        (vx.WrongKeyError, lambda: index.upsert(["x"], np.zeros((1, DIM)), index_key=vx.generate_key())),
        (vx.InvalidArgumentError, lambda: index.upsert(["x"], np.zeros((1, DIM)), user_id=vx.generate_user_id())),
    ]
    for cls, call in bad:
        with pytest.raises(cls):
            call()
    with pytest.raises(TypeError):
        index.upsert([1], np.zeros((1, DIM)))  # ids are str
    with pytest.raises(TypeError):
        index.upsert([("x", [0] * DIM)])  # items are dicts
    assert index.num_vectors() == before
    assert index.get("x") == []


# ------------------------------------------------------- get / delete / ids


def test_get_include_and_missing(index, items):
    got = index.get(["item-0003", "missing", "item-0001"], include=["metadata"])
    assert got == [
        {"id": "item-0003", "metadata": items[3]["metadata"]},
        {"id": "item-0001", "metadata": items[1]["metadata"]},
    ]
    (only_id,) = index.get("item-0002", include=[])
    assert only_id == {"id": "item-0002"}
    (c,) = index.get(["item-0004"], include=("contents", "vector"))
    assert set(c) == {"id", "contents", "vector"} and c["contents"] == items[4]["contents"]
    with pytest.raises(vx.InvalidArgumentError, match="unknown include"):
        index.get("item-0001", include=["vectors"])
    assert index.get([]) == []


def test_delete(index):
    assert index.delete(["item-0000", "item-0001", "nope"]) == 2
    assert index.delete("item-0002") == 1
    assert index.delete("item-0002") == 0
    assert index.num_vectors() == 47
    assert index.get(["item-0000", "item-0002"]) == []
    with pytest.raises(vx.InvalidUTF8Error):
        index.delete([b"\xc3"])


def test_list_ids_paging(index, items):
    all_ids = sorted(it["id"] for it in items)
    assert index.list_ids() == all_ids
    pages = [index.list_ids(offset=o, limit=16) for o in range(0, 64, 16)]
    assert [len(p) for p in pages] == [16, 16, 16, 2]
    assert sum(pages, []) == all_ids
    assert index.list_ids(5, 3) == all_ids[5:8]
    assert index.list_ids(offset=100) == []
    assert index.list_ids(limit=0) == []
    with pytest.raises(vx.InvalidArgumentError):
        index.list_ids(offset=-1)


def test_query_metadata_orders_and_pages(index, items):
    evens = [it for it in items if it["metadata"]["even"]]
    by_n_desc = [it["id"] for it in sorted(evens, key=lambda it: -it["metadata"]["n"])]
    got = index.query_metadata({"even": True}, order_by="n", ascending=False)
    assert [h["id"] for h in got] == by_n_desc
    assert all(h["metadata"]["even"] and set(h) == {"id", "metadata"} for h in got)
    pages = [
        index.query_metadata({"even": True}, top_k=10, order_by="n", ascending=False, offset=o) for o in (0, 10, 20)
    ]
    assert [h["id"] for p in pages for h in p] == by_n_desc
    # By id, no filter; other fields on request; an empty page.
    assert [h["id"] for h in index.query_metadata(include=[])] == sorted(it["id"] for it in items)
    hit = index.query_metadata({"n": 7}, include=["contents", "vector"])[0]
    assert hit["contents"] == b"contents of 7" and hit["vector"].shape == (DIM,) and "metadata" not in hit
    assert index.query_metadata(top_k=0) == []
    assert index.query_metadata(offset=1000) == []


def test_query_metadata_refuses_bad_arguments(index):
    with pytest.raises(vx.InvalidArgumentError, match="VX_INCLUDE_DISTANCE"):
        index.query_metadata(include=["distance"])
    with pytest.raises(vx.InvalidArgumentError, match="order_by"):
        index.query_metadata(order_by="a..b")
    with pytest.raises(vx.InvalidFilterError):
        index.query_metadata({"n": {"$bogus": 1}})
    with pytest.raises(vx.InvalidArgumentError):
        index.query_metadata(offset=-1)


# ----------------------------------------------------------------- query


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "inner_product"])
def test_query_matches_brute_force(client, key, metric):
    items = make_items(300, dim=16, seed=3)
    base = np.stack([it["vector"] for it in items])
    ids = [it["id"] for it in items]
    ix = client.create_index(metric, key, metric=metric)
    ix.upsert(ids, base)
    queries = np.random.default_rng(5).standard_normal((7, 16)).astype(np.float32)
    hits = ix.query(queries, top_k=10)
    assert len(hits) == 7
    for q, row in zip(queries, hits):
        assert [h["id"] for h in row] == exact_ids(base, ids, q, 10, metric)
        d = [h["distance"] for h in row]
        assert d == sorted(d)
    # One vector in: one list of hits out, the same as row 0 of the batch.
    single = ix.query(queries[0], top_k=10)
    assert [h["id"] for h in single] == [h["id"] for h in hits[0]]
    assert single[0]["distance"] == pytest.approx(hits[0][0]["distance"])
    if metric == "euclidean":
        assert single[0]["distance"] == pytest.approx(float(np.linalg.norm(base[ids.index(single[0]["id"])] - queries[0])), rel=1e-5)


def test_ivf_rabitq_untrained_query_is_exact_and_takes_rerank_mult(client, key, record):
    items = make_items(300, dim=16, seed=3)
    base = np.stack([it["vector"] for it in items])
    ids = [it["id"] for it in items]
    flat = client.create_index("flat", key)
    rq = client.create_index("rq", key, index_type="ivf_rabitq", quantizer_bits=1)
    flat.upsert(ids, base)
    rq.upsert(ids, base)
    queries = np.random.default_rng(5).standard_normal((7, 16)).astype(np.float32)
    want = flat.query(queries, top_k=10)
    rec = record("vx_index_query")
    for mult in (None, 1, vx.MAX_RERANK_MULT):
        assert rq.query(queries, top_k=10, rerank_mult=mult) == want
        got_ids, got_dist = rq.query_numpy(queries, top_k=10, rerank_mult=mult)
        assert [list(r) for r in got_ids] == [[h["id"] for h in row] for row in want]
    for q, row in zip(queries, want):
        assert [h["id"] for h in row] == exact_ids(base, ids, q, 10)
    # What reached libvx: None is 0 (automatic), a number passes as it is.
    assert [args[4].rerank_mult for args in rec.calls["vx_index_query"]] == [0, 0, 1, 1, 4096, 4096]
    with pytest.raises(vx.InvalidArgumentError, match="rerank_mult must be 0 .automatic. to 4096, got 4097"):
        rq.query(queries[0], rerank_mult=vx.MAX_RERANK_MULT + 1)
    with pytest.raises(vx.InvalidArgumentError, match="rerank_mult must be in"):
        rq.query_numpy(queries[0], rerank_mult=-1)
    with pytest.raises(vx.InvalidArgumentError, match="rerank_mult"):
        flat.query(queries[0], rerank_mult=vx.MAX_RERANK_MULT + 1)  # checked on IVF_FLAT too


def test_query_list_inputs(index, items):
    q = [float(x) for x in items[7]["vector"]]
    assert index.query(q, top_k=1)[0]["id"] == "item-0007"
    batch = index.query([q, [float(x) for x in items[9]["vector"]]], top_k=1)
    assert [r[0]["id"] for r in batch] == ["item-0007", "item-0009"]
    assert index.query(np.empty((0, DIM), dtype=np.float32)) == []
    f64 = np.asarray(q, dtype=np.float64)
    assert index.query(f64, top_k=1)[0]["id"] == "item-0007"


def test_query_filters_include_greedy(index, items):
    q = items[0]["vector"]
    evens = index.query(q, top_k=100, filters={"even": True})
    assert len(evens) == 25 and all(h["id"][-1] in "02468" for h in evens)
    as_text = index.query(q, top_k=100, filters='{"n": {"$gte": 40}}')
    assert sorted(h["id"] for h in as_text) == [f"item-{i:04d}" for i in range(40, 50)]
    assert index.query(q, top_k=100, filters=b'{"tags": "a"}') == index.query(q, top_k=100, filters={"tags": {"$in": ["a"]}})
    full = index.query(q, top_k=3, include=["distance", "metadata", "contents", "vector"], greedy=True)
    h = full[0]
    assert h["id"] == "item-0000" and h["distance"] == pytest.approx(0.0, abs=1e-5)
    assert h["metadata"] == items[0]["metadata"] and h["contents"] == items[0]["contents"]
    np.testing.assert_array_equal(h["vector"], items[0]["vector"])
    assert set(index.query(q, top_k=1, include=["metadata"])[0]) == {"id", "metadata"}
    assert set(index.query(q, top_k=1)[0]) == {"id", "distance"}


def test_query_errors(index):
    q = np.zeros(DIM, dtype=np.float32)
    with pytest.raises(vx.DimensionMismatchError):
        index.query(np.zeros(DIM + 1))
    with pytest.raises(vx.InvalidFilterError, match=r"\$gt"):
        index.query(q, filters={"n": {"$gt": [1]}, "x": {"$bogus": 1}})
    with pytest.raises(vx.InvalidFilterError):
        index.query(q, filters="{not json")
    with pytest.raises(vx.InvalidUTF8Error):
        index.query(q, filters=b'{"a": "\xff"}')
    with pytest.raises(vx.InvalidArgumentError):
        index.query(q, top_k=0)
    with pytest.raises(vx.InvalidArgumentError):
        index.query(q, top_k=65537)
    with pytest.raises(vx.InvalidArgumentError):
        index.query(np.full(DIM, np.nan))
    with pytest.raises(vx.InvalidArgumentError):
        index.query(q, include=["ids"])
    with pytest.raises(vx.InvalidArgumentError):
        index.query(np.zeros((1, 1, DIM)))
    with pytest.raises(vx.WrongKeyError):
        index.query(q, index_key=vx.generate_key())


def test_query_numpy_matches_query(index):
    queries = np.random.default_rng(11).standard_normal((5, DIM)).astype(np.float32)
    ids, dist = index.query_numpy(queries, top_k=10)
    assert ids.shape == dist.shape == (5, 10) and dist.dtype == np.float32 and ids.dtype == object
    hits = index.query(queries, top_k=10)
    for q in range(5):
        assert list(ids[q]) == [h["id"] for h in hits[q]]
        np.testing.assert_allclose(dist[q], [h["distance"] for h in hits[q]], rtol=1e-6)
    # A single vector is one row; fewer hits than top_k are padded.
    ids1, dist1 = index.query_numpy(queries[0], top_k=60, filters={"n": {"$lt": 3}})
    assert ids1.shape == (1, 60)
    assert sorted(ids1[0, :3]) == ["item-0000", "item-0001", "item-0002"]
    assert all(i is None for i in ids1[0, 3:]) and np.isinf(dist1[0, 3:]).all()
    empty_ids, empty_dist = index.query_numpy(np.empty((0, DIM), dtype=np.float32), top_k=4)
    assert empty_ids.shape == empty_dist.shape == (0, 4)
    with pytest.raises(vx.DimensionMismatchError):
        index.query_numpy(queries[:, :3])


def test_query_zero_copy(index, record):
    rec = record("vx_index_query")
    q = np.random.default_rng(1).standard_normal((3, DIM)).astype(np.float32)
    index.query(q, top_k=2)
    index.query_numpy(q, top_k=2)
    for args in rec.calls["vx_index_query"]:
        assert address(args[1]) == q.ctypes.data and args[2] == 3 and args[3] == DIM


# ------------------------------------------------ getters, epochs, lifecycle


def test_getters_untrained(index):
    assert index.dimension == DIM
    assert index.metric == "euclidean"
    assert index.index_type == "ivf_flat"
    assert index.n_lists == 0 and index.auto_n_probes == 0
    assert index.training_state == "untrained" and index.is_trained() is False
    assert "test" in repr(index)


def test_epoch_and_require_epoch(client, key, index):
    e1 = index.epoch()
    assert isinstance(e1, bytes) and len(e1) == vx.EPOCH_LEN
    index.require_epoch(e1)
    index.upsert(["new"], np.ones((1, DIM)))
    e2 = index.epoch()
    assert e2 != e1
    index.require_epoch(bytearray(e1))  # older states pass
    other = client.load_index("test", key)
    other.require_epoch(e2)
    forged = bytearray(e2)
    forged[-1] ^= 1  # same version, another digest: another history
    with pytest.raises(vx.IntegrityError):
        other.require_epoch(forged)
    newer = bytearray(e2)
    newer[0] += 5  # a version the store never reached: a rollback
    with pytest.raises(vx.IntegrityError):
        other.require_epoch(newer)
    with pytest.raises(vx.InvalidArgumentError):
        other.require_epoch(e2[:10])
    other.close()


def test_refresh_sees_other_handles_writes(client, key, index):
    other = client.load_index("test", key)
    index.upsert(["fresh"], np.ones((1, DIM)))
    other.refresh()
    assert other.get("fresh")[0]["id"] == "fresh"
    other.close()


def test_compact_file_store(tmp_path, key):
    with vx.Client(f"file:{tmp_path}") as c, c.create_index("a", key) as ix:
        ix.upsert([f"{i}" for i in range(500)], np.ones((500, 32)))
        ix.delete([f"{i}" for i in range(500)])
        ix.compact()
        assert ix.num_vectors() == 0


def test_delete_index(client, key, index):
    other = client.load_index("test", key)
    with pytest.raises(vx.WrongKeyError):
        index.delete_index(index_key=vx.generate_key())
    index.delete_index()
    assert client.list_indexes() == []
    with pytest.raises(vx.NotFoundError) as e:
        other.num_vectors()
    assert e.value.code == vx.lib.VX_STATUS_NOT_FOUND
    with pytest.raises(vx.NotFoundError):
        index.query(np.zeros(DIM))
    other.close()


def test_metadata_roundtrip_types(client, key):
    ix = client.create_index("m", key)
    meta = {"s": "\u00e9\u4e2d", "i": 2**53, "f": 1.5, "b": False, "n": None, "nested": {"l": [1, {"x": "y"}]}}
    ix.upsert([{"id": "a", "vector": [1, 2], "metadata": meta}])
    assert ix.get("a")[0]["metadata"] == meta
    assert ix.query([1, 2], top_k=1, filters={"nested.l": 1}, include=["metadata"])[0]["metadata"] == meta
    assert json.loads(json.dumps(meta)) == meta
