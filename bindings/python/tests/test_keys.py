"""Keys and users: generate_key/generate_user_id/wipe, per-call keys, user
keys with READ/WRITE, revocation, rotation, and keys passed in place."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DIM, address

import vx


def test_generate_key_and_user_id():
    keys = {bytes(vx.generate_key()) for _ in range(50)}
    assert len(keys) == 50
    k = vx.generate_key()
    assert isinstance(k, bytearray) and len(k) == vx.KEY_LEN == 32
    u = vx.generate_user_id()
    assert isinstance(u, bytes) and len(u) == vx.USER_ID_LEN == 16
    assert len({vx.generate_user_id() for _ in range(50)}) == 50
    # Not a constant pattern: about half the bits are set.
    ones = sum(bin(b).count("1") for k in keys for b in k)
    assert 0.45 < ones / (50 * 256) < 0.55


def test_wipe():
    k = vx.generate_key()
    vx.wipe(k)
    assert k == bytearray(32)
    arr = np.frombuffer(bytearray(b"\x01" * 32), dtype=np.uint8)
    vx.wipe(arr)
    assert not arr.any()
    with pytest.raises(TypeError):
        vx.wipe(b"immutable bytes cannot be wiped!")


def test_keys_are_passed_in_place(client, key, record):
    """No copy of a key: libvx gets a pointer into the caller's own object."""
    rec = record("vx_index_create", "vx_index_load", "vx_index_num_vectors", "vx_index_create_user_keys",
                 "vx_index_rotate_key", "vx_index_query")
    ix = client.create_index("k", key)
    assert address(rec.calls["vx_index_create"][0][2]) == address(key)
    ix.upsert(["a"], np.ones((1, DIM)))
    client.load_index("k", key).close()
    assert address(rec.calls["vx_index_load"][0][2]) == address(key)
    mv = memoryview(key)
    ix.num_vectors(index_key=mv)
    assert address(rec.calls["vx_index_num_vectors"][0][1]) == address(key)
    ix.query(np.ones(DIM), index_key=key)
    assert address(rec.calls["vx_index_query"][0][5]) == address(key)
    user, user_key = vx.generate_user_id(), vx.generate_key()
    ix.create_user_keys(user, user_key, ["read"], index_key=key)
    args = rec.calls["vx_index_create_user_keys"][0]
    assert address(args[2]) == address(user_key) and address(args[4]) == address(key)
    new = vx.generate_key()
    ix.rotate_key(key, new)
    args = rec.calls["vx_index_rotate_key"][0]
    assert address(args[1]) == address(key) and address(args[2]) == address(new)
    # Wiping the caller's key after the call is all it takes to forget it:
    # the handle keeps its own (libvx's) copy.
    vx.wipe(new)
    assert ix.num_vectors() == 1


