"""Limits: which range each point should stay in, from a small TOML file plus the bundled defaults.

A rules file holds `[[rules]]` tables (see `limits.toml` beside this module, the defaults). A point takes
the first rule that matches it, the user's rules first: its name matches one of the rule's `points` globs
(as for `--points`, but case-insensitive) or it has all of the rule's marker `tags`; and when the rule gives
`units`, the point's units are those (spellings of one unit are one unit: `canonical_units`). The warehouse
reads the result as `internal.point_limits` (dbt_project/models/intermediate/point_limits.py), so a
hand-run `dbt build` applies the same rules (ACE_LIMITS_FILE names the user's file there too).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import polars as pl

from extract.api.points import PointSelector
from extract.errors import ConfigError

DEFAULTS = Path(__file__).with_name("limits.toml")
ENV_VAR = "ACE_LIMITS_FILE"
# Incremental builds look one day around each changed day for the rest of an excursion (see
# timeseries_excursions.sql), so a rule may not ask for more.
MAX_MIN_DURATION_S = 86_400

_KEYS = {"name", "points", "tags", "units", "low", "high", "min_duration"}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
# Spellings of one unit, as APIs, BACnet (`object_units`, `degreesFahrenheit`) and people write them: compared
# without case, spaces, `-`, `_` and `.`.
_UNITS = {
    "degF": ("degf", "°f", "f", "fahrenheit", "degreesfahrenheit"),
    "degC": ("degc", "°c", "c", "celsius", "degreescelsius"),
    "%": ("%", "percent", "pct", "%rh", "rh", "percentrelativehumidity"),
    "inH2O": ("inh2o", "inwc", "iwc", '"wc', "inchesofwater"),
    "Pa": ("pa", "pascal", "pascals"),
    "kPa": ("kpa", "kilopascals"),
    "psi": ("psi", "poundsforcepersquareinch"),
    "ppm": ("ppm", "partspermillion"),
}
_SEPARATORS = re.compile(r"[\s_.-]")
_CANONICAL = {spelling: unit for unit, spellings in _UNITS.items() for spelling in spellings}

POINT_LIMITS_SCHEMA = pl.Schema(
    {
        "site_name": pl.String(),
        "point_name": pl.String(),
        "rule": pl.String(),
        "rule_source": pl.String(),
        "units": pl.String(),
        "low": pl.Float64(),
        "high": pl.Float64(),
        "min_duration_s": pl.Int64(),
    }
)


@dataclass(frozen=True)
class Rule:
    name: str
    source: str
    """The file it comes from (`bundled` for the defaults), for the excursions' `rule_source`."""
    points: tuple[str, ...]
    tags: tuple[str, ...]
    units: str | None
    low: float | None
    high: float | None
    min_duration_s: int

    @cached_property
    def _names(self) -> PointSelector:
        return PointSelector.from_list(p.lower() for p in self.points)

    def matches(self, name: str, tags: Iterable[str], units: str | None) -> bool:
        if self.units is not None and canonical_units(units) != self.units:
            return False
        by_name = bool(self.points) and self._names.matches(name.lower())
        have = {tag.lower() for tag in tags}
        return by_name or (bool(self.tags) and all(tag.lower() in have for tag in self.tags))


def canonical_units(units: str | None) -> str | None:
    """One spelling per unit (`°F`, `degrees-fahrenheit`, `degreesFahrenheit` -> `degF`); unknown units as
    given, trimmed."""
    if units is None or not units.strip():
        return None
    return _CANONICAL.get(_SEPARATORS.sub("", units.lower()), units.strip())


def limits_file(given: str | Path | None = None) -> Path | None:
    """The user's limits file: `given`, else ACE_LIMITS_FILE, else none (the defaults alone)."""
    chosen = given if given is not None else os.environ.get(ENV_VAR) or None
    return Path(chosen).expanduser().absolute() if chosen is not None else None


def load_rules(path: str | Path | None = None) -> tuple[Rule, ...]:
    """The user's rules (from `limits_file(path)`), then the bundled defaults. ConfigError, one line naming
    the file, the rule and the fix, for a file that cannot be used."""
    user = limits_file(path)
    return (*(_read(user, str(user)) if user is not None else ()), *_read(DEFAULTS, "bundled"))


