"""vx.Client: stores, options, creating and loading indexes, lifetimes."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pytest

import vx


def test_memory_store_create_load_list(key):
    with vx.Client("memory:") as client:
        assert client.list_indexes() == []
        a = client.create_index("b-index", key, dimension=4)
        b = client.create_index("a-index", key)
        assert client.list_indexes() == ["a-index", "b-index"]
        a.upsert(["x"], np.ones((1, 4), dtype=np.float32))
        again = client.load_index("b-index", key)
        assert again.get("x")[0]["id"] == "x"
        assert again.name == again.index_name == "b-index"
        for ix in (a, b, again):
            ix.close()


@pytest.mark.parametrize("form", ["file:", "plain", "pathlike"])
def test_file_store_persists(tmp_path, key, form):
    d = tmp_path / "store"
    uri = {"file:": f"file:{d}", "plain": str(d), "pathlike": d}[form]
    with vx.Client(uri) as client:
        with client.create_index("docs", key) as ix:
            ix.upsert([{"id": "a", "vector": [1, 2, 3], "metadata": {"k": "v"}}])
    with vx.Client(uri, cpu_threads=1, cache_bytes=0) as client:
        with client.load_index("docs", key) as ix:
            (got,) = ix.get("a")
            assert got["id"] == "a" and got["contents"] is None and got["metadata"] == {"k": "v"}
            np.testing.assert_array_equal(got["vector"], np.array([1, 2, 3], np.float32))


def test_create_options(client, key):
    ix = client.create_index("c", key, dimension=3, metric="cosine", storage_precision="f16")
    assert (ix.dimension, ix.metric, ix.index_type) == (3, "cosine", "ivf_flat")
    ix2 = client.create_index("d", key, metric="INNER_PRODUCT", index_type="ivf_flat")
    assert ix2.metric == "inner_product" and ix2.dimension == 0
    ix3 = client.create_index("e", key, metric=vx.lib.VX_METRIC_SQUARED_EUCLIDEAN, storage_precision="f32")
    assert ix3.metric == "squared_euclidean"
    ix.upsert(["v"], np.array([[1.0, 0.5, 0.25]], dtype=np.float32))
    assert ix.query([1.0, 0.5, 0.25], top_k=1)[0]["id"] == "v"
    with pytest.raises(vx.InvalidArgumentError):
        client.create_index("p", key, storage_precision="f8")


def test_filterable_fields(client, key):
    fast = client.create_index("fast", key, filterable_fields=["n", "tags"])
    plain = client.create_index("plain", key)
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((400, 8)).astype(np.float32)
    metadata = [{"n": i % 10, "tags": ["a" if i % 3 else "b"]} for i in range(400)]
    for ix in (fast, plain):
        ix.upsert([f"i{i}" for i in range(400)], vectors, metadata=metadata)
    for f in ({"n": 3}, {"n": {"$gte": 8}, "tags": "b"}, {"n": {"$ne": 2}}):
        assert fast.query(vectors[5], top_k=7, filters=f) == plain.query(vectors[5], top_k=7, filters=f)
    with pytest.raises(vx.InvalidArgumentError, match="filterable field 0"):
        client.create_index("bad", key, filterable_fields=["a..b"])
    with pytest.raises(vx.InvalidArgumentError, match="list of paths"):
        client.create_index("bad", key, filterable_fields="n")


def test_create_errors(client, key):
    client.create_index("dup", key)
    with pytest.raises(vx.AlreadyExistsError) as e:
        client.create_index("dup", vx.generate_key())
    assert e.value.code == vx.lib.VX_STATUS_ALREADY_EXISTS and isinstance(e.value, RuntimeError)
    with pytest.raises(vx.InvalidArgumentError):
        client.create_index("", key)  # empty name
    with pytest.raises(vx.InvalidArgumentError):
        client.create_index("x" * 256, key)  # name too long
    with pytest.raises(vx.InvalidArgumentError):
        client.create_index("pq", key, index_type="ivf_pq")  # reserved, refused by libvx
    with pytest.raises(vx.InvalidArgumentError):
        client.create_index("m", key, metric=77)  # refused by libvx
    with pytest.raises(vx.InvalidArgumentError, match="unknown metric"):
        client.create_index("m", key, metric="manhattan")
    with pytest.raises(TypeError):
        client.create_index("m", key, metric=1.5)
    with pytest.raises(vx.InvalidUTF8Error):
        client.create_index(b"\xff\xfe", key)
    with pytest.raises(vx.InvalidUTF8Error):
        client.create_index("\udc80", key)  # a lone surrogate has no UTF-8
    with pytest.raises(vx.NullArgumentError):
        client.create_index("nokey", None)
    with pytest.raises(vx.InvalidArgumentError, match="32 bytes"):
        client.create_index("short", bytes(31))
    with pytest.raises(TypeError):
        client.create_index("str", "k" * 32)
    with pytest.raises(vx.InvalidArgumentError):
        client.create_index("neg", key, dimension=-1)
    assert "nokey" not in client.list_indexes()


def test_load_errors(client, key):
    client.create_index("a", key).close()
    with pytest.raises(vx.NotFoundError):
        client.load_index("missing", key)
    with pytest.raises(vx.WrongKeyError):
        client.load_index("a", vx.generate_key())
    with pytest.raises(vx.NullArgumentError):
        client.load_index("a", None)
    with pytest.raises(vx.InvalidArgumentError, match="16 bytes"):
        client.load_index("a", key, user_id=b"short")
    with pytest.raises(vx.WrongKeyError):
        client.load_index("a", vx.generate_key(), user_id=vx.generate_user_id())


def test_open_errors(tmp_path):
    with pytest.raises(vx.InvalidArgumentError):
        vx.Client("")
    with pytest.raises(vx.InvalidArgumentError):
        vx.Client("s3://bucket")
    with pytest.raises(vx.InvalidUTF8Error):
        vx.Client(b"\xff\xfe")
    with pytest.raises(vx.IoError) as e:
        vx.Client("file:/dev/null/cannot-be-a-dir")
    assert e.value.code == vx.lib.VX_STATUS_IO and e.value.message
    with pytest.raises(vx.InvalidArgumentError):
        vx.Client("memory:", cpu_threads=-1)
    with pytest.raises(vx.InvalidArgumentError):
        vx.Client("memory:", cache_bytes=1 << 64)
    # One process opens a file: directory at a time.
    with vx.Client(f"file:{tmp_path}"):
        with pytest.raises(vx.StorageError):
            vx.Client(f"file:{tmp_path}")
    with vx.Client(f"file:{tmp_path}"):  # free again after close
        pass


def test_close_is_idempotent_and_final(key):
    client = vx.Client("memory:")
    ix = client.create_index("a", key)
    client.close()
    client.close()
    assert client.closed
    with pytest.raises(vx.ClosedError) as e:
        client.list_indexes()
    assert isinstance(e.value, ValueError) and e.value.code == vx.lib.VX_STATUS_NULL_ARGUMENT
    with pytest.raises(vx.ClosedError):
        client.create_index("b", key)
    with pytest.raises(vx.ClosedError):
        client.load_index("a", key)
    # An index stays usable after its client is closed (as in C).
    ix.upsert(["x"], np.zeros((1, 2), dtype=np.float32))
    assert ix.num_vectors() == 1
    ix.close()
    ix.close()
    with pytest.raises(vx.ClosedError):
        ix.num_vectors()
    with pytest.raises(vx.ClosedError):
        ix.dimension
    assert "closed" in repr(ix) and "closed" in repr(client)


def test_context_managers_free_the_store(tmp_path, key):
    """A file: directory is locked while a client or index holds it: opening
    it again proves the handles were freed at the end of the with blocks."""
    uri = f"file:{tmp_path}"
    with vx.Client(uri) as client, client.create_index("a", key) as ix:
        ix.upsert(["x"], np.zeros((1, 2), dtype=np.float32))
    with vx.Client(uri) as client:
        assert client.list_indexes() == ["a"]


def test_open_index_keeps_the_store_open(tmp_path, key):
    uri = f"file:{tmp_path}"
    client = vx.Client(uri)
    ix = client.create_index("a", key)
    client.close()
    with pytest.raises(vx.StorageError):  # the index still holds the store
        vx.Client(uri)
    ix.close()
    vx.Client(uri).close()


def test_garbage_collection_frees_handles(tmp_path, key):
    uri = f"file:{tmp_path}"
    client = vx.Client(uri)
    ix = client.create_index("a", key)
    ref = weakref.ref(client)
    del client
    gc.collect()
    assert ref() is not None, "an index must keep its client alive"
    assert ix.num_vectors() == 0
    del ix
    gc.collect()
    assert ref() is None
    vx.Client(uri).close()  # both handles were freed: the directory is free


def test_library_version():
    v = vx.library_version()
    assert v == vx.__version__
    major, minor, patch = (int(x) for x in v.split("."))
    assert vx.lib.vx_version_number() == major * 1000000 + minor * 1000 + patch == vx.lib.VX_VERSION_NUMBER
    assert Path(vx.library_path).is_file()


def test_ivf_rabitq_and_quantizer_bits(client, key):
    ix = client.create_index("rq", key, dimension=4, index_type="ivf_rabitq", quantizer_bits=5)
    assert (ix.index_type, ix.quantizer_bits) == ("ivf_rabitq", 5)
    default = client.create_index("rq-default", key, index_type="IVF_RABITQ")
    assert 1 <= default.quantizer_bits <= vx.MAX_QUANTIZER_BITS  # None: the library's default
    top = client.create_index("rq-max", key, index_type=vx.lib.VX_INDEX_TYPE_IVF_RABITQ, quantizer_bits=vx.MAX_QUANTIZER_BITS)
    assert top.quantizer_bits == vx.MAX_QUANTIZER_BITS
    flat = client.create_index("flat", key)
    assert (flat.index_type, flat.quantizer_bits) == ("ivf_flat", 0)
    with client.load_index("rq", key) as again:
        assert (again.index_type, again.quantizer_bits) == ("ivf_rabitq", 5)
    with pytest.raises(vx.InvalidArgumentError, match="quantizer_bits must be 1 to 8"):
        client.create_index("b", key, index_type="ivf_rabitq", quantizer_bits=vx.MAX_QUANTIZER_BITS + 1)
    with pytest.raises(vx.InvalidArgumentError, match="applies to IVF_RABITQ only"):
        client.create_index("b", key, quantizer_bits=2)  # IVF_FLAT takes none
    with pytest.raises(vx.InvalidArgumentError, match="quantizer_bits must be in"):
        client.create_index("b", key, index_type="ivf_rabitq", quantizer_bits=-1)
    with pytest.raises(TypeError):
        client.create_index("b", key, index_type="ivf_rabitq", quantizer_bits=2.0)
    assert "b" not in client.list_indexes()
