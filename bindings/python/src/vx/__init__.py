"""vx: an embeddable encrypted vector index, from Python.

A thin layer over libvx's C ABI (bundled in this package, called through
cffi with the GIL released): the same encrypted indexes, the same files and
the same speed as from C.

>>> import vx
>>> key = vx.generate_key()                      # 32 bytes; keep it in your KMS
>>> with vx.Client("memory:") as client:
...     index = client.create_index("docs", key)
...     index.upsert([{"id": "a", "vector": [1, 0, 0], "metadata": {"lang": "en"}}])
...     index.query([0.9, 0.1, 0], top_k=1)[0]["id"]
'a'
>>> vx.wipe(key)

Keys: the package reads keys in place from the object you pass (bytearray,
memoryview, bytes ...) and keeps no copy of them; :func:`generate_key`
returns a bytearray you can clear with :func:`wipe`. An immutable ``bytes``
key cannot be wiped: prefer bytearray.
"""

from __future__ import annotations

from typing import Any

from . import errors
from ._client import Client
from ._common import EPOCH_LEN, KEY_LEN, MAX_QUANTIZER_BITS, MAX_RERANK_MULT, USER_ID_LEN, fill_random
from ._index import Index
from ._native import ffi, lib, library_path
from .errors import *  # noqa: F401,F403  (every exception class, status_str, error_class)

__all__ = [
    "Client",
    "Index",
    "generate_key",
    "generate_user_id",
    "wipe",
    "library_version",
    "library_path",
    "KEY_LEN",
    "USER_ID_LEN",
    "EPOCH_LEN",
    "MAX_QUANTIZER_BITS",
    "MAX_RERANK_MULT",
    "errors",
]
# The exception classes (one per status code), status_str and error_class.
__all__ += errors.__all__

__version__: str = ffi.string(lib.vx_version_string()).decode()
"""The version of the bundled libvx (the package's version is the same)."""


def library_version() -> str:
    """libvx's version string, ``"MAJOR.MINOR.PATCH"`` (``vx_version_string``)."""
    return ffi.string(lib.vx_version_string()).decode()


def generate_key() -> bytearray:
    """A new random 32-byte key from the operating system's random source.

    Returned as a bytearray (never an immutable bytes copy) so it can be
    wiped with :func:`wipe` once stored in your key management system.
    """
    return fill_random(bytearray(KEY_LEN))


def generate_user_id() -> bytes:
    """A new random 16-byte user id (not a secret) from the OS random source."""
    return bytes(fill_random(bytearray(USER_ID_LEN)))


def wipe(buffer: Any) -> None:
    """Overwrites a writable bytes-like object (a key in a bytearray,
    memoryview or NumPy array) with zeros, in place."""
    view = memoryview(buffer).cast("B")
    view[:] = bytes(len(view))
