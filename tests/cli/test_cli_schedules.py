"""`genflow schedule ...` and `genflow purge` on an SQLite store, in this process."""

from __future__ import annotations

from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "support" / "sched_app.py"


@pytest.fixture
def gf(genflow_in):
    return genflow_in(APP)


def test_add_list_show_pause_resume_trigger_delete(gf):
    code, out, err = gf("schedule", "add", "nightly", "sched-report", "--cron", "0 2 * * *",
                        "--tz", "Europe/Paris", "--data", '{"count": 3}', "--jitter", "5m",
                        "--catchup", "all", "--window", "1d", "--overlap", "cancel")
    assert code == 0, err
    assert out.startswith("nightly\tsched-report\tcron '0 2 * * *' (Europe/Paris)\tnext ")
    code, out, _ = gf("schedule", "list")
    assert code == 0 and out.count("\n") == 1 and out.startswith("nightly\t")
    code, out, _ = gf("schedule", "show", "nightly", "--next", "3")
    lines = out.splitlines()
    assert lines[0] == "schedule nightly: starts workflow 'sched-report' cron '0 2 * * *' " \
                       "(Europe/Paris)"
    assert lines[1] == "  catch-up: all within 1 day, 0:00:00; overlap: cancel; jitter up to " \
                       "0:05:00"
    assert lines[3] == "  next fire times:" and len(lines[4:7]) == 3
    assert all(":" in line and "UTC (in " in line for line in lines[4:7])
    assert lines[7] == '  data: {"day": "", "count": 3, "wait": false}'
    assert gf("schedule", "pause", "nightly")[1].endswith("\tpaused\n")
    assert "paused: no tick fires" in gf("schedule", "show", "nightly")[1]
    assert "\tnext " in gf("schedule", "resume", "nightly")[1]
    code, out, _ = gf("schedule", "trigger", "nightly")
    assert code == 0 and out.startswith("started nightly@")
    instance = out.split()[1]
    code, out, _ = gf("list")
    assert out.startswith(instance)
    assert gf("schedule", "delete", "nightly")[1].startswith("deleted schedule nightly")
    assert gf("schedule", "list")[2] == "no schedules\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--cron", "0 25 * * *"], "bad cron expression '0 25 * * *'"),
    (["--cron", "0 2 * * *", "--tz", "Europe/Pariss"], "unknown time zone 'Europe/Pariss'"),
    (["--every", "60", "--data", '{"count": "x"}'], "the data does not fit workflow"),
    (["--every", "60", "--factory", "nope"], "no factory 'nope' is registered"),
    (["--every", "60", "--queue", "nope"], "no queue 'nope'"),
    (["--every", "60", "--jitter", "soon"], "not a duration: 'soon'"),
])
def test_bad_schedules_are_one_line_errors(gf, args, message):
    code, out, err = gf("schedule", "add", "bad", "sched-report", *args)
    assert code == 2 and out == "" and err.count("\n") == 1, (code, out, err)
    assert err.startswith("genflow: error: ") and message in err, err
    listed = gf("schedule", "list")[2]  # nothing written (argparse refuses before a store opens)
    assert listed == "no schedules\n" or "no such file" in listed


def test_unknown_workflow_and_schedule(gf):
    assert "no workflow is registered as 'nope'" in gf("schedule", "add", "x", "nope",
                                                       "--every", "60")[2]
    assert "no schedule 'x'" in gf("schedule", "show", "x")[2]


def test_purge_dry_run_and_statuses(gf):
    for n in range(3):
        assert gf("start", "sched-job", "--id", f"j{n}")[0] == 0
    assert gf("start", "sched-job", "--id", "held", "--data", '{"hold": true}')[0] == 0
    code, out, _ = gf("purge", "--older-than", "0s", "--dry-run")
    assert out == ("would delete 3 instance(s) (finished, cancelled, failed) last changed over "
                   "0:00:00 ago (dry run: nothing deleted)\n")
    assert gf("purge", "--older-than", "0", "--status", "cancelled")[1].startswith(
        "deleted 0 instance(s) (cancelled)")
    assert gf("purge", "--older-than", "7d")[1].startswith("deleted 0 instance(s)")
    assert gf("purge", "--older-than", "0s")[1].startswith("deleted 3 instance(s)")
    assert gf("list")[1].startswith("held\t")
    code, _, err = gf("purge", "--older-than=-1d")
    assert code == 2 and "a duration of 0 or more" in err


