"""Acceptance of issue 13 ("every failure typed, atomic and explained"), as a
user meets it first: opening a store with a mistyped URL or option is an
`ArgumentError` (a `GenflowError`) that says what to write, never a raw
AttributeError; a `pathlib.Path` opens that SQLite file."""

from __future__ import annotations

import pathlib

import pytest

from genflow import GenflowError, open_store
from genflow.errors import ArgumentError
from genflow.stores import SQLiteStore


@pytest.mark.parametrize("url", [None, 5, b"sqlite:///x.db"])
def test_a_url_that_is_not_text_is_an_argument_error(url) -> None:
    with pytest.raises(ArgumentError, match="a store URL is a str"):
        open_store(url)


@pytest.mark.parametrize(("url", "words"), [
    ("sqlite:///{dir}/a.db?synchronus=FULL", "unknown SQLite store option"),
    ("sqlite:///{dir}/a.db?synchronous=SOMETIMES", "synchronous is one of"),
    ("memory:?size=3", "takes no options"),
])
def test_an_option_a_store_does_not_take_is_an_argument_error(tmp_path, url, words) -> None:
    with pytest.raises(ArgumentError, match=words) as refused:
        open_store(url.format(dir=tmp_path))
    assert isinstance(refused.value, GenflowError)
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_a_path_opens_that_sqlite_file(tmp_path: pathlib.Path) -> None:
    with open_store(tmp_path / "app.db") as store:
        assert isinstance(store, SQLiteStore)
    assert (tmp_path / "app.db").exists()


@pytest.mark.parametrize(("settings", "words"), [
    ({"mailbox_size": -1}, "mailbox_size is a count"),
    ({"mailbox_size": True}, "mailbox_size is a count"),
    ({"parallel_steps": 0}, "parallel_steps is a number"),
    ({"workflows": "counter"}, "workflows is a list of workflow classes"),
    ({"workflows": SQLiteStore}, "workflows is a list of workflow classes"),
])
def test_an_engine_setting_that_cannot_work_is_an_argument_error(settings, words) -> None:
    from genflow import Engine

    with pytest.raises(ArgumentError, match=words):
        Engine(open_store("memory:"), **settings)
