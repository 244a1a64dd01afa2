# Sourced by run.sh and scale.sh (needs $here, the bench directory): creates
# bench/.venv with faiss-cpu, numpy and matplotlib on first use (never a
# dependency of the library) and defines $py and run_py.
if [ ! -x "$here/.venv/bin/python" ]; then
  python3 -m venv "$here/.venv"
  "$here/.venv/bin/pip" install -q --upgrade pip
  "$here/.venv/bin/pip" install -q faiss-cpu numpy
fi
py="$here/.venv/bin/python"
"$py" -c "import matplotlib" 2>/dev/null || "$here/.venv/bin/pip" install -q matplotlib
# Benchmark against numpy/FAISS at full speed: this machine's OpenBLAS
# core-type override slows them; unset it for these commands only.
run_py() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$py" "$@"; }