def resolve(rules: Sequence[Rule], points: pl.DataFrame) -> pl.DataFrame:
    """Each point's limits: the first rule that matches it (points without one are left out). `points` has
    site_name, point_name, units and marker_tags (a list, or null)."""
    rows = []
    for site, name, units, tags in points.select(
        "site_name", "point_name", "units", "marker_tags"
    ).iter_rows():
        rule = next((r for r in rules if r.matches(name, tags or (), units)), None)
        if rule is not None:
            rows.append(
                (site, name, rule.name, rule.source, rule.units, rule.low, rule.high, rule.min_duration_s)
            )
    return pl.DataFrame(rows, schema=POINT_LIMITS_SCHEMA, orient="row")


def _read(path: Path, source: str) -> list[Rule]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(f"limits file {path} does not exist: give an existing TOML file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"cannot read limits file {path}: {error}; give a readable UTF-8 TOML file"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"limits file {path} is not valid TOML ({error}): fix the syntax") from None
    unknown = sorted(set(document) - {"rules"})
    if unknown:
        raise ConfigError(
            f"limits file {path}: unknown table {unknown[0]!r}: write each rule as a [[rules]] table"
        )
    tables = document.get("rules", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"limits file {path}: `rules` must be [[rules]] tables, one per rule")
    return [_rule(path, source, index, table) for index, table in enumerate(tables, start=1)]


def _rule(path: Path, source: str, index: int, table: Mapping[str, Any]) -> Rule:
    name = table.get("name")
    where = f"limits file {path}, rule {index}" + (f" ({name!r})" if isinstance(name, str) else "")

    def bad(problem: str) -> ConfigError:
        return ConfigError(f"{where}: {problem}")

    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise bad(f"unknown key {unknown[0]!r}: a rule takes {', '.join(sorted(_KEYS))}")
    if not isinstance(name, str) or not name.strip():
        raise bad('give the rule a name, e.g. name = "zone temperature"')
    points, tags = _strings(table, "points", bad), _strings(table, "tags", bad)
    units = table.get("units")
    if units is not None and (not isinstance(units, str) or not units.strip()):
        raise bad('units must be text naming the units of low and high, e.g. units = "degF"')
    if not points and not tags and units is None:
        raise bad('say which points it is for: points = ["*/zone_temp"], tags = ["zone", "temp"] or units')
    low, high = _limit(table, "low", bad), _limit(table, "high", bad)
    if low is None and high is None:
        raise bad("give low, high or both (in the rule's units), e.g. low = 60")
    if low is not None and high is not None and low >= high:
        raise bad(f"low ({low:g}) must be below high ({high:g})")
    try:
        for pattern in points:
            PointSelector.from_list([pattern])
    except ConfigError as error:
        raise bad(str(error)) from None
    return Rule(
        name=name.strip(),
        source=source,
        points=points,
        tags=tags,
        units=canonical_units(units),
        low=low,
        high=high,
        min_duration_s=_duration(table.get("min_duration", 0), bad),
    )


def _strings(table: Mapping[str, Any], key: str, bad: Any) -> tuple[str, ...]:
    value = table.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise bad(f'{key} must be a list of non-empty strings, e.g. {key} = ["a", "b"]')
    return tuple(v.strip() for v in value)


def _limit(table: Mapping[str, Any], key: str, bad: Any) -> float | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad(f"{key} must be a finite number, e.g. {key} = 60")
    return float(value)


def _duration(value: Any, bad: Any) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif (
        isinstance(value, str)
        and (parts := _DURATION.findall(value))
        and _DURATION.sub("", value).strip() == ""
    ):
        seconds = sum(float(n) * _SECONDS[unit] for n, unit in parts)
    else:
        raise bad('min_duration must be seconds or a duration such as "90s", "15m", "1h30m"')
    if not 0 <= seconds <= MAX_MIN_DURATION_S:
        raise bad(f"min_duration must be between 0 and 1 day, not {value!r}")
    return round(seconds)
