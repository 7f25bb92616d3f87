"""replay_console and replay_chart on their own: the progress bar (terminal only, throttled, time left),
the chart at 35 companies (a series per company), late minutes, escaping of hostile values, and the
shared table builder."""

from __future__ import annotations

import argparse
import io
import itertools
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connect_metering.domain.instants import MS_PER_HOUR, MS_PER_MINUTE, iso_ms, parse_iso_ms
from connect_metering.local import replay_chart, replay_console, report
from connect_metering.local.replay_input import Delivery, Registry

pytestmark = pytest.mark.unit

H0 = parse_iso_ms("2026-11-02T08:00:00Z")
HOSTILE = '<script>alert("x")</script>'


def company(hourly: dict[int, tuple[int, int, int]], **extra: Any) -> dict[str, Any]:
    return {
        "name": "",
        "events_accepted": 10,
        "duplicates": 0,
        "late": 0,
        "quarantined": {},
        "records_by_status": {"accepted": len(hourly)},
        "minutes_accepted": sum(minutes for _, minutes, _ in hourly.values()),
        "overage_agent_hours_accepted": sum(overage for _, _, overage in hourly.values()),
        "environments": {
            "prod": {
                "billable_ms": sum(ms for ms, _, _ in hourly.values()),
                "unbilled_ms": 0,
                "minutes_accepted": 0,
                "records_by_status": {},
            }
        },
        "hourly": {
            iso_ms(hour): {"billable_ms": ms, "minutes_accepted": minutes, "overage_agents_accepted": overage}
            for hour, (ms, minutes, overage) in hourly.items()
        },
        **extra,
    }


def summary(companies: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "until": iso_ms(H0 + 5 * MS_PER_HOUR),
        "companies": companies,
        "quarantined_unattributed": {},
        "records_sent": 3,
        "marketplace_calls": 1,
        "unreadable_input": {"count": 0, "first": []},
    }


# Progress ----------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def deliveries(count: int, file: str, clock: FakeClock, step_s: float) -> Any:
    for number in range(count):
        clock.now += step_s
        yield Delivery(number + 1, H0 + number, "x" * 99, where=f"{file} line {number + 1}")


