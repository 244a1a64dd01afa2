# Sourced by run.sh, scale.sh and curves.sh (needs $here, the bench
# directory): creates bench/.venv with faiss-cpu, numpy, matplotlib and
# hnswlib on first use (never a dependency of the library) and defines $py
# and run_py. An older venv is brought up to date: faiss-cpu is upgraded when
# it lacks IndexIVFRaBitQ (added in FAISS 1.11), hnswlib is installed when
# missing (pip builds it from source where PyPI has no wheel for this Python;
# that needs a C++ compiler and numpy, both here).
if [ ! -x "$here/.venv/bin/python" ]; then
  python3 -m venv "$here/.venv"
  "$here/.venv/bin/pip" install -q --upgrade pip
  "$here/.venv/bin/pip" install -q faiss-cpu numpy bm25s==0.3.16
fi
py="$here/.venv/bin/python"
"$py" -c "import matplotlib" 2>/dev/null || "$here/.venv/bin/pip" install -q matplotlib
"$py" -c "import faiss; faiss.IndexIVFRaBitQ" 2>/dev/null || "$here/.venv/bin/pip" install -q --upgrade faiss-cpu
"$py" -c "import hnswlib" 2>/dev/null || "$here/.venv/bin/pip" install -q hnswlib
"$py" -c "import bm25s; assert bm25s.__version__ == '0.3.16'" 2>/dev/null || "$here/.venv/bin/pip" install -q bm25s==0.3.16
# Benchmark against numpy/FAISS at full speed: this machine's OpenBLAS
# core-type override slows them; unset it for these commands only.
run_py() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$py" "$@"; }
