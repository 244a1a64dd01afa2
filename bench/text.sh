#!/usr/bin/env bash
# Keyword (BM25) and hybrid search on a real English corpus (the paragraphs
# of /usr/share/doc) with the minilm-20k vectors, then the reference check:
# bench/bm25_reference.py scores the same terms with the bm25s package
# (in bench/.venv, never a dependency of the library) and fails if any
# score differs by more than 1e-5 (relative) or any match is missing or
# extra. Results go to bench/out/text.jsonl and stdout.
#
#   bench/text.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out="$here/out"
mkdir -p "$out"

. "$here/venv.sh"

cargo build --release -q -p vx-bench --manifest-path "$root/Cargo.toml"
"$root/target/release/vx-bench" "$root/../shared/data/minilm-20k" minilm-20k --only text --scratch "$out" \
  | tee "$out/text.jsonl"
run_py "$here/bm25_reference.py" "$out/bm25-check.json" | tee -a "$out/text.jsonl"
