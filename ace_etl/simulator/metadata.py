"""What the simulator says about its points and sites: the real API's configured-point items (aceiot-models'
`Point`: id, point_type, marker_tags, kv_tags, bacnet_data, created, updated, ...) and site records
(`Site`: id, name, nice_name, address, latitude, longitude, archived, ...), all derived from names and
positions, so a test can compute exactly what was served (`served_points`, `served_site`).

`SimulatorConfig.metadata` varies how the points are written: "nested" as the real API does, "text" with
every nested value as JSON text, "sparse" with the optional fields left out or null. `site_records`: "single"
serves `GET /sites/{site}` and the `/sites` list, "list" the list only (the single site is a 404), "none"
names alone in the list and a 404 for the single site.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from ace_etl.simulator.catalogue import DEVICE_SIGNALS, catalogue, stable_hash
from ace_etl.simulator.config import SimulatorConfig

# A place per site, by the site's position in `SimulatorConfig.sites` (cycling): city, latitude, longitude.
# The second is outside the US; Phoenix keeps no daylight saving time.
PLACES = (
    ("New York, NY", 40.7484, -73.9857),
    ("London, United Kingdom", 51.5072, -0.1276),
    ("Chicago, IL", 41.8781, -87.6298),
    ("Sydney, Australia", -33.8688, 151.2093),
    ("Phoenix, AZ", 33.4484, -112.0740),
    ("Berlin, Germany", 52.5200, 13.4050),
)
CLIENT, CLIENT_ID = "demo-client", 1
_EPOCH = datetime(2023, 1, 1, tzinfo=UTC)
# BACnet engineering units of the catalogue's units; a binary point has none.
BACNET_UNITS = {
    "degF": "degreesFahrenheit",
    "inH2O": "inchesOfWater",
    "%": "percent",
    "cfm": "cubicFeetPerMinute",
    "kW": "kilowatts",
    "V": "volts",
    "": "noUnits",
}
# Devices whose points carry no `units` tag: their units come from BACnet (`object_units`) alone.
UNTAGGED_DEVICES = frozenset({"vav"})
_NESTED = ("marker_tags", "kv_tags", "bacnet_data", "collect_config")


def site_id(config: SimulatorConfig, site: str) -> int:
    return config.sites.index(site) + 1


def site_location(config: SimulatorConfig, site: str) -> tuple[float, float]:
    """The site's (latitude, longitude): from `site_locations`, else its place in PLACES."""
    given = {name: (lat, lon) for name, lat, lon in config.site_locations}
    if site in given:
        return given[site]
    _, lat, lon = PLACES[config.sites.index(site) % len(PLACES)]
    return lat, lon


def served_site(config: SimulatorConfig, site: str) -> dict[str, Any]:
    """The site's record as `GET /sites/{site}` serves it."""
    latitude, longitude = site_location(config, site)
    city, *default = PLACES[config.sites.index(site) % len(PLACES)]
    number = site_id(config, site)
    street = f"{100 + number} Main Street"
    return {
        "id": number,
        "name": site,
        "nice_name": " ".join(part.capitalize() for part in site.replace("_", "-").split("-") if part)
        or site,
        "address": f"{street}, {city}" if [latitude, longitude] == default else street,
        "latitude": latitude,
        "longitude": longitude,
        "archived": False,
        "client": CLIENT,
        "client_id": CLIENT_ID,
        **_stamps(site, "site"),
    }


def listed_site(config: SimulatorConfig, site: str) -> dict[str, Any]:
    """The site's item of the `/sites` list."""
    return served_site(config, site) if config.site_records != "none" else {"name": site}


def served_points(config: SimulatorConfig, site: str) -> list[dict[str, Any]]:
    """Every configured point the site lists, in serving order, as configured_points serves it."""
    specs = catalogue(site, config.points, config.interval, config.configured_fraction, config.extra)
    items = []
    for index, (spec, signal) in enumerate(specs):
        if not spec.listed:
            continue
        item = {
            "id": site_id(config, site) * 1_000_000 + index + 1,
            "name": spec.name,
            "site": site,
            "site_id": site_id(config, site),
            "client": CLIENT,
            "client_id": CLIENT_ID,
            "point_type": spec.kind,
            "collect_enabled": spec.configured,
            "collect_interval": spec.interval_s,
            "collect_config": {},
            **_tags_and_device(site, spec.name, signal.point, spec.kind, signal.units),
            **_stamps(spec.name, "point"),
        }
        items.append(_shaped(item, config))
    return items


def _tags_and_device(site: str, name: str, point: str, kind: str, units: str) -> dict[str, Any]:
    """marker_tags, kv_tags and bacnet_data of a generated point (`site/device/point`); an extra point,
    named freely, has no tags and no BACnet device, only its units when it has some (a constant meter)."""
    device = name[len(site) + 1 :].split("/")[0] if name.startswith(site + "/") else ""
    family = device.split("-")[0]
    if family not in DEVICE_SIGNALS or name != f"{site}/{device}/{point}":
        return {"marker_tags": [], "kv_tags": {"units": units} if units else {}, "bacnet_data": None}
    binary = kind == "binary"
    output = point.endswith("_cmd")
    if binary:
        object_type = "binary-output" if output else "binary-input"
    else:
        object_type = "analog-value" if "setpoint" in point else "analog-input"
    role = "cmd" if output else "sp" if "setpoint" in point else "sensor"
    kv_tags = {"equip": family}
    if units and not binary and family not in UNTAGGED_DEVICES:
        kv_tags["units"] = units
    device_id = stable_hash(f"{site}/{device}", "device") % 4_194_303
    signals = [signal.point for signal in DEVICE_SIGNALS[family]]
    return {
        "marker_tags": list(dict.fromkeys([family, *point.split("_"), role, "point"])),
        "kv_tags": kv_tags,
        "bacnet_data": {
            "device_name": device,
            "device_id": device_id,
            "device_address": f"{1000 + stable_hash(site, 'network') % 9000}:{device_id % 127 + 1}",
            "device_description": f"{family.upper()} {device.split('-')[-1]}",
            "object_type": object_type,
            "object_index": signals.index(point) + 1,
            "object_name": f"{device.upper()}.{point.upper()}",
            "object_description": point.replace("_", " "),
            "object_units": None if binary else BACNET_UNITS.get(units, units),
        },
    }


def _stamps(name: str, salt: str) -> dict[str, str]:
    """`created` and `updated`, naive ISO instants (UTC) as the API writes them."""
    created = _EPOCH + timedelta(seconds=stable_hash(name, f"{salt}-created") % (365 * 86_400))
    updated = created + timedelta(seconds=stable_hash(name, f"{salt}-updated") % (180 * 86_400))
    return {
        "created": created.replace(tzinfo=None).isoformat(),
        "updated": updated.replace(tzinfo=None).isoformat(),
    }


def _shaped(item: dict[str, Any], config: SimulatorConfig) -> dict[str, Any]:
    if config.metadata == "text":
        return {key: json.dumps(value) if key in _NESTED else value for key, value in item.items()}
    if config.metadata == "sparse":
        # What an older or leaner server sends: no id, type, tags, times; a BACnet block with nulls.
        bacnet = item["bacnet_data"]
        kept = {key: item[key] for key in ("name", "collect_enabled", "collect_interval")}
        return {
            **kept,
            "marker_tags": None,
            "bacnet_data": None
            if bacnet is None
            else {"device_name": bacnet["device_name"], "object_index": None},
        }
    return item
