"""The pytest plugin, the deploy check of a real store, and genflow.testing without hypothesis."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import pytest

import genflow
from genflow import Engine, On, Step, Wait
from genflow.testing.suite import assert_store_replays, check_workflow, replay_store, workflows_of

FLOWS = textwrap.dedent('''
    import time
    import attrs
    import genflow
    from genflow import If, On, Step, Wait
    from genflow.testing import FakeService

    bank = FakeService("bank")


    @genflow.workflow("plug-good")
    @attrs.define
    class Good:
        n: int = 0

        def definition(self):
            yield Wait("go?", On("go", self.go))
            yield Step("charge", self.charge)

        def go(self) -> None:
            self.n += 1

        def charge(self) -> None:
            bank.charge(self.n, key=genflow.current_step().idempotency_key)


    @genflow.workflow("plug-unkeyed")
    @attrs.define
    class Unkeyed:
        def definition(self):
            yield Wait("go?", On("go", self.go))
            yield Step("charge", self.charge)

        def go(self) -> None:
            pass

        def charge(self) -> None:
            bank.charge(1)


    genflow_testing = {"plug-good": {"services": [bank]}, "plug-unkeyed": {"services": [bank]}}
''')


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    (tmp_path / "plug_flows.py").write_text(FLOWS)
    return tmp_path


def test_the_plugin_tests_every_workflow_of_a_module(flows: Path) -> None:
    done = _pytest(flows, "--genflow-module", "plug_flows", "--genflow-examples", "5")
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "1 failed, 2 passed" in out
    assert "genflow [plug_flows.Unkeyed]" in out
    assert "makes an outside effect happen twice" in out
    assert "bank.charge(1) happened in 2 attempts of one execution" in out


def test_the_plugin_is_idle_unless_asked(flows: Path) -> None:
    (flows / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    done = _pytest(flows, "test_nothing.py")
    assert done.returncode == 0 and "1 passed" in done.stdout


def test_the_plugin_lints_the_module(flows: Path) -> None:
    (flows / "plug_lint.py").write_text(textwrap.dedent('''
        import time
        import attrs
        import genflow
        from genflow import If, Step

        @genflow.workflow("plug-lint")
        @attrs.define
        class Late:
            def definition(self):
                yield If(time.time() > 0, "late?", Step("x", lambda: None))
        '''))
    done = _pytest(flows, "--genflow-module", "plug_lint", "--genflow-examples", "3")
    assert done.returncode == 1
    assert "genflow lint [plug_lint]" in done.stdout
    assert "GF101 definition() of 'plug-lint' reads the clock: time.time()" in done.stdout
    assert "reads the clock" in done.stdout  # and the check's own sandbox says it too


def test_the_plugin_checks_a_store_against_the_code_installed(flows: Path) -> None:
    store_url = f"sqlite:///{flows / 'prod.db'}"
    script = textwrap.dedent(f'''
        from genflow import Engine, open_store
        import plug_flows
        with open_store({store_url!r}) as store:
            Engine(store).start(plug_flows.Good(), id="g-1")
    ''')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(flows), *sys.path])}
    subprocess.run([sys.executable, "-c", script], cwd=flows, env=env, check=True,
                   timeout=120)
    done = _pytest(flows, "--genflow-module", "plug_flows", "--genflow-store", store_url,
                   "-k", "deploy")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    (flows / "plug_flows.py").write_text(FLOWS.replace('Wait("go?"', 'Wait("go now?"'))
    done = _pytest(flows, "--genflow-module", "plug_flows", "--genflow-store", store_url,
                   "-k", "deploy")
    assert done.returncode == 1
    assert "statement 'go?'" in done.stdout and "1 of 1 in-flight instance(s) would break" \
        in done.stdout


# -- the deploy check from a test, on every store ---------------------------------------


@genflow.workflow("test-plugin-stored")
@attrs.define
class Stored:
    late: bool = False

    def definition(self):
        import time

        yield Wait("go?", On("go", self.go))
        if self.late:
            yield Step(f"late {time.time() > 0}", lambda: None)  # read on this data only

    def go(self) -> None:
        pass


def test_replay_store_walks_the_stored_data_in_the_sandbox(make_store) -> None:
    store = make_store()
    engine = Engine(store)
    engine.start(Stored(), id="s-1")
    found = assert_store_replays(store, [Stored])
    assert found.replayed == 1 and found.deploy.checked == 1
    engine.start(Stored(late=True), id="s-2")
    found = replay_store(store, [Stored])
    assert not found.ok and found.deploy.ok  # every statement found: the data reads the clock
    [problem] = found.problems
    assert problem.instance_id == "s-2" and problem.workflow == "test-plugin-stored"
    assert "definition() of 'test-plugin-stored' reads the clock" in problem.message
    with pytest.raises(AssertionError, match="s-2 \\(test-plugin-stored\\)"):
        assert_store_replays(store, [Stored])


def test_check_workflow_and_workflows_of() -> None:
    import toolkit_cases

    names = {c.__name__ for c in workflows_of("toolkit_cases")}
    assert {"ClockLunch", "Order", "Bulk"} <= names
    check_workflow(toolkit_cases.Sized, examples=3)
    with pytest.raises(AssertionError, match="reads the clock"):
        check_workflow(toolkit_cases.ClockLunch, examples=3)


# -- without hypothesis ---------------------------------------------------------------------


def test_without_hypothesis_the_toolkit_says_what_to_install() -> None:
    code = textwrap.dedent('''
        import sys
        sys.modules["hypothesis"] = None  # as if it were not installed
        import genflow.pytest_plugin     # the plugin loads: pytest still runs
        import genflow.lint              # the static check needs nothing
        try:
            import genflow.testing
        except ImportError as exc:
            from genflow.errors import GenflowError
            assert isinstance(exc, GenflowError)
            print(exc)
    ''')
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("genflow.testing needs hypothesis, which is not installed: "
                           "pip install 'genflow[test]'\n")
