#!/usr/bin/env bash
# Runs vx and FAISS on the same data in the same run and prints markdown
# tables with ratios (paste into docs/BENCHMARKS.md).
#
#   bench/run.sh [--quick]
#
# Creates bench/.venv with faiss-cpu and numpy on first use (never a
# dependency of the library). Datasets: ../shared/data/minilm-20k (real
# MiniLM embeddings, d=384), a synthetic clustered 100k x 128 set (flat
# search) and a synthetic 1M x 128 set (IVF), written to bench/out/.
# --quick uses 200 queries per dataset and skips the 1M set.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out="$here/out"
mkdir -p "$out"
queries=1000
[ "${1:-}" = "--quick" ] && queries=200

. "$here/venv.sh"

"$py" -c "import faiss, numpy; print('faiss', faiss.__version__, 'numpy', numpy.__version__)" >&2
run_py "$here/make_synthetic.py" "$out/synth-100k-128" 100000 128 1000
sets="minilm-20k:$root/../shared/data/minilm-20k:all synth-100k-128:$out/synth-100k-128:flat"
if [ "$queries" = 1000 ]; then
  run_py "$here/make_synthetic.py" "$out/synth-1m-128" 1000000 128 1000
  sets="$sets synth-1m-128:$out/synth-1m-128:ivf"
fi

cargo build --release -q -p vx-bench --manifest-path "$root/Cargo.toml"
bin="$root/target/release/vx-bench"
results="$out/results.jsonl"
: > "$results"
for ds in $sets; do
  IFS=: read -r name dir only <<< "$ds"
  echo "== $name ($only)" >&2
  run_py "$here/faiss_bench.py" "$dir" "$name" --queries "$queries" --only "$only" | tee -a "$results" >&2
  "$bin" "$dir" "$name" --queries "$queries" --scratch "$out" --only "$only" | tee -a "$results" >&2
done
# The same index on file: and on a throw-away local PostgreSQL (fsync on,
# defaults), stopped by PID afterwards; skipped without server binaries.
pg_dir=$(mktemp -d)
if pg_url=$("$root/scripts/pg-test-server.sh" start "$pg_dir"); then
  trap '"$root/scripts/pg-test-server.sh" stop "$pg_dir"; rm -rf "$pg_dir"' EXIT
  echo "== stores (file, postgres)" >&2
  "$bin" "$root/../shared/data/minilm-20k" minilm-20k --queries "$queries" --scratch "$out" --only stores --pg "$pg_url" \
    | tee -a "$results" >&2
else
  echo "== stores: no PostgreSQL server binaries, file: only" >&2
  "$bin" "$root/../shared/data/minilm-20k" minilm-20k --queries "$queries" --scratch "$out" --only stores | tee -a "$results" >&2
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "command: bench/run.sh $*"
echo
"$py" "$here/report.py" "$results"
"$py" "$here/plot.py" "$results" "$root/docs" >&2
