"""Hypothesis strategies that know a workflow.

* `payloads(tp)`: values of a handler's payload type (attrs classes, primitives,
  lists, sets, dicts, tuples, optionals and unions, enums, literals, decimals,
  dates...), falling back to `st.from_type`.
* `events(wf, state)`: an event the instance can receive *now*: the definition
  is replayed on the current data to find the `Wait` each thread stands at, and
  the payload is drawn from its handler's annotated type. Sometimes (`unexpected`)
  an event of the workflow that nobody waits for now.
* `runs(Workflow)`: whole scenarios. The workflow is run (plainly, in memory)
  while the scenario is drawn, so each event is one the instance can receive at
  that point, or, sometimes, one it must refuse.
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import datetime as _dt
import decimal
import enum
import random
import sys
import types
import typing
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
from hypothesis import strategies as st

from genflow.codec import converter
from genflow.errors import ArgumentError, GenflowError
from genflow.handlers import TimerHandler, as_handler
from genflow.registry import workflow_name
from genflow.replay import as_body, iter_tree
from genflow.state import State, ThreadStatus
from genflow.statements import On, Wait, WaitFor
from genflow.testing.driver import statement_at
from genflow.testing.run import Run, ready_events
from genflow.testing.scenario import Scenario, Send

__all__ = ["events", "payloads", "runs"]

Strategies = Mapping[Any, st.SearchStrategy[Any]]
#: per event: a strategy, or a function of the workflow's current data returning one
EventPayloads = Mapping[str, st.SearchStrategy[Any] | Callable[[Any], st.SearchStrategy[Any]]]

_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
_ANY = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), _TEXT)


def payloads(tp: Any, types: Strategies | None = None) -> st.SearchStrategy[Any]:
    """Values of `tp`, a handler's payload type. `types` maps types to strategies
    of your own (they win over the built-in ones, at any depth)."""
    return _payloads(tp, dict(types or {}), 0)


def _payloads(tp: Any, overrides: dict[Any, st.SearchStrategy[Any]], depth: int) -> Any:
    if tp in overrides:
        return overrides[tp]
    if tp is None or tp is type(None):
        return st.none()
    if tp is Any or tp is object:
        return _ANY
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _payloads(args[0], overrides, depth)
    if origin is typing.Union or origin is types.UnionType:
        options = [_payloads(a, overrides, depth + 1) for a in args if a is not type(None)]
        if type(None) in args:
            options.insert(0, st.none())
        if depth > 3 and type(None) in args:
            return st.none()
        return st.one_of(*options)
    if origin is typing.Literal:
        return st.sampled_from(args)
    if depth > 4:  # a recursive type: stop growing
        return _leaf(tp, origin)

    def inner(t: Any) -> st.SearchStrategy[Any]:
        return _payloads(t, overrides, depth + 1)

    if origin in (list, cabc.Sequence, cabc.MutableSequence, cabc.Iterable, cabc.Collection):
        return st.lists(inner(args[0] if args else Any), max_size=3)
    if origin in (set, cabc.Set, cabc.MutableSet):
        return st.sets(inner(args[0] if args else int), max_size=3)
    if origin is frozenset:
        return st.frozensets(inner(args[0] if args else int), max_size=3)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(inner(args[0]), max_size=3).map(tuple)
        return st.tuples(*(inner(a) for a in args))
    if origin in (dict, cabc.Mapping, cabc.MutableMapping):
        key, value = (*args, Any, Any)[:2] if args else (str, Any)
        return st.dictionaries(inner(key if key is not Any else str), inner(value), max_size=3)
    if isinstance(tp, type):
        if attrs.has(tp):
            return _attrs_strategy(tp, overrides, depth)
        if issubclass(tp, enum.Enum):
            return st.sampled_from(list(tp))
        simple = _simple(tp)
        if simple is not None:
            return simple
    return st.from_type(tp)


def _simple(tp: type) -> st.SearchStrategy[Any] | None:
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(-(10**6), 10**6)
    if tp is float:
        return st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
    if tp is str:
        return _TEXT
    if tp is bytes:
        return st.binary(max_size=12)
    if tp is decimal.Decimal:
        return st.decimals(-(10**6), 10**6, places=2, allow_nan=False, allow_infinity=False)
    if tp is _dt.datetime:
        return st.datetimes(timezones=st.sampled_from([None, _dt.UTC]))
    if tp is _dt.date:
        return st.dates()
    if tp is _dt.time:
        return st.times()
    if tp is _dt.timedelta:
        return st.timedeltas(-_dt.timedelta(days=999), _dt.timedelta(days=999))
    if tp is uuid.UUID:
        return st.uuids()
    return None


def _leaf(tp: Any, origin: Any) -> st.SearchStrategy[Any]:
    if origin in (list, tuple, set, frozenset, dict):
        return st.builds(origin)
    if isinstance(tp, type):
        simple = _simple(tp)
        if simple is not None:
            return simple
    return st.nothing()


def _attrs_strategy(cls: type, overrides: dict[Any, st.SearchStrategy[Any]], depth: int) -> Any:
    """Instances of an attrs class, honouring its fields' common validators
    (`in_`, `ge`/`gt`/`le`/`lt`, `min_len`/`max_len`, `matches_re`, `optional`,
    lists of them); values that other validators refuse are filtered out."""
    hints = _field_types(cls)
    kwargs: dict[str, st.SearchStrategy[Any]] = {}
    for field in attrs.fields(cls):
        if not field.init:
            continue
        tp = hints.get(field.name, field.type if not isinstance(field.type, str) else Any)
        limits = _limits(field.validator)
        if limits:
            strategy = _limited(tp, limits, overrides, depth)
        else:
            strategy = _payloads(tp, overrides, depth + 1)
        kwargs[field.alias or field.name] = strategy

    def build(values: dict[str, Any]) -> Any:
        try:
            return cls(**values)
        except (ValueError, TypeError):
            return _REFUSED

    return st.fixed_dictionaries(kwargs).map(build).filter(lambda v: v is not _REFUSED)


_REFUSED = object()


def _limits(validator: Any) -> dict[str, Any]:
    """What common attrs validators allow, as keyword limits."""
    found: dict[str, Any] = {}
    if validator is None:
        return found
    name = type(validator).__name__
    if name == "_AndValidator":
        for inner in validator._validators:
            found.update(_limits(inner))
    elif name == "_OptionalValidator":
        found.update(_limits(validator.validator))
        found["optional"] = True
    elif name == "_InValidator":
        options = getattr(validator, "_original_options", validator.options)
        if isinstance(options, (list, tuple, set, frozenset, dict, range)) or (
            isinstance(options, type) and issubclass(options, enum.Enum)
        ):
            values: list[Any] = list(options)
            with contextlib.suppress(TypeError):
                values.sort()
            found["options"] = values
    elif name == "_NumberValidator":
        op, bound = validator.compare_op, validator.bound
        key = "min_value" if op in (">=", ">") else "max_value"
        found[key] = bound
        if op in (">", "<"):
            found[key + "_exclusive"] = True
    elif name == "_MinLengthValidator":
        found["min_size"] = validator.min_length
    elif name == "_MaxLengthValidator":
        found["max_size"] = validator.max_length
    elif name == "_MatchesReValidator":
        found["regex"] = validator.pattern
    return found


def _limited(
    tp: Any, limits: dict[str, Any], overrides: dict[Any, st.SearchStrategy[Any]], depth: int
) -> st.SearchStrategy[Any]:
    optional = limits.get("optional", False)
    if limits.get("options"):
        strategy: st.SearchStrategy[Any] = st.sampled_from(limits["options"])
    elif "regex" in limits:
        strategy = st.from_regex(limits["regex"], fullmatch=True)
    else:
        base = tp
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(tp))
            base = args[0] if len(args) == 1 else tp
        bounded = _bounded(base, limits)
        strategy = bounded if bounded is not None else _payloads(base, overrides, depth + 1)
    return st.one_of(st.none(), strategy) if optional else strategy


def _bounded(tp: Any, limits: dict[str, Any]) -> st.SearchStrategy[Any] | None:
    low, high = limits.get("min_value"), limits.get("max_value")
    if tp is int and (low is not None or high is not None):
        if low is not None and limits.get("min_value_exclusive"):
            low += 1
        if high is not None and limits.get("max_value_exclusive"):
            high -= 1
        low = -(10**6) if low is None else low
        return st.integers(low, max(low, 10**6) if high is None else high)
    if tp in (float, decimal.Decimal) and (low is not None or high is not None):
        extra: dict[str, Any] = {"allow_nan": False, "allow_infinity": False}
        if tp is float:
            extra["exclude_min"] = bool(limits.get("min_value_exclusive"))
            extra["exclude_max"] = bool(limits.get("max_value_exclusive"))
            return st.floats(low, high, **extra)
        return st.decimals(low, high, places=2, **extra).filter(
            lambda d: (low is None or d != low or not limits.get("min_value_exclusive"))
            and (high is None or d != high or not limits.get("max_value_exclusive")))
    sizes = {k: limits[k] for k in ("min_size", "max_size") if k in limits}
    if sizes:
        sizes.setdefault("max_size", max(sizes.get("min_size", 0), 12))
        if tp is str:
            return st.text(st.characters(codec="utf-8"), **sizes)
        origin = typing.get_origin(tp) or tp
        if origin in (list, cabc.Sequence):
            args = typing.get_args(tp)
            return st.lists(payloads(args[0] if args else Any), **sizes)
    return None


def _field_types(cls: type) -> dict[str, Any]:
    module = sys.modules.get(cls.__module__)
    try:
        return typing.get_type_hints(cls, globalns=vars(module) if module else None)
    except Exception:
        return {f.name: f.type for f in attrs.fields(cls) if not isinstance(f.type, str)}


# -- events ---------------------------------------------------------------------------------


def wait_events(wf: Any, state: State) -> dict[str, list[On]]:
    """For each thread waiting for events: the `On` statements of its `Wait`
    (of a `WaitFor` with a timeout: the timeout), found by replaying the
    definition on the current data."""
    found: dict[str, list[On]] = {}
    for thread in state.threads:
        if thread.status is ThreadStatus.WAITING_CONDITION and thread.events:
            wait_for = statement_at(wf, state, thread, WaitFor)
            if wait_for is not None and wait_for.timeout is not None:
                found[thread.id] = [wait_for.timeout]
            continue
        if thread.status is not ThreadStatus.WAITING_EVENT:
            continue
        wait = statement_at(wf, state, thread, Wait)
        if wait is not None:
            found[thread.id] = list(wait.events)
    return found


def input_type(on: On) -> Any:
    """The payload type the event's handler declares (None: no payload)."""
    try:
        return getattr(as_handler(on.handler), "input_type", None)
    except TypeError:
        return None


