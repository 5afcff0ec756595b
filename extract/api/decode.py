"""Pure transform: timeseries page bytes -> one text frame of raw samples (RAW_COLUMNS), plus the cursor.

Both API shapes of docs/DESIGN.md are read in one pass: the schema lists the keys of both and Polars leaves the
absent ones null, which also tells us which shape arrived. The real API's compact spelling, by far the most
common page, first gets a faster and leaner reading as NDJSON (`_decode_compact_real`). No Python loop over
samples; typing and checks happen next, in `extract.api.parse`.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import polars as pl

from extract.errors import InvalidBodyError, UnexpectedResponseError

# Every sample column is read as text: a real server may send numbers, numeric strings or booleans in
# `value`, and timestamps in several ISO spellings; coercion happens below, vectorized, with reasons.
RAW_COLUMNS = ("point_name", "timestamp", "value", "quality", "metadata")
RAW_SCHEMA = {name: pl.String() for name in RAW_COLUMNS}

_REAL_SAMPLE = pl.Struct({"name": pl.String(), "time": pl.String(), "value": pl.String()})
_SEED_SAMPLE = pl.Struct(
    {
        "point_name": pl.String(),
        "timestamp": pl.String(),
        "value": pl.String(),
        "quality": pl.String(),
        "metadata": pl.String(),
    }
)
_PAGINATION = pl.Struct({"next_cursor": pl.String(), "has_more": pl.Boolean()})


_PAGE_SCHEMA = {
    "point_samples": pl.List(_REAL_SAMPLE),
    "data": pl.List(_SEED_SAMPLE),
    "next_cursor": pl.String(),
    "has_more": pl.Boolean(),
    "pagination": _PAGINATION,
}


@dataclass(frozen=True)
class RawPage:
    """One decoded page: samples as text columns (RAW_COLUMNS) plus the pagination fields."""

    samples: pl.DataFrame
    next_cursor: str | None
    has_more: bool


@dataclass(frozen=True)
class PendingPage:
    """A timeseries page whose pagination fields are read and whose samples are decoded on `samples()`, so
    the thread that fetches the next page does not decode this one (`read_timeseries_page`)."""

    next_cursor: str | None
    has_more: bool
    empty: bool
    _body: bytes
    _records: slice
    """Where the sample records' text is in the body, as its tail was read."""
    _decoded: RawPage | None

    def samples(self) -> pl.DataFrame:
        """The samples (RAW_COLUMNS). InvalidBodyError or UnexpectedResponseError, as `decode_timeseries_page`
        raises them, for a page whose samples do not decode."""
        if self._decoded is not None:
            return self._decoded.samples
        samples = _compact_samples(self._body[self._records])
        return samples if samples is not None else decode_timeseries_page(self._body).samples


def read_timeseries_page(body: bytes) -> PendingPage:
    """The pagination fields of a timeseries page now, its samples later (`PendingPage.samples`). In the real
    API's compact spelling the fields are read from the tail alone; any other page, and one whose tail is
    not whole JSON (truncated), is decoded whole now, raising what `decode_timeseries_page` raises."""
    tail = _compact_tail(body)
    if tail is None:
        page = decode_timeseries_page(body)
        return PendingPage(page.next_cursor, page.has_more, page.samples.is_empty(), b"", slice(0), page)
    next_cursor, has_more, records = tail
    # A page of samples holds a `{`: the records are copied only to tell a blank from something else.
    empty = body.find(b"{", records.start, records.stop) < 0 and not body[records].strip()
    return PendingPage(next_cursor, has_more, empty, body, records, None)


def decode_timeseries_page(body: bytes) -> RawPage:
    """Decode a timeseries page of either shape. Raises InvalidBodyError on truncated or malformed JSON,
    UnexpectedResponseError on whole JSON of an unknown shape."""
    return _decode_compact_real(body) or _decode_any(body)


# The real API's compact spelling: `{"point_samples":[{"name":...},...],"next_cursor":...,"has_more":...}`.
_COMPACT_HEAD = b'{"point_samples":['
_COMPACT_TAIL = b'],"next_cursor":'
# In valid JSON this sequence only occurs between two sample objects: inside a string its `"` would have to
# be escaped, and a nested array split here would leave unbalanced lines, which fail to parse.
_RECORD_SEPARATOR = b'},{"name":'
_REAL_RECORD = {"name": pl.String(), "time": pl.String(), "value": pl.String()}


def _compact_tail(body: bytes) -> tuple[str | None, bool, slice] | None:
    """(next_cursor, has_more, where the sample records' text is) of a page in the compact real spelling, read
    from its tail; None for any other spelling or a tail that is not whole JSON."""
    if not body.startswith(_COMPACT_HEAD):
        return None
    tail_at = body.rfind(_COMPACT_TAIL)
    if tail_at < len(_COMPACT_HEAD) - 1:
        return None
    try:
        tail = json.loads(b"{" + body[tail_at + 2 :])
    except ValueError:
        return None
    if not isinstance(tail, dict) or not isinstance(tail.get("next_cursor"), str | None):
        return None
    next_cursor, has_more = tail.get("next_cursor"), tail.get("has_more")
    more = bool(has_more) if has_more is not None else bool(next_cursor)
    return next_cursor or None, more, slice(len(_COMPACT_HEAD), tail_at)


