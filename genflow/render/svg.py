"""SVG through Graphviz's `dot` program, when it is installed.

The program is looked up on PATH as ``dot``, or as `$GENFLOW_DOT` (a name or a
path) when that is set. Without it, `dot_svg` raises `DotNotFoundError`, whose
message says how to get it and which formats work without it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from genflow.errors import GenflowError

__all__ = ["DotError", "DotNotFoundError", "dot_program", "dot_svg"]


class DotNotFoundError(GenflowError):
    """SVG was asked for and Graphviz's `dot` is not installed."""


class DotError(GenflowError):
    """`dot` ran but failed (a bug in the DOT genflow wrote, or a broken install)."""


def dot_program() -> str | None:
    """The path of the `dot` program, or None when it is not installed."""
    return shutil.which(os.environ.get("GENFLOW_DOT") or "dot")


def dot_svg(source: str, *, timeout: float = 60.0) -> str:
    """Draw DOT `source` as SVG (the `<svg>` element, without the XML prologue)."""
    program = dot_program()
    if program is None:
        name = os.environ.get("GENFLOW_DOT") or "dot"
        raise DotNotFoundError(
            f"SVG needs Graphviz's `{name}` program, which is not installed "
            "(apt-get install graphviz); the mmd, dot and json formats need nothing"
        )
    try:
        done = subprocess.run([program, "-Tsvg"], input=source.encode(), capture_output=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise DotError(f"running {program} failed: {exc}") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        raise DotError(f"{program} refused the diagram: {message}")
    svg = done.stdout.decode()
    start = re.search(r"<svg\b", svg)
    return svg[start.start():] if start else svg
