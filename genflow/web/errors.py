"""The errors the HTTP layer adds, and the status each genflow error answers with.

Every refusal is a `GenflowError` whose message says what to do, answered as
``{"error": {"type": "PayloadError", "message": "..."}}`` with a 4xx status
(`status_for`): the same typed errors as the Python API, never a traceback.
"""

from __future__ import annotations

from genflow.errors import (
    ArgumentError,
    ConcurrencyError,
    DefinitionError,
    DuplicateInstanceError,
    DuplicateScheduleError,
    EventError,
    GenflowError,
    HandlerError,
    InstanceNotFoundError,
    InvalidIdError,
    MoveError,
    PayloadError,
    QueueNotFoundError,
    ScheduleError,
    ScheduleNotFoundError,
    SerializationError,
    StaleCallbackError,
    UnknownWorkflowError,
    WorkflowFinishedError,
)

__all__ = ["AccessDeniedError", "BadSignatureError", "CallbackGoneError", "NotFoundError",
           "PayloadTooLargeError", "RequestError", "WebError", "status_for"]


class WebError(GenflowError):
    """A request the HTTP layer refuses before it reaches the engine."""


class RequestError(WebError):
    """The request is malformed: not JSON, a field missing or of the wrong type."""


class PayloadTooLargeError(WebError):
    """The request body is larger than the server's limit (`--max-body`)."""


class AccessDeniedError(WebError):
    """No valid token (or session) came with the request."""


class BadSignatureError(WebError):
    """A callback URL whose signature does not match: forged, cut or from another server."""


class CallbackGoneError(WebError):
    """A callback URL for a wait that is over (the event came, the thread moved on)."""


class NotFoundError(WebError):
    """No such route, diagram or page."""


#: Most specific first: the first class an error is an instance of decides.
_STATUSES: list[tuple[type[BaseException], int]] = [
    (AccessDeniedError, 401),
    (BadSignatureError, 403),
    (NotFoundError, 404),
    (PayloadTooLargeError, 413),
    (RequestError, 422),
    (InvalidIdError, 422),
    (ArgumentError, 422),
    (CallbackGoneError, 410),
    (InstanceNotFoundError, 404),
    (UnknownWorkflowError, 404),
    (PayloadError, 422),
    (StaleCallbackError, 409),
    (WorkflowFinishedError, 409),
    (EventError, 409),
    (DuplicateInstanceError, 409),
    (ConcurrencyError, 409),
    (MoveError, 409),
    (HandlerError, 422),
    (SerializationError, 422),
    (DefinitionError, 422),
    # schedules and queues (genflow.schedules, genflow.queues)
    (ScheduleNotFoundError, 404),
    (QueueNotFoundError, 404),
    (DuplicateScheduleError, 409),
    (ScheduleError, 422),
    (GenflowError, 409),
]


def status_for(exc: BaseException) -> int:
    """The HTTP status a refused request answers with (500 only for a bug)."""
    for cls, status in _STATUSES:
        if isinstance(exc, cls):
            return status
    return 500


class MalformedJSONError(RequestError):
    """The body is not JSON (or not the JSON genflow takes: NaN, too deep, too big a number)."""


_STATUSES.insert(0, (MalformedJSONError, 400))
__all__ += ["MalformedJSONError"]
