"""Prefect flows' alerts end to end (data quality, live runs, excursions): the same harness and simulator as
tests/test_flows.py, whose test worker runs this file too (tests/conftest.py: one Prefect server a run)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import ArtifactSort

from ace_etl.simulator import Simulator, site_points
from flows.compat import PREFECT_DBT_CHECKED
from flows.etl import daily_etl
from tests.test_flows import (
    CFG,
    END,
    SITES,
    START,
    Receiver,
    assert_links_to_a_flow_run,
    flow_run_of,
    use_api,
)

ROOT = Path(__file__).resolve().parents[1]


def run_artifacts(run: FlowRun, key: str) -> list[tuple[str, str]]:
    """The artifacts with this key that one flow run published (data, description), oldest first."""
    from prefect.client.schemas.filters import ArtifactFilterFlowRunId

    async def read() -> list[tuple[str, str]]:
        async with get_client() as client:
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])
                ),
                sort=ArtifactSort.CREATED_DESC,
            )
            return [(str(a.data), str(a.description)) for a in reversed(artifacts)]

    return asyncio.run(read())


@contextmanager
def settings_made(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """How many Prefect settings objects are made (each reads every environment variable and profile)."""
    from prefect.settings import Settings

    made: Counter[str] = Counter()
    init = Settings.__init__

    def counted(self: Settings, *args: object, **kwargs: object) -> None:
        made[type(self).__name__] += 1
        init(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Settings, "__init__", counted)
        yield made


def task_run_names(run: FlowRun) -> list[str]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read() -> list[str]:
        async with get_client() as client:
            tasks = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
            )
            return [t.name for t in tasks]

    return asyncio.run(read())


def test_data_quality_alerts_once_for_the_sites_a_run_built_and_heal_that_lands_nothing_does_not_rebuild(
    harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One site has a gap the API cannot fill: its runs that fetch alert once each, naming the site and the
    point; a run of the healthy site beside it does not alert, nor a run that fetches nothing; a heal that
    lands nothing builds no second time."""
    import json

    from typer.testing import CliRunner

    from ace_etl.cli import app

    gappy_site, healthy_site = SITES[1], SITES[0]
    gappy = sorted(p.name for p in site_points(gappy_site, CFG.points, CFG.interval) if p.configured)[0]
    outage = ((gappy, "2024-06-01T06:00:00Z", "2024-06-01T09:00:00Z"),)
    receiver = Receiver()
    with Simulator(replace(CFG, outages=outage)) as sim:
        use_api(monkeypatch, sim)
        setup = CliRunner().invoke(app, ["prefect-setup", "--alert-webhook", receiver.url])
        assert setup.exit_code == 0, setup.output
        params = {"start": START, "end": END, "page_size": 500, "data_dir": tmp_path}
        # heal (on by default) asks the API for the gap's range: nothing there, so nothing to rebuild
        # the daily deployment's dbt_node_tasks: each dbt node a task of the run
        with settings_made(monkeypatch) as made:
            first = flow_run_of(
                daily_etl(sites=[gappy_site], **params, dbt_node_tasks=True, return_state=True)
            )
        # the node tasks run in the flow's settings, not in new ones read again from every source: two a
        # node without flows.compat.share_settings_with_dbt_node_tasks
        tasks = len(task_run_names(first))
        from prefect_dbt import __version__ as prefect_dbt_version

        assert tasks > 40 and made["Settings"] <= 5, (
            f"{made} in a run of {tasks} tasks: prefect-dbt {prefect_dbt_version} (checked "
            f"{PREFECT_DBT_CHECKED}) hydrates a node task's settings elsewhere: see flows.compat"
        )
        healthy = flow_run_of(daily_etl(sites=[healthy_site], **params, return_state=True))
        # every window complete, the gap checked a moment ago: this run changes nothing, so it does not alert
        unchanged = flow_run_of(daily_etl(sites=[gappy_site], **params, return_state=True))
        last = flow_run_of(daily_etl(sites=[gappy_site], **params, force=True, return_state=True))

    assert task_run_names(first).count("model timeseries_gaps") == 1, task_run_names(first)
    ((quality, description),) = run_artifacts(first, "ace-etl-data-quality")
    assert description.startswith("WARN:"), description
    assert (
        quality.splitlines()[0] == "# Data quality: 2 data-quality test(s) warn or fail for this run's sites"
    )
    ((healthy_quality, healthy_description),) = run_artifacts(healthy, "ace-etl-data-quality")
    assert healthy_description.startswith("OK:"), healthy_quality
    # the other site's gap stays in view, apart from this run's own verdict
    other = next(line for line in healthy_quality.splitlines() if line.startswith("Other sites"))
    assert f"points_with_gaps (warn): {gappy_site}: " in other, healthy_quality

    assert run_artifacts(unchanged, "ace-etl-data-quality")[0][1].startswith("WARN:")  # still in view
    receiver.wait_for(str(last.name))  # alerts arrive in order: the earlier runs' would be here by now
    alerts = [json.loads(m)["text"] for m in receiver.received if "data-quality" in m]
    assert [a.split(" in flow run ")[1].split(":")[0] for a in alerts] == [first.name, last.name], alerts
    assert f"points_with_gaps (warn): {gappy_site}: {gappy} (1 point(s))" in alerts[0], alerts[0]
    assert f"coverage_below_threshold (warn): {gappy_site}: {gappy} (1 point(s))" in alerts[0], alerts[0]
    assert_links_to_a_flow_run(alerts[0])


