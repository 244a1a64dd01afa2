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
    print("\n### Upsert (batches of 10,000, including encryption; file: is fsync'd per batch)\n")
    print("| dataset | store | vectors/s | on-disk bytes / raw vector bytes |")
    print("|---|---|---|---|")
    for r in rows:
        if r["engine"] == "vx" and r["bench"] == "upsert":
            ratio = r.get("size_ratio")
            print(f"| {r['dataset']} | {r['store']} | {r['vectors_per_s']:.0f} | {ratio if ratio else '-'} |")


if __name__ == "__main__":
    main()
