"""What the client and index share: handles, argument conversion, constants."""

from __future__ import annotations

import numbers
import os
import threading
from typing import Any, Callable, Dict, Iterable, Union

from ._native import NULL, ffi, lib
from .errors import ClosedError, InvalidArgumentError, InvalidUTF8Error, RNGFailedError, raise_status

KEY_LEN: int = lib.VX_KEY_LEN
USER_ID_LEN: int = lib.VX_USER_ID_LEN
EPOCH_LEN: int = lib.VX_EPOCH_LEN
MAX_QUANTIZER_BITS: int = lib.VX_MAX_QUANTIZER_BITS
MAX_RERANK_MULT: int = lib.VX_MAX_RERANK_MULT

#: A key, a user id or an epoch: any contiguous bytes-like object
#: (bytearray, memoryview, bytes, a uint8 NumPy array ...). It is handed to
#: libvx in place, never copied.
BytesLike = Union[bytes, bytearray, memoryview]


def _names(prefix: str) -> Dict[str, int]:
    """The header's constants with `prefix`, by lower-case suffix
    (``VX_METRIC_COSINE`` -> ``"cosine"``): names come from the header, so a
    constant added there is accepted here with no table to update."""
    return {n[len(prefix) :].lower(): getattr(lib, n) for n in dir(lib) if n.startswith(prefix)}


METRICS = _names("VX_METRIC_")
INDEX_TYPES = _names("VX_INDEX_TYPE_")
PRECISIONS = _names("VX_PRECISION_")
TRAINING_STATES = _names("VX_TRAINING_")
INCLUDE_BITS = _names("VX_INCLUDE_")
PERMISSIONS = _names("VX_PERMISSION_")


def enum_value(what: str, table: Dict[str, int], value: Union[str, int, None]) -> int:
    """A constant given by name (any case) or by its integer value."""
    if isinstance(value, str):
        try:
            return table[value.lower()]
        except KeyError:
            raise InvalidArgumentError(f"unknown {what} {value!r} (one of {', '.join(table)})") from None
    if isinstance(value, int) and not isinstance(value, bool):
        return uint(what, value, 32)
    raise TypeError(f"{what} must be a name ({', '.join(table)}) or an int, not {type(value).__name__}")


def enum_name(table: Dict[str, int], value: int) -> str:
    for name, v in table.items():
        if v == value:
            return name
    return str(value)


def bits(what: str, table: Dict[str, int], names: Union[str, Iterable[str]]) -> int:
    """An OR of flags given by name: ``["read", "write"]`` -> READ | WRITE."""
    if isinstance(names, str):
        names = [names]
    mask = 0
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"{what} values are names ({', '.join(table)}), not {type(n).__name__}")
        try:
            mask |= table[n.lower()]
        except KeyError:
            raise InvalidArgumentError(f"unknown {what} {n!r} (one of {', '.join(table)})") from None
    return mask


def flag_names(table: Dict[str, int], mask: int) -> list:
    return [n for n, b in table.items() if mask & b]


def uint(what: str, value: Any, width: int) -> int:
    """A non-negative int that fits `width` bits (None is not allowed here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        if hasattr(value, "__index__"):
            value = value.__index__()
        else:
            raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < 0 or value >= 1 << width:
        raise InvalidArgumentError(f"{what} must be in 0..{(1 << width) - 1}, got {value}")
    return value


SIZE_BITS = ffi.sizeof("size_t") * 8


def real(what: str, value: Any) -> float:
    """A number as a float (libvx checks its range)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a number, not {type(value).__name__}")
    return float(value)


def opt_uint(what: str, value: Any, width: int) -> int:
    """None -> 0 (the library's "default"), else `uint`."""
    return 0 if value is None else uint(what, value, width)


def fixed_bytes(what: str, value: Any, length: int, allow_none: bool = True) -> Any:
    """A pointer to a caller's key, user id or epoch, in place (no copy).

    None gives NULL (the handle's bound key, or the root user) where allowed;
    libvx answers NULL_ARGUMENT where it is not."""
    if value is None:
        return NULL
    if isinstance(value, str):
        raise TypeError(f"{what} must be bytes-like ({length} bytes), not str")
    try:
        n = memoryview(value).nbytes
    except TypeError:
        raise TypeError(f"{what} must be bytes-like ({length} bytes), not {type(value).__name__}") from None
    if n != length:
        raise InvalidArgumentError(f"{what} must be {length} bytes, got {n}")
    return ffi.from_buffer("uint8_t[]", value)


def key_ptr(value: Any, what: str = "index_key") -> Any:
    return fixed_bytes(what, value, KEY_LEN)


def user_ptr(value: Any, what: str = "user_id") -> Any:
    return fixed_bytes(what, value, USER_ID_LEN)


def text(what: str, value: Any) -> bytes:
    """UTF-8 bytes of a str; bytes pass as they are (libvx checks them)."""
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InvalidUTF8Error(f"{what} is not encodable as UTF-8: {e.reason}") from None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")


def c_strings(what: str, values: Iterable[Any]) -> tuple:
    """A `char *[]` of NUL-terminated copies, and the copies to keep alive."""
    owned = [ffi.new("char[]", text(what, v)) for v in values]
    return ffi.new("char *[]", owned), owned


def check(status: int) -> None:
    """Raises the exception of a non-OK status (see errors.raise_status)."""
    if status:
        raise_status(status)


def string_list(lst: Any) -> list:
    """The strings of a vx_string_list (which the caller frees)."""
    n = lib.vx_string_list_len(lst)
    get = lib.vx_string_list_get
    return [ffi.string(get(lst, i)).decode("utf-8") for i in range(n)]


class Handle:
    """A libvx handle shared by calls from many threads.

    ``acquire``/``release`` bracket every call; ``close`` marks the handle
    closed at once (later calls raise ClosedError) and frees it as soon as no
    call is under way: now, or when the last running call returns. So a
    handle is never freed under a running call (libvx forbids racing
    ``_free`` with other calls), and close never waits or deadlocks (a
    progress callback may close the index it trains).
    """

    __slots__ = ("ptr", "_free", "_lock", "_calls", "_closed", "_what")

    def __init__(self, ptr: Any, free: Callable[[Any], None], what: str) -> None:
        self.ptr = ptr
        self._free = free
        self._lock = threading.Lock()
        self._calls = 0
        self._closed = False
        self._what = what

    @property
    def closed(self) -> bool:
        return self._closed

    def acquire(self) -> Any:
        with self._lock:
            if self._closed:
                raise ClosedError(f"the {self._what} is closed")
            self._calls += 1
            return self.ptr

    def release(self) -> None:
        with self._lock:
            self._calls -= 1
            if self._closed and self._calls == 0:
                self._free_locked()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._calls == 0:
                self._free_locked()

    def _free_locked(self) -> None:
        ptr, self.ptr = self.ptr, None
        if ptr is not None and ptr != NULL:
            self._free(ptr)


def fill_random(buf: bytearray) -> bytearray:
    """Fills `buf` from the operating system's random source, in place (no
    intermediate bytes object, unlike os.urandom)."""
    view = memoryview(buf).cast("B")
    fd = os.open("/dev/urandom", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        while len(view):
            n = os.readv(fd, [view])
            if n <= 0:
                raise RNGFailedError("short read from /dev/urandom")
            view = view[n:]
    finally:
        os.close(fd)
    return buf
