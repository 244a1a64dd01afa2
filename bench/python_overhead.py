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

    def single_round(self, n: int) -> dict:
        """Queries 0..n-1 one call at a time, each by the three callers in
        turn (rotating who goes first), so all three meet the same machine
        state; returns µs per query for each."""
        ix_c, q_c, p_c = self._ptrs(self.q)
        dim, index, k, q = self.q.shape[1], self.index, self.k, self.q
        single, checksum, clock = self.cl.vxb_single, self.checksum, time.perf_counter_ns
        total = {"c": 0, "py": 0, "np": 0}

        def c(i: int) -> int:
            ns = single(ix_c, q_c + i * dim, 1, dim, p_c, checksum)
            assert ns > 0, f"status {-ns}"
            return ns

        def py(i: int) -> int:
            t = clock()
            index.query(q[i], top_k=k)
            return clock() - t

        def np_(i: int) -> int:
            t = clock()
            index.query_numpy(q[i], top_k=k)
            return clock() - t

        callers = [("c", c), ("py", py), ("np", np_)]
        for i in range(n):
            for j in range(3):
                name, f = callers[(i + j) % 3]
                total[name] += f(i)
        return {name: ns / 1e3 / n for name, ns in total.items()}

    def batch_round(self, n: int) -> dict:
        """One call of queries 0..n-1 by each caller; µs per query."""
        ix_c, q_c, p_c = self._ptrs(self.q)
        ns = self.cl.vxb_batch(ix_c, q_c, n, self.q.shape[1], p_c, self.checksum)
        assert ns > 0, f"status {-ns}"
        out = {"c": ns / 1e3 / n}
        for name, f in (("py", self.index.query), ("np", self.index.query_numpy)):
            t = time.perf_counter_ns()
            f(self.q[:n], top_k=self.k)
            out[name] = (time.perf_counter_ns() - t) / 1e3 / n
        return out

    def measure(self, single_n: int, batch_n: int, rounds: int) -> dict:
        self.single_round(min(single_n, 50))  # warm: caches, pages, the worker pool
        self.batch_round(batch_n)
        singles = [self.single_round(single_n) for _ in range(rounds)]
        batches = [self.batch_round(batch_n) for _ in range(rounds)]
        med = statistics.median
        m = {f"{k}_single": med(r[k] for r in singles) for k in ("c", "py", "np")}
        m.update({f"{k}_batch": med(r[k] for r in batches) for k in ("c", "py", "np")})
        m["py_over"] = m["py_single"] - m["c_single"]
        m["np_over"] = m["np_single"] - m["c_single"]
        m["py_ratio"] = m["c_batch"] / m["py_batch"]  # throughput ratio: Python / C
        m["np_ratio"] = m["c_batch"] / m["np_batch"]
        return m


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
        f"distance) and the package run the same queries. Single: {single_n} one-query calls, each query "
        f"run by C, `query` and `query_numpy` in turn (so all meet the same machine state); batch: one call of "
        f"{batch_n} queries each. Medians of {a.rounds} rounds. `query` returns dicts, `query_numpy` arrays.\n"
    )
    print("| index | C single µs | `query` µs | overhead | `query_numpy` µs | overhead | target ≤ max(10%, 5 µs) "
          "| C batch q/s | `query` batch q/s | ratio | `query_numpy` batch q/s | ratio | recall@10 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, m, recall in rows:
        c = m["c_single"]

        def over(key: str) -> str:
            return f"+{m[key]:.1f} µs ({m[key] / c * 100:+.1f}%)"

        ok = all(m[k] <= max(0.10 * c, 5.0) for k in ("py_over", "np_over"))
        target = "-" if recall is None else ("met" if ok else "NOT met")  # the target is for minilm-20k
        print(
            f"| {label} | {c:.1f} | {m['py_single']:.1f} | {over('py_over')} | {m['np_single']:.1f} | "
            f"{over('np_over')} | {target} | {1e6 / m['c_batch']:.0f} | {1e6 / m['py_batch']:.0f} | "
            f"{m['py_ratio']:.2f}x | {1e6 / m['np_batch']:.0f} | {m['np_ratio']:.2f}x | "
            f"{'-' if recall is None else f'{recall:.3f}'} |"
        )


if __name__ == "__main__":
    main()
