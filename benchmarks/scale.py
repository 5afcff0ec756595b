"""Does extraction scale past one process? 8 simulated sites, one window each, on Dask worker processes.

1. With a per-page latency that dominates the CPU work (1 s a page, as a remote API under load): one
   single-threaded worker vs 4 worker processes. Target: throughput x3 or more.
2. With a request budget that binds (the server allows BUDGET requests per 10 s, and so does our shared
   budget): 4 workers hold it with zero 429s, close to the floor the budget sets.
3. Without latency: 1 vs 4 workers, to see what binds on this machine (cores, budget or disk).

Each worker builds its own client and storage from plain settings, as the flows' Dask tasks do; all share
one budget file. Peak RSS is per worker process.

    .venv/bin/python -m benchmarks.scale [--sites 8] [--points 500] [--latency 1.0] [--budget 20]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from distributed import Client, LocalCluster

from ace_etl.simulator import Faults, Simulator, SimulatorConfig

DAY = datetime(2025, 3, 10, tzinfo=UTC)


def extract_site(
    url: str, data_dir: str, site: str, budget: str, per_minute: float, period: float
) -> tuple[int, int]:
    """One site's day on a worker: (samples fetched, the worker's peak RSS in KiB)."""
    from datetime import timedelta

    from extract.api.budget import SharedBudget, key_id
    from extract.api.client import AceClient
    from extract.run.datadir import open_storage
    from extract.run.job import Job
    from extract.run.pipeline import extract_window, resolve_selector
    from extract.windows import Window

    limiter = SharedBudget(Path(budget), key_id(url, "bench"), int(per_minute * period / 60), period)
    day = Window(DAY, DAY + timedelta(days=1))
    job = Job(sites=(site,), span=day, data_dir=Path(data_dir), run_id="scale")
    with AceClient(url, "bench", rate_limiter=limiter) as client:
        result = extract_window(client, open_storage(data_dir), job, site, day, resolve_selector(["*"]))
    return result.records_fetched, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run(
    cfg: SimulatorConfig, workers: int, root: Path, per_minute: float, period: float
) -> tuple[float, int, int, int]:
    """(seconds, samples, 429s seen by the server, max worker RSS in MB)"""
    data_dir = root / f"data-{workers}-{time.monotonic_ns()}"
    with (
        Simulator(cfg) as sim,
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        budget = str(data_dir / "budget.sqlite")
        started = time.perf_counter()
        futures = [
            client.submit(extract_site, sim.url, str(data_dir), site, budget, per_minute, period, pure=False)
            for site in cfg.sites
        ]
        done = client.gather(futures)
        elapsed = time.perf_counter() - started
        throttled = sum(r["status"] == 429 for r in sim.requests)
    return elapsed, sum(n for n, _ in done), throttled, max(rss for _, rss in done) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sites", type=int, default=8)
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--budget", type=int, default=20, help="requests per 10 s in phase 2")
    options = parser.parse_args()
    sites = tuple(f"site-{i}" for i in range(options.sites))
    base = SimulatorConfig(sites=sites, points=options.points, interval=60, api_key="bench")
    root = Path(tempfile.mkdtemp(prefix="ace-etl-scale-"))
    free = 100_000.0  # a budget that never binds
    try:
        slow = replace(base, faults=Faults(latency=options.latency))
        one = run(slow, 1, root, free, 60.0)
        four = run(slow, 4, root, free, 60.0)
        print(f"1. latency {options.latency:g} s a page, {one[1]:,} samples over {len(sites)} sites")
        print(
            f"   1 worker:  {one[0]:6.1f} s, {one[1] / one[0]:10,.0f} samples/s, peak RSS {one[3]} MB per worker"
        )
        print(
            f"   4 workers: {four[0]:6.1f} s, {four[1] / four[0]:10,.0f} samples/s, peak RSS {four[3]} MB per worker"
        )
        print(f"   throughput 4 workers / 1 worker: {one[0] / four[0]:.2f} (target >= 3)")
        capped = replace(
            slow, faults=Faults(latency=options.latency, rate_limit=options.budget, rate_period=10.0)
        )
        per_minute = options.budget * 6.0
        held = run(capped, 4, root, per_minute, 10.0)
        requests = held[1] // 100_000 + len(sites) * 2  # pages plus the last, empty-cursor page per site
        floor = max(0.0, (requests / options.budget - 1) * 10.0)
        print(f"2. budget {options.budget} requests / 10 s, 4 workers: {held[0]:.1f} s, {held[2]} responses 429 "
              f"(floor about {floor:.0f} s for about {requests} requests)")  # fmt: skip
        one_fast, four_fast = run(base, 1, root, free, 60.0), run(base, 4, root, free, 60.0)
        print("3. no latency:")
        print(f"   1 worker:  {one_fast[0]:6.1f} s, {one_fast[1] / one_fast[0]:10,.0f} samples/s")
        print(f"   4 workers: {four_fast[0]:6.1f} s, {four_fast[1] / four_fast[0]:10,.0f} samples/s "
              f"(ratio {one_fast[0] / four_fast[0]:.2f}; this machine has 2 cores: the cores bind)")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
