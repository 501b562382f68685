"""What the compiled build (GENFLOW_COMPILE=1, docs/compiled.md) reads in the source.

mypyc reads `@mypyc_attr(...)` on a class when it compiles the module, by the
name's origin (mypy_extensions, which type checkers and mypyc have); the
decorator is never called on a compiled class. In pure Python it is called, and
this no-op stands in for it, so that genflow does not depend on mypy_extensions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["mypyc_attr"]

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr
else:
    def mypyc_attr(*_flags: str, **_settings: Any) -> Any:
        """A class decorator that leaves the class as it is (mypyc's own, for mypy)."""
        return lambda cls: cls