def test_purge_of_a_workflow_neither_installed_nor_stored_says_so(gf):
    """As `start` refuses a name nobody registered (exit status 2), `purge --workflow`
    refuses a name that is neither installed nor any stored instance's (a typo:
    silently deleting nothing would hide it); a workflow no longer installed is
    purged by the name its instances have."""
    import sqlite3

    for n in range(2):
        assert gf("start", "sched-job", "--id", f"j{n}")[0] == 0
    code, out, err = gf("purge", "--older-than", "0s", "--workflow", "sched-jobb")
    assert (code, out) == (2, "")
    assert err.startswith("genflow: error: no workflow 'sched-jobb' is installed (did you "
                          "mean 'sched-job'? installed: ")  # (what this process imported)
    assert err.endswith("), and the store holds no instance of it: nothing deleted\n")
    assert gf("purge", "--older-than", "0s", "--workflow", "nope", "--dry-run")[0] == 2
    assert [line.split("\t")[0] for line in gf("list")[1].splitlines()] == ["j0", "j1"]
    with sqlite3.connect("s.db") as db:  # j1's workflow, since retired: no code installs it
        db.execute("UPDATE instances SET workflow = 'retired' WHERE id = 'j1'")
    code, out, err = gf("purge", "--older-than", "0s", "--workflow", "retired")
    assert (code, err) == (0, "") and out.startswith("deleted 1 instance(s)"), (out, err)
    assert gf("purge", "--older-than", "0s", "--workflow", "sched-report")[0] == 0  # (none)
    assert [line.split("\t")[0] for line in gf("list")[1].splitlines()] == ["j0"]


def test_start_on_a_queue_and_show_the_place(gf):
    from genflow.engine import Engine
    from genflow.queues import Queue
    from genflow.stores import SQLiteStore

    with SQLiteStore("s.db") as store:
        Engine(store).queues.define(Queue("q", concurrency=1))
    assert gf("start", "sched-job", "--id", "a", "--queue", "q")[0] == 0
    assert gf("start", "sched-job", "--id", "b", "--queue", "q", "--priority", "3")[0] == 0
    code, out, _ = gf("show", "b")
    assert code == 0 and "waits in queue 'q' for admission: position 2, priority 3" in out
    assert gf("worker", "--until-idle")[0] == 0
    assert "admitted by queue 'q'" in gf("show", "b")[1]
    assert "no queue 'nope'" in gf("start", "sched-job", "--queue", "nope")[2]


