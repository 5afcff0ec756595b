"""Point selection: exact names, globs (`*` crosses `/`), points files and the API's configured points."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from extract.api.points import (
    PointSelector,
    configured_points_frame,
    enabled_point_names,
    parse_points_text,
    read_points_file,
)
from extract.errors import ConfigError
from extract.lake import schemas
from extract.run.pipeline import resolve_selector

NAMES = [
    "site-a/ahu-1/sa_temp",
    "site-b/ahu-1/fan_status",
    "org/campus/site-c/ahu-1/sa_temp",
    "site-a/ahu-10/sa_temp",
    "site-a/vav-1/zone_temp",
    "site-a/ahu-1",
    "x.y+(z)",
    "xxy+(z)",
]


def selected(selector: PointSelector) -> list[str]:
    frame = pl.DataFrame({"point_name": [*NAMES, None]}, schema={"point_name": pl.String})
    by_expr = frame.filter(selector.expr()).get_column("point_name").to_list()
    assert by_expr == [name for name in NAMES if selector.matches(name)]
    return by_expr


def test_star_crosses_slashes_so_a_device_glob_matches_it_at_any_depth() -> None:
    assert selected(PointSelector.from_list(["*/ahu-1/*"])) == [
        "site-a/ahu-1/sa_temp",
        "site-b/ahu-1/fan_status",
        "org/campus/site-c/ahu-1/sa_temp",
    ]


def test_exact_names_are_literal() -> None:
    assert selected(PointSelector.from_list(["x.y+(z)", "site-a/ahu-1"])) == ["site-a/ahu-1", "x.y+(z)"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("site-a/ahu-?/sa_temp", ["site-a/ahu-1/sa_temp"]),
        ("site-[ab]/ahu-1/*", ["site-a/ahu-1/sa_temp", "site-b/ahu-1/fan_status"]),
        ("site-[!a]/*", ["site-b/ahu-1/fan_status"]),
        ("*sa_temp", ["site-a/ahu-1/sa_temp", "org/campus/site-c/ahu-1/sa_temp", "site-a/ahu-10/sa_temp"]),
        ("x.y+(*", ["x.y+(z)"]),
        ("*", NAMES),
    ],
)
def test_glob_patterns(pattern: str, expected: list[str]) -> None:
    assert selected(PointSelector.from_list([pattern])) == [n for n in NAMES if n in expected]


def test_empty_selection_keeps_nothing() -> None:
    assert selected(PointSelector.from_list([])) == []


def test_unclosed_class_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="closing"):
        PointSelector.from_list(["site-[ab"])


def test_points_file_comments_and_blanks(tmp_path: Path) -> None:
    text = "# my points\n\nsite-a/ahu-1/sa_temp\n  */vav-*/*   # every VAV\nhash#inside\n"
    assert parse_points_text(text) == ["site-a/ahu-1/sa_temp", "*/vav-*/*", "hash#inside"]
    path = tmp_path / "points.txt"
    path.write_text(text)
    assert selected(resolve_selector(path)) == ["site-a/ahu-1/sa_temp", "site-a/vav-1/zone_temp"]


def test_missing_points_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read points file"):
        resolve_selector(tmp_path / "nope.txt")


def test_given_points_that_select_nothing_are_a_config_error(tmp_path: Path) -> None:
    empty = tmp_path / "points.txt"
    empty.write_text("# nothing yet\n")
    for points in (empty, [], ["  "], ""):
        with pytest.raises(ConfigError, match="no points given"):
            resolve_selector(points)


def test_comma_separated_text() -> None:
    assert selected(resolve_selector("site-a/ahu-1/sa_temp, x.y+(z)")) == ["site-a/ahu-1/sa_temp", "x.y+(z)"]


def test_api_selection_uses_collect_enabled() -> None:
    items: list[dict[str, Any]] = [
        {"name": "site-a/ahu-1/sa_temp", "collect_enabled": True, "collect_interval": 60},
        {"name": "site-a/vav-1/zone_temp", "collect_enabled": False},
        {"name": "site-b/ahu-1/fan_status", "collect_enabled": "true"},
        {"collect_enabled": True},
    ]
    assert enabled_point_names(items) == ["site-a/ahu-1/sa_temp", "site-b/ahu-1/fan_status"]
    assert selected(resolve_selector(None, items)) == ["site-a/ahu-1/sa_temp", "site-b/ahu-1/fan_status"]


def test_fingerprint_depends_on_the_selection_only() -> None:
    assert (
        PointSelector.from_list(["a", "b*"]).fingerprint
        == PointSelector.from_list(["b*", "a", "a"]).fingerprint
    )
    assert PointSelector.from_list(["a"]).fingerprint != PointSelector.from_list(["a*"]).fingerprint


def test_configured_points_frame() -> None:
    now = datetime(2024, 3, 1, tzinfo=UTC)
    items: list[dict[str, Any]] = [
        {
            "name": "b",
            "collect_enabled": True,
            "collect_interval": "300",
            "marker_tags": ["a", " b ", "", 3],
            "site_name": "z",
            "bacnet_data": {"device_id": 12.0, "object_index": "7", "object_units": "kilowatts"},
        },
        {"name": "a", "collect_enabled": False, "collect_interval": None, "kv_tags": {"units": "kW"}},
        {"name": None},
    ]
    frame = configured_points_frame(items, site="s", collected_at=now)
    assert frame.schema == schemas.POINTS
    assert frame.select(
        "point_name", "collect_enabled", "collect_interval", "units", "marker_tags", "kv_tags", "device_id",
        "object_index",
    ).rows() == [
        ("a", False, None, "kW", "[]", '{"units": "kW"}', None, None),
        ("b", True, 300, "kilowatts", '["a", "b"]', None, "12", 7),
    ]  # fmt: skip
    # Every field stays in api_item, one that shares a name with a column too.
    assert json.loads(frame.row(1, named=True)["api_item"]) == items[0]


def test_point_metadata_as_json_text_or_unreadable_reads_the_same_or_null() -> None:
    now = datetime(2024, 3, 1, tzinfo=UTC)
    nested = {
        "name": "p",
        "id": 5,
        "marker_tags": ["zone", "temp"],
        "kv_tags": {"units": "degF"},
        "bacnet_data": {"device_name": "vav-1", "object_type": "analog-input", "object_index": 2},
        "created": "2024-01-02T03:04:05",
        "updated": "2024-01-02T03:04:05.5-05:00",
    }
    as_text = {
        key: json.dumps(value) if isinstance(value, dict | list) else value for key, value in nested.items()
    }
    odd = {
        **nested,
        "id": "x",
        "marker_tags": 7,
        "kv_tags": "{not json",
        "bacnet_data": [1],
        "created": "soon",
    }
    read = [
        configured_points_frame([item], site="s", collected_at=now).drop("api_item")
        for item in (nested, as_text, odd)
    ]
    assert read[0].equals(read[1])
    row = read[0].row(0, named=True)
    assert (row["point_id"], row["units"], row["device_name"], row["object_index"]) == (5, "degF", "vav-1", 2)
    assert row["updated"] == datetime(2024, 1, 2, 8, 4, 5, 500000, tzinfo=UTC)
    odd_row = read[2].row(0, named=True)
    assert (odd_row["point_id"], odd_row["marker_tags"], odd_row["kv_tags"], odd_row["device_name"]) == (
        None, "[]", None, None,
    )  # fmt: skip
    assert odd_row["created"] is None and odd_row["updated"] == row["updated"]


EXOTIC = ["site/zone[1]/temp", "site/ahu-1/temp ", " lead", "a*b", "what?", "site/zone[2/temp"]
LOOKALIKES = ["site/zone1/temp", "site/ahu-1/temp", "lead", "aXb", "what!", "site/zone2/temp"]


def kept(selector: PointSelector, names: list[str]) -> list[str]:
    frame = pl.DataFrame({"point_name": names}, schema={"point_name": pl.String})
    by_expr = frame.filter(selector.expr()).get_column("point_name").to_list()
    assert by_expr == [name for name in names if selector.matches(name)]
    return by_expr


def test_api_names_are_exact_whatever_they_contain() -> None:
    items = [
        *({"name": name, "collect_enabled": True} for name in EXOTIC),
        *({"name": name, "collect_enabled": False} for name in LOOKALIKES),
    ]
    selector = resolve_selector(None, items, site="site")
    assert selector == PointSelector.exact(EXOTIC)
    assert kept(selector, [*EXOTIC, *LOOKALIKES]) == EXOTIC


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ('"site/zone[1]/temp"', ["site/zone[1]/temp"]),
        ('  "site/ahu-1/temp "  ', ["site/ahu-1/temp "]),
        ('" lead"', [" lead"]),
        ('"a*b"', ["a*b"]),
        ('"what?"', ["what?"]),
        ('"site/zone[2/temp"', ["site/zone[2/temp"]),
        ("site/zone[[]1]/temp", ["site/zone[1]/temp"]),  # fnmatch's classes match a literal `[`, `*`, `?`
        ("a[*]b", ["a*b"]),
        ("what[?]", ["what?"]),
        (" lead ", ["lead"]),  # unquoted entries are stripped
    ],
)
def test_typed_entries_quoted_are_exact_and_classes_match_literals(entry: str, expected: list[str]) -> None:
    assert kept(PointSelector.from_list([entry]), [*EXOTIC, *LOOKALIKES]) == expected


@pytest.mark.parametrize("entry", ['"unclosed', '"a" "b"', '""', '"\\x"', '"a"x'])
def test_a_bad_quoted_entry_is_a_config_error_saying_how_to_quote(entry: str) -> None:
    with pytest.raises(ConfigError, match="JSON string") as error:
        PointSelector.from_list([entry])
    assert "\n" not in str(error.value)


def test_an_unclosed_class_says_how_to_match_a_literal_bracket() -> None:
    with pytest.raises(ConfigError) as error:
        PointSelector.from_list(["site/zone[2/temp"])
    assert str(error.value) == (
        "bad point pattern 'site/zone[2/temp': '[' without a closing ']'; write a literal '[' as '[[]', "
        'or quote an exact name as "site/zone[2/temp"'
    )


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"], ids=["plain", "bom"])
@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_points_files_are_utf8_with_or_without_a_bom_and_any_line_ending(
    tmp_path: Path, bom: bytes, ending: str
) -> None:
    lines = [
        "site-a/ahu-1/sa_temp",
        "# a comment",
        '"site/ahu-1/temp "   # quoted, so the trailing space is kept',
        '"a # b"',
        "caf\u00e9/\u2028temp",  # a line separator inside a name is not a line break
        "",
    ]
    path = tmp_path / "points.txt"
    path.write_bytes(bom + ending.join(lines).encode())
    entries = read_points_file(path)
    assert entries == ["site-a/ahu-1/sa_temp", '"site/ahu-1/temp "', '"a # b"', "caf\u00e9/\u2028temp"]
    assert PointSelector.from_list(entries).names == {
        "site-a/ahu-1/sa_temp",
        "site/ahu-1/temp ",
        "a # b",
        "caf\u00e9/\u2028temp",
    }


def test_a_points_file_in_another_encoding_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "points.txt"
    path.write_bytes("site-a/caf\u00e9/temp\n".encode("latin-1"))
    with pytest.raises(ConfigError) as error:
        resolve_selector(path)
    assert str(error.value) == f"points file {path} is not UTF-8 (byte 0xe9 at offset 10): save it as UTF-8"


def test_a_byte_order_mark_is_not_part_of_the_first_name(tmp_path: Path) -> None:
    path = tmp_path / "points.txt"
    path.write_bytes(b"\xef\xbb\xbfsite-a/ahu-1/sa_temp\n")
    assert selected(resolve_selector(path)) == ["site-a/ahu-1/sa_temp"]
