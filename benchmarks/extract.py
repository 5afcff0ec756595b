"""Extract benchmark: how much slower than a bare download is the full extract to landed Parquet?

Serves 2,000 points at 60 s for one UTC day (2,880,000 samples, 80% configured) from the bundled simulator,
then times (a) a plain download of every page with the same pagination, bodies discarded, and (b) the full
extract (`run_extract`: decode, normalize, filter, write Parquet, checkpoint) in a child process, whose peak
RSS it reports. Then it extracts four days as one 96 h window, which shows that memory does not grow with a
window's length, and four days as four 24 h windows on four workers, which shows what concurrency costs
(memory grows with the windows in flight, bounded by `max_workers`, not with the range).
Targets: b/a <= 3, peak RSS <= 400 MB, 4 days within 20% of 1 day. With `--repeat-across-pages` the
server starts every page with the last sample of the page before, so every page is checked against the
staged pages' keys (the cost of the cross-page duplicate rejects).

Then the same day as whole processes, as an operator sees it, against the simulator in a process of its own
(`ace-etl simulator`): (c) a plain download in a fresh Python process (httpx paging the same pages, bodies
discarded) and (d) `ace-etl run --no-transform` (interpreter start, imports, points and site lookups,
extract, weather). Each is timed, its CPU time (user and system, every core) and peak RSS taken by a small parent process
of its own. The request
budget is lifted (ACE_ETL_MAX_REQUESTS_PER_MINUTE) so that pacing is not what is measured. Target: d/c <= 2.

    .venv/bin/python benchmarks/extract.py [--points 2000] [--interval 60] [--days 4] [--repeat-across-pages]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

SITE = "bench-site"
START = datetime(2024, 1, 1, tzinfo=UTC)
PAGE_SIZE = 100_000
API_KEY = "demo"
# The console script an operator runs, beside this interpreter.
ACE_ETL = str(Path(sys.executable).with_name("ace-etl"))


def plain_download(url: str, start: datetime, end: datetime) -> tuple[int, int, float]:
    """(pages, bytes, seconds) for fetching every page and throwing the body away. Imports httpx only, as
    a bare client would (it also runs as a whole process of its own: `--download`)."""
    import httpx

    params: dict[str, str | int] = {
        "start_time": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end_time": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "page_size": PAGE_SIZE,
        "raw_data": "true",
    }
    pages = size = 0
    began = time.perf_counter()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=300) as http:
        cursor = None
        while True:
            response = http.get(
                f"/sites/{SITE}/timeseries/paginated",
                params=params | ({"cursor": cursor} if cursor else {}),
            )
            response.raise_for_status()
            pages, size = pages + 1, size + len(response.content)
            cursor = _next_cursor(response.content)
            if cursor is None:
                return pages, size, time.perf_counter() - began


def _next_cursor(body: bytes) -> str | None:
    # The pagination fields follow the samples in the real shape: read only the tail, as a bare client would.
    tail = body[body.rfind(b'"next_cursor"') :]
    return json.loads(b"{" + tail)["next_cursor"] if tail else None


def child(url: str, data_dir: str, start: str, end: str, window_hours: str, max_workers: str) -> None:
    """Run the full extract and print its timing, counts and this process's peak RSS as JSON."""
    from extract.api.client import AceClient
    from extract.lake.storage import LocalStorage
    from extract.run.job import Job
    from extract.run.pipeline import run_extract
    from extract.windows import Window

    began = time.perf_counter()
    job = Job(
        sites=(SITE,),
        span=Window(datetime.fromisoformat(start), datetime.fromisoformat(end)),
        data_dir=Path(data_dir),
        page_size=PAGE_SIZE,
        window_hours=float(window_hours),
        max_workers=int(max_workers),
    )
    with AceClient(url, API_KEY, requests_per_minute=None) as client:
        result = run_extract(client, LocalStorage(data_dir), job)
    result.raise_if_failed()
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - began,
                "fetched": sum(w.records_fetched for w in result.windows),
                "kept": sum(w.records_kept for w in result.windows),
                "pages": sum(w.pages for w in result.windows),
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


def peak_rss_mb() -> float:
    """This process's peak RSS. Linux's VmHWM, since `ru_maxrss` starts from the parent's peak at the exec
    (the simulator's, here); `ru_maxrss` where there is no /proc."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kilobytes = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(kilobytes) / 1024


def full_extract(
    url: str, start: datetime, end: datetime, *, window_hours: float = 24, max_workers: int = 4
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ace-etl-bench-") as data_dir:
        arguments = [url, data_dir, start.isoformat(), end.isoformat(), str(window_hours), str(max_workers)]
        done = subprocess.run(
            [sys.executable, __file__, "--child", *arguments],
            check=True,
            capture_output=True,
            text=True,
        )
    stats: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return stats


def measured(command: Sequence[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Wall time and peak RSS of `command` as a whole process. A small parent of its own (`--measure`) runs
    it: Linux's `ru_maxrss` of a child starts from its parent's peak, and ours holds the simulator's pages."""
    done = subprocess.run(
        [sys.executable, __file__, "--measure", *command],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    stats: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return stats


def measure(command: Sequence[str]) -> None:
    """The `--measure` parent: run `command` (its output discarded), print its wall time, CPU time (user and
    system, on every core: what a loaded machine cannot hide) and peak RSS."""
    began = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:3])}... exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": usage.ru_maxrss / 1024}))


