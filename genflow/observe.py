"""Logs, traces and metrics: what an engine tells the operators, set up once per engine.

* **Logs**: the standard `logging` module, one logger per layer (`genflow.engine`:
  operations, steps, moves; `genflow.worker`: the worker loop; `genflow.store`: a
  store's retries; `genflow.schedules`, `genflow.queues`, `genflow.retention`,
  `genflow.web`). Every record carries the fields of `FIELDS` (`instance`,
  `workflow`, `thread_id`, `statement`, `attempt`; None where one does not apply),
  so a JSON formatter shows them. `thread_id`, not `thread`: a `LogRecord` has a
  `thread` of its own (the OS thread). The library prints nothing: its top
  logger has a `NullHandler`, and the application configures logging (the CLI
  does, to stderr).
* **Traces and metrics**: OpenTelemetry, through the `opentelemetry-api` package
  (the extra `genflow[otel]`), when it is installed: a span per engine operation
  (`genflow.start`, `genflow.send`, `genflow.cancel`, `genflow.move`, and
  `genflow.run` for each instance a worker runs), one per step run
  (`genflow.step <name>`) and per handler call (`genflow.setup <event>`,
  `genflow.handle <event>`, `genflow.teardown <event>`), and the instruments of
  `Metrics`. Without the package nothing is imported and each operation pays a
  check. The API alone records nothing: the application installs the SDK and
  its exporters, as for any instrumented library.
* **The trace context of the caller** of `start` and `send` is kept in the
  instance (`State.trace`, its W3C ``traceparent``), so the steps a worker runs
  later, in another process, are in the caller's trace: `genflow.run`'s parent
  is that context. `current_traceparent()` and `traced()` are the two ends for
  anything else that carries work across processes (children, an outbox).
* **The journal's timings**: with `Engine(journal=True)` each step run and
  handler call is recorded (``step`` / ``handler`` entries: start, end, attempt,
  error), so the console, the report and `genflow show` draw a timeline with
  durations. Off, nothing is timed.

Step-level work (a span, a histogram sample, a journal entry per call of user
code) is done by `Observer.call`, which the engine hands to the core's driver
(`genflow.runtime.drive`) only when something watches: with the journal off,
OpenTelemetry absent and debug logging off, the driver runs as it always did.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from genflow.errors import ArgumentError
from genflow.state import CheckpointType, State, ThreadStatus, WorkflowStatus

if TYPE_CHECKING:
    from genflow.engine import Engine
    from genflow.runtime import StepContext

__all__ = ["FIELDS", "JsonFormatter", "Observer", "configure_logging", "current_traceparent",
           "fields", "otel_available", "traced"]

log = logging.getLogger("genflow.engine")
logging.getLogger("genflow").addHandler(logging.NullHandler())  # a library prints nothing

#: the fields every genflow log record carries (`extra=`), None where one does not apply
FIELDS = ("instance", "workflow", "thread_id", "statement", "attempt")

_DEBUG = logging.DEBUG
#: the API's providers until an SDK is installed: nothing is recorded
_IDLE = ("ProxyTracerProvider", "NoOpTracerProvider", "_ProxyMeterProvider",
         "NoOpMeterProvider")
_FAILED = WorkflowStatus.FAILED
_UNWINDING = ThreadStatus.UNWINDING
_AFTER_FAILURE = CheckpointType.AFTER_FAILURE


def fields(instance_id: str | None = None, workflow: str | None = None,
           thread_id: str | None = None, statement: str | None = None,
           attempt: int | None = None, **more: Any) -> dict[str, Any]:
    """The `extra=` of a genflow log record: the five `FIELDS`, and `more`."""
    more.update(instance=instance_id, workflow=workflow, thread_id=thread_id,
                statement=statement, attempt=attempt)
    return more


#: what every LogRecord has: the rest of its __dict__ came in by `extra=`
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the `FIELDS`
    and every other field given by `extra=` (the CLI's ``--log-format json``)."""

    def format(self, record: logging.LogRecord) -> str:
        import json

        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
            "logger": record.name, "message": record.getMessage()}
        line.update({name: getattr(record, name, None) for name in FIELDS})
        line.update({k: v for k, v in record.__dict__.items()
                     if k not in _STANDARD and k not in line})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(level: str | int = "WARNING", format: str = "text",
                      stream: Any = None) -> logging.Handler:
    """Send genflow's records at `level` and above to `stream` (stderr), as text or
    JSON (`JsonFormatter`): what the CLI does. An application that configures
    logging itself needs none of this."""
    if isinstance(level, str):
        if level.upper() not in logging.getLevelNamesMapping():
            raise ArgumentError(f"unknown log level {level!r}: use DEBUG, INFO, WARNING "
                                     "or ERROR")
        level = logging.getLevelNamesMapping()[level.upper()]
    if format not in ("text", "json"):
        raise ArgumentError(f"unknown log format {format!r}: use text or json")
    handler = logging.StreamHandler(stream)  # (None: stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    top = logging.getLogger("genflow")
    for old in _CONFIGURED:  # (configured again: the new handler replaces the last one)
        top.removeHandler(old)
    _CONFIGURED[:] = [handler]
    top.addHandler(handler)
    top.setLevel(level)
    return handler