def test_live_runs_are_named_and_keyed_apart_and_alert_when_their_problems_change(
    harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """288 live runs a day must not bury the daily run summary, nor repeat an alert every 5 minutes while
    a problem lasts: their runs and artifacts have names of their own, and they alert on a change."""
    import json

    from typer.testing import CliRunner

    from ace_etl.cli import app

    gappy = sorted(p.name for p in site_points(SITES[0], CFG.points, CFG.interval) if p.configured)[0]
    outage = ((gappy, "2024-06-02T06:00:00Z", "2024-06-02T09:00:00Z"),)
    receiver = Receiver()
    params = {"sites": [SITES[0]], "data_dir": tmp_path, "page_size": 500, "lookback_days": 1}
    with Simulator(replace(CFG, outages=outage)) as sim:
        use_api(monkeypatch, sim)
        setup = CliRunner().invoke(app, ["prefect-setup", "--alert-webhook", receiver.url])
        assert setup.exit_code == 0, setup.output
        live = [
            flow_run_of(
                daily_etl(
                    **params, live=True, as_of=datetime(2024, 6, 2, 10, m, tzinfo=UTC), return_state=True
                )
            )
            for m in (2, 7)
        ]
        daily = flow_run_of(
            daily_etl(**params, as_of=datetime(2024, 6, 2, 12, tzinfo=UTC), force=True, return_state=True)
        )
    assert all(str(r.name).startswith("live-") for r in live) and str(daily.name).startswith("daily-")
    # the live deployment builds in one step: no task per dbt node every five minutes
    assert not any(name.startswith(("model ", "test ")) for name in task_run_names(live[0])), task_run_names(
        live[0]
    )
    for run in live:
        ((summary, _),) = run_artifacts(run, "ace-etl-live-run-summary")
        assert summary.splitlines()[0] == "# ace-etl live run: completed with warnings", summary
        assert run_artifacts(run, "ace-etl-live-data-quality") and not run_artifacts(
            run, "ace-etl-run-summary"
        )
    ((summary, _),) = run_artifacts(daily, "ace-etl-run-summary")
    assert summary.splitlines()[0] == "# ace-etl run: completed with warnings", summary

    receiver.wait_for(str(daily.name))  # alerts arrive in order: the second live run's would be here by now
    alerts = [json.loads(m)["text"] for m in receiver.received if "data-quality" in m]
    assert [a.split(" in flow run ")[1].split(":")[0] for a in alerts] == [live[0].name, daily.name], alerts


def test_a_run_that_finds_new_excursions_alerts_once_and_a_rerun_does_not_repeat_it(
    harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulator plants a zone temperature above its limit on the first day and a chilled-water supply
    below its own late on the second: the first day's run alerts for the first, a re-run of that day does
    not alert again, the second day's run alerts for the second only."""
    import json

    from typer.testing import CliRunner

    from ace_etl.cli import app
    from ace_etl.simulator import planted_events

    cfg = replace(CFG, points=50, excursions=START.date().isoformat())
    zone, chilled = (e.point_name for e in planted_events(cfg, SITES[0])[:2])
    receiver = Receiver()
    params = {"sites": [SITES[0]], "data_dir": tmp_path, "page_size": 5000, "heal": False}
    with Simulator(cfg) as sim:
        use_api(monkeypatch, sim)
        setup = CliRunner().invoke(app, ["prefect-setup", "--alert-webhook", receiver.url])
        assert setup.exit_code == 0 and "ace-etl: points out of their limits" in setup.output, setup.output
        first = flow_run_of(daily_etl(**params, start=START, end=END, return_state=True))
        flow_run_of(daily_etl(**params, start=START, end=END, force=True, return_state=True))
        second = flow_run_of(daily_etl(**params, start=END, end=END + timedelta(days=1), return_state=True))

    receiver.wait_for(str(second.name))  # alerts arrive in order: the re-run's would be here by now
    alerts = [json.loads(m)["text"] for m in receiver.received if "new excursion" in m]
    assert [a.splitlines()[:2] for a in alerts] == [
        ["ace-etl: points out of their limits", f"1 new excursion(s) in flow run {first.name}:"],
        ["ace-etl: points out of their limits", f"1 new excursion(s) in flow run {second.name}:"],
    ], alerts
    assert (
        alerts[0]
        .splitlines()[2]
        .startswith(
            f"{zone} above 85 degF (zone temperature) from 2024-06-01 10:00 UTC to 2024-06-01 12:00, 120 min"
        )
    )
    assert alerts[1].splitlines()[2].startswith(f"{chilled} below 38 degF (chilled water supply)")
    assert "still going at the last sample" in alerts[1]
    assert_links_to_a_flow_run(alerts[0])
