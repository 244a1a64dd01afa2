"""Markdown tables (vx/FAISS ratios where both measured the same thing) and
a plot of one-item upsert latency and upsert rate against index size, from
the JSON lines of a bench/scale.sh run.

usage: scale_report.py RESULTS.jsonl OUT.png"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def mb(b):
    return f"{b / 1e6:,.0f}" if b >= 100e6 else f"{b / 1e6:.1f}"


def ratio(a, b):
    return f"**{a / b:.2f}x**" if b else "-"


def main():
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
    rows = [r for r in rows if r["bench"] == "scale"]
    one = {(r["engine"], r["phase"]): r for r in rows if r["phase"] != "query"}
    fill = [r for r in rows if r["engine"] == "vx" and r["phase"] == "fill"]
    train, add = one[("vx", "train")], one[("vx", "add")]
    ftrain, fadd = one[("faiss", "train")], one[("faiss", "add")]
    raw = train["raw_vector_bytes"]
    print(f"### Scale: {train['dataset']}, {train['size']:,} vectors, vx {train.get('index', 'ivf-flat')}\n")

    print("Filling a `file:` index in batches of 10,000 (rate over each tenth, upsert calls only, and its slowest batch); "
          "one-item upserts: 100 single items of new ids at that size (0.5's runs timed 20: their p99 was the slowest); "
          "fsync: median and 99th percentile of 100 4 KiB writes + fdatasync beside the index, the disk's floor under a one-item commit.\n")
    print("| size | upsert vectors/s | slowest batch ms | one-item p50 ms | one-item p99 ms | fsync p50 ms | fsync p99 ms | disk / raw vector bytes |")
    print("|---|---|---|---|---|---|---|---|")
    for r in fill:
        fsync_p99 = f"{r['fsync_ms_p99']:.2f}" if "fsync_ms_p99" in r else "-"  # runs before 0.10.2 have none
        slowest = f"{r['slowest_batch_ms']:,.0f}" if "slowest_batch_ms" in r else "-"  # nor before 0.11
        print(f"| {r['size']:,} | {r['upsert_per_s']:,.0f} | {slowest} | {r['one_item_ms_p50']:.2f} | {r['one_item_ms_p99']:.2f} | "
              f"{r['fsync_ms_p50']:.2f} | {fsync_p99} | {r['disk_bytes'] / r['raw_vector_bytes']:.3f} |")
    print(f"\nLast tenth / first tenth upsert rate: **{fill[-1]['upsert_per_s'] / fill[0]['upsert_per_s']:.2f}x**; "
          f"one-item p50 {fill[-1]['one_item_ms_p50'] / fill[0]['one_item_ms_p50']:.2f}x.\n")

    print(f"### Training and adding: vx vs FAISS IndexIVFFlat ({train['n_lists']} lists, "
          f"{train['iterations']} k-means iterations, {train['sample_size']:,} / {ftrain['sample_size']:,} sampled)\n")
    print("vx's training assigns every item to its list and rewrites the index, which FAISS does in `add`: "
          "compare vx train with FAISS train + add.\n")
    print("| measure | vx | FAISS | vx / FAISS |")
    print("|---|---|---|---|")
    build = ftrain["train_s"] + fadd["add_s"]
    print(f"| k-means objective (mean squared distance on the sample) | {train['objective']:.3f} | {ftrain['objective']:.3f} | "
          f"{ratio(train['objective'], ftrain['objective'])} |")
    print(f"| train s (FAISS: k-means only) | {train['train_s']:.2f} | {ftrain['train_s']:.2f} | "
          f"{ratio(train['train_s'], ftrain['train_s'])} |")
    print(f"| train s vs FAISS train + add s | {train['train_s']:.2f} | {build:.2f} | {ratio(train['train_s'], build)} |")
    if ("faiss", "add-rabitq") in one:
        rq = one[("faiss", "add-rabitq")]
        coded = ftrain["train_s"] + rq["add_s"]
        print(f"| train s vs FAISS train + IndexIVFRaBitQ add s ({rq['nb_bits']} bits, codes as vx's) | "
              f"{train['train_s']:.2f} | {coded:.2f} | {ratio(train['train_s'], coded)} |")
    print(f"| add into the trained index, vectors/s (vx: {add['vectors']:,} in batches of {add['batch']:,}, fsync'd; "
          f"FAISS: all) | {add['add_per_s']:,.0f} | {fadd['add_per_s']:,.0f} | {ratio(add['add_per_s'], fadd['add_per_s'])} |")
    print(f"| peak RSS while training, MB | {mb(train['peak_rss_bytes'])} | {mb(ftrain['peak_rss_bytes'])} | "
          f"{ratio(train['peak_rss_bytes'], ftrain['peak_rss_bytes'])} |")
    print(f"| peak RSS holding the index after add, MB | - (cache-bound) | {mb(fadd['peak_rss_bytes'])} | - |")
    # Below zero when the index never filled the cache: the cache then says nothing.
    # From the bytes, not the JSON's ratios (already rounded to 3 places: rounding twice).
    peak = train["peak_rss_bytes"]
    over_cache = (peak - train["cache_bytes"]) / raw
    over_before = (peak - train["rss_before_bytes"]) / raw
    over_cache = f"**{over_cache:.2f}**" if over_cache > 0 else "- (peak below the cache budget)"
    print(f"\nRaw vectors {mb(raw)} MB; vx cache {mb(train['cache_bytes'])} MB, RSS before training "
          f"{mb(train['rss_before_bytes'])} MB; (peak - cache) / raw = {over_cache}, "
          f"(peak - before) / raw = {over_before:.2f}. "
          f"vx automatic n_probes: {train['auto_n_probes']}.\n")
    print("| vx disk / raw vector bytes | after fill | after training | after adding and deleting "
          f"{add['vectors']:,} | after compact |")
    print("|---|---|---|---|---|")
    print(f"| | {fill[-1]['disk_bytes'] / raw:.3f} | {train['disk_bytes'] / raw:.3f} | {add['disk_bytes'] / raw:.3f} | "
          f"{add['disk_bytes_compacted'] / raw:.3f} |")

    fq = {(r["n_probes"], r["auto"]): r for r in rows if r["engine"] == "faiss" and r["phase"] == "query"}
    threads = next(r["threads"] for r in fq.values())
    print(f"\n### Single-query search (top-10, one query per call, {threads} thread(s)); vx reopened with each cache\n")
    print("| vx cache | n_probes | vx recall@10 | FAISS recall@10 | vx q/s | FAISS q/s | vx / FAISS q/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if r["engine"] != "vx" or r["phase"] != "query":
            continue
        f = fq.get((r["n_probes"], r["auto"]))
        probes = f"auto ({r['n_probes']})" if r["auto"] else r["n_probes"]
        print(f"| {r['cache']} ({mb(r['cache_bytes'])} MB) | {probes} | {r['recall_at_10']:.3f} | "
              f"{f['recall_at_10']:.3f} | {r['qps_single']:,.0f} | {f['qps_single']:,.0f} | "
              f"{ratio(r['qps_single'], f['qps_single'])} |")
    plot(fill, sys.argv[2])


def plot(fill, path):
    sizes = [r["size"] for r in fill]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    axes[0].plot(sizes, [r["one_item_ms_p50"] for r in fill], "-o", label="median", markersize=4)
    axes[0].plot(sizes, [r["one_item_ms_p99"] for r in fill], "--s", label="p99 (slowest of 20)", markersize=4)
    axes[0].plot(sizes, [r["fsync_ms_p50"] for r in fill], ":", color="grey", label="4 KiB fdatasync, median")
    axes[0].set_ylabel("one-item upsert, ms")
    axes[0].legend(fontsize=8)
    axes[1].plot(sizes, [r["upsert_per_s"] for r in fill], "-o", markersize=4)
    axes[1].set_ylabel("upsert vectors / s (batches of 10,000, over each tenth)")
    for ax in axes:
        ax.set_xlabel("vectors in the index")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"vx on file:, {fill[0]['dataset']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
