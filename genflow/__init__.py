"""genflow: long-running, persisted workflows written as Python generator functions.

A workflow is an attrs class whose `definition()` yields statements. genflow
persists only the data and each thread's program counter, and resumes an
instance by replaying the deterministic definition to the saved statement.

What a workflow author uses is here (`__all__`): the statements, `workflow`,
`Engine` and `open_store`, `Retry`, the handler base, `current_step`,
`FakeClock`, and the errors one catches (every error: `genflow.errors`). The
layer the engine is built on, pure operations on an instance's data and
`State`, is `genflow.lowlevel`; its names are importable from here too, as the
design contract names them (`genflow.resume`, `genflow.State`, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

try:  # the three runtime dependencies, checked first: a checkout imported uninstalled
    import attrs as _attrs  # noqa: F401
    import cattrs as _cattrs  # noqa: F401
    import msgpack as _msgpack  # noqa: F401
except ModuleNotFoundError as _missing:
    raise ModuleNotFoundError(
        f"genflow needs {_missing.name!r}, one of its dependencies (attrs, cattrs, msgpack): "
        "install genflow with them (`pip install -e .` in a checkout, or `pip install "
        "genflow`) in the environment that imports it", name=_missing.name) from None

from genflow.children import Child, Children
from genflow.clock import FakeClock
from genflow.errors import (
    Cancelled,
    ChildFailed,
    ConcurrencyError,
    CorruptStateError,
    DefinitionError,
    DuplicateInstanceError,
    DuplicateThreadError,
    EmptyLoopError,
    EventError,
    EventNotReadyError,
    GenflowError,
    HandlerError,
    InstanceFailedError,
    InstanceNotFoundError,
    InvalidIdError,
    MailboxFullError,
    MoveError,
    MoveLimitError,
    NonDeterminismError,
    NonRetryable,
    NotWaitingError,
    PayloadError,
    ResultTimeoutError,
    SerializationError,
    StaleCallbackError,
    StepError,
    StepTimeoutError,
    StoreError,
    UnknownEventError,
    UnknownThreadError,
    UnknownWorkflowError,
    WorkflowFinishedError,
)
from genflow.handlers import EventHandler, Handler
from genflow.lowlevel import (
    MAIN_THREAD,
    CallbackRequest,
    CheckpointType,
    Location,
    State,
    Thread,
    ThreadStatus,
    WaitEvent,
    WaitEventStatus,
    WorkflowStatus,
    cancel,
    cancel_async,
    deliver,
    deliver_async,
    diagnose,
    dumps,
    handle_callback,
    handle_callback_async,
    loads,
    locate,
    move,
    move_async,
    new_state,
    resume,
    resume_async,
    validate,
    walk,
)
from genflow.mailbox import Kept
from genflow.registry import workflow
from genflow.runtime import StepContext, current_step
from genflow.state import Failure
from genflow.statements import (
    Break,
    Case,
    Continue,
    Default,
    For,
    Go,
    If,
    On,
    Raise,
    Retry,
    Return,
    S,
    Section,
    Sleep,
    Step,
    Switch,
    Timeout,
    Try,
    Wait,
    WaitFor,
)
from genflow.waitgroup import WaitGroup

if TYPE_CHECKING:
    from genflow.engine import Engine, Instance
    from genflow.lease import heartbeat
    from genflow.saga import Saga
    from genflow.stores import open_store

__version__ = "0.1.0"

# The engine and the stores load on first use: `import genflow` stays the core
# (a process that only replays definitions, or a test of them, loads no store).
_LAZY = {"Engine": "genflow.engine", "Instance": "genflow.engine",
         "open_store": "genflow.stores", "heartbeat": "genflow.lease", "Saga": "genflow.saga"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'genflow' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [  # noqa: RUF022 - grouped by what they are for
    # statements
    "Break", "Case", "Child", "Children", "Continue", "Default", "For", "Go", "If", "On",
    "Raise", "Retry", "Return", "S", "Section", "Sleep", "Step", "Switch", "Timeout", "Try",
    "Wait", "WaitFor", "WaitGroup",
    # writing and running workflows
    "Engine", "EventHandler", "FakeClock", "Failure", "Handler", "Instance", "Kept", "Saga",
    "StepContext", "current_step", "heartbeat", "open_store", "workflow",
    # the errors a caller catches (all of them: genflow.errors)
    "Cancelled", "ChildFailed", "ConcurrencyError", "DefinitionError", "DuplicateInstanceError",
    "EventError", "GenflowError", "HandlerError", "InstanceFailedError", "InstanceNotFoundError",
    "MailboxFullError", "NonDeterminismError", "NonRetryable", "PayloadError",
    "ResultTimeoutError", "StepError", "StepTimeoutError",
    "StoreError", "UnknownEventError", "WorkflowFinishedError",
]

# importable from here as the design contract names them; documented in genflow.lowlevel
_CONTRACT = (
    MAIN_THREAD, CallbackRequest, CheckpointType, Location, State, Thread, ThreadStatus,
    WaitEvent, WaitEventStatus, WorkflowStatus, cancel, cancel_async, deliver, deliver_async,
    diagnose, dumps, handle_callback, handle_callback_async, loads, locate, move, move_async,
    new_state, resume, resume_async, validate, walk, CorruptStateError, DuplicateThreadError,
    EmptyLoopError, EventNotReadyError, InvalidIdError, MoveError, MoveLimitError,
    NotWaitingError, SerializationError, StaleCallbackError, UnknownThreadError,
    UnknownWorkflowError,
)
