"""Names from the API (sites, points) and error text in markdown artifacts: escaped, so a name reads as
itself and a `|` in it cannot split a table cell."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# Backslash first of all; then what ends a cell (`|`) and what starts emphasis, code, links, HTML or an
# entity inside one. CommonMark lets a backslash escape any ASCII punctuation, so each renders as itself.
# An `_` between two letters or digits never delimits emphasis: `points_with_gaps` stays as it is.
_SPECIAL = re.compile(r"([\\|*`\[\]<>~&#!]|(?<![^\W_])_|_(?![^\W_]))")
_LINE_BREAK = re.compile(r"\r\n|[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]")


def escape(text: object) -> str:
    """`text` as literal markdown on one line: a table cell, or a bullet, whatever the name holds."""
    return _SPECIAL.sub(r"\\\1", _LINE_BREAK.sub(" ", str(text)))


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A markdown table's lines, every cell escaped."""
    return [
        _row(header),
        "|" + " --- |" * len(header),
        *(_row(row) for row in rows),
    ]


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(escape(cell) for cell in cells) + " |"
