"""Turns the JSON lines of vx-bench and faiss_bench.py into markdown tables
with vx/FAISS ratios. usage: report.py RESULTS.jsonl"""
import json
import sys
from collections import defaultdict


def main():
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


if __name__ == "__main__":
    main()
