"""Configuration of one simulator instance: what it serves and which faults it injects."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from ace_etl.simulator.faults import Faults

Shape = Literal["real", "seed"]
TimeFormat = Literal["z", "offset", "naive", "millis", "mixed"]
SHAPES: tuple[Shape, ...] = get_args(Shape)
TIME_FORMATS: tuple[TimeFormat, ...] = get_args(TimeFormat)


@dataclass(frozen=True)
class SimulatorConfig:
    """What the simulator serves.

    `points` per site; `interval=None` mixes 60, 300 and 900 s points, an int gives every point that
    interval. `shape` "real" answers as the live API, "seed" in the design-document shape. `time_format`
    spells sample times: "z" (`...Z`), "offset" (`-05:00` local time), "naive" (no offset, meaning UTC),
    "millis" (`...00.000Z`) or "mixed" (a deterministic per-sample mix, `+00:00` included); all name the
    same instant. `request_log` appends one JSON line per request. `port=0` picks a free port.
    """

    sites: tuple[str, ...] = ("demo-site",)
    points: int = 50
    interval: int | None = None
    shape: Shape = "real"
    api_key: str = "demo"
    configured_fraction: float = 0.8
    time_format: TimeFormat = "z"
    faults: Faults = field(default_factory=Faults)
    request_log: str | Path | None = None
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        if not self.sites or any(not site for site in self.sites):
            raise ValueError("sites must name at least one site, and no name may be empty")
        if len(set(self.sites)) != len(self.sites):
            raise ValueError("site names must be unique")
        if self.points < 1:
            raise ValueError("points must be at least 1")
        if self.interval is not None and self.interval < 1:
            raise ValueError("interval must be a positive number of seconds (or None to mix intervals)")
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {', '.join(SHAPES)}")
        if self.time_format not in TIME_FORMATS:
            raise ValueError(f"time_format must be one of {', '.join(TIME_FORMATS)}")
        if not 0.0 <= self.configured_fraction <= 1.0:
            raise ValueError("configured_fraction must be between 0 and 1")
        if not self.api_key:
            raise ValueError("api_key must not be empty")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")
