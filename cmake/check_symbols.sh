#!/usr/bin/env bash
# Checks a release libvx.so: every exported (defined, dynamic) symbol starts
# with vx_, no test hook is present, and the SONAME is the expected one.
set -euo pipefail
lib=$1
want_soname=$2
bad=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^vx_' || true)
if [ -n "$bad" ]; then
  echo "symbols without the vx_ prefix are exported from $lib:"; echo "$bad"; exit 1
fi
if nm -D --defined-only "$lib" | grep -q 'vx_debug_'; then
  echo "$lib exports a test hook (vx_debug_*)"; exit 1
fi
soname=$(objdump -p "$lib" | awk '/SONAME/ {print $2}')
if [ "$soname" != "$want_soname" ]; then
  echo "SONAME of $lib is '$soname', expected '$want_soname'"; exit 1
fi
count=$(nm -D --defined-only "$lib" | grep -c ' T vx_')
echo "ok: $count vx_ functions exported, no test hooks, SONAME $soname"
