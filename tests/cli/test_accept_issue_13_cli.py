"""Acceptance of issue 13 at the command line: a timer's name sent by hand is
refused (timers fire by the clock) and the store is left as it was; a send to
an id that does not exist says how to start it *with the command's options*
(`--start WORKFLOW --data JSON`), not with the Engine's keyword."""

from __future__ import annotations

from pathlib import Path

import pytest

from genflow import open_store

APP = Path(__file__).resolve().parents[1] / "support" / "cli_app.py"


@pytest.fixture
def gf(genflow_in):
    return genflow_in(APP)


def _row(path: Path, instance_id: str) -> tuple:
    with open_store(f"sqlite:///{path}") as store:
        r = store.get(instance_id)
        return (r.blob, r.version, r.status, r.wake_at, r.waiting_for)


def test_sending_a_timers_name_is_refused_and_changes_nothing(gf, tmp_path):
    assert gf("start", "cli-order", "--id", "o1")[0] == 0
    assert gf("send", "o1", "checkout")[0] == 0
    before = _row(tmp_path / "s.db", "o1")
    code, _, err = gf("send", "o1", "too slow")
    assert code != 0
    assert "'too slow' is a timer" in err and "'confirm'" in err
    assert _row(tmp_path / "s.db", "o1") == before


def test_a_send_to_a_missing_id_says_which_options_start_it(gf):
    code, _, err = gf("send", "nobody", "add", "--payload", '{"name": "tea"}')
    assert code != 0
    assert "no instance 'nobody'" in err and "--start WORKFLOW --data JSON" in err
    assert "start=..." not in err
    code, out, err = gf("send", "nobody", "add", "--payload", '{"name": "tea"}',
                        "--start", "cli-order", "--data", '{"customer": "Ada"}')
    assert code == 0, err
    assert out.startswith("nobody waiting")
