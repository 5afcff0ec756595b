"""A loopback stand-in for the ACE IoT API (both the real shape and the design-document shape).

`Simulator` serves it over HTTP; the `served_*` functions compute exactly what it serves, so tests can
compare a pipeline's output with the truth without talking to the server.

Exports load on first use: `ace-etl --help` imports this package (through the CLI) and must not pay for
Polars.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ace_etl.simulator.catalogue import PointSpec, site_points
    from ace_etl.simulator.config import SimulatorConfig
    from ace_etl.simulator.data import BAD_KINDS, served_aggregates, served_samples
    from ace_etl.simulator.faults import Faults
    from ace_etl.simulator.metadata import served_points, served_site
    from ace_etl.simulator.server import Simulator
    from ace_etl.simulator.weather import current_weather, served_weather

_HOMES = {
    "BAD_KINDS": "data",
    "Faults": "faults",
    "PointSpec": "catalogue",
    "Simulator": "server",
    "SimulatorConfig": "config",
    "current_weather": "weather",
    "served_aggregates": "data",
    "served_points": "metadata",
    "served_site": "metadata",
    "served_samples": "data",
    "served_weather": "weather",
    "site_points": "catalogue",
}
__all__ = [
    "BAD_KINDS",
    "Faults",
    "PointSpec",
    "Simulator",
    "SimulatorConfig",
    "current_weather",
    "served_aggregates",
    "served_points",
    "served_samples",
    "served_site",
    "served_weather",
    "site_points",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
