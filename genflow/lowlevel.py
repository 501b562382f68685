"""The low-level layer: pure operations on an instance's (data, State), and the State.

Everything the `Engine` is built on, for code that keeps instances itself (a
store of its own, a test harness, a simulation): no I/O here. Each operation
moves one instance and calls `checkpoint(kind)` where a store would save;
`CheckpointType.durable` says which checkpoints must be saved.

These names are importable from `genflow` too (the design contract names them
there), but a workflow author needs none of them: see `genflow`'s own `__all__`.
"""

from genflow.codec import dumps, loads
from genflow.replay import walk
from genflow.runtime import (
    Location,
    Operation,
    cancel,
    cancel_async,
    deliver,
    deliver_async,
    diagnose,
    drive,
    drive_async,
    handle_callback,
    handle_callback_async,
    locate,
    move,
    move_async,
    reset_failures,
    resume,
    resume_async,
    send,
    send_async,
)
from genflow.state import (
    MAIN_THREAD,
    CallbackRequest,
    CheckpointType,
    State,
    Thread,
    ThreadStatus,
    WaitEvent,
    WaitEventStatus,
    WorkflowStatus,
    new_state,
)
from genflow.validation import validate

__all__ = [
    "MAIN_THREAD",
    "CallbackRequest",
    "CheckpointType",
    "Location",
    "Operation",
    "State",
    "Thread",
    "ThreadStatus",
    "WaitEvent",
    "WaitEventStatus",
    "WorkflowStatus",
    "cancel",
    "cancel_async",
    "deliver",
    "deliver_async",
    "diagnose",
    "drive",
    "drive_async",
    "dumps",
    "handle_callback",
    "handle_callback_async",
    "loads",
    "locate",
    "move",
    "move_async",
    "new_state",
    "reset_failures",
    "resume",
    "resume_async",
    "send",
    "send_async",
    "validate",
    "walk",
]
