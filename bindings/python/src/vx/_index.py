"""vx.Index: one opened encrypted index."""

from __future__ import annotations

import json
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ._common import (
    EPOCH_LEN,
    INCLUDE_BITS,
    INDEX_TYPES,
    METRICS,
    PERMISSIONS,
    SIZE_BITS,
    TRAINING_STATES,
    BytesLike,
    Handle,
    bits,
    c_strings,
    enum_name,
    fixed_bytes,
    flag_names,
    key_ptr,
    opt_uint,
    real,
    string_list,
    uint,
    user_ptr,
)
from ._common import text as _text
from ._native import NULL, ffi, hits, lib
from .errors import DimensionMismatchError, Error, InvalidArgumentError, error_class, last_error_message, raise_status

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

    from ._client import Client

#: A filter: a dict (serialised to JSON) or JSON text.
Filter = Union[Mapping[str, Any], str, bytes]
#: ``progress(iteration, max_iters, objective)``; a truthy return cancels.
ProgressFn = Callable[[int, int, float], Optional[bool]]

_DEFAULT_GET_INCLUDE = ("vector", "contents", "metadata")

# The library's default query parameters, copied into each call's own struct.
_DEFAULT_QUERY_PARAMS = ffi.new("vx_query_params *")
lib.vx_query_params_init(_DEFAULT_QUERY_PARAMS)

_INC_DISTANCE = lib.VX_INCLUDE_DISTANCE
_INC_METADATA = lib.VX_INCLUDE_METADATA
_INC_CONTENTS = lib.VX_INCLUDE_CONTENTS
_INC_VECTOR = lib.VX_INCLUDE_VECTOR


def _as_rows(what: str, vectors: Any) -> Tuple[np.ndarray, bool]:
    """A C-contiguous float32 2-D array of `vectors` and whether it was one
    vector (1-D). A C-contiguous float32 ndarray comes back as itself: it is
    handed to libvx in place (zero copy)."""
    arr = vectors
    if not isinstance(arr, np.ndarray) or arr.dtype != np.float32 or not arr.flags.c_contiguous:
        try:
            arr = np.ascontiguousarray(vectors, dtype=np.float32)
        except (ValueError, TypeError) as e:
            if "sequence" in str(e) or "inhomogeneous" in str(e):  # rows of different lengths
                raise DimensionMismatchError(f"{what} are not one width: {e}") from None
            raise InvalidArgumentError(f"{what} are not numbers: {e}") from None
    if arr.ndim == 1:
        return arr.reshape(1, -1), True
    if arr.ndim == 2:
        return arr, False
    raise InvalidArgumentError(f"{what} must be one vector (1-D) or one per row (2-D), got {arr.ndim}-D")


def _float_ptr(arr: np.ndarray) -> Any:
    return ffi.from_buffer("float[]", arr) if arr.size else NULL


def _filter_text(filters: Filter) -> bytes:
    if isinstance(filters, Mapping):
        return json.dumps(filters).encode("utf-8")
    return _text("filters", filters)


def _metadata_text(meta: Any) -> bytes:
    if isinstance(meta, (str, bytes, bytearray)):
        return _text("metadata", meta)
    return json.dumps(meta).encode("utf-8")


def _contents_bytes(c: Any) -> Any:
    return c.encode("utf-8") if isinstance(c, str) else c


def _vector(ptr: Any, n: int) -> np.ndarray:
    return np.frombuffer(ffi.buffer(ptr, 4 * n), dtype=np.float32).copy()


def _metadata(ptr: Any) -> Any:
    return None if ptr == NULL else json.loads(ffi.string(ptr).decode("utf-8"))


def _contents(ptr: Any, n: int) -> Optional[bytes]:
    return None if ptr == NULL else ffi.unpack(ffi.cast("char *", ptr), n)


def _is_bar(obj: Any) -> bool:
    """A tqdm-like progress bar (has update, n and total)."""
    return all(hasattr(obj, a) for a in ("update", "n", "total"))


class _Progress:
    """The training callback: reports to the caller's function or bar, and
    turns anything it raises (KeyboardInterrupt included) into a clean
    cancellation, re-raised once libvx has returned."""

    __slots__ = ("fn", "bar", "error")

    def __init__(self, progress: Any) -> None:
        self.bar = progress if progress is not None and _is_bar(progress) else None
        self.fn = progress if self.bar is None else None
        self.error: Optional[BaseException] = None

    def __call__(self, _user_data: Any, iteration: int, max_iters: int, objective: float) -> int:
        try:
            if self.bar is not None:
                if self.bar.total != max_iters:
                    self.bar.total = max_iters
                if hasattr(self.bar, "set_postfix"):
                    self.bar.set_postfix(objective=f"{objective:.6g}", refresh=False)
                self.bar.update(iteration - self.bar.n)
                return 0
            if self.fn is not None:
                return 1 if self.fn(iteration, max_iters, objective) else 0
            return 0
        except BaseException as e:  # noqa: BLE001 - re-raised after the call
            self.error = e
            return 1


