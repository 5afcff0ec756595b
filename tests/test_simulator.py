"""The bundled ACE IoT API simulator, over real loopback HTTP: shapes, paging, cursors, faults, log, CLI."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from aceiot_models.points import Point
from aceiot_models.sites import Site
from typer.testing import CliRunner

from ace_etl.simulator import (
    BAD_KINDS,
    Faults,
    Simulator,
    SimulatorConfig,
    current_weather,
    served_aggregates,
    served_points,
    served_samples,
    served_site,
    served_weather,
    site_points,
)
from ace_etl.simulator.config import TimeFormat

SITE = "demo-site"
KEY = "demo"
START, END = "2026-11-27T00:00:00Z", "2026-11-27T01:00:00Z"
TIMESERIES = f"/sites/{SITE}/timeseries/paginated"
BASE = SimulatorConfig(sites=(SITE, "annex"), points=50)


def window(**extra: Any) -> dict[str, Any]:
    return {"start_time": START, "end_time": END, "page_size": 1000, "raw_data": "true", **extra}


@pytest.fixture
def serve() -> Iterator[Any]:
    """Starts simulators on demand (one config each) and an authenticated httpx client per simulator."""
    running: list[tuple[Simulator, httpx.Client]] = []

    def start(cfg: SimulatorConfig = BASE) -> tuple[Simulator, httpx.Client]:
        sim = Simulator(cfg).start()
        client = httpx.Client(
            base_url=sim.url, headers={"Authorization": f"Bearer {cfg.api_key}"}, timeout=10
        )
        running.append((sim, client))
        return sim, client

    yield start
    for sim, client in running:
        client.close()
        sim.stop()


@pytest.fixture(scope="module")
def default() -> Iterator[tuple[Simulator, httpx.Client]]:
    """One shared fault-free simulator for the read-only tests."""
    with (
        Simulator(BASE) as sim,
        httpx.Client(base_url=sim.url, headers={"Authorization": f"Bearer {KEY}"}) as client,
    ):
        yield sim, client


def page_through(
    client: httpx.Client, params: dict[str, Any], *, seed: bool = False
) -> tuple[list[dict], int]:
    """Every record of the window, and the number of pages it took."""
    records: list[dict] = []
    cursor, pages = None, 0
    while True:
        response = client.get(TIMESERIES, params=params | ({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.text
        body, pages = response.json(), pages + 1
        records += body["data"] if seed else body["point_samples"]
        paging = body["pagination"] if seed else body
        if not paging["has_more"]:
            assert paging["next_cursor"] is None
            return records, pages
        cursor = paging["next_cursor"]


def as_served(frame: pl.DataFrame) -> list[tuple[str, str, Any]]:
    return [
        (row["name"], row["time_raw"], json.loads(row["value_raw"])) for row in frame.iter_rows(named=True)
    ]


def instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- data: points and samples -----------------------------------------------------------------


def test_site_points_are_realistic_unique_deterministic_and_split_by_configuration() -> None:
    points = site_points(SITE, 200, None, 0.8)
    names = [p.name for p in points]
    assert names == sorted(names) and len(set(names)) == 200
    assert points == site_points(SITE, 200, None, 0.8)
    assert {"demo-site/ahu-1/sa_temp", "demo-site/ahu-1/fan_status", "demo-site/vav-12/zone_temp"} <= set(
        names
    )
    assert {"demo-site/meter-1/kw", "demo-site/chiller-1/kw"} <= set(names)
    assert {p.interval_s for p in points} == {60, 300, 900}
    assert {p.kind for p in points if p.name.endswith(("_status", "_cmd"))} == {"binary"}
    assert sum(p.configured for p in points) == 160
    unconfigured = [p for p in points if not p.configured]
    assert sum(p.listed for p in unconfigured) == 20 and all(p.listed for p in points if p.configured)
    assert {p.interval_s for p in site_points(SITE, 2000, 60, 0.8)} == {60}


def test_served_samples_sit_on_the_interval_grid_of_a_half_open_window() -> None:
    cfg = replace(BASE, points=30)
    start, end = datetime(2026, 11, 27, 0, 5, tzinfo=UTC), datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
    frame = served_samples(cfg, SITE, start, end)
    intervals = {p.name: p.interval_s for p in site_points(SITE, 30)}
    expected = sum(
        math.ceil(end.timestamp() / i) - math.ceil(start.timestamp() / i) for i in intervals.values()
    )
    assert frame.height == expected
    times = frame["time"].to_list()
    assert min(times) == start and max(times) < end
    seconds = frame.select(pl.col("name"), s=pl.col("time").dt.epoch("s"))
    assert all(s % intervals[name] == 0 for name, s in seconds.iter_rows())
    assert frame.select("name", "time").equals(frame.select("name", "time").sort("name", "time"))
    binary = frame.filter(pl.col("name").str.ends_with("_status"))
    assert set(binary["value"]) <= {0.0, 1.0} and set(binary["value_raw"]) <= {"0", "1"}
    assert frame.equals(served_samples(cfg, SITE, start, end))
    assert frame["bad_kind"].null_count() == frame.height


@pytest.mark.parametrize("time_format", ["z", "offset", "naive", "millis", "mixed"])
def test_every_time_format_names_the_true_instant(time_format: TimeFormat) -> None:
    frame = served_samples(replace(BASE, time_format=time_format), SITE, START, END)
    assert [instant(text) for text in frame["time_raw"]] == frame["time"].to_list()
    endings = {"z": "Z", "offset": "-05:00", "millis": ".000Z"}
    if time_format in endings:
        assert all(text.endswith(endings[time_format]) for text in frame["time_raw"])
    if time_format == "mixed":
        variants = {text[19:] for text in frame["time_raw"]}
        assert variants == {"Z", "-05:00", "", ".000Z", "+00:00"}


def test_bad_values_cycle_through_every_kind_and_report_what_they_stand_for() -> None:
    frame = served_samples(replace(BASE, faults=Faults(bad_value_fraction=0.3)), SITE, START, END)
    clean = served_samples(BASE, SITE, START, END)
    bad = frame.filter(pl.col("bad_kind").is_not_null())
    assert set(bad["bad_kind"]) == set(BAD_KINDS)
    assert 0.2 < bad.height / frame.height < 0.4
    for row, truth in zip(frame.iter_rows(named=True), clean.iter_rows(named=True), strict=True):
        served = json.loads(row["value_raw"])
        match row["bad_kind"]:
            case None:
                assert served == truth["value"] and row["time_raw"] == truth["time_raw"]
            case "bool":
                assert served is (truth["value"] != 0) and row["value"] == float(served)
            case "numeric_string":
                assert float(served) == truth["value"] == row["value"]
            case "text":
                assert served == "n/a"
            case "null":
                assert served is None
            case "bad_timestamp":
                assert row["time_raw"] == "not-a-time" and served == truth["value"]


# --- timeseries over HTTP ---------------------------------------------------------------------


def test_pages_deliver_exactly_the_served_samples(default: tuple[Simulator, httpx.Client]) -> None:
    _, client = default
    expected = served_samples(BASE, SITE, START, END)
    records, pages = page_through(client, window(page_size=97))
    assert pages == math.ceil(expected.height / 97)
    assert [(r["name"], r["time"], r["value"]) for r in records] == as_served(expected)


@pytest.mark.parametrize("raw_data", ["true", "false"])
@pytest.mark.parametrize("page_size", [7, 100])
def test_every_page_size_serves_the_same_bits(serve: Any, raw_data: str, page_size: int) -> None:
    # Polars may take other code paths for short or single-point pages; no value may move by an ulp.
    cfg = replace(BASE, faults=Faults(bad_value_fraction=0.3), time_format="mixed")
    _, client = serve(cfg)
    records, _ = page_through(client, window(page_size=page_size, raw_data=raw_data))
    served = served_samples if raw_data == "true" else served_aggregates
    assert [(r["name"], r["time"], r["value"]) for r in records] == as_served(served(cfg, SITE, START, END))


def test_seed_shape_pages_with_total_count_quality_and_metadata(serve: Any) -> None:
    cfg = replace(BASE, shape="seed")
    _, client = serve(cfg)
    expected = served_samples(cfg, SITE, START, END)
    first = client.get(TIMESERIES, params=window(page_size=100)).json()
    assert set(first) == {"data", "pagination", "total_count"} and first["total_count"] == expected.height
    records, _ = page_through(client, window(page_size=100), seed=True)
    assert [(r["point_name"], r["timestamp"], r["value"]) for r in records] == as_served(expected)
    assert {r["quality"] for r in records} == {"good"}
    assert records[0]["metadata"] == {"units": "%"}  # ahu-1/clg_valve sorts first


def test_a_cursor_is_bound_to_its_query(default: tuple[Simulator, httpx.Client]) -> None:
    _, client = default
    cursor = client.get(TIMESERIES, params=window(page_size=10)).json()["next_cursor"]
    same_instants = window(
        page_size=10, start_time="2026-11-27T00:00:00+00:00", end_time="2026-11-27T01:00:00"
    )
    assert client.get(TIMESERIES, params=same_instants | {"cursor": cursor}).status_code == 200
    tampered = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
    for params in (
        window(page_size=11, cursor=cursor),
        window(page_size=10, end_time="2026-11-27T02:00:00Z", cursor=cursor),
        window(page_size=10, raw_data="false", cursor=cursor),
        window(page_size=10, cursor=tampered),
    ):
        response = client.get(TIMESERIES, params=params)
        assert response.status_code == 400
        assert response.json() == {"error": "invalid cursor", "cursor": params["cursor"]}
    other_site = client.get("/sites/annex/timeseries/paginated", params=window(page_size=10, cursor=cursor))
    assert other_site.json()["error"] == "invalid cursor"


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        (window(page_size=100_001), "page_size"),
        (window(page_size=0), "page_size"),
        (window(page_size="many"), "page_size"),
        (window(start_time=""), "start_time"),
        (window(end_time="yesterday"), "end_time"),
        (window(end_time="2026-11-26T00:00:00Z"), "end_time is before start_time"),
        (window(raw_data="maybe"), "raw_data"),
    ],
)
def test_invalid_queries_get_a_400_naming_the_problem(
    default: tuple[Simulator, httpx.Client], params: dict[str, Any], fragment: str
) -> None:
    response = default[1].get(TIMESERIES, params=params)
    assert response.status_code == 400 and fragment in response.json()["error"]


def test_edges_empty_window_and_the_largest_page(default: tuple[Simulator, httpx.Client]) -> None:
    _, client = default
    empty = client.get(TIMESERIES, params=window(end_time=START)).json()
    assert empty == {"point_samples": [], "next_cursor": None, "has_more": False}
    whole = client.get(TIMESERIES, params=window(page_size=100_000)).json()
    assert (
        whole["has_more"] is False
        and len(whole["point_samples"]) == served_samples(BASE, SITE, START, END).height
    )


def test_a_repeated_request_gets_the_same_bytes(default: tuple[Simulator, httpx.Client]) -> None:
    _, client = default
    first = client.get(TIMESERIES, params=window(page_size=50))
    assert client.get(TIMESERIES, params=window(page_size=50)).content == first.content


def test_without_raw_data_pages_are_five_minute_means(default: tuple[Simulator, httpx.Client]) -> None:
    _, client = default
    start, end = "2026-11-27T00:02:30Z", "2026-11-27T01:47:00Z"
    raw = served_samples(BASE, SITE, start, end)
    means = (
        raw.group_by("name", time=pl.col("time").dt.truncate("5m"), maintain_order=True)
        .agg(pl.col("value").mean().round(4))
        .sort("name", "time")
    )
    expected = served_aggregates(BASE, SITE, start, end)
    assert expected.select("name", "time", "value").equals(means)
    params = {"start_time": start, "end_time": end, "page_size": 33}
    records, _ = page_through(client, params)
    assert [(r["name"], r["time"], r["value"]) for r in records] == as_served(expected)


def test_the_official_client_pages_through_every_sample(default: tuple[Simulator, httpx.Client]) -> None:
    from aceiot_models.api.client import APIClient
    from aceiot_models.timeseries import PointSample

    sim, _ = default
    client = APIClient(base_url=sim.url, api_key=KEY)
    got = client.get_site_timeseries_paginated(SITE, START, END, page_size=250, raw_data=True)[
        "point_samples"
    ]
    expected = served_samples(BASE, SITE, START, END)
    assert [(s["name"], s["time"], s["value"]) for s in got] == as_served(expected)
    assert [PointSample(**s).time for s in got] == expected["time"].to_list()


def outage_free(frame: pl.DataFrame, outages: tuple[tuple[str, str | None, str | None], ...]) -> pl.DataFrame:
    """The rows of `frame` that no outage covers."""
    down = pl.lit(False)
    for name, start, end in outages:
        after = pl.lit(True) if start is None else pl.col("time") >= instant(start)
        before = pl.lit(True) if end is None else pl.col("time") < instant(end)
        down = down | ((pl.col("name") == name) & after & before)
    return frame.filter(~down)


def test_an_outage_removes_exactly_its_span_at_every_page_size(serve: Any) -> None:
    # Few points, so that a page of one sample at a time stays quick.
    few = replace(BASE, points=12)
    point = next(p.name for p in site_points(SITE, few.points) if p.interval_s == 60)
    # The second outage cuts one sample out of a 5-minute bucket, leaving both halves in that bucket.
    outages = (
        (point, "2026-11-27T00:12:30Z", "2026-11-27T00:31:10Z"),
        (point, "2026-11-27T00:40:30+00:00", "2026-11-27T00:41:30"),
    )
    whole = replace(few, faults=Faults(bad_value_fraction=0.3), time_format="mixed")
    cfg = replace(whole, outages=outages)
    expected = served_samples(cfg, SITE, START, END)
    assert expected.equals(outage_free(served_samples(whole, SITE, START, END), outages))
    assert expected.height == served_samples(whole, SITE, START, END).height - 19 - 1
    _, client = serve(cfg)
    for page_size in (1, 7, 100, 1000):
        records, pages = page_through(client, window(page_size=page_size))
        assert [(r["name"], r["time"], r["value"]) for r in records] == as_served(expected)
        assert pages == math.ceil(expected.height / page_size)
    means = served_aggregates(cfg, SITE, START, END)
    for page_size in (1, 7, 100):
        records, _ = page_through(client, window(page_size=page_size, raw_data="false"))
        assert [(r["name"], r["time"], r["value"]) for r in records] == as_served(means)
    others = pl.col("name") != point
    assert means.filter(others).equals(served_aggregates(whole, SITE, START, END).filter(others))
    clean = served_samples(replace(cfg, faults=Faults()), SITE, START, END).filter(~others)
    own_means = clean.group_by("name", time=pl.col("time").dt.truncate("5m"), maintain_order=True).agg(
        pl.col("value").mean().round(4)
    )
    assert means.filter(~others).select("name", "time", "value").equals(own_means)


def test_a_silent_point_is_configured_but_never_has_data(serve: Any) -> None:
    silent = next(p.name for p in site_points(SITE, BASE.points) if p.configured)
    cfg = replace(BASE, outages=((silent, None, None),))
    _, client = serve(cfg)
    configured = client.get(f"/sites/{SITE}/configured_points", params={"per_page": 1000}).json()["items"]
    assert {"name": silent, "collect_enabled": True} in [
        {key: item[key] for key in ("name", "collect_enabled")} for item in configured
    ]
    others = pl.col("name") != silent
    for raw_data, served in (("true", served_samples), ("false", served_aggregates)):
        expected = served(cfg, SITE, START, END)
        assert expected.equals(served(BASE, SITE, START, END).filter(others))
        records, _ = page_through(client, window(page_size=97, raw_data=raw_data))
        assert [(r["name"], r["time"], r["value"]) for r in records] == as_served(expected)


@pytest.mark.parametrize(
    ("outage", "fragment"),
    [
        (("", None, None), "must name its point"),
        (("demo-site/ahu-1/sa_temp", "yesterday", None), "not an ISO 8601 instant"),
        (("demo-site/ahu-1/sa_temp", None, "2026-13-01"), "not an ISO 8601 instant"),
        (("demo-site/ahu-1/sa_temp", END, START), "must be before"),
        (("demo-site/ahu-1/sa_temp", "2026-11-27T01:00:00+01:00", "2026-11-27T00:00:00"), "must be before"),
    ],
)
def test_invalid_outages_are_refused(outage: tuple[str, str | None, str | None], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        replace(BASE, outages=(outage,))


def test_an_outage_of_an_unknown_point_is_refused() -> None:
    with pytest.raises(ValueError, match="outage names no served point: demo-site/ahu-1/typo"):
        Simulator(replace(BASE, outages=(("demo-site/ahu-1/typo", None, None),)))


def test_extra_points_are_served_by_every_site_named_exactly_as_given(serve: Any) -> None:
    cfg = replace(BASE, extra_points=(" zone[1]/temp* ",), extra_disabled_points=("zone1/temp?",))
    _, client = serve(cfg)
    configured = client.get(f"/sites/{SITE}/configured_points", params={"per_page": 1000}).json()["items"]
    flags = {item["name"]: item["collect_enabled"] for item in configured}
    assert (flags[" zone[1]/temp* "], flags["zone1/temp?"]) == (True, False)
    expected = served_samples(cfg, SITE, START, END)
    assert expected.filter(~pl.col("name").is_in(cfg.extra_points + cfg.extra_disabled_points)).equals(
        served_samples(BASE, SITE, START, END)
    )
    assert {" zone[1]/temp* ", "zone1/temp?"} <= set(served_samples(cfg, "annex", START, END)["name"])
    records, _ = page_through(client, window(page_size=97, raw_data="true"))
    assert [(r["name"], r["time"], r["value"]) for r in records] == as_served(expected)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"extra_points": ("",)}, "not empty"),
        ({"extra_points": ("x",), "extra_disabled_points": ("x",)}, "unique"),
        ({"extra_disabled_points": ("annex/ahu-1/sa_temp",)}, "already served by site 'annex'"),
    ],
)
def test_invalid_extra_points_are_refused(extra: dict[str, tuple[str, ...]], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        Simulator(replace(BASE, **extra))  # type: ignore[arg-type]


def test_cli_refuses_an_extra_point_that_is_already_served() -> None:
    from ace_etl.cli import app

    result = CliRunner().invoke(app, ["simulator", "--extra-point", "demo-site/ahu-1/sa_temp"])
    assert result.exit_code == 2 and "already served" in result.output


# --- other endpoints --------------------------------------------------------------------------


def test_configured_points_page_through_the_listed_points(default: tuple[Simulator, httpx.Client]) -> None:
    _, client = default
    listed = [p for p in site_points(SITE, BASE.points, BASE.interval, BASE.configured_fraction) if p.listed]
    items: list[dict] = []
    for page in range(1, 100):
        body = client.get(f"/sites/{SITE}/configured_points", params={"page": page, "per_page": 7}).json()
        assert (body["page"], body["per_page"], body["total"]) == (page, 7, len(listed))
        assert body["pages"] == math.ceil(len(listed) / 7)
        items += body["items"]
        if page == body["pages"]:
            break
    assert items == served_points(BASE, SITE)
    assert [item["name"] for item in items] == [p.name for p in listed]
    # What the official client reads: aceiot-models' Point, every item.
    for item, spec in zip(items, listed, strict=True):
        point = Point.model_validate(item)
        assert (point.collect_enabled, point.collect_interval, point.point_type) == (
            spec.configured, spec.interval_s, spec.kind,
        )  # fmt: skip
        assert point.id is not None and point.created is not None and point.updated is not None
        assert point.marker_tags and point.bacnet_data is not None and point.bacnet_data.object_type
    assert len({item["id"] for item in items}) == len(items)
    too_many = client.get(f"/sites/{SITE}/configured_points", params={"per_page": 10_001})
    assert too_many.status_code == 400


def test_weather_real_shape_is_current_conditions(default: tuple[Simulator, httpx.Client]) -> None:
    before = datetime.now(UTC).replace(second=0, microsecond=0)
    body = default[1].get(f"/sites/{SITE}/weather").json()
    fields = {
        "temp",
        "feels_like",
        "pressure",
        "humidity",
        "dew_point",
        "clouds",
        "wind_speed",
        "wind_deg",
        "wet_bulb",
    }
    assert set(body) == fields
    assert all(
        set(v) == {"name", "value", "time", "units", "source"} and v["name"] == k for k, v in body.items()
    )
    moment = instant(body["temp"]["time"])
    assert before <= moment <= before + timedelta(minutes=1)
    assert body == current_weather(SITE, moment)
    assert body["temp"]["units"] == "degF" and body["wet_bulb"]["value"] <= body["temp"]["value"]


def test_weather_seed_shape_is_hourly_rows_of_the_window(serve: Any) -> None:
    cfg = replace(BASE, shape="seed")
    _, client = serve(cfg)
    start, end = "2026-11-27T00:30:00Z", "2026-11-27T06:00:00Z"
    rows = client.get(f"/sites/{SITE}/weather", params={"start_time": start, "end_time": end}).json()["data"]
    expected = served_weather(cfg, SITE, start, end)
    assert [r["timestamp"] for r in rows] == [f"2026-11-27T0{h}:00:00Z" for h in range(1, 6)]
    assert [instant(r["timestamp"]) for r in rows] == expected["timestamp"].to_list()
    for column in ("temperature", "humidity", "precipitation", "wind_speed", "conditions"):
        assert [r[column] for r in rows] == expected[column].to_list()


def test_auth_is_required_everywhere_and_the_key_never_echoes(serve: Any, tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    sim, client = serve(replace(BASE, api_key="s3cret-key", request_log=log))
    for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "Basic s3cret-key"}):
        for path in (TIMESERIES, "/sites", "/nowhere"):
            response = httpx.get(sim.url + path, headers=headers, params=window())
            assert response.status_code == 401 and "error" in response.json()
            assert "s3cret" not in response.text and "wrong-key" not in response.text
    client.get("/sites", params={"api_key": "s3cret-key"})
    text = log.read_text()
    assert "s3cret" not in text and "wrong-key" not in text and "[redacted]" in text
    assert [r["n"] for r in sim.requests] == [None] * 9 + [1]


def test_unknown_sites_paths_and_point_endpoints(default: tuple[Simulator, httpx.Client]) -> None:
    _, client = default
    assert client.get("/sites/nope/timeseries/paginated", params=window()).status_code == 404
    assert client.get("/sites/nope/weather").json() == {"error": "unknown site: nope"}
    assert client.get(f"/sites/{SITE}/nothing").status_code == 404
    assert client.get(str(client.base_url).removesuffix("/api/") + "/other").status_code == 404
    point = "demo-site%2Fahu-1%2Fsa_temp"
    for method, path in (
        ("GET", f"/points/{point}/timeseries"),
        ("GET", f"/sites/{SITE}/points/{point}/timeseries"),
        ("GET", f"/sites/{SITE}/points"),
        ("POST", "/points/get_timeseries"),
    ):
        response = client.request(method, path, params=window())
        assert response.status_code == 400
        assert response.json()["error"].startswith("point-specific endpoints are not supported")
    sites = client.get("/sites").json()["items"]
    assert [Site.model_validate(site).name for site in sites] == [SITE, "annex"]
    assert sites == [served_site(default[0].config, site) for site in (SITE, "annex")]
    assert client.get(f"/sites/{SITE}").json() == sites[0]


# --- faults -----------------------------------------------------------------------------------


def statuses(client: httpx.Client, count: int) -> list[int]:
    return [client.get(f"/sites/{SITE}/configured_points").status_code for _ in range(count)]


def test_429_every_k_with_retry_after_seconds_or_http_date(serve: Any) -> None:
    _, client = serve(replace(BASE, faults=Faults(status_429_every=3, retry_after=0.5)))
    assert statuses(client, 8) == [200, 200, 429, 200, 200, 429, 200, 200]
    assert client.get("/sites").headers["Retry-After"] == "0.5"  # request 9
    _, dated = serve(
        replace(BASE, faults=Faults(status_429_every=1, retry_after=30, retry_after_http_date=True))
    )
    when = parsedate_to_datetime(dated.get("/sites").headers["Retry-After"])
    assert 25 <= (when - datetime.now(UTC)).total_seconds() <= 32


def test_500_every_k_and_precedence_over_transport_faults(serve: Any) -> None:
    _, client = serve(replace(BASE, faults=Faults(status_500_every=2)))
    assert statuses(client, 4) == [200, 500, 200, 500]
    faults = Faults(status_429_every=2, status_500_every=3, drop_connection_every=5, truncate_every=5)
    sim, client = serve(replace(BASE, faults=faults))
    results: list[int | str] = []
    for _ in range(7):
        try:
            results.append(client.get("/sites").status_code)
        except httpx.RemoteProtocolError:
            results.append("dropped")
    assert results == [200, 429, 500, 429, "dropped", 429, 200]
    seen = [r["fault"] for r in sim.requests]
    assert seen == [None, "status_429", "status_500", "status_429", "drop_connection", "status_429", None]


def test_drop_connection_closes_the_socket_mid_body(serve: Any) -> None:
    sim, client = serve(replace(BASE, faults=Faults(drop_connection_every=2)))
    assert client.get(TIMESERIES, params=window()).status_code == 200
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(TIMESERIES, params=window())
    assert client.get(TIMESERIES, params=window()).status_code == 200
    full, dropped = sim.requests[0], sim.requests[1]
    assert dropped["fault"] == "drop_connection" and dropped["bytes"] == full["bytes"] // 2


def test_truncate_sends_half_the_json_with_a_matching_length(serve: Any) -> None:
    _, client = serve(replace(BASE, faults=Faults(truncate_every=2)))
    whole = client.get(TIMESERIES, params=window())
    cut = client.get(TIMESERIES, params=window())
    assert cut.status_code == 200 and int(cut.headers["Content-Length"]) == len(cut.content)
    assert cut.content == whole.content[: len(whole.content) // 2]
    with pytest.raises(json.JSONDecodeError):
        cut.json()


def test_a_gzip_bomb_is_small_on_the_wire_and_inflates_to_its_size(serve: Any) -> None:
    _, client = serve(replace(BASE, faults=Faults(gzip_bomb_every=2, gzip_bomb_bytes=8 * 2**20)))
    assert client.get(TIMESERIES, params=window()).headers.get("Content-Encoding") is None
    with client.stream("GET", TIMESERIES, params=window()) as bomb:
        wire = b"".join(bomb.iter_raw())
    assert bomb.headers["Content-Encoding"] == "gzip" and len(wire) < 2**20 // 16
    assert zlib.decompress(wire, 16 + zlib.MAX_WBITS) == bytes(8 * 2**20)


def test_trickle_and_endless_bodies_end_when_the_client_hangs_up(serve: Any) -> None:
    sim, client = serve(replace(BASE, faults=Faults(trickle_every=1, trickle_delay=0.05)))
    with client.stream("GET", TIMESERIES, params=window()) as slow:
        pieces, head = slow.iter_raw(), b""
        while len(head) < 3:
            head += next(pieces)
    assert head.startswith(b'{"p') and int(slow.headers["Content-Length"]) > 1000
    assert [r["fault"] for r in sim.requests] == ["trickle"]
    sim, client = serve(replace(BASE, faults=Faults(endless_every=1)))
    with client.stream("GET", TIMESERIES, params=window()) as endless:
        received = 0
        for piece in endless.iter_raw():
            received += len(piece)
            if received > 4 * 2**20:
                break
    assert endless.headers["Transfer-Encoding"] == "chunked" and received > 4 * 2**20
    assert [r["fault"] for r in sim.requests] == ["endless"]


@pytest.mark.parametrize("lost", ["null", "empty"])
def test_a_lost_cursor_says_there_is_more_without_one(serve: Any, lost: str) -> None:
    _, client = serve(replace(BASE, faults=Faults(lost_cursor=lost)))
    page = client.get(TIMESERIES, params=window(page_size=10)).json()
    assert page["has_more"] is True and page["next_cursor"] == (None if lost == "null" else "")
    last = client.get(TIMESERIES, params=window(page_size=100_000)).json()
    assert last["has_more"] is False and last["next_cursor"] is None  # the last page is as ever


def test_empty_pages_go_on_forever_with_fresh_cursors(serve: Any) -> None:
    _, client = serve(replace(BASE, faults=Faults(empty_pages=True)))
    cursors, params = [], window(page_size=10)
    for _ in range(5):
        page = client.get(TIMESERIES, params=params).json()
        assert page["point_samples"] == [] and page["has_more"] is True
        cursors.append(page["next_cursor"])
        params = {**params, "cursor": page["next_cursor"]}
    assert len(set(cursors)) == 5


def test_odd_shapes_and_bad_fault_values(serve: Any) -> None:
    _, client = serve(replace(BASE, faults=Faults(odd_shape="points_items_text")))
    items = client.get(f"/sites/{SITE}/configured_points").json()["items"]
    assert items and all(isinstance(item, str) for item in items)
    for bad in ({"lost_cursor": "nil"}, {"odd_shape": "square"}, {"trickle_delay": 0}, {"endless_every": -1}):
        with pytest.raises(ValueError):
            Faults(**bad)  # type: ignore[arg-type]


def test_latency_delays_every_response(serve: Any) -> None:
    _, client = serve(replace(BASE, faults=Faults(latency=0.2)))
    began = time.perf_counter()
    statuses(client, 2)
    assert time.perf_counter() - began >= 0.4


def test_cursors_expire_after_their_ttl(serve: Any) -> None:
    sim, client = serve(replace(BASE, faults=Faults(cursor_ttl=0.3)))
    cursor = client.get(TIMESERIES, params=window(page_size=10)).json()["next_cursor"]
    time.sleep(0.35)
    expired = client.get(TIMESERIES, params=window(page_size=10, cursor=cursor))
    assert expired.status_code == 400 and expired.json() == {"error": "cursor expired", "cursor": cursor}
    assert sim.requests[-1]["fault"] == "cursor_ttl"
    # The first page is cached no longer than half the TTL, so its next cursor is issued again.
    fresh = client.get(TIMESERIES, params=window(page_size=10)).json()["next_cursor"]
    assert fresh != cursor


def test_a_cursor_is_valid_until_its_ttl() -> None:
    from ace_etl.simulator.cursor import CursorError, issue_cursor, read_cursor, signing_key

    key = signing_key("demo")
    cursor = issue_cursor(key, "query", 10, now=1000.0)
    assert read_cursor(key, cursor, "query", now=1000.25, ttl=0.3) == 10
    with pytest.raises(CursorError, match="cursor expired"):
        read_cursor(key, cursor, "query", now=1000.35, ttl=0.3)
    with pytest.raises(CursorError, match="cursor expired"):  # a test expired every cursor so far
        read_cursor(key, cursor, "query", now=1000.0, ttl=None, expired_until=1000.0)
    assert read_cursor(key, cursor, "query", now=1000.0, ttl=None, expired_until=999.999) == 10


def test_a_test_can_expire_every_cursor_issued_so_far(serve: Any) -> None:
    sim, client = serve(BASE)  # cursors never expire of themselves
    cursor = client.get(TIMESERIES, params=window(page_size=10)).json()["next_cursor"]
    assert client.get(TIMESERIES, params=window(page_size=10, cursor=cursor)).status_code == 200
    assert client.put("/_simulator/expire_cursors").status_code == 200
    expired = client.get(TIMESERIES, params=window(page_size=10, cursor=cursor))
    assert expired.status_code == 400 and expired.json() == {"error": "cursor expired", "cursor": cursor}
    assert sim.requests[-1]["fault"] == "cursor_ttl"
    # The first page is issued again, not served from the cache, with a cursor that works.
    fresh = client.get(TIMESERIES, params=window(page_size=10)).json()["next_cursor"]
    assert client.get(TIMESERIES, params=window(page_size=10, cursor=fresh)).status_code == 200
    sim.expire_cursors()  # the same from Python
    assert client.get(TIMESERIES, params=window(page_size=10, cursor=fresh)).status_code == 400


def test_bad_values_are_served_as_served_samples_says(serve: Any) -> None:
    cfg = replace(BASE, faults=Faults(bad_value_fraction=0.25), time_format="mixed")
    _, client = serve(cfg)
    records, _ = page_through(client, window(page_size=300))
    assert [(r["name"], r["time"], r["value"]) for r in records] == as_served(
        served_samples(cfg, SITE, START, END)
    )
    assert {type(r["value"]).__name__ for r in records} == {"float", "int", "bool", "str", "NoneType"}


def test_rate_limit_is_a_sliding_window_with_retry_after(serve: Any) -> None:
    _, client = serve(replace(BASE, faults=Faults(rate_limit=3, rate_period=0.5)))
    assert statuses(client, 3) == [200, 200, 200]
    limited = client.get("/sites")
    assert limited.status_code == 429
    wait = float(limited.headers["Retry-After"])
    assert 0 < wait <= 0.5
    time.sleep(wait + 0.02)
    assert client.get("/sites").status_code == 200


# --- request log, timing, lifecycle -----------------------------------------------------------


def test_the_request_log_records_every_request_in_memory_and_on_disk(serve: Any, tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    sim, client = serve(replace(BASE, request_log=log, faults=Faults(status_500_every=2)))
    ok = client.get(TIMESERIES, params=window(page_size=5))
    client.get(f"/sites/{SITE}/weather")
    entries = sim.requests
    assert [json.loads(line) for line in log.read_text().splitlines()] == entries
    first, second = entries
    assert set(first) == {"ts", "n", "method", "path", "params", "status", "bytes", "fault"}
    assert first["path"] == f"/api{TIMESERIES}" and first["params"] == {
        k: str(v) for k, v in window(page_size=5).items()
    }
    assert (first["status"], first["bytes"], first["fault"], first["method"]) == (
        200,
        len(ok.content),
        None,
        "GET",
    )
    assert (second["status"], second["fault"], second["n"]) == (500, "status_500", 2)
    sim.clear_requests()
    assert sim.requests == []


def test_100k_sample_pages_follow_one_another(serve: Any) -> None:
    cfg = SimulatorConfig(points=2000, interval=60)
    _, client = serve(cfg)
    params = {
        "start_time": "2026-11-27T00:00:00Z",
        "end_time": "2026-11-28T00:00:00Z",
        "page_size": 100_000,
        "raw_data": "true",
    }
    cursor = client.get(TIMESERIES, params=params).json()["next_cursor"]  # warm-up
    for _ in range(3):
        response = client.get(TIMESERIES, params=params | {"cursor": cursor})
        cursor = response.json()["next_cursor"]
        assert len(response.json()["point_samples"]) == 100_000


def test_starts_on_a_free_port_and_stops_cleanly() -> None:
    sim = Simulator(BASE).start()
    url = sim.url
    assert url.startswith("http://127.0.0.1:") and url.endswith("/api")
    with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}) as client:
        assert client.get(url + "/sites").status_code == 200
        sim.stop()
        with pytest.raises(httpx.TransportError):
            client.get(url + "/sites")


def test_cli_help_teaches_every_option() -> None:
    from ace_etl.cli import app

    result = CliRunner().invoke(app, ["simulator", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert result.exit_code == 0
    for option in [
        "--host",
        "--port",
        "--shape",
        "--sites",
        "--points",
        "--interval",
        "--api-key",
        "--time-format",
        "--request-log",
        "--fail-429-every",
        "--retry-after",
        "--fail-500-every",
        "--drop-connection-every",
        "--truncate-every",
        "--latency",
        "--cursor-ttl",
        "--bad-value-fraction",
        "--outage",
        "--rate-limit",
        "--rate-period",
        "--trickle-every",
        "--trickle-delay",
        "--gzip-bomb-every",
        "--gzip-bomb-bytes",
        "--endless-every",
        "--lost-cursor",
        "--empty-pages",
        "--odd-shape",
        "--site-location",
        "--metadata",
        "--site-records",
    ]:
        assert option in result.output


@pytest.mark.parametrize(
    "outage", ["demo-site/ahu-1/sa_temp@2026-11-27", "demo-site/ahu-1/sa_temp@soon/", "demo-site/ahu-1/typo"]
)
def test_cli_refuses_a_malformed_outage(outage: str) -> None:
    from ace_etl.cli import app

    result = CliRunner().invoke(app, ["simulator", "--outage", outage])
    assert result.exit_code == 2 and "outage" in result.output


@pytest.mark.parametrize(
    ("location", "fragment"),
    [("b=1", "expected NAME=LAT,LON"), ("b=north,2", "expected NAME=LAT,LON"), ("b=91,0", "latitude must be"),
     ("c=1,2", "not a served site")],
)  # fmt: skip
def test_cli_refuses_a_malformed_site_location(location: str, fragment: str) -> None:
    from ace_etl.cli import app

    result = CliRunner().invoke(app, ["simulator", "--sites", "a,b", "--site-location", location])
    assert result.exit_code == 2 and fragment in result.output


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "from ace_etl.cli import main; main()", "simulator", "--port", "0"]
    command += ["--sites", "a,b", "--points", "5", "--request-log", str(tmp_path / "log.jsonl")]
    outages = (("b/ahu-1/ma_temp", None, None), ("b/ahu-1/oa_temp", "2026-11-27T00:30Z", None))
    command += ["--outage", "b/ahu-1/ma_temp", "--outage", "b/ahu-1/oa_temp@2026-11-27T00:30Z/"]
    command += ["--site-location", "b=35.6812,139.7671"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        ready = process.stdout.readline() if process.stdout else ""
        assert ready.startswith("ACE IoT API simulator ready: http://127.0.0.1:")
        url = ready.split()[5]
        assert process.stdout and process.stdout.readline().strip() == f"export ACEIOT_API_URL={url}"
        response = httpx.get(url + "/sites/b/configured_points", headers={"Authorization": "Bearer demo"})
        assert response.json()["total"] > 0
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer demo"}) as client:
            records = client.get("/sites/b/timeseries/paginated", params=window(page_size=10_000)).json()
        cfg = SimulatorConfig(sites=("a", "b"), points=5, outages=outages)
        expected = as_served(served_samples(cfg, "b", START, END))
        assert [(r["name"], r["time"], r["value"]) for r in records["point_samples"]] == expected
        assert "b/ahu-1/ma_temp" not in {name for name, _, _ in expected}
        site = httpx.get(url + "/sites/b", headers={"Authorization": "Bearer demo"}).json()
        assert (site["latitude"], site["longitude"]) == (35.6812, 139.7671)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
    log = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["status"] for line in log] == [200, 200, 200]
