"""The exception classes: one per VX_STATUS_* of the header, ValueError for
caller errors, RuntimeError for the rest, and each code that Python can
reach provoked through the package (PANIC and POISONED with a test-hooks
build of libvx, in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import vx
from vx._native import ffi, lib

STATUS_NAMES = sorted(n for n in dir(lib) if n.startswith("VX_STATUS_") and n != "VX_STATUS_OK")
CALLER_ERRORS = {n for n in STATUS_NAMES if 100 <= getattr(lib, n) < 200}


def test_one_class_per_status_code():
    classes = {}
    for name in STATUS_NAMES:
        code = getattr(lib, name)
        cls = vx.errors.error_class(code)
        assert cls is not vx.Error, f"{name} has no exception class"
        assert cls.status == code
        assert cls.__name__ in vx.__all__ and getattr(vx, cls.__name__) is cls
        classes[name] = cls
        assert issubclass(cls, vx.Error)
        if name in CALLER_ERRORS:
            assert issubclass(cls, ValueError) and not issubclass(cls, RuntimeError), name
        else:
            assert issubclass(cls, RuntimeError) and not issubclass(cls, ValueError), name
        assert cls.__doc__
    assert len(set(classes.values())) == len(STATUS_NAMES) == 22
    assert CALLER_ERRORS == {
        "VX_STATUS_NULL_ARGUMENT", "VX_STATUS_INVALID_ARGUMENT", "VX_STATUS_DIMENSION_MISMATCH",
        "VX_STATUS_INVALID_UTF8", "VX_STATUS_INVALID_JSON", "VX_STATUS_INVALID_FILTER",
        "VX_STATUS_BUFFER_TOO_SMALL",
    }
    # Every exported error class stands for a code (ClosedError: NULL handle).
    exported = {getattr(vx, n) for n in vx.__all__ if n.endswith("Error")}
    assert exported - set(classes.values()) == {vx.ClosedError, vx.Error}
    assert vx.ClosedError.status == lib.VX_STATUS_NULL_ARGUMENT


def test_unknown_code_and_message():
    assert vx.errors.error_class(12345) is vx.Error
    e = vx.Error("something", 12345)
    assert e.code == 12345 and e.message == "something" and "unknown status code" in str(e)
    w = vx.WrongKeyError("details")
    assert w.code == lib.VX_STATUS_WRONG_KEY and str(w) == f"{vx.status_str(w.code)}: details"
    assert vx.status_str(lib.VX_STATUS_OK) and vx.status_str(-1) == "unknown status code"


def test_buffer_too_small_from_the_message_call():
    """BUFFER_TOO_SMALL only comes from vx_last_error_message, which the
    package always sizes; provoke it through the raw call."""
    with pytest.raises(vx.InvalidArgumentError):
        vx.Client("s3://a-long-enough-uri-for-a-long-message")
    small = ffi.new("char[]", 4)
    n = ffi.new("size_t *")
    st = lib.vx_last_error_message(small, 4, n)
    assert st == lib.VX_STATUS_BUFFER_TOO_SMALL and n[0] > 3
    with pytest.raises(vx.BufferTooSmallError) as e:
        vx.errors.raise_status(st)
    assert isinstance(e.value, ValueError)


def _provoke(code_name, tmp_path, key):
    """Reaches `code_name` through the package's public API."""
    with vx.Client("memory:") as c:
        ix = c.create_index("p", key)
        ix.upsert(["a", "b"], np.eye(2, dtype=np.float32), metadata=[{"n": 1}, None])

        def big():
            b = c.create_index("big", key)
            b.upsert([str(i) for i in range(10_000)], np.random.default_rng(0).standard_normal((10_000, 64)))
            return b

        def reader():
            uid, ukey = vx.generate_user_id(), vx.generate_key()
            ix.create_user_keys(uid, ukey, ["read"])
            return c.load_index("p", ukey, user_id=uid)

        actions = {
            "VX_STATUS_NULL_ARGUMENT": lambda: c.load_index("p", None),
            "VX_STATUS_INVALID_ARGUMENT": lambda: ix.query([1, 0], top_k=0),
            "VX_STATUS_DIMENSION_MISMATCH": lambda: ix.query([1, 0, 0]),
            "VX_STATUS_INVALID_UTF8": lambda: ix.get([b"\x80"]),
            "VX_STATUS_INVALID_JSON": lambda: ix.upsert(["c"], [[1, 1]], metadata=["[]"]),
            "VX_STATUS_INVALID_FILTER": lambda: ix.query([1, 0], filters={"n": {"$regex": 5}}),
            "VX_STATUS_NOT_FOUND": lambda: c.load_index("absent", key),
            "VX_STATUS_ALREADY_EXISTS": lambda: c.create_index("p", key),
            "VX_STATUS_NOT_ENOUGH_VECTORS": lambda: ix.train(),
            "VX_STATUS_CANCELLED": lambda: big().train(progress=lambda *a: True),
            "VX_STATUS_WRONG_KEY": lambda: ix.get(["a"], index_key=vx.generate_key()),
            "VX_STATUS_PERMISSION_DENIED": lambda: reader().delete(["a"]),
            "VX_STATUS_INTEGRITY": lambda: ix.require_epoch(bytes([255]) * vx.EPOCH_LEN),
            "VX_STATUS_MEMORY_LIMIT": lambda: big().train(n_lists=4000, max_memory=1),
            "VX_STATUS_IO": lambda: vx.Client(f"file:{tmp_path}/file/sub").close(),
            "VX_STATUS_STORAGE": lambda: (vx.Client(f"file:{tmp_path}/d"), vx.Client(f"file:{tmp_path}/d")),
        }
        (tmp_path / "file").write_text("not a directory")
        with pytest.raises(vx.Error) as e:
            actions[code_name]()
        ix.close()
        return e.value


