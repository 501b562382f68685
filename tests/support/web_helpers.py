"""A real console server on loopback for the web tests: uvicorn in a thread of the
test process (so it can run over any store the `make_store` fixture opens), or
`genflow serve` in a process of its own."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

uvicorn = pytest.importorskip("uvicorn", reason="the web extra is not installed: "
                              "pip install 'genflow[web]'")

from genflow.engine import Engine  # noqa: E402
from genflow.web.app import create_app  # noqa: E402

TOKEN = "test-token-0123456789"
SECRET = b"test-secret-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(engine: Engine, **options: Any) -> Iterator[str]:
    """Serve the console over `engine` on a free loopback port; yield its base URL."""
    port = free_port()
    root_path = options.pop("root_path", "")
    options.setdefault("token", TOKEN)
    options.setdefault("secret", SECRET)
    options.setdefault("callback_url", f"http://127.0.0.1:{port}{root_path}")
    app = create_app(engine, **options)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            root_path=root_path, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the console server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_STAY = urllib.request.build_opener(_NoRedirect)


def call(method: str, url: str, body: Any = None, *, token: str | None = TOKEN,
         raw: bytes | None = None, headers: dict[str, str] | None = None,
         follow: bool = True) -> tuple[int, Any, dict[str, str]]:
    """(status, JSON body, headers) of one request (`follow`: redirects)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        opener = urllib.request.urlopen if follow else _STAY.open
        with opener(request, timeout=30) as response:
            text = response.read()
            status, got = response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        text, status, got = error.read(), error.code, dict(error.headers)
    try:
        value = json.loads(text) if text else None
    except ValueError:
        value = text.decode("utf-8", "replace")
    return status, value, {key.lower(): value for key, value in got.items()}


def rows(store: Any) -> dict[str, tuple[Any, ...]]:
    """Every stored instance's saved columns (what a refused request must not change)."""
    return {r.id: (r.blob, r.version, r.status, r.wake_at, tuple(r.waiting_for), r.attempts,
                   r.error) for r in store.list()}