def test_the_progress_bar_is_throttled_and_gives_the_time_left() -> None:
    stream, clock = io.StringIO(), FakeClock()
    watch = replay_console.InputWatch(
        [("a.jsonl", 100 * 640), ("b.jsonl", 100 * 640)], H0, stream, 0.5, clock
    )
    # 1,280 items of 100 bytes over 12.8 s of the fake clock: at most one frame per 0.5 s
    items = itertools.chain(deliveries(640, "a.jsonl", clock, 0.01), deliveries(640, "b.jsonl", clock, 0.01))
    for _ in watch.follow(items):
        pass
    frames = [frame for frame in stream.getvalue().split("\r") if frame.startswith("replay:")]
    assert 10 <= len(frames) <= 26
    assert "items read" in frames[0] and "left" in frames[0]
    middle = frames[len(frames) // 2]
    assert re.search(r"\b(4\d|5\d)%", middle), middle  # half the bytes of both files
    assert stream.getvalue().endswith("\r\x1b[K")  # the bar is cleared at the end
    assert watch.lines == 1280 and watch.latest_ms == H0 + 639


def test_no_progress_when_stderr_is_not_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "E.jsonl"
    events.write_text("{}\n")
    watch = replay_console.InputWatch.for_events(events, H0)
    assert watch.stream is None  # pytest's stderr is not a terminal
    clock = FakeClock()
    for _ in watch.follow(deliveries(500, str(events), clock, 1.0)):
        pass
    assert capsys.readouterr().err == ""
    assert watch.lines == 500


def test_lines_after_until_are_counted() -> None:
    watch = replay_console.InputWatch([], H0 + 10)
    for _ in watch.follow(deliveries(20, "E.jsonl", FakeClock(), 0)):
        pass
    assert watch.latest_ms == H0 + 19 and watch.after_until == 9


# Chart -------------------------------------------------------------------------------------------------


def test_35_companies_get_a_series_each_in_their_own_colour() -> None:
    companies = {
        f"co{number:02d}": company({H0: (30 * MS_PER_MINUTE, 30, 0), H0 + MS_PER_HOUR: (0, number, 0)})
        for number in range(35)
    }
    svg = replay_chart.render_svg(summary(companies), "test")
    assert {int(n) for n in re.findall(r'id="company-(\d+)-billed"', svg)} == set(range(35))
    assert len({replay_chart.colour(index, 35) for index in range(35)}) == 35
    for number in range(35):
        assert f"co{number:02d}: " in svg  # each panel is titled with its company, as text


def test_more_companies_than_panels_keep_the_largest_and_sum_the_others() -> None:
    companies = {f"co{n:03d}": company({H0: (n * MS_PER_MINUTE, n, 0)}) for n in range(60)}
    chosen = replay_chart.panels(summary(companies))
    assert len(chosen) == replay_chart.MAX_PANELS
    assert chosen[-1].alias == "13 other companies"
    assert sum(chosen[-1].billed.values()) == sum(range(13))  # the 13 smallest


def test_late_minutes_are_those_beyond_what_happened_in_the_hour() -> None:
    series = replay_chart.CompanySeries(
        "acme",
        happened_ms={H0: 10 * MS_PER_MINUTE + 30_000, H0 + MS_PER_HOUR: 30_000, H0 + 2 * MS_PER_HOUR: 0},
        billed={H0: 0, H0 + MS_PER_HOUR: 0, H0 + 2 * MS_PER_HOUR: 11},
    )
    # 10.5 min in hour 8, 0.5 min in hour 9 (the carry makes a whole one), billed together in hour 10
    assert series.late() == {H0 + 2 * MS_PER_HOUR: 11}
    on_time = replay_chart.CompanySeries("x", happened_ms={H0: 90_000}, billed={H0: 1, H0 + MS_PER_HOUR: 0})
    assert on_time.late() == {}


def test_a_long_run_is_charted_per_few_hours() -> None:
    assert replay_chart.period_hours(H0, H0 + 10 * MS_PER_HOUR) == 1
    assert replay_chart.period_hours(H0, H0 + 30 * 24 * MS_PER_HOUR) == 8


# Escaping ----------------------------------------------------------------------------------------------


def test_a_hostile_alias_and_name_are_escaped_in_the_report_and_the_chart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Company aliases come from R.json: whatever the summary holds is shown as text, never run."""
    document = summary({HOSTILE: company({H0: (MS_PER_HOUR, 60, 2)}, name=HOSTILE, quarantined={HOSTILE: 1})})
    document["quarantined_unattributed"] = {HOSTILE: 1}
    arguments = argparse.Namespace(
        out=tmp_path, registry=Path(HOSTILE), events=Path("E.jsonl"), until=HOSTILE, faults=None
    )
    registry = Registry.model_validate({"companies": []})
    pricing = replay_console.Pricing(Decimal("0.004"), Decimal("0.3"), ("test",))
    watch = replay_console.InputWatch([], H0)
    replay_console.present(document, arguments, registry=registry, pricing=pricing, watch=watch)
    page = (tmp_path / "report.html").read_text()
    svg = (tmp_path / "report.svg").read_text()
    assert "<script>" not in page and "<script" not in svg
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
    # per company, per environment, events (alias and name), quarantine reasons, the command
    assert page.count(escaped) >= 6
    assert "&lt;script&gt;" in svg  # the panel's title, as escaped text
    assert HOSTILE in capsys.readouterr().out  # the console shows it as it is: a terminal runs nothing


# Table ---------------------------------------------------------------------------------------------------


def test_simulate_and_replay_share_the_table_builder_and_the_common_columns() -> None:
    for column in (report.COMPANY, report.ENVIRONMENTS, report.UNBILLED, report.RECORDS_BY_STATUS):
        assert column in report.SIMULATE_COLUMNS and column in replay_console.REPLAY_COLUMNS
    pricing = replay_console.Pricing(price_per_minute=Decimal("0.0045"))
    document = summary({"acme": company({H0: (MS_PER_HOUR, 1, 0)}), "globex": company({H0: (0, 0, 3)})})
    headers, rows = replay_console.company_table(document, pricing)
    assert headers[-1] == "amount"
    assert rows[0][-1] == "$0.00"  # 0.0045 rounds half-up to 0.00 (display only)
    assert rows[1][-1] == "$0.00 + overage unpriced"
    assert rows[2][0] == "total" and rows[2][-1] == "$0.00 + overage unpriced"
    assert replay_console.dollars(Decimal("0.005")) == "$0.01"
    assert replay_console.dollars(Decimal("1234.565")) == "$1,234.57"