_CONFIGURED: list[logging.Handler] = []


def step_fields(ctx: StepContext, **more: Any) -> dict[str, Any]:
    """`fields` of the step (or handler) a `StepContext` names."""
    return fields(ctx.instance_id, ctx.workflow, ctx.thread_id, ctx.step, ctx.attempt, **more)


# -- OpenTelemetry, imported once, only when installed ---------------------------------------


class _Otel:
    """The OpenTelemetry API's modules (None: not installed). Imported at the first
    engine, not at `import genflow`: an application without it imports nothing."""

    loaded = False
    api: Any = None

    @classmethod
    def get(cls) -> Any:
        if not cls.loaded:
            cls.loaded = True
            try:
                from opentelemetry import context, metrics, trace
                from opentelemetry.trace.propagation.tracecontext import (
                    TraceContextTextMapPropagator,
                )
            except ImportError:
                cls.api = None
            else:
                cls.api = _Api(context, metrics, trace, TraceContextTextMapPropagator())
        return cls.api


class _Api:
    __slots__ = ("context", "metrics", "propagator", "trace")

    def __init__(self, context: Any, metrics: Any, trace: Any, propagator: Any) -> None:
        self.context, self.metrics, self.trace, self.propagator = (
            context, metrics, trace, propagator)


def otel_available() -> bool:
    """Whether the OpenTelemetry API (the extra `genflow[otel]`) is installed."""
    return _Otel.get() is not None


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the span active now (the *inject* end), or None
    without OpenTelemetry or outside a valid span. Keep it with work that another
    process does later (an instance's `State.trace`, a child, an outbox message)."""
    api = _Otel.get()
    if api is None:
        return None
    carrier: dict[str, str] = {}
    api.propagator.inject(carrier)
    return carrier.get("traceparent")


@contextlib.contextmanager
def traced(traceparent: str | None) -> Iterator[None]:
    """Make `traceparent` (from `current_traceparent`) the parent of the spans
    begun in the body (the *extract* end): ``with traced(message.trace):
    engine.send(...)``. A no-op for None, or without OpenTelemetry."""
    api = _Otel.get()
    if api is None or not traceparent:
        yield
        return
    token = api.context.attach(api.propagator.extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        api.context.detach(token)


class Metrics:
    """The engine's instruments (on the meter ``genflow``):

    * ``genflow.steps``: step runs and handler calls, by ``genflow.workflow``,
      ``genflow.kind`` (step, setup, handle, teardown) and ``genflow.outcome``
      (ok, error);
    * ``genflow.step.failures``: the runs among them that raised;
    * ``genflow.step.retries``: failed steps and handlers that will be tried again;
    * ``genflow.instance.failures``: instances that failed (no attempt left);
    * ``genflow.lease.takeovers``: instances claimed from a worker whose lease expired;
    * ``genflow.due.backlog``: instances due now and not yet claimed (a gauge, read
      from the store when the SDK collects);
    * ``genflow.step.duration``: seconds per step run and handler call (a histogram).

    Made once per meter provider and shared by the engines that use it.
    """

    _made: ClassVar[dict[int, Metrics]] = {}
    _lock = threading.Lock()

    @classmethod
    def of(cls, api: Any, engine: Engine, provider: Any) -> Metrics:
        with cls._lock:
            key = id(provider)  # (None: the global provider)
            made = cls._made.get(key)
            if made is None:
                made = cls._made[key] = cls(api, provider)
            made.engines.add(engine)
            return made

    def __init__(self, api: Any, provider: Any = None) -> None:
        from genflow import __version__

        #: the engines whose due backlog the gauge reads (each with its store)
        self.engines: weakref.WeakSet[Engine] = weakref.WeakSet()
        self.provider = provider  # (kept: its id is this one's key)
        meter = api.metrics.get_meter("genflow", __version__, meter_provider=provider)
        self.steps = meter.create_counter("genflow.steps", unit="{run}",
                                          description="step runs and handler calls")
        self.failures = meter.create_counter("genflow.step.failures", unit="{run}",
                                             description="step runs and handler calls that raised")
        self.retries = meter.create_counter("genflow.step.retries", unit="{retry}",
                                            description="failed steps tried again later")
        self.instance_failures = meter.create_counter(
            "genflow.instance.failures", unit="{instance}",
            description="instances that failed with no attempt left")
        self.takeovers = meter.create_counter(
            "genflow.lease.takeovers", unit="{instance}",
            description="instances claimed from a worker whose lease had expired")
        self.duration = meter.create_histogram("genflow.step.duration", unit="s",
                                               description="step run and handler call times")
        observation = api.metrics.Observation

        def backlog(_options: Any) -> list[Any]:
            return [observation(engine.store.count_due(engine.clock(), engine.runs()),
                                {"genflow.engine": engine.owner})
                    for engine in list(self.engines)]

        meter.create_observable_gauge("genflow.due.backlog", [backlog], unit="{instance}",
                                      description="instances due now, not yet claimed")


class _Watch:
    """One operation's span: begun by `Observer.begin`, ended by `end`."""

    __slots__ = ("api", "span", "token")

    def __init__(self, api: Any, span: Any) -> None:
        self.api, self.span = api, span
        self.token = api.context.attach(api.trace.set_span_in_context(span))

    def end(self) -> None:
        self.api.context.detach(self.token)
        self.span.end()


class _NoWatch:
    __slots__ = ()

    def end(self) -> None:
        pass


_NO_WATCH = _NoWatch()


class Observer:
    """An engine's logs, spans, metrics and journal timings (`Engine.observer`).

    `watching()` is what the engine hands the core's driver for an operation: this
    observer when something watches step calls (the journal, OpenTelemetry, debug
    logging), else None. `otel=False` turns OpenTelemetry off for this engine even
    when it is installed.
    """

    def __init__(self, engine: Engine, *, otel: bool = True, tracer_provider: Any = None,
                 meter_provider: Any = None) -> None:
        self.engine = engine
        self.api: Any = _Otel.get() if otel else None
        self.explicit = tracer_provider is not None or meter_provider is not None
        self.tracer: Any = None
        self.metrics: Metrics | None = None
        if self.api is not None:
            from genflow import __version__

            self.tracer = self.api.trace.get_tracer("genflow", __version__,
                                                    tracer_provider=tracer_provider)
            self.metrics = Metrics.of(self.api, engine, meter_provider)
        #: journal entries of the step calls not written yet, per instance
        self.pending: dict[str, list[tuple[str, dict[str, Any]]]] = {}

    def watching(self) -> Observer | None:
        if self.engine.journal or log.isEnabledFor(_DEBUG) or self._live():
            return self
        return None

    def _live(self) -> bool:
        """Does OpenTelemetry record anything? The API alone (its proxy providers,
        until an application installs an SDK) makes no span worth a step's cost."""
        if self.api is None:
            return False
        if self.explicit:
            return True
        return type(self.api.trace.get_tracer_provider()).__name__ not in _IDLE or \
            type(self.api.metrics.get_meter_provider()).__name__ not in _IDLE

    # -- operations --

    def begin(self, operation: str, instance_id: str, state: State | None = None) -> Any:
        """The span of one operation on one instance, made the current context
        (its steps' spans are its children); `end()` it in a `finally`. With
        `state` (a worker's run), the span's parent is the trace the instance
        keeps (`State.trace`), else the caller's current context."""
        api = self.api
        if api is None:
            return _NO_WATCH
        parent = None
        if state is not None and state.trace:
            parent = api.propagator.extract({"traceparent": state.trace})
        attributes = {"genflow.operation": operation, "genflow.instance_id": instance_id}
        if state is not None:
            attributes["genflow.workflow"] = state.workflow
        span = self.tracer.start_span(f"genflow.{operation}", context=parent,
                                      attributes=attributes)
        return _Watch(api, span)

    def keep_trace(self, state: State) -> None:
        """Keep the current span's context in the instance (at `start` and `send`):
        the steps a worker runs later belong to that trace. Unchanged when no
        span records (the blob then has no trace)."""
        if self.api is None:
            return
        span = self.api.trace.get_current_span()
        if span.is_recording():
            traceparent = current_traceparent()
            if traceparent:
                state.trace = traceparent
                span.set_attribute("genflow.workflow", state.workflow)

    def checkpoint(self, state: State, kind: CheckpointType, op: Any) -> None:
        """After a move: a failed step or handler that will be tried again is a
        warning (with its attempt and next try); every move is a debug record."""
        failed = None if op is None else op.failed
        if failed is not None:
            op.failed = None
            self._failed(state, *failed)
        if log.isEnabledFor(_DEBUG):
            moved = ", ".join(f"{t.id} {t.status.value} at {t.stmt!r}" for t in state.threads)
            log.debug("instance %s: %s: %s (%s)", state.id, kind.value, state.status.value,
                      moved or "no thread", extra=fields(state.id, state.workflow, move=kind.value))

    def _failed(self, state: State, thread: Any, event: Any) -> None:
        if event is not None:  # a handler's setup or teardown
            what, attempt, retry_at, error = (f"handler of event {event.event!r}",
                                              event.attempts, event.retry_at, event.error)
        else:
            what, attempt, retry_at, error = (f"step {thread.stmt!r}", thread.attempts,
                                              thread.retry_at, thread.error)
        extra = fields(state.id, state.workflow, thread.id, thread.stmt, attempt,
                       retry_at=retry_at, error=error)
        if retry_at is not None:
            log.warning("instance %s: %s failed (attempt %d): %s; next try at %s",
                        state.id, what, attempt, error, retry_at.isoformat(), extra=extra)
            if self.metrics is not None:
                self.metrics.retries.add(1, {"genflow.workflow": state.workflow})
        elif thread.status is _UNWINDING and state.status is not _FAILED:
            log.warning("instance %s: %s failed (attempt %d, the last): %s; a Try of thread %s "
                        "handles it", state.id, what, attempt, error, thread.id, extra=extra)

    def settled(self, state: State, failure: BaseException | None) -> None:
        """How an operation's moves ended: an instance that failed is an error record
        (and the operation's span says so)."""
        if failure is None:
            return
        thread = next((t for t in state.threads if t.attempts), None)
        if thread is None:
            extra = fields(state.id, state.workflow, error=type(failure).__name__)
        else:
            extra = fields(state.id, state.workflow, thread.id, thread.stmt, thread.attempts,
                           error=type(failure).__name__)
        if state.status is _FAILED:
            log.error("instance %s failed: %s", state.id, failure, extra=extra)
            if self.metrics is not None:
                self.metrics.instance_failures.add(1, {"genflow.workflow": state.workflow})
        else:
            log.warning("instance %s: %s", state.id, failure, extra=extra)
        if self.api is not None:
            span = self.api.trace.get_current_span()
            span.set_status(self.api.trace.Status(self.api.trace.StatusCode.ERROR,
                                                  f"{type(failure).__name__}: {failure}"))
            span.set_attribute("genflow.status", state.status.value)

    def took_over(self, instance_id: str, workflow: str, previous: str) -> None:
        """A worker claimed an instance whose lease another worker let expire (it
        died, or hung, mid-operation): a warning, and the takeover metric."""
        log.warning("instance %s: lease taken over from worker %s (its lease expired: dead or "
                    "stuck); what it was doing runs again", instance_id, previous,
                    extra=fields(instance_id, workflow, previous_owner=previous))
        if self.metrics is not None:
            self.metrics.takeovers.add(1, {"genflow.workflow": workflow})

    # -- step calls, from the driver --

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], ctx: StepContext) -> Any:
        """Run one call of user code (a step, a handler's setup, handle or teardown)
        inside its span, timed for the journal and the duration histogram."""
        watch = self._before(fn, ctx)
        try:
            value = fn(*args)
        except BaseException as exc:
            self._after(watch, ctx, exc)
            raise
        self._after(watch, ctx, None)
        return value

    async def call_async(self, fn: Callable[..., Any], args: tuple[Any, ...],
                         ctx: StepContext) -> Any:
        """`call`, awaiting what the call returns when it is awaitable."""
        import inspect

        watch = self._before(fn, ctx)
        try:
            value = fn(*args)
            if value is not None and inspect.isawaitable(value):
                value = await value
        except BaseException as exc:
            self._after(watch, ctx, exc)
            raise
        self._after(watch, ctx, None)
        return value

    def _before(self, fn: Callable[..., Any], ctx: StepContext) -> list[Any]:
        kind = "step" if ctx.event is None else getattr(fn, "__name__", "handle")
        span = token = None
        if self.tracer is not None:
            api = self.api
            name = f"genflow.{kind} {ctx.step if ctx.event is None else ctx.event}"
            attributes = {"genflow.instance_id": ctx.instance_id,
                          "genflow.workflow": ctx.workflow, "genflow.thread_id": ctx.thread_id,
                          "genflow.statement": ctx.step, "genflow.attempt": ctx.attempt,
                          "genflow.kind": kind}
            if ctx.event is not None:
                attributes["genflow.event"] = ctx.event
            span = self.tracer.start_span(name, attributes=attributes)
            token = api.context.attach(api.trace.set_span_in_context(span))
        if log.isEnabledFor(_DEBUG):
            log.debug("instance %s: %s %r of thread %s starts (attempt %d)", ctx.instance_id,
                      kind, ctx.step if ctx.event is None else ctx.event, ctx.thread_id,
                      ctx.attempt, extra=step_fields(ctx, kind=kind))
        return [kind, span, token, self.engine.clock() if self.engine.journal else None,
                time.perf_counter()]

    def _after(self, watch: list[Any], ctx: StepContext,
               error: BaseException | None) -> None:
        kind, span, token, started, t0 = watch
        seconds = time.perf_counter() - t0
        if span is not None:
            api = self.api
            if error is not None:
                span.record_exception(error)
                span.set_status(api.trace.Status(api.trace.StatusCode.ERROR,
                                                 f"{type(error).__name__}: {error}"))
            span.set_attribute("genflow.outcome", "ok" if error is None else "error")
            if token is not None:
                api.context.detach(token)
            span.end()
        if self.metrics is not None:
            labels = {"genflow.workflow": ctx.workflow, "genflow.kind": kind,
                      "genflow.outcome": "ok" if error is None else "error"}
            self.metrics.steps.add(1, labels)
            self.metrics.duration.record(seconds, labels)
            if error is not None:
                self.metrics.failures.add(1, labels)
        if started is not None:
            detail: dict[str, Any] = {"thread": ctx.thread_id, "step": ctx.step, "pc": ctx.pc,
                                      "attempt": ctx.attempt, "start": started,
                                      "end": self.engine.clock(), "seconds": round(seconds, 6)}
            if ctx.event is not None:
                detail["event"], detail["phase"] = ctx.event, kind
            if error is not None:
                detail["error"] = f"{type(error).__name__}: {error}"
            self.pending.setdefault(ctx.instance_id, []).append(
                ("step" if ctx.event is None else "handler", detail))
        if log.isEnabledFor(_DEBUG):
            log.debug("instance %s: %s %r of thread %s %s after %.6fs (attempt %d)",
                      ctx.instance_id, kind, ctx.step if ctx.event is None else ctx.event,
                      ctx.thread_id, "ended" if error is None else f"raised {error!r}",
                      seconds, ctx.attempt, extra=step_fields(ctx, kind=kind, seconds=seconds))

    # (the async driver's steps at once: begun here, ended by the task that runs them)

    def open_call(self, fn: Callable[..., Any], ctx: StepContext) -> list[Any]:
        return self._before(fn, ctx)

    def close_call(self, opened: list[Any], ctx: StepContext,
                   error: BaseException | None) -> None:
        self._after(opened, ctx, error)

    def leave(self, opened: list[Any]) -> None:
        """The driver goes on while the call runs in its task: out of its span."""
        if opened[2] is not None:
            self.api.context.detach(opened[2])
            opened[2] = None

    async def finish(self, awaitable: Any, opened: list[Any], ctx: StepContext) -> Any:
        try:
            value = await awaitable
        except BaseException as exc:
            self._after(opened, ctx, exc)
            raise
        self._after(opened, ctx, None)
        return value

    def take(self, instance_id: str) -> list[tuple[str, dict[str, Any]]]:
        """The journal entries of the step calls not written yet (emptied)."""
        return self.pending.pop(instance_id, None) or []
