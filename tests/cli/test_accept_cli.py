"""Acceptance: the command line as a new user types it. `--every` reads a
duration as `--jitter` and `--window` do; `python -m genflow` is the command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from genflow.cli import main

APP = Path(__file__).resolve().parents[1] / "support" / "sched_app.py"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gf(genflow_in):
    return genflow_in(APP)


@pytest.mark.parametrize(("every", "shown"), [("15m", "every 0:15:00"), ("90", "every 0:01:30"),
                                              ("1d", "every 1 day, 0:00:00")])
def test_every_takes_a_duration(gf, every, shown):
    code, out, err = gf("schedule", "add", "tick", "sched-report", "--every", every)
    assert code == 0, err
    assert out.startswith(f"tick\tsched-report\t{shown}\tnext ")


@pytest.mark.parametrize(("every", "message"), [("0", "an interval above 0"),
                                                ("5x", "not a duration: '5x'"),
                                                ("--every=-5m", "a duration of 0 or more")])
def test_a_bad_interval_is_a_one_line_error(gf, every, message):
    args = [every] if every.startswith("--") else ["--every", every]
    code, out, err = gf("schedule", "add", "tick", "sched-report", *args)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert message in err


def test_python_dash_m_genflow_is_the_command():
    done = subprocess.run([sys.executable, "-m", "genflow", "--version"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("genflow ")


@pytest.mark.parametrize(("args", "message"), [
    ([], "the console needs an access token"),
    (["--insecure-local", "--host", "0.0.0.0"], "listens on loopback only"),
])
def test_a_refused_serve_says_only_why(gf, monkeypatch, args, message):
    pytest.importorskip("uvicorn")
    monkeypatch.delenv("GENFLOW_WEB_TOKEN", raising=False)
    code, _, err = gf("serve", *args)
    assert code == 2, err
    assert err.startswith("genflow: error: ") and message in err
    assert "console on" not in err  # no claim that it serves before it refuses


def test_show_heads_a_queued_instance_as_queued_not_running(gf):
    from genflow.engine import Engine
    from genflow.queues import Queue
    from genflow.stores import SQLiteStore

    with SQLiteStore("s.db") as store:
        Engine(store).queues.define(Queue("q", concurrency=1))
    assert gf("start", "sched-job", "--id", "a", "--queue", "q")[0] == 0
    first = gf("show", "a")[1].splitlines()[0]
    assert first == ("instance a of workflow 'sched-job': queued (no worker runs it until "
                     "its queue admits it)")
    assert gf("worker", "--until-idle")[0] == 0
    assert "queued" not in gf("show", "a")[1].splitlines()[0]


@pytest.fixture
def bare(tmp_path, monkeypatch, capsys):
    """`genflow ARGS` as typed, with no --app or --store put first."""
    monkeypatch.chdir(tmp_path)
    for name in ("GENFLOW_APP", "GENFLOW_STORE"):
        monkeypatch.delenv(name, raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_a_schedule_action_takes_store_and_app_after_its_arguments(bare, tmp_path):
    where = ("--store", "sqlite:///after.db", "--app", str(APP))
    code, out, err = bare("schedule", "add", "nightly", "sched-report", "--cron", "0 2 * * *",
                          "--tz", "Europe/Paris", *where)
    assert code == 0, err
    assert out.startswith("nightly\tsched-report\tcron '0 2 * * *' (Europe/Paris)\tnext ")
    assert (tmp_path / "after.db").exists() and not (tmp_path / "genflow.db").exists()
    for action in (["list"], ["show", "nightly"], ["pause", "nightly"], ["resume", "nightly"],
                   ["update", "nightly", "--jitter", "1m"], ["trigger", "nightly"]):
        code, out, err = bare("schedule", *action, *where)
        assert code == 0 and "nightly" in out, (action, err)
    # the innermost --store wins; an --app before the action and one after both count
    code, out, err = bare("--store", "sqlite:///other.db", "schedule", "--app", str(APP),
                          "show", "nightly", "--store", "sqlite:///after.db")
    assert code == 0 and out.startswith("schedule nightly: starts workflow 'sched-report'"), err
    assert bare("schedule", "delete", "nightly", *where)[0] == 0
    assert "no schedule 'nightly'" in bare("schedule", "show", "nightly", *where)[2]


def test_start_on_a_queue_says_it_is_queued_and_where(gf):
    from genflow.engine import Engine
    from genflow.queues import Queue
    from genflow.stores import SQLiteStore

    with SQLiteStore("s.db") as store:
        Engine(store).queues.define(Queue("q", concurrency=1))
    code, out, _ = gf("start", "sched-job", "--id", "a", "--queue", "q")
    assert (code, out) == (0, "a queued: waits in queue 'q' for admission: position 1\n")
    code, out, _ = gf("start", "sched-job", "--id", "b", "--queue", "q", "--priority", "3")
    assert out == "b queued: waits in queue 'q' for admission: position 2, priority 3\n"
    assert gf("start", "sched-job", "--id", "c")[1] == "c finished\n"  # no queue: as before


def test_the_worker_command_applies_a_retention_policy(gf):
    """`genflow worker --retain 7d`: the worker purges ended instances as it goes (a
    policy lives in the worker's process: the command had no way to give one)."""
    for name in ("done-1", "done-2"):
        assert gf("start", "sched-job", "--id", name)[1] == f"{name} finished\n"
    assert gf("start", "sched-report", "--id", "held", "--data", '{"wait": true}')[0] == 0
    assert gf("worker", "--until-idle", "--retain", "7d")[0] == 0
    assert gf("list")[1].count("\n") == 3  # nothing ended 7 days ago: all kept
    code, _, err = gf("worker", "--until-idle", "--retain", "0s")
    assert code == 0, err
    listed = gf("list")[1]
    assert "held" in listed and "done-" not in listed  # the ended ones went, not the waiting
    assert "--retain DURATION" in gf("worker", "--help")[1]


@pytest.mark.parametrize("args", [["purge", "--older-than", "1e20d"],
                                  ["schedule", "add", "x", "sched-report", "--every", "1e20d"],
                                  ["schedule", "add", "x", "sched-report", "--every", "1d",
                                   "--jitter", "1e20d"],
                                  ["worker", "--retain", "1e20d"]])
def test_a_duration_past_a_hundred_years_is_a_one_line_error(gf, args):
    code, out, err = gf(*args)  # (was an OverflowError's traceback)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "a duration of at most 100 years (36525d), not 1e20d" in err


def test_schedule_update_takes_what_add_takes(gf):
    """`schedule update` changes the queue, priority and factory as `Schedules.update`
    does (it refused them as unrecognized arguments); a queue nobody defined is
    refused in one line, the schedule as it was."""
    from genflow.engine import Engine
    from genflow.queues import Queue
    from genflow.stores import SQLiteStore

    with SQLiteStore("s.db") as store:
        Engine(store).queues.define(Queue("reports", concurrency=1))
    assert gf("schedule", "add", "nightly", "sched-report", "--cron", "0 2 * * *")[0] == 0
    code, _, err = gf("schedule", "update", "nightly", "--queue", "reports", "--priority", "2",
                      "--factory", "sched-day")
    assert code == 0, err
    with SQLiteStore("s.db") as store:
        schedule = Engine(store).schedules.get("nightly").schedule
    assert (schedule.queue, schedule.priority, schedule.factory) == ("reports", 2, "sched-day")
    code, out, err = gf("schedule", "update", "nightly", "--queue", "nope")
    assert (code, out) == (2, "") and "no queue 'nope'" in err and err.count("\n") == 1
    with SQLiteStore("s.db") as store:
        assert Engine(store).schedules.get("nightly").schedule == schedule
