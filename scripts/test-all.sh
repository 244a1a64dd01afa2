#!/usr/bin/env bash
# Runs every test: formatting and lints, the Rust tests (against a
# throw-away PostgreSQL server on 127.0.0.1 when the server binaries are
# installed; .ci/run installs them), rustdoc without warnings, a build
# with the minimum supported Rust, the FFI's unit tests under Miri, the CMake build
# with the C and C++ tests (C also under ASan/UBSan), the header and symbol
# checks, an install to a scratch prefix, and against that install the
# consumer CMake project, pkg-config builds and the Go tests; then the
# Python package installed into a scratch venv and its pytest suite.
# Usage: scripts/test-all.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${VX_BUILD_DIR:-$root/build}
cd "$root"

step() { printf '\n=== %s ===\n' "$*"; }

# Scratch directories and servers, removed or stopped on exit.
cleanup=()
on_exit() { for c in "${cleanup[@]}"; do eval "$c" || true; done; }
trap on_exit EXIT

step "PostgreSQL test server"
if [ -n "${VX_TEST_POSTGRES_URL:-}" ]; then
  echo "using VX_TEST_POSTGRES_URL from the environment"
elif pg_dir=$(mktemp -d) && url=$(VX_PG_FAST=1 scripts/pg-test-server.sh start "$pg_dir"); then
  cleanup+=("scripts/pg-test-server.sh stop '$pg_dir'; rm -rf '$pg_dir'")
  export VX_TEST_POSTGRES_URL=$url
  [ -f "$pg_dir/ca.pem" ] && export VX_TEST_POSTGRES_CA="$pg_dir/ca.pem"
  echo "throw-away server at $url${VX_TEST_POSTGRES_CA:+ (TLS on, CA $VX_TEST_POSTGRES_CA)}"
else
  rm -rf "${pg_dir:-}"
  echo "skipped: PostgreSQL tests (no server binaries: apt-get install postgresql)"
fi

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy -D warnings"
cargo clippy --locked --all-targets --features test-hooks -- -D warnings
# The benchmark tool is a workspace member outside default-members: lint it too.
cargo clippy --locked -p vx-bench --all-targets -- -D warnings

step "cargo test"
cargo test --locked --features test-hooks

step "cargo doc (no warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --quiet

msrv=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
step "minimum supported Rust ($msrv) builds"
if rustup run "$msrv" rustc --version >/dev/null 2>&1; then
  CARGO_TARGET_DIR="$root/target/msrv" cargo "+$msrv" check --locked --quiet --features test-hooks
else
  echo "skipped: no Rust $msrv toolchain (rustup toolchain install $msrv --profile minimal)"
fi

step "Miri: the FFI boundary and its unsafe helpers"
if cargo +nightly miri --version >/dev/null 2>&1; then
  cargo +nightly miri test --locked --quiet --lib --features test-hooks -- ffi:: cache::
else
  echo "skipped: no Miri (rustup toolchain install nightly --component miri,rust-src)"
fi

step "CMake build (release libvx, test-hooks libvx, C tests, demo)"
cmake -S cmake -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$(nproc)"

step "ctest (C API, C API under ASan/UBSan, exported symbols and SONAME)"
ctest --test-dir "$build" --output-on-failure

step "install to a scratch prefix"
prefix=$(mktemp -d)
cleanup+=("rm -rf '$prefix'")
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in lib/libvx.so lib/libvx.so.0 lib/libvx.a include/vx.h lib/cmake/vx/vxConfig.cmake \
         lib/cmake/vx/vxConfigVersion.cmake lib/pkgconfig/vx.pc lib/pkgconfig/vx-static.pc; do
  [ -e "$prefix/$f" ] || { echo "install is missing $f"; exit 1; }
done
"$root/cmake/check_symbols.sh" "$prefix/lib/libvx.so" libvx.so.0
[ "$(readlink "$prefix/lib/libvx.so")" = libvx.so.0 ] && [ "$(readlink "$prefix/lib/libvx.so.0")" = "libvx.so.$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)" ] \
  || { echo "SONAME symlinks are wrong"; ls -l "$prefix/lib"; exit 1; }
echo "install layout ok"

