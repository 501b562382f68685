"""Acceptance of issue 19, as a user writes it from docs/testing.md: the
toolkit's documented entry points catch each kind of broken workflow the
issue lists, in the forms a user writes them (a file looked at with
`os.path.exists`, a `cached_property` on attrs' default slotted class), and
the report names what differs."""

from __future__ import annotations

import functools
import os.path
import pathlib

import attrs
import pytest

import genflow
from genflow import If, On, Step, Wait
from genflow.testing import check_determinism, check_replay


def noop() -> None:
    pass


@genflow.workflow("accept19-flag-file")
@attrs.define
class FlagFile:
    path: str = "/etc/hostname"

    def definition(self):
        yield If(os.path.exists(self.path), "flag set?", Step("fast", noop))


@genflow.workflow("accept19-flag-path")
@attrs.define
class FlagPath:
    path: str = "/etc/hostname"

    def definition(self):
        yield If(pathlib.Path(self.path).is_file(), "flag set?", Step("fast", noop))


@pytest.mark.parametrize("workflow", [FlagFile, FlagPath])
def test_a_definition_that_looks_at_a_file_is_refused(workflow) -> None:
    # whether a file exists is another answer on another machine: file I/O
    report = check_determinism(workflow())
    assert report is not None
    assert report.splitlines()[0].endswith("reads files")
    assert "os.stat()" in report and "If 'flag set?'" in report
    assert check_determinism(workflow(), allow=["files"]) is None


@genflow.workflow("accept19-cached")
@attrs.define  # slotted, attrs' default
class Cart:
    items: list[str] = attrs.field(factory=list)

    @functools.cached_property
    def first(self) -> str:
        return self.items[0] if self.items else ""

    def definition(self):
        yield Wait("add?", On("add", self.add))
        yield If(self.first == "", "empty?", Step("empty", noop))

    def add(self, item: str) -> None:
        self.items.append(item)


def test_a_cached_property_on_a_slotted_class_is_named() -> None:
    result = check_replay(Cart(), [("add", "tea")])
    assert not result.ok
    text = result.problems[0].text()
    assert "first: '' in memory" in text
    assert "a cached_property" in text
