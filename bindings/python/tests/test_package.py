"""The package as shipped: docstrings and type hints on everything public,
py.typed, the declarations generated from the header, and
examples/quickstart.py running as written."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HERE

import vx
from vx._native import ffi, lib

PUBLIC_CLASSES = [vx.Client, vx.Index]


def public_methods(cls):
    for name, member in vars(cls).items():
        if name.startswith("_") and name not in ("__init__", "__enter__", "__exit__"):
            continue
        yield name, member


def test_docstrings_and_hints_on_everything_public():
    assert vx.__doc__
    for name in vx.__all__:
        obj = getattr(vx, name)
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj):
            assert obj.__doc__, f"vx.{name} has no docstring"
        if inspect.isfunction(obj):
            assert "return" in obj.__annotations__, f"vx.{name} has no return type"
    for cls in PUBLIC_CLASSES:
        for name, member in public_methods(cls):
            fn = member.fget if isinstance(member, property) else member
            if name in ("__enter__", "__exit__"):
                continue
            assert fn.__doc__ or (name == "__init__" and cls.__doc__), f"{cls.__name__}.{name} has no docstring"
            assert "return" in fn.__annotations__, f"{cls.__name__}.{name} has no return type"
            params = [p for p in inspect.signature(fn).parameters if p != "self"]
            missing = [p for p in params if p not in fn.__annotations__ and not p.startswith("_")]
            assert not missing, f"{cls.__name__}.{name}: no type for {missing}"


def test_py_typed_and_bundled_library():
    pkg = Path(vx.__file__).parent
    assert (pkg / "py.typed").is_file()
    assert Path(vx.library_path).parent == pkg or os.environ.get("VX_LIBRARY")


def test_keyword_only_credentials():
    """Every data call takes index_key= and user_id= as keywords only."""
    for name in ("upsert", "get", "delete", "list_ids", "query_metadata", "query", "query_numpy", "train", "num_vectors",
                 "delete_index", "compact", "epoch"):
        params = inspect.signature(getattr(vx.Index, name)).parameters
        for cred in ("index_key", "user_id"):
            assert params[cred].kind is inspect.Parameter.KEYWORD_ONLY, (name, cred)
            assert params[cred].default is None
    train = inspect.signature(vx.Index.train).parameters
    assert list(train)[1:6] == ["n_lists", "batch_size", "max_iters", "tolerance", "max_memory"]
    assert all(train[p].default is None for p in list(train)[1:6])
    assert train["seed"].kind is train["progress"].kind is inspect.Parameter.KEYWORD_ONLY


def test_declarations_match_the_library():
    """The cffi declarations come from vx.h: struct sizes agree with what
    the library's _init functions write, and every function of the header is
    declared."""
    for struct, init in [("vx_client_options", lib.vx_client_options_init), ("vx_index_config", lib.vx_index_config_init),
                         ("vx_query_params", lib.vx_query_params_init), ("vx_train_params", lib.vx_train_params_init)]:
        p = ffi.new(f"{struct} *")
        init(p)
        assert p.struct_size == ffi.sizeof(struct), struct
    header = next((d / "include" / "vx.h" for d in HERE.parents if (d / "include" / "vx.h").is_file()), None)
    if header is None:
        pytest.skip("include/vx.h not found")
    declared = set(re.findall(r"\b(vx_[a-z_0-9]+)\(", header.read_text())) - {"vx_debug_panic"}
    assert len(declared) > 50
    missing = [f for f in sorted(declared) if not hasattr(lib, f)]
    assert not missing, missing
    assert not hasattr(lib, "vx_debug_panic")  # test-only, never in the package's declarations


def test_quickstart_example_runs(tmp_path):
    example = next((d / "examples" / "quickstart.py" for d in HERE.parents if (d / "examples" / "quickstart.py").is_file()), None)
    if example is None:
        pytest.skip("examples/quickstart.py not found")
    out = subprocess.run([sys.executable, str(example), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for line in ("upserted 20001 vectors", "trained: 141 lists", "alice sees doc-1", "alice cannot delete",
                 "reopened: 20001 vectors, b'hi'", "a wrong key is refused"):
        assert line in out.stdout, out.stdout


def test_readme_example_runs(tmp_path, capsys):
    """The five-line example of the README's Python section, as written
    (with a scratch directory for the store)."""
    readme = next((d / "README.md" for d in HERE.parents if (d / "README.md").is_file() and (d / "Cargo.toml").is_file()), None)
    if readme is None:
        pytest.skip("the repository's README.md not found")
    section = readme.read_text().split("\n## Python\n", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert code.count("\n") == 5
    exec(compile(code.replace("/var/lib/app/vx", str(tmp_path)), "README.md", "exec"), {})
    assert capsys.readouterr().out.startswith("[{'id': 'a', 'distance': 0.1414")
