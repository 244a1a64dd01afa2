"""Turns the JSON lines of vx-bench and faiss_bench.py into markdown tables
with vx/FAISS ratios.

usage: report.py RESULTS.jsonl
       report.py --curves CURVES.jsonl [--ref ENGINE/INDEX]   (peers.py and
           vx-bench --only curves lines: best single-query q/s at recall@10
           >= 0.95 and >= 0.99 per engine/index, and the ratio of the
           reference, by default vx/ivf-rabitq when present, to each)"""
import json
import sys
from collections import defaultdict


def main():
    if sys.argv[1] == "--curves":
        ref = sys.argv[sys.argv.index("--ref") + 1] if "--ref" in sys.argv else "vx/ivf-rabitq"
        curves_report(sys.argv[2], ref)
        return
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
    faiss = {(r["dataset"], r["threads"]): r for r in rows if r["engine"] == "faiss" and r["bench"] == "exhaustive"}
    print("### Exhaustive search (top-10), vx encrypted vs FAISS IndexFlatL2\n")
    print("| dataset | threads | vx cache | vx batch q/s | FAISS batch q/s | ratio | vx single q/s | FAISS single q/s | ratio | vx recall@10 | FAISS recall@10 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["engine"] != "vx" or r["bench"] != "exhaustive":
            continue
        f = faiss.get((r["dataset"], r["threads"]))
        if not f:
            continue
        print(f"| {r['dataset']} | {r['threads']} | {r['cache']} | {r['qps_batch']:.0f} | {f['qps_batch']:.0f} | "
              f"**{r['qps_batch'] / f['qps_batch']:.2f}x** | {r['qps_single']:.0f} | {f['qps_single']:.0f} | "
              f"**{r['qps_single'] / f['qps_single']:.2f}x** | {r['recall_at_10']:.3f} | {f['recall_at_10']:.3f} |")
    ivf_report(rows)
    store_report(rows)
    print("\n### Upsert (batches of 10,000, including encryption; file: is fsync'd per batch)\n")
    print("| dataset | store | vectors/s | on-disk bytes / raw vector bytes |")
    print("|---|---|---|---|")
    for r in rows:
        if r["engine"] == "vx" and r["bench"] == "upsert":
            ratio = r.get("size_ratio")
            print(f"| {r['dataset']} | {r['store']} | {r['vectors_per_s']:.0f} | {ratio if ratio else '-'} |")


def store_report(rows):
    stores = [r for r in rows if r["engine"] == "vx" and r["bench"] == "store"]
    if not stores:
        return
    file_rows = {(r["dataset"], r["search"]): r for r in stores if r["store"] == "file"}
    print("\n### Backing stores: the same index on file: and postgres:// (top-10, 2 threads)\n")
    print("Warm: decrypted chunks cached; cold: cache off, every query reads and decrypts from the store. "
          "Ratios are postgres / file (latency: higher is slower; throughput: lower is slower).\n")
    print("| dataset | store | search | upsert vectors/s | warm single ms | cold single ms | warm batch q/s | cold batch q/s | ratio upsert | ratio warm ms | ratio cold ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in stores:
        f = file_rows.get((r["dataset"], r["search"]))
        ratios = ["-"] * 3
        if f and r["store"] != "file":
            ratios = [f"{r['upsert_per_s'] / f['upsert_per_s']:.2f}x", f"{r['warm_ms'] / f['warm_ms']:.2f}x",
                      f"{r['cold_ms'] / f['cold_ms']:.2f}x"]
        print(f"| {r['dataset']} | {r['store']} | {r['search']} | {r['upsert_per_s']:.0f} | {r['warm_ms']:.2f} | "
              f"{r['cold_ms']:.2f} | {r['warm_qps_batch']:.0f} | {r['cold_qps_batch']:.0f} | " + " | ".join(ratios) + " |")


def ivf_report(rows):
    faiss_ivf = {(r["dataset"], r["threads"], r["n_probes"]): r for r in rows if r["engine"] == "faiss" and r["bench"] == "ivf"}
    if not faiss_ivf:
        return
    print("\n### IVF search (top-10), vx encrypted IVF-Flat vs FAISS IndexIVFFlat, same centroid count\n")
    print("| dataset | threads | n_probes | vx cache | vx recall@10 | FAISS recall@10 | vx batch q/s | FAISS batch q/s | ratio | vx single q/s | FAISS single q/s | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["engine"] != "vx" or r["bench"] != "ivf":
            continue
        f = faiss_ivf.get((r["dataset"], r["threads"], r["n_probes"]))
        if not f:
            continue
        print(f"| {r['dataset']} | {r['threads']} | {r['n_probes']} | {r['cache']} | {r['recall_at_10']:.3f} | {f['recall_at_10']:.3f} | "
              f"{r['qps_batch']:.0f} | {f['qps_batch']:.0f} | **{r['qps_batch'] / f['qps_batch']:.2f}x** | "
              f"{r['qps_single']:.0f} | {f['qps_single']:.0f} | **{r['qps_single'] / f['qps_single']:.2f}x** |")
    print("\n### Training (same n_lists, same iteration count) and add into a trained index\n")
    print("| dataset | threads | n_lists | iterations | vx train s | FAISS train s | ratio (vx/FAISS time) | vx objective | FAISS objective | vx add/s | FAISS add/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    ft = {(r["dataset"], r["threads"]): r for r in rows if r["engine"] == "faiss" and r["bench"] == "ivf_train"}
    for r in rows:
        if r["engine"] == "vx" and r["bench"] == "ivf_train":
            f = ft.get((r["dataset"], r["threads"]))
            if f:
                print(f"| {r['dataset']} | {r['threads']} | {r['n_lists']} | {r['iterations']} | {r['train_s']:.2f} | {f['train_s']:.2f} | "
                      f"**{r['train_s'] / f['train_s']:.2f}x** | {r['objective']:.4f} | {f['objective']:.4f} | {r['add_per_s']:.0f} | {f['add_per_s']:.0f} |")
    mem = [r for r in rows if r["engine"] == "vx" and r["bench"] == "memory"]
    if mem:
        print("\n### Peak RSS querying a file: index with the whole index in the decrypted cache\n")
        print("| dataset | peak RSS MB | raw vectors MB | RSS / (raw + 100 MB) |")
        print("|---|---|---|---|")
        for r in mem:
            print(f"| {r['dataset']} | {r['peak_rss_bytes'] / 1e6:.0f} | {r['raw_vector_bytes'] / 1e6:.0f} | {r['rss_over_raw_plus_100mb']:.2f} (target <= 1.3) |")


def curve_rows(path, all_threads=False):
    """The curve points of a results file (fields engine, index, dataset,
    params, threads, recall_at_10, qps_single, qps_batch, ...), the newest run
    of each (dataset, engine, index) only ("run" field; none counts as one
    run). Unless all_threads, one row per (dataset, engine, index, params):
    qps_single is at one thread whatever the line's thread count."""
    rows = []
    for line in open(path):
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        if all(k in r for k in ("engine", "index", "dataset", "recall_at_10", "qps_single")) \
                and r.get("bench", "curve") == "curve":
            rows.append(r)
    newest = defaultdict(str)
    for r in rows:
        key = (r["dataset"], r["engine"], r["index"])
        newest[key] = max(newest[key], str(r.get("run", "")))
    rows = [r for r in rows if str(r.get("run", "")) == newest[(r["dataset"], r["engine"], r["index"])]]
    if all_threads:
        return rows
    points = {}
    for r in rows:
        key = (r["dataset"], r["engine"], r["index"], json.dumps(r.get("params", {}), sort_keys=True))
        if key not in points or r.get("threads") == 1:
            points[key] = r
    return list(points.values())


def setting(r):
    short = {"nprobe": "nprobe", "k_factor": "kf", "nb_bits": "bits", "qb": "qb", "M": "M", "ef": "ef",
             "n_probes": "n_probes", "rerank_mult": "rerank"}
    p = r.get("params", {})
    return " ".join(f"{v}={p[k]}" for k, v in short.items() if k in p)


def curves_report(path, ref):
    rows = curve_rows(path)
    every = curve_rows(path, all_threads=True)
    max_t = max((r.get("threads", 1) for r in every), default=1)
    batch = {}
    for r in every:
        if r.get("threads") == max_t and "qps_batch" in r:
            batch[(r["dataset"], r["engine"], r["index"], json.dumps(r.get("params", {}), sort_keys=True))] = r["qps_batch"]
    groups = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[r["dataset"]][f"{r['engine']}/{r['index']}"].append(r)

    def best(pts, target):
        ok = [p for p in pts if p["recall_at_10"] >= target]
        return max(ok, key=lambda p: p["qps_single"]) if ok else None

    def cell(p, pts):
        if p:
            return f"{p['qps_single']:.0f} ({setting(p)}; r={p['recall_at_10']:.3f})"
        return f"not reached (best r={max(q['recall_at_10'] for q in pts):.3f})"

    def mem_build(ps):
        ps = [p for p in ps if p]
        if not ps:
            return "-", "-"
        mem = sorted({f"{p['memory_bytes'] / 2**20:.0f}" for p in ps if "memory_bytes" in p})
        build = sorted({f"{p['build_s']:.1f}" for p in ps if "build_s" in p})
        return " / ".join(mem) or "-", " / ".join(build) or "-"

    print("### Recall@10 vs single-query q/s: the best setting reaching each recall\n")
    print(f"One query per call at 1 thread; in brackets the setting and its recall. Batch: all queries in one call at "
          f"{max_t} threads, same setting as the 0.95 pick. Memory: FAISS serialized index / hnswlib index file "
          "(/ vx resident bytes when given), of the picked settings (of the best-recall one when none reaches 0.95). Ratio: "
          f"{ref} q/s over the row's q/s at the same recall target (> 1: {ref} faster).\n")
    print("| dataset | engine/index | q/s @ recall >= 0.95 | q/s @ recall >= 0.99 | batch q/s @ 0.95 | memory MiB | build s "
          f"| {ref} ratio @0.95 | @0.99 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for dataset, series in sorted(groups.items()):
        ref_pts = series.get(ref)
        refs = (best(ref_pts, 0.95), best(ref_pts, 0.99)) if ref_pts else (None, None)
        for name, pts in sorted(series.items()):
            b95, b99 = best(pts, 0.95), best(pts, 0.99)
            # memory and build time of the picked settings, else of the best-recall one
            mem, build = mem_build([b95, b99] if b95 else [max(pts, key=lambda p: p["recall_at_10"])])
            if any(p and "resident_bytes" in p for p in (b95, b99)):
                mem += " (resident " + " / ".join(f"{p['resident_bytes'] / 2**20:.0f}" for p in (b95, b99)
                                                  if p and "resident_bytes" in p) + ")"
            bq = batch.get((dataset, b95["engine"], b95["index"], json.dumps(b95.get("params", {}), sort_keys=True))) if b95 else None
            ratios = []
            for mine, theirs in zip(refs, (b95, b99)):
                ratios.append(f"**{mine['qps_single'] / theirs['qps_single']:.2f}x**" if mine and theirs and name != ref else "-")
            print(f"| {dataset} | {name} | {cell(b95, pts)} | {cell(b99, pts)} | {f'{bq:.0f}' if bq else '-'} | {mem} | {build} | "
                  + " | ".join(ratios) + " |")
    if not any(ref in series for series in groups.values()):
        print(f"\n(no {ref} lines in {path}: ratio columns empty)")


if __name__ == "__main__":
    main()
