"""The exceptions of vx: one class per ``vx_status`` code under :class:`Error`.

Codes that mean the caller passed something wrong (the ``1xx`` range:
``NULL_ARGUMENT`` ... ``BUFFER_TOO_SMALL``) also subclass :class:`ValueError`;
every other code subclasses :class:`RuntimeError`. So ``except ValueError``
and ``except RuntimeError`` written for other vector-index libraries keep
working, and ``except vx.WrongKeyError`` picks one code.

Every class's ``code`` is the header's constant (``lib.VX_STATUS_*``), not a
number copied here; a test checks that every ``VX_STATUS_*`` of the header
has exactly one class.
"""

from __future__ import annotations

from typing import ClassVar

from ._native import ffi, lib

__all__ = [
    "Error",
    "NullArgumentError",
    "InvalidArgumentError",
    "DimensionMismatchError",
    "InvalidUTF8Error",
    "InvalidJSONError",
    "InvalidFilterError",
    "BufferTooSmallError",
    "NotFoundError",
    "AlreadyExistsError",
    "NotEnoughVectorsError",
    "PoisonedError",
    "CancelledError",
    "WrongKeyError",
    "PermissionDeniedError",
    "IntegrityError",
    "RNGFailedError",
    "MemoryLimitError",
    "OutOfMemoryError",
    "IoError",
    "StorageError",
    "InternalError",
    "PanicError",
    "ClosedError",
    "status_str",
    "error_class",
]


def status_str(code: int) -> str:
    """The library's static description of a status code (``vx_status_str``)."""
    return ffi.string(lib.vx_status_str(code)).decode("utf-8", "replace")


class Error(Exception):
    """A failed call into libvx.

    Attributes:
        code: the ``vx_status`` code (``VX_STATUS_*``).
        message: the library's one-line message for the call (never key
            bytes, vectors, contents or metadata values).
    """

    code: int
    message: str
    #: The status code a subclass stands for (None on the base class).
    status: ClassVar[int | None] = None

    def __init__(self, message: str = "", code: int | None = None) -> None:
        if code is None:
            code = self.status if self.status is not None else lib.VX_STATUS_INTERNAL
        self.code = code
        self.message = message
        super().__init__(f"{status_str(code)}: {message}" if message else status_str(code))


class NullArgumentError(Error, ValueError):
    """A required argument was missing (NULL in C)."""

    status = lib.VX_STATUS_NULL_ARGUMENT


class InvalidArgumentError(Error, ValueError):
    """An argument is out of range or malformed (bad id, NaN, unknown option...)."""

    status = lib.VX_STATUS_INVALID_ARGUMENT


class DimensionMismatchError(Error, ValueError):
    """A vector's width differs from the index's."""

    status = lib.VX_STATUS_DIMENSION_MISMATCH


class InvalidUTF8Error(Error, ValueError):
    """A string argument (given as bytes) is not UTF-8."""

    status = lib.VX_STATUS_INVALID_UTF8


class InvalidJSONError(Error, ValueError):
    """Metadata is not JSON, or not a JSON object."""

    status = lib.VX_STATUS_INVALID_JSON


class InvalidFilterError(Error, ValueError):
    """A query filter is invalid; the message says where and why."""

    status = lib.VX_STATUS_INVALID_FILTER


class BufferTooSmallError(Error, ValueError):
    """A caller's buffer was too small (only vx_last_error_message reports it)."""

    status = lib.VX_STATUS_BUFFER_TOO_SMALL


class NotFoundError(Error, RuntimeError):
    """No such index, or it was deleted."""

    status = lib.VX_STATUS_NOT_FOUND


class AlreadyExistsError(Error, RuntimeError):
    """An index of that name already exists."""

    status = lib.VX_STATUS_ALREADY_EXISTS


class NotEnoughVectorsError(Error, RuntimeError):
    """Training needs at least max(2 * n_lists, 10000) vectors."""

    status = lib.VX_STATUS_NOT_ENOUGH_VECTORS


