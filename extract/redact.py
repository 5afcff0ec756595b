"""Secrets never reach a message: every form a key can take in text is masked wherever errors are written.

A key shows up in more shapes than its raw text: Python's repr and a bytes repr escape a trailing newline as
`\\n`, JSON escapes it differently, URLs percent-encode it. Each registered secret is masked in all of them.
"""

from __future__ import annotations

import json
import threading
from urllib.parse import quote

_LOCK = threading.Lock()
_FORMS: set[str] = set()
MASK = "***"


def register(secret: str) -> None:
    """Mask `secret` in everything `redact` sees from now on (in this process)."""
    forms = {
        secret,
        secret.strip(),
        repr(secret)[1:-1],
        repr(secret.encode("utf-8", "replace"))[2:-1],
        json.dumps(secret)[1:-1],
        quote(secret, safe=""),
    }
    with _LOCK:
        _FORMS.update(form for form in forms if len(form) >= 4)


def redact(text: str) -> str:
    with _LOCK:
        forms = sorted(_FORMS, key=len, reverse=True)
    for form in forms:
        text = text.replace(form, MASK)
    return text


def one_line(error: BaseException | str, limit: int | None = None) -> str:
    """`error` fit for a one-line message: whitespace collapsed (servers and libraries write several lines),
    every secret masked, cut to `limit` characters. An exception is named by its type (`OSError: ...`)."""
    line = redact(" ".join(str(error).split()))
    if limit is not None and len(line) > limit:
        line = line[: limit - 1] + "…"
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {line}" if line else type(error).__name__
    return line
