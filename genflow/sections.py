"""`Section`, the value `S(...)` builds: a statement body written as one value.

A module of its own because it subclasses `tuple`, which mypyc cannot compile
into a native class (docs/compiled.md): statements.py, compiled, imports it
from here, and `genflow.statements.Section` stays the one class either way.
"""

from __future__ import annotations


class Section(tuple):
    """A body written as one value: `S(step1, step2)`."""

    __slots__ = ()
    __module__ = "genflow.statements"  # where users meet it (repr, docs, errors)
