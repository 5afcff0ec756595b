"""Deterministic building telemetry: the samples and 5-minute aggregates of the points of `catalogue`.

Everything here is a pure function of its arguments, so the server and the tests derive the same rows
independently. Samples sit on exact multiples of the point's interval since the Unix epoch, and the serving
order is point-major (points sorted by name, then time ascending): a page is computed from its offset
alone, without generating the rest of the window. Generation is vectorized with Polars; per-sample
pseudo-randomness comes from integer arithmetic modulo a prime rather than `Expr.hash`, whose output Polars
does not keep stable across versions.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import polars as pl

from ace_etl.simulator.catalogue import DAY_S, DEVICE_SIGNALS, PRIME, US, Extra, point_table
from ace_etl.simulator.config import Outage, SimulatorConfig, TimeFormat, utc_instant
from ace_etl.simulator.plants import plant_columns, planted_offset, site_events

BAD_KINDS = ("bool", "numeric_string", "text", "null", "bad_timestamp")
AGGREGATE_SECONDS = 300

_LOCAL_OFFSET_S = -5 * 3600
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STREAMS = {1: 16_807, 2: 48_271_117, 3: 69_621}
_PUBLIC_COLUMNS = ("name", "time", "value", "bad_kind", "time_raw", "value_raw")


def _served_spans(outages: tuple[Outage, ...]) -> pl.DataFrame:
    """Per point with outages, the `[lo_us, hi_us)` spans between them that it serves (null = unbounded)."""
    down: dict[str, list[tuple[float, float]]] = {}
    for name, start, end in outages:
        lo = -math.inf if start is None else to_epoch_us(start)
        hi = math.inf if end is None else to_epoch_us(end)
        down.setdefault(name, []).append((lo, hi))
    rows = []
    for name, spans in down.items():
        served_from = -math.inf
        for lo, hi in sorted(spans):
            if lo > served_from:
                rows.append((name, served_from, lo))
            served_from = max(served_from, hi)
        if served_from < math.inf:
            rows.append((name, served_from, math.inf))
    bounded = [
        (name, None if math.isinf(lo) else lo, None if math.isinf(hi) else hi) for name, lo, hi in rows
    ]
    return pl.DataFrame(bounded, schema={"name": pl.Utf8, "lo_us": pl.Int64, "hi_us": pl.Int64}, orient="row")


@lru_cache(maxsize=32)
def _outage_table(
    site: str,
    n_points: int,
    interval: int | None,
    configured_fraction: float,
    extra: Extra,
    outages: tuple[Outage, ...],
    excursions: str | None,
) -> pl.DataFrame:
    """The point table with one row per served span (`lo_us`, `hi_us`), sorted by point then span, and the
    event planted in each point from day `excursions` (`plant_*` columns, null for none).

    A point with outages gets a row per span it serves, none if it never has data; split rows share the
    point's `point` index, so the serving order stays point-major.
    """
    events = site_events(site, excursions, n_points) if excursions else ()
    table = point_table(site, n_points, interval, configured_fraction, extra).join(
        plant_columns(events), on="name", how="left", maintain_order="left"
    )
    down = pl.col("name").is_in([name for name, _, _ in outages])
    unbounded = table.filter(~down).with_columns(lo_us=pl.lit(None, pl.Int64), hi_us=pl.lit(None, pl.Int64))
    split = table.join(_served_spans(outages), on="name")
    return pl.concat([unbounded, split]).sort("point", "lo_us", nulls_last=False)


def _table(cfg: SimulatorConfig, site: str) -> pl.DataFrame:
    if site not in cfg.sites:
        raise ValueError(f"unknown site: {site!r}")
    return _outage_table(
        site, cfg.points, cfg.interval, cfg.configured_fraction, cfg.extra, cfg.outages, cfg.excursions
    )


def _scramble() -> pl.Expr:
    """A hash of (point, time) in [0, p), p = 2**31 - 1: one quadratic round mod p, no product above 2**62.

    Computed once per row as column `h`; `_draw` derives independent-looking streams from it.
    """
    x = (pl.col("t") % PRIME * 48_271 % PRIME + pl.col("seed")) % PRIME
    return ((x * x % PRIME) * 362_437_001 + x * 521_288_629 + 12_345) % PRIME


def _draw(stream: int) -> pl.Expr:
    """A uniform-looking integer in [0, p) per row: multiplying `h` by a per-stream constant mod p
    decorrelates the streams. Decisions compare integers, so they never hinge on float rounding, which
    Polars may do differently for a single-row page."""
    return pl.col("h") * _STREAMS[stream] % PRIME


def _iso(seconds: pl.Expr) -> pl.Expr:
    return (seconds * 1000).cast(pl.Datetime("ms")).dt.strftime("%Y-%m-%dT%H:%M:%S")


def _time_text(time_format: TimeFormat) -> pl.Expr:
    utc = _iso(pl.col("t"))
    variants = {
        "z": lambda: utc + "Z",
        "offset": lambda: _iso(pl.col("t") + _LOCAL_OFFSET_S) + "-05:00",
        "naive": lambda: utc,
        "millis": lambda: utc + ".000Z",
        "utc_offset": lambda: utc + "+00:00",
    }
    if time_format != "mixed":
        return variants[time_format]()
    pick = _draw(3) * len(variants) // PRIME
    return pl.coalesce(pl.when(pick == index).then(text()) for index, text in enumerate(variants.values()))


def _rounded(value: pl.Expr) -> pl.Expr:
    """The value rounded to its point's decimals, as the nearest double to the short decimal.

    Not `(value * scale).round() / scale`: Polars may turn a division by a column that happens to be
    constant into a multiplication by its reciprocal, serving 70.71000000000001 on some pages only.
    """
    decimals = {signal.decimals for signals in DEVICE_SIGNALS.values() for signal in signals}
    return pl.coalesce(pl.when(pl.col("decimals") == places).then(value.round(places)) for places in decimals)


def _samples(spans: pl.LazyFrame) -> pl.LazyFrame:
    """The clean samples k_lo <= k < k_hi of each span's point (t = k * interval seconds)."""
    tau = 2 * math.pi
    analog = _rounded(
        pl.col("base")
        + pl.col("amplitude") * ((pl.col("t") + pl.col("phase")) * (tau / DAY_S)).sin()
        + pl.col("noise") * (2 * _draw(1) / PRIME - 1)
        + planted_offset()
    )
    binary = ((pl.col("t") + pl.col("phase")) % DAY_S < DAY_S // 2).cast(pl.Float64)
    return (
        spans.filter(pl.col("k_hi") > pl.col("k_lo"))
        .with_columns(k=pl.int_ranges("k_lo", "k_hi"))
        .explode("k")
        .with_columns(t=pl.col("k") * pl.col("interval_s"))
        .with_columns(h=_scramble())
        .with_columns(value=pl.when(pl.col("binary")).then(binary).otherwise(analog))
    )


def _ceil_div(numerator: pl.Expr | int, denominator: pl.Expr) -> pl.Expr:
    return -((-numerator) // denominator)


def _layout(table: pl.DataFrame, start_us: int, end_us: int, raw: bool) -> pl.LazyFrame:
    """Per span row: its first sample index in the window, how many rows (samples or buckets) it covers, and
    `pos`, the serving-order position of the first of them.

    Columns `s_us`/`e_us` are the window clamped to the row's span. Spans of one point cut apart by a short
    outage may both hold samples of one 5-minute bucket: that bucket is served once, so the later row's
    first bucket is `shared`, takes no position of its own and starts at the previous row's last one.
    """
    interval_us = pl.col("interval_s") * US
    laid = table.lazy().with_columns(
        s_us=pl.max_horizontal(pl.lit(start_us), pl.col("lo_us")),
        e_us=pl.min_horizontal(pl.lit(end_us), pl.col("hi_us")),
    )
    k_first = _ceil_div(pl.col("s_us"), interval_us)
    k_end = _ceil_div(pl.col("e_us"), interval_us)
    laid = laid.with_columns(k_first=k_first, n=pl.max_horizontal(k_end - k_first, 0), shared=pl.lit(0))
    if not raw:

        def bucket_of(k: pl.Expr) -> pl.Expr:
            return k * pl.col("interval_s") // AGGREGATE_SECONDS

        # An interval under a bucket leaves no bucket empty between the first and last sample; an interval
        # of a bucket or more puts every sample in a bucket of its own.
        buckets = (
            pl.when(pl.col("n") == 0)
            .then(0)
            .when(pl.col("interval_s") < AGGREGATE_SECONDS)
            .then(bucket_of(pl.col("k_first") + pl.col("n") - 1) - bucket_of(pl.col("k_first")) + 1)
            .otherwise(pl.col("n"))
        )
        last = pl.when(pl.col("n") > 0).then(bucket_of(pl.col("k_first") + pl.col("n") - 1))
        previous_last = last.shift(1).forward_fill().over("point")
        shared = (pl.col("n") > 0) & (bucket_of(pl.col("k_first")) == previous_last)
        laid = laid.with_columns(
            n=buckets, b_first=bucket_of(pl.col("k_first")), shared=shared.fill_null(False).cast(pl.Int64)
        )
    own = pl.col("n") - pl.col("shared")
    return laid.with_columns(own=own, pos=own.cum_sum() - pl.col("n"))


def _spans(laid: pl.LazyFrame, raw: bool, offset: int, count: int) -> pl.LazyFrame:
    lo = (offset - pl.col("pos")).clip(0, pl.col("n"))
    hi = (offset + count - pl.col("pos")).clip(0, pl.col("n"))
    spans = laid.with_columns(lo=lo, hi=hi).filter(pl.col("hi") > pl.col("lo"))
    by_sample = {"k_lo": pl.col("k_first") + pl.col("lo"), "k_hi": pl.col("k_first") + pl.col("hi")}
    if raw:
        return spans.with_columns(**by_sample)
    interval_us = pl.col("interval_s") * US
    bucket_us = AGGREGATE_SECONDS * US
    t_lo = pl.max_horizontal((pl.col("b_first") + pl.col("lo")) * bucket_us, pl.col("s_us"))
    t_hi = pl.min_horizontal((pl.col("b_first") + pl.col("hi")) * bucket_us, pl.col("e_us"))
    by_bucket = {"k_lo": _ceil_div(t_lo, interval_us), "k_hi": _ceil_div(t_hi, interval_us)}
    small = pl.col("interval_s") < AGGREGATE_SECONDS
    return spans.with_columns(
        **{key: pl.when(small).then(by_bucket[key]).otherwise(by_sample[key]) for key in by_sample}
    )


def _served_raw(samples: pl.LazyFrame, time_format: TimeFormat, bad_fraction: float) -> pl.LazyFrame:
    value_text = (
        pl.when(pl.col("binary"))
        .then(pl.col("value").cast(pl.Int64).cast(pl.Utf8))
        .otherwise(pl.col("value").cast(pl.Utf8))
    )
    threshold = round(bad_fraction * PRIME)
    if threshold:
        # A draw below the threshold is bad, and its position below it picks the kind; every other draw
        # maps past the last kind, to null.
        kind_index = _draw(2) * len(BAD_KINDS) // threshold
        bad_kind = kind_index.replace_strict(dict(enumerate(BAD_KINDS)), default=None, return_dtype=pl.Utf8)
    else:
        bad_kind = pl.lit(None, dtype=pl.Utf8)
    bad = pl.col("bad_kind")
    truthy = pl.col("value") != 0
    return samples.with_columns(
        bad_kind=bad_kind, value_text=value_text, time_text=_time_text(time_format)
    ).with_columns(
        value_raw=pl.when(bad == "bool")
        .then(pl.when(truthy).then(pl.lit("true")).otherwise(pl.lit("false")))
        .when(bad == "numeric_string")
        .then('"' + pl.col("value_text") + '"')
        .when(bad == "text")
        .then(pl.lit('"n/a"'))
        .when(bad == "null")
        .then(pl.lit("null"))
        .otherwise(pl.col("value_text")),
        time_raw=pl.when(bad == "bad_timestamp").then(pl.lit("not-a-time")).otherwise(pl.col("time_text")),
        value=pl.when(bad == "bool").then(truthy.cast(pl.Float64)).otherwise(pl.col("value")),
    )


def _served_aggregates(samples: pl.LazyFrame, table: pl.DataFrame, time_format: TimeFormat) -> pl.LazyFrame:
    # Grouping on integers and joining the names back afterwards is several times faster than grouping
    # on the names: the strings never get exploded to one copy per raw sample.
    names = table.lazy().select("point", "name", "name_json", "metadata_json", "seed").unique("point")
    return (
        samples.group_by("point", t=pl.col("t") // AGGREGATE_SECONDS * AGGREGATE_SECONDS, maintain_order=True)
        .agg(pl.col("value").mean().round(4))
        .join(names, on="point", how="left", maintain_order="left")
        .with_columns(h=_scramble())
        .with_columns(
            bad_kind=pl.lit(None, dtype=pl.Utf8),
            value_raw=pl.col("value").cast(pl.Utf8),
            time_raw=_time_text(time_format),
        )
    )


def page_frame(
    cfg: SimulatorConfig, site: str, start_us: int, end_us: int, raw: bool, offset: int, count: int
) -> tuple[pl.DataFrame, int]:
    """Rows offset..offset+count of the window's serving order, and the window's total row count.

    Columns: name, name_json, metadata_json, t (epoch seconds), value, bad_kind, time_raw, value_raw.
    Bad values are a raw-data fault only: aggregates are computed from the clean values.
    """
    table = _table(cfg, site)
    laid = _layout(table, start_us, end_us, raw)
    total = laid.select(pl.col("own").sum()).collect().item()
    samples = _samples(_spans(laid, raw, offset, count))
    served = (
        _served_raw(samples, cfg.time_format, cfg.faults.bad_value_fraction)
        if raw
        else _served_aggregates(samples, table, cfg.time_format)
    )
    columns = ("name", "name_json", "metadata_json", "t", "value", "bad_kind", "time_raw", "value_raw")
    return served.select(columns).collect(), int(total or 0)


def to_epoch_us(instant: str | datetime) -> int:
    """Microseconds since the epoch of an ISO 8601 instant (Z, offset, naive = UTC, fractions allowed)."""
    return (utc_instant(instant) - _EPOCH) // timedelta(microseconds=1)


def _whole_window(
    cfg: SimulatorConfig, site: str, start: str | datetime, end: str | datetime, raw: bool
) -> pl.DataFrame:
    start_us, end_us = to_epoch_us(start), to_epoch_us(end)
    _, total = page_frame(cfg, site, start_us, end_us, raw, 0, 0)
    frame = page_frame(cfg, site, start_us, end_us, raw, 0, total)[0]
    time = (pl.col("t") * US).cast(pl.Datetime("us", "UTC"))
    return frame.with_columns(time=time).select(_PUBLIC_COLUMNS)


def served_samples(
    cfg: SimulatorConfig, site: str, start: str | datetime, end: str | datetime
) -> pl.DataFrame:
    """Every raw sample the server serves for `[start, end)` with raw_data=true, in serving order.

    `value` is the number a served sample stands for: the clean value, except for the `bool` fault whose
    `true`/`false` stands for 1.0/0.0. For `text`, `null` and `bad_timestamp` (which a correct extractor
    rejects) it is the clean value that was replaced; `time` is always the true instant.
    """
    return _whole_window(cfg, site, start, end, raw=True)


def served_aggregates(
    cfg: SimulatorConfig, site: str, start: str | datetime, end: str | datetime
) -> pl.DataFrame:
    """The 5-minute means the server serves for `[start, end)` without raw_data (time = bucket start)."""
    return _whole_window(cfg, site, start, end, raw=False)
