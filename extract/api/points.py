"""Which points to keep: exact names and glob patterns, from a list, a file or the API's configured points.

Names from the API are exact, whatever they contain (`PointSelector.exact`): a point named `zone[1]`, `a*b` or
` lead` is that point and no other. Patterns come only from what a user typed (`PointSelector.from_list`):
each entry is stripped of surrounding whitespace; an entry in double quotes is a JSON string and an exact
name (`"site/zone[1]/temp"`, `"site/ahu-1/temp "`); any other entry with `*?[` is a glob, and one without
is an exact name.

Glob semantics (fnmatch-like, case-sensitive, whole name): `*` matches any run of characters *including* `/`,
`?` one character, `[abc]`/`[!abc]` a class (`[[]`, `[*]`, `[?]` match a literal `[`, `*`, `?`). `*` crossing
`/` is what makes `*/ahu-1/*` mean "every point of device ahu-1 of any site", however deep the site or point
part of the name is.

Points files are UTF-8, with or without a byte order mark, with any line endings (LF, CRLF, CR).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from extract.api import fields
from extract.errors import ConfigError
from extract.lake import schemas

_GLOB_CHARS = frozenset("*?[")
_REGEX_META = frozenset("\\.+*?()|[]{}^$#&-~")
# A trailing comment needs whitespace before `#`, so `#` inside a point name survives.
_TRAILING_COMMENT = re.compile(r"\s+#.*$")
# Only the three line endings: `str.splitlines` would also split names at \x1c, \x85 or U+2028.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_JSON = json.JSONDecoder()


@dataclass(frozen=True)
class PointSelector:
    """Exact names plus glob patterns; `expr` applies the selection to a whole column at once."""

    names: frozenset[str]
    patterns: tuple[str, ...] = ()

    @classmethod
    def exact(cls, names: Iterable[str]) -> PointSelector:
        """Exactly these names, as the API spells them: never stripped, never read as patterns."""
        return cls(names=frozenset(names))

    @classmethod
    def from_list(cls, entries: Iterable[str]) -> PointSelector:
        """What a user typed: exact names (plain or quoted) and glob patterns; blank entries are ignored.
        Raises ConfigError for a quoted entry that is not a JSON string or a pattern that does not compile."""
        names: set[str] = set()
        patterns: dict[str, None] = {}
        for entry in (e.strip() for e in entries):
            if entry.startswith('"'):
                names.add(_quoted_name(entry))
            elif _is_glob(entry):
                _glob_regex(entry)  # fail early, with the pattern in the message
                patterns[entry] = None
            elif entry:
                names.add(entry)
        return cls(names=frozenset(names), patterns=tuple(patterns))

    def expr(self, column: str = "point_name") -> pl.Expr:
        """Boolean expression: the point is selected. Null names are never selected."""
        col = pl.col(column)
        selected = col.is_in(pl.Series(sorted(self.names), dtype=pl.String()).implode())
        if self.patterns:
            selected = selected | col.str.contains("|".join(f"(?:{_glob_regex(p)})" for p in self.patterns))
        return selected.fill_null(False)

    def matches(self, name: str) -> bool:
        """The same test as `expr`, for one name."""
        return name in self.names or any(re.fullmatch(_glob_regex(p), name) for p in self.patterns)

    def __len__(self) -> int:
        return len(self.names) + len(self.patterns)

    def covers(self, other: PointSelector) -> bool:
        """Whether data extracted with this selection holds everything `other` selects: each of its names
        is matched here, and each of its patterns is one of ours (a pattern may match points that only the
        data names, so a different pattern is never assumed covered)."""
        return all(self.matches(name) for name in other.names) and set(other.patterns) <= set(self.patterns)

    def union(self, other: PointSelector) -> PointSelector:
        return PointSelector(
            self.names | other.names, tuple(dict.fromkeys((*self.patterns, *other.patterns)))
        )

    def among(self, names: Iterable[str]) -> list[str]:
        """The given names (e.g. the site's configured points) that this selection keeps, sorted."""
        return sorted(name for name in set(names) if self.matches(name))

    @property
    def fingerprint(self) -> str:
        """Short stable digest of the selection; a checkpoint made under another selection is not resumed."""
        text = json.dumps([sorted(self.names), sorted(self.patterns)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_points_text(text: str) -> list[str]:
    """One entry per line (LF, CRLF or CR); blank lines and `#` comments (whole-line or after whitespace)
    ignored. A quoted entry is kept whole, comment marks and spaces inside its quotes included."""
    entries = []
    for line in _LINE_BREAK.split(text):
        entry = line.strip()
        if entry.startswith('"'):
            entries.append(_without_comment(entry))
        else:
            entry = _TRAILING_COMMENT.sub("", entry)
            if entry and not entry.startswith("#"):
                entries.append(entry)
    return entries


def read_points_file(path: Path) -> list[str]:
    """The entries of a points file (see `parse_points_text`); a leading byte order mark is not part of them."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read points file {path}: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"points file {path} is not UTF-8 (byte {data[exc.start]:#04x} at offset {exc.start}): save it as UTF-8"
        ) from None
    return parse_points_text(text)


def enabled_point_names(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names of the API's configured points whose `collect_enabled` is true."""
    return [str(item["name"]) for item in items if item.get("name") and _truthy(item.get("collect_enabled"))]


def configured_points_frame(
    items: Sequence[Mapping[str, Any]], *, site: str, collected_at: datetime
) -> pl.DataFrame:
    """The API's configured points as a frame of `schemas.POINTS`, one row per named item, sorted by name.

    Reads the real API's point (aceiot-models' `Point`): `id`, `point_type`, `marker_tags`, `kv_tags`,
    `bacnet_data` {device_name, device_id, device_address, object_type, object_index, object_name,
    object_units}, `created`, `updated`, `collect_enabled`, `collect_interval` (whole seconds). Any of them
    may be missing, null or unreadable (a null column then), and nested values may come as JSON text.
    `units` is `kv_tags.units`, else the BACnet `object_units`. `api_item` keeps the whole item as sent."""
    rows = [_point_row(item) for item in items if item.get("name")]
    frame = pl.DataFrame(rows, schema=schemas.POINTS, orient="row")
    return frame.with_columns(
        site_name=pl.lit(site, pl.String()), collected_at=pl.lit(collected_at, schemas.UTC_US)
    ).sort("point_name", maintain_order=True)


def _point_row(item: Mapping[str, Any]) -> tuple[Any, ...]:
    kv_tags = fields.mapping(item.get("kv_tags"))
    bacnet = fields.mapping(item.get("bacnet_data")) or {}
    units = fields.text((kv_tags or {}).get("units")) or fields.text(bacnet.get("object_units"))
    values = {
        "point_name": str(item["name"]),
        "collect_enabled": _truthy(item.get("collect_enabled")),
        "collect_interval": _seconds(item.get("collect_interval")),
        "point_id": fields.integer(item.get("id")),
        "point_type": fields.text(item.get("point_type")),
        "units": units,
        "marker_tags": fields.as_json(fields.tags(item.get("marker_tags"))),
        "kv_tags": None if kv_tags is None else fields.as_json(kv_tags),
        **{key: fields.text(bacnet.get(key)) for key in _BACNET_TEXT},
        "object_index": fields.integer(bacnet.get("object_index")),
        "created": fields.instant(item.get("created")),
        "updated": fields.instant(item.get("updated")),
        "api_item": fields.as_json(item),
    }
    return tuple(values.get(name) for name in schemas.POINTS.names())


_BACNET_TEXT = ("device_name", "device_id", "device_address", "object_type", "object_name")


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _seconds(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return round(float(value))
    except (TypeError, ValueError, OverflowError):
        return None


def _without_comment(quoted: str) -> str:
    """A quoted line without its trailing comment; the whole line when it is not one JSON string and a
    comment (`from_list` then names it)."""
    try:
        _, end = _JSON.raw_decode(quoted)
    except ValueError:
        return quoted
    rest = quoted[end:].strip()
    return quoted[:end] if not rest or rest.startswith("#") else quoted


def _quoted_name(entry: str) -> str:
    try:
        name = json.loads(entry)
    except ValueError:
        name = None
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"bad point entry {entry}: a quoted entry is one exact name written as a JSON string, "
            'e.g. "site/zone[1]/temp" (escape a quote inside as \\")'
        )
    return name


def _is_glob(entry: str) -> bool:
    return not _GLOB_CHARS.isdisjoint(entry)


def _glob_regex(pattern: str) -> str:
    """Anchored regex (valid for both Python `re` and Polars' Rust regex) for a glob pattern."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        i += 1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            close = pattern.find("]", i + 1 if pattern[i : i + 1] in ("!", "]") else i)
            if close == -1:
                raise ConfigError(
                    f"bad point pattern {pattern!r}: '[' without a closing ']'; write a literal '[' as '[[]', "
                    f"or quote an exact name as {json.dumps(pattern, ensure_ascii=False)}"
                )
            body = pattern[i:close]
            i = close + 1
            negate = body.startswith("!")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + "".join(_escape_class_char(c) for c in body) + "]")
        else:
            out.append(_escape(char))
    return "^" + "".join(out) + "$"


def _escape(char: str) -> str:
    # Only true metacharacters: Rust's regex gives some escaped letters and `\<`/`\>` a meaning of their own.
    return "\\" + char if char in _REGEX_META else char


def _escape_class_char(char: str) -> str:
    # Ranges (`a-z`) stay ranges; everything else that is special inside a class is escaped.
    return "\\" + char if char in "\\^[]&~" else char
