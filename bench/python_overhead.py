"""The Python package's overhead over C, measured in one process on one
index: the same queries on the same vx_index handle, timed once by a small
C loop (python_overhead_loop.c, linked to the libvx the package loaded) and
once through the package. Prints a markdown section for docs/BENCHMARKS.md.

usage: python_overhead.py DATASET_DIR [--single N] [--batch N] [--rounds R]
                          [--threads T] [--top-k K] [--include DIR]

DATASET_DIR holds base.fvecs, query.fvecs and gt.ivecs (TEXMEX layout).
Run it through bench/python_overhead.sh, which installs the package into the
bench's venv first.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cffi
import numpy as np

import vx
from vx._native import ffi as vx_ffi
from vx._native import lib as vx_lib

HERE = Path(__file__).resolve().parent


def read_vecs(path: Path, dtype) -> np.ndarray:
    raw = np.fromfile(path, dtype=np.int32)
    dim = raw[0]
    return raw.reshape(-1, dim + 1)[:, 1:].copy().view(dtype)


def build_c_loop(include: Path, tmp: Path):
    """Compiles the C timing loop against the package's libvx and loads it."""
    for name in ("libvx.so", "libvx.so.0"):
        os.symlink(vx.library_path, tmp / name)
    so = tmp / "libvxb.so"
    cc = os.environ.get("CC", "cc").split()
    subprocess.run(
        [*cc, "-O2", "-shared", "-fPIC", "-std=c11", "-I", str(include), str(HERE / "python_overhead_loop.c"),
         "-L", str(tmp), "-lvx", f"-Wl,-rpath,{tmp}", "-o", str(so)],
        check=True,
    )
    ffi = cffi.FFI()
    ffi.cdef(
        """
        int64_t vxb_single(void *ix, const float *q, size_t count, size_t dim, void *p, uint64_t *checksum);
        int64_t vxb_batch(void *ix, const float *q, size_t nq, size_t dim, void *p, uint64_t *checksum);
        """
    )
    return ffi, ffi.dlopen(str(so))  # its libvx.so.0 is the one already loaded (same SONAME)


class Runner:
    """Times the three ways to run the same queries on one index."""

    def __init__(self, index: vx.Index, queries: np.ndarray, top_k: int, cffi_pair) -> None:
        self.index, self.q, self.k = index, queries, top_k
        self.cffi, self.cl = cffi_pair
        self.params = vx_ffi.new("vx_query_params *")
        vx_lib.vx_query_params_init(self.params)
        self.params.top_k = top_k
        self.checksum = self.cffi.new("uint64_t *")

    def _ptrs(self, rows: np.ndarray):
        return (
            self.cffi.cast("void *", int(vx_ffi.cast("uintptr_t", self.index._h.ptr))),
            self.cffi.cast("const float *", rows.ctypes.data),
            self.cffi.cast("void *", int(vx_ffi.cast("uintptr_t", self.params))),
        )

    def c_single(self, n: int) -> float:
        ix, q, p = self._ptrs(self.q)
        ns = self.cl.vxb_single(ix, q, n, self.q.shape[1], p, self.checksum)
        assert ns > 0, f"status {-ns}"
        return ns / 1e3 / n

    def c_batch(self, n: int) -> float:
        ix, q, p = self._ptrs(self.q)
        ns = self.cl.vxb_batch(ix, q, n, self.q.shape[1], p, self.checksum)
        assert ns > 0, f"status {-ns}"
        return ns / 1e3 / n

    def py_single(self, n: int) -> float:
        q, ix, k = self.q, self.index, self.k
        t = time.perf_counter_ns()
        for i in range(n):
            ix.query(q[i], top_k=k)
        return (time.perf_counter_ns() - t) / 1e3 / n

    def np_single(self, n: int) -> float:
        q, ix, k = self.q, self.index, self.k
        t = time.perf_counter_ns()
        for i in range(n):
            ix.query_numpy(q[i], top_k=k)
        return (time.perf_counter_ns() - t) / 1e3 / n

    def py_batch(self, n: int) -> float:
        t = time.perf_counter_ns()
        self.index.query(self.q[:n], top_k=self.k)
        return (time.perf_counter_ns() - t) / 1e3 / n

    def np_batch(self, n: int) -> float:
        t = time.perf_counter_ns()
        self.index.query_numpy(self.q[:n], top_k=self.k)
        return (time.perf_counter_ns() - t) / 1e3 / n

    def measure(self, single_n: int, batch_n: int, rounds: int) -> dict:
        kinds = {
            "c_single": lambda: self.c_single(single_n),
            "py_single": lambda: self.py_single(single_n),
            "np_single": lambda: self.np_single(single_n),
            "c_batch": lambda: self.c_batch(batch_n),
            "py_batch": lambda: self.py_batch(batch_n),
            "np_batch": lambda: self.np_batch(batch_n),
        }
        for f in kinds.values():  # warm: caches, pages, branch predictors
            f()
        samples: dict = {k: [] for k in kinds}
        for r in range(rounds):
            order = list(kinds) if r % 2 == 0 else list(reversed(kinds))  # no kind always first
            for k in order:
                samples[k].append(kinds[k]())
        return {k: statistics.median(v) for k, v in samples.items()}


