"""A broken server ends a run with one line and exit 1, never a window called complete or a traceback:
`ace-etl run` end to end against the simulator's faults (the bounds themselves are tested at the client)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ace_etl.simulator import Faults, Simulator, SimulatorConfig
from tests.clihelp import ace_etl, error_line, expected_rows, landed_rows, window_statuses

SITE = "hq"
START, END = "2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z"


def config(**faults: Any) -> SimulatorConfig:
    return SimulatorConfig(sites=(SITE,), points=6, interval=600, api_key="k3y", faults=Faults(**faults))


def run(sim: Simulator, data: Path) -> Any:
    env = {"ACEIOT_API_URL": sim.url, "ACEIOT_API_KEY": "k3y"}
    args = ("run", "--site", SITE, "--start", START, "--end", END, "--page-size", "100")
    return ace_etl(*args, "--data-dir", str(data), "--no-transform", env=env)


@pytest.mark.parametrize("lost", ["null", "empty"])
def test_more_without_a_cursor_is_a_failed_window_that_the_next_run_completes(
    lost: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    with Simulator(config(lost_cursor=lost)) as sim:
        failed = run(sim, data)
    assert failed.returncode == 1
    assert "page 0 says there is more (has_more) but gives no next_cursor" in error_line(failed.stderr)
    assert window_statuses(data) == ["failed"]
    cfg = config()
    with Simulator(cfg) as sim:
        fixed = run(sim, data)
    assert fixed.returncode == 0, fixed.stderr
    assert window_statuses(data) == ["failed", "complete"]
    assert landed_rows(data).equals(expected_rows(cfg, SITE, START, END))


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ("points_items_text", "configured_points page has no 'items' list of objects"),
        ("points_pages_text", "configured_points page count 'x' is not a number of pages"),
        ("points_pages_huge", "configured_points page count 100000000000000000000000000000000000000…"),
        ("weather_data_numbers", "weather 'data' is not a list of objects"),
    ],
)
def test_an_answer_of_an_unexpected_shape_is_one_line_and_exit_1(
    shape: str, message: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    with Simulator(config(odd_shape=shape)) as sim:
        result = run(sim, data)
    assert result.returncode == 1
    assert message in error_line(result.stderr)
    if shape.startswith("points"):  # no selection, so the window failed and the next run retries it
        assert window_statuses(data) == ["failed"]


def test_the_request_budget_can_come_from_the_environment(tmp_path: Path) -> None:
    # Read from ACE_ETL_MAX_REQUESTS_PER_MINUTE (the suite sets it high): a value below 1 is refused there too.
    with Simulator(config()) as sim:
        env = {"ACEIOT_API_URL": sim.url, "ACEIOT_API_KEY": "k3y", "ACE_ETL_MAX_REQUESTS_PER_MINUTE": "0.5"}
        result = ace_etl(
            "run", "--site", SITE, "--start", START, "--end", END, "--data-dir", str(tmp_path), env=env
        )
        assert result.returncode == 2 and "max-requests-per-minute" in result.stderr
        assert sim.requests == []
