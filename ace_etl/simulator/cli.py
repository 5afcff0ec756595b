"""`ace-etl simulator`: serve the bundled ACE IoT API stand-in until Ctrl-C or SIGTERM.

Only typer and the stdlib are imported here: the server (and Polars) load inside the command, so
`ace-etl --help` stays fast.
"""

from __future__ import annotations

import signal
import sys
import time
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated, cast, get_args

import typer

from ace_etl.simulator import config as _config
from ace_etl.simulator import faults as _faults


class Shape(StrEnum):
    """The API shapes (config.SHAPES), as typer choices."""

    real = "real"
    seed = "seed"


class TimeFormat(StrEnum):
    """The sample time spellings (config.TIME_FORMATS), as typer choices."""

    z = "z"
    offset = "offset"
    naive = "naive"
    millis = "millis"
    mixed = "mixed"


class Metadata(StrEnum):
    """How configured points are described (config.METADATA), as typer choices."""

    nested = "nested"
    text = "text"
    sparse = "sparse"


class SiteRecords(StrEnum):
    """Which site endpoints answer with a record (config.SITE_RECORDS), as typer choices."""

    single = "single"
    list = "list"
    none = "none"


class LostCursor(StrEnum):
    """How `--lost-cursor` spells the missing next_cursor (faults.LostCursor)."""

    null = "null"
    empty = "empty"


OddShape = StrEnum("OddShape", {name: name for name in _faults.ODD_SHAPES})  # type: ignore[misc]

# The choices and the config's Literal types name the same values (checked once, at import).
assert tuple(Shape) == _config.SHAPES and tuple(TimeFormat) == _config.TIME_FORMATS
assert tuple(Metadata) == _config.METADATA and tuple(SiteRecords) == _config.SITE_RECORDS
assert tuple(LostCursor) == get_args(_faults.LostCursor)


_FAULTS = "Fault injection (all off by default; requests are numbered from 1 after authentication)"