class Index:
    """An opened encrypted index (``vx_index``); get one from
    :meth:`Client.create_index` or :meth:`Client.load_index`.

    Safe to use from many threads at once: the GIL is released inside every
    libvx call, queries run in parallel and writes are serialised by libvx.
    Every data method takes keyword-only ``index_key=`` and ``user_id=``:
    ``None`` uses the key the handle was opened with; a key given is checked
    and used for that call only (a user's key needs its ``user_id``).
    Keys are read in place from the caller's object and never copied.

    Close with :meth:`close` or a ``with`` block; an index not closed is freed
    when garbage-collected. The index keeps its :class:`Client` alive.
    """

    def __init__(self, client: "Client", ptr: Any) -> None:
        """Internal: wraps a ``vx_index *`` that this object now owns."""
        self._client = client
        self._h = Handle(ptr, lib.vx_index_free, "index")
        self._finalizer = weakref.finalize(self, self._h.close)
        self._name = ffi.string(lib.vx_index_name(ptr)).decode("utf-8")

    # ----------------------------------------------------------------- life

    def close(self) -> None:
        """Frees the handle (``vx_index_free``); the index stays in the store.

        Idempotent. Calls started afterwards raise :class:`vx.ClosedError`;
        calls already running in other threads finish first, and the last
        one frees the handle."""
        self._finalizer.detach()
        self._h.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._h.closed

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<vx.Index {self._name!r} ({state})>"

    def _call(self, fn: Callable[..., int], *args: Any) -> None:
        ix = self._h.acquire()
        try:
            st = fn(ix, *args)
            if st:
                raise_status(st)
        finally:
            self._h.release()

    def _getter(self, fn: Callable[[Any], Any]) -> Any:
        """A getter: libvx returns a fallback value and sets the message when
        the handle's key lacks READ or the handle is poisoned; this raises
        instead, with the code a READ call gives (vx_index_num_vectors)."""
        ix = self._h.acquire()
        try:
            value = fn(ix)
            n = ffi.new("size_t *")
            lib.vx_last_error_message(NULL, 0, n)
            if n[0]:
                message = last_error_message()
                st = lib.vx_index_num_vectors(ix, NULL, NULL, ffi.new("uint64_t *"))
                raise error_class(st)(message, st) if st else Error(message)
            return value
        finally:
            self._h.release()

    # -------------------------------------------------------------- getters

    @property
    def name(self) -> str:
        """The index's name (``vx_index_name``)."""
        return self._name

    @property
    def index_name(self) -> str:
        """The index's name (alias of :attr:`name`)."""
        return self._name

    @property
    def dimension(self) -> int:
        """The vector width; 0 until fixed by the first upsert (``vx_index_dimension``)."""
        return int(self._getter(lib.vx_index_dimension))

    @property
    def metric(self) -> str:
        """``"euclidean"``, ``"squared_euclidean"``, ``"cosine"`` or
        ``"inner_product"`` (``vx_index_metric``)."""
        return enum_name(METRICS, self._getter(lib.vx_index_metric))

    @property
    def index_type(self) -> str:
        """``"ivf_flat"`` or ``"ivf_rabitq"`` (``vx_index_type``)."""
        return enum_name(INDEX_TYPES, self._getter(lib.vx_index_type))

    @property
    def quantizer_bits(self) -> int:
        """An ``"ivf_rabitq"`` index's bits per dimension, as resolved at
        creation; 0 for ``"ivf_flat"`` (``vx_index_quantizer_bits``)."""
        return int(self._getter(lib.vx_index_quantizer_bits))

    @property
    def n_lists(self) -> int:
        """Number of IVF lists; 0 until trained (``vx_index_n_lists``)."""
        return int(self._getter(lib.vx_index_n_lists))

    @property
    def auto_n_probes(self) -> int:
        """The probe count ``n_probes=None`` uses, calibrated at training; 0
        until trained (``vx_index_auto_n_probes``)."""
        return int(self._getter(lib.vx_index_auto_n_probes))

    @property
    def training_state(self) -> str:
        """``"untrained"``, ``"training"`` (a run is under way; queries use
        the previous state) or ``"trained"`` (``vx_index_training_state``)."""
        return enum_name(TRAINING_STATES, self._getter(lib.vx_index_training_state))

    def is_trained(self) -> bool:
        """Whether queries use the IVF lists (``vx_index_is_trained``)."""
        return bool(self._getter(lib.vx_index_is_trained))

    def num_vectors(self, *, index_key: Optional[BytesLike] = None, user_id: Optional[BytesLike] = None) -> int:
        """Number of items in the index (``vx_index_num_vectors``); needs READ."""
        k, u = key_ptr(index_key), user_ptr(user_id)
        out = ffi.new("uint64_t *")
        self._call(lib.vx_index_num_vectors, k, u, out)
        return int(out[0])

    # ----------------------------------------------------------------- data

    def upsert(
        self,
        items: Any,
        vectors: Any = None,
        *,
        contents: Optional[Sequence[Any]] = None,
        metadata: Optional[Sequence[Any]] = None,
        index_key: Optional[BytesLike] = None,
        user_id: Optional[BytesLike] = None,
    ) -> None:
        """Inserts or replaces items, atomically (``vx_index_upsert``); needs WRITE.

        Two forms:

        - ``upsert(items)``: an iterable of dicts with ``"id"`` (str), ``"vector"``
          (a sequence of floats or a 1-D array) and optionally ``"contents"``
          (bytes, or str stored as UTF-8) and ``"metadata"`` (a JSON-able dict,
          or JSON text).
        - ``upsert(ids, vectors, contents=None, metadata=None)``: a list of ids
          and a 2-D array with one row per id. A C-contiguous ``float32``
          NumPy array is handed to libvx in place (zero copy); anything else is
          converted to one first. ``contents`` and ``metadata`` are optional
          lists parallel to ``ids`` (``None`` entries allowed).

        An existing id is replaced whole. After an error nothing of the batch
        is stored.

        Raises:
            DimensionMismatchError: vectors of different widths, or not the index's.
            InvalidArgumentError: a bad id, a NaN or infinite value, sizes that differ.
            InvalidJSONError: metadata that is not a JSON object.
            PermissionDeniedError, WrongKeyError: the key cannot write.
        """
        if vectors is None:
            if isinstance(items, Mapping):
                items = [items]
            ids, rows, contents, metadata = self._split_items(items)
        else:
            ids = [items] if isinstance(items, (str, bytes)) else list(items)
            rows, _ = _as_rows("vectors", vectors)
        n = len(ids)
        if rows.shape[0] != n:
            raise InvalidArgumentError(f"{n} ids but {rows.shape[0]} vectors")
        for what, extra in (("contents", contents), ("metadata", metadata)):
            if extra is not None and len(extra) != n:
                raise InvalidArgumentError(f"{n} ids but {len(extra)} {what}")
        if n == 0:
            return
        k, u = key_ptr(index_key), user_ptr(user_id)
        c_ids, _keep_ids = c_strings("id", ids)
        c_contents = c_lens = NULL
        keep: List[Any] = []
        if contents is not None and any(c is not None for c in contents):
            c_contents = ffi.new("uint8_t *[]", n)
            c_lens = ffi.new("size_t[]", n)
            for i, c in enumerate(contents):
                if c is not None:
                    buf = ffi.from_buffer("uint8_t[]", _contents_bytes(c))
                    keep.append(buf)
                    c_contents[i] = buf
                    c_lens[i] = len(buf)
        c_meta = NULL
        if metadata is not None and any(m is not None for m in metadata):
            c_meta = ffi.new("char *[]", n)
            for i, m in enumerate(metadata):
                if m is not None:
                    s = ffi.new("char[]", _metadata_text(m))
                    keep.append(s)
                    c_meta[i] = s
        self._call(
            lib.vx_index_upsert, n, c_ids, _float_ptr(rows), rows.shape[1], c_contents, c_lens, c_meta, k, u
        )

    @staticmethod
    def _split_items(items: Iterable[Mapping[str, Any]]) -> Tuple[list, np.ndarray, Optional[list], Optional[list]]:
        items = list(items)
        if not items:
            return [], np.empty((0, 1), dtype=np.float32), None, None
        ids, contents, metadata = [], [], []
        dim = None
        rows = None
        for i, it in enumerate(items):
            if not isinstance(it, Mapping):
                raise TypeError(f"items must be dicts with 'id' and 'vector', item {i} is {type(it).__name__}")
            try:
                ids.append(it["id"])
                vec = it["vector"]
            except KeyError as e:
                raise InvalidArgumentError(f"item {i} has no {e.args[0]!r}") from None
            try:
                vec = np.asarray(vec, dtype=np.float32)
            except (ValueError, TypeError) as e:
                raise InvalidArgumentError(f"item {i}'s vector is not numbers: {e}") from None
            if vec.ndim != 1:
                raise DimensionMismatchError(f"item {i}'s vector is {vec.ndim}-D, not one vector")
            if rows is None:
                dim = vec.shape[0]
                rows = np.empty((len(items), dim), dtype=np.float32)
            elif vec.shape[0] != dim:
                raise DimensionMismatchError(f"item {i}'s vector has {vec.shape[0]} values, item 0's {dim}")
            rows[i] = vec
            contents.append(it.get("contents"))
            metadata.append(it.get("metadata"))
        assert rows is not None
        return ids, rows, contents, metadata

    def get(
        self,
        ids: Union[str, Iterable[str]],
        include: Optional[Iterable[str]] = None,
        *,
        index_key: Optional[BytesLike] = None,
        user_id: Optional[BytesLike] = None,
    ) -> List[Dict[str, Any]]:
        """Reads items by id (``vx_index_get``); needs READ.

        Returns one dict per id found, in the order asked (missing ids are
        left out): ``"id"`` and what ``include`` names of ``"vector"`` (a
        float32 array), ``"contents"`` (bytes or None) and ``"metadata"``
        (a dict or None). ``include=None`` means all three.
        """
        if isinstance(ids, (str, bytes)):
            ids = [ids]
        ids = list(ids)
        mask = bits("include", INCLUDE_BITS, _DEFAULT_GET_INCLUDE if include is None else include)
        k, u = key_ptr(index_key), user_ptr(user_id)
        c_ids, _keep = c_strings("id", ids)
        out = ffi.new("vx_items **")
        self._call(lib.vx_index_get, len(ids), c_ids, mask, k, u, out)
        items = out[0]
        try:
            found = []
            n = ffi.new("size_t *")
            for i in range(lib.vx_items_len(items)):
                if not lib.vx_items_found(items, i):
                    continue
                row: Dict[str, Any] = {"id": ffi.string(lib.vx_items_id(items, i)).decode("utf-8")}
                if mask & _INC_VECTOR:
                    v = lib.vx_items_vector(items, i, n)
                    row["vector"] = _vector(v, n[0]) if v != NULL else None
                if mask & _INC_CONTENTS:
                    c = lib.vx_items_contents(items, i, n)
                    row["contents"] = _contents(c, n[0])
                if mask & _INC_METADATA:
                    row["metadata"] = _metadata(lib.vx_items_metadata(items, i))
                found.append(row)
            return found
        finally:
            lib.vx_items_free(items)

    def delete(
        self,
        ids: Union[str, Iterable[str]],
        *,
        index_key: Optional[BytesLike] = None,
        user_id: Optional[BytesLike] = None,
    ) -> int:
        """Deletes the ids that exist, atomically (``vx_index_delete``); needs
        WRITE. Returns how many existed."""
        if isinstance(ids, (str, bytes)):
            ids = [ids]
        ids = list(ids)
        k, u = key_ptr(index_key), user_ptr(user_id)
        c_ids, _keep = c_strings("id", ids)
        out = ffi.new("size_t *")
        self._call(lib.vx_index_delete, len(ids), c_ids, k, u, out)
        return int(out[0])

    def list_ids(
        self,
        offset: int = 0,
        limit: Optional[int] = None,
        *,
        index_key: Optional[BytesLike] = None,
        user_id: Optional[BytesLike] = None,
    ) -> List[str]:
        """Ids in byte order, skipping ``offset``, at most ``limit`` (None =
        all) (``vx_index_list_ids``); needs READ. Page with
        ``list_ids(offset=i * page, limit=page)``."""
        off = uint("offset", offset, SIZE_BITS)
        lim = opt_uint("limit", limit, SIZE_BITS)
        if limit is not None and lim == 0:
            return []
        k, u = key_ptr(index_key), user_ptr(user_id)
        out = ffi.new("vx_string_list **")
        self._call(lib.vx_index_list_ids, off, lim, k, u, out)
        try:
            return string_list(out[0])
        finally:
            lib.vx_string_list_free(out[0])

    def query_metadata(
        self,
        filters: Optional[Filter] = None,
        top_k: Optional[int] = None,
        order_by: Optional[str] = None,
        ascending: bool = True,
        offset: int = 0,
        include: Optional[Iterable[str]] = None,
        text: Optional[str] = None,
        *,
        index_key: Optional[BytesLike] = None,
        user_id: Optional[BytesLike] = None,
    ) -> List[Dict[str, Any]]:
        """The items ``filters`` matches, ordered by one metadata field, a
        page at a time, without a query vector (``vx_index_query_metadata``);
        with ``text``, a keyword search. Needs READ. Works trained or not.

        Args:
            filters: a MongoDB-style filter, as in :meth:`query` (None =
                every item).
            top_k: items at most (None = every match from ``offset``).
            order_by: dot-path of a metadata field (``"date"``,
                ``"doc.year"``); None orders by id. Values order by type
                (missing and null, numbers, strings, objects and arrays,
                booleans), then by value; ties by id, ascending.
            ascending: the order's direction (without ``order_by``: the ids').
            offset: matches skipped first (page ``i`` of size ``s``:
                ``offset=i * s, top_k=s``).
            include: of ``"metadata"``, ``"contents"``, ``"vector"`` (None =
                ``["metadata"]``); there is no distance.
            text: keyword search: only the matches holding a term of this
                text in the index's ``text_fields``, by descending BM25 score
                unless ``order_by`` is given (None = no text). Only stop
                words match nothing.

        Returns:
            One dict per item with ``"id"`` and the fields asked for; with
            ``text``, also ``"score"`` (its BM25 score, higher is better).

        Raises:
            InvalidArgumentError: ``text`` on an index without text fields.
        """
        mask = bits("include", INCLUDE_BITS, ["metadata"] if include is None else include)
        lim = opt_uint("top_k", top_k, SIZE_BITS)
        if top_k is not None and lim == 0:
            return []
        off = uint("offset", offset, SIZE_BITS)
        f = ffi.new("char[]", _filter_text(filters)) if filters is not None else NULL
        o = ffi.new("char[]", _text("order_by", order_by)) if order_by is not None else NULL
        t = ffi.new("char[]", _text("text", text)) if text is not None else NULL
        k, u = key_ptr(index_key), user_ptr(user_id)
        out = ffi.new("vx_results **")
        self._call(lib.vx_index_query_metadata, f, t, lim, o, bool(ascending), off, mask, k, u, out)
        try:
            return _read_hits(out[0], 1, mask, scores=text is not None)[0]
        finally:
            lib.vx_results_free(out[0])

    # ---------------------------------------------------------------- query

    def _run_query(
        self,
        query_vectors: Any,
        top_k: Optional[int],
        n_probes: Optional[int],
        filters: Optional[Filter],
        mask: Optional[int],
        greedy: bool,
        rerank_mult: Optional[int],
        index_key: Any,
        user_id: Any,
        hybrid: Optional[Dict[str, Any]] = None,
    ) -> Tuple[Any, int, int, bool]:
        """Runs vx_index_query; returns (results, nq, top_k, single)."""
        rows, single = _as_rows("query_vectors", query_vectors)
        p = ffi.new("vx_query_params *", _DEFAULT_QUERY_PARAMS[0])
        if top_k is not None:
            p.top_k = uint("top_k", top_k, 32)
        if n_probes is not None:
            p.n_probes = uint("n_probes", n_probes, 32)
        if mask is not None:
            p.include = mask
        if filters is not None:
            f = ffi.new("char[]", _filter_text(filters))
            p.filter_json = f
        if greedy:
            p.greedy = True
        if rerank_mult is not None:
            p.rerank_mult = uint("rerank_mult", rerank_mult, 32)
        if hybrid is not None:
            if hybrid["text"] is not None:
                t = ffi.new("char[]", _text("text", hybrid["text"]))
                p.text = t
            if hybrid["alpha"] is not None:
                p.alpha = real("alpha", hybrid["alpha"])
            p.rrf_k = opt_uint("rrf_k", hybrid["rrf_k"], 32)
            p.vector_depth = opt_uint("vector_depth", hybrid["vector_depth"], 32)
            p.text_depth = opt_uint("text_depth", hybrid["text_depth"], 32)
        k = NULL if index_key is None else key_ptr(index_key)
        u = NULL if user_id is None else user_ptr(user_id)
        out = ffi.new("vx_results **")
        nq, dim = rows.shape
        vectors = ffi.from_buffer("float[]", rows) if nq else NULL
        h = self._h
        ix = h.acquire()
        try:
            st = lib.vx_index_query(ix, vectors, nq, dim, p, k, u, out)
            if st:
                raise_status(st)
        finally:
            h.release()
        return out[0], nq, p.top_k, single

    def query(
        self,
        query_vectors: "ArrayLike",
        top_k: Optional[int] = None,
        n_probes: Optional[int] = None,
        filters: Optional[Filter] = None,
        include: Optional[Iterable[str]] = None,
        greedy: bool = False,
        rerank_mult: Optional[int] = None,
        text: Optional[str] = None,
        alpha: Optional[float] = None,
        rrf_k: Optional[int] = None,
        vector_depth: Optional[int] = None,
        text_depth: Optional[int] = None,
        *,
        index_key: Optional[BytesLike] = None,
        user_id: Optional[BytesLike] = None,
    ) -> Union[List[Dict[str, Any]], List[List[Dict[str, Any]]]]:
        """Finds the nearest items (``vx_index_query``); needs READ.

        Args:
            query_vectors: one vector (1-D: returns one list of hits) or one per
                row (2-D array or list of lists: returns a list of lists).
            top_k: hits per query, 1 to 65536 (None = 100).
            n_probes: lists probed once trained (None = the calibrated
                :attr:`auto_n_probes`; :attr:`n_lists` = exhaustive).
            filters: a MongoDB-style filter on metadata, as a dict or JSON
                text (``{"lang": {"$in": ["en", "fr"]}}``).
            include: of ``"distance"``, ``"metadata"``, ``"contents"``,
                ``"vector"`` (None = ``["distance"]``); the id always comes back.
            greedy: once trained, keep probing lists until ``top_k`` hits
                pass the filter.
            rerank_mult: an ``"ivf_rabitq"`` index once trained: candidates
                reranked exactly per hit, 1 to ``vx.MAX_RERANK_MULT`` (None =
                automatic: as many as the codes' error bounds leave in doubt).
            text: hybrid search: this text's BM25 ranking over the index's
                ``text_fields`` (the ``text_depth`` best matches) is fused
                with each query's vector ranking (its ``vector_depth``
                nearest) by weighted reciprocal rank, ``alpha / (rrf_k +
                vector rank) + (1 - alpha) / (rrf_k + text rank)``; both pass
                the filter. Hits then come by descending ``"score"``, each
                with its exact distance (None = vector search only).
            alpha: with ``text``: the weight of the vector ranking, 0 to 1
                (None = 0.5).
            rrf_k: with ``text``: the rank damping of the fusion (None = 60).
            vector_depth, text_depth: with ``text``: the items each ranking
                contributes, up to 65536 (None = max(2 * top_k, 50)).

        Returns:
            Hits by ascending distance, each a dict with ``"id"`` and the
            fields asked for (``"metadata"``/``"contents"`` are None when the
            item has none); with ``text``, by descending ``"score"`` (the
            fused score, higher is better), which every hit then carries.

        Raises:
            DimensionMismatchError: the vectors' width is not the index's.
            InvalidFilterError: a bad filter (the message says where).
            InvalidArgumentError: ``text`` on an index without text fields,
                or ``alpha`` or a depth out of range.
        """
        mask = None if include is None else bits("include", INCLUDE_BITS, include)
        hybrid = {"text": text, "alpha": alpha, "rrf_k": rrf_k, "vector_depth": vector_depth, "text_depth": text_depth}
        r, nq, _, single = self._run_query(
            query_vectors, top_k, n_probes, filters, mask, greedy, rerank_mult, index_key, user_id, hybrid
        )
        try:
            out = _read_hits(r, nq, _INC_DISTANCE if mask is None else mask, scores=text is not None)
        finally:
            lib.vx_results_free(r)
        return out[0] if single else out

    def query_numpy(
        self,
        query_vectors: "ArrayLike",
        top_k: Optional[int] = None,
        n_probes: Optional[int] = None,
        filters: Optional[Filter] = None,
        greedy: bool = False,
        rerank_mult: Optional[int] = None,
        *,
        index_key: Optional[BytesLike] = None,
        user_id: Optional[BytesLike] = None,
    ) -> Tuple["NDArray[np.object_]", "NDArray[np.float32]"]:
        """The fast path of :meth:`query`: ids and distances as arrays.

        Takes the same arguments (without ``include``); a 1-D query counts
        as one row. Returns ``(ids, distances)``, both of shape
        ``(n_queries, top_k)``: ``ids`` an object array of str,
        ``distances`` float32, ascending along each row. A query with fewer
        than ``top_k`` hits is padded with ``None`` ids and ``inf``
        distances.
        """
        r, nq, k, _ = self._run_query(
            query_vectors, top_k, n_probes, filters, _INC_DISTANCE, greedy, rerank_mult, index_key, user_id
        )
        try:
            counts = np.empty(nq, dtype=np.uintp)
            id_bytes = ffi.new("size_t *")
            total = hits.vxpy_count(r, nq, ffi.from_buffer("size_t[]", counts) if nq else NULL, id_bytes)
            dist = np.full((nq, k), np.inf, dtype=np.float32)
            buf = ffi.new("char[]", id_bytes[0])
            if total:
                hits.vxpy_copy(r, nq, k, ffi.from_buffer("float[]", dist), buf)
        finally:
            lib.vx_results_free(r)
        found = _split_ids(buf, id_bytes[0])
        if total == nq * k:
            return np.array(found, dtype=object).reshape(nq, k), dist
        ids = np.full((nq, k), None, dtype=object)
        ids[np.arange(k) < counts[:, None].astype(np.intp)] = found
        return ids, dist

    # ------------------------------------------------------------- training

    def train(
        self,
        n_lists: Optional[int] = None,
        batch_size: Optional[int] = None,
        max_iters: Optional[int] = None,
        tolerance: Optional[float] = None,
        max_memory: Optional[int] = None,
        *,
        index_key: Optional[BytesLike] = None,
        user_id: Optional[BytesLike] = None,
        seed: Optional[int] = None,
        progress: Optional[Union[ProgressFn, Any]] = None,
    ) -> None:
        """Builds the IVF lists: k-means over the index's vectors, then every
        item moved to its nearest list, atomically (``vx_index_train_ex``); needs WRITE.

        None means the library's default for each parameter: ``n_lists`` =
        round(sqrt(n)); ``batch_size`` = full batch unless very large;
        ``max_iters`` = 100; ``tolerance`` = 1e-6 (relative change of the
        objective); ``max_memory`` (MiB) = no limit. ``seed`` fixes the
        sampling (the same seed gives the same lists).

        ``progress`` is called after every k-means iteration as
        ``progress(iteration, max_iters, objective)``; a truthy return cancels
        (:class:`CancelledError`, the index unchanged). A ``tqdm`` bar (or
        anything with ``update``, ``n`` and ``total``) is advanced instead.
        An exception raised in the callback, KeyboardInterrupt included,
        cancels the training and is re-raised here.

        Raises:
            NotEnoughVectorsError: fewer than max(2 * n_lists, 10000) vectors.
            MemoryLimitError: ``max_memory`` cannot hold a sample.
            CancelledError: the callback asked to stop.
        """
        p = ffi.new("vx_train_params *")
        lib.vx_train_params_init(p)
        p.n_lists = opt_uint("n_lists", n_lists, 32)
        p.batch_size = opt_uint("batch_size", batch_size, SIZE_BITS)
        p.max_iters = opt_uint("max_iters", max_iters, 32)
        if tolerance is not None:
            p.tolerance = float(tolerance)
        p.max_memory = opt_uint("max_memory", max_memory, SIZE_BITS)
        if seed is not None:
            p.seed = uint("seed", seed, 64)
        # Always installed: the callback is also where Python runs its signal
        # handlers, so Ctrl-C cancels a long training cleanly.
        reporter = _Progress(progress)
        callback = ffi.callback("vx_train_progress_fn", reporter)
        p.progress = callback
        k, u = key_ptr(index_key), user_ptr(user_id)
        ix = self._h.acquire()
        try:
            st = lib.vx_index_train_ex(ix, p, k, u)
            if st and reporter.error is None:
                raise_status(st)
        finally:
            self._h.release()
        if reporter.error is not None:
            raise reporter.error

    # ------------------------------------------------------- keys and users

    def create_user_keys(
        self,
        user_id: BytesLike,
        user_key: BytesLike,
        permissions: Union[str, Iterable[str]],
        *,
        index_key: Optional[BytesLike] = None,
    ) -> None:
        """Gives a user its own key, with ``permissions`` ``["read"]``,
        ``["write"]`` or both (``vx_index_create_user_keys``); root key only.

        ``user_id`` is 16 bytes (not all zero), ``user_key`` 32 bytes
        different from the root key; a user that has keys gets these in their
        place. The user then loads the index with
        ``client.load_index(name, user_key, user_id=user_id)`` or passes
        ``index_key=user_key, user_id=user_id`` to any call.
        ``index_key`` is the root key (None = this handle's key).
        """
        uid = fixed_bytes("user_id", user_id, lib.VX_USER_ID_LEN)
        ukey = key_ptr(user_key, "user_key")
        mask = bits("permission", PERMISSIONS, permissions)
        self._call(lib.vx_index_create_user_keys, uid, ukey, mask, key_ptr(index_key))

    def delete_user_keys(self, user_id: BytesLike, *, index_key: Optional[BytesLike] = None) -> None:
        """Revokes a user: its key stops working at once, on open handles too
        (``vx_index_delete_user_keys``); root key only; idempotent."""
        uid = fixed_bytes("user_id", user_id, lib.VX_USER_ID_LEN)
        self._call(lib.vx_index_delete_user_keys, uid, key_ptr(index_key))

    def list_user_keys(self, *, index_key: Optional[BytesLike] = None) -> List[Dict[str, Any]]:
        """The users holding keys, by user id (``vx_index_list_user_keys``);
        root key only. Each is ``{"user_id": bytes, "permissions": ["read", ...]}``."""
        out = ffi.new("vx_user_list **")
        self._call(lib.vx_index_list_user_keys, key_ptr(index_key), out)
        users = out[0]
        try:
            return [
                {
                    "user_id": ffi.unpack(ffi.cast("char *", lib.vx_user_list_user_id(users, i)), lib.VX_USER_ID_LEN),
                    "permissions": flag_names(PERMISSIONS, lib.vx_user_list_permissions(users, i)),
                }
                for i in range(lib.vx_user_list_len(users))
            ]
        finally:
            lib.vx_user_list_free(users)

    def rotate_key(self, old_index_key: BytesLike, new_index_key: BytesLike) -> None:
        """Re-wraps the index under a new root key without touching data
        (``vx_index_rotate_key``). The old key then gets WrongKeyError
        everywhere; this handle moves to the new key if it was bound to the
        old; user keys keep working."""
        old = fixed_bytes("old_index_key", old_index_key, lib.VX_KEY_LEN)
        new = fixed_bytes("new_index_key", new_index_key, lib.VX_KEY_LEN)
        self._call(lib.vx_index_rotate_key, old, new)

    # ------------------------------------------------------ index lifecycle

    def delete_index(self, *, index_key: Optional[BytesLike] = None, user_id: Optional[BytesLike] = None) -> None:
        """Deletes the index and everything it stored, atomically
        (``vx_index_delete_index``); root key only. Later calls on any handle
        raise NotFoundError; close this one as usual."""
        self._call(lib.vx_index_delete_index, key_ptr(index_key), user_ptr(user_id))

    def refresh(self) -> None:
        """Reloads the manifest now (``vx_index_refresh``). Every call already
        picks up other handles' writes; this pays that cost when you choose."""
        self._call(lib.vx_index_refresh)

    def compact(self, *, index_key: Optional[BytesLike] = None, user_id: Optional[BytesLike] = None) -> None:
        """Gives a ``file:`` store's free pages back to the system and drops
        what failed training runs left (``vx_index_compact``); needs WRITE."""
        self._call(lib.vx_index_compact, key_ptr(index_key), user_ptr(user_id))

    def epoch(self, *, index_key: Optional[BytesLike] = None, user_id: Optional[BytesLike] = None) -> bytes:
        """The committed state's epoch, :data:`vx.EPOCH_LEN` bytes
        (``vx_index_epoch``). Keep it outside the store and pass it to
        :meth:`require_epoch` after loading, to detect a rolled-back or
        forked store."""
        out = ffi.new("uint8_t[]", EPOCH_LEN)
        self._call(lib.vx_index_epoch, key_ptr(index_key), user_ptr(user_id), out)
        return ffi.unpack(ffi.cast("char *", out), EPOCH_LEN)

    def require_epoch(self, epoch: BytesLike) -> None:
        """Raises IntegrityError if the stored index is older than ``epoch``
        or another history at its version (``vx_index_require_epoch``); on
        success the handle refuses older states from then on."""
        self._call(lib.vx_index_require_epoch, fixed_bytes("epoch", epoch, EPOCH_LEN))