# Not reachable on purpose from any API: the OS RNG failing, an allocation
# failing, a bug in vx; PANIC and POISONED need the test-hooks build.
UNREACHABLE = {"VX_STATUS_RNG_FAILED", "VX_STATUS_OUT_OF_MEMORY", "VX_STATUS_INTERNAL",
               "VX_STATUS_PANIC", "VX_STATUS_POISONED", "VX_STATUS_BUFFER_TOO_SMALL"}


@pytest.mark.parametrize("code_name", [n for n in STATUS_NAMES if n not in UNREACHABLE])
def test_provoke_status(code_name, tmp_path, key):
    err = _provoke(code_name, tmp_path, key)
    code = getattr(lib, code_name)
    assert err.code == code, f"got {err!r}"
    assert type(err) is vx.errors.error_class(code)
    assert err.message, "libvx's message must come with the error"


HOOKS_SCRIPT = textwrap.dedent(
    """
    import cffi, numpy as np, vx
    from vx._native import ffi, lib
    hooks = cffi.FFI()
    hooks.cdef("int32_t vx_debug_panic(const void *index);")
    h = hooks.dlopen(vx.library_path)  # the library vx loaded (VX_LIBRARY)
    try:
        vx.errors.raise_status(h.vx_debug_panic(hooks.NULL))
    except vx.PanicError as e:
        assert e.code == lib.VX_STATUS_PANIC and e.message and isinstance(e, RuntimeError)
        print("PANIC ok")
    key = vx.generate_key()
    c = vx.Client("memory:")
    ix = c.create_index("p", key)
    ix.upsert(["a"], np.ones((1, 2)))
    raw = hooks.cast("void *", int(ffi.cast("uintptr_t", ix._h.ptr)))
    assert h.vx_debug_panic(raw) == lib.VX_STATUS_PANIC
    for call in (ix.num_vectors, lambda: ix.upsert(["b"], np.ones((1, 2))), lambda: ix.dimension):
        try:
            call()
            raise SystemExit("a poisoned handle answered")
        except vx.PoisonedError as e:
            assert e.code == lib.VX_STATUS_POISONED
    print("POISONED ok")
    ix.close()
    again = c.load_index("p", key)  # the stored index is fine
    assert again.num_vectors() == 1
    print("reload ok")
    """
)


def test_panic_and_poisoned_with_test_hooks_build():
    hooks_lib = os.environ.get("VX_TEST_HOOKS_LIB")
    if not hooks_lib:
        pytest.skip("VX_TEST_HOOKS_LIB not set (scripts/test-all.sh sets it to the test-hooks libvx)")
    env = dict(os.environ, VX_LIBRARY=hooks_lib)
    out = subprocess.run([sys.executable, "-c", HOOKS_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["PANIC ok", "POISONED ok", "reload ok"]


def test_library_override_is_checked(tmp_path):
    env = dict(os.environ, VX_LIBRARY=str(tmp_path / "missing-libvx.so"))
    out = subprocess.run([sys.executable, "-c", "import vx"], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "missing-libvx.so" in out.stderr
