"""The web console and the JSON HTTP API (`pip install 'genflow[web]'`).

    >>> from genflow.web import create_app          # a Starlette app over an Engine
    >>> app = create_app(engine, token=os.environ["GENFLOW_WEB_TOKEN"])

`genflow serve --store URL` runs it under uvicorn. `callback_url(req)` gives a
handler's `setup` a signed URL that answers exactly that wait
(`genflow.web.signing`). Starlette and uvicorn are imported only by
`create_app` and `serve`: the signing needs neither.
"""

from __future__ import annotations

from typing import Any

from genflow.web.access import LocalAccess, TokenAccess
from genflow.web.signing import CallbackSigner, callback_url

__all__ = ["CallbackSigner", "LocalAccess", "TokenAccess", "callback_url", "create_app"]


def create_app(*args: Any, **kwargs: Any) -> Any:
    """`genflow.web.app.create_app` (see there); a clear error without the extra."""
    try:
        from genflow.web.app import create_app as create
    except ImportError as exc:
        from genflow.errors import GenflowError

        raise GenflowError(f"the web console needs its extra: pip install 'genflow[web]' "
                           f"({exc})") from None
    return create(*args, **kwargs)
