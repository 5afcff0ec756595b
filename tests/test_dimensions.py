"""Points and sites as dimensions (issue 17): what the API says about each point and site reaches the
`points` and `sites` tables, whatever shape the server answers in, and each site gets a time zone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from ace_etl.simulator import Faults, Simulator, SimulatorConfig, served_points, served_site, site_points
from ace_etl.transform import build_warehouse
from extract.api.client import AceClient
from extract.api.sites import SITE_FRESH_FOR, coordinates_time_zone, land_site
from extract.errors import TransformError
from extract.lake.storage import LocalStorage
from extract.run.pipeline import land_points, land_site_record
from flows.params import EtlParams, TransformParams
from tests.clihelp import ace_etl, error_line
from tests.landing_factory import samples, write_sites, write_timeseries
from tests.support import FAST

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


def sites_table(data: Path) -> dict[str, tuple[str, str]]:
    return {
        r["site_name"]: (r["time_zone"], r["time_zone_source"]) for r in rows(data, "select * from sites")
    }


def write_sites_file(path: Path, zones: dict[str, str]) -> Path:
    path.write_text("".join(f'[sites."{site}"]\ntime_zone = "{zone}"\n' for site, zone in zones.items()))
    return path


def test_a_sites_file_overrides_a_time_zone_and_an_edit_takes_effect_at_the_next_transform(
    tmp_path: Path,
) -> None:
    data, sites_file = tmp_path / "data", write_sites_file(tmp_path / "sites.toml", {"annex": "Asia/Tokyo"})
    with Simulator(CFG) as sim:
        run(sim, data, "--sites-file", str(sites_file))
    assert sites_table(data) == {
        "hq": ("America/New_York", "coordinates"),
        "annex": ("Asia/Tokyo", "override"),
    }
    # Edited, and given through the environment this time: no fetch, the warehouse follows the file.
    write_sites_file(sites_file, {"annex": "Asia/Tokyo", "hq": "America/Chicago"})
    result = ace_etl("transform", "--data-dir", str(data), env={"ACE_SITES_FILE": str(sites_file)})
    assert result.returncode == 0, result.stderr
    assert sites_table(data) == {"hq": ("America/Chicago", "override"), "annex": ("Asia/Tokyo", "override")}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[sites."hq"]\ntime_zone = "America/Nowhere"\n',
            "time zone 'America/Nowhere' of site 'hq' is not an IANA",
        ),
        ('[sites."hq"]\ntime_zone = 5\n', "time zone 5 of site 'hq' is not an IANA time zone name"),
        ("[sites.hq\ntime_zone = 'UTC'\n", "is not valid TOML"),
        ('sites = "hq"\n', 'write each site as a table, e.g. [sites."Some Site"]'),
        ('[sites."hq"]\ntimezone = "UTC"\n', "site 'hq' has unknown key 'timezone'; the keys are time_zone"),
    ],
)
def test_a_bad_sites_file_is_a_one_line_usage_error(tmp_path: Path, text: str, expected: str) -> None:
    sites_file = tmp_path / "sites.toml"
    sites_file.write_text(text)
    result = ace_etl("transform", "--data-dir", str(tmp_path / "data"), "--sites-file", str(sites_file))
    assert result.returncode == 2
    line = error_line(result.stderr)
    assert expected in line and str(sites_file) in line, line
    assert not (tmp_path / "data").exists()  # refused before anything was built


def test_a_run_with_a_missing_sites_file_asks_the_api_nothing(tmp_path: Path) -> None:
    with Simulator(CFG) as sim:
        result = ace_etl(
            "run", "--site", "hq", "--start", START, "--end", END, "--data-dir", str(tmp_path / "data"),
            "--sites-file", str(tmp_path / "nowhere.toml"),
            env={"ACEIOT_API_URL": sim.url, "ACEIOT_API_KEY": CFG.api_key},
        )  # fmt: skip
        assert sim.requests == []
    assert result.returncode == 2
    assert error_line(result.stderr) == (
        f"error: cannot read sites file {tmp_path / 'nowhere.toml'}: No such file or directory"
    )


def test_the_flow_parameters_override_the_sites_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sites_file = write_sites_file(tmp_path / "sites.toml", {"hq": "Europe/Paris", "annex": "Asia/Tokyo"})
    params = EtlParams(sites=["hq"], sites_file=sites_file, time_zones={"hq": "America/Denver"})
    assert params.site_time_zones() == {"hq": "America/Denver", "annex": "Asia/Tokyo"}
    monkeypatch.setenv("ACE_SITES_FILE", str(sites_file))  # the default when no sites_file is given
    assert TransformParams().site_time_zones() == {"hq": "Europe/Paris", "annex": "Asia/Tokyo"}
    with pytest.raises(
        ValueError, match="time zone 'Mars/Olympus' of site 'hq' is not an IANA time zone name"
    ):
        TransformParams(time_zones={"hq": "Mars/Olympus"})
    monkeypatch.delenv("ACE_SITES_FILE")
    # What the flows do with them: the sites landing, then the build (its overrides win).
    data = tmp_path / "data"
    with Simulator(CFG) as sim, AceClient(sim.url, CFG.api_key) as client:
        for site in CFG.sites:
            land_points(client, LocalStorage(data), site)
            land_site_record(client, LocalStorage(data), site, params.site_time_zones())
    build_warehouse(data, time_zones=TransformParams(time_zones={"annex": "Europe/Berlin"}).site_time_zones())
    assert sites_table(data) == {"hq": ("America/Denver", "override"), "annex": ("Europe/Berlin", "override")}


def test_a_server_that_omits_fields_and_has_no_site_records_loses_no_sample(tmp_path: Path) -> None:
    cfg = replace(CFG, metadata="sparse", site_records="none")
    data = tmp_path / "data"
    with Simulator(cfg) as sim:
        sites = [a for site in cfg.sites for a in ("--site", site)]
        result = ace_etl(
            "run", *sites, "--start", START, "--end", END, "--data-dir", str(data),
            env={"ACEIOT_API_URL": sim.url, "ACEIOT_API_KEY": cfg.api_key},
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "site 'hq': the API gives no coordinates for it, so its local days are UTC days" in result.stderr
    for site in cfg.sites:
        table = warehouse_points(data, site)
        for item in served_points(cfg, site):
            row = table[item["name"]]
            assert {key: row[key] for key in expected_point(item)} == expected_point(item), item["name"]
            assert row["value_kind"] == "analog"  # nothing says otherwise
    assert sites_table(data) == {"hq": ("UTC", "default"), "annex": ("UTC", "default")}
    assert rows(
        data, "select count(*) as n from sites where site_id is not null or latitude is not null"
    ) == [{"n": 0}]
    landed = rows(
        data,
        "select count(*) as n from timeseries_raw join sites using (site_name) join points using (site_name, point_name)",
    )
    assert landed == rows(data, "select count(*) as n from timeseries_raw") != [{"n": 0}]


def test_the_seed_shape_and_metadata_as_json_text_read_as_the_real_api(tmp_path: Path) -> None:
    cfg = replace(CFG, shape="seed", metadata="text", site_records="list")
    data = tmp_path / "data"
    with Simulator(cfg) as sim:
        run(sim, data)
        asked = {r["path"]: r["status"] for r in sim.requests if r["path"].split("/")[-2:-1] == ["sites"]}
    assert asked == {"/api/sites/hq": 404, "/api/sites/annex": 404}  # then the list gave the records
    for site in cfg.sites:
        table = warehouse_points(data, site)
        for item in served_points(CFG, site):  # as the nested shape serves it
            row = table[item["name"]]
            expected = expected_point(item)
            assert {key: row[key] for key in expected if key != "api_item"} == {
                key: value for key, value in expected.items() if key != "api_item"
            }, item["name"]
    assert sites_table(data) == {
        "hq": ("America/New_York", "coordinates"),
        "annex": ("Europe/London", "coordinates"),
    }


def test_a_site_record_is_asked_for_daily_and_what_a_server_leaves_out_or_fails_to_give_is_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = LocalStorage(tmp_path / "data")
    now = datetime.now(UTC)
    without_zone = ("time_zone", "time_zone_source", "collected_at")
    with Simulator(CFG) as sim, AceClient(sim.url, CFG.api_key) as client:
        first = land_site(client, storage, "annex", {}, now)
        # Fresh: not asked again, and an override applies to the landed record.
        sim.clear_requests()
        again = land_site(client, storage, "annex", {"annex": "Europe/Dublin"}, now + timedelta(hours=1))
        assert sim.requests == []
    assert again.drop("time_zone", "time_zone_source").equals(first.drop("time_zone", "time_zone_source"))
    assert again.select("time_zone", "time_zone_source").row(0) == ("Europe/Dublin", "override")
    # A day later, from a server whose /sites list names the site and nothing more.
    later = now + SITE_FRESH_FOR * 2
    with Simulator(replace(CFG, site_records="none")) as sim, AceClient(sim.url, CFG.api_key) as client:
        listed = land_site(client, storage, "annex", {}, later)
        assert [r["path"] for r in sim.requests] == ["/api/sites/annex", "/api/sites"]
    assert listed.drop(*without_zone).equals(first.drop(*without_zone))
    assert listed.select("time_zone", "time_zone_source", "collected_at").row(0) == (
        "Europe/London", "coordinates", later,
    )  # fmt: skip
    # From a server failing every request: a warning, and the landed row as it was.
    failing = replace(CFG, faults=Faults(status_500_every=1))
    with Simulator(failing) as sim, AceClient(sim.url, CFG.api_key, retry_policy=FAST) as client:
        kept = land_site(client, storage, "annex", {}, later + SITE_FRESH_FOR * 2)
    assert kept.equals(listed)
    assert "site 'annex': its record could not be fetched (" in caplog.text and "HTTP 500" in caplog.text


@pytest.mark.parametrize(
    ("latitude", "longitude", "zone"),
    [
        (40.7484, -73.9857, "America/New_York"),
        (-33.8688, 151.2093, "Australia/Sydney"),
        (33.4484, -112.0740, "America/Phoenix"),
        (19.4326, -99.1332, "America/Mexico_City"),
        (0.0, 0.0, None),  # the usual placeholder for unknown coordinates
        (91.0, 10.0, None),
        (None, 10.0, None),
    ],
)
def test_the_time_zone_of_coordinates(
    latitude: float | None, longitude: float | None, zone: str | None
) -> None:
    assert coordinates_time_zone(latitude, longitude) == zone


def test_a_build_refuses_a_time_zone_the_warehouse_cannot_convert_to(tmp_path: Path) -> None:
    # Overrides are checked where they are read; a hand-run `dbt build --vars` or a landing written by other
    # means is checked by the build.
    day = datetime(2024, 5, 1, tzinfo=UTC)
    write_timeseries(tmp_path, samples("hq", ["p1"], day, 60, collected_at=day), "day-1")
    write_sites(
        tmp_path, pl.DataFrame({"site_name": ["hq", "annex"], "time_zone": ["Asia/Tokyo", "Nowhere/City"]})
    )
    with pytest.raises(TransformError, match="iana_time_zone_sites_time_zone"):
        build_warehouse(tmp_path)
    assert not (tmp_path / "warehouse.duckdb").exists()
    build_warehouse(tmp_path, time_zones={"annex": "Europe/Rome"})
    assert sites_table(tmp_path) == {"hq": ("Asia/Tokyo", "override"), "annex": ("Europe/Rome", "override")}
    with pytest.raises(TransformError, match="iana_time_zone_sites_time_zone"):
        build_warehouse(tmp_path, time_zones={"annex": "Mars/Olympus_Mons"})