@contextmanager
def simulator_process(args: argparse.Namespace) -> Iterator[str]:
    """`ace-etl simulator` serving the benchmark's site in a process of its own; yields its URL."""
    command = [
        ACE_ETL, "simulator", "--sites", SITE, "--points", str(args.points),
        "--interval", str(args.interval), "--configured-fraction", "0.8", "--api-key", API_KEY,
    ]  # fmt: skip
    if args.repeat_across_pages:
        command.append("--repeat-across-pages")
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        ready = server.stdout.readline()
        if "ready:" not in ready:
            raise SystemExit(f"the simulator did not start: {ready!r}")
        yield ready.split("ready:", 1)[1].split()[0]
    finally:
        server.terminate()
        server.wait()


def whole_processes(args: argparse.Namespace) -> None:
    one_day = START + timedelta(days=1)
    with simulator_process(args) as url, tempfile.TemporaryDirectory(prefix="ace-etl-bench-") as scratch:
        env = {
            **os.environ,
            "ACEIOT_API_URL": url,
            "ACEIOT_API_KEY": API_KEY,
            "ACE_ETL_MAX_REQUESTS_PER_MINUTE": "1000000",
        }
        download = [sys.executable, __file__, "--download", url, START.isoformat(), one_day.isoformat()]
        downloads, runs = [], []
        for attempt in range(args.repeat):
            downloads.append(measured(download))
            run = [
                ACE_ETL, "run", "--site", SITE, "--start", START.isoformat(),
                "--end", one_day.isoformat(), "--no-transform", "--data-dir", f"{scratch}/data-{attempt}",
            ]  # fmt: skip
            runs.append(measured(run, env))
    plain = min(downloads, key=lambda m: m["seconds"])
    run = min(runs, key=lambda m: m["seconds"])
    print(f"whole processes, best of {args.repeat} alternating runs each, simulator in its own process")
    for label, m in (("(c) plain download process:    ", plain), ("(d) ace-etl run --no-transform:", run)):
        print(
            f"{label} {m['seconds']:.2f} s, CPU {m['cpu_seconds']:.2f} s, peak RSS {m['peak_rss_mb']:.0f} MB"
        )
    print(
        f"d/c = {run['seconds'] / plain['seconds']:.2f} (target <= 2); "
        f"CPU d/c = {run['cpu_seconds'] / plain['cpu_seconds']:.2f}"
    )


def main() -> None:
    if sys.argv[1:2] == ["--measure"]:
        measure(sys.argv[2:])
        return
    if sys.argv[1:2] == ["--download"]:
        url, start, end = sys.argv[2:5]
        pages, size, seconds = plain_download(url, datetime.fromisoformat(start), datetime.fromisoformat(end))
        print(json.dumps({"pages": pages, "bytes": size, "seconds": seconds}))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--interval", type=int, default=60)
    parser.add_argument("--days", type=int, default=4, help="length of the memory-growth run (0 skips it)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="alternating runs of (a) and (b); the best counts"
    )
    parser.add_argument(
        "--only-whole-process", action="store_true", help="skip the in-process figures and the memory runs"
    )
    parser.add_argument(
        "--repeat-across-pages",
        action="store_true",
        help="the simulator fault: every page starts with the last sample of the page before",
    )
    parser.add_argument(
        "--child",
        nargs=6,
        metavar=("URL", "DATA_DIR", "START", "END", "WINDOW_HOURS", "WORKERS"),
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if not args.only_whole_process:
        in_process(args)
    whole_processes(args)


def in_process(args: argparse.Namespace) -> None:

    from ace_etl.simulator import Faults, Simulator, SimulatorConfig

    config = SimulatorConfig(
        sites=(SITE,),
        points=args.points,
        interval=args.interval,
        configured_fraction=0.8,
        faults=Faults(repeat_across_pages=args.repeat_across_pages),
    )
    one_day = START + timedelta(days=1)
    with Simulator(config) as sim:
        # Alternate (a) and (b) and keep the best of each: on a shared 2-core machine a single run of
        # either can be slowed by a neighbour, and the ratio is only meaningful between quiet runs.
        downloads, extracts = [], []
        for _ in range(args.repeat):
            downloads.append(plain_download(sim.url, START, one_day))
            extracts.append(full_extract(sim.url, START, one_day))
        pages, size, download_s = min(downloads, key=lambda run: run[2])
        day = min(extracts, key=lambda run: run["seconds"])
        samples = args.points * 86_400 // args.interval
        print(f"best of {args.repeat} alternating runs each")
        print(
            f"(a) plain download: {pages} pages, {size / 1e6:,.0f} MB, {download_s:.2f} s, {samples / download_s:,.0f} records/s"
        )
        print(
            f"(b) full extract:   {day['pages']:.0f} pages, {day['fetched']:,.0f} fetched, {day['kept']:,.0f} kept, "
            f"{day['seconds']:.2f} s, {day['fetched'] / day['seconds']:,.0f} records/s, peak RSS {day['peak_rss_mb']:.0f} MB"
        )
        print(f"b/a = {day['seconds'] / download_s:.2f}  (target <= 3)")
        if args.days:
            end = START + timedelta(days=args.days)
            for label, days in (
                (
                    f"one {24 * args.days} h window",
                    full_extract(sim.url, START, end, window_hours=24 * args.days),
                ),
                (f"{args.days} x 24 h windows, 4 workers", full_extract(sim.url, START, end)),
            ):
                growth = days["peak_rss_mb"] / day["peak_rss_mb"] - 1
                print(
                    f"{args.days} days, {label}: {days['fetched']:,.0f} fetched in {days['seconds']:.2f} s, "
                    f"peak RSS {days['peak_rss_mb']:.0f} MB ({growth:+.0%} vs 1 day)"
                )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
