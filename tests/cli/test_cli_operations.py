"""Operating in-flight instances from the command line: check, move, history."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli import APP, GENFLOW, Cli

V2 = APP.with_name("cli_app_v2.py")


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    assert GENFLOW.exists(), f"the console script {GENFLOW} is missing: pip install -e ."
    return Cli(tmp_path)


def test_deploy_check_move_and_history(cli: Cli) -> None:
    cli("start", "cli-order", "--id", "o1")
    cli("send", "o1", "checkout")  # o1 waits at "confirmed?"
    cli("start", "cli-order", "--id", "o2")  # o2 waits at "cart?"

    assert cli("check").stdout.startswith("ok: the installed code can move on all 2 ")

    done = cli("--app", str(V2), "check", app=False, ok=False)
    assert done.returncode == 1
    assert done.stderr.strip() == ("genflow: error: the deploy check failed: 1 statement(s) "
                                   "would strand in-flight instances")
    assert "1 of 2 in-flight instance(s) would break" in done.stdout
    assert "workflow 'cli-order', statement 'confirmed?': 1 instance(s) (o1)" in done.stdout
    assert "fix: keep the old name in the code until this check is clean" in done.stdout
    # the advice is true: under the new code the instance cannot be moved or sent to
    for args in (["move", "o1", "cart?"], ["send", "o1", "confirm"]):
        line = cli.fails("--app", str(V2), *args, app=False)
        assert "saved statement 'confirmed?' is not in the replayed definition" in line

    line = cli.fails("move", "o1", "nowhere")
    assert "has no statement 'nowhere'" in line
    line = cli.fails("move", "o1", "shopping")
    assert "'shopping' is a For" in line
    moved = cli("move", "o1", "cart?").stdout
    assert moved.startswith("moved thread '_main_' of o1 to 'cart?': o1 waiting for add, checkout")

    assert cli("--app", str(V2), "check", app=False).stdout.startswith("ok: ")
    history = cli("history", "o1", app=False).stdout.splitlines()
    assert len(history) == 1 and " move " in history[0]
    assert '"from": "confirmed?"' in history[0] and '"to": "cart?"' in history[0]


def test_history_with_the_journal_on(cli: Cli) -> None:
    journaled = Cli(cli.cwd, env={"GENFLOW_JOURNAL": "1"})
    journaled("start", "cli-order", "--id", "j1")
    journaled("send", "j1", "add", "--payload", '{"name": "tea"}')
    lines = journaled("history", "j1").stdout.splitlines()
    kinds = [line.split()[3] for line in lines]
    assert kinds[0] == "start" and kinds.count("event") == 1 and "after_resume" in kinds
    assert '"payload": {"name": "tea"}' in next(line for line in lines if " event " in line)
    cli("start", "cli-order", "--id", "quiet")  # the journal is off by default
    assert "no journal entries" in cli("history", "quiet").stdout


def test_history_of_an_unknown_instance(cli: Cli) -> None:
    # no store yet: a read-only command creates none (exit 2, a usage mistake)
    assert "no such file" in cli.fails("history", "nope", app=False, code=2)
    assert not (cli.cwd / "genflow.db").exists()
    cli.engine().store.close()
    assert "no instance 'nope'" in cli.fails("history", "nope", app=False)
