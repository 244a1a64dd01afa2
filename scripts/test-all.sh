#!/usr/bin/env bash
# Runs every test: formatting and lints, the Rust tests, then the CMake
# build with the C tests (plain and under ASan/UBSan), the header and symbol
# checks, and an install to a scratch prefix. Usage: scripts/test-all.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${VX_BUILD_DIR:-$root/build}
cd "$root"

step() { printf '\n=== %s ===\n' "$*"; }

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy -D warnings"
cargo clippy --locked --all-targets --features test-hooks -- -D warnings

step "cargo test"
cargo test --locked --features test-hooks

step "CMake build (release libvx, test-hooks libvx, C tests, demo)"
cmake -S cmake -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$(nproc)"

step "ctest (C API, C API under ASan/UBSan, exported symbols and SONAME)"
ctest --test-dir "$build" --output-on-failure

step "install to a scratch prefix"
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in lib/libvx.so lib/libvx.so.0 lib/libvx.a include/vx.h lib/cmake/vx/vxConfig.cmake \
         lib/cmake/vx/vxConfigVersion.cmake lib/pkgconfig/vx.pc lib/pkgconfig/vx-static.pc; do
  [ -e "$prefix/$f" ] || { echo "install is missing $f"; exit 1; }
done
"$root/cmake/check_symbols.sh" "$prefix/lib/libvx.so" libvx.so.0
echo "install layout ok"

echo
echo "all tests passed"
