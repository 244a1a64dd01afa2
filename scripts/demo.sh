#!/usr/bin/env bash
# Builds libvx and the C demo (release), then runs the demo on the embedded
# file: store. Usage: scripts/demo.sh [DIR] [N]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cmake -S "$root/cmake" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build" --target vx_demo -j "$(nproc)"
exec "$root/build/vx_demo" "${1:-$root/build/demo-data}" "${2:-100000}"
