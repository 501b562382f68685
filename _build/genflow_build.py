"""genflow's build backend: setuptools' own, plus mypy when the compiled build is asked for.

`GENFLOW_COMPILE=1 pip install .` builds the hot modules with mypyc (setup.py);
pip then needs mypy in the isolated build environment, and only then: a build
without the switch asks for exactly what setuptools asks for, so the default
install downloads no compiler. (pyproject.toml's `build-system.requires` is a
fixed list and cannot depend on the switch; these hooks can.)
"""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403 (every other hook is setuptools')

#: what setup.py's mypyc build imports: mypy (which ships mypyc) and the runtime
#: dependencies, whose type hints mypyc compiles against (without them it would
#: compile a different program: their names typed as Any)
COMPILE_REQUIRES = ["mypy>=1.11", "attrs>=23.1", "cattrs>=24.2", "msgpack>=1.0"]


def compiling() -> bool:
    """Is the compiled build asked for? `GENFLOW_COMPILE=1`; unset, empty or 0: pure."""
    value = os.environ.get("GENFLOW_COMPILE", "")
    if value not in ("", "0", "1"):
        raise ValueError(f"GENFLOW_COMPILE={value!r}: give 1 (compiled build) or 0 (pure Python)")
    return value == "1"


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    # compiling: setuptools' hook would run setup.py, which needs mypyc (the very
    # thing asked for); setup.py declares no setup_requires, so setuptools would
    # add nothing to pyproject.toml's list anyway
    if compiling():
        return COMPILE_REQUIRES
    return _setuptools.get_requires_for_build_wheel(config_settings)


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None
                                    ) -> list[str]:
    if compiling():
        return COMPILE_REQUIRES
    return _setuptools.get_requires_for_build_editable(config_settings)
