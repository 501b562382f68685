"""The `genflow` command, through the real console script installed next to Python.

Every command runs in its own process on one SQLite file, so each test also
shows that instances survive a restart. Workflows come from `tests/support/cli_app.py`
(via `--app`). The long tail of user mistakes runs `genflow.cli.main` in this
process (same code, no process start-up), the main ones the real command.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cli_app
import pytest

from genflow import WaitEventStatus, WorkflowStatus
from genflow.cli import main
from genflow.engine import Engine
from genflow.stores import SQLiteStore

GENFLOW = Path(sys.executable).parent / "genflow"
APP = Path(__file__).resolve().parents[1] / "support" / "cli_app.py"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENFLOW_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Cli:
    """Runs `genflow --app tests/support/cli_app.py ...` in a directory (so on its genflow.db)."""

    def __init__(self, cwd: Path, env: dict[str, str] | None = None):
        self.cwd = cwd
        self.env = env or {}  # GENFLOW_* settings for every command

    def __call__(self, *args: str, app: bool = True, ok: bool = True,
                 stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        command = [str(GENFLOW), *(["--app", str(APP)] if app else []), *args]
        done = subprocess.run(command, cwd=self.cwd, env={**_env(), **self.env}, input=stdin,
                              capture_output=True, text=True, timeout=60, check=False)
        assert "Traceback" not in done.stderr, done.stderr
        if ok:
            assert done.returncode == 0, f"{args}: {done.stderr}"
        return done

    def fails(self, *args: str, app: bool = True, code: int = 2) -> str:
        """The command fails with `code` (2: a mistake; 1: a finding, as `check` makes) and
        one `genflow: error:` line; returns it."""
        done = self(*args, app=app, ok=False)
        assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("genflow: error: "), done.stderr
        return lines[0]

    def engine(self) -> Engine:
        return Engine(SQLiteStore(self.cwd / "genflow.db"))


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    assert GENFLOW.exists(), f"the console script {GENFLOW} is missing: pip install -e ."
    return Cli(tmp_path)


# -- end to end, one process per command ------------------------------------------------------


def test_order_across_processes(cli: Cli) -> None:
    out = cli("start", "cli-order", "--id", "o1", "--data", '{"customer": "ann"}').stdout
    assert out == "o1 waiting for add, checkout\n"
    cli("start", "cli-order", "--id", "o2")
    # --store and --app are accepted after the command too
    out = cli("send", "o1", "add", "--payload", '{"name": "funghi", "qty": 2}',
              "--store", "sqlite:///genflow.db", "--app", str(APP), app=False).stdout
    assert out == "o1 waiting for add, checkout\n1\n"  # the handler's reply, as JSON
    assert cli("send", "o1", "checkout").stdout == "o1 waiting for confirm, too slow\n"

    shown = cli("show", "o1").stdout
    assert "instance o1 of workflow 'cli-order': waiting" in shown
    assert "main thread: waiting at 'confirmed?' since " in shown
    assert "event 'confirm': listening" in shown
    assert re.search(r"timer 'too slow': listening, fires \S+ \S+ UTC \(in (59\.\d|60\.0)m\)",
                     shown), shown
    assert 'items = [{"name": "funghi", "qty": 2}]' in shown
    assert 'stage = "checked out"' in shown

    listed = cli("list", "--waiting", "confirm", app=False).stdout.splitlines()
    assert [line.split("\t")[:3] for line in listed] == [["o1", "cli-order", "waiting"]]
    assert "waits for confirm, too slow" in listed[0]
    out = cli("list", "--workflow", "cli-order", "--status", "waiting", app=False).stdout
    assert [line.split("\t")[0] for line in out.splitlines()] == ["o1", "o2"]

    assert cli("send", "o1", "confirm").stdout == "o1 finished\n"
    assert cli("cancel", "o2").stdout == "o2 cancelled\n"

    engine = cli.engine()  # a third process's view: the file holds everything
    o1 = engine.get("o1")
    assert o1.status is WorkflowStatus.FINISHED
    assert o1.data == cli_app.Order(customer="ann", items=[cli_app.Item("funghi", 2)],
                                    stage="baked")
    assert engine.get("o2").status is WorkflowStatus.CANCELLED


def test_early_events_signal_with_start_and_starting_once(cli: Cli) -> None:
    assert cli("start", "cli-order", "--id", "m1").stdout == "m1 waiting for add, checkout\n"
    out = cli("send", "m1", "confirm").stdout  # not awaited yet: kept
    assert out == ("m1 waiting for add, checkout\n"
                   "kept as message 0 (1 kept): delivered when a thread waits for 'confirm'\n")
    shown = cli("show", "m1").stdout
    assert "mailbox: 1 message kept until a thread waits for its event (oldest first):" in shown
    assert "#0 'confirm', sent" in shown
    assert cli("send", "m1", "checkout").stdout == "m1 finished\n"  # the kept one was taken
    # starting once: the second start shows the instance as it is
    assert cli("start", "cli-order", "--id", "m1", "--if-exists", "return").stdout == \
        "m1 finished\n"
    assert "already exists" in cli.fails("start", "cli-order", "--id", "m1")
    # signal-with-start: m2 does not exist, so it starts from --data with the event in
    out = cli("send", "m2", "add", "--payload", '{"name": "tea"}', "--start", "cli-order",
              "--data", '{"customer": "bo"}').stdout
    assert out == "m2 waiting for add, checkout\n1\n"
    assert cli.engine().get("m2").data.customer == "bo"
    assert "--data is the data of --start WORKFLOW" in cli.fails("send", "m2", "add",
                                                                 "--data", "{}")


def test_worker_async_runs_async_steps(cli: Cli) -> None:
    cli("start", "cli-async", "--id", "a1", "--no-run")
    cli("start", "cli-async", "--id", "a2", "--no-run")
    worked = cli("worker", "--until-idle", "--async", "--batch", "1")
    assert worked.stdout == "worker processed 2 due instance(s)\n"
    assert cli.engine().get("a1").data.done and cli.engine().get("a2").data.done


def test_timer_fires_in_worker_until_idle(cli: Cli) -> None:
    script = "\n".join(json.dumps(action) for action in [
        {"start": "cli-order", "id": "quick", "data": {"patience": 0}},
        {"send": "quick", "event": "checkout"},
        {"start": "cli-order", "id": "slow"},
        {"send": "slow", "event": "checkout"},
    ])
    cli("run", "-", stdin=script)
    assert "wakes " in cli("list", "--waiting", "too slow", app=False).stdout
    shown = cli("show", "quick").stdout
    assert "timer 'too slow': listening, due " in shown

    worked = cli("worker", "--until-idle")
    assert worked.stdout == "worker processed 1 due instance(s)\n"
    assert "running due work until nothing is due" in worked.stderr

    engine = cli.engine()
    assert engine.get("quick").status is WorkflowStatus.FINISHED
    assert engine.get("quick").data.stage == "expired"  # the timer's body ran
    assert engine.get("slow").status is WorkflowStatus.WAITING  # its timer is not due


def test_run_a_file_of_actions(cli: Cli) -> None:
    lines = [
        "# an order whose shop never answers, and one that is confirmed",
        # patience beyond the worker's idle_sleep (1 s): `work` leaves the timer
        json.dumps({"start": "cli-order", "id": "r1", "data": {"patience": 1.2}}),
        json.dumps({"send": "r1", "event": "add", "payload": {"name": "diavola"}}),
        json.dumps({"send": "r1", "event": "checkout"}),
        "",
        json.dumps({"start": "cli-order", "id": "r2", "run": False}),
        json.dumps({"work": True}),
        json.dumps({"sleep": 1.3}),
        json.dumps({"work": True}),
        json.dumps({"send": "r2", "event": "checkout"}),
        json.dumps({"send": "r2", "event": "confirm"}),
        json.dumps({"start": "cli-order", "id": "r3"}),
        json.dumps({"cancel": "r3"}),
        json.dumps({"show": "r1"}),
    ]
    (cli.cwd / "actions.jsonl").write_text("\n".join(lines) + "\n")
    out = cli("run", "actions.jsonl").stdout.splitlines()
    assert out[:10] == [
        "start cli-order: r1 waiting for add, checkout",
        "send add: r1 waiting for add, checkout -> 1",
        "send checkout: r1 waiting for confirm, too slow",
        "start cli-order: r2 resuming (a worker will move it on)",
        "work: processed 1 due instance(s)",  # r2 started; r1's timer is not due yet
        "sleep: 1.3s",
        "work: processed 1 due instance(s)",  # r1's timer fired
        "send checkout: r2 waiting for confirm, too slow",
        "send confirm: r2 finished",
        "start cli-order: r3 waiting for add, checkout",
    ]
    assert out[10:12] == ["cancel: r3 cancelled",
                          "instance r1 of workflow 'cli-order': finished"]
    engine = cli.engine()
    assert [engine.get(i).data.stage for i in ("r1", "r2", "r3")] == ["expired", "baked", "cart"]


def test_failed_step_shown_then_retried(cli: Cli) -> None:
    blocker = cli.cwd / "processor-down"
    blocker.touch()
    data = json.dumps({"blocker": str(blocker)})
    out = cli("start", "cli-charge", "--id", "c1", "--data", data).stdout
    assert out.startswith("c1 failed: StepError: step 'charge'")

    shown = cli("show", "c1").stdout.splitlines()
    assert shown[0] == "instance c1 of workflow 'cli-charge': FAILED after 1 attempt"
    assert "ConnectionError: card processor is down" in shown[2]
    assert "  to go on: fix the cause, then `genflow retry c1`" in shown
    assert "  main thread: about to run step 'charge'" in shown

    line = cli.fails("result", "c1", code=1)  # a finding: it failed, so it has no result yet
    assert "c1" in line and "ConnectionError: card processor is down" in line, line

    blocker.unlink()  # the operator fixes the cause
    assert cli("retry", "c1").stdout.startswith("c1 is due again")
    cli("worker", "--until-idle")
    instance = cli.engine().get("c1")
    assert instance.status is WorkflowStatus.FINISHED and instance.data.charged
    assert json.loads(cli("result", "c1").stdout) == {"blocker": str(blocker), "charged": True}


def test_result_waits_while_a_worker_moves_the_instance(cli: Cli) -> None:
    """`genflow result` waits for workers of other processes; it only reads, so a
    timeout or a cancelled instance leaves the row as it was (exit status 1)."""
    cli("start", "cli-charge", "--id", "c2", "--no-run")
    before = cli.engine().store.get("c2")
    line = cli.fails("result", "c2", "--timeout", "0.2s", code=1)
    assert "c2" in line and "0.2" in line, line
    assert cli.engine().store.get("c2") == before  # nothing written
    waiting = subprocess.Popen([str(GENFLOW), "--app", str(APP), "result", "c2", "--timeout",
                                "60s"], cwd=cli.cwd, env=_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        cli("worker", "--until-idle")
        out, err = waiting.communicate(timeout=60)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    assert json.loads(out) == {"blocker": "", "charged": True}
    cli("start", "cli-order", "--id", "o9")
    cli("cancel", "o9")
    assert "cancelled" in cli.fails("result", "o9", code=1)
    assert "--timeout: not a duration: 'soon'" in cli.fails("result", "o9", "--timeout", "soon")


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_setup_error_shown_then_a_worker_retries_it_until_sigterm(cli: Cli) -> None:
    blocker = cli.cwd / "hooks-down"
    blocker.touch()
    cli("start", "cli-webhook", "--id", "w1", "--data", json.dumps({"blocker": str(blocker)}))
    shown = cli("show", "w1").stdout
    assert "'cli-webhook': retrying (the last try failed)" in shown
    assert ("event 'hook': handler SETUP FAILED (retried by a worker): "
            "ConnectionError: cannot register the webhook") in shown
    assert "next try " in shown

    blocker.unlink()
    worker = subprocess.Popen([str(GENFLOW), "--app", str(APP), "worker", "--idle-sleep", "0.2"],
                              cwd=cli.cwd, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        engine = cli.engine()
        # backoff: 1 s; the setup waiting for its retry counts as waiting too, so
        # wait for the set-up event itself
        _wait_for(lambda: engine.get("w1").state.threads[0].events[0].status
                  is WaitEventStatus.SETUP)
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=10)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    assert "SIGTERM: stopping after the current move" in err and "Traceback" not in err
    assert out == "worker processed 1 due instance(s)\n"
    assert "event 'hook': listening" in cli("show", "w1").stdout


def test_sigint_stops_an_idle_worker_at_once(cli: Cli) -> None:
    worker = subprocess.Popen([str(GENFLOW), "--app", str(APP), "worker", "--idle-sleep", "60"],
                              cwd=cli.cwd, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert worker.stderr is not None
        assert "running due work until stopped" in worker.stderr.readline()
        started = time.monotonic()
        worker.send_signal(signal.SIGINT)
        out, err = worker.communicate(timeout=10)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    assert time.monotonic() - started < 5  # not after the 60 s idle sleep
    assert "SIGINT: stopping" in err and "Traceback" not in err
    assert out == "worker processed 0 due instance(s)\n"


# -- user mistakes: one line, non-zero exit, no traceback ----------------------------------


@pytest.fixture
def shop(cli: Cli) -> Cli:
    """o1 waits in its cart, done has finished (prepared in this process)."""
    engine = cli.engine()
    engine.start(cli_app.Order(), id="o1")
    engine.start(cli_app.Order(), id="done")
    engine.send("done", "checkout")
    engine.send("done", "confirm")
    engine.store.close()
    return cli


@pytest.mark.parametrize(("args", "message", "code"), [
    (["start", "pizza"],
     "no workflow is registered as 'pizza' (registered: cli-async, cli-charge, ", 2),
    (["show", "nobody"], "no instance 'nobody'", 2),
    (["send", "o1", "add", "--payload", "{'name': 'x'}"], "--payload is not valid JSON", 2),
    (["send", "o1", "add", "--payload", "tea"], "--payload is not valid JSON: Expecting value: "
     "line 1 column 1 (char 0) (a string is quoted in JSON: --payload '\"tea\"')", 2),
    (["send", "o1", "add", "--payload", '{"qty": 2}'],
     "payload for event 'add' does not fit Item: name: required field missing", 2),
    (["send", "o1", "confirm", "--no-keep"], "instance 'o1' does not wait for 'confirm'", 2),
    (["send", "o1", "refund"], "workflow 'cli-order' has no event 'refund' at all", 2),
    (["send", "done", "add"], "instance 'done' is finished", 2),
    (["--store", "mysql://db", "list"], "unknown store URL 'mysql://db'", 2),
    (["--store", "sqlite:///no/such/dir/x.db", "list"], "no such file", 2),
    (["--store", "sqlite:///no/such/dir/x.db", "start", "cli-order"],
     "the directory", 2),
    (["--app", "no_such_module", "list"], "--app no_such_module: no such module", 2),
])
def test_mistakes_through_the_console_script(shop: Cli, args: list[str], message: str,
                                             code: int) -> None:
    line = shop.fails(*args, app="--app" not in args, code=code)
    assert message in line, line


def test_a_malformed_command_line_is_one_line_too(cli: Cli) -> None:
    line = cli.fails("list", "--status", "stuck", code=2)
    assert "invalid choice: 'stuck'" in line and "genflow list --help" in line


@pytest.fixture
def inproc(shop: Cli, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """`genflow.cli.main` in this process, in the shop's directory: (code, out, err)."""
    monkeypatch.chdir(shop.cwd)
    for name in ("GENFLOW_APP", "GENFLOW_STORE"):
        monkeypatch.delenv(name, raising=False)

    def run(*args: str, app: bool = True) -> tuple[int, str, str]:
        try:
            code = main([*(["--app", str(APP)] if app else []), *args])
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.mark.parametrize(("args", "message"), [
    (["start", "cli-order", "--data", '{"custmer": "x"}'],
     "workflow 'cli-order' has no field(s) ['custmer']; its fields are ['customer', "),
    (["start", "cli-order", "--data", '{"items": [{"qty": "many"}]}'],
     "the data does not fit workflow 'cli-order': items[0].name: required field missing"),
    (["start", "cli-order", "--data", "[1]"], "must be a JSON object of its fields"),
    (["start", "cli-order", "--id", "o1"], "instance 'o1' already exists"),
    (["send", "o1", "checkout", "--payload", '"now"'], "event 'checkout' takes no payload"),
    (["send", "o1", "add", "--thread", "t9"], "has no live thread 't9'"),
    (["cancel", "done"], "instance 'done' has finished"),
    (["retry", "o1"], "instance 'o1' has not failed"),
    (["run", "missing.jsonl"], "no such file: missing.jsonl"),
    (["--app", "missing_app.py", "list"], "--app missing_app.py: no such file"),
])
def test_more_mistakes(inproc, args: list[str], message: str) -> None:
    code, out, err = inproc(*args, app="--app" not in args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("genflow: error: ") and message in err, err


#: every command, with what it needs besides the store (ids of the `shop` fixture)
EVERY_COMMAND: dict[str, list[str]] = {
    "start": ["start", "cli-order"], "send": ["send", "o1", "checkout"],
    "show": ["show", "o1"], "result": ["result", "o1", "--timeout", "0"], "list": ["list"],
    "worker": ["worker", "--until-idle"],
    "run": ["run", "-"], "cancel": ["cancel", "o1"], "retry": ["retry", "o1"],
    "move": ["move", "o1", "cart?"], "check": ["check"], "history": ["history", "o1"],
    "graph": ["graph", "cli-order"], "report": ["report", "-o", "out"],
    "serve": ["serve", "--insecure-local", "--port", "0"],
    "schedule": ["schedule", "list"], "purge": ["purge", "--older-than", "7d"],
    "lint": ["lint", "app.py"],
}


def test_every_command_is_covered() -> None:
    from genflow.cli import COMMANDS

    assert set(EVERY_COMMAND) == set(COMMANDS)


def _one_line(code: int, out: str, err: str, expected_code: int = 2) -> str:
    assert code == expected_code and out == "", (code, out, err)
    assert err.count("\n") == 1 and err.startswith("genflow: error: "), err
    return err


@pytest.mark.parametrize("command", sorted(EVERY_COMMAND))
def test_every_command_with_an_unknown_option(inproc, command: str) -> None:
    err = _one_line(*inproc(*EVERY_COMMAND[command], "--bogus"))
    assert f"unrecognized arguments: --bogus (see `genflow {command} --help`)" in err


@pytest.mark.parametrize("command", sorted(set(EVERY_COMMAND) - {"graph", "lint"}))
def test_every_command_on_a_store_that_cannot_be_opened(inproc, command: str) -> None:
    err = _one_line(*inproc("--store", "sqlite:///no/such/dir/x.db", *EVERY_COMMAND[command]))
    assert "no/such/dir" in err  # the path the user got wrong


@pytest.mark.parametrize("command", ["send", "show", "result", "cancel", "retry", "move",
                                     "history"])
def test_every_command_on_an_instance_that_does_not_exist(inproc, command: str) -> None:
    args = ["nope" if arg == "o1" else arg for arg in EVERY_COMMAND[command]]
    assert "no instance 'nope'" in _one_line(*inproc(*args))


@pytest.mark.parametrize("command", ["start", "graph"])
def test_every_command_on_a_workflow_that_is_not_registered(inproc, command: str) -> None:
    err = _one_line(*inproc(command, "cli-ordr"))
    # (this process has registered the suite's other workflows too)
    assert re.search(r"no workflow is registered as 'cli-ordr' \(registered: [^)]*\): this "
                     "process must import the module that defines it", err), err
    assert "--app MODULE" in err


@pytest.mark.parametrize(("args", "message"), [
    (["send", "o1", "chekout"], "instance 'o1' does not wait for 'chekout'"),
    (["list", "--limit", "-1"], "argument --limit: must be at least 0, not -1"),
    (["report", "-o", "out", "--limit", "x"], "argument --limit: not a whole number: 'x'"),
    (["worker", "--batch", "0"], "argument --batch: must be at least 1, not 0"),
    (["worker", "--idle-sleep", "0"], "argument --idle-sleep: must be a number of seconds above"),
    (["worker", "--idle-sleep", "nan"], "argument --idle-sleep: must be a number of seconds"),
    (["check", "--processes", "-1"], "argument --processes: must be at least 0, not -1"),
    (["check", "--examples", "-1"], "argument --examples: must be at least 0, not -1"),
    (["--store", "", "list"], "--store is empty (an unset shell variable?)"),
    (["show", "o\udcff"], "argument 'o\\udcff' is not UTF-8 text"),
    (["send", "o1", "add", "--payload", '"\udcff"'], "is not UTF-8 text"),
    (["run", "."], "not a file: ."),
])
def test_bad_arguments(inproc, args: list[str], message: str) -> None:
    assert message in _one_line(*inproc(*args))


def test_check_warns_when_the_workflow_named_is_not_installed(inproc) -> None:
    code, out, err = inproc("check", "--workflow", "cli-ordr", "--processes", "1")
    assert code == 0 and out.startswith("ok: the installed code can move on all 0 ")
    assert re.fullmatch(r"genflow: warning: no workflow 'cli-ordr' is installed \(did you mean "
                        r"'cli-order'[^?]*\? installed: [^)]*\): its instances, if any, are "
                        r"reported as not installed\n", err), err
    code, out, err = inproc("check", "--workflow", "cli-order", "--processes", "1")
    assert (code, err) == (0, "") and " all 1 in-flight " in out  # o1; `done` has finished


def test_commands_that_need_workflows_say_so(shop: Cli) -> None:
    line = shop.fails("show", "o1", app=False)
    assert "no workflows are known: name the module that defines them with --app" in line


def test_broken_apps(inproc, tmp_path: Path) -> None:
    (tmp_path / "syntax_app.py").write_text("x = (\n")
    (tmp_path / "raising_app.py").write_text("raise RuntimeError('no config')\n")
    (tmp_path / "dep_app.py").write_text("import no_such_dependency\n")
    for app, message in [("syntax_app.py", "syntax error in "),
                         ("raising_app.py", "importing it raised RuntimeError: no config"),
                         ("dep_app", "cannot import it: No module named 'no_such_dependency'")]:
        code, _, err = inproc("--app", app, "list", app=False)
        assert code == 2 and err.count("\n") == 1 and message in err, err


def test_run_reports_each_bad_line(inproc, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [
        '{"send": "o1", "event": "add", "payload": {"name": "a"}}',
        "{oops",
        "[1, 2]",
        '{"send": "o1", "evnt": "add"}',
        '{"send": "o1"}',
        '{"send": "o1", "cancel": "o1"}',
        '{"fly": "o1"}',
        '{"sleep": -1}',
        '{"start": "cli-order", "data": {"items": 3}}',
        '{"send": "done", "event": "add"}',
        '{"show": "o1"}',
    ]
    (Path.cwd() / "bad.jsonl").write_text("\n".join(lines))
    code, out, err = inproc("run", "bad.jsonl", "--keep-going")
    assert code == 2
    errors = err.splitlines()
    assert [e.split(":")[3] for e in errors[:-1]] == [str(n) for n in range(2, 11)]
    assert "not valid JSON" in errors[0] and "must be a JSON object" in errors[1]
    assert "unknown key(s) ['evnt']" in errors[2] and "needs ['event']" in errors[3]
    assert "exactly one of" in errors[4] and "exactly one of" in errors[5]
    assert "'sleep' takes seconds" in errors[6] and "does not fit workflow" in errors[7]
    assert "is finished" in errors[8]
    assert errors[-1] == "genflow: error: 9 action(s) of bad.jsonl failed"
    assert out.startswith("send add: o1 waiting") and "instance o1 of workflow" in out

    code, _, err = inproc("run", "bad.jsonl")  # without --keep-going: stop at the first
    assert code == 2 and err == "genflow: error: bad.jsonl:2: the line is not valid JSON: " \
        "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)\n"


def test_list_and_show_in_words(inproc) -> None:
    code, out, err = inproc("list", app=False)
    assert code == 0 and err == ""
    assert out.splitlines() == ["done\tcli-order\tfinished",
                                "o1\tcli-order\twaiting\twaits for add, checkout"]
    code, out, err = inproc("list", "--waiting", "nothing", app=False)
    assert (code, out, err) == (0, "", "no instances\n")
    code, out, _ = inproc("list", "--limit", "1", app=False)
    assert code == 0 and out.count("\n") == 1
    code, out, _ = inproc("show", "done")
    assert out.splitlines()[0] == "instance done of workflow 'cli-order': finished"
    assert "thread" not in out and 'stage = "baked"' in out
    code, out, _ = inproc("show", "o1", "--json")
    shown = json.loads(out)
    assert (shown["status"], shown["data"]["stage"]) == ("waiting", "cart")
    assert shown["state"]["threads"][0]["stmt"] == "cart?"
    code, out, _ = inproc("cancel", "o1")
    assert (code, out) == (0, "o1 cancelled\n")
    code, out, _ = inproc("show", "o1")
    assert out.startswith("instance o1 of workflow 'cli-order': cancelled\n")
    code, out, _ = inproc("list", "--status", "cancelled", app=False)
    assert out == "o1\tcli-order\tcancelled\n"


def test_store_from_the_environment(inproc, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENFLOW_STORE", "memory:")
    monkeypatch.setenv("GENFLOW_APP", str(APP))
    code, out, err = inproc("list", app=False)
    assert (code, out, err) == (0, "", "no instances\n")  # not genflow.db
    code, out, _ = inproc("start", "cli-order", "--id", "m1", app=False)
    assert (code, out) == (0, "m1 waiting for add, checkout\n")


def test_a_worker_leaves_alone_workflows_it_does_not_run(inproc) -> None:
    """A worker without a workflow's code neither claims its instances nor spins on
    them; a worker that has the code runs them."""
    engine = Engine(SQLiteStore("genflow.db"), workflows=[cli_app.Order])
    Engine(engine.store).start(cli_app.Charge(), id="c9", run=False)
    assert engine.run_due() == 0
    assert engine.store.next_wake(engine.runs()) is None
    assert engine.work(until_idle=True) == 0
    record = engine.store.get("c9")
    assert (record.status, record.error, record.attempts) == ("resuming", "", 0)
    engine.store.close()
    assert inproc("worker", "--until-idle")[1] == "worker processed 1 due instance(s)\n"
    code, out, _ = inproc("show", "c9")
    assert code == 0 and out.startswith("instance c9 of workflow 'cli-charge': finished\n")
    assert "charged = true" in out


def test_the_one_line_summary_says_until_when_a_condition_waits() -> None:
    """`start`/`send`'s line names each condition a thread waits on, and the
    deadline of a WaitFor that has one (its timer)."""
    import waitfor_app

    from genflow.cli import _summary
    from genflow.clock import FakeClock
    from genflow.stores import MemoryStore

    engine = Engine(MemoryStore(), [waitfor_app.Approval],
                    clock=FakeClock(dt.datetime(2030, 1, 1, 9, 30, tzinfo=dt.UTC)))
    iid = engine.start(waitfor_app.Approval(), id="a1")
    assert dt.timedelta(days=2) == waitfor_app.DEADLINE
    assert _summary(engine.get(iid)) == ("a1 waiting for approve and on condition(s) "
                                         "approved? (until 2030-01-03 09:30:00 UTC)")
    engine.send(iid, "approve", "ada")
    assert _summary(engine.get(iid)) == "a1 finished"


def test_start_with_a_deadline(inproc, shop: Cli) -> None:
    """`genflow start --deadline 2h` (or a time with its zone): kept in the
    instance, said by `show` and its JSON; refused with nothing written when
    it cannot work."""
    code, out, _ = inproc("start", "cli-order", "--id", "d1", "--deadline", "2h")
    assert code == 0 and out == "d1 waiting for add, checkout\n"
    engine = shop.engine()
    got = engine.get("d1")
    assert got.state.deadline is not None and got.wake_at == got.state.deadline
    assert got.updated_at is not None
    assert dt.timedelta(hours=1, minutes=59) < got.state.deadline - got.updated_at \
        <= dt.timedelta(hours=2)
    code, out, _ = inproc("show", "d1")
    assert code == 0 and "  deadline 20" in out and "cancelled then unless it has finished" \
        in out, out
    code, out, _ = inproc("show", "d1", "--json")
    assert json.loads(out)["deadline"] == str(got.state.deadline)
    code, out, _ = inproc("start", "cli-order", "--id", "d2", "--deadline",
                          "2099-01-01T09:00+01:00")
    assert code == 0
    assert engine.get("d2").state.deadline == dt.datetime(2099, 1, 1, 8, tzinfo=dt.UTC)
    code, out, _ = inproc("send", "d3", "add", "--payload", '{"name": "funghi"}', "--start",
                          "cli-order", "--deadline", "30m")
    assert code == 0 and engine.get("d3").state.deadline is not None
    before = [(r.id, r.version) for r in engine.store.list()]
    for args, says in ((["--deadline", "0"], "a deadline above 0"),
                       (["--deadline", "soon"], "not a deadline: 'soon'"),
                       (["--deadline", "2099-01-01T09:00"], "has no time zone"),
                       (["--deadline", "2001-01-01T09:00+00:00"], "is not later than now"),
                       (["--deadline", "99999999d"], "days")):
        code, out, err = inproc("start", "cli-order", "--id", "bad", *args)
        assert code == 2 and says in err, (args, err)
    code, out, err = inproc("send", "o1", "add", "--deadline", "2h")
    assert code == 2 and "--deadline is the deadline of --start" in err
    assert [(r.id, r.version) for r in engine.store.list()] == before
    engine.store.close()


def test_a_start_action_takes_a_deadline(inproc, shop: Cli) -> None:
    (shop.cwd / "actions.jsonl").write_text(
        '{"start": "cli-order", "id": "r1", "deadline": "2h"}\n'
        '{"start": "cli-order", "id": "r2", "deadline": 60}\n', encoding="utf-8")
    code, _, err = inproc("run", "actions.jsonl")
    assert code == 0, err
    engine = shop.engine()
    assert engine.get("r1").state.deadline is not None
    assert engine.get("r2").state.deadline is not None
    (shop.cwd / "bad.jsonl").write_text('{"start": "cli-order", "id": "r3", "deadline": "soon"}\n',
                                        encoding="utf-8")
    code, _, err = inproc("run", "bad.jsonl")
    assert code == 2 and "not a deadline: 'soon'" in err, err
    assert [r.id for r in engine.store.list() if r.id == "r3"] == []
    engine.store.close()