def _split_ids(buf: Any, nbytes: int) -> List[str]:
    """The ids vxpy_copy wrote (each followed by a NUL)."""
    if not nbytes:
        return []
    return ffi.unpack(buf, nbytes - 1).decode("utf-8").split("\0")


def _read_hits(r: Any, nq: int, mask: int, scores: bool = False) -> List[List[Dict[str, Any]]]:
    """The hits of every query of a vx_results as dicts. Ids and distances
    come out in one call (csrc/hits.c); metadata, contents, vectors and
    (``scores``) scores, when asked for, one call per hit."""
    counts = ffi.new("size_t[]", nq)
    id_bytes = ffi.new("size_t *")
    total = hits.vxpy_count(r, nq, counts, id_bytes)
    dist = ffi.new("float[]", total)
    buf = ffi.new("char[]", id_bytes[0])
    if total:
        hits.vxpy_copy(r, nq, 0, dist, buf)
    ids = _split_ids(buf, id_bytes[0])
    out: List[List[Dict[str, Any]]] = []
    pos = 0
    if mask == _INC_DISTANCE and not scores:  # the common case, kept tight
        distances = ffi.unpack(dist, total)
        if nq == 1:
            return [[{"id": i, "distance": d} for i, d in zip(ids, distances)]]
        for q in range(nq):
            end = pos + counts[q]
            out.append([{"id": i, "distance": d} for i, d in zip(ids[pos:end], distances[pos:end])])
            pos = end
        return out
    distances = ffi.unpack(dist, total) if mask & _INC_DISTANCE else None
    n_out = ffi.new("size_t *")
    for q in range(nq):
        row = []
        for i in range(counts[q]):
            hit: Dict[str, Any] = {"id": ids[pos]}
            if distances is not None:
                hit["distance"] = distances[pos]
            if scores:
                hit["score"] = lib.vx_results_score(r, q, i)
            if mask & _INC_METADATA:
                hit["metadata"] = _metadata(lib.vx_results_metadata(r, q, i))
            if mask & _INC_CONTENTS:
                c = lib.vx_results_contents(r, q, i, n_out)
                hit["contents"] = _contents(c, n_out[0])
            if mask & _INC_VECTOR:
                v = lib.vx_results_vector(r, q, i, n_out)
                hit["vector"] = _vector(v, n_out[0]) if v != NULL else None
            row.append(hit)
            pos += 1
        out.append(row)
    return out