def simulator(
    host: Annotated[
        str, typer.Option(help="Address to listen on. Loopback by default; 0.0.0.0 exposes it.")
    ] = ("127.0.0.1"),
    port: Annotated[
        int,
        typer.Option(min=0, max=65535, help="Port to listen on; 0 picks a free one (printed when ready)."),
    ] = 0,
    shape: Annotated[
        Shape,
        typer.Option(
            help="Response shape: 'real' as the live API and the official aceiot-models client see it "
            "({point_samples, next_cursor, has_more}); 'seed' the design-document shape ({data, pagination})."
        ),
    ] = Shape.real,
    sites: Annotated[
        str, typer.Option(help="Comma-separated site names to serve, e.g. 'hq,annex'.")
    ] = "demo-site",
    points: Annotated[
        int,
        typer.Option(min=1, help="Points per site: AHUs, VAVs, chillers, boilers and meters, in that mix."),
    ] = 50,
    interval: Annotated[
        int | None,
        typer.Option(
            min=1, help="Sample interval of every point, in seconds. Default: a mix of 60, 300 and 900."
        ),
    ] = None,
    api_key: Annotated[
        str, typer.Option(help="The only key accepted, sent as 'Authorization: Bearer <key>'.")
    ] = "demo",
    configured_fraction: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of points with collect_enabled=true; of the rest, half are listed with "
            "collect_enabled=false and half are missing from configured_points (yet still in the timeseries).",
        ),
    ] = 0.8,
    time_format: Annotated[
        TimeFormat,
        typer.Option(
            help="How sample times are written: z (...Z), offset (-05:00 local time), naive (no offset, "
            "meaning UTC), millis (...00.000Z) or mixed (a deterministic mix per sample). All name the same instant."
        ),
    ] = TimeFormat.z,
    outage: Annotated[
        list[str] | None,
        typer.Option(
            help="A point serving no samples, as 'NAME@START/END' with ISO instants, the span half-open; an "
            "empty START or END is unbounded, and NAME alone never has data while staying in "
            "configured_points. Repeatable, e.g. --outage 'demo-site/ahu-1/sa_temp@2026-01-01T03:00Z/"
            "2026-01-01T05:00Z'.",
        ),
    ] = None,
    extra_point: Annotated[
        list[str] | None,
        typer.Option(
            help="A point every site serves beside its generated ones, with collect_enabled, named exactly as "
            "given (spaces, '[', '*' and all). Repeatable, e.g. --extra-point 'demo-site/zone[1]/temp'.",
        ),
    ] = None,
    extra_disabled_point: Annotated[
        list[str] | None,
        typer.Option(help="As --extra-point, listed with collect_enabled false. Repeatable."),
    ] = None,
    site_location: Annotated[
        list[str] | None,
        typer.Option(
            help="Place a site at other coordinates than its default place (New York, London, Chicago, Sydney, "
            "Phoenix, Berlin by the site's position), as NAME=LAT,LON. Repeatable, e.g. --site-location "
            "'hq=35.68,139.77'.",
        ),
    ] = None,
    metadata: Annotated[
        Metadata,
        typer.Option(
            help="How configured points are described: nested (as the real API: tags, kv_tags and bacnet_data as "
            "objects), text (every nested value as JSON text) or sparse (the optional fields left out or null).",
        ),
    ] = Metadata.nested,
    site_records: Annotated[
        SiteRecords,
        typer.Option(
            help="single: GET /sites/{site} and the /sites list give each site's record; list: only the list "
            "(the single site is a 404); none: the list names the sites only.",
        ),
    ] = SiteRecords.single,
    upload_horizon: Annotated[
        str | None,
        typer.Option(
            help="Late uploads: serve no sample at or after this ISO instant yet; move it while running with "
            "PUT <url>/_simulator/upload_horizon?at=ISO (empty: serve everything).",
            show_default=False,
        ),
    ] = None,
    request_log: Annotated[
        Path | None,
        typer.Option(
            help="Append every request here as a JSON line: method, path, params, status, bytes, fault."
        ),
    ] = None,
    fail_429_every: Annotated[
        int,
        typer.Option(
            min=0, rich_help_panel=_FAULTS, help="Answer every Nth request with 429 and a Retry-After."
        ),
    ] = 0,
    retry_after: Annotated[
        float,
        typer.Option(min=0.0, rich_help_panel=_FAULTS, help="Seconds to send in Retry-After with 429s."),
    ] = 1.0,
    retry_after_http_date: Annotated[
        bool,
        typer.Option(rich_help_panel=_FAULTS, help="Send Retry-After as an HTTP date instead of seconds."),
    ] = False,
    fail_500_every: Annotated[
        int, typer.Option(min=0, rich_help_panel=_FAULTS, help="Answer every Nth request with 500.")
    ] = 0,
    drop_connection_every: Annotated[
        int,
        typer.Option(
            min=0,
            rich_help_panel=_FAULTS,
            help="On every Nth request announce the full Content-Length, send half the body, close the socket.",
        ),
    ] = 0,
    truncate_every: Annotated[
        int,
        typer.Option(
            min=0,
            rich_help_panel=_FAULTS,
            help="On every Nth request send only the first half of the JSON (with a matching Content-Length).",
        ),
    ] = 0,
    latency: Annotated[
        float, typer.Option(min=0.0, rich_help_panel=_FAULTS, help="Seconds added to every response.")
    ] = 0.0,
    cursor_ttl: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            rich_help_panel=_FAULTS,
            help="Cursors older than this many seconds get 400 'cursor expired'. Default: they never expire.",
        ),
    ] = None,
    bad_value_fraction: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            rich_help_panel=_FAULTS,
            help="Share of raw samples served altered, cycling through a bool and a numeric string (both "
            "coercible), the text 'n/a', null and an unparseable timestamp (the last three must be rejected).",
        ),
    ] = 0.0,
    rate_limit: Annotated[
        int,
        typer.Option(
            min=0,
            rich_help_panel=_FAULTS,
            help="Allow this many requests per --rate-period (sliding window); beyond it 429 with Retry-After.",
        ),
    ] = 0,
    rate_period: Annotated[
        float,
        typer.Option(min=0.001, rich_help_panel=_FAULTS, help="Length of the --rate-limit window, seconds."),
    ] = 60.0,
    trickle_every: Annotated[
        int,
        typer.Option(
            min=0, rich_help_panel=_FAULTS, help="Send every Nth answer one byte per --trickle-delay seconds."
        ),
    ] = 0,
    trickle_delay: Annotated[
        float, typer.Option(min=0.001, rich_help_panel=_FAULTS, help="Seconds between trickled bytes.")
    ] = 1.0,
    gzip_bomb_every: Annotated[
        int,
        typer.Option(
            min=0,
            rich_help_panel=_FAULTS,
            help="Answer every Nth request with a small gzip body inflating to --gzip-bomb-bytes zeros.",
        ),
    ] = 0,
    gzip_bomb_bytes: Annotated[
        int, typer.Option(min=1, rich_help_panel=_FAULTS, help="Inflated size of the gzip bomb, bytes.")
    ] = 2**30,
    endless_every: Annotated[
        int,
        typer.Option(
            min=0,
            rich_help_panel=_FAULTS,
            help="Answer every Nth request with a chunked page that never ends (until the client hangs up).",
        ),
    ] = 0,
    lost_cursor: Annotated[
        LostCursor | None,
        typer.Option(
            rich_help_panel=_FAULTS,
            help="Serve every timeseries page that has more with has_more true and a null or empty next_cursor.",
            show_default=False,
        ),
    ] = None,
    empty_pages: Annotated[
        bool,
        typer.Option(
            rich_help_panel=_FAULTS,
            help="Serve every timeseries page empty, with has_more true and a fresh cursor, forever.",
        ),
    ] = False,
    odd_shape: Annotated[
        OddShape | None,
        typer.Option(
            rich_help_panel=_FAULTS,
            help="Answer configured_points or weather in a shape the API never sends: items as strings, "
            "pages 'x', a 400-digit page count, weather {'data': [1, 2]}, a 400-digit temperature.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the bundled ACE IoT API simulator under /api until Ctrl-C or SIGTERM.

    Point the pipeline at it with the two export lines it prints once ready.
    """
    from ace_etl.simulator import Faults, Simulator, SimulatorConfig

    try:
        config = SimulatorConfig(
            sites=tuple(site.strip() for site in sites.split(",")),
            points=points,
            interval=interval,
            shape=cast(_config.Shape, shape.value),
            api_key=api_key,
            configured_fraction=configured_fraction,
            time_format=cast(_config.TimeFormat, time_format.value),
            outages=tuple(_parse_outage(text) for text in outage or ()),
            extra_points=tuple(extra_point or ()),
            extra_disabled_points=tuple(extra_disabled_point or ()),
            site_locations=tuple(_parse_location(text) for text in site_location or ()),
            metadata=cast(_config.Metadata, metadata.value),
            site_records=cast(_config.SiteRecords, site_records.value),
            request_log=request_log,
            upload_horizon=upload_horizon,
            host=host,
            port=port,
            faults=Faults(
                status_429_every=fail_429_every,
                retry_after=retry_after,
                retry_after_http_date=retry_after_http_date,
                status_500_every=fail_500_every,
                drop_connection_every=drop_connection_every,
                truncate_every=truncate_every,
                latency=latency,
                cursor_ttl=cursor_ttl,
                bad_value_fraction=bad_value_fraction,
                rate_limit=rate_limit,
                rate_period=rate_period,
                trickle_every=trickle_every,
                trickle_delay=trickle_delay,
                gzip_bomb_every=gzip_bomb_every,
                gzip_bomb_bytes=gzip_bomb_bytes,
                endless_every=endless_every,
                lost_cursor=None if lost_cursor is None else cast(_faults.LostCursor, lost_cursor.value),
                empty_pages=empty_pages,
                odd_shape=None if odd_shape is None else cast(_faults.OddShape, odd_shape.value),
            ),
        )
        sim = Simulator(config)
    except ValueError as error:
        typer.echo(f"ace-etl simulator: {error}", err=True)
        raise typer.Exit(2) from error

    try:
        sim.start()
    except OSError as error:
        typer.echo(f"ace-etl simulator: cannot listen on {host}:{port}: {error.strerror or error}", err=True)
        raise typer.Exit(1) from error
    # SIGTERM ends the server the way Ctrl-C does, so both leave through the same clean stop (the console
    # script's own Ctrl-C handler quits at once).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        typer.echo(f"ACE IoT API simulator ready: {sim.url}  (key: {api_key})")
        typer.echo(f"export ACEIOT_API_URL={sim.url}")
        typer.echo(f"export ACEIOT_API_KEY={api_key}")
        sys.stdout.flush()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


def _parse_outage(text: str) -> tuple[str, str | None, str | None]:
    # Point names hold slashes and ISO instants never hold '@', so the last '@' ends the name.
    name, at, span = text.rpartition("@")
    if not at:
        return text, None, None
    start, slash, end = span.partition("/")
    if not slash:
        raise ValueError(f"--outage {text!r}: expected NAME@START/END (START or END may be empty)")
    return name, start or None, end or None


def _parse_location(text: str) -> tuple[str, float, float]:
    # Site names may hold '=', coordinates never do: the last '=' ends the name.
    name, equals, coordinates = text.rpartition("=")
    latitude, comma, longitude = coordinates.partition(",")
    try:
        if not (equals and comma and name):
            raise ValueError
        return name, float(latitude), float(longitude)
    except ValueError:
        raise ValueError(f"--site-location {text!r}: expected NAME=LAT,LON, e.g. hq=40.75,-73.99") from None


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
