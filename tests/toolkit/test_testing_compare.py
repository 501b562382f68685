"""Exact comparisons, and the Instance that drives one instance in plain, reload and crash modes."""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import math
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import genflow
from genflow import CheckpointType, On, Step, Wait
from genflow.codec import dumps, loads
from genflow.testing import MODES, Instance, Unsaved, check_replay
from genflow.testing.compare import MISSING, differences, same


@attrs.define(slots=False)
class Data:
    value: object = None
    items: list[object] = attrs.field(factory=list)

    @functools.cached_property
    def total(self) -> int:
        return 3


@pytest.mark.parametrize(("a", "b", "words"), [
    (1, 1.0, "value: int -> float (1 before, 1.0 after)"),
    (1, True, "value: int -> bool (1 before, True after)"),
    (decimal.Decimal("1.0"), decimal.Decimal("1"), "value: Decimal('1.0') before, "
                                                   "Decimal('1') after"),
    (decimal.Decimal("10.50"), "10.50", "value: Decimal -> str (Decimal('10.50') before, "
                                        "'10.50' after)"),
    ((1, 2), [1, 2], "value: tuple -> list ((1, 2) before, [1, 2] after)"),
    (0.0, -0.0, "value: 0.0 before, -0.0 after"),
    (dt.datetime(2030, 1, 1, tzinfo=dt.UTC),  # the same instant, another offset
     dt.datetime(2030, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
     "value: datetime.datetime(2030, 1, 1, 0, 0, tzinfo=datetime.timez... before, "
     "datetime.datetime(2030, 1, 1, 1, 0, tzinfo=datetime.timez... after"),
    ({"eu": 1}, {"eu": 1.0}, "value['eu']: int -> float (1 before, 1.0 after)"),
    ({1: "a"}, {"1": "a"}, "value[1]: 'a' before, (missing) after"),
])
def test_what_equality_lets_through_is_a_difference(a, b, words) -> None:
    found = differences(Data(a), Data(b))
    assert found and found[0].words() == words


def test_nan_equals_itself_and_equal_values_are_the_same() -> None:
    assert same(Data(math.nan), Data(math.nan))
    assert same(Data(decimal.Decimal("NaN")), Data(decimal.Decimal("NaN")))
    assert same(Data({"a": [1, (2, "x")]}), Data({"a": [1, (2, "x")]}))
    assert not same(Data(math.nan), Data(0.0))


def test_attributes_that_are_not_fields_are_named() -> None:
    mine, theirs = Data(), Data()
    assert mine.total == 3  # cached on the object
    mine.extra = "set by a step"
    found = {d.path: d for d in differences(mine, theirs)}
    assert found["total"].note.startswith("a cached_property")
    assert found["extra"].note.startswith("an attribute that is not an attrs field")
    assert found["extra"].after is MISSING


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.text(max_size=3), inner, max_size=3), max_leaves=10))
def test_a_value_is_the_same_as_itself_and_as_its_copy(value) -> None:
    import copy

    assert same(Data(value), Data(copy.deepcopy(value)))


@genflow.workflow("test-compare-nan")
@attrs.define
class Ratio:
    ratio: float = math.nan

    def definition(self):
        yield Wait("go?", On("go", lambda: None))


def test_a_nan_field_is_not_reported_lost() -> None:
    assert check_replay(Ratio(), ["go"]).ok


# -- Instance ----------------------------------------------------------------------------------


@genflow.workflow("test-compare-steps")
@attrs.define
class Steps:
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Step("one", lambda: self.log.append("one"))
        yield Wait("go?", On("go", self.go))
        yield Step("two", lambda: self.log.append("two"))

    def go(self, who: str) -> str:
        self.log.append(who)
        return who.upper()


@pytest.mark.parametrize("mode", MODES)
def test_an_instance_ends_the_same_in_every_mode(mode: str) -> None:
    run = Instance(Steps(), mode)
    run.resume()
    assert run.send("go", "ann") == "ANN"
    assert run.wf.log == ["one", "ann", "two"] and run.finished
    assert [c.name for c in run.calls] == ["one", "go", "two"]  # each ran once
    assert CheckpointType.AFTER_EVENT in run.kinds
    plain = Instance(Steps())
    plain.resume()
    plain.send("go", "ann")
    assert run.blob() == plain.blob()


def test_crash_mode_goes_on_from_each_durable_checkpoint_only() -> None:
    reloads: list[bool] = []
    run = Instance(Steps(), "crash", on_reload=lambda blob, crashed: reloads.append(crashed))
    run.resume()
    durable = [k for k in run.kinds if k.durable]
    assert len(reloads) == len(durable) and not any(reloads)  # a reload after each save


def test_reload_mode_names_what_a_save_loses() -> None:
    @genflow.workflow("test-compare-lossy")
    @attrs.define
    class Lossy:
        history: list[Any] = attrs.field(factory=list)

        def definition(self):
            yield Step("note", lambda: self.history.append(("paid", 1)))

    with pytest.raises(Unsaved, match=r"history\[0\]: tuple -> list"):
        Instance(Lossy(), "reload").resume()


def test_handle_callback_runs_the_handler_alone() -> None:
    run = Instance(Steps())
    run.resume()
    assert run.handle_callback("go", "bob") == "BOB"
    assert run.wf.log == ["one", "bob"]  # no moves after it
    run.resume()
    assert run.wf.log == ["one", "bob", "two"]
    assert loads(run.saved)[0].log == run.wf.log and run.saved == dumps(run.wf, run.state)
