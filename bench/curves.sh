#!/usr/bin/env bash
# Recall@10 / q/s curves of vx's compressed index and its peers on the same
# data in the same run: FAISS IndexIVFFlat, IndexIVFRaBitQ (with and without
# an IndexRefineFlat rerank), IndexIVFPQFastScan + IndexRefineFlat and
# hnswlib (bench/peers.py), appended to bench/out/curves.jsonl, then drawn
# (docs/curves-<dataset>.png) and tabled (markdown on stdout).
#
#   bench/curves.sh [--quick]
#   CURVES_SETS="synth-1m-384-overlap" bench/curves.sh
#
# Datasets: ../shared/data/minilm-20k (real MiniLM embeddings, d=384),
# bench/out/synth-1m-128 (1M x 128, well separated clusters, the set of
# run.sh) and bench/out/synth-1m-384-overlap (1M x 384, make_synthetic.py
# --spread 6: a cluster's radius exceeds the distance between centres, 1.5
# GB), each written on first use. --quick: minilm-20k and synth-1m-128 with
# 200 queries and a smaller parameter grid (hnswlib M=16 only at 1M).
# hnswlib graphs are kept in bench/out/cache and reused by later runs (their
# lines say build_cached). Measured here: --quick 12 minutes with a fresh 1M
# graph (7.6 of them for the graph), 21 while other builds shared the cores;
# those times are from before the denser n_probes grid (1-6, 8, 10, 12, ...),
# which runs more settings (not timed since).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out="$here/out"
mkdir -p "$out"
quick=0
[ "${1:-}" = "--quick" ] && quick=1

. "$here/venv.sh"

"$py" -c "import faiss, numpy; from importlib.metadata import version as v; print('faiss', faiss.__version__, 'hnswlib', v('hnswlib'), 'numpy', numpy.__version__)" >&2
run_py "$here/make_synthetic.py" "$out/synth-1m-128" 1000000 128 1000
sets="minilm-20k:$root/../shared/data/minilm-20k synth-1m-128:$out/synth-1m-128"
if [ "$quick" = 1 ]; then
  queries=200
  # per dataset: extra peers.py arguments
  grid_small="--qb 8"
  grid_1m="--qb 8 --rabitq-bits 1,4 --k-factors 4,16,64 --hnsw-m 16"
else
  queries=1000
  run_py "$here/make_synthetic.py" "$out/synth-1m-384-overlap" 1000000 384 1000 --spread 6
  sets="$sets synth-1m-384-overlap:$out/synth-1m-384-overlap"
  grid_small=""
  grid_1m=""
fi

# CURVES_SETS="name ..." keeps only those datasets (e.g. one 1M set at a time:
# the full grid at 1000 queries takes hours per 1M set on 2 cores).
if [ -n "${CURVES_SETS:-}" ]; then
  kept=""
  for ds in $sets; do
    case " $CURVES_SETS " in *" ${ds%%:*} "*) kept="$kept $ds" ;; esac
  done
  sets=$kept
fi

# One n_probes grid for vx and its peers, denser than doubling where the
# sets cross recall 0.95 (see bench/peers.py's --probes).
probes=1,2,3,4,5,6,8,10,12,16,20,24,32,36,40,48,64,96,128

cargo build --release -q -p vx-bench --manifest-path "$root/Cargo.toml"
results="$out/curves.jsonl"
run=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for ds in $sets; do
  IFS=: read -r name dir <<< "$ds"
  grid=$grid_1m
  [ "$name" = minilm-20k ] && grid=$grid_small
  echo "== $name: peers ($(date -u +%H:%M:%S))" >&2
  start=$SECONDS
  # shellcheck disable=SC2086
  run_py "$here/peers.py" "$dir" "$name" --queries "$queries" --threads 1,2 --run "$run" \
    --hnsw-cache "$out/cache" --probes "$probes" $grid | tee -a "$results" >&2
  echo "== $name: peers took $((SECONDS - start)) s" >&2
  echo "== $name: vx ($(date -u +%H:%M:%S))" >&2
  "$root/target/release/vx-bench" "$dir" "$name" --queries "$queries" --threads 1,2 --scratch "$out" \
    --ivf-probes "$probes" \
    --only curves --run "$run" | tee -a "$results" >&2
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "command: bench/curves.sh $*"
echo
"$py" "$here/report.py" --curves "$results"
"$py" "$here/plot_curves.py" "$results" "$root/docs" >&2
