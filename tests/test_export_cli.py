"""`ace-etl export` end to end: a real run lands a simulator site over loopback HTTP into the lake and a real
dbt build makes the warehouse; the export's grid is checked against the lake's own samples, computed here
another way (a bisect per grid instant), over the local day a New York building springs forward."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from ace_etl import export
from ace_etl.simulator import Simulator, SimulatorConfig, site_points
from extract.lake import tables as lake
from extract.lake.landing import TIMESERIES
from extract.lake.storage import LocalStorage
from tests.clihelp import ace_etl, ace_etl_script, error_line

pytestmark = pytest.mark.timeout(600)

SITE = "harbor-tower"
ZONE = "America/New_York"
AHU = f"{SITE}/ahu-1/*"
GAPPY = f"{SITE}/ahu-1/sa_temp"
# The run covers the local day 2026-03-08 (23 hours: 05:00Z to 04:00Z next day) and some margin.
RUN_START, RUN_END = "2026-03-07T22:00:00Z", "2026-03-09T06:00:00Z"
CFG = SimulatorConfig(
    sites=(SITE,),
    points=12,
    configured_fraction=1.0,
    outages=((GAPPY, "2026-03-08T14:02:00Z", "2026-03-08T15:31:00Z"),),
)
SPECS = {p.name: p for p in site_points(SITE, CFG.points, CFG.interval, CFG.configured_fraction)}


@dataclass(frozen=True)
class Landed:
    data_dir: Path
    samples: pl.DataFrame


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Landed]:
    data_dir = tmp_path_factory.mktemp("export") / "data"
    sites_file = data_dir.parent / "sites.toml"
    sites_file.write_text(f'[sites."{SITE}"]\ntime_zone = "{ZONE}"\n', encoding="utf-8")
    with Simulator(CFG) as sim:
        result = ace_etl(
            "run", "--site", SITE, "--start", RUN_START, "--end", RUN_END, "--data-dir", str(data_dir),
            "--sites-file", str(sites_file), env={"ACEIOT_API_URL": sim.url, "ACEIOT_API_KEY": CFG.api_key},
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    samples = lake.read(LocalStorage(data_dir), TIMESERIES, SITE).select("point_name", "timestamp", "value")
    yield Landed(data_dir, samples)


def expected_last(samples: pl.DataFrame, names: list[str], instants: list[datetime]) -> dict[str, list]:
    """Per point, the value at each instant: its last sample at or before it, if at most one interval old."""
    out: dict[str, list] = {}
    for name in names:
        mine = samples.filter(pl.col("point_name") == name).sort("timestamp")
        times, values = mine.get_column("timestamp").to_list(), mine.get_column("value").to_list()
        hold = timedelta(seconds=SPECS[name].interval_s)
        column = []
        for instant in instants:
            i = bisect.bisect_right(times, instant) - 1
            column.append(values[i] if i >= 0 and instant - times[i] <= hold else None)
        out[name] = column
    return out


def test_an_ahu_over_a_dst_day_is_the_lakes_samples_at_each_local_grid_instant(landed: Landed) -> None:
    target = landed.data_dir.parent / "ahu.parquet"
    result = ace_etl_script(
        "export", "--site", SITE, "--points", AHU, "--every", "5m", "--start", "2026-03-08",
        "--end", "2026-03-09", "--wide", str(target), "--data-dir", str(landed.data_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    frame = pl.read_parquet(target)
    names = sorted(n for n in SPECS if n.startswith(f"{SITE}/ahu-1/"))
    assert frame.columns == ["timestamp", *names]
    assert frame.schema["timestamp"] == pl.Datetime("us", ZONE)
    assert frame.height == 23 * 12  # the spring-forward day: 23 hours of 5-minute rows
    zone = ZoneInfo(ZONE)
    assert frame.get_column("timestamp")[0] == datetime(2026, 3, 8, tzinfo=zone)
    assert frame.get_column("timestamp")[-1] == datetime(2026, 3, 8, 23, 55, tzinfo=zone)
    instants = frame.get_column("timestamp").dt.convert_time_zone("UTC").to_list()
    expected = expected_last(landed.samples, names, instants)
    for name in names:
        assert frame.get_column(name).to_list() == expected[name], name
    # The planted outage reads null (never the value before it), and the binary points are 0/1 states.
    assert frame.get_column(GAPPY).null_count() >= 12
    assert {SPECS[n].kind for n in names} == {"analog", "binary"}
    for name in (n for n in names if SPECS[n].kind == "binary"):
        assert set(frame.get_column(name).drop_nulls().to_list()) <= {0.0, 1.0}
    assert f"Wrote {23 * 12:,} rows x {len(names)} point(s)" in result.stdout


def test_csv_holds_the_same_grid_with_offsets(landed: Landed) -> None:
    args = ["--site", SITE, "--points", f"{GAPPY},{SITE}/ahu-1/fan_*", "--every", "15m",
            "--start", "2026-03-08T06:00:00Z", "--end", "2026-03-08T12:00", "--data-dir", str(landed.data_dir)]  # fmt: skip
    parquet, csv = landed.data_dir.parent / "part.parquet", landed.data_dir.parent / "part.csv"
    for target in (parquet, csv):
        result = ace_etl("export", *args, "--wide", str(target))
        assert result.returncode == 0, result.stderr
    from_parquet = pl.read_parquet(parquet)
    text = csv.read_text(encoding="utf-8").splitlines()
    assert text[1].startswith("2026-03-08T01:00:00-05:00,")  # 06:00Z is 01:00 EST
    from_csv = pl.read_csv(csv).with_columns(
        pl.col("timestamp").str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z").dt.convert_time_zone(ZONE)
    )
    assert from_csv.equals(from_parquet)
    # 06:00Z to 12:00 local (16:00Z, after the change): 10 hours of 15-minute rows.
    assert from_parquet.height == 40


def test_the_python_function_reads_in_parts_and_means_numeric_points_only(
    landed: Landed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "CHUNK", timedelta(hours=2))
    start, end = datetime(2026, 3, 8, tzinfo=ZoneInfo(ZONE)), datetime(2026, 3, 8, 12)
    parts: list[tuple[int, int]] = []
    frame = export.wide_frame(
        landed.data_dir, SITE, AHU, "5m", start, end, progress=lambda done, total: parts.append((done, total))
    )
    assert parts[-1] == (6, 6) and len(parts) == 6  # 11 hours (one skipped at 02:00) in parts of 2
    names = frame.columns[1:]
    instants = frame.get_column("timestamp").dt.convert_time_zone("UTC").to_list()
    assert frame.select(names).to_dict(as_series=False) == expected_last(landed.samples, names, instants)

    hourly = export.wide_frame(landed.data_dir, SITE, AHU, "1h", start, end, how="mean")
    for instant, row in zip(
        hourly.get_column("timestamp").to_list(), hourly.iter_rows(named=True), strict=True
    ):
        t = instant.astimezone(UTC)
        hour = landed.samples.filter(pl.col("timestamp") >= t, pl.col("timestamp") < t + timedelta(hours=1))
        for name in names:
            mine = hour.filter(pl.col("point_name") == name).get_column("value")
            if SPECS[name].kind == "binary":
                assert row[name] == expected_last(landed.samples, [name], [t])[name][0], (name, t)
            elif mine.is_empty():
                assert row[name] is None, (name, t)
            else:
                assert row[name] == pytest.approx(mine.mean(), rel=1e-12), (name, t)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--site", "atlantis"], "error: no site 'atlantis' in the warehouse"),
        (["--how", "median"], "error: --how 'median': use last (the sample in force) or mean"),
        (["--points", "*/no-such-device/*"], "error: --points '*/no-such-device/*' matches no point of site"),
        (["--every", "5 minutes"], "error: --every '5 minutes' is not a grid step"),
        (["--end", "2026-03-07T23:00"], "error: end 2026-03-07T23:00:00-05:00 is not after start"),
        (["--start", "March 8"], "error: --start 'March 8' is not an ISO date or time"),
        (["--wide", "out.xlsx"], "error: --wide 'out.xlsx': name a .parquet or .csv file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(landed: Landed, args: list[str], message: str) -> None:
    target = landed.data_dir.parent / "bad.parquet"
    given = {"--site": SITE, "--points": AHU, "--every": "5m", "--start": "2026-03-08", "--end": "2026-03-09",
             "--wide": str(target), "--data-dir": str(landed.data_dir)}  # fmt: skip
    given.update(zip(args[::2], args[1::2], strict=True))
    result = ace_etl("export", *(part for pair in given.items() for part in pair))
    assert result.returncode == 2, result.stderr
    assert error_line(result.stderr).startswith(message), result.stderr
    assert not target.exists()


def test_without_a_warehouse_it_says_to_build_one(tmp_path: Path) -> None:
    result = ace_etl("export", "--site", SITE, "--points", AHU, "--start", "2026-03-08", "--end", "2026-03-09",
                     "--wide", str(tmp_path / "x.csv"), "--data-dir", str(tmp_path))  # fmt: skip
    assert result.returncode == 2
    assert error_line(result.stderr) == (
        f"error: no warehouse at {tmp_path / 'warehouse.duckdb'} yet: run `ace-etl run` (or `ace-etl transform`) first"
    )
