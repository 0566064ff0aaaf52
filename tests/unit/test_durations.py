"""Tests for fleet.durations: parse_duration / format_duration."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certfleet.fleet.durations import format_duration, parse_duration
from certfleet.fleet.errors import InputError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1w2d3h4m5s", timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
        (" 1d 12h ", timedelta(days=1, hours=12)),
        ("1 d 12 h", timedelta(days=1, hours=12)),
        ("30D", timedelta(days=30)),
        ("1D12H30M", timedelta(days=1, hours=12, minutes=30)),
        ("12h1d", timedelta(days=1, hours=12)),
        ("0s", timedelta(0)),
        ("0d", timedelta(0)),
        ("007m", timedelta(minutes=7)),
        ("999999999d", timedelta(days=999_999_999)),
    ],
)
def test_parse_duration_accepts(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty duration"),
        ("   ", "empty duration"),
        ("30", "has no unit"),
        ("1d30", "has no unit"),
        ("-5d", "negative"),
        ("- 5d", "negative"),
        ("1.5d", "fractions"),
        ("1,5d", "fractions"),
        ("5y", "unknown unit 'y'"),
        ("30days", "unknown unit 'days'"),
        ("1d1d", "given twice"),
        ("1d1D", "given twice"),
        ("d", "expected a number and a unit"),
        ("1d-2h", "expected a number and a unit"),
        ("abc", "expected a number and a unit"),
        ("+5d", "expected a number and a unit"),
        ("1000000000d", "too large"),
        ("99999999999999999999999999999999d", "too large"),
        ("9" * 5000 + "s", "too large"),
    ],
)
def test_parse_duration_refuses(text: str, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        parse_duration(text)
    message = str(info.value)
    assert fragment in message
    if text.strip() and len(text) < 100:
        assert repr(text) in message  # the text is quoted


def test_bare_number_message_lists_the_units() -> None:
    with pytest.raises(InputError) as info:
        parse_duration("30")
    message = str(info.value)
    for unit in ("w (weeks)", "d (days)", "h (hours)", "m (minutes)", "s (seconds)"):
        assert unit in message


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(days=1, hours=12), "1d12h"),
        (timedelta(days=14), "14d"),
        (timedelta(minutes=90), "1h30m"),
        (timedelta(seconds=45), "45s"),
        (timedelta(days=2, seconds=5), "2d5s"),
        (timedelta(seconds=59, microseconds=999_999), "59s"),
        (timedelta(microseconds=1), "0s"),
        (timedelta(days=-1), "-1d"),
        (timedelta(hours=-36), "-1d12h"),
        (timedelta.max, "999999999d23h59m59s"),
        (timedelta.min, "-999999999d"),
    ],
)
def test_format_duration(td: timedelta, text: str) -> None:
    assert format_duration(td) == text


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta.max))
def test_format_then_parse_round_trips(td: timedelta) -> None:
    whole = td - timedelta(microseconds=td.microseconds)
    assert parse_duration(format_duration(td)) == whole


_UNITS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}


@st.composite
def duration_texts(draw: st.DrawFn) -> tuple[str, int]:
    units = draw(st.lists(st.sampled_from(list(_UNITS)), unique=True, min_size=1))
    parts: list[str] = []
    seconds = 0
    for unit in units:
        count = draw(st.integers(min_value=0, max_value=10_000))
        seconds += count * _UNITS[unit]
        shown = draw(st.sampled_from([unit, unit.upper()]))
        space = draw(st.sampled_from(["", " "]))
        parts.append(f"{count}{space}{shown}")
    joiner = draw(st.sampled_from(["", " ", "  "]))
    return joiner.join(parts), seconds


@given(duration_texts())
def test_parse_then_format_round_trips(case: tuple[str, int]) -> None:
    text, seconds = case
    parsed = parse_duration(text)
    assert parsed == timedelta(seconds=seconds)
    assert parse_duration(format_duration(parsed)) == parsed


@given(st.text(max_size=20))
def test_parse_duration_raises_only_input_error(text: str) -> None:
    try:
        result = parse_duration(text)
    except InputError:
        return
    assert result >= timedelta(0)
