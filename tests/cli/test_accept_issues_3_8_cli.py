"""Acceptance: the `genflow` command of issues #3, #7 and #8 as a user types it,
through the real console script: the payload of `send` as its third argument
(as `--payload`), one error line and exit 2 for mistakes, diagrams and repairs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

GENFLOW = Path(sys.executable).parent / "genflow"
APP = Path(__file__).resolve().parents[1] / "support" / "cli_app.py"


@pytest.fixture
def gf(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENFLOW_")}

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(GENFLOW), "--app", str(APP), *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        assert "Traceback" not in done.stderr, done.stderr
        assert done.returncode == code, (args, done.stdout, done.stderr)
        if code:
            assert len(done.stderr.splitlines()) == 1, done.stderr
            assert done.stderr.startswith("genflow: error: ")
        return done

    return run


def test_send_takes_the_payload_after_the_event_as_well(gf):
    gf("start", "cli-order", "--id", "o1")
    assert gf("send", "o1", "add", '{"name": "pizza"}').stdout == \
        "o1 waiting for add, checkout\n1\n"
    assert gf("send", "o1", "add", "--payload", '{"name": "tea", "qty": 2}').stdout.endswith("2\n")
    twice = gf("send", "o1", "add", '{"name": "x"}', "--payload", '{"name": "y"}', code=2)
    assert "give the payload once" in twice.stderr
    bare = gf("send", "o1", "add", "tea", code=2)
    assert "PAYLOAD is not valid JSON" in bare.stderr and "'\"tea\"'" in bare.stderr
    shown = gf("show", "o1", "--json").stdout
    assert '"pizza"' in shown and '"tea"' in shown and '"x"' not in shown


def test_data_without_start_names_the_payload_option(gf):
    gf("start", "cli-order", "--id", "o1")
    refused = gf("send", "o1", "add", "--data", '{"name": "pizza"}', code=2)
    assert "--payload" in refused.stderr


def test_move_history_and_diagrams_from_the_command_line(gf, tmp_path):
    gf("start", "cli-order", "--id", "o1")
    gf("send", "o1", "checkout")
    before = gf("show", "o1", "--json").stdout
    assert "has no statement 'nope'" in gf("move", "o1", "nope", code=2).stderr
    assert gf("show", "o1", "--json").stdout == before
    assert "o1 finished" in gf("move", "o1", "bake").stdout
    history = gf("history", "o1").stdout
    assert "move" in history and '"to": "bake"' in history
    gf("graph", "cli-order", "-o", "order.mmd")
    assert (tmp_path / "order.mmd").read_text().lstrip().startswith("%%")
    gf("show", "o1", "--diagram", "-o", "o1.dot")
    assert (tmp_path / "o1.dot").read_text().startswith("digraph")
    assert "cannot tell a diagram format" in gf("graph", "cli-order", "-o", "x.png",
                                                 code=2).stderr


def test_run_drives_a_file_and_names_its_own_keys_in_errors(gf, tmp_path):
    (tmp_path / "actions.jsonl").write_text(
        '{"start": "cli-order", "id": "r1", "data": {"patience": 1}}\n'
        '{"send": "r1", "event": "checkout"}\n'
        '{"sleep": 1.1}\n'
        '{"work": true}\n'
        '{"show": "r1"}\n')
    out = gf("run", "actions.jsonl").stdout
    assert "instance r1 of workflow 'cli-order': finished" in out and '"expired"' in out
    (tmp_path / "missing.jsonl").write_text('{"send": "zz", "event": "add"}\n')
    refused = gf("run", "missing.jsonl", code=2).stderr
    assert "no instance 'zz'" in refused and '"start": "WORKFLOW"' in refused
    assert "start=" not in refused


def test_a_duplicate_id_names_the_commands_option(gf):
    gf("start", "cli-order", "--id", "o1")
    refused = gf("start", "cli-order", "--id", "o1", code=2).stderr
    assert "instance 'o1' already exists" in refused and "--if-exists return" in refused
    assert "if_exists=" not in refused
    assert gf("start", "cli-order", "--id", "o1", "--if-exists", "return").stdout == \
        "o1 waiting for add, checkout\n"