def is_timer(on: On) -> bool:
    """Whether the event arrives by itself (a timer: the clock fires it)."""
    try:
        return isinstance(as_handler(on.handler), TimerHandler)
    except TypeError:
        return False


def catalog(wf: Any) -> dict[str, On]:
    """Every event of the workflow's definition (every branch), by name: the first `On`."""
    found: dict[str, On] = {}
    try:
        for stmt, _ in iter_tree(as_body(wf)):
            if isinstance(stmt, On) and stmt.name and stmt.name not in found:
                found[stmt.name] = stmt
    except Exception:
        pass
    return found


def _payload_for(wf: Any, on: On, event_payloads: Mapping[str, Any], types: Strategies) -> Any:
    custom = event_payloads.get(on.name) if on.name else None
    if custom is None:
        return payloads(input_type(on), types)
    if isinstance(custom, st.SearchStrategy):
        return custom
    return custom(wf)  # a function of the current data


def _odds(unexpected: float | bool) -> int:
    """`unexpected` as a number of chances in 100."""
    if unexpected is True:
        return 10
    return max(0, min(100, round(float(unexpected) * 100)))


@st.composite
def _event(
    draw: Any,
    wf: Any,
    state: State,
    event_payloads: EventPayloads,
    types: Strategies,
    unexpected: float | bool,
    stale: list[str] | None = None,
    guide: _Guide | None = None,
    left: int = 0,
) -> Send:
    ons = wait_events(wf, state)
    ready = [(tid, name) for tid, name in ready_events(state) if tid in ons]
    odds = _odds(unexpected)
    off_names = []
    if odds:
        waited = {name for _, name in ready}
        off_names = [name for name in catalog(wf) if name not in waited]
    stale = stale or []
    go_off = bool(off_names or stale) and (
        not ready or draw(st.integers(0, 99), label="unexpected?") >= 100 - odds
    )
    if go_off:
        options = [(name, False) for name in off_names] + [(name, True) for name in stale]
        name, is_stale = draw(st.sampled_from(options), label="unexpected event")
        on = catalog(wf).get(name)
        payload = draw(_payload_for(wf, on, event_payloads, types)) if on is not None else None
        return Send(name, payload, awaited=False, stale=is_stale)
    if not ready:
        raise _NothingToSend()
    if guide is not None:
        thread, name = guide.choose(draw, ready, {t.id: t.stmt for t in state.threads}, left)
    else:
        thread, name = draw(st.sampled_from(ready), label="event")
    on = next(o for o in ons[thread] if o.name == name)
    payload = draw(_payload_for(wf, on, event_payloads, types), label=f"payload of {name!r}")
    many = sum(1 for _, n in ready if n == name) > 1
    return Send(name, payload, thread=thread if many else None, awaited=True,
                timer=is_timer(on))


