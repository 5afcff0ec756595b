"""Typed failures: every error ace-etl raises on purpose is defined here. Every message is one line that
names the problem and the fix.

Callers (the CLI, Prefect flows) map these to exit statuses and task states; nothing returns status dicts.
The hierarchy, with when each is raised:

* AceEtlError - base class; `exit_code` 1 unless said otherwise
  * ConfigError - bad usage or configuration: an option, the data dir, the limits file (exit status 2)
  * ApiError - the API answered with an error that retrying cannot fix (`status` holds the HTTP status)
    * AuthError - 401/403: the key was rejected
    * SiteNotFoundError - 404: the site does not exist, or the key cannot see it
    * BadRequestError - 400 that is not about the cursor: the query itself is wrong
      * CursorError - the cursor was rejected or expired: the window restarts from its beginning
    * RetriesExhaustedError - a transient failure (429, 5xx, network, truncated body) outlasted the retries
    * UnexpectedResponseError - a whole 200 JSON body that is not what the ACE IoT API sends
    * ResponseTooLargeError - a response grew past the size limits, compressed or decompressed
  * PaginationError - the server's pagination misbehaved, e.g. it handed back a cursor it had already given
  * InvalidBodyError - a 200 body that is not the JSON we expect (truncated or malformed); retried
  * NoPointsError - the site has no configured point to collect
  * BudgetError - the shared request budget file is locked too long by another process, or damaged
  * CancelledError - the run was asked to stop (Ctrl-C): at the next page or wait
  * SiteBusyError - another run held the site's lease for longer than this run would wait
  * LeaseLostError - this run stalled past its lease's TTL and another run took the site over
  * DamagedStateError - a checkpoint's staged files are gone: the checkpoint is set aside
  * ObjectStoreError - the object store of an `s3://` data dir cannot be reached or refused us
  * LakeError - a Delta table of the landing could not be read or written
  * TransformError - dbt could not build the warehouse (a model or an error-severity test failed)
  * WarehouseError - the published warehouse cannot be read: locked, not DuckDB, or without a table
  * LandingBusyError - a commit waited too long for a build reading the landing, or a build for a commit
  * WindowFailed - a window's extraction failed: carries its `failed` metrics row (`result`) and the error
    (`__cause__`) that a run reports and raises
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # metrics imports Polars; this module stays importable without it
    from extract.run.metrics import WindowResult


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


class UnexpectedResponseError(ApiError):
    """A 200 whose JSON is whole but not what the ACE IoT API sends: asking again would not change it."""


class ResponseTooLargeError(ApiError):
    """A response grew past the size limits (compressed or decompressed): reading on could exhaust memory."""


class PaginationError(AceEtlError):
    """The server's pagination misbehaved, e.g. it handed back a cursor it had already given."""


class InvalidBodyError(AceEtlError):
    """A 200 response whose body is not the JSON we expect (truncated or malformed); retried."""


class NoPointsError(AceEtlError):
    """The site has no configured point to collect, so a run would land nothing and call it complete."""


class BudgetError(AceEtlError):
    """The shared request budget file cannot be used: locked too long by another process, or damaged."""


class CancelledError(AceEtlError):
    """The run was asked to stop (Ctrl-C); landed pages are checkpointed and a re-run resumes."""


class SiteBusyError(AceEtlError):
    """Another run held the site's lease for longer than this run was willing to wait."""


class LeaseLostError(AceEtlError):
    """This run's lease expired and another run took the site over (this run stalled past the TTL)."""


class DamagedStateError(AceEtlError):
    """A checkpoint's files are gone; the checkpoint was set aside and the window is fetched again."""


class ObjectStoreError(AceEtlError):
    """The object store cannot be reached or refused us."""


class LakeError(AceEtlError):
    """A Delta table of the landing could not be read or written."""


class TransformError(AceEtlError):
    """dbt could not build the warehouse; the published warehouse is left as it was."""


class WarehouseError(AceEtlError):
    """The published warehouse cannot be read: locked by a writer, not a DuckDB file, or without a table."""


class LandingBusyError(AceEtlError):
    """A commit waited too long for a warehouse build reading the landing, or a build for a commit."""


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
