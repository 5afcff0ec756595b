"""The job: one frozen object for a run's settings and plan, built alike from the command line and from the
flow parameters, with every default defined once and bad values refused in one line."""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer.main
from pydantic import ValidationError

from ace_etl import cli
from extract.api import MAX_PAGE_SIZE
from extract.config import Settings
from extract.errors import ConfigError
from extract.run.job import Job, Mode
from extract.windows import Window
from flows.params import EtlParams

AS_OF = datetime(2024, 6, 5, 7, 30, tzinfo=UTC)


def cli_job(*args: str) -> Job:
    """The job `ace-etl run ARGS` would run: its options parsed by the command line itself."""
    command = typer.main.get_command(cli.app).commands["run"]  # type: ignore[attr-defined]
    with command.make_context("run", list(args)) as context:
        return cli.run_job(Settings(), **context.params)


def flow_job(tmp_path: Path, **params: Any) -> Job:
    """The job of a daily flow run with these parameters, scheduled at AS_OF."""
    return EtlParams(**params).job(AS_OF, data_dir=tmp_path, time_zones={})


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line reads these from the environment (the suite sets a rate for its own runs)."""
    for name in ("ACE_SITES_FILE", "ACE_LIMITS_FILE", cli.RATE_ENV):
        monkeypatch.delenv(name, raising=False)


def test_the_command_line_and_the_flow_parameters_plan_the_same_job(tmp_path: Path) -> None:
    given = cli_job(
        "--site", "hq", "--site", "plant-2", "--site", "hq", "--start", "2024-06-01", "--end", "2024-06-03T12:00:00Z",
        "--as-of", AS_OF.isoformat(), "--window-hours", "12", "--page-size", "500", "--points", "*/ahu-1/*,hq/meter/kw",
        "--data-dir", str(tmp_path), "--force", "--max-requests-per-minute", "50", "--no-transform", "--heal",
    )  # fmt: skip
    flow = flow_job(
        tmp_path, sites=["hq", "plant-2"], start="2024-06-01T00:00:00Z", end="2024-06-03T12:00:00Z",
        window_hours=12, page_size=500, points=["*/ahu-1/*", "hq/meter/kw"], force=True,
        max_requests_per_minute=50, transform=False, heal=True,
        compact=False,  # the command line has a `compact` command of its own
    )  # fmt: skip
    assert replace(given, run_id="r") == replace(flow, run_id="r")
    assert given.sites == ("hq", "plant-2") and given.points == ("*/ahu-1/*", "hq/meter/kw")
    assert [w.start.hour for w in given.windows] == [0, 12, 0, 12, 0]


def test_with_no_options_both_doors_cover_the_lookback_before_as_of(tmp_path: Path) -> None:
    given = cli_job("--site", "hq", "--as-of", AS_OF.isoformat(), "--data-dir", str(tmp_path))
    flow = flow_job(tmp_path, sites=["hq"], heal=False, compact=False)
    assert replace(given, run_id="r") == replace(flow, run_id="r")
    assert given.span == Window(datetime(2024, 5, 29, tzinfo=UTC), datetime(2024, 6, 5, tzinfo=UTC))


def test_every_default_is_the_jobs() -> None:
    """The command's options and the flow's parameters take their defaults from the job: none is written
    twice, so changing one changes every front door."""
    job = {f.name: f.default for f in fields(Job)}
    options = {p.name: p.default for p in typer.main.get_command(cli.app).commands["run"].params}  # type: ignore[attr-defined]
    heal_options = {p.name: p.default for p in typer.main.get_command(cli.app).commands["heal"].params}  # type: ignore[attr-defined]
    params = {name: f.default for name, f in EtlParams.model_fields.items()}
    assert job["page_size"] == MAX_PAGE_SIZE
    for name, option in (("page_size", "page_size"), ("window_hours", "window_hours"),
                         ("requests_per_minute", "max_requests_per_minute")):  # fmt: skip
        assert options[option] == params[option] == job[name], name
    assert heal_options["page_size"] == job["page_size"]
    assert heal_options["max_requests_per_minute"] == job["requests_per_minute"]
    assert options["lookback_days"] == heal_options["lookback_days"] == params["lookback_days"]


def test_a_job_is_frozen_and_its_sites_are_one_each() -> None:
    job = Job(sites=("a", "b", "a"), span=None, data_dir=Path("d"))
    assert job.sites == ("a", "b") and job.windows == []
    with pytest.raises(FrozenInstanceError):
        job.page_size = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"page_size": 0}, "page size must be from 1 to 100,000"),
        ({"page_size": MAX_PAGE_SIZE + 1}, "page size must be from 1 to 100,000"),
        ({"window_hours": 0}, "window length must be more than 0"),
        ({"window_hours": math.nan}, "window length must be more than 0"),
        ({"requests_per_minute": 0.5}, "requests per minute must be at least 1"),
        ({"max_workers": 0}, "max workers must be at least 1"),
        ({"sites": ()}, "site names must not be blank"),
        ({"sites": ("hq", " ")}, "site names must not be blank"),
        ({"as_of": datetime(2024, 6, 5)}, "has no time zone"),
    ],
)
def test_a_bad_setting_is_a_one_line_config_error(settings: dict[str, Any], needle: str) -> None:
    values: dict[str, Any] = {"sites": ("hq",), "span": None, "data_dir": Path("d"), **settings}
    with pytest.raises(ConfigError) as raised:
        Job(**values)
    assert needle in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("plan", "needle"),
    [
        ({"lookback_days": 0}, "--lookback-days must be more than 0 and at most 3660"),
        ({"lookback_days": 3661, "mode": Mode.HEAL}, "--lookback-days must be more than 0 and at most 3660"),
        ({"mode": Mode.LIVE, "start": datetime(2024, 6, 1, tzinfo=UTC)}, "give no start or end"),
        ({"start": datetime(2024, 6, 6, tzinfo=UTC)}, "not in the past"),
    ],
)
def test_a_bad_plan_is_a_one_line_config_error(plan: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Job.plan(sites=["hq"], data_dir=Path("d"), as_of=AS_OF, **plan)
    assert needle in str(raised.value) and "\n" not in str(raised.value)


def test_the_flow_parameters_refuse_what_the_job_refuses_when_the_run_starts() -> None:
    with pytest.raises(ValidationError, match="give no start or end"):
        EtlParams(sites=["hq"], live=True, start=datetime(2024, 6, 1, tzinfo=UTC))


def test_each_mode_plans_its_range() -> None:
    def span(**plan: Any) -> Window | None:
        return Job.plan(sites=["hq"], data_dir=Path("d"), as_of=AS_OF, **plan).span

    # Live: the window holding as-of and the one before it, which a live run may still have to finish.
    assert span(mode=Mode.LIVE, window_hours=6) == Window(
        datetime(2024, 6, 5, 0, tzinfo=UTC), datetime(2024, 6, 5, 12, tzinfo=UTC)
    )
    # Heal: from midnight lookback days before, up to as-of itself (gaps of the open window too).
    assert span(mode=Mode.HEAL, lookback_days=2) == Window(datetime(2024, 6, 3, tzinfo=UTC), AS_OF)
    # Run: up to the last window closed at as-of; none closed yet is nothing to do.
    assert span(lookback_days=2, window_hours=6) == Window(
        datetime(2024, 6, 3, tzinfo=UTC), datetime(2024, 6, 5, 6, tzinfo=UTC)
    )
    midnight = datetime(2024, 6, 5, tzinfo=UTC)
    assert Job.plan(sites=["hq"], data_dir=Path("d"), as_of=midnight, lookback_days=0.01).span is None