def test_list_marks_and_filters_schedules_and_queues(gf):
    from genflow.engine import Engine
    from genflow.queues import Queue
    from genflow.stores import SQLiteStore

    with SQLiteStore("s.db") as store:
        Engine(store).queues.define(Queue("q", concurrency=1))
    assert gf("schedule", "add", "nightly", "sched-report", "--cron", "0 2 * * *")[0] == 0
    assert gf("schedule", "add", "night", "sched-report", "--cron", "0 3 * * *")[0] == 0
    started = gf("schedule", "trigger", "nightly")[1].split()[1]
    other = gf("schedule", "trigger", "night")[1].split()[1]
    for name in ("a", "b", "c"):
        assert gf("start", "sched-job", "--id", name, "--queue", "q", "--data",
                  '{"hold": true}', "--priority", "1" if name == "c" else "0")[0] == 0
    # an id shaped like a schedule's, of no schedule: not marked
    assert gf("start", "sched-report", "--id", "ghost@2030-01-01T00:00:00Z", "--no-run")[0] == 0
    lines = {line.split("\t")[0]: line.split("\t")[3] for line in gf("list")[1].splitlines()}
    assert lines[started].startswith("started by schedule nightly; wakes ")
    assert lines[other].startswith("started by schedule night; wakes ")
    assert lines["a"] == "waits in queue 'q' for admission: position 1"
    assert lines["c"] == "waits in queue 'q' for admission: position 3, priority 1"
    assert "schedule" not in lines["ghost@2030-01-01T00:00:00Z"]

    def ids(*args: str) -> list[str]:
        code, out, err = gf("list", *args)
        assert code == 0, err
        return [line.split("\t")[0] for line in out.splitlines()]

    assert ids("--schedule", "nightly") == [started]  # not night@..., a prefix of nightly
    assert ids("--schedule", "night") == [other]
    assert ids("--schedule", "nope") == []
    assert ids("--queue", "q") == ["a", "b", "c"]  # admission order: priority, then arrival
    assert ids("--queue", "q", "--limit", "2") == ["a", "b"]
    assert gf("worker", "--until-idle")[0] == 0
    # `a` admitted (running: it holds its slot, waiting for `done`), b and c still wait
    assert ids("--queue", "q") == ["a", "b", "c"]
    assert ids("--queue", "q", "--status", "waiting") == ["a"]
    lines = {line.split("\t")[0]: line for line in gf("list")[1].splitlines()}
    assert "queue" not in lines["a"] and "position 1" in lines["b"]
    assert gf("send", "a", "done")[0] == 0
    assert gf("worker", "--until-idle")[0] == 0  # a ended: b admitted, a leaves the queue
    assert ids("--queue", "q") == ["b", "c"]
    code, _, err = gf("list", "--queue", "nope")
    assert code == 2 and "no queue 'nope'" in err


def test_update_changes_what_is_given_and_keeps_the_rest(gf):
    assert gf("schedule", "add", "nightly", "sched-report", "--cron", "0 2 * * *",
              "--data", '{"count": 3}')[0] == 0
    code, out, err = gf("schedule", "update", "nightly", "--every", "15m", "--overlap", "allow",
                        "--data", '{"count": 4}', "--paused")
    assert code == 0, err
    assert out == "nightly\tsched-report\tevery 0:15:00\tpaused\n"
    lines = gf("schedule", "show", "nightly")[1].splitlines()
    assert lines[0].endswith("every 0:15:00 (PAUSED)") and "overlap: allow" in lines[1]
    assert '"count": 4' in lines[-1]
    assert "\tnext " in gf("schedule", "update", "nightly", "--no-paused")[1]
    code, _, err = gf("schedule", "update", "nightly", "--cron", "0 25 * * *")
    assert code == 2 and "bad cron expression '0 25 * * *'" in err
    assert "every 0:15:00" in gf("schedule", "show", "nightly")[1]  # unchanged


def test_a_deadline_for_each_run_is_added_shown_and_updated(gf):
    assert gf("schedule", "add", "nightly", "sched-report", "--every", "1h", "--deadline",
              "30m")[0] == 0
    assert "; each run's deadline 0:30:00 after its start" in gf("schedule", "show",
                                                                 "nightly")[1]
    assert gf("schedule", "update", "nightly", "--deadline", "2h")[0] == 0
    assert "each run's deadline 2:00:00" in gf("schedule", "show", "nightly")[1]
    code, _, err = gf("schedule", "update", "nightly", "--deadline", "0")
    assert code == 2 and "--deadline: an interval above 0, not 0" in err, err
    assert "each run's deadline 2:00:00" in gf("schedule", "show", "nightly")[1]
    code, out, _ = gf("schedule", "trigger", "nightly")
    assert code == 0
    code, out, err = gf("show", out.split()[1])
    assert code == 0 and "deadline" in out, (out, err)


@pytest.mark.parametrize("command", [["schedule", "add", "p", "sched-report", "--every", "60"],
                                     ["start", "sched-job", "--id", "j"]])
def test_a_priority_without_a_queue_is_refused(gf, command):
    code, out, err = gf(*command, "--priority", "2")
    assert code == 2 and out == ""
    assert err == ("genflow: error: --priority 2 orders a queue's admission: give the queue "
                   "too (--queue NAME), or no --priority\n")
    assert gf("schedule", "list")[2] == "no schedules\n" and gf("list")[2] == "no instances\n"
    assert gf(*command, "--priority", "0")[0] == 0  # (the default: no order to give)