class _NothingToSend(Exception):
    pass


#: how much a scenario favours an event, by level: even, much more often, much less
_LEVELS = (4, 16, 1)


class _Guide:
    """The coverage guide of one scenario being drawn (see `runs`).

    Two things make a rare branch rare: an event that must win over others many
    times (swarm testing answers it: each scenario draws a weight per event,
    so some scenarios favour one event and neglect another), and a loop that
    must go round many times before the way out is taken. For the second, the
    guide learns which events bring a thread back to the statement it waited
    at (a loop), and draws, per statement, how long to stay: until the scenario
    has only a few events left (the commonest draw), or a number of rounds; it
    takes only looping events until then, and only the others after."""

    #: draws of a stay below this mean "until this many events are left"
    FILL = 4

    def __init__(self, draw: Any, events: Iterable[str], longest: int):
        self.weights = {name: _LEVELS[draw(st.integers(0, len(_LEVELS) - 1),
                                           label=f"weight of {name!r}")] for name in events}
        self.longest = longest
        self.loops: set[tuple[str, str]] = set()  # (statement, event) that came back there
        self.stay: dict[str, int] = {}  # a draw per statement, see FILL
        self.rounds: dict[str, int] = {}

    def choose(self, draw: Any, ready: list[tuple[str, str]], where: dict[str, str],
               left: int) -> tuple[str, str]:
        looping = [(t, n) for t, n in ready if (where.get(t, ""), n) in self.loops]
        candidates = ready
        if looping:
            stmt = where[looping[0][0]]
            if stmt not in self.stay:
                self.stay[stmt] = draw(st.integers(0, self.FILL + self.longest),
                                       label=f"stay at {stmt!r}")
            stay = self.stay[stmt]
            if stay < self.FILL:
                staying = left > stay + 1
            else:
                staying = self.rounds.get(stmt, 0) < stay - self.FILL
            leaving = [c for c in ready if c not in looping] or ready
            candidates = looping if staying else leaving
        return _weighted(draw, candidates, self.weights)

    def learn(self, before: str, event: str, after: str | None) -> None:
        """The thread that waited at `before` took `event` and now waits at `after`."""
        if after == before:
            self.loops.add((before, event))
            self.rounds[before] = self.rounds.get(before, 0) + 1