def test_user_keys_permissions(client, key):
    ix = client.create_index("u", key)
    ix.upsert(["a"], np.ones((1, DIM)))
    reader, reader_key = vx.generate_user_id(), vx.generate_key()
    writer, writer_key = vx.generate_user_id(), vx.generate_key()
    both, both_key = vx.generate_user_id(), vx.generate_key()
    ix.create_user_keys(reader, reader_key, ["read"])
    ix.create_user_keys(writer, writer_key, "write")
    ix.create_user_keys(both, both_key, ["read", "write"])
    listed = ix.list_user_keys()
    assert sorted(listed, key=lambda u: u["user_id"]) == listed
    assert {u["user_id"]: u["permissions"] for u in listed} == {
        reader: ["read"],
        writer: ["write"],
        both: ["read", "write"],
    }

    as_reader = client.load_index("u", reader_key, user_id=reader)
    assert as_reader.query(np.ones(DIM), top_k=1)[0]["id"] == "a"
    assert as_reader.dimension == DIM
    with pytest.raises(vx.PermissionDeniedError) as e:
        as_reader.upsert(["b"], np.ones((1, DIM)))
    assert isinstance(e.value, RuntimeError) and e.value.code == vx.lib.VX_STATUS_PERMISSION_DENIED
    with pytest.raises(vx.PermissionDeniedError):
        as_reader.list_user_keys()  # root only

    as_writer = client.load_index("u", writer_key, user_id=writer)
    as_writer.upsert(["w"], np.zeros((1, DIM)))
    with pytest.raises(vx.PermissionDeniedError):
        as_writer.query(np.ones(DIM))
    with pytest.raises(vx.PermissionDeniedError):
        as_writer.dimension  # getters need READ; the code comes from a READ call
    with pytest.raises(vx.PermissionDeniedError):
        as_writer.is_trained()

    # A stateless service passes a user's key per call on any handle.
    assert ix.num_vectors(index_key=both_key, user_id=both) == 2
    ix.delete(["w"], index_key=both_key, user_id=both)
    with pytest.raises(vx.PermissionDeniedError):
        ix.delete(["a"], index_key=reader_key, user_id=reader)
    with pytest.raises(vx.WrongKeyError):
        ix.num_vectors(index_key=reader_key, user_id=writer)  # another user's id

    # Revocation: the key stops working at once, on open handles too.
    ix.delete_user_keys(reader)
    ix.delete_user_keys(reader)  # idempotent
    with pytest.raises(vx.WrongKeyError):
        as_reader.query(np.ones(DIM))
    with pytest.raises(vx.WrongKeyError):
        as_reader.metric
    with pytest.raises(vx.WrongKeyError):
        client.load_index("u", reader_key, user_id=reader)
    assert {u["user_id"] for u in ix.list_user_keys()} == {writer, both}
    for h in (as_reader, as_writer):
        h.close()


def test_user_key_errors(client, key):
    ix = client.create_index("e", key)
    uid, ukey = vx.generate_user_id(), vx.generate_key()
    with pytest.raises(vx.InvalidArgumentError):
        ix.create_user_keys(bytes(16), ukey, ["read"])  # the zero id is the root's
    with pytest.raises(vx.InvalidArgumentError):
        ix.create_user_keys(uid, key, ["read"])  # user key = root key
    with pytest.raises(vx.InvalidArgumentError):
        ix.create_user_keys(uid, ukey, [])  # no permission
    with pytest.raises(vx.InvalidArgumentError, match="unknown permission"):
        ix.create_user_keys(uid, ukey, ["admin"])
    with pytest.raises(vx.InvalidArgumentError, match="16 bytes"):
        ix.create_user_keys(b"x" * 15, ukey, ["read"])
    with pytest.raises(vx.WrongKeyError):
        ix.create_user_keys(uid, ukey, ["read"], index_key=vx.generate_key())
    with pytest.raises(vx.WrongKeyError):
        ix.list_user_keys(index_key=vx.generate_key())
    with pytest.raises(TypeError):
        ix.num_vectors(index_key=12345)
    assert ix.list_user_keys() == []


def test_rotate_key(client, key):
    ix = client.create_index("r", key)
    ix.upsert(["a"], np.ones((1, DIM)))
    uid, ukey = vx.generate_user_id(), vx.generate_key()
    ix.create_user_keys(uid, ukey, ["read"])
    old_handle = client.load_index("r", key)
    new = vx.generate_key()
    with pytest.raises(vx.InvalidArgumentError):
        ix.rotate_key(key, key)
    with pytest.raises(vx.WrongKeyError):
        ix.rotate_key(vx.generate_key(), new)
    with pytest.raises(vx.NullArgumentError):
        ix.rotate_key(None, new)
    ix.rotate_key(key, new)
    assert ix.num_vectors() == 1  # this handle moved to the new key
    with pytest.raises(vx.WrongKeyError):
        old_handle.num_vectors()  # bound to the old key
    with pytest.raises(vx.WrongKeyError):
        client.load_index("r", key)
    client.load_index("r", new).close()
    assert ix.num_vectors(index_key=ukey, user_id=uid) == 1  # user keys keep working
    old_handle.close()
