"""Threads: the GIL is released inside libvx calls (queries from two Python
threads run in parallel), concurrent calls are correct, and close racing
running calls never frees a handle under them."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from statistics import median

import numpy as np
import pytest

import vx

N, DIM, BATCH, CALLS = 20_000, 64, 8, 30


def _one_core_index(key, vectors):
    """A client with one worker thread, so a call uses one core and only
    the GIL could keep two Python threads from running at once."""
    client = vx.Client("memory:", cpu_threads=1)
    ix = client.create_index("gil", key)
    ix.upsert([str(i) for i in range(N)], vectors)
    return client, ix


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _spins_during(call) -> float:
    """How many loop iterations per second a second Python thread makes
    while `call` runs in this one."""
    inside = threading.Event()
    count = []

    def spin():
        inside.wait()
        n = 0
        while inside.is_set():
            n += 1
        count.append(n)

    t = threading.Thread(target=spin)
    t.start()
    inside.set()
    start = time.perf_counter()
    call()
    spent = time.perf_counter() - start
    inside.clear()
    t.join()
    return count[0] / spent


def test_gil_is_released_during_a_call(key):
    """While one thread is inside a long libvx call, another thread keeps
    running Python code; with the GIL held it could not. The control makes
    the same call through ctypes.PyDLL, which holds the GIL, to show the
    measurement tells the two apart. It needs no free core: on a loaded
    machine the second thread still gets time slices, the control none."""
    import ctypes

    r = np.random.default_rng(1)
    client = vx.Client("memory:", cpu_threads=1)
    ix = client.create_index("long", key)
    ix.upsert([str(i) for i in range(N)], r.standard_normal((N, DIM)).astype(np.float32))
    queries = r.standard_normal((1024, DIM)).astype(np.float32)  # ~0.1 s a call

    ffi, lib = vx._native.ffi, vx._native.lib
    holding = ctypes.PyDLL(vx.library_path).vx_index_query
    holding.restype = ctypes.c_int32
    holding.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p,
                        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    params = ffi.new("vx_query_params *")
    lib.vx_query_params_init(params)
    params.top_k = 10
    out = ffi.new("vx_results **")
    addr = lambda p: int(ffi.cast("uintptr_t", p))  # noqa: E731

    def gil_held_query():
        assert holding(addr(ix._h.ptr), queries.ctypes.data, len(queries), DIM, addr(params), None, None, addr(out)) == 0
        lib.vx_results_free(out[0])

    released, held = [], []
    # A short switch interval: the spinner gets the GIL within 0.5 ms of
    # asking, so what it runs just before and after a call is negligible.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    try:
        for _ in range(3):
            released.append(_spins_during(lambda: ix.query_numpy(queries, top_k=10)))
            held.append(_spins_during(gil_held_query))
    finally:
        sys.setswitchinterval(interval)
    ix.close()
    client.close()
    # Medians: the spinner may also run a few milliseconds before a call
    # starts (Python's switch interval), in either case.
    assert median(released) > 5 * median(held) + 1000, f"spins/s during calls: released {released}, held {held}"


def _hash_work(buf: bytes, rounds: int) -> None:
    """Pure C work that releases the GIL (hashlib does for large buffers):
    the control for how parallel two threads can run here right now."""
    for _ in range(rounds):
        hashlib.sha256(buf).digest()


def _parallel_ratios(work_a, work_b, rounds: int) -> tuple[float, list[float], list[float]]:
    """Runs `work_a` and `work_b` one after the other, then at once from two
    threads, alternating `rounds` times; returns the fastest parallel run
    over the fastest sequential one (noise only ever adds time) and the
    times."""

    def parallel():
        threads = [threading.Thread(target=w) for w in (work_a, work_b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    work_a(), work_b()  # warm up
    sequential, at_once = [], []
    for _ in range(rounds):
        sequential.append(_timed(lambda: (work_a(), work_b())))
        at_once.append(_timed(parallel))
    return min(at_once) / min(sequential), at_once, sequential


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores")
def test_queries_from_two_threads_run_in_parallel(key):
    """Two threads each run CALLS exhaustive queries on their own one-thread
    client. Run one after the other they take T; if the GIL were held during
    the calls (or libvx serialized them), run at once they would take T as
    well; released, about T/2. The fastest of several alternating runs of
    each kind is compared, interleaved with the same measurement of a
    control that is parallel by construction (hashing, which releases the
    GIL): vx must come within 0.15 of the control's ratio, or under 0.8. A
    control that shows no parallelism (no two free cores on a shared
    machine) skips the test; the test above does not need free cores."""
    r = np.random.default_rng(0)
    vectors = r.standard_normal((N, DIM)).astype(np.float32)
    queries = r.standard_normal((BATCH, DIM)).astype(np.float32)
    (c1, a), (c2, b) = _one_core_index(key, vectors), _one_core_index(key, vectors)

    def work(ix):
        for _ in range(CALLS):
            ix.query_numpy(queries, top_k=10)

    # A control about as long as the vx work.
    buf = os.urandom(1 << 20)
    one = _timed(lambda: work(a))
    hashed = _timed(lambda: _hash_work(buf, 8))
    rounds = max(1, round(8 * one / max(hashed, 1e-6)))
    # Two vx threads' ratio swings from run to run far more than the
    # control's (0.56-1.2 against 0.55-0.63 in one measurement, at 4
    # alternations), so each attempt alternates 8 times and up to 5 attempts
    # are made: a held GIL stays at ~1.0 however many.
    ratios = []
    for _ in range(5):
        vx_ratio, vx_par, vx_seq = _parallel_ratios(lambda: work(a), lambda: work(b), 8)
        ctl_ratio, ctl_par, ctl_seq = _parallel_ratios(
            lambda: _hash_work(buf, rounds), lambda: _hash_work(buf, rounds), 8
        )
        ratios.append((vx_ratio, ctl_ratio))
        if vx_ratio < 0.8 or vx_ratio < ctl_ratio + 0.15:
            break
    for h in (a, b, c1, c2):
        h.close()
    vx_ratio, ctl_ratio = min(ratios)
    detail = f"vx parallel / sequential {vx_ratio:.2f}, control {ctl_ratio:.2f} ({ratios})"
    if vx_ratio >= 0.8 and ctl_ratio >= 0.8:
        pytest.skip(f"two threads of pure C did not run in parallel either: {detail}")
    assert vx_ratio < 0.8 or vx_ratio < ctl_ratio + 0.15, detail


def test_concurrent_queries_and_writes_are_correct(client, key):
    r = np.random.default_rng(3)
    vectors = r.standard_normal((2000, 16)).astype(np.float32)
    ix = client.create_index("conc", key)
    ix.upsert([f"v{i}" for i in range(2000)], vectors)
    errors = []

    def reader(offset):
        try:
            for i in range(offset, 2000, 97):
                assert ix.query(vectors[i], top_k=1)[0]["id"] == f"v{i}"
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def writer():
        try:
            for j in range(20):
                ix.upsert([f"w{j}"], np.full((1, 16), 100.0 + j, dtype=np.float32))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert ix.num_vectors() == 2020


def test_errors_are_per_thread(client, key):
    """Each thread gets its own call's message (libvx keeps one per OS thread)."""
    ix = client.create_index("msgs", key, dimension=4)
    results = {}

    def fail(width):
        try:
            for _ in range(200):
                ix.query(np.zeros(width))
        except vx.DimensionMismatchError as e:
            results[width] = e.message

    threads = [threading.Thread(target=fail, args=(w,)) for w in (5, 6, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [5, 6, 7]
    for w, msg in results.items():
        assert f"dim {w}" in msg, msg


def test_close_while_queries_run(client, key):
    r = np.random.default_rng(4)
    ix = client.create_index("race", key)
    ix.upsert([str(i) for i in range(5000)], r.standard_normal((5000, 32)).astype(np.float32))
    q = r.standard_normal((4, 32)).astype(np.float32)
    outcomes = []
    started = threading.Barrier(5)

    def run():
        started.wait()
        done = 0
        try:
            while True:
                ix.query_numpy(q, top_k=5)
                done += 1
        except vx.ClosedError:
            outcomes.append(done)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.05)
    ix.close()
    for t in threads:
        t.join(timeout=30)
    assert len(outcomes) == 4 and all(d > 0 for d in outcomes)
    assert ix._h.ptr is None  # freed once the last running call returned
