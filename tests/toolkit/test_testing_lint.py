"""genflow.lint: the static check of definitions, as a function and as `genflow lint`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from genflow.cli import main
from genflow.lint import lint, lint_source

HEAD = """
import datetime as dt
import os
import random
import time as clock
import uuid
from time import time as now
import attrs
import genflow
from genflow import If, Step, Wait, On, Go, For
"""


def codes(body: str, *, extra: str = "") -> list[str]:
    """The codes `lint` finds in a workflow whose definition is `body` (whose
    lines after a `def` line at column 0 are more methods)."""
    definition, _, methods = textwrap.dedent(body).partition("\ndef ")
    source = HEAD + extra + textwrap.dedent('''
        @genflow.workflow("flow")
        @attrs.define
        class Flow:
            tags: set[str] = attrs.field(factory=set)
            items: list[str] = attrs.field(factory=list)
            done: bool = False

            def step(self):
                self.done = True

            def definition(self):
        ''') + textwrap.indent(definition, " " * 8) + "\n" + (
            textwrap.indent("def " + methods, " " * 4) if methods else "")
    return [w.code for w in lint_source(source, "flow.py")]


@pytest.mark.parametrize(("body", "code"), [
    ('yield If(dt.datetime.now().hour < 12, "am?", Step("x", self.step))', "GF101"),
    ('yield If(now() > 0, "late?", Step("x", self.step))', "GF101"),  # imported as now
    ('yield If(clock.localtime().tm_hour > 0, "x?", Step("x", self.step))', "GF101"),
    ('yield If(dt.datetime.fromtimestamp(0).hour > 0, "x?", Step("x", self.step))', "GF101"),
    ('yield If(random.random() < 0.5, "x?", Step("x", self.step))', "GF102"),
    ('yield Step(f"x {uuid.uuid4()}", self.step)', "GF103"),
    ('yield If(os.environ.get("X") == "1", "x?", Step("x", self.step))', "GF104"),
    ('yield If(os.getenv("X") == "1", "x?", Step("x", self.step))', "GF104"),
    ('yield If(open("f").read() == "", "x?", Step("x", self.step))', "GF106"),
    ('for tag in self.tags:\n    yield Step(f"t {tag}", self.step)', "GF109"),
    ('for item in set(self.items):\n    yield Step(f"t {item}", self.step)', "GF109"),
    ('names = [t for t in self.tags]\nyield Step(names[0], self.step)', "GF109"),
    ('if not self.done:\n    yield Step("x", self.step)', "GF110"),
])
def test_each_read_has_its_code(body: str, code: str) -> None:
    assert codes(body) == [code]


@pytest.mark.parametrize("body", [
    'yield If(dt.datetime.fromtimestamp(0, dt.UTC).hour > 0, "x?", Step("x", self.step))',
    'yield If(clock.gmtime(0).tm_year > 0, "x?", Step("x", self.step))',
    'yield If(random.Random(4).random() < 1, "x?", Step("x", self.step))',
    'for tag in sorted(self.tags):\n    yield Step(f"t {tag}", self.step)',
    'yield If(any(t == "a" for t in self.tags), "x?", Step("x", self.step))',
    'yield If({t for t in self.tags} == set(), "x?", Step("x", self.step))',
    'yield Step("stamp", lambda: setattr(self, "done", clock.time() > 0))',  # a step's code
    'yield If(os.environ.get("X") == "1", "x?", Step("x", self.step))  # genflow: allow',
    'if self.items:\n    yield Step("x", self.step)',  # no step changes items
])
def test_what_is_fine_is_not_reported(body: str) -> None:
    assert codes(body) == []


def test_the_pragma_names_categories() -> None:
    body = 'yield If(now() > 0, "x?", Step("x", self.step))  # genflow: allow[random]'
    assert codes(body) == ["GF101"]
    body = 'yield If(now() > 0, "x?", Step("x", self.step))  # genflow: allow[clock]'
    assert codes(body) == []


def test_globals_and_class_attributes_the_file_changes() -> None:
    extra = "FLAGS = {'x': False}\nLIMIT = 3\nclass Box:\n    count = 0\n"
    body = ('yield If(FLAGS["x"] and LIMIT > Box.count, "x?", Step("x", self.bump))\n'
            "def bump(self):\n    FLAGS['x'] = True\n    Box.count += 1")
    found = codes(body, extra=extra)
    assert found == ["GF107", "GF108"]  # LIMIT: an unchanged constant is fine


def test_sub_flows_and_helpers_are_followed_steps_are_not(tmp_path: Path) -> None:
    source = HEAD + textwrap.dedent('''
        def stamp():
            return now()

        @genflow.workflow("subs")
        @attrs.define
        class Subs:
            def definition(self):
                yield from self.first()
                yield Go("side", self.second)
                yield Step("charge", self.charge)

            def first(self):
                yield If(stamp() > 0, "late?", Step("x", self.charge))

            def second(self):
                yield If(random.random() > 0, "lucky?", Step("y", self.charge))

            def charge(self):
                self.at = now()  # a step may read the clock
        ''')
    path = tmp_path / "subs.py"
    path.write_text(source)
    found = lint(path)
    assert [(w.code, w.line) for w in found] == [("GF101", 13), ("GF102", 27)]
    assert "first(), reached from definition()" not in found[0].message  # stamp() reads it
    assert found[0].message.startswith("stamp() of 'subs', reached from definition() reads")
    assert found[1].message.startswith("second() of 'subs', reached from definition()")
    assert found[0].workflow == "subs"
    assert str(found[0]) == f"{path}:13:12: GF101 {found[0].message}"


def test_the_command_prints_warnings_and_fails(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(HEAD + textwrap.dedent('''
        @genflow.workflow("cli-lint-bad")
        @attrs.define
        class Bad:
            def definition(self):
                yield If(now() > 0, "late?", Step("x", lambda: None))
        '''))
    good = tmp_path / "good.py"
    good.write_text(HEAD)
    assert main(["lint", str(bad), str(good)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"{bad}:16:18: GF101 definition() of 'cli-lint-bad' reads the clock")
    assert err == "genflow: error: 1 lint warning(s) in 1 file(s)\n"
    assert main(["lint", str(good), str(tmp_path)]) == 1  # the directory holds bad.py too
    capsys.readouterr()
    assert main(["lint", str(good)]) == 0
    assert capsys.readouterr().out == f"no lint warnings in {good}\n"
    assert main(["lint", str(tmp_path / "missing.py")]) == 2  # a mistake of the command line
    assert "no such file or directory" in capsys.readouterr().err


def test_a_syntax_error_is_one_line(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("def (:\n")
    assert main(["lint", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genflow: error: ") and err.count("\n") == 1


def test_lint_takes_modules_and_classes() -> None:
    import toolkit_cases

    by_module = lint(toolkit_cases)
    assert by_module == lint(toolkit_cases.ClockLunch)
    assert {w.workflow for w in by_module} >= {"toolkit-clock", "toolkit-set-built"}
