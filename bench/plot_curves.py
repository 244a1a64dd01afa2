"""Draws recall@10 (x, 0.8..1) vs single-query q/s (y, log), one line per
(engine, index), one PNG per dataset: OUT_DIR/curves-<dataset>.png, from the
JSON lines of peers.py and vx-bench (engine "vx", index "ivf-flat" /
"ivf-rabitq", same fields).

Each line is the upper envelope (Pareto front) of all of that index's
settings (nprobe, k_factor, nb_bits, qb, M, ef, ...); every measured setting
is a faint dot behind it. Only the newest run of each (dataset, engine,
index) is drawn (the "run" field; lines without it count as one run).

usage: plot_curves.py RESULTS.jsonl OUT_DIR"""
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from report import curve_rows  # noqa: E402


def front(pts):
    """Upper envelope: the settings that no other beats on both recall and q/s."""
    best, out = -1.0, []
    for p in sorted(pts, key=lambda p: (-p["recall_at_10"], -p["qps_single"])):
        if p["qps_single"] > best:
            out.append(p)
            best = p["qps_single"]
    return sorted(out, key=lambda p: p["recall_at_10"])


def main():
    rows = curve_rows(sys.argv[1])
    out = sys.argv[2]
    by_ds = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_ds[r["dataset"]][(r["engine"], r["index"])].append(r)
    for dataset, series in sorted(by_ds.items()):
        fig, ax = plt.subplots(figsize=(8, 5.5))
        for i, ((engine, index), pts) in enumerate(sorted(series.items())):
            colour = f"C{i % 10}"
            style = "-o" if engine == "vx" else "--s"
            width = 2.2 if engine == "vx" else 1.3
            ax.plot([p["recall_at_10"] for p in pts], [p["qps_single"] for p in pts], ".", color=colour, alpha=0.18,
                    markersize=4)
            f = front(pts)
            top = max(p["recall_at_10"] for p in pts)
            label = f"{engine} {index}" + (f" (recall <= {top:.2f}: off the plot)" if top < 0.8 else "")
            ax.plot([p["recall_at_10"] for p in f], [p["qps_single"] for p in f], style, color=colour,
                    linewidth=width, markersize=3.5, label=label)
        ax.set_xlim(0.8, 1.0)
        ax.set_yscale("log")
        ax.set_xlabel("recall@10")
        ax.set_ylabel("queries / s (one at a time, 1 thread)")
        some = next(iter(next(iter(series.values()))))
        n = some.get("n")
        ax.set_title(f"{dataset}" + (f" ({n:,} x {some.get('dim')})" if n else "") + ": recall vs single-query q/s")
        ax.grid(True, which="both", alpha=0.3)
        for x in (0.95, 0.99):
            ax.axvline(x, color="grey", linewidth=0.8)
        ax.legend(fontsize=8, loc="lower left")
        fig.tight_layout()
        fig.savefig(f"{out}/curves-{dataset}.png", dpi=110)
        plt.close(fig)
        print(f"wrote {out}/curves-{dataset}.png")


if __name__ == "__main__":
    main()
