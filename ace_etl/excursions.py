"""New excursions of a build: the rows of timeseries_excursions the published warehouse did not hold before
it, for the alert a flow run sends. An excursion keeps its id (site, point, start) while it goes on, so a
long one, seen again and again by live runs, is new once."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ace_etl.transform import reading
from extract.errors import ConfigError, WarehouseError

_COLUMNS = (
    "id, site_name, point_name, excursion_start, excursion_end, duration_s, closed, limit_kind, "
    "limit_value, peak_value, units, rule"
)


@dataclass(frozen=True)
class Excursion:
    id: int
    site_name: str
    point_name: str
    start: datetime
    end: datetime
    duration_s: float
    closed: bool
    limit_kind: str
    limit_value: float
    peak_value: float
    units: str | None
    rule: str

    def describe(self) -> str:
        """One line: which point, which limit, when, how far."""
        units = f" {self.units}" if self.units else ""
        side = "above" if self.limit_kind == "high" else "below"
        until = f"to {self.end:%Y-%m-%d %H:%M}" if self.closed else "still going at the last sample"
        return (
            f"{self.point_name} {side} {self.limit_value:g}{units} ({self.rule}) from "
            f"{self.start:%Y-%m-%d %H:%M} UTC {until}, {self.duration_s / 60:.0f} min, peak {self.peak_value:g}{units}"
        )


def known_ids(warehouse: Path) -> frozenset[int]:
    """The excursions the published warehouse holds (none when there is no warehouse, or no such table yet)."""
    try:
        with reading(warehouse) as connection:
            ids = connection.execute("select id from timeseries_excursions").fetchall()
    except (ConfigError, WarehouseError):  # no warehouse yet; one of a version without the table
        return frozenset()
    return frozenset(int(i) for (i,) in ids)


def new_excursions(warehouse: Path, known: Collection[int], sites: Collection[str] | None) -> list[Excursion]:
    """The excursions of `sites` (None: all) in the published warehouse that are not in `known`, oldest
    first."""
    with reading(warehouse) as connection:
        rows = connection.execute(
            f"select {_COLUMNS} from timeseries_excursions order by excursion_start, point_name"
        ).fetchall()
    return [
        Excursion(*row) for row in rows if int(row[0]) not in known and (sites is None or row[1] in sites)
    ]
