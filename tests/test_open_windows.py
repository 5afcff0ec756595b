"""A window that has not ended at the run's as-of is never complete: it is landed up to as-of, a later run
fetches the rest, and heal neither records checks for it nor confirms its gaps. Real CLI, the simulator's
late uploads (its upload horizon) over loopback, real Parquet and dbt builds."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from ace_etl.simulator import Simulator, SimulatorConfig, site_points
from extract.api.client import AceClient
from extract.api.points import PointSelector
from extract.lake.storage import LocalStorage
from extract.run.heal import Gap, heal_site
from extract.run.job import Job
from extract.run.lease import SiteLease
from extract.run.pipeline import run_extract
from extract.windows import Window
from tests.clihelp import ace_etl, assert_landed_once, expected_rows, window_statuses

SITE = "hq"
CFG = SimulatorConfig(sites=(SITE,), points=20, interval=300, api_key="open-windows-key-0123456789")
DAY, NOON, NEXT = "2024-06-10T00:00:00Z", "2024-06-10T12:00:00Z", "2024-06-11T00:00:00Z"


def env_of(sim: Simulator) -> dict[str, str]:
    return {"ACEIOT_API_URL": sim.url, "ACEIOT_API_KEY": CFG.api_key}


def checkpoint_states(data: Path) -> list[tuple[str, str, str | None]]:
    found = [json.loads(p.read_bytes()) for p in sorted((data / "state" / "checkpoints").rglob("*.json"))]
    return [(c["window"]["start"], c["state"], c["live_until"]) for c in found]


def asked_from(sim: Simulator) -> list[datetime]:
    """The start of every timeseries request the simulator has seen."""
    return [
        datetime.fromisoformat(r["params"]["start_time"]).replace(tzinfo=UTC)
        for r in sim.requests
        if "/timeseries/" in r["path"]
    ]


@pytest.mark.parametrize("second", ["same command", "next day's run"])
def test_a_range_ending_after_as_of_is_landed_but_not_complete(tmp_path: Path, second: str) -> None:
    data = tmp_path / "data"
    command = [
        "run",
        "--site",
        SITE,
        "--start",
        DAY,
        "--end",
        NEXT,
        "--data-dir",
        str(data),
        "--page-size",
        "500",
    ]
    # At noon the gateway has uploaded up to noon: the API has the morning, the afternoon does not exist yet.
    with Simulator(replace(CFG, upload_horizon=NOON)) as sim:
        first = ace_etl(*command, "--as-of", NOON, "--no-transform", env=env_of(sim))
        assert first.returncode == 0, first.stderr
        assert (
            "1 window(s) had not ended at 2024-06-10 12:00 UTC: landed up to then, not complete"
            in first.stderr
        )
        assert_landed_once(data, expected_rows(CFG, SITE, DAY, NOON))
        assert checkpoint_states(data) == [("2024-06-10T00:00:00+00:00", "live", "2024-06-10T12:00:00+00:00")]
        assert window_statuses(data) == ["live"]

        sim.set_upload_horizon(None)  # the afternoon is uploaded
        sim.clear_requests()
        after = "2024-06-11T00:05:00Z"
        if second == "same command":
            again = ace_etl(*command, "--as-of", after, env=env_of(sim))
        else:
            again = ace_etl(
                "run", "--site", SITE, "--as-of", after, "--lookback-days", "1", "--data-dir", str(data),
                "--page-size", "500", env=env_of(sim),
            )  # fmt: skip
        assert again.returncode == 0, again.stderr
        asked = asked_from(sim)
    assert asked and min(asked) == datetime.fromisoformat(NOON)  # the second run asks only for what it lacks
    assert_landed_once(data, expected_rows(CFG, SITE, DAY, NEXT))
    assert checkpoint_states(data) == [("2024-06-10T00:00:00+00:00", "complete", "2024-06-11T00:00:00+00:00")]
    assert window_statuses(data)[-1] == "complete"
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from timeseries_gaps").fetchall() == [(0,)]


def test_windows_after_as_of_are_left_untouched(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Simulator(CFG) as sim:
        result = ace_etl(
            "run", "--site", SITE, "--start", DAY, "--end", "2024-06-13T00:00:00Z", "--as-of", NOON,
            "--data-dir", str(data), "--page-size", "2000", "--no-transform", env=env_of(sim),
        )  # fmt: skip
        asked = asked_from(sim)
    assert result.returncode == 0, result.stderr
    assert asked and {a.date().isoformat() for a in asked} == {"2024-06-10"}
    assert window_statuses(data) == ["live"]  # the open day; the two after as-of, never fetched, have no row
    assert [c[:2] for c in checkpoint_states(data)] == [("2024-06-10T00:00:00+00:00", "live")]
    assert_landed_once(data, expected_rows(CFG, SITE, DAY, NOON))


def test_heal_during_live_lands_what_the_api_has_and_confirms_nothing_open(tmp_path: Path) -> None:
    data = tmp_path / "data"
    enabled = sorted(p.name for p in site_points(SITE, CFG.points, CFG.interval) if p.configured)
    silent = enabled[0]  # the API never has this point's 05:00 to 06:00 of the open day
    cfg = replace(CFG, outages=((silent, "2024-06-10T05:00:00Z", "2024-06-10T06:00:00Z"),))

    def live(sim: Simulator, as_of: str) -> None:
        result = ace_etl(
            "run", "--site", SITE, "--live", "--as-of", as_of, "--data-dir", str(data), "--page-size", "2000",
            env=env_of(sim),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr

    def gaps() -> list[tuple[str, str, str]]:
        with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
            con.execute("set TimeZone = 'UTC'")
            found = con.execute(
                "select point_name, gap_start, status from timeseries_gaps where gap_start >= '2024-06-10' order by all"
            ).fetchall()
        return [(name, start.isoformat(), status) for name, start, status in found]

    with Simulator(replace(cfg, upload_horizon="2024-06-10T08:00:00Z")) as sim:
        live(sim, "2024-06-10T10:02:00Z")  # the day before, and today as uploaded so far (to 08:00)
        assert len(gaps()) == len(enabled) + 1  # every point from 07:55, and the outage
        sim.set_upload_horizon(None)  # the late samples arrive
        heal = ["heal", "--site", SITE, "--start", "2024-06-09", "--end", NEXT, "--data-dir", str(data)]
        # gap_confirmed_after (3) heals: the last one builds, and its gaps are what the three recorded
        for build in (False, False, True):
            healed = ace_etl(*heal, "--force", *([] if build else ["--no-transform"]), env=env_of(sim))
            assert healed.returncode == 0, healed.stderr
            assert "Traceback" not in healed.stderr
        # The late samples are landed in the live window, once; only the gap the API cannot fill is left,
        # and it stays open: the window is not complete, so no check is recorded for it.
        assert gaps() == [(silent, "2024-06-10T04:55:00+00:00", "open")]
        checks = data / "landing" / "gap_checks"
        assert not list(checks.rglob("*.parquet"))
        assert "still open" in healed.stderr
        assert_landed_once(data, expected_rows(cfg, SITE, "2024-06-09T00:00:00Z", "2024-06-10T10:02:00Z"))
        assert checkpoint_states(data)[-1] == (
            "2024-06-10T00:00:00+00:00",
            "live",
            "2024-06-10T10:02:00+00:00",
        )
        live(sim, "2024-06-10T10:07:00Z")  # the live checkpoint goes on where it was
    assert_landed_once(data, expected_rows(cfg, SITE, "2024-06-09T00:00:00Z", "2024-06-10T10:07:00Z"))


def test_heal_neither_fetches_nor_records_a_gap_of_a_window_being_extracted(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "data")
    enabled = sorted(p.name for p in site_points(SITE, CFG.points, CFG.interval) if p.configured)
    start = datetime.fromisoformat(DAY)

    def stop(site: str, window: Window, page: int, samples: int) -> None:
        raise RuntimeError("stopped after the first page")  # the window stays part-way, in `landing`

    with Simulator(CFG) as sim, AceClient(sim.url, CFG.api_key, requests_per_minute=None) as client:
        job = Job(
            sites=(SITE,),
            span=Window(start, datetime.fromisoformat(NEXT)),
            data_dir=tmp_path / "data",
            page_size=500,
        )
        run_extract(client, storage, job, on_page=stop)
        assert checkpoint_states(tmp_path / "data") == [("2024-06-10T00:00:00+00:00", "landing", None)]
        sim.clear_requests()
        gap = Gap(enabled[0], start + timedelta(hours=1), start + timedelta(hours=2))
        with SiteLease(storage, SITE, "heal-test") as lease:
            healed = heal_site(client, storage, lease, [gap], PointSelector.from_list(enabled), force=True)
        assert asked_from(sim) == []
    assert (healed.gaps, healed.skipped, healed.ranges, healed.samples) == (1, 1, 0, 0)
    assert not storage.list("landing/gap_checks")