def _weighted(draw: Any, ready: list[tuple[str, str]], weights: Mapping[str, int]
              ) -> tuple[str, str]:
    """One of `ready`, each as likely as its event's weight (shrinks to the first)."""
    total = sum(weights.get(name, _LEVELS[0]) for _, name in ready)
    pick = draw(st.integers(0, total - 1), label="event")
    for choice in ready:
        pick -= weights.get(choice[1], _LEVELS[0])
        if pick < 0:
            return choice
    return ready[-1]  # pragma: no cover - the weights add up to total


def events(
    wf: Any,
    state: State,
    *,
    payloads: EventPayloads | None = None,
    types: Strategies | None = None,
    unexpected: float | bool = 0.1,
) -> st.SearchStrategy[Send]:
    """An event `wf` (in `state`) can receive now, as a `Send`.

    The payload comes from the handler's annotated type, or from
    `payloads[event]`: a strategy of your own, or a function of the current data
    returning one (`lambda order: st.just(order.payment_ref)`); `types` maps
    types to strategies. With probability
    `unexpected` the event is one of the workflow's events that nobody waits
    for now (it must be refused). Empty (`st.nothing()`) when nothing can be sent.
    """
    if not can_send(wf, state, unexpected):
        return st.nothing()
    return _event(wf, state, dict(payloads or {}), dict(types or {}), unexpected)


