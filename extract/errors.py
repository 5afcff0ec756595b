"""Typed failures. Every message is one line that names the problem and the fix.

Callers (the CLI, Prefect flows) map these to exit statuses and task states; nothing returns status dicts.
"""

from __future__ import annotations


class AceEtlError(Exception):
    """Base class of every error ace-etl raises on purpose."""

    exit_code = 1


class ConfigError(AceEtlError):
    """Bad usage or configuration (exit status 2)."""

    exit_code = 2


class ApiError(AceEtlError):
    """The API answered with an error that retrying cannot fix."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthError(ApiError):
    """401/403: the key was rejected."""


class SiteNotFoundError(ApiError):
    """404: the site does not exist (or the key cannot see it)."""


class BadRequestError(ApiError):
    """400 that is not about the cursor: the query itself is wrong."""


class CursorError(BadRequestError):
    """The cursor was rejected or expired: the caller restarts the window from its beginning."""


class RetriesExhaustedError(ApiError):
    """A transient failure (429, 5xx, network, truncated body) outlasted the retry policy."""


class PaginationError(AceEtlError):
    """The server's pagination misbehaved, e.g. it handed back a cursor it had already given."""


class InvalidBodyError(AceEtlError):
    """A 200 response whose body is not the JSON we expect (truncated or malformed); retried."""


class NoPointsError(AceEtlError):
    """The site has no configured point to collect, so a run would land nothing and call it complete."""


class UnexpectedResponseError(ApiError):
    """A 200 whose JSON is whole but not what the ACE IoT API sends: asking again would not change it."""


class BudgetError(AceEtlError):
    """The shared request budget file cannot be used: locked too long by another process, or damaged."""


class ResponseTooLargeError(ApiError):
    """A response grew past the size limits (compressed or decompressed): reading on could exhaust memory."""


class LandingBusyError(AceEtlError):
    """A commit waited too long for a warehouse build reading the landing, or a build for a commit."""


# Here rather than at the top: WindowFailed is the one failure that needs them.
from typing import TYPE_CHECKING, Any  # noqa: E402

if TYPE_CHECKING:  # metrics imports Polars; this module stays importable without it
    from extract.metrics import WindowResult


class WindowFailed(AceEtlError):
    """A window's extraction failed: `result` is its `failed` metrics row (already recorded), `__cause__`
    the error that failed it (the one a run reports and raises)."""

    def __init__(self, result: WindowResult, cause: Exception) -> None:
        super().__init__(str(cause))
        self.result = result
        self.__cause__ = cause

    def __reduce__(self) -> tuple[Any, ...]:
        # Dask workers hand failures back pickled: rebuild from the row and the cause, not from the message.
        return (WindowFailed, (self.result, self.__cause__))
