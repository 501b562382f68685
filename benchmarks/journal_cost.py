"""The optional journal's cost: the W3 durable-step run with the journal off and on.

The journal is written, never read by resume, so turning it on adds one insert
per move and leaves the resume cost flat.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from genflow.engine import Engine
from genflow.stores import SQLiteStore

from .common import Figure, figure
from .w3_durable_steps import durable_step_us


def run(quick: bool = False) -> list[Figure]:
    figures = []
    for journal in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            store = SQLiteStore(Path(tmp) / "j.db")
            samples, iid = durable_step_us(Engine(store, journal=journal), 5 if quick else 20)
            entries = len(store.journal(iid))
            store.close()
        figures.append(figure("journal", f"durable step, journal {'on' if journal else 'off'}",
                              samples, note=f"{entries} journal entries per 100-step instance"))
    return figures