def can_send(wf: Any, state: State, unexpected: float | bool = 0.1) -> bool:
    """Whether `events(wf, state, unexpected=...)` has anything to draw."""
    if ready_events(state) and wait_events(wf, state):
        return True
    return bool(_odds(unexpected) and catalog(wf))


def _start_strategy(workflow: type, start: Any) -> st.SearchStrategy[Any]:
    if start is None:
        return st.builds(workflow)
    if isinstance(start, st.SearchStrategy):
        return start
    if isinstance(start, workflow):
        blob = converter.unstructure(start)
        return st.just(blob).map(lambda b: converter.structure(b, workflow))
    if callable(start):
        return st.builds(start)
    raise ArgumentError(f"start must be a {workflow.__qualname__}, a strategy or a callable, "
                        f"not {start!r}")


def _checked_options(workflow: Any, payloads: Any, types: Any) -> None:
    """`runs`'s arguments a user mistypes, refused at once (not a TypeError from
    inside the first draw, or a payloads mapping silently unused)."""
    if not isinstance(workflow, type):
        raise ArgumentError(
            f"runs takes the workflow's class (runs({type(workflow).__qualname__})), not "
            f"{workflow!r}: to start from this data, give it as start= "
            f"(runs({type(workflow).__qualname__}, start=...))")
    for option, given, what in (("payloads", payloads, "an event name"),
                                ("types", types, "a type")):
        if given is None:
            continue
        if not isinstance(given, Mapping):
            raise ArgumentError(f"{option} maps {what} to a strategy, not {given!r}")
        for key, value in given.items():
            if not isinstance(value, st.SearchStrategy) and not (
                    option == "payloads" and callable(value)):
                each = ("a strategy, or a function of the current data returning one"
                        if option == "payloads" else "a strategy")
                hint = "" if callable(value) else f" (st.just({value!r}) for that one value)"
                raise ArgumentError(f"{option}[{key!r}] is {each}, not {value!r}{hint}")


