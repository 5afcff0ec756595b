"""Reading the loosely typed fields of the API's records (points, sites): any field may be missing or null,
a number may come as text, and a nested object or list may come as JSON text. Each reader returns None for
what it cannot read, so one odd field never costs the rest of a record."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

_INT64 = 2**63


def text(value: Any) -> str | None:
    """A scalar as text (`12` -> "12", `12.0` -> "12"); nested values as JSON; blank text is None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float | bool):
        return json.dumps(value)
    return as_json(value)


def integer(value: Any) -> int | None:
    """A whole number from an int, an integral float or numeric text; None otherwise (booleans included)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip()) if "." in value or "e" in value.lower() else int(value.strip())
        except ValueError:
            return None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        value = int(value)
    return value if isinstance(value, int) and -_INT64 <= value < _INT64 else None


def number(value: Any) -> float | None:
    """A finite float from a number or numeric text; None otherwise (booleans included)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        result = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        return None
    return result if math.isfinite(result) else None


def flag(value: Any) -> bool | None:
    """true/false from a boolean or its text (any case); None otherwise."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def instant(value: Any) -> datetime | None:
    """An ISO 8601 instant (Z, an offset, or none meaning UTC) as an aware UTC datetime; None otherwise."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def mapping(value: Any) -> dict[str, Any] | None:
    """An object, or JSON text of one; None otherwise."""
    value = _decoded(value)
    return dict(value) if isinstance(value, Mapping) else None


def tags(value: Any) -> list[str]:
    """Marker tags: a list (or JSON text of one, or comma-separated text) of non-blank strings, stripped."""
    value = _decoded(value)
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        return []
    return [tag.strip() for tag in value if isinstance(tag, str) and tag.strip()]


def as_json(value: Any) -> str:
    """Stable JSON text (sorted keys, UTF-8 kept)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _decoded(value: Any) -> Any:
    """JSON text of an object or a list, decoded; anything else as it is."""
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