def recall_at_10(ids: np.ndarray, gt: np.ndarray) -> float:
    hits = 0
    for row, truth in zip(ids, gt):
        hits += len({int(i) for i in row[:10] if i is not None} & set(truth[:10].tolist()))
    return hits / (10 * len(ids))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--single", type=int, default=300, help="single-query calls per round")
    ap.add_argument("--batch", type=int, default=1000, help="queries in the batched call")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="vx worker threads (0 = one per core)")
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--include", type=Path, default=HERE.parent / "include")
    a = ap.parse_args()

    base = read_vecs(a.dataset / "base.fvecs", np.float32)
    queries = np.ascontiguousarray(read_vecs(a.dataset / "query.fvecs", np.float32))
    gt = read_vecs(a.dataset / "gt.ivecs", np.int32)
    n, dim = base.shape
    single_n, batch_n = min(a.single, len(queries)), min(a.batch, len(queries))

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pair = build_c_loop(a.include, Path(tmp))
        key = vx.generate_key()
        with vx.Client("memory:", cpu_threads=a.threads) as client:
            tiny = client.create_index("tiny", key)
            tiny.upsert([str(i) for i in range(a.top_k)], base[: a.top_k])
            index = client.create_index("bench", key)
            for s in range(0, n, 10_000):
                index.upsert([str(i) for i in range(s, min(s + 10_000, n))], base[s : s + 10_000])
            phases = [(f"{a.top_k} vectors (the layer alone)", tiny, None)]
            phases.append((f"{n // 1000}k, exhaustive", index, None))
            phases.append((f"{n // 1000}k, IVF", index, lambda: index.train(max_iters=10, seed=1)))
            for label, ix, prepare in phases:
                if prepare:
                    prepare()
                    label += f" ({ix.n_lists} lists, n_probes {ix.auto_n_probes})"
                m = Runner(ix, queries, a.top_k, pair).measure(single_n, batch_n, a.rounds)
                recall = recall_at_10(ix.query_numpy(queries[:batch_n], top_k=10)[0], gt) if ix is index else None
                rows.append((label, m, recall))
                print(f"{label}: {m} recall {recall}", file=sys.stderr)
            tiny.close()
            index.close()
        vx.wipe(key)

    threads = a.threads or os.cpu_count()
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"### Python package overhead over C ({a.dataset.name}, top-{a.top_k}, warm cache)\n")
    print(
        f"Machine: {os.cpu_count()} cores, {cpu}; vx {vx.library_version()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}, cffi {cffi.__version__}; {threads} vx worker threads, memory: store. "
        f"One process, one index handle: a C loop (bench/python_overhead_loop.c, reading every hit's id and "
        f"distance) and the package run the same queries, alternating, {a.rounds} rounds, medians. Single: "
        f"{single_n} one-query calls; batch: one call of {batch_n} queries. `query` returns dicts, "
        f"`query_numpy` arrays.\n"
    )
    print("| index | C single µs | `query` µs | overhead | `query_numpy` µs | overhead | target ≤ max(10%, 5 µs) "
          "| C batch q/s | `query` batch q/s | ratio | `query_numpy` batch q/s | ratio | recall@10 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, m, recall in rows:
        c = m["c_single"]

        def over(py: float) -> str:
            return f"+{py - c:.1f} µs ({(py - c) / c * 100:+.1f}%)"

        ok = all(m[k] - c <= max(0.10 * c, 5.0) for k in ("py_single", "np_single"))
        target = "-" if recall is None else ("met" if ok else "NOT met")  # the target is for minilm-20k
        qps = {k: 1e6 / m[k] for k in ("c_batch", "py_batch", "np_batch")}
        print(
            f"| {label} | {c:.1f} | {m['py_single']:.1f} | {over(m['py_single'])} | {m['np_single']:.1f} | "
            f"{over(m['np_single'])} | {target} | {qps['c_batch']:.0f} | {qps['py_batch']:.0f} | "
            f"{qps['py_batch'] / qps['c_batch']:.2f}x | {qps['np_batch']:.0f} | {qps['np_batch'] / qps['c_batch']:.2f}x | "
            f"{'-' if recall is None else f'{recall:.3f}'} |"
        )


if __name__ == "__main__":
    main()