step "consumer project: find_package(vx) against the install (C shared, C static, C++)"
consumer=$(mktemp -d)
cleanup+=("rm -rf '$consumer'")
cmake -S tests/consumer -B "$consumer" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$consumer" -j "$(nproc)"
ctest --test-dir "$consumer" --output-on-failure

step "pkg-config: vx (shared) and vx-static"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cc tests/consumer/main.c $(pkg-config --cflags --libs vx) -o "$consumer/pc_shared"
LD_LIBRARY_PATH="$prefix/lib" "$consumer/pc_shared"
cc tests/consumer/main.c $(pkg-config --static --cflags --libs vx-static) -o "$consumer/pc_static"
"$consumer/pc_static"
if ldd "$consumer/pc_static" | grep -q libvx; then echo "the static build links libvx.so"; exit 1; fi

step "Go binding against the install: go vet, go test -race"
(
  cd bindings/go
  # A fresh build cache: Go caches a cgo package's link flags, so a cache
  # from a run against another (since deleted) prefix would link to it.
  export LD_LIBRARY_PATH="$prefix/lib" CGO_ENABLED=1 GOCACHE="$consumer/gocache"
  test -z "$(gofmt -l .)" || { echo "gofmt: $(gofmt -l .)"; exit 1; }
  go vet ./...
  go test -race -count=1 ./...
  go test -count=1 -tags vx_static -run 'TestRoundTrip|Example' ./...
  # Without cgo the package must refuse to build, naming the fix.
  if out=$(CGO_ENABLED=0 go build ./... 2>&1); then echo "built without cgo"; exit 1; fi
  echo "$out" | grep -q CGO_ENABLED_1 || { echo "no-cgo error does not name CGO_ENABLED=1: $out"; exit 1; }
)

step "Python package: pip install ./bindings/python into a scratch venv, pytest (every Python 3.9-3.13 found)"
# The package builds libvx with cargo; CARGO_TARGET_DIR points it at the
# CMake build's release libvx, so nothing is compiled twice. The test-hooks
# build turns on the PANIC and POISONED tests. Besides python3, every other
# CPython 3.9-3.13 on PATH (or under pyenv) installs the same wheel and runs
# the same tests.
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  echo "skipped: Python tests (no python3 with venv: apt-get install python3-venv)"
else
  pyroot=$(mktemp -d)
  cleanup+=("rm -rf '$pyroot'")
  export CARGO_TARGET_DIR="$build/cargo" VX_TEST_HOOKS_LIB="$build/cargo-hooks/release/libvx.so"
  python_tests() {  # venv: runs the suite with that venv's python
    (cd bindings/python && "$1/bin/python" -m pytest -q -rs -p no:cacheprovider tests)
  }
  python3 -m venv "$pyroot/venv"
  "$pyroot/venv/bin/pip" install -q --upgrade pip
  "$pyroot/venv/bin/pip" install -q "./bindings/python[test]"
  echo "python3 ($("$pyroot/venv/bin/python" -V)): pip install ./bindings/python"
  python_tests "$pyroot/venv"
  "$pyroot/venv/bin/pip" wheel -q --no-deps -w "$pyroot/wheel" ./bindings/python
  wheel=$(ls "$pyroot"/wheel/vx-*-py3-none-*.whl)
  main_version=$("$pyroot/venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  pyenv_root=$(pyenv root 2>/dev/null || true)
  for minor in 9 10 11 12 13; do
    [ "3.$minor" = "$main_version" ] && continue
    interp=""
    for cand in "python3.$minor" ${pyenv_root:+"$pyenv_root"/versions/3.$minor.*/bin/python3.$minor}; do
      if "$cand" -c 'import ensurepip, venv' >/dev/null 2>&1; then interp=$cand; break; fi
    done
    if [ -z "$interp" ]; then echo "skipped: Python 3.$minor (not installed)"; continue; fi
    "$interp" -m venv "$pyroot/venv3.$minor"
    "$pyroot/venv3.$minor/bin/pip" install -q "$wheel[test]"
    echo "Python 3.$minor ($interp): the same wheel"
    python_tests "$pyroot/venv3.$minor"
  done
  unset CARGO_TARGET_DIR VX_TEST_HOOKS_LIB
fi

echo
echo "all tests passed"
