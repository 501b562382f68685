"""The command line run in this process, as a test calls it: `genflow_in(app)`
gives `run(*args) -> (exit code, stdout, stderr)` for `genflow --app APP
--store sqlite:///s.db ARGS...` in a fresh working directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from genflow.cli import main

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def genflow_in(tmp_path, monkeypatch, capsys) -> Callable[[Path], Run]:
    monkeypatch.chdir(tmp_path)
    for name in ("GENFLOW_APP", "GENFLOW_STORE"):
        monkeypatch.delenv(name, raising=False)

    def with_app(app: Path) -> Run:
        def run(*args: str) -> tuple[int, str, str]:
            try:
                code = main(["--app", str(app), "--store", "sqlite:///s.db", *args])
            except SystemExit as exc:
                code = int(exc.code or 0)
            out, err = capsys.readouterr()
            return code, out, err
        return run

    return with_app
