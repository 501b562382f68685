"""`genflow serve`: the console and the API under uvicorn.

Access is never implicit: a token comes from ``GENFLOW_WEB_TOKEN`` or
``--token-file`` (not from the command line, which other users of the machine
can read in the process list). Without one the server refuses to start, unless
``--insecure-local`` is given, which serves without a token and listens on
loopback only (another host is refused).
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any

from genflow.engine import Engine
from genflow.errors import GenflowError
from genflow.observe import fields
from genflow.web.access import LocalAccess, TokenAccess, is_loopback

__all__ = ["serve"]

log = logging.getLogger("genflow.web")


def _read(path: str | None, what: str) -> str:
    if not path:
        return ""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise GenflowError(f"cannot read the {what} file {path}: {exc}") from None


def serve(engine: Engine, *, host: str = "127.0.0.1", port: int = 8080,
          token_file: str | None = None, secret_file: str | None = None,
          insecure_local: bool = False, max_body: int = 1 << 20, root_path: str = "",
          forwarded_allow_ips: str | None = None, public_url: str | None = None,
          log_level: str = "info", ready: Any = None) -> None:
    """Run the console over `engine` until interrupted (see the module's docstring)."""
    try:
        import uvicorn
    except ImportError as exc:
        raise GenflowError(f"genflow serve needs its extra: pip install 'genflow[web]' ({exc})"
                           ) from None
    from genflow.web.app import create_app

    token = _read(token_file, "token") or os.environ.get("GENFLOW_WEB_TOKEN", "")
    access: Any
    if insecure_local:
        if token:
            raise GenflowError("--insecure-local serves without a token, but a token is set "
                               "(GENFLOW_WEB_TOKEN or --token-file): use one or the other")
        if not is_loopback(host):
            raise GenflowError(f"--insecure-local listens on loopback only, not on {host!r}: "
                               "give --host 127.0.0.1 (or ::1), or set a token")
        access = LocalAccess()
    elif not token:
        raise GenflowError("the console needs an access token: set GENFLOW_WEB_TOKEN or give "
                           "--token-file FILE (or --insecure-local to serve on loopback "
                           "without one)")
    else:
        try:
            access = TokenAccess(token)
        except ValueError as exc:
            raise GenflowError(f"the access token is refused: {exc}") from None
    secret_text = _read(secret_file, "secret") or os.environ.get("GENFLOW_WEB_SECRET", "")
    if secret_text and len(secret_text) < 16:
        raise GenflowError("the secret (GENFLOW_WEB_SECRET or --secret-file) must be at least "
                           "16 characters long")
    secret = secret_text.encode() if secret_text else secrets.token_bytes(32)
    if not secret_text:
        log.warning("no GENFLOW_WEB_SECRET: sessions and callback URLs last as long as this "
                    "process", extra=fields())
    url = public_url if public_url is not None else os.environ.get("GENFLOW_WEB_URL", "")
    app = create_app(engine, access=access, secret=secret, max_body=max_body,
                     callback_url=url)
    config = uvicorn.Config(app, host=host, port=port, root_path=root_path,
                            proxy_headers=forwarded_allow_ips is not None,
                            forwarded_allow_ips=forwarded_allow_ips or "127.0.0.1",
                            log_level=log_level, access_log=False,
                            limit_concurrency=200, timeout_keep_alive=5)
    server = uvicorn.Server(config)
    if ready is not None:
        ready(server)
    server.run()