def runs(
    workflow: type,
    *,
    start: Any = None,
    max_events: int = 10,
    min_events: int = 0,
    payloads: EventPayloads | None = None,
    types: Strategies | None = None,
    unexpected: float | bool = 0.1,
    instance_id: str = "test-1",
    start_time: Any = None,
    reset: Callable[[], Any] | None = None,
    services: Iterable[Any] = (),
    guide: bool = True,
) -> st.SearchStrategy[Scenario]:
    """Scenarios for `workflow`: start data and events the instance can receive.

    `start` is the start data: an instance, a callable making one, a strategy,
    or None (the class's defaults). Each event is drawn with `events()` from the
    instance as the previous ones left it (the workflow runs while drawing);
    with probability `unexpected` it is one nobody waits for, or an old request
    for an earlier wait. Drawing stops at `max_events` or when nothing can be
    sent any more (the instance finished, or only waits for conditions).

    The workflow runs while a scenario is drawn, so it meets your fakes then
    too: `reset` (a function) is called, and `services` (`FakeService`s) are
    reset, before each scenario is drawn; both go with the scenario to
    `check_replay`, which resets them again before each of its runs.

    `guide` steers the search toward what has not been reached: each scenario
    favours some events and neglects others (a long run of one event before
    another is then likely), and hypothesis is told (`target`) how many of the
    definition's statements a scenario reached, so it explores from the ones
    that reach most.
    """
    _checked_options(workflow, payloads, types)
    workflow_name(workflow)
    start_strategy = _start_strategy(workflow, start)
    event_payloads = dict(payloads or {})
    type_strategies = dict(types or {})
    fakes = tuple(services)

    @st.composite
    def scenario(draw: Callable[..., Any]) -> Scenario:
        # steps run while drawing may roll dice: the shared `random` is put back after,
        # so that drawing stays a function of hypothesis's choices
        state = random.getstate()
        try:
            return drawn(draw)
        finally:
            random.setstate(state)

    def drawn(draw: Callable[..., Any]) -> Scenario:
        if reset is not None:
            reset()
        for service in fakes:
            service.reset()
        data = draw(start_strategy, label="start")
        base = Scenario(workflow, converter.unstructure(data), [], instance_id, reset, fakes)
        sim = Run(base, policy="plain", start_time=start_time, step_retries=0).run()
        longest = max(min_events, max_events)
        steer = _Guide(draw, catalog(sim.wf), longest) if guide else None
        # the length first, then the events. Guided, three in four scenarios are as long
        # as allowed (a loop taken many times before a branch needs length): one draw,
        # mapped so that smaller still means shorter, for shrinking
        spread = (longest - min_events) * (4 if steer is not None else 1)
        length = min(longest, draw(st.integers(min_events, min_events + spread),
                                   label="events"))
        sends: list[Send] = []
        while len(sends) < length and sim.failure is None and not sim.misdeliveries:
            stale = sorted({r.event for r in _stale_requests(sim)}) if _odds(unexpected) else []
            try:
                send = draw(_event(sim.wf, sim.state, event_payloads, type_strategies,
                                   unexpected, stale, steer, length - len(sends)))
            except _NothingToSend:
                break
            except GenflowError:
                break
            sends.append(send)
            waited = {t.id: t.stmt for t in sim.state.threads}
            outcome = sim.send(send)
            if steer is not None and outcome is not None and outcome.accepted and outcome.thread:
                now = sim.state.thread(outcome.thread)
                steer.learn(waited.get(outcome.thread, ""), send.event,
                            now.stmt if now is not None else None)
            odds = _odds(unexpected)
            if sim.finished and (not odds or draw(st.integers(0, 99)) < 100 - odds):
                break
        if steer is not None:
            _target(sim)
        return attrs.evolve(base, events=sends)

    return scenario()


def _target(run: Run) -> None:
    """Tell hypothesis how far the scenario reached: the statements the instance
    stood at or ran, then (a gradient toward them: longer loops, more data)
    the events it took."""
    reached = {pos[0] for mark in run.trace for pos in mark.positions.values()}
    reached.update(call.name for call in run.calls)
    accepted = sum(1 for o in run.outcomes if o.accepted)
    try:
        from hypothesis import target

        target(float(len(reached) * 1000 + accepted), label="genflow: statements reached")
    except Exception:  # outside a test (`.example()`), or drawn twice in one test case
        pass


def _stale_requests(run: Run) -> list[Any]:
    live = {(e.req.thread_id, e.req.event, e.req.pc) for t in run.state.threads for e in t.events}
    return [r for r in run.issued if (r.thread_id, r.event, r.pc) not in live]
