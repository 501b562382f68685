"""CI (.ci/run) runs the checks the way tox does, so that none can pass in one and
fail in the other (as `tox -e type` once failed on an ignore that only psycopg's
types make necessary, while CI's own mypy passed)."""

from __future__ import annotations

import configparser
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CI = (ROOT / ".ci" / "run").read_text()
TOX = configparser.ConfigParser()
TOX.read(ROOT / "tox.ini")


def _extras(env: str) -> set[str]:
    return {e.strip() for e in TOX[f"testenv:{env}"].get("extras", "").split(",") if e.strip()}


def _commands() -> list[str]:
    """.ci/run's command lines (comments and blank lines dropped)."""
    return [line.strip() for line in CI.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_ci_runs_the_readmes_test_command_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"^```sh\n.*\n(.*)\n```", readme, re.M).group(1)  # type: ignore[union-attr]
    assert command == "pip install -e '.[test]' && python -m pytest"
    assert command in _commands()


def test_ci_runs_lint_type_and_docs_through_tox() -> None:
    runs = [line for line in _commands() if line.startswith("tox ")]
    assert runs == ["tox -e lint,type,docs"]
    # and none of them a second time by hand, with other settings
    assert not [line for line in _commands()
                if re.match(r"(ruff|mypy|mkdocs)\b", line)]


def test_each_tox_environment_installs_what_its_check_imports() -> None:
    optional = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
                   ["optional-dependencies"])
    # mypy reads the types of psycopg (genflow.stores.postgres) and hypothesis
    # (genflow.testing): without them, warn_unused_ignores fails on real ignores
    assert {"postgres", "test"} <= _extras("type") <= optional
    # the docs build runs the pages' examples; testing.md's use hypothesis
    assert {"docs", "test"} <= _extras("docs") <= optional
    assert {"postgres", "test"} <= _extras("tests") <= optional
    assert TOX["testenv:lint"]["commands"].strip() == "ruff check genflow tests examples benchmarks"


def test_ci_installs_the_programs_the_tests_use() -> None:
    apt = next(line for line in CI.replace("\\\n", " ").splitlines() if "apt-get install" in line)
    assert {"graphviz", "chromium", "chromium-driver"} <= set(apt.split())
    assert ".ci/postgres start" in CI and "GENFLOW_REQUIRE_POSTGRES=1" in CI
