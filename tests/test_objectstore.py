"""The landing on an object store: a real local S3-compatible server (moto's server mode) on loopback, the
real CLI, real Parquet objects, dbt reading them through fsspec. No mocked boto calls."""

from __future__ import annotations

import json
import signal
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

from ace_etl.simulator import Faults, Simulator, SimulatorConfig
from extract.lake import tables as lake
from extract.lake.landing import TIMESERIES, WEATHER
from extract.lake.objectstore import S3Storage
from extract.run import upgrade
from tests.clihelp import ace_etl, ace_etl_script, error_line, expected_rows, spawn
from tests.s3server import BUCKET
from tests.test_upgrade import KEY, old_landing, old_weather

SITE = "hq"
CFG = SimulatorConfig(sites=(SITE,), points=12, interval=300, api_key="s3-test-key-0123456789")
DAY, NEXT, AFTER = "2024-06-10T00:00:00Z", "2024-06-11T00:00:00Z", "2024-06-12T00:00:00Z"


def s3_rows(prefix: str) -> pl.DataFrame:
    """The timeseries table's current snapshot (through its Delta log, with the AWS variables)."""
    frame = lake.read(S3Storage(f"s3://{BUCKET}/{prefix}"), TIMESERIES)
    return frame.select("point_name", "timestamp", "value").sort("point_name", "timestamp")


def raw(db: Path) -> list[tuple]:
    """timeseries_raw as an analyst reads it when the landing is on S3: the view names the snapshot's
    s3:// files, read through fsspec (s3fs, with the AWS variables), as dbt-duckdb's `filesystems:` does."""
    import s3fs

    with duckdb.connect(str(db), read_only=True) as con:
        con.register_filesystem(s3fs.S3FileSystem(skip_instance_cache=True))
        con.execute("set TimeZone = 'UTC'")
        return con.execute("select point_name, timestamp, value from timeseries_raw order by all").fetchall()


def test_a_run_on_object_storage_resumes_after_a_kill_and_builds_every_sample_once(
    s3_env: dict[str, str], tmp_path: Path
) -> None:
    remote = f"s3://{BUCKET}/run1"
    warehouse = tmp_path / "s3-warehouse" / "warehouse.duckdb"
    with Simulator(replace(CFG, faults=Faults(latency=0.05))) as sim:
        env = {
            **s3_env,
            "ACEIOT_API_URL": sim.url,
            "ACEIOT_API_KEY": CFG.api_key,
            "ACE_ETL_DUCKDB_PATH": str(warehouse),
        }
        child = spawn(
            "run", "--site", SITE, "--start", DAY, "--end", NEXT, "--data-dir", remote, "--page-size", "300",
            "--no-transform", env=env,
        )  # fmt: skip
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
        deadline = time.monotonic() + 60
        while True:  # kill -9 once a few pages are checkpointed
            found = fs.glob(f"{BUCKET}/run1/state/checkpoints/*/*.json")
            if found and json.loads(fs.cat_file(found[0]))["next_page"] >= 3:
                break
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
        resumed = ace_etl(
            "run",
            "--site",
            SITE,
            "--start",
            DAY,
            "--end",
            NEXT,
            "--data-dir",
            remote,
            "--page-size",
            "300",
            env=env,
        )
        assert resumed.returncode == 0, resumed.stderr
        assert f"into {remote}\n" in resumed.stderr  # the data dir as given, not as a Path prints it
        expected = expected_rows(CFG, SITE, DAY, NEXT)
        assert s3_rows("run1").equals(expected)
        # The warehouse built from the object store holds every sample once, as one built from local disk.
        assert raw(warehouse) == expected.rows()
        # The next day, landed after that build, is in this process's next build: dbt-duckdb's filesystem
        # (one a process) keeps no listing.
        later = ace_etl("run", "--site", SITE, "--start", NEXT, "--end", AFTER, "--data-dir", remote, env=env)
        assert later.returncode == 0, later.stderr
    assert raw(warehouse) == expected_rows(CFG, SITE, DAY, AFTER).rows()
    with duckdb.connect(str(warehouse), read_only=True) as con:
        starts = con.execute("select distinct window_start from etl_runs order by 1").fetchall()
    assert [start for (start,) in starts] == [datetime.fromisoformat(DAY), datetime.fromisoformat(NEXT)]
    status = ace_etl("status", "--data-dir", remote, env={**s3_env, "ACE_ETL_DUCKDB_PATH": str(warehouse)})
    assert status.returncode == 0 and "windows complete" in status.stdout, status.stderr
    assert not list(tmp_path.glob("s3:*")) and not Path("s3:").exists()  # never a local folder named s3:


def test_an_unknown_scheme_or_an_unreachable_store_is_one_line(
    s3_env: dict[str, str], tmp_path: Path
) -> None:
    env = {"ACEIOT_API_URL": "http://127.0.0.1:9/api", "ACEIOT_API_KEY": CFG.api_key}
    unknown = ace_etl(
        "run", "--site", SITE, "--start", DAY, "--end", NEXT, "--data-dir", "gs://bucket/x", env=env
    )
    assert unknown.returncode == 2 and "use a local folder or s3://bucket/prefix" in unknown.stderr
    assert not Path("gs:").exists()  # refused before its request budget made a local folder of the name
    unreachable = ace_etl(
        "run", "--site", SITE, "--start", DAY, "--end", NEXT, "--data-dir", f"s3://{BUCKET}/x",
        env={**env, **s3_env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"},
    )  # fmt: skip
    assert unreachable.returncode == 1, unreachable.stderr
    assert "cannot reach the object store" in error_line(unreachable.stderr)
    # A new process: botocore reads the profile as the process's first store starts.
    profile = ace_etl_script(
        "run", "--site", SITE, "--start", DAY, "--end", NEXT, "--data-dir", f"s3://{BUCKET}/x",
        env={**env, **s3_env, "AWS_PROFILE": "no-such-profile"},
    )  # fmt: skip
    assert profile.returncode == 1, profile.stderr
    line = error_line(profile.stderr)
    assert "cannot reach the object store" in line and "no-such-profile" in line, profile.stderr


def test_an_old_parquet_landing_on_the_object_store_is_converted_once(s3_env: dict[str, str]) -> None:
    storage = S3Storage(f"s3://{BUCKET}/old")
    expected = old_landing(storage)
    first = ace_etl("upgrade", "--data-dir", f"s3://{BUCKET}/old", env=s3_env)
    assert first.returncode == 0 and "converted" in first.stdout, first.stderr
    assert lake.read(storage, TIMESERIES).sort(KEY).equals(expected)
    assert lake.read(storage, WEATHER).sort("site_name", "timestamp").equals(old_weather())
    assert not upgrade.pending(storage) and storage.list(upgrade.ASIDE)  # the old objects are aside
    again = ace_etl("upgrade", "--data-dir", f"s3://{BUCKET}/old", env=s3_env)
    assert again.returncode == 0 and "nothing to upgrade" in again.stdout, again.stderr
