"""How fresh does the live deployment keep the warehouse, and what does a live run cost?

Against the bundled simulator (SITES sites x POINTS points, one sample a minute each): one catch-up live
run, then live runs 5 simulated minutes apart (what the `live` deployment does every 5 minutes), each
extracting the open window up to its as-of and rebuilding the warehouse. For each: requests per site,
extract and build time, and how far the newest sample in the warehouse trails as-of. Compared with a
regular run of one full day in the same process.

End-to-end latency of a sample = up to one schedule period (300 s) until the next live run + that run's
duration; the figures below give the second term.

    .venv/bin/python -m benchmarks.live [--sites 4] [--points 500] [--runs 6]
"""

from __future__ import annotations

import argparse
import io
import resource
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
from pydantic import SecretStr
from rich.console import Console

from ace_etl.runner import run_pipeline
from ace_etl.simulator import Simulator, SimulatorConfig
from extract.config import Settings
from extract.run.job import Job, Mode
from extract.windows import Window, live_windows

DAY = datetime(2025, 3, 10, tzinfo=UTC)
PERIOD = timedelta(minutes=5)


def newest(data_dir: Path) -> datetime:
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        value = con.execute("select max(timestamp) from timeseries_raw").fetchone()
    assert value is not None
    return value[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--runs", type=int, default=6)
    options = parser.parse_args()
    sites = tuple(f"site-{i}" for i in range(options.sites))
    config = SimulatorConfig(sites=sites, points=options.points, interval=60, api_key="bench")
    root = Path(tempfile.mkdtemp(prefix="ace-etl-live-"))
    quiet = Console(file=io.StringIO())
    try:
        with Simulator(config) as sim:
            settings = Settings(api_url=sim.url, api_key=SecretStr("bench"))

            def run(data_dir: Path, start: datetime, end: datetime, live_as_of: datetime | None) -> float:
                started = time.perf_counter()
                run_pipeline(
                    settings,
                    # Runs follow each other here within seconds, not 5 minutes apart: a client-side limit
                    # of 100 a minute would time the limiter, not the run.
                    Job(
                        sites=sites,
                        span=Window(start, end),
                        data_dir=data_dir,
                        as_of=live_as_of or datetime.now(UTC),
                        mode=Mode.RUN if live_as_of is None else Mode.LIVE,
                        requests_per_minute=100_000,
                    ),
                    console=quiet,
                )
                return time.perf_counter() - started

            daily = run(root / "daily", DAY - timedelta(days=1), DAY, None)
            print(
                f"regular run of one full day ({len(sites)} sites, {options.points} points each): {daily:.1f} s"
            )
            live_dir = root / "live"
            as_of = DAY + timedelta(hours=10)
            previous, current = live_windows(as_of)
            catch_up = run(live_dir, previous.start, current.end, as_of)
            print(f"catch-up live run (yesterday + today to 10:00): {catch_up:.1f} s")
            durations = []
            for _ in range(options.runs):
                as_of += PERIOD
                sim.clear_requests()
                elapsed = run(live_dir, previous.start, current.end, as_of)
                requests = len(sim.requests) / len(sites)
                lag = (as_of - newest(live_dir)).total_seconds()
                durations.append(elapsed)
                print(
                    f"live run as of {as_of:%H:%M}: {elapsed:5.1f} s (extract + build), {requests:.1f} requests "
                    f"per site, newest sample {lag:.0f} s before as-of"
                )
        worst = max(durations)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
        print(f"ratio live run / regular day run: {sum(durations) / len(durations) / daily:.2f}")
        print(
            f"end-to-end latency on the simulator: at most {PERIOD.total_seconds():.0f} s (schedule) + {worst:.1f} s "
            f"(run) = {PERIOD.total_seconds() + worst:.0f} s; peak RSS {peak_mb:.0f} MB"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
