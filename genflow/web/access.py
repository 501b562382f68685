"""Who may use the console and the API: a token, or a check of your own.

Every route but the login form, the shared stylesheet and script, and the
signed callback URLs (whose signature is their credential) asks the server's
`Access` who the request comes from. The default, `TokenAccess`, accepts
``Authorization: Bearer <token>`` (the API) or the session cookie that the
console's login form sets once the token was typed in. A check of your own
(behind a single sign-on proxy, say) is any callable taking the Starlette
`Request` and returning the user's name or None.

The cookie is signed (HMAC) with the server's secret and expires; a request
that relies on it to change something must also carry the ``X-Genflow-CSRF``
header that the console's pages hold, so another site cannot make an
operator's browser post to the console.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from collections.abc import Callable, Mapping
from typing import Any

from genflow.errors import ArgumentError

__all__ = ["Access", "LocalAccess", "Sessions", "TokenAccess", "is_loopback"]

#: A check: the request's user, or None to refuse it.
Access = Callable[[Any], "str | None"]


class TokenAccess:
    """Accepts a bearer token: `tokens` maps a user's name to their token."""

    login = True  #: the console shows a login form for it

    def __init__(self, tokens: Mapping[str, str] | str):
        self.tokens = {"operator": tokens} if isinstance(tokens, str) else dict(tokens)
        if not self.tokens or any(len(t) < 16 for t in self.tokens.values()):
            raise ArgumentError("each access token must be at least 16 characters long")

    def __call__(self, request: Any) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        return self.user_of(token.strip())

    def user_of(self, token: str) -> str | None:
        """The user whose token this is (compared in constant time), or None."""
        found = None
        for user, expected in self.tokens.items():
            if hmac.compare_digest(token.encode(), expected.encode()):
                found = user
        return found


class LocalAccess:
    """`--insecure-local`: anyone who reaches the server, which listens on loopback only."""

    login = False

    def __call__(self, request: Any) -> str | None:
        client = request.client
        return "local" if client is not None and is_loopback(client.host) else None


def is_loopback(host: str) -> bool:
    if host in ("localhost", "testclient"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Sessions:
    """Signed session cookies (user and expiry) and their CSRF tokens."""

    cookie = "genflow_session"

    def __init__(self, secret: bytes, *, seconds: float = 12 * 3600):
        self.key = hmac.new(secret, b"genflow-session-v1", hashlib.sha256).digest()
        self.seconds = seconds

    def issue(self, user: str) -> str:
        body = f"{user}|{int(time.time() + self.seconds)}"
        return f"{body}|{self._mac(body)}"

    def user(self, cookie: str | None) -> str | None:
        if not cookie or cookie.count("|") < 2:
            return None
        body, _, mac = cookie.rpartition("|")
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        user, _, expires = body.rpartition("|")
        if not expires.isdigit() or int(expires) < time.time():
            return None
        return user

    def csrf(self, cookie: str) -> str:
        return self._mac(f"csrf|{cookie}")

    def _mac(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()
