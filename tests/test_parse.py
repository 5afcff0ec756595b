"""Pure transforms: raw text samples -> kept rows, rejects and the filtered count; weather JSON -> rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from extract.api.decode import RAW_COLUMNS, _decode_any, _decode_compact_real, decode_timeseries_page
from extract.api.parse import (
    REJECTS_SCHEMA,
    TIMESERIES_SCHEMA,
    coerce_values,
    normalize_samples,
    parse_timestamps,
)
from extract.api.points import PointSelector
from extract.api.weather import parse_weather
from extract.errors import InvalidBodyError
from extract.lake.landing import staged, write_page
from extract.lake.schemas import WEATHER as WEATHER_SCHEMA
from extract.lake.storage import LocalStorage
from extract.windows import Window

T0 = datetime(2024, 3, 1, tzinfo=UTC)
WINDOW = Window(T0, datetime(2024, 3, 2, tzinfo=UTC))
COLLECTED = datetime(2024, 3, 3, 12, 0, 0, 123456, tzinfo=UTC)
EVERYTHING = PointSelector.from_list(["*"])


def raw(rows: list[tuple[str | None, str | None, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(*row, None, None) for row in rows],
        schema=dict.fromkeys(RAW_COLUMNS, pl.String),
        orient="row",
    )


def normalize(frame: pl.DataFrame, selector: PointSelector = EVERYTHING, window: Window = WINDOW):
    return normalize_samples(frame, site="s", collected_at=COLLECTED, window=window, selector=selector)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01T10:00:00Z", datetime(2024, 3, 1, 10, tzinfo=UTC)),
        ("2024-03-01t10:00:00z", datetime(2024, 3, 1, 10, tzinfo=UTC)),
        ("2024-03-01 10:00:00", datetime(2024, 3, 1, 10, tzinfo=UTC)),
        ("2024-03-01T10:00:00", datetime(2024, 3, 1, 10, tzinfo=UTC)),
        ("2024-03-01T10:00:00.123Z", datetime(2024, 3, 1, 10, 0, 0, 123000, tzinfo=UTC)),
        ("2024-03-01T10:00:00.123456789", datetime(2024, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2024-03-01T05:00:00-05:00", datetime(2024, 3, 1, 10, tzinfo=UTC)),
        ("2024-03-01 12:30:00+0230", datetime(2024, 3, 1, 10, tzinfo=UTC)),
        ("2024-03-01T10:00:00+00:00", datetime(2024, 3, 1, 10, tzinfo=UTC)),
        (" 2024-03-01T10:00:00Z ", datetime(2024, 3, 1, 10, tzinfo=UTC)),
        ("not-a-time", None),
        ("2024-13-01T10:00:00Z", None),
        ("", None),
        (None, None),
    ],
)
def test_timestamps_normalize_to_utc_microseconds(text: str | None, expected: datetime | None) -> None:
    parsed = parse_timestamps(pl.Series([text], dtype=pl.String))
    assert parsed.dtype == pl.Datetime("us", "UTC")
    assert parsed.item() == expected


def test_mixed_spellings_in_one_column_keep_their_rows() -> None:
    texts = ["2024-03-01T10:00:00Z", "bad", "2024-03-01 10:00:01", None, "2024-03-01T11:00:02+01:00"]
    assert parse_timestamps(pl.Series(texts, dtype=pl.String)).to_list() == [
        datetime(2024, 3, 1, 10, 0, 0, tzinfo=UTC),
        None,
        datetime(2024, 3, 1, 10, 0, 1, tzinfo=UTC),
        None,
        datetime(2024, 3, 1, 10, 0, 2, tzinfo=UTC),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("21.5", 21.5),
        ("-3", -3.0),
        ("1e3", 1000.0),
        (" 7.25 ", 7.25),
        ("true", 1.0),
        ("FALSE", 0.0),
        ("On", 1.0),
        ("off", 0.0),
        ("Active", 1.0),
        ("INACTIVE", 0.0),
        ("n/a", None),
        ("", None),
        ("0x10", None),
        (None, None),
    ],
)
def test_values_coerce_to_float(text: str | None, expected: float | None) -> None:
    assert coerce_values(pl.Series([text], dtype=pl.String)).item() == expected


def test_values_of_all_kinds_in_one_column_keep_their_rows() -> None:
    texts = ["1.5", "on", None, "x", " 2 ", "INACTIVE", "nan"]
    coerced = coerce_values(pl.Series(texts, dtype=pl.String)).to_list()
    assert coerced[:6] == [1.5, 1.0, None, None, 2.0, 0.0]
    assert coerced[6] != coerced[6]  # NaN survives here; the reject rule catches it


def test_every_sample_is_kept_filtered_or_rejected_with_a_reason() -> None:
    frame = raw(
        [
            ("s/ahu-1/sat", "2024-03-01T00:00:00Z", "55.1"),  # kept
            ("s/ahu-1/sat", "2024-03-01T00:01:00Z", "on"),  # kept (boolean word)
            ("s/ahu-1/sat", "2024-03-01T00:02:00Z", "n/a"),  # non_numeric_value
            ("s/ahu-1/sat", "2024-03-01T00:03:00Z", None),  # null_value
            ("s/ahu-1/sat", "2024-03-01T00:04:00Z", "NaN"),  # non_finite_value
            ("s/ahu-1/sat", "2024-03-01T00:05:00Z", "-inf"),  # non_finite_value
            ("s/ahu-1/sat", "yesterday", "1"),  # bad_timestamp
            (None, "2024-03-01T00:00:00Z", "1"),  # missing_point_name
            ("", "2024-03-01T00:00:00Z", "1"),  # missing_point_name
            ("s/ahu-1/sat", "2024-03-02T00:00:00Z", "1"),  # filtered: at the end (half-open)
            ("s/ahu-1/sat", "2024-02-29T23:59:59Z", "n/a"),  # filtered: outside the window beats a bad value
            ("s/vav-1/zt", "2024-03-01T00:00:00Z", "1"),  # filtered: not selected
            ("s/vav-1/zt", "garbage", "garbage"),  # filtered: not selected beats being bad
        ]
    )
    rows = normalize(frame, PointSelector.from_list(["s/ahu-1/*"]))
    assert rows.fetched == 13
    assert rows.kept.height + rows.filtered + rows.rejects.height == rows.fetched
    assert rows.kept.get_column("value").to_list() == [55.1, 1.0]
    assert rows.filtered == 4
    assert sorted(rows.rejects.get_column("reason").to_list()) == sorted(
        [
            "non_numeric_value",
            "null_value",
            "non_finite_value",
            "non_finite_value",
            "bad_timestamp",
            "missing_point_name",
            "missing_point_name",
        ]
    )


def test_kept_rows_are_typed_sorted_and_filled() -> None:
    frame = raw(
        [
            ("b", "2024-03-01T00:02:00Z", "2"),
            ("a", "2024-03-01T00:01:00Z", "1"),
            ("b", "2024-03-01T00:01:00Z", "3"),
            ("a", "2024-03-01 00:00:00", "4"),
        ]
    )
    rows = normalize(frame)
    assert rows.kept.schema == TIMESERIES_SCHEMA
    assert rows.rejects.schema == REJECTS_SCHEMA
    assert rows.kept.select("point_name", "value").rows() == [("a", 4.0), ("a", 1.0), ("b", 3.0), ("b", 2.0)]
    assert set(rows.kept.get_column("quality")) == {"unknown"}
    assert set(rows.kept.get_column("metadata")) == {"{}"}
    assert set(rows.kept.get_column("site_name")) == {"s"}
    assert set(rows.kept.get_column("collected_at")) == {COLLECTED}


def test_rejects_keep_the_raw_text() -> None:
    rows = normalize(raw([("p", "bad", "12"), ("p", "2024-03-01T00:00:00Z", "n/a")]))
    assert rows.rejects.select("point_name", "timestamp_raw", "value_raw", "reason").rows() == [
        ("p", "2024-03-01T00:00:00Z", "n/a", "non_numeric_value"),
        ("p", "bad", "12", "bad_timestamp"),
    ]


def test_empty_page() -> None:
    rows = normalize(raw([]))
    assert (rows.kept.height, rows.rejects.height, rows.filtered, rows.fetched) == (0, 0, 0, 0)
    assert rows.kept.schema == TIMESERIES_SCHEMA


def test_real_shape_page_end_to_end() -> None:
    body = json.dumps(
        {
            "point_samples": [
                {"name": "p", "time": "2024-03-01T00:00:00Z", "value": 1.5},
                {"name": "p", "time": "2024-03-01T00:01:00Z", "value": True},
                {"name": "p", "time": "2024-03-01T00:02:00Z", "value": "2.5"},
                {"name": "p", "time": "2024-03-01T00:03:00Z", "value": None},
            ],
            "next_cursor": "c1",
            "has_more": True,
        }
    ).encode()
    page = decode_timeseries_page(body)
    rows = normalize(page.samples)
    assert rows.kept.get_column("value").to_list() == [1.5, 1.0, 2.5]
    assert rows.rejects.get_column("reason").to_list() == ["null_value"]


def test_seed_shape_keeps_quality_and_metadata() -> None:
    body = json.dumps(
        {
            "data": [
                {
                    "point_name": "p",
                    "timestamp": "2024-03-01T00:00:00Z",
                    "value": 1,
                    "quality": "good",
                    "metadata": {"units": "degF"},
                },
                {"point_name": "p", "timestamp": "2024-03-01T00:01:00Z", "value": 2},
            ],
            "pagination": {"next_cursor": None, "has_more": False},
            "total_count": 2,
        }
    ).encode()
    rows = normalize(decode_timeseries_page(body).samples)
    assert rows.kept.select("value", "quality").rows() == [(1.0, "good"), (2.0, "unknown")]
    assert json.loads(rows.kept.get_column("metadata")[0]) == {"units": "degF"}
    assert rows.kept.get_column("metadata")[1] == "{}"


def test_objects_and_arrays_where_values_belong_are_rejected_not_fatal() -> None:
    body = json.dumps(
        {
            "point_samples": [
                {"name": "a", "time": "2024-03-01T00:00:00Z", "value": {"reading": 1}},
                {"name": "b", "time": "2024-03-01T00:00:00Z", "value": [1, 2]},
                {"name": "c", "time": "2024-03-01T00:00:00Z", "value": 2.5},
                7,
            ],
            "next_cursor": "next",
            "has_more": True,
        }
    ).encode()
    page = decode_timeseries_page(body)
    assert (page.next_cursor, page.has_more) == ("next", True)
    rows = normalize(page.samples)
    assert rows.kept.select("point_name", "value").rows() == [("c", 2.5)]
    assert rows.rejects.select("point_name", "value_raw", "reason").rows() == [
        ("a", '{"reading":1}', "non_numeric_value"),
        ("b", "[1,2]", "non_numeric_value"),
        (None, None, "missing_point_name"),
    ]


def field(value: object, units: str) -> dict[str, object]:
    return {"name": "x", "value": value, "time": "2024-03-01T10:00:00Z", "units": units, "source": "owm"}


def test_weather_real_shape_is_one_row_with_metadata() -> None:
    body = {
        "temp": field(51.2, "degF"),
        "humidity": field(40, "%"),
        "wind_speed": field(3.5, "mph"),
        "pressure": field(1013.2, "hPa"),
        "dew_point": field(30.1, "degF"),
    }
    frame = parse_weather(body, site="s", collected_at=COLLECTED)
    assert frame.schema == WEATHER_SCHEMA
    row = frame.row(0, named=True)
    assert row["timestamp"] == datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert (row["temperature"], row["humidity"], row["wind_speed"]) == (51.2, 40.0, 3.5)
    assert row["precipitation"] is None and row["conditions"] is None
    metadata = json.loads(row["metadata"])
    assert metadata["pressure"]["value"] == 1013.2
    assert metadata["dew_point"]["units"] == "degF"
    assert metadata["temp"]["units"] == "degF" and "value" not in metadata["temp"]


def test_weather_seed_shape_rows() -> None:
    body = {
        "data": [
            {
                "timestamp": "2024-03-01T01:00:00Z",
                "temperature": 50,
                "humidity": 40,
                "precipitation": 0,
                "wind_speed": 2,
                "conditions": "clear",
                "pressure": 1010,
            },
            {
                "timestamp": "2024-03-01T00:00:00Z",
                "temperature": 49.5,
                "humidity": None,
                "precipitation": 0.1,
                "wind_speed": 1,
                "conditions": "rain",
            },
            {"timestamp": "bad", "temperature": 1},
        ]
    }
    frame = parse_weather(body, site="s", collected_at=COLLECTED)
    assert frame.select("temperature", "humidity", "conditions").rows() == [
        (49.5, None, "rain"),
        (50.0, 40.0, "clear"),
        (1.0, None, None),
    ]
    assert frame.get_column("timestamp").null_count() == 1
    assert frame.get_column("metadata").to_list() == ["{}", '{"pressure":1010}', "{}"]


COMPACT_PAGE = (
    b'{"point_samples":[{"name":"a","time":"2024-03-01T00:00:00Z","value":true},'
    b'{"name":"b","time":"2024-03-01T00:00:00Z","value":null},'
    b'{"name":"c","time":"2024-03-01T00:00:00Z","value":"x},{\\"name\\":1"},'
    b'{"name":"d\\u00e9","time":"2024-03-01T00:00:00Z","value":1e300},'
    b'{"name":"e","time":"2024-03-01T00:00:00Z","value":-0.5E-3},'
    b'{"name":null,"time":null}],"next_cursor":"c1","has_more":true}'
)


def test_the_compact_real_shape_takes_the_fast_path_with_the_same_result() -> None:
    fast = _decode_compact_real(COMPACT_PAGE)
    assert fast is not None
    general = _decode_any(COMPACT_PAGE)
    assert fast.samples.equals(general.samples)
    assert (fast.next_cursor, fast.has_more) == (general.next_cursor, general.has_more) == ("c1", True)
    assert fast.samples.get_column("value").to_list()[2] == 'x},{"name":1'


@pytest.mark.parametrize(
    "body",
    [
        COMPACT_PAGE.replace(b"},{", b"}, {"),  # spaced: the general reader handles it
        b'{"has_more":false,"next_cursor":null,"point_samples":[{"name":"a","time":"t","value":1}]}',
        COMPACT_PAGE.replace(b'"value":null', b'"value":[{"name":1},{"name":2}]'),  # a nested value
        COMPACT_PAGE[: len(COMPACT_PAGE) // 2],  # truncated
    ],
    ids=["spaced", "reordered", "nested", "truncated"],
)
def test_other_spellings_fall_back_to_the_general_reader(body: bytes) -> None:
    assert _decode_compact_real(body) is None


def test_both_readers_agree_on_empty_and_truncated_pages() -> None:
    empty = b'{"point_samples":[],"next_cursor":null,"has_more":false}'
    assert decode_timeseries_page(empty).samples.height == 0
    with pytest.raises(InvalidBodyError):
        decode_timeseries_page(COMPACT_PAGE[:-5])


def test_a_sample_sent_twice_in_a_page_is_kept_once_the_last_one_sent() -> None:
    body = json.dumps(
        {
            "point_samples": [
                {"name": "a", "time": "2024-03-01T10:00:00Z", "value": "1"},
                {"name": "b", "time": "2024-03-01T10:00:00Z", "value": "5"},
                {"name": "a", "time": "2024-03-01T10:00:00+00:00", "value": "2"},  # the same instant again
                {"name": "a", "time": "2024-03-01T11:00:00Z", "value": "7"},
                {
                    "name": "a",
                    "time": "2024-03-01 10:00:00",
                    "value": "3",
                },  # ... and once more: this one wins
                {"name": "b", "time": "2024-03-01T10:00:00Z", "value": None},  # unusable: never displaces 5
                {"name": "c", "time": "2024-03-02T10:00:00Z", "value": "9"},  # outside the window, twice
                {"name": "c", "time": "2024-03-02T10:00:00Z", "value": "9"},
            ],
            "next_cursor": None,
            "has_more": False,
        },
        separators=(",", ":"),
    ).encode()
    rows = normalize(decode_timeseries_page(body).samples)
    assert rows.kept.select("point_name", "timestamp", "value").rows() == [
        ("a", datetime(2024, 3, 1, 10, tzinfo=UTC), 3.0),
        ("a", datetime(2024, 3, 1, 11, tzinfo=UTC), 7.0),
        ("b", datetime(2024, 3, 1, 10, tzinfo=UTC), 5.0),
    ]
    assert rows.rejects.select("point_name", "timestamp_raw", "value_raw", "reason").rows() == [
        ("a", "2024-03-01T10:00:00+00:00", "2", "duplicate_sample"),
        ("a", "2024-03-01T10:00:00Z", "1", "duplicate_sample"),
        ("b", "2024-03-01T10:00:00Z", None, "null_value"),
    ]
    assert rows.rejects.schema == REJECTS_SCHEMA
    assert (rows.fetched, rows.filtered) == (8, 2)
    assert rows.fetched == rows.kept.height + rows.filtered + rows.rejects.height


def test_a_landed_page_holds_one_row_per_key(tmp_path: Path) -> None:
    samples = [
        {"name": f"p{i % 3}", "time": f"2024-03-01T{i % 5:02d}:00:00Z", "value": str(i)} for i in range(40)
    ]
    body = json.dumps({"point_samples": samples, "next_cursor": None, "has_more": False}).encode()
    rows = normalize(decode_timeseries_page(body).samples)
    storage = LocalStorage(tmp_path)
    for path in write_page(storage, "s", WINDOW, "a1", 0, rows):
        storage.rename(staged("s", "a1", path), path)
    landed = pl.read_parquet(tmp_path / "landing/timeseries")
    assert landed.height == 15 == landed.select("point_name", "timestamp").n_unique()
    # Each key keeps the value sent last: the highest i with that (i % 3, i % 5).
    last = {(f"p{i % 3}", i % 5): float(i) for i in range(40)}
    assert {(r["point_name"], r["timestamp"].hour): r["value"] for r in landed.iter_rows(named=True)} == last
    rejects = pl.read_parquet(tmp_path / "landing/rejects")
    assert rejects.height == 25 and set(rejects["reason"]) == {"duplicate_sample"}
