"""Maintenance windows: parsing, validation, per-device clocks, midnight crossing."""

from __future__ import annotations

import datetime as dt

import pytest

from certfleet.fleet.errors import InputError
from certfleet.fleet.windows import next_opening, open_now, parse_window

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_window_in_its_zone_and_in_the_devices() -> None:
    w = parse_window("Sat 01:00-05:00 Europe/Oslo")
    # 2026-11-28 is a Saturday; Oslo is UTC+1 in winter
    assert w.contains(at("2026-11-28T00:30:00"))          # 01:30 in Oslo
    assert not w.contains(at("2026-11-28T04:30:00"))      # 05:30 in Oslo
    # a device in New York is judged on its own clock: 01:30 there is 06:30 UTC
    assert w.contains(at("2026-11-28T06:30:00"), "America/New_York")
    assert not w.contains(at("2026-11-28T00:30:00"), "America/New_York")


def test_midnight_crossing_and_day_lists() -> None:
    w = parse_window("Fri,Sat 23:00-02:00 UTC")
    assert w.contains(at("2026-11-27T23:30:00"))   # Friday night
    assert w.contains(at("2026-11-28T01:00:00"))   # early Saturday, Friday's window
    assert w.contains(at("2026-11-29T01:00:00"))   # early Sunday, Saturday's window
    assert not w.contains(at("2026-11-30T01:00:00"))  # early Monday: Sunday has none
    weekdays = parse_window("Mon-Fri 09:00-10:00")
    assert weekdays.contains(at("2026-11-30T09:15:00"))
    assert not weekdays.contains(at("2026-11-29T09:15:00"))
    assert parse_window("daily 00:00-24:00").contains(at("2026-11-29T12:00:00"))


@pytest.mark.parametrize("text", ["Sat 05:00-05:00 UTC", "Sat 25:00-26:00", "Caturday 01:00-02:00",
                                  "Sat 01:00-02:00 Mars/Olympus", "Sat", "01:00-02:00 Sat"])
def test_impossible_windows_are_input_errors(text: str) -> None:
    with pytest.raises(InputError):
        parse_window(text)


def test_next_opening() -> None:
    windows = [parse_window("Sat 01:00-05:00 UTC")]
    now = at("2026-11-28T06:00:00")
    assert not open_now(windows, now, None)
    assert next_opening(windows, now, None) == at("2026-12-05T01:00:00")
