"""Draws recall@10 vs queries/s (the ANN-benchmarks picture) for vx and
FAISS, one PNG per dataset, from the JSON lines of a bench run.

usage: plot.py RESULTS.jsonl OUT_DIR"""
import json
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
    out = sys.argv[2]
    curves = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["bench"] != "ivf":
            continue
        label = f"{r['engine']} ({r['threads']} thr" + (f", cache {r['cache']}" if r["engine"] == "vx" else "") + ")"
        curves[r["dataset"]][label].append((r["recall_at_10"], r["qps_single"], r["qps_batch"]))
    for dataset, series in curves.items():
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for ax, idx, title in ((axes[0], 1, "one query at a time"), (axes[1], 2, "batch of queries")):
            for label, pts in sorted(series.items()):
                pts.sort()
                style = "-o" if label.startswith("vx") else "--s"
                ax.plot([p[0] for p in pts], [p[idx] for p in pts], style, label=label, markersize=4)
            ax.set_yscale("log")
            ax.set_xlabel("recall@10")
            ax.set_ylabel("queries / s")
            ax.set_title(f"{dataset}: {title}")
            ax.grid(True, which="both", alpha=0.3)
            ax.axvline(0.95, color="grey", linewidth=0.8)
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(f"{out}/recall-qps-{dataset}.png", dpi=110)
        print(f"wrote {out}/recall-qps-{dataset}.png")


if __name__ == "__main__":
    main()
