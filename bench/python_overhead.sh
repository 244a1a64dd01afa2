#!/usr/bin/env bash
# The Python package's overhead over C on minilm-20k: installs
# bindings/python into the bench's venv (bench/venv.sh; the package itself
# needs only cffi and numpy), then runs bench/python_overhead.py, which
# times the same queries on the same index handle from a small C loop and
# through the package, and prints a markdown section for docs/BENCHMARKS.md.
#
#   bench/python_overhead.sh [--rounds R] [--single N] [--batch N] [--threads T] [--top-k K]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

. "$here/venv.sh"
"$here/.venv/bin/pip" install -q cffi
"$here/.venv/bin/pip" install -q --no-deps --force-reinstall "$root/bindings/python"
echo "command: bench/python_overhead.sh $*"
echo
run_py "$here/python_overhead.py" "$root/../shared/data/minilm-20k" --include "$root/include" "$@"
