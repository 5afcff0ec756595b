"""The one pipeline (`ace_etl.pipeline.run_job`) on the command line's front (threads of this process, rich
output): run, live, heal and a failed site, against the simulator over loopback. Builds only where the
build is what is tested."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from rich.console import Console

from ace_etl.pipeline import JobResult
from ace_etl.runner import run_pipeline
from ace_etl.simulator import Simulator, SimulatorConfig, site_points
from extract.config import Settings
from extract.errors import SiteNotFoundError
from extract.run.job import Job, Mode
from extract.windows import Window
from tests.clihelp import expected_rows, landed_rows
from tests.support import warehouse_rows

SITE = "hq"
# Reykjavik keeps UTC all year: the site's local days are UTC days.
CFG = SimulatorConfig(
    sites=(SITE,), points=6, interval=900, api_key="pipeline-key-0123456789",
    site_locations=((SITE, 64.1466, -21.9426),),
)  # fmt: skip
DAY = datetime(2024, 6, 10, tzinfo=UTC)
NEXT = DAY + timedelta(days=1)
ENABLED = sorted(p.name for p in site_points(SITE, CFG.points, CFG.interval) if p.configured)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(CFG) as running:
        yield running


def run(sim: Simulator, data_dir: Path, **settings: Any) -> tuple[JobResult, str]:
    """The job through the command line's pipeline: its result and the summary it printed."""
    values: dict[str, Any] = {
        "sites": (SITE,), "span": Window(DAY, NEXT), "data_dir": data_dir, "window_hours": 12, "page_size": 500,
        "transform": False, **settings,
    }  # fmt: skip
    out = io.StringIO()
    api = Settings(api_url=sim.url, api_key=SecretStr(CFG.api_key), data_dir=data_dir)
    result = run_pipeline(api, Job(**values), Console(file=out, width=200))
    return result, out.getvalue()


def statuses(result: JobResult) -> list[tuple[datetime, str]]:
    return [(w.window_start, w.status) for w in result.windows]


def test_a_run_then_live_runs_go_through_the_one_pipeline(sim: Simulator, tmp_path: Path) -> None:
    data = tmp_path / "data"
    day, summary = run(sim, data)
    assert statuses(day) == [(DAY, "complete"), (DAY + timedelta(hours=12), "complete")]
    assert SITE in summary
    assert landed_rows(data).equals(expected_rows(CFG, SITE, DAY.isoformat(), NEXT.isoformat()))

    # Live at 06:00 the next day: the window holding as-of and the one before it (complete: skipped).
    six = NEXT + timedelta(hours=6)
    live = Job.plan(sites=[SITE], data_dir=data, as_of=six, mode=Mode.LIVE, window_hours=12, transform=False)
    assert live.span == Window(DAY + timedelta(hours=12), NEXT + timedelta(hours=12))
    result, _ = run(sim, data, span=live.span, as_of=six, mode=Mode.LIVE)
    assert statuses(result) == [(DAY + timedelta(hours=12), "skipped"), (NEXT, "live")]
    assert result.extracted is not None and result.extracted.weather == []  # live runs land no weather
    landed = landed_rows(data)
    assert landed.get_column("timestamp").max() < six
    assert landed.equals(expected_rows(CFG, SITE, DAY.isoformat(), six.isoformat()))


def test_a_failed_site_is_summarized_with_the_others_then_its_error_raised(
    sim: Simulator, tmp_path: Path
) -> None:
    out = io.StringIO()
    job = Job(
        sites=(SITE, "atlantis"), span=Window(DAY, NEXT), data_dir=tmp_path, window_hours=12, transform=False
    )
    api = Settings(api_url=sim.url, api_key=SecretStr(CFG.api_key), data_dir=tmp_path)
    with pytest.raises(SiteNotFoundError, match="atlantis"):
        run_pipeline(api, job, Console(file=out, width=200))
    summary = out.getvalue()
    assert "atlantis" in summary and SITE in summary  # reported before the error is raised
    assert landed_rows(tmp_path).equals(expected_rows(CFG, SITE, DAY.isoformat(), NEXT.isoformat()))


def test_a_run_that_heals_fetches_the_late_hours_after_its_build_and_builds_again(
    sim: Simulator, tmp_path: Path
) -> None:
    """The gateway had uploaded up to 20:00 when the day was extracted: the build shows the 4 missing hours
    as gaps. Once they arrive, a healing run finds its windows complete, builds, heals only the gaps'
    range (it reads them from that build) and builds again: the warehouse then has no gap, and healing
    again asks the API nothing."""
    data = tmp_path / "data"
    late = DAY + timedelta(hours=20)
    sim.set_upload_horizon(late)
    first, _ = run(sim, data, transform=True)
    assert first.healed == [] and first.gaps == {SITE: len(ENABLED)}
    sim.set_upload_horizon(None)
    sim.clear_requests()
    healed, summary = run(sim, data, transform=True, heal=True)
    asked = [r["params"]["start_time"] for r in sim.requests if "/timeseries/" in r["path"]]
    assert statuses(healed) == [(DAY, "skipped"), (DAY + timedelta(hours=12), "skipped")]
    # The gaps' range only: from each point's last sample before them.
    assert asked and all(datetime.fromisoformat(t) >= late - timedelta(seconds=CFG.interval) for t in asked)  # type: ignore[arg-type]
    assert [(h.site_name, h.gaps, h.samples > 0) for h in healed.healed] == [(SITE, len(ENABLED), True)]
    assert healed.gaps == {} and SITE in summary
    raw = "select point_name, timestamp, value from timeseries_raw order by all"
    assert warehouse_rows(data, raw) == expected_rows(CFG, SITE, DAY.isoformat(), NEXT.isoformat()).rows()

    # A heal job now finds no gap: the site costs no request, not even its points list.
    sim.clear_requests()
    again, table = run(sim, data, mode=Mode.HEAL)
    assert [(h.site_name, h.gaps, h.requests) for h in again.healed] == [(SITE, 0, 0)]
    assert sim.requests == [] and "Heal" in table
