"""Signed callback URLs: an outside system answers exactly one wait, over HTTP.

A handler's `setup` is given the `CallbackRequest` of the wait it starts
(instance, thread, event and the thread's counter `pc`). `CallbackSigner.url`
turns it into a URL that the console's server answers
(``POST <base>/api/v1/callbacks/<token>`` with the payload as JSON):

* the token is the request's four fields and an HMAC-SHA256 of them under the
  server's secret, so it cannot be forged or altered (another instance, thread,
  event or counter breaks the signature: 403);
* the counter makes it single-wait: once the thread moves on (the event came,
  another event won, a timer fired) the engine refuses the stale counter and the
  URL answers 410 Gone, even if the thread later waits for the same event again.

The signer needs the same secret as the server (`genflow serve` reads it from
``GENFLOW_WEB_SECRET`` or ``--secret-file``) and the URL outside systems reach it
by (``GENFLOW_WEB_URL``, e.g. ``https://ops.example.com/genflow``).
`callback_url(req)` builds one from those two environment variables.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from typing import Any

import attrs

from genflow.state import CallbackRequest
from genflow.web.errors import BadSignatureError, WebError

__all__ = ["CallbackSigner", "callback_url"]

_PURPOSE = b"genflow-callback-v1\0"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@attrs.frozen
class CallbackSigner:
    """Signs and checks callback tokens with `secret` (at least 16 bytes)."""

    secret: bytes = attrs.field(repr=False)
    base_url: str = ""

    def __attrs_post_init__(self) -> None:
        if len(self.secret) < 16:
            raise WebError("the callback secret must be at least 16 bytes long "
                           "(GENFLOW_WEB_SECRET): a short one can be guessed")

    def token(self, req: CallbackRequest) -> str:
        body = json.dumps([req.instance_id, req.thread_id, req.event, req.pc],
                          separators=(",", ":"), ensure_ascii=False).encode()
        return f"{_b64(body)}.{_b64(self._mac(body))}"

    def url(self, req: CallbackRequest) -> str:
        """The URL that answers `req`'s wait (`base_url` + the callback route)."""
        if not self.base_url:
            raise WebError("a callback URL needs the server's public URL: give "
                           "CallbackSigner(base_url=...) or set GENFLOW_WEB_URL")
        return f"{self.base_url.rstrip('/')}/api/v1/callbacks/{self.token(req)}"

    def verify(self, token: str) -> CallbackRequest:
        """The request a token was signed for; `BadSignatureError` if it was not."""
        body_text, dot, mac_text = token.partition(".")
        try:
            body, mac = _unb64(body_text), _unb64(mac_text)
        except (ValueError, TypeError):
            raise BadSignatureError("the callback token is malformed (cut or altered?)"
                                    ) from None
        # canonical base64 only: the last character's unused bits must not let two
        # spellings of one token through
        canonical = _b64(body) == body_text and _b64(mac) == mac_text
        if not dot or not canonical or not hmac.compare_digest(mac, self._mac(body)):
            raise BadSignatureError("the callback token's signature does not match: it was "
                                    "altered, or signed with another server's secret")
        fields: Any = json.loads(body)
        instance_id, thread_id, event, pc = fields
        return CallbackRequest(instance_id, thread_id, event, int(pc))

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self.secret, _PURPOSE + body, hashlib.sha256).digest()


def callback_url(req: CallbackRequest, *, secret: str | bytes | None = None,
                 base_url: str | None = None) -> str:
    """The signed URL that answers `req`'s wait, for a handler's `setup` to hand out.

    `secret` and `base_url` default to ``GENFLOW_WEB_SECRET`` and
    ``GENFLOW_WEB_URL`` (the values `genflow serve` uses).
    """
    key = secret if secret is not None else os.environ.get("GENFLOW_WEB_SECRET", "")
    if not key:
        raise WebError("a callback URL needs the server's secret: set GENFLOW_WEB_SECRET "
                       "(the same value `genflow serve` reads) or pass secret=...")
    raw = key.encode() if isinstance(key, str) else key
    return CallbackSigner(raw, base_url if base_url is not None
                          else os.environ.get("GENFLOW_WEB_URL", "")).url(req)
