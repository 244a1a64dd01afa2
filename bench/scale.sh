#!/usr/bin/env bash
# How vx's costs grow with the index, beside FAISS IndexIVFFlat on the same
# data in the same run (issue "Scale"):
#
#   bench/scale.sh N DIM [--quick] [--threads T] [--cache-mib M] [--index ivf-rabitq|ivf-rabitq-4bit]
#
# Writes a clustered synthetic set of N x DIM with 1000 queries and exact
# ground truth to bench/out/synth-scale-N-DIM/ (once; streamed, one block in
# memory), then runs `vx-bench --only scale` on a file: index in bench/out
# (the base streamed from disk; cache M MiB, default vx's default) and
# bench/faiss_scale.py with the same threads (default 1), list count
# (round(sqrt(N))), k-means iterations (the ones vx ran, at most 10) and
# n_probes. Prints markdown tables on stdout; writes the JSON lines to
# bench/out/scale-N-DIM.jsonl and the plot of one-item upsert latency and
# upsert rate against size to bench/out/scale-N-DIM.png.
# --quick: 200 queries and n_probes 16,64 (default 1000 and 8,16,32,64,128).
# --index ivf-rabitq: vx's compressed index instead of IVF_FLAT (FAISS stays
# IndexIVFFlat); its results go to scale-N-DIM-ivf-rabitq.jsonl/.png;
# --index ivf-rabitq-4bit: the same with 4-bit codes (quantizer_bits 4).
# Disk: the data set takes the raw vectors (N * DIM * 4 bytes) plus a few
# percent, the vx index about as much again.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out="$here/out"
usage() { echo "usage: bench/scale.sh N DIM [--quick] [--threads T] [--cache-mib M] [--index ivf-rabitq|ivf-rabitq-4bit]" >&2; exit 2; }
[ $# -ge 2 ] || usage
command="bench/scale.sh $*"
n=$1 dim=$2
shift 2
queries=1000 probes=8,16,32,64,128 threads=1 cache=() index=ivf-flat
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) queries=200 probes=16,64; shift ;;
    --threads) threads=$2; shift 2 ;;
    --cache-mib) cache=(--cache-mib "$2"); shift 2 ;;
    --index) index=$2; shift 2 ;;
    *) usage ;;
  esac
done
mkdir -p "$out"
. "$here/venv.sh"

name="synth-scale-$n-$dim"
data="$out/$name"
suffix=$([ "$index" = ivf-flat ] || echo "-$index")
results="$out/scale-$n-$dim$suffix.jsonl"
"$py" -c "import faiss, numpy; print('faiss', faiss.__version__, 'numpy', numpy.__version__)" >&2
run_py "$here/make_scale_data.py" "$data" "$n" "$dim"
cargo build --release -q -p vx-bench --manifest-path "$root/Cargo.toml"
"$root/target/release/vx-bench" "$data" "$name" --only scale --threads "$threads" --queries "$queries" \
  --ivf-probes "$probes" --scratch "$out" "${cache[@]}" --index "$index" | tee "$results" >&2
run_py "$here/faiss_scale.py" "$data" "$name" "$results" --threads "$threads" --queries "$queries" --probes "$probes" \
  | tee -a "$results" >&2
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "command: $command"
echo
"$py" "$here/scale_report.py" "$results" "$out/scale-$n-$dim$suffix.png"
