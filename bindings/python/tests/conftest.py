"""Fixtures shared by the tests of the vx package.

The tests run against the installed package (scripts/test-all.sh installs it
into a scratch venv). Optional environment:
  VX_TEST_HOOKS_LIB  a libvx built with the test-hooks feature: enables the
                     PANIC and POISONED tests (in a subprocess)
  VX_INCLUDE_DIR     the directory of vx.h (default: found above this file)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np
import pytest

import vx

HERE = Path(__file__).resolve().parent
DIM = 8


def repo_include_dir() -> Path | None:
    env = os.environ.get("VX_INCLUDE_DIR")
    if env:
        return Path(env)
    for d in HERE.parents:
        if (d / "include" / "vx.h").is_file():
            return d / "include"
    return None


@pytest.fixture
def key() -> bytearray:
    k = vx.generate_key()
    yield k
    vx.wipe(k)


@pytest.fixture
def client():
    with vx.Client("memory:") as c:
        yield c


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def make_items(n: int, dim: int = DIM, seed: int = 1) -> List[Dict[str, Any]]:
    r = np.random.default_rng(seed)
    vecs = r.standard_normal((n, dim)).astype(np.float32)
    return [
        {
            "id": f"item-{i:04d}",
            "vector": vecs[i],
            "metadata": {"n": i, "even": i % 2 == 0, "tags": ["a" if i % 3 == 0 else "b"]},
            "contents": f"contents of {i}".encode(),
        }
        for i in range(n)
    ]


@pytest.fixture
def items() -> List[Dict[str, Any]]:
    return make_items(50)


@pytest.fixture
def index(client, key, items):
    ix = client.create_index("test", key)
    ix.upsert(items)
    yield ix
    ix.close()


class Recorder:
    """Stands in for the package's `lib`, recording the arguments of every
    call to the functions named, then calling the real function."""

    def __init__(self, real: Any, names: List[str]) -> None:
        self._real = real
        self._names = set(names)
        self.calls: Dict[str, List[tuple]] = {n: [] for n in names}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name not in self._names:
            return attr

        def wrapper(*args: Any) -> Any:
            self.calls[name].append(args)
            return attr(*args)

        return wrapper


@pytest.fixture
def record(monkeypatch) -> Callable[..., Recorder]:
    """record("vx_index_upsert", ...) patches the package to record those calls."""
    import vx._client
    import vx._index

    def start(*names: str) -> Recorder:
        rec = Recorder(vx._index.lib, list(names))
        monkeypatch.setattr(vx._index, "lib", rec)
        monkeypatch.setattr(vx._client, "lib", rec)
        return rec

    return start


def address(cdata_or_buffer: Any) -> int:
    """The address a cffi pointer holds, or of a buffer's first byte."""
    ffi = vx._native.ffi
    if isinstance(cdata_or_buffer, ffi.CData):
        return int(ffi.cast("uintptr_t", cdata_or_buffer))
    return int(ffi.cast("uintptr_t", ffi.from_buffer(cdata_or_buffer)))


def have_cc() -> bool:
    return shutil.which(os.environ.get("CC", "cc")) is not None
