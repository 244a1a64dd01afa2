"""Builds the vx wheel: libvx from the crate with cargo, the cffi
declarations generated from include/vx.h, and csrc/hits.c (a small C helper
that copies a query's hits out in one call), all put beside the Python sources.

The package calls libvx through cffi's ABI mode, so nothing is compiled
against Python: the wheel is tagged py3-none-<platform> and serves every
supported CPython. What the build needs: cargo, the C compiler Rust links
with (it also preprocesses the header and compiles hits.c), and the crate's
sources.

Environment:
  VX_SOURCE_DIR      the crate's root (default: found by walking up from here)
  CARGO              the cargo to run (default: cargo on PATH)
  CARGO_TARGET_DIR   honoured by cargo as usual (lets a build reuse another's)
  CC                 the C compiler (default: cc)
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

try:  # setuptools >= 70.1 ships bdist_wheel itself
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # pragma: no cover - older setuptools
    from wheel.bdist_wheel import bdist_wheel

HERE = Path(__file__).resolve().parent
GENERATED_CFFI = "_vx_cffi.py"
HITS_LIB = "_vxhits.so"
CSRC = HERE / "csrc"


def crate_root() -> Path:
    """The directory holding the vx crate's Cargo.toml and include/vx.h."""
    env = os.environ.get("VX_SOURCE_DIR")
    candidates = [Path(env).resolve()] if env else [HERE, *HERE.parents]
    for d in candidates:
        manifest = d / "Cargo.toml"
        if manifest.is_file() and re.search(r'(?m)^name\s*=\s*"vx"\s*$', manifest.read_text()):
            if (d / "include" / "vx.h").is_file():
                return d
    sys.exit(
        "vx: cannot find the vx crate (Cargo.toml and include/vx.h) above "
        f"{HERE}; build from a checkout of the repository or set VX_SOURCE_DIR"
    )


def crate_version(root: Path) -> str:
    m = re.search(r'(?m)^version\s*=\s*"([^"]+)"', (root / "Cargo.toml").read_text())
    if not m:
        sys.exit("vx: no version in Cargo.toml")
    return m.group(1)


def cargo_build(root: Path) -> Path:
    """Runs `cargo build --release --lib` and returns the shared library it made."""
    cargo = os.environ.get("CARGO", "cargo")
    if shutil.which(cargo) is None:
        sys.exit("vx: cargo not found: install Rust (https://rustup.rs) to build the package")
    cmd = [
        cargo, "build", "--release", "--locked", "--lib",
        "--manifest-path", str(root / "Cargo.toml"),
        "--message-format=json-render-diagnostics",
    ]
    print("vx: " + " ".join(cmd), file=sys.stderr)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(f"vx: cargo build failed (exit {proc.returncode})")
    suffixes = (".so", ".dylib", ".dll")
    for line in proc.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") != "compiler-artifact" or msg["target"]["name"] != "vx":
            continue
        if "cdylib" not in msg["target"]["kind"]:
            continue
        for f in msg["filenames"]:
            if f.endswith(suffixes):
                return Path(f)
    sys.exit("vx: cargo build did not report libvx's shared library")


def c_compiler() -> list:
    return os.environ.get("CC", "cc").split()


def cffi_declarations(include: Path) -> str:
    """The C declarations of vx.h and csrc/hits.h as cffi's cdef takes them.

    The real C preprocessor resolves the header's conditionals the way a C11
    compiler that is neither C++ nor GCC sees them (-undef drops __GNUC__, so
    VX_NODISCARD expands to nothing); empty stand-ins replace the standard
    headers (cffi knows their types). Of the #defines, the header's integer
    constants are kept: cffi exposes them, so the package copies no number.
    """
    with tempfile.TemporaryDirectory() as tmp:
        for h in ("stdint.h", "stdbool.h", "stddef.h"):
            Path(tmp, h).write_text("")
        cmd = [*c_compiler(), "-E", "-P", "-dD", "-undef", "-nostdinc", "-I", tmp, "-I", str(include),
               "-std=c11", str(CSRC / "hits.h")]
        try:
            out = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, text=True).stdout
        except (OSError, subprocess.CalledProcessError) as e:
            sys.exit(f"vx: preprocessing vx.h failed ({e}); set CC to a C compiler")
    keep = []
    for line in out.splitlines():
        if line.startswith("#"):
            if re.fullmatch(r"#define VX_[A-Z0-9_]+ -?[0-9]+[uUlL]*", line.strip()):
                keep.append(line.strip())
            continue
        keep.append(line)
    return "\n".join(keep) + "\n"


def write_cffi_module(include: Path, dest: Path) -> None:
    """Writes cffi's out-of-line ABI module (pure Python, fast to import)."""
    import cffi

    ffibuilder = cffi.FFI()
    ffibuilder.cdef(cffi_declarations(include))
    ffibuilder.set_source("vx._vx_cffi", None)
    ffibuilder.emit_python_code(str(dest))


def compile_hits(include: Path, dest: Path) -> None:
    """Compiles csrc/hits.c into a shared object that links to nothing."""
    cmd = [*c_compiler(), "-O2", "-shared", "-fPIC", "-std=c11", "-Wall", "-Wextra", "-I", str(include),
           "-I", str(CSRC), str(CSRC / "hits.c"), "-o", str(dest)]
    print("vx: " + " ".join(cmd), file=sys.stderr)
    if subprocess.run(cmd).returncode != 0:
        sys.exit("vx: compiling csrc/hits.c failed; set CC to a C compiler")


class BuildPy(build_py):
    """build_py plus libvx and the generated cffi module."""

    def run(self) -> None:
        super().run()
        root = crate_root()
        if getattr(self, "editable_mode", False):
            dest = HERE / "src" / "vx"
        else:
            dest = Path(self.build_lib) / "vx"
        dest.mkdir(parents=True, exist_ok=True)
        lib = cargo_build(root)
        # The real file, under its plain name: the package loads it by path.
        shutil.copyfile(lib, dest / lib.name)
        write_cffi_module(root / "include", dest / GENERATED_CFFI)
        compile_hits(root / "include", dest / HITS_LIB)


class BinaryDistribution(Distribution):
    """Holds a native library, so the wheel is platform-specific."""

    def has_ext_modules(self) -> bool:
        return True


class BdistWheel(bdist_wheel):
    """Tags the wheel py3-none-<platform>: ABI mode needs no CPython ABI."""

    def finalize_options(self) -> None:
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat


setup(
    version=crate_version(crate_root()),
    cmdclass={"build_py": BuildPy, "bdist_wheel": BdistWheel},
    distclass=BinaryDistribution,
)