def _decode_compact_real(body: bytes) -> RawPage | None:
    """The compact real shape read as NDJSON (one sample per line): about three times faster than the general
    reader, with a third of its peak memory. None for any other spelling; the general reader then decides."""
    tail = _compact_tail(body)
    if tail is None:
        return None
    next_cursor, has_more, records = tail
    samples = _compact_samples(body[records])
    return None if samples is None else RawPage(samples, next_cursor, has_more)


def _compact_samples(records: bytes) -> pl.DataFrame | None:
    """The compact real spelling's sample records (RAW_COLUMNS); None when they do not read as NDJSON."""
    if b"\n" in records:
        return None
    try:
        samples = pl.read_ndjson(
            io.BytesIO(records.replace(_RECORD_SEPARATOR, b'}\n{"name":')), schema=_REAL_RECORD
        )
    except (ValueError, pl.exceptions.PolarsError):
        return None
    return samples.select(
        point_name="name",
        timestamp="time",
        value="value",
        quality=pl.lit(None, pl.String()),
        metadata=pl.lit(None, pl.String()),
    )


def _decode_any(body: bytes) -> RawPage:
    try:
        envelope = pl.read_json(io.BytesIO(body), schema=_PAGE_SCHEMA)
    except pl.exceptions.PolarsError:
        return _decode_irregular(body)
    if envelope.height != 1:
        raise _unexpected(body, "is not a JSON object")
    # Only the small fields go through Python: `row()` on the sample lists would build 100k dicts per page.
    row = envelope.select(
        real=pl.col("point_samples").is_not_null(),
        seed=pl.col("data").is_not_null(),
        next_cursor="next_cursor",
        has_more="has_more",
        pagination="pagination",
    ).row(0, named=True)
    if row["real"]:
        samples = (
            envelope.select(pl.col("point_samples").explode(empty_as_null=False))
            .unnest("point_samples")
            .rename({"name": "point_name", "time": "timestamp"})
            .with_columns(quality=pl.lit(None, pl.String()), metadata=pl.lit(None, pl.String()))
        )
        next_cursor, has_more = row["next_cursor"], row["has_more"]
    elif row["seed"]:
        samples = envelope.select(pl.col("data").explode(empty_as_null=False)).unnest("data")
        pagination = row["pagination"] or {}
        next_cursor, has_more = pagination.get("next_cursor"), pagination.get("has_more")
    else:
        raise _unexpected(body, "has neither 'point_samples' nor 'data'")
    return RawPage(
        samples=samples.select(pl.col(c).cast(pl.String()) for c in RAW_COLUMNS),
        next_cursor=next_cursor or None,
        has_more=bool(has_more) if has_more is not None else bool(next_cursor),
    )


def _unexpected(body: bytes, what: str) -> UnexpectedResponseError:
    # Whole JSON of the wrong shape will not change when asked again: not retried, unlike a truncated body.
    return UnexpectedResponseError(
        f"timeseries page {what} ({len(body)} bytes): not an ACE IoT API response; check that ACEIOT_API_URL "
        "is the API's base URL (it usually ends in /api)"
    )


def _decode_irregular(body: bytes) -> RawPage:
    """Valid JSON that the typed readers cannot hold, such as an object or array where text or a number is
    expected (seed-shape `metadata` objects, or a malformed `value`): read with the json module, every sample
    field as JSON text, so each sample is still kept or rejected with a reason. A Python loop, but only for
    such pages; truncated or malformed JSON raises InvalidBodyError (retried when raised on receipt, inside
    the client's retry loop: `read_timeseries_page`)."""
    try:
        page = json.loads(body)
    except ValueError as exc:
        raise InvalidBodyError(f"timeseries page is not valid JSON ({len(body)} bytes): {exc}") from exc
    if not isinstance(page, dict):
        raise _unexpected(body, "is not a JSON object")
    keys: tuple[str | None, ...]
    if isinstance(page.get("point_samples"), list):
        records, keys = page["point_samples"], ("name", "time", "value", None, None)
        next_cursor, has_more = page.get("next_cursor"), page.get("has_more")
    elif isinstance(page.get("data"), list):
        records, keys = page["data"], ("point_name", "timestamp", "value", "quality", "metadata")
        pagination = page["pagination"] if isinstance(page.get("pagination"), dict) else {}
        next_cursor, has_more = pagination.get("next_cursor"), pagination.get("has_more")
    else:
        raise _unexpected(body, "has neither 'point_samples' nor 'data'")
    columns = {
        column: [_as_text(r.get(key)) if key and isinstance(r, dict) else None for r in records]
        for column, key in zip(RAW_COLUMNS, keys, strict=True)
    }
    return RawPage(
        samples=pl.DataFrame(columns, schema=RAW_SCHEMA),
        next_cursor=_as_text(next_cursor) or None,
        has_more=bool(has_more) if has_more is not None else bool(next_cursor),
    )


def _as_text(value: object) -> str | None:
    """A JSON value as the typed readers spell it in a text column: strings as is, the rest as JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))
