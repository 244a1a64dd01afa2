"""The same file: store from Python and from C: Python writes an index, a
small C program (tests/interop.c, compiled here against include/vx.h and
the very libvx the package loaded) reads and checks it, adds an item and
writes an index of its own, and Python reads both back."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from conftest import HERE, have_cc, repo_include_dir

import vx


@pytest.fixture(scope="module")
def interop_binary(tmp_path_factory):
    include = repo_include_dir()
    if include is None or not have_cc():
        pytest.skip("needs a C compiler and include/vx.h (set VX_INCLUDE_DIR)")
    d = tmp_path_factory.mktemp("interop")
    # The library under its SONAME, so the program loads exactly this file.
    for name in ("libvx.so", "libvx.so.0"):
        os.symlink(vx.library_path, d / name)
    exe = d / "interop"
    cc = os.environ.get("CC", "cc").split()
    subprocess.run(
        [*cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-I", str(include), str(HERE / "interop.c"),
         "-L", str(d), "-lvx", f"-Wl,-rpath,{d}", "-lm", "-o", str(exe)],
        check=True,
    )
    return exe


def test_python_writes_c_reads_and_writes_python_reads(tmp_path, interop_binary, key):
    store = tmp_path / "store"
    with vx.Client(f"file:{store}") as client:
        with client.create_index("from_python", key, dimension=4, metric="cosine") as ix:
            ix.upsert(
                ["p0", "p1", "p2"],
                np.array([[i + j for j in range(4)] for i in range(3)], dtype=np.float32),
                contents=[f"c{i}".encode() for i in range(3)],
                metadata=[f'{{"n":{i}}}' for i in range(3)],
            )
    # The key goes over stdin, never on the command line.
    out = subprocess.run(
        [str(interop_binary), str(store)], input=bytes(key).hex() + "\n", capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr
    with vx.Client(str(store)) as client:
        assert client.list_indexes() == ["from_c", "from_python"]
        with client.load_index("from_python", key) as ix:
            assert ix.num_vectors() == 4
            (c,) = ix.get("from-c")
            np.testing.assert_array_equal(c["vector"], [9, 8, 7, 6])
            assert c["metadata"] == {"writer": "c"} and c["contents"] is None
            assert ix.query([9, 8, 7, 6], top_k=1)[0]["id"] == "from-c"
        with client.load_index("from_c", key) as ix:
            assert ix.dimension == 4 and ix.metric == "euclidean"
            assert ix.list_ids() == ["x0", "x1", "x2", "x3", "x4"]
            hits = ix.query([2.9, 0, 0, 0], top_k=2, include=["distance", "metadata"])
            assert [(h["id"], h["metadata"]) for h in hits] == [("x3", {"k": 3}), ("x2", {"k": 2})]
            assert hits[0]["distance"] == pytest.approx(0.1, abs=1e-6)


def test_c_refuses_a_wrong_key(tmp_path, interop_binary, key):
    store = tmp_path / "store"
    with vx.Client(f"file:{store}") as client:
        client.create_index("from_python", key, dimension=4).close()
    out = subprocess.run(
        [str(interop_binary), str(store)], input=bytes(vx.generate_key()).hex() + "\n",
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 1 and out.stderr.startswith("vx_index_load: "), out.stderr
    assert vx.status_str(vx.lib.VX_STATUS_WRONG_KEY) in out.stderr
