"""vx.Client: an open backing store."""

from __future__ import annotations

import json
import os
import weakref
from typing import Any, Iterable, List, Optional, Union

from ._common import (
    INDEX_TYPES,
    METRICS,
    PRECISIONS,
    BytesLike,
    Handle,
    check,
    enum_value,
    key_ptr,
    real,
    string_list,
    text,
    uint,
    user_ptr,
)
from ._index import Index
from ._native import ffi, lib
from .errors import InvalidArgumentError


class Client:
    """An open backing store (``vx_client``) holding any number of indexes.

    Args:
        storage_uri: ``"memory:"`` (in-process, gone at close), ``"file:/dir"``
            or a plain directory path (a redb file and its value log, crash-safe; one process
            opens a directory at a time), or
            ``"postgres://user[:password]@host:port/db?table=name"``.
        cpu_threads: worker threads used inside one call (0 = one per core).
        cache_bytes: bytes of decrypted data to cache (None = the library's
            default, 1 GiB; 0 disables the cache).

    Use it as a context manager or call :meth:`close`; a client not closed is
    freed when garbage-collected. Indexes opened from it stay usable after
    it is closed (and each keeps it from being collected).

    Raises:
        InvalidArgumentError: an empty or unknown URI.
        IoError, StorageError: the store cannot be opened (for example the
            directory is open in another process).
    """

    def __init__(
        self,
        storage_uri: Union[str, "os.PathLike[str]"],
        *,
        cpu_threads: int = 0,
        cache_bytes: Optional[int] = None,
    ) -> None:
        opts = ffi.new("vx_client_options *")
        lib.vx_client_options_init(opts)
        opts.threads = uint("cpu_threads", cpu_threads, 32)
        if cache_bytes is not None:
            opts.cache_bytes = uint("cache_bytes", cache_bytes, 64)
        uri = text("storage_uri", os.fspath(storage_uri))
        out = ffi.new("vx_client **")
        check(lib.vx_client_open(uri, opts, out))
        self._h = Handle(out[0], lib.vx_client_free, "client")
        self._finalizer = weakref.finalize(self, self._h.close)

    def close(self) -> None:
        """Closes the store (``vx_client_free``). Idempotent; indexes opened
        from it stay usable until they are closed."""
        self._finalizer.detach()
        self._h.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._h.closed

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<vx.Client ({'closed' if self.closed else 'open'})>"

    def _open(self, fn: Any, *args: Any) -> Index:
        out = ffi.new("vx_index **")
        c = self._h.acquire()
        try:
            check(fn(c, *args, out))
        finally:
            self._h.release()
        return Index(self, out[0])

    def create_index(
        self,
        index_name: str,
        index_key: BytesLike,
        *,
        dimension: Optional[int] = None,
        metric: Optional[Union[str, int]] = None,
        index_type: Optional[Union[str, int]] = None,
        storage_precision: Optional[Union[str, int]] = None,
        quantizer_bits: Optional[int] = None,
        filterable_fields: Optional[Iterable[str]] = None,
        text_fields: Optional[Iterable[str]] = None,
        bm25_k1: Optional[float] = None,
        bm25_b: Optional[float] = None,
    ) -> Index:
        """Creates an empty encrypted index (``vx_index_create``).

        Args:
            index_name: 1 to 255 bytes of UTF-8, stored in clear.
            index_key: the 32-byte root key (e.g. :func:`vx.generate_key`),
                read in place and never stored: losing it loses the index.
            dimension: the vector width (None = fixed by the first upsert).
            metric: ``"euclidean"`` (default), ``"squared_euclidean"``,
                ``"cosine"`` or ``"inner_product"``.
            index_type: ``"ivf_flat"`` (default) or ``"ivf_rabitq"``: lists
                of RaBitQ codes scanned first, then the best candidates
                reranked exactly; built by :meth:`Index.train` (until then
                queries are exact exhaustive searches, as with
                ``"ivf_flat"``). ``"ivf_pq"`` is reserved.
            storage_precision: ``"f32"`` (default) or ``"f16"``.
            quantizer_bits: ``"ivf_rabitq"`` only: bits per dimension of the
                codes, 1 to ``vx.MAX_QUANTIZER_BITS`` (None = the library's
                default; :attr:`Index.quantizer_bits` reads it back).
            filterable_fields: metadata fields (dot-paths, ``["tenant",
                "doc.year"]``) vx keeps an in-memory index of, so filters on
                them are answered without a scan (at most 64).
            text_fields: metadata fields (dot-paths, ``["title",
                "doc.body"]``) holding text (a string or a list of strings)
                for keyword search (:meth:`Index.query_metadata` ``text=``)
                and hybrid search (:meth:`Index.query` ``text=``), ranked by
                BM25 (at most 64). Text is split into Unicode words,
                lower-cased, English stop words dropped, stemmed (English
                Snowball: ``"running"`` matches ``"run"``).
            bm25_k1: BM25's term-frequency saturation, 0 to 1000 (None =
                1.2).
            bm25_b: BM25's document-length normalisation, 0 (none) to 1
                (full) (None = 0.75).

        Raises:
            AlreadyExistsError: an index of that name exists.
            InvalidArgumentError: a bad name or option.
        """
        cfg = ffi.new("vx_index_config *")
        lib.vx_index_config_init(cfg)
        if dimension is not None:
            cfg.dimension = uint("dimension", dimension, 32)
        if metric is not None:
            cfg.metric = enum_value("metric", METRICS, metric)
        if index_type is not None:
            cfg.index_type = enum_value("index_type", INDEX_TYPES, index_type)
        if storage_precision is not None:
            cfg.storage_precision = enum_value("storage_precision", PRECISIONS, storage_precision)
        if quantizer_bits is not None:
            cfg.quantizer_bits = uint("quantizer_bits", quantizer_bits, 32)
        if filterable_fields is not None:
            if isinstance(filterable_fields, (str, bytes)):
                raise InvalidArgumentError("filterable_fields must be a list of paths, not one string")
            fields = ffi.new("char[]", text("filterable_fields", json.dumps(list(filterable_fields))))
            cfg.filterable_fields_json = fields
        if text_fields is not None:
            if isinstance(text_fields, (str, bytes)):
                raise InvalidArgumentError("text_fields must be a list of paths, not one string")
            tfields = ffi.new("char[]", text("text_fields", json.dumps(list(text_fields))))
            cfg.text_fields_json = tfields
        if bm25_k1 is not None:
            cfg.bm25_k1 = real("bm25_k1", bm25_k1)
        if bm25_b is not None:
            cfg.bm25_b = real("bm25_b", bm25_b)
        name = text("index_name", index_name)
        return self._open(lib.vx_index_create, name, key_ptr(index_key), cfg)

    def load_index(self, index_name: str, index_key: BytesLike, *, user_id: Optional[BytesLike] = None) -> Index:
        """Opens an existing index (``vx_index_load``) with its root key, or a
        user's key and ``user_id``. The key becomes the handle's bound key
        (used by calls given ``index_key=None``).

        Raises:
            NotFoundError: no index of that name.
            WrongKeyError: the key does not open it.
        """
        name = text("index_name", index_name)
        return self._open(lib.vx_index_load, name, key_ptr(index_key), user_ptr(user_id))

    def list_indexes(self) -> List[str]:
        """The names of every index in the store, sorted (``vx_client_list_indexes``)."""
        out = ffi.new("vx_string_list **")
        c = self._h.acquire()
        try:
            check(lib.vx_client_list_indexes(c, out))
        finally:
            self._h.release()
        try:
            return string_list(out[0])
        finally:
            lib.vx_string_list_free(out[0])
