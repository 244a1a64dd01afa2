"""Loads libvx, its cffi declarations and the package's C helper.

The declarations (``_vx_cffi``) are generated at build time from
``include/vx.h`` by the C preprocessor, so every function, struct and
constant here is the header's own; the library is the one built with them
and bundled beside this file. ``VX_LIBRARY=/path/to/libvx.so`` loads
another build instead (its major and minor version must match the header's:
parameter structs only grow between minor versions, and ``vx_*_init``
writes the library's size of them).

cffi's ABI mode releases the GIL around every call into the library, so
calls from several Python threads run in parallel.
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    from ._vx_cffi import ffi
except ImportError as e:  # pragma: no cover - only in an unbuilt source tree
    raise ImportError(
        "vx: the generated module vx._vx_cffi is missing; install the package "
        "(pip install ./bindings/python) instead of importing the source tree"
    ) from e


def _find_library() -> str:
    override = os.environ.get("VX_LIBRARY")
    if override:
        return override
    here = Path(__file__).resolve().parent
    for name in ("libvx.so", "libvx.dylib", "vx.dll"):
        if (here / name).is_file():
            return str(here / name)
    raise ImportError(f"vx: libvx is missing from {here}; reinstall the package")


library_path: str = _find_library()
"""The path of the libvx this package loaded."""

lib = ffi.dlopen(library_path)

_runtime = lib.vx_version_number()
if _runtime // 1000 != lib.VX_VERSION_NUMBER // 1000:
    raise ImportError(
        f"vx: {library_path} is libvx {ffi.string(lib.vx_version_string()).decode()}, "
        f"but this package was built for {lib.VX_VERSION_MAJOR}.{lib.VX_VERSION_MINOR}.x"
    )

NULL = ffi.NULL

# csrc/hits.c: copies a query's hits out in one call (see Index.query).
hits = ffi.dlopen(str(Path(__file__).resolve().parent / "_vxhits.so"))
hits.vxpy_bind(lib.vx_results_len, lib.vx_results_id, lib.vx_results_distance)
