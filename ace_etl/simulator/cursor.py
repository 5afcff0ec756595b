"""Opaque pagination cursors: base64url JSON `{q, o, iat}` plus an HMAC, bound to the query that made them.

The signing key derives from the API key rather than from a per-process secret, so a checkpointed cursor
stays valid across simulator restarts, as it would against the real service.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math


class CursorError(ValueError):
    """The cursor is not one this query issued (`invalid cursor`) or is too old (`cursor expired`)."""


def signing_key(api_key: str) -> bytes:
    return hashlib.sha256(b"ace-etl-simulator-cursor\0" + api_key.encode()).digest()


def query_fingerprint(site: str, start_us: int, end_us: int, raw: bool, page_size: int) -> str:
    """Instants, not their spelling, identify the query: `...Z` and `...+00:00` are the same window."""
    text = json.dumps([site, start_us, end_us, raw, page_size])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest()[:16])


def issue_cursor(key: bytes, query: str, offset: int, now: float) -> str:
    payload = _b64(
        json.dumps({"q": query, "o": offset, "iat": round(now, 3)}, separators=(",", ":")).encode()
    )
    return f"{payload}.{_signature(key, payload)}"


def read_cursor(
    key: bytes, cursor: str, query: str, now: float, ttl: float | None, expired_until: float = -math.inf
) -> int:
    """The offset the cursor points at; CursorError if it was tampered with, is foreign or has expired:
    it is older than `ttl`, or was issued at or before `expired_until` (a test expiring every cursor)."""
    payload, _, signature = cursor.partition(".")
    if not hmac.compare_digest(signature.encode(), _signature(key, payload).encode()):
        raise CursorError("invalid cursor")
    try:
        fields = json.loads(_unb64(payload))
        offset, issued, bound_to = int(fields["o"]), float(fields["iat"]), fields["q"]
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise CursorError("invalid cursor") from error
    if bound_to != query or offset < 0:
        raise CursorError("invalid cursor")
    if (ttl is not None and now - issued > ttl) or issued <= expired_until:
        raise CursorError("cursor expired")
    return offset
