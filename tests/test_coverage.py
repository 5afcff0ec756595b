"""The coverage contract: runs keyed to as-of, catch-up after missed days, late data seen as gaps and healed
by re-fetching only the missing hours. Real CLI, simulator over loopback, real dbt builds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl

from ace_etl.simulator import Simulator, SimulatorConfig, site_points
from tests.clihelp import ace_etl, expected_rows, landed_rows
from tests.support import warehouse_rows as rows

SITE = "hq"
# Reykjavik keeps UTC all year: the site's local days, which these tests count, are UTC days.
CFG = SimulatorConfig(
    sites=(SITE,),
    points=20,
    interval=300,
    api_key="coverage-key-0123456789",
    site_locations=((SITE, 64.1466, -21.9426),),
)
DAY, NEXT = "2024-06-10T00:00:00Z", "2024-06-11T00:00:00Z"
LATE = "2024-06-10T20:00:00Z"  # the gateway had uploaded up to here when the day was extracted
ENABLED = sorted(p.name for p in site_points(SITE, CFG.points, CFG.interval) if p.configured)


def env_of(sim: Simulator) -> dict[str, str]:
    return {"ACEIOT_API_URL": sim.url, "ACEIOT_API_KEY": CFG.api_key}


RAW = "select site_name, point_name, timestamp, value, quality from timeseries_raw order by all"
RAW_VALUES = "select point_name, timestamp, value from timeseries_raw order by all"


def timeseries_requests(sim: Simulator) -> int:
    return sum("/timeseries/" in r["path"] for r in sim.requests)


def test_a_run_three_days_late_lands_the_missed_days_and_nothing_it_has(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Simulator(CFG) as sim:
        # The run for 2024-06-10 (as of 06-11 00:00) lands 06-09 and 06-10 (lookback 2).
        first = ace_etl(
            "run", "--site", SITE, "--as-of", NEXT, "--lookback-days", "2", "--data-dir", str(data),
            "--page-size", "2000", "--no-transform", env=env_of(sim),
        )  # fmt: skip
        assert first.returncode == 0, first.stderr
        sim.clear_requests()
        # Three daily runs were missed; the next one, as of 06-14 00:00 with a 5-day lookback, lands 06-11,
        # 06-12 and 06-13 and asks nothing for the days it already has.
        late = ace_etl(
            "run", "--site", SITE, "--as-of", "2024-06-14T00:00:00Z", "--lookback-days", "5", "--data-dir",
            str(data), "--page-size", "2000", env=env_of(sim),
        )  # fmt: skip
        assert late.returncode == 0, late.stderr
        asked = {r["params"]["start_time"][:10] for r in sim.requests if "/timeseries/" in r["path"]}
    assert asked == {"2024-06-11", "2024-06-12", "2024-06-13"}
    runs = pl.read_parquet(data / "landing" / "runs" / "*.parquet").sort("window_start", "finished_at")
    latest = runs.group_by("window_start").agg(pl.col("status").last()).sort("window_start")
    assert latest["status"].to_list() == ["skipped", "skipped", "complete", "complete", "complete"]
    assert_landing_and_warehouse(data, "2024-06-09T00:00:00Z", "2024-06-14T00:00:00Z")


def assert_landing_and_warehouse(data: Path, start: str, end: str) -> None:
    expected = expected_rows(CFG, SITE, start, end)
    assert landed_rows(data).equals(expected)
    loaded = rows(
        data, "select point_name, timestamp, value from timeseries_raw order by point_name, timestamp"
    )
    assert loaded == expected.rows()


def test_an_open_window_is_not_fetched(tmp_path: Path) -> None:
    with Simulator(CFG) as sim:
        result = ace_etl(
            "run", "--site", SITE, "--as-of", "2024-06-10T12:00:00Z", "--lookback-days", "1", "--data-dir",
            str(tmp_path / "data"), "--no-transform", env=env_of(sim),
        )  # fmt: skip
        asked = {r["params"]["start_time"][:10] for r in sim.requests if "/timeseries/" in r["path"]}
    assert result.returncode == 0, result.stderr
    assert asked == {"2024-06-09"}  # 06-10 is still open at 12:00


def test_late_data_is_a_gap_until_heal_fetches_only_the_missing_hours(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Simulator(replace(CFG, upload_horizon=LATE)) as sim:
        first = ace_etl(
            "run", "--site", SITE, "--start", DAY, "--end", NEXT, "--data-dir", str(data), "--page-size", "500",
            env=env_of(sim),
        )  # fmt: skip
        assert first.returncode == 0, first.stderr
        day_requests = timeseries_requests(sim)
        # Every selected point stops at 19:55: the 4 hours to the end of the window are missing.
        gaps = rows(
            data,
            "select point_name, gap_start, gap_end, missing_samples, status from timeseries_gaps order by 1",
        )
        assert [(g[0], g[2].isoformat(), g[3], g[4]) for g in gaps] == [
            (name, "2024-06-11T00:00:00+00:00", 48, "open") for name in ENABLED
        ]
        coverage = rows(data, "select distinct expected_samples, received_samples from timeseries_coverage")
        assert coverage == [(288, 240)]
        # The samples arrive; heal asks for the missing hours only.
        sim.set_upload_horizon(None)
        sim.clear_requests()
        healed = ace_etl(
            "heal", "--site", SITE, "--start", DAY, "--end", NEXT, "--data-dir", str(data), "--page-size", "500",
            env=env_of(sim),
        )  # fmt: skip
        assert healed.returncode == 0, healed.stderr
        heal_requests = timeseries_requests(sim)
    assert 0 < heal_requests <= day_requests / 4, (heal_requests, day_requests)
    assert rows(data, "select count(*) from timeseries_gaps") == [(0,)]
    assert rows(data, RAW_VALUES) == expected_rows(CFG, SITE, DAY, NEXT).rows()
    landed = landed_rows(data)
    assert landed.height == landed.unique(["point_name", "timestamp"]).height
    assert "gaps still open" in healed.stdout


def test_a_gap_the_api_cannot_fill_is_retried_with_backoff_then_confirmed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    silent = ENABLED[0]
    with Simulator(replace(CFG, outages=((silent, "2024-06-10T06:00:00Z", "2024-06-10T08:00:00Z"),))) as sim:
        env = env_of(sim)
        assert (
            ace_etl(
                "run", "--site", SITE, "--start", DAY, "--end", NEXT, "--data-dir", str(data), env=env
            ).returncode
            == 0
        )
        heal = ["heal", "--site", SITE, "--start", DAY, "--end", NEXT, "--data-dir", str(data)]
        before = rows(data, RAW)
        assert ace_etl(*heal, env=env).returncode == 0
        assert rows(data, RAW) == before  # the API had nothing new: nothing changed
        sim.clear_requests()
        assert ace_etl(*heal, env=env).returncode == 0  # checked an instant ago without result: deferred
        assert timeseries_requests(sim) == 0
        assert ace_etl(*heal, "--force", "--no-transform", env=env).returncode == 0  # the last one builds
        assert ace_etl(*heal, "--force", env=env).returncode == 0
    assert rows(data, "select point_name, heal_attempts, status from timeseries_gaps") == [
        (silent, 3, "confirmed")
    ]


def test_live_runs_keep_the_open_day_current_with_one_request_each(tmp_path: Path) -> None:
    data = tmp_path / "data"

    def live(sim: Simulator, as_of: str, *extra: str) -> None:
        result = ace_etl(
            "run", "--site", SITE, "--live", "--as-of", as_of, "--data-dir", str(data), "--page-size", "2000",
            *extra, env=env_of(sim),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr

    with Simulator(CFG) as sim:
        live(sim, "2024-06-10T10:02:00Z", "--no-transform")  # catches up: the day before, then today so far
        sim.clear_requests()
        live(sim, "2024-06-10T10:07:00Z")
        assert [r["path"].rsplit("/", 2)[-2:] for r in sim.requests] == [["timeseries", "paginated"]]
        assert (
            rows(data, "select max(timestamp) from timeseries_raw")[0][0].isoformat()
            == "2024-06-10T10:05:00+00:00"
        )
        assert rows(data, "select count(*) from timeseries_gaps") == [(0,)]  # asked up to 10:07, all there
        live(sim, "2024-06-11T00:03:00Z", "--no-transform")  # the day closes: complete
        sim.clear_requests()
        daily = ace_etl(
            "run",
            "--site",
            SITE,
            "--as-of",
            NEXT,
            "--lookback-days",
            "1",
            "--data-dir",
            str(data),
            env=env_of(sim),
        )
        assert daily.returncode == 0, daily.stderr
        assert timeseries_requests(sim) == 0  # nothing left for the daily run
    assert (
        landed_rows(data)
        .filter(pl.col("timestamp") < pl.lit(NEXT).str.to_datetime(time_zone="UTC"))
        .equals(expected_rows(CFG, SITE, "2024-06-09T00:00:00Z", NEXT))
    )
    day = "select point_name, timestamp, value from timeseries_raw where timestamp >= '2024-06-10' and timestamp < '2024-06-11' order by all"
    assert rows(data, day) == expected_rows(CFG, SITE, DAY, NEXT).rows()


def test_the_coverage_picture_marks_a_planted_gap(tmp_path: Path) -> None:
    data, page = tmp_path / "data", tmp_path / "coverage.html"
    gappy = ENABLED[1]
    with Simulator(replace(CFG, outages=((gappy, "2024-06-10T06:00:00Z", "2024-06-10T09:00:00Z"),))) as sim:
        assert (
            ace_etl(
                "run", "--site", SITE, "--start", DAY, "--end", NEXT, "--data-dir", str(data), env=env_of(sim)
            ).returncode
            == 0
        )
    result = ace_etl("status", "--data-dir", str(data), "--html", str(page))
    assert result.returncode == 0, result.stderr
    text = page.read_text()
    assert text.count("class='cell gap-open'") == 1 and text.count("class='cell'") == len(ENABLED) - 1
    assert f"{gappy} 2024-06-10: 252 of 288 samples, 1 open gap(s)" in text
    assert "<script" not in text and "http" not in text


def test_status_names_the_live_window_and_the_coverage_picture_marks_today_partial(tmp_path: Path) -> None:
    data, page = tmp_path / "data", tmp_path / "coverage.html"
    with Simulator(CFG) as sim:
        live = ace_etl(
            "run", "--site", SITE, "--live", "--as-of", "2024-06-10T10:02:00Z", "--data-dir", str(data),
            "--page-size", "2000", env=env_of(sim),
        )  # fmt: skip
        assert live.returncode == 0, live.stderr
    status = ace_etl("status", "--data-dir", str(data), "--html", str(page))
    assert status.returncode == 0, status.stderr
    landing = next(line for line in status.stdout.splitlines() if line.lstrip("│ ").startswith(SITE))
    # complete: the day before; live (open): today so far, not a stopped run
    assert [cell.strip() for cell in landing.strip("│ ").split("│")][3:] == ["1", "1", "0"], status.stdout
    assert "live (open)" in status.stdout
    text = page.read_text()
    # today is landed up to 10:00: each of its cells says partial (not shaded complete); yesterday is whole
    assert text.count("class='cell partial'") == len(ENABLED), text
    assert text.count("class='cell'") == len(ENABLED)
    assert f"{ENABLED[0]} 2024-06-10: 121 of 121 samples (partial day: landed for part of it)" in text


def test_status_keeps_a_failed_window_until_a_later_run_of_it_succeeds(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from rich.console import Console

    from ace_etl.status import print_status
    from extract.lake.storage import LocalStorage
    from extract.run.metrics import WindowResult, write_run_row

    storage = LocalStorage(tmp_path)
    day = datetime(2024, 6, 10, tzinfo=UTC)

    def run(n: int, site: str, status: str, start: datetime = day) -> None:
        at = day + timedelta(days=2, minutes=n)
        write_run_row(
            storage,
            WindowResult(
                run_id=f"run-{n}", site_name=site, window_start=start, window_end=start + timedelta(days=1),
                status=status, api_requests=1, retries=0, pages=1, bytes=1, records_fetched=1, records_kept=1,  # type: ignore[arg-type]
                records_filtered=0, records_rejected=0, duration_s=1.0,
                error="SiteNotFoundError: no such site" if status == "failed" else None, started_at=at, finished_at=at,
            ),
        )  # fmt: skip

    def failing() -> str:
        console = Console(width=250, record=True)
        print_status(tmp_path, console)
        text = console.export_text()
        return text.split("Failing")[1].split("Last runs")[0] if "Failing" in text else ""

    run(0, "atlantis", "failed")
    run(1, "annex", "failed")
    for n in range(2, 14):  # more runs of another site than the last-runs table shows
        run(n, SITE, "complete", day - timedelta(days=n))
    assert "atlantis" in failing() and "annex" in failing()
    run(14, "annex", "complete")  # the same window, later, succeeds
    assert "atlantis" in failing() and "annex" not in failing()