class PoisonedError(Error, RuntimeError):
    """A panic inside an earlier call changing this handle; close it and load again."""

    status = lib.VX_STATUS_POISONED


class CancelledError(Error, RuntimeError):
    """The training progress callback cancelled; the index is unchanged."""

    status = lib.VX_STATUS_CANCELLED


class WrongKeyError(Error, RuntimeError):
    """The key does not open this index (or the user's key was revoked)."""

    status = lib.VX_STATUS_WRONG_KEY


class PermissionDeniedError(Error, RuntimeError):
    """The key is valid but lacks the permission the call needs."""

    status = lib.VX_STATUS_PERMISSION_DENIED


class IntegrityError(Error, RuntimeError):
    """Stored data failed authentication: altered, replayed, rolled back or lost."""

    status = lib.VX_STATUS_INTEGRITY


class RNGFailedError(Error, RuntimeError):
    """The operating system's random generator failed."""

    status = lib.VX_STATUS_RNG_FAILED


class MemoryLimitError(Error, RuntimeError):
    """Training's max_memory cannot hold the centroids and a sample."""

    status = lib.VX_STATUS_MEMORY_LIMIT


class OutOfMemoryError(Error, RuntimeError):
    """An allocation inside libvx failed."""

    status = lib.VX_STATUS_OUT_OF_MEMORY


class IoError(Error, RuntimeError):
    """An operating-system I/O error (named so as not to shadow the builtin IOError)."""

    status = lib.VX_STATUS_IO


class StorageError(Error, RuntimeError):
    """The store failed or refused (locked directory, lost connection, conflict)."""

    status = lib.VX_STATUS_STORAGE


class InternalError(Error, RuntimeError):
    """A bug in vx; please report it with the message."""

    status = lib.VX_STATUS_INTERNAL


class PanicError(Error, RuntimeError):
    """A panic inside vx, caught at the boundary."""

    status = lib.VX_STATUS_PANIC


class ClosedError(NullArgumentError):
    """The client or index was closed: in C terms a NULL handle, so its code
    is ``VX_STATUS_NULL_ARGUMENT`` and, like using a closed file, it is a
    :class:`ValueError`."""


_CLASSES: dict[int, type[Error]] = {
    cls.status: cls
    for cls in (
        NullArgumentError,
        InvalidArgumentError,
        DimensionMismatchError,
        InvalidUTF8Error,
        InvalidJSONError,
        InvalidFilterError,
        BufferTooSmallError,
        NotFoundError,
        AlreadyExistsError,
        NotEnoughVectorsError,
        PoisonedError,
        CancelledError,
        WrongKeyError,
        PermissionDeniedError,
        IntegrityError,
        RNGFailedError,
        MemoryLimitError,
        OutOfMemoryError,
        IoError,
        StorageError,
        InternalError,
        PanicError,
    )
    if cls.status is not None
}


def error_class(code: int) -> type[Error]:
    """The exception class of a status code (:class:`Error` for unknown codes)."""
    return _CLASSES.get(code, Error)


def last_error_message() -> str:
    """The calling thread's last libvx message (``vx_last_error_message``)."""
    n = ffi.new("size_t *")
    buf = ffi.new("char[]", 512)
    st = lib.vx_last_error_message(buf, 512, n)
    if st == lib.VX_STATUS_BUFFER_TOO_SMALL:
        buf = ffi.new("char[]", n[0] + 1)
        lib.vx_last_error_message(buf, n[0] + 1, n)
    return ffi.string(buf).decode("utf-8", "replace")


def raise_status(code: int) -> None:
    """Raises the exception of a failed call's status, with this thread's message.

    Called right after the failed call, on the same thread: the message is
    per OS thread, and a Python thread stays on its OS thread.
    """
    cls = error_class(code)
    raise cls(last_error_message(), code)
