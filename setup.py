"""The build: pure Python by default; `GENFLOW_COMPILE=1` compiles the hot modules with mypyc.

Everything else about the package is in pyproject.toml. Without the switch this
file adds nothing: the wheel is the pure-Python package, as before it existed.
With it, the modules below are also built as C extensions from the same
source (docs/compiled.md); each `.py` stays in the wheel beside its extension,
which Python imports in its place.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

from setuptools import setup

sys.path.insert(0, str(Path(__file__).resolve().parent / "_build"))
from genflow_build import compiling

#: the modules compiled; genflow.cli.COMPILED_CANDIDATES names the same ones
#: (`genflow --version` reads which of them were loaded from an extension)
COMPILED = ["genflow/codec.py", "genflow/replay.py", "genflow/runtime.py", "genflow/state.py",
            "genflow/statements.py", "genflow/stores/group.py"]

# A fresh build directory for every build: pip builds in the checkout, and
# setuptools would otherwise package whatever an earlier build left in build/lib,
# a compiled build's extensions in a later pure wheel among them.
BUILD = tempfile.mkdtemp(prefix="genflow-build-")
atexit.register(shutil.rmtree, BUILD, ignore_errors=True)
OPTIONS = {"build": {"build_base": BUILD}}

if compiling():
    from mypyc.build import mypycify

    # group_name: the shared library holding the compiled code is `genflow__mypyc`
    # (by default it would be named by a hash of the module list)
    setup(ext_modules=mypycify(COMPILED, opt_level="3", group_name="genflow",
                               target_dir=str(Path(BUILD) / "mypyc")),
          options=OPTIONS)
else:
    # A compiled editable install left its extensions beside the sources, where they
    # would go on shadowing the `.py` files: a pure build takes them away again.
    here = Path(__file__).resolve().parent
    for stale in [*here.glob("genflow__mypyc.*.so"),
                  *(p for module in COMPILED for p in here.glob(module[:-3] + ".*.so"))]:
        stale.unlink()
    setup(options=OPTIONS)
