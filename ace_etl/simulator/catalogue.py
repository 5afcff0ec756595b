"""The simulated sites' points: a plausible building per site (AHUs, VAVs, chillers, boilers, meters), each
point with its interval, kind, signal shape and configuration, all derived from stable hashes of names."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import polars as pl

DAY_S = 86_400
US = 1_000_000  # microseconds per second
# Pseudo-randomness is integer arithmetic modulo this prime (see ace_etl.simulator.data).
PRIME = 2_147_483_647

Kind = Literal["analog", "binary"]


MIXED_INTERVALS = (60, 300, 900)


@dataclass(frozen=True)
class PointSpec:
    """One point of a site. Unlisted points are absent from configured_points but present in timeseries."""

    name: str
    interval_s: int
    kind: Kind
    configured: bool
    listed: bool


@dataclass(frozen=True)
class _Signal:
    point: str
    kind: Kind
    units: str
    base: float = 0.0
    amplitude: float = 0.0
    noise: float = 0.0
    decimals: int = 2


def _binary(point: str) -> _Signal:
    return _Signal(point, "binary", "on/off")


DEVICE_SIGNALS: dict[str, tuple[_Signal, ...]] = {
    "ahu": (
        _Signal("sa_temp", "analog", "degF", 55, 3, 0.4),
        _Signal("ra_temp", "analog", "degF", 72, 2, 0.3),
        _Signal("ma_temp", "analog", "degF", 63, 4, 0.4),
        _Signal("oa_temp", "analog", "degF", 58, 12, 0.5),
        _Signal("sa_static", "analog", "inH2O", 1.4, 0.3, 0.05, 3),
        _Signal("oa_damper", "analog", "%", 35, 20, 1.0, 1),
        _Signal("clg_valve", "analog", "%", 40, 35, 1.5, 1),
        _binary("fan_status"),
        _binary("fan_cmd"),
    ),
    "vav": (
        _Signal("zone_temp", "analog", "degF", 72, 1.5, 0.2),
        _Signal("zone_setpoint", "analog", "degF", 72, 1, 0, 1),
        _Signal("damper_pos", "analog", "%", 55, 30, 2, 1),
        _Signal("airflow", "analog", "cfm", 420, 160, 8, 1),
        _binary("occ_status"),
    ),
    "chiller": (
        _Signal("chws_temp", "analog", "degF", 44, 1.5, 0.2),
        _Signal("chwr_temp", "analog", "degF", 54, 3, 0.3),
        _Signal("kw", "analog", "kW", 140, 70, 3),
        _binary("run_status"),
    ),
    "boiler": (
        _Signal("hws_temp", "analog", "degF", 160, 12, 0.8),
        _Signal("hwr_temp", "analog", "degF", 140, 10, 0.8),
        _binary("run_status"),
    ),
    "meter": (
        _Signal("kw", "analog", "kW", 260, 120, 6),
        _Signal("voltage", "analog", "V", 480, 4, 0.6, 1),
        _Signal("pf", "analog", "", 0.92, 0.03, 0.005, 3),
    ),
}


# The signal of an extra point (`SimulatorConfig.extra_points`): a plain analog reading.
_EXTRA_SIGNAL = _Signal("extra", "analog", "", 50, 10, 0.5)


def _devices() -> Iterator[str]:
    """An endless plausible building: each block is an AHU with six VAVs and a meter; every other block
    adds a chiller plant. Small point counts still show every device type."""
    for block in itertools.count(1):
        yield f"ahu-{block}"
        yield from (f"vav-{n}" for n in range(6 * block - 5, 6 * block + 1))
        if block % 2:
            yield f"chiller-{(block + 1) // 2}"
            yield f"boiler-{(block + 1) // 2}"
        yield f"meter-{block}"


def stable_hash(text: str, salt: str) -> int:
    digest = hashlib.blake2b(f"{salt}\0{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % PRIME


Extra = tuple[tuple[str, bool, tuple[float, str] | None], ...]
"""Points served beside the generated building, verbatim: (name, collect_enabled, (constant value, units)
or None for a plain varying reading)."""


@lru_cache(maxsize=32)
def catalogue(
    site: str, n_points: int, interval: int | None, configured_fraction: float, extra: Extra = ()
) -> tuple[tuple[PointSpec, _Signal], ...]:
    signals = itertools.islice(
        ((device, signal) for device in _devices() for signal in DEVICE_SIGNALS[device.split("-")[0]]),
        n_points,
    )
    named = [(f"{site}/{device}/{signal.point}", signal) for device, signal in signals]
    clashes = sorted({name for name, _, _ in extra} & {name for name, _ in named})
    if clashes:
        raise ValueError(f"extra points already served by site {site!r}: {', '.join(clashes)}")
    # Ranking by hash makes the configured count exact while spreading it over devices.
    ranked = sorted(range(len(named)), key=lambda i: stable_hash(named[i][0], "configured"))
    position = {index: rank for rank, index in enumerate(ranked)}
    n_configured = round(configured_fraction * len(named))
    specs = []
    for index, (name, signal) in enumerate(named):
        rank = position[index]
        configured = rank < n_configured
        interval_s = interval or MIXED_INTERVALS[stable_hash(name, "interval") % len(MIXED_INTERVALS)]
        listed = configured or (rank - n_configured) % 2 == 0
        specs.append((PointSpec(name, interval_s, signal.kind, configured, listed), signal))
    for name, enabled, constant in extra:
        interval_s = interval or MIXED_INTERVALS[stable_hash(name, "interval") % len(MIXED_INTERVALS)]
        signal = (
            _EXTRA_SIGNAL if constant is None else _Signal("constant", "analog", constant[1], constant[0])
        )
        specs.append((PointSpec(name, interval_s, "analog", enabled, True), signal))
    return tuple(sorted(specs, key=lambda pair: pair[0].name))


def site_points(
    site: str, n_points: int, interval: int | None = None, configured_fraction: float = 0.8, extra: Extra = ()
) -> list[PointSpec]:
    """The site's points sorted by name (the serving order), named `{site}/{device}/{point}`, and the
    `extra` points named as given."""
    return [spec for spec, _ in catalogue(site, n_points, interval, configured_fraction, extra)]


@lru_cache(maxsize=32)
def point_table(
    site: str, n_points: int, interval: int | None, configured_fraction: float, extra: Extra = ()
) -> pl.DataFrame:
    rows = []
    for spec, signal in catalogue(site, n_points, interval, configured_fraction, extra):
        seed = stable_hash(spec.name, "seed")
        rows.append(
            {
                "name": spec.name,
                "name_json": json.dumps(spec.name),
                "metadata_json": json.dumps({"units": signal.units}),
                "interval_s": spec.interval_s,
                "binary": spec.kind == "binary",
                "base": float(signal.base),
                "amplitude": float(signal.amplitude),
                "noise": float(signal.noise),
                "decimals": signal.decimals,
                # Analog curves peak mid-afternoon UTC give or take an hour; binary points run 12 h a day
                # from a point-specific hour.
                "phase": seed % DAY_S if spec.kind == "binary" else seed % 3600 - 9 * 3600,
                "seed": seed,
            }
        )
    table = pl.DataFrame(rows, schema_overrides={"interval_s": pl.Int64, "phase": pl.Int64, "seed": pl.Int64})
    return table.with_row_index("point")
