"""Point names are exact, patterns are what a user typed: the simulator serves names with `[`, `*`, `?` and
surrounding spaces beside disabled look-alikes that globbing or trimming them would select instead. Real CLI,
loopback HTTP, Parquet and dbt."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ace_etl.simulator import Simulator, SimulatorConfig, site_points
from tests.clihelp import ace_etl, assert_landed_once, error_line, expected_rows, landed_rows
from tests.support import warehouse_rows as rows

SITE = "names-site"
EXOTIC = ("names-site/zone[1]/temp", "names-site/ahu-1/temp ", " lead", "a*b", "what?")
# Disabled points that the names above select when they are globbed or trimmed.
LOOKALIKES = ("names-site/zone1/temp", "names-site/ahu-1/temp", "lead", "aXb", "what!")
UNCLOSED = "names-site/zone[2/temp"
CFG = SimulatorConfig(
    sites=(SITE,),
    points=6,
    interval=600,
    api_key="names-key-0123456789",
    configured_fraction=0.5,
    extra_points=EXOTIC,
    extra_disabled_points=LOOKALIKES,
)
DAY, NEXT = "2024-06-10T00:00:00Z", "2024-06-11T00:00:00Z"
TRAILING = "names-site/ahu-1/temp "


def enabled(cfg: SimulatorConfig) -> set[str]:
    return {
        p.name
        for p in site_points(SITE, cfg.points, cfg.interval, cfg.configured_fraction, cfg.extra)
        if p.configured
    }


def run(sim: Simulator, data: Path, *args: str) -> tuple[int, str]:
    result = ace_etl(
        "run", "--site", SITE, "--start", DAY, "--end", NEXT, "--data-dir", str(data), *args,
        env={"ACEIOT_API_URL": sim.url, "ACEIOT_API_KEY": CFG.api_key},
    )  # fmt: skip
    return result.returncode, result.stderr


def heal(sim: Simulator, data: Path) -> int:
    return ace_etl(
        "heal", "--site", SITE, "--start", DAY, "--end", NEXT, "--data-dir", str(data),
        env={"ACEIOT_API_URL": sim.url, "ACEIOT_API_KEY": CFG.api_key},
    ).returncode  # fmt: skip


def test_exotic_api_names_land_exactly_and_their_gaps_are_theirs_until_healed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    names = enabled(CFG)
    assert set(EXOTIC) <= names and not set(LOOKALIKES) & names
    outage = replace(CFG, outages=((TRAILING, "2024-06-10T06:00:00Z", "2024-06-10T08:00:00Z"),))
    with Simulator(outage) as sim:
        code, stderr = run(sim, data)
        assert code == 0, stderr
    assert_landed_once(data, expected_rows(outage, SITE, DAY, NEXT, names))
    assert {r[0] for r in rows(data, "select point_name from timeseries_raw")} == names
    assert {r[0] for r in rows(data, "select point_name from timeseries_coverage")} == names
    assert rows(data, "select point_name, missing_samples, status from timeseries_gaps") == [
        (TRAILING, 12, "open")
    ]
    with Simulator(CFG) as sim:  # the gateway uploads the two hours: heal lands them under the real name
        assert heal(sim, data) == 0
    assert_landed_once(data, expected_rows(CFG, SITE, DAY, NEXT, names))
    assert rows(data, "select count(*) from timeseries_gaps") == [(0,)]


def test_a_configured_name_with_an_unclosed_bracket_does_not_fail_the_site(tmp_path: Path) -> None:
    cfg = replace(CFG, extra_points=(*EXOTIC, UNCLOSED))
    with Simulator(cfg) as sim:
        code, stderr = run(sim, tmp_path, "--no-transform")
    assert code == 0, stderr
    assert_landed_once(tmp_path, expected_rows(cfg, SITE, DAY, NEXT, enabled(cfg)))
    assert UNCLOSED in set(landed_rows(tmp_path)["point_name"])


@pytest.mark.parametrize("points", [UNCLOSED, f"a,{UNCLOSED}"])
def test_a_typed_bad_pattern_is_one_line_saying_how_to_write_it_literally(
    tmp_path: Path, points: str
) -> None:
    with Simulator(CFG) as sim:
        code, stderr = run(sim, tmp_path, "--points", points, "--no-transform")
        assert not any("/timeseries/" in r["path"] for r in sim.requests)
    assert code == 2
    error = error_line(stderr)
    assert UNCLOSED in error and "'[[]'" in error and f'"{UNCLOSED}"' in error


@pytest.mark.parametrize(
    ("encoded", "ending"),
    [(b"\xef\xbb\xbf", "\n"), (b"", "\r\n"), (b"\xef\xbb\xbf", "\r\n"), (b"", "\r")],
    ids=["bom", "crlf", "bom-crlf", "cr"],
)
def test_a_points_file_in_utf8_with_any_line_ending_selects_exact_names_and_literal_patterns(
    tmp_path: Path, encoded: bytes, ending: str
) -> None:
    lines = [
        "names-site/zone[[]1]/temp",  # a pattern: `[[]` is a literal `[`, so only zone[1], not zone1
        f'"{TRAILING}"  # quoted: exactly this name, trailing space and all',
        '" lead"',
        "# a comment",
        "",
    ]
    path = tmp_path / "points.txt"
    path.write_bytes(encoded + ending.join(lines).encode())
    with Simulator(CFG) as sim:
        code, stderr = run(sim, tmp_path / "data", "--points-file", str(path), "--no-transform")
    assert code == 0, stderr
    wanted = {"names-site/zone[1]/temp", TRAILING, " lead"}
    assert_landed_once(tmp_path / "data", expected_rows(CFG, SITE, DAY, NEXT, wanted))


def test_typed_quoted_names_are_exact(tmp_path: Path) -> None:
    with Simulator(CFG) as sim:
        code, stderr = run(sim, tmp_path, "--points", '"a*b","what?"', "--no-transform")
    assert code == 0, stderr
    assert_landed_once(tmp_path, expected_rows(CFG, SITE, DAY, NEXT, {"a*b", "what?"}))


def test_a_latin1_points_file_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "points.txt"
    path.write_bytes("names-site/caf\u00e9/temp\n".encode("latin-1"))
    with Simulator(CFG) as sim:
        code, stderr = run(sim, tmp_path / "data", "--points-file", str(path), "--no-transform")
        assert sim.requests == []
    assert code == 2
    error = error_line(stderr)
    assert str(path) in error and "save it as UTF-8" in error
