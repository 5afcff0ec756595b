"""Points and sites as dimensions (issue 17): what the API says about each point and site reaches the
`points` and `sites` tables, whatever shape the server answers in, and each site gets a time zone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from ace_etl.simulator import Simulator, SimulatorConfig, served_points, served_site, site_points
from tests.clihelp import ace_etl

START, END = "2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z"
# The default places: hq in New York, annex in London (outside the US).
# Of the 50 points per site a few are never listed by configured_points, yet have samples.
CFG = SimulatorConfig(sites=("hq", "annex"), points=50, interval=900, api_key="dims-key-0123456789")


def run(sim: Simulator, data: Path, *args: str, env: dict[str, str] | None = None) -> None:
    sites = [a for site in sim.config.sites for a in ("--site", site)]
    result = ace_etl(
        "run", *sites, "--start", START, "--end", END, "--data-dir", str(data), *args,
        env={"ACEIOT_API_URL": sim.url, "ACEIOT_API_KEY": sim.config.api_key, **(env or {})},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def rows(data: Path, sql: str) -> list[dict[str, Any]]:
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
        cursor = con.execute(sql)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def instant(text: str | None) -> datetime | None:
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def expected_point(item: dict[str, Any]) -> dict[str, Any]:
    """The `points` row of a served item, read from the item independently of the extractor."""
    bacnet = item.get("bacnet_data") or {}
    kv_tags = item.get("kv_tags")
    units = (kv_tags or {}).get("units") or bacnet.get("object_units")
    device_id = bacnet.get("device_id")
    return {
        "point_id": item.get("id"),
        "point_type": item.get("point_type"),
        "units": units,
        "marker_tags": item.get("marker_tags") or [],
        "kv_tags": kv_tags,
        "collect_enabled": item.get("collect_enabled") is True,
        "collect_interval": item.get("collect_interval"),
        "device_name": bacnet.get("device_name"),
        "device_id": None if device_id is None else str(device_id),
        "device_address": bacnet.get("device_address"),
        "object_type": bacnet.get("object_type"),
        "object_index": bacnet.get("object_index"),
        "object_name": bacnet.get("object_name"),
        "created": instant(item.get("created")),
        "updated": instant(item.get("updated")),
        "api_item": item,
    }


def warehouse_points(data: Path, site: str) -> dict[str, dict[str, Any]]:
    found = rows(data, f"select * from points where site_name = '{site}'")
    for row in found:
        for column in ("kv_tags", "api_item"):
            row[column] = None if row[column] is None else json.loads(row[column])
    return {row.pop("point_name"): row for row in found}


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    data = tmp_path_factory.mktemp("dims") / "data"
    with Simulator(CFG) as sim:
        run(sim, data, "--points", "*")  # the unlisted points too
    yield data


def test_every_point_has_the_metadata_the_api_served(landed: Path) -> None:
    for site in CFG.sites:
        served = served_points(CFG, site)
        table = warehouse_points(landed, site)
        unlisted = {spec.name for spec in site_points(site, CFG.points, CFG.interval) if not spec.listed}
        assert unlisted and set(table) == {item["name"] for item in served} | unlisted
        for name in unlisted:  # sampled, never listed: a row without metadata
            assert table[name]["point_id"] is None and table[name]["marker_tags"] == []
            assert table[name]["value_kind"] == "analog" and table[name]["collected_at"] is None
        for item in served:
            row = table[item["name"]]
            assert {key: row[key] for key in expected_point(item)} == expected_point(item), item["name"]
            kind = item["point_type"]
            assert row["value_kind"] == kind, item["name"]
    # The catalogue has what the analysts' questions need: power meters in kW, binary points, and units
    # that only BACnet gives.
    kinds = rows(landed, "select units, value_kind, count(*) as n from points group by all")
    assert {(r["units"], r["value_kind"]) for r in kinds} >= {
        ("kW", "analog"), (None, "binary"), ("degreesFahrenheit", "analog"), ("degF", "analog"),
    }  # fmt: skip
    orphans = rows(
        landed,
        "select count(*) as n from timeseries_raw left join points using (site_name, point_name) "
        "where points.site_name is null",
    )
    assert orphans == [{"n": 0}]


def test_each_site_has_its_record_and_the_time_zone_of_its_coordinates(landed: Path) -> None:
    table = {row.pop("site_name"): row for row in rows(landed, "select * from sites")}
    assert set(table) == set(CFG.sites)
    for site in CFG.sites:
        record = served_site(CFG, site)
        row = table[site]
        assert (row["site_id"], row["nice_name"], row["address"], row["archived"]) == (
            record["id"], record["nice_name"], record["address"], record["archived"],
        )  # fmt: skip
        assert (row["latitude"], row["longitude"]) == (record["latitude"], record["longitude"])
        assert json.loads(row["api_item"]) == record
    assert {site: (row["time_zone"], row["time_zone_source"]) for site, row in table.items()} == {
        "hq": ("America/New_York", "coordinates"),
        "annex": ("Europe/London", "coordinates"),
    }
