"""What `connect-metering replay` says (README.md, section Replay, Output): the per-company table, prices
in dollars, the warnings (stderr and the report's banner), report.html and report.svg, and the progress
bar (on a terminal only)."""

from __future__ import annotations

import contextlib
import io
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connect_metering.local import cli
from tests.conftest import environment_restored
from tests.replay_harness import LICENSE, envelope, instance, session, usage_company

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("restored_environment")]

D = datetime(2026, 11, 2, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script>'


def at(hour: int, minute: int = 0) -> datetime:
    return D + timedelta(hours=hour, minutes=minute)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Run:
    code: int
    out: Path
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.out / "summary.json").read_text())
        return loaded

    @property
    def page(self) -> str:
        return (self.out / "report.html").read_text(encoding="utf-8")


def replay(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    registry: dict[str, Any],
    events: list[dict[str, Any]],
    until: datetime,
    *extra: str,
) -> Run:
    (tmp_path / "R.json").write_text(json.dumps(registry))
    (tmp_path / "E.jsonl").write_text("".join(json.dumps(event) + "\n" for event in events))
    out = tmp_path / "out"
    argv = ["replay", "--registry", str(tmp_path / "R.json"), "--events", str(tmp_path / "E.jsonl")]
    code = cli.main([*argv, "--until", iso(until), "--out", str(out), *extra])
    captured = capsys.readouterr()
    return Run(code, out, captured.out, captured.err)


def contract_company(alias: str, licensed: int) -> dict[str, Any]:
    company = usage_company(alias, environments=[("prod", instance(2, account="444455556666"))])
    company["subscriptions"][0].update(
        customer_aws_account_id="444455556666", pricing="contract", entitlements={"licensed_agents": licensed}
    )
    return company


@pytest.fixture(scope="module")
def priced(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """acme (usage) 40 min in hour 8 and globex (contract, 1 licensed) 2 agents in hour 8: 1 overage
    agent-hour; priced from R.json, the overage price overridden by its flag."""
    tmp_path = tmp_path_factory.mktemp("priced")
    acme = usage_company("acme")
    acme["name"] = HOSTILE
    registry = {
        "companies": [acme, contract_company("globex", 1)],
        "pricing": {"price_per_minute": "0.004", "price_per_overage_agent_hour": "99"},
    }
    events = [
        *session(instance(), "a1", at(8, 0), at(8, 40)),
        *session(instance(2, account="444455556666"), "g1", at(8, 0), at(8, 20)),
        *session(instance(2, account="444455556666"), "g2", at(8, 0), at(8, 20)),
    ]
    # A module fixture cannot take capsys: the output is captured by hand.
    stdout, stderr = io.StringIO(), io.StringIO()
    (tmp_path / "R.json").write_text(json.dumps(registry))
    (tmp_path / "E.jsonl").write_text("".join(json.dumps(event) + "\n" for event in events))
    with environment_restored(), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli.main(
            [
                "replay",
                "--registry",
                str(tmp_path / "R.json"),
                "--events",
                str(tmp_path / "E.jsonl"),
                "--until",
                iso(at(9, 10)),
                "--out",
                str(tmp_path / "out"),
                "--price-per-overage-agent-hour",
                "0.30",
            ]
        )
    return Run(code, tmp_path / "out", stdout.getvalue(), stderr.getvalue())


def row(table: str, first: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(first + " "))
    return re.split(r"\s{2,}", line.strip())


def test_the_table_shows_each_company_and_the_totals_in_dollars(priced: Run) -> None:
    assert priced.code == 0, priced.stderr
    header = re.split(
        r"\s{2,}", next(line for line in priced.stdout.splitlines() if line.startswith("company"))
    )
    assert header == [
        "company",
        "envs",
        "billable time",
        "unbilled",
        "minutes billed",
        "overage agent-h",
        "records by status",
        "quarantined by reason",
        "amount",
    ]
    assert row(priced.stdout, "acme") == [
        "acme",
        "1",
        "0:40:00",
        "0:00:00",
        "40",
        "0",
        "accepted 1",
        "-",
        "$0.16",
    ]
    assert row(priced.stdout, "globex") == [
        "globex",
        "1",
        "0:40:00",
        "0:00:00",
        "0",
        "1",
        "accepted 1",
        "-",
        "$0.30",
    ]
    assert row(priced.stdout, "total")[-1] == "$0.46"
    assert (
        "--price-per-overage-agent-hour" in priced.stdout
        and "R.json pricing.price_per_minute" in priced.stdout
    )
    assert priced.stderr == ""  # no warning, and no progress bar: stderr is not a terminal


def test_prices_and_exact_amounts_are_in_the_summary(priced: Run) -> None:
    pricing = priced.summary["pricing"]
    assert pricing["price_per_minute"] == "0.004"
    assert pricing["price_per_overage_agent_hour"] == "0.30"  # the flag wins over R.json's 99
    assert Decimal(pricing["amounts"]["acme"]) == Decimal("0.16")
    assert Decimal(pricing["total"]) == Decimal("0.46")
    assert priced.summary["warnings"] == []
    assert priced.summary["companies"]["globex"]["overage_agent_hours_accepted"] == 1


def test_the_report_shows_the_table_and_escapes_the_company_name(priced: Run) -> None:
    page = priced.page
    assert page.startswith("<!doctype html>")
    assert "data:image/svg+xml;base64," in page
    assert "<td>acme</td>" in page and "<td>$0.16</td>" in page and "<td>$0.46</td>" in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page  # the name, in the events table
    assert 'class="warning"' not in page
    svg = (priced.out / "report.svg").read_text()
    assert svg.startswith("<?xml") and "<script" not in svg
    assert 'id="company-1-overage"' in svg  # globex's contract overage is charted


def test_a_price_without_its_flag_or_pricing_shows_no_amount(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = replay(tmp_path, capsys, {"companies": [usage_company()]}, [], at(9, 10))
    assert run.code == 0, run.stderr
    assert "amount" not in run.stdout.splitlines()[2]
    assert "pricing" not in run.summary


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        (
            "--price-per-minute",
            "-0.01",
            "argument --price-per-minute: a price must be a finite number of dollars",
        ),
        (
            "--price-per-minute",
            "0,004",
            "argument --price-per-minute: expected a price in dollars such as 0.004",
        ),
        ("--price-per-overage-agent-hour", "nan", "argument --price-per-overage-agent-hour: a price must be"),
        (
            "--price-per-overage-agent-hour",
            "Infinity",
            "argument --price-per-overage-agent-hour: a price must be",
        ),
    ],
)
def test_a_bad_price_flag_is_one_line_exit_2_before_the_output_exists(
    flag: str, value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = replay(tmp_path, capsys, {"companies": [usage_company()]}, [], at(9, 10), flag, value)
    assert run.code == 2
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert run.stderr.startswith(f"replay: {message}")
    assert not run.out.exists()


@pytest.mark.parametrize(
    ("pricing", "message"),
    [
        ({"price_per_minute": -1}, "pricing.price_per_minute: a price must be a finite number"),
        ({"price_per_minute": True}, "pricing.price_per_minute: expected a price in dollars"),
        ({"price_per_agent": "1"}, "pricing.price_per_agent: unknown price"),
    ],
)
def test_a_bad_price_in_the_registry_names_the_field(
    pricing: dict[str, Any], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = replay(tmp_path, capsys, {"companies": [usage_company()], "pricing": pricing}, [], at(9, 10))
    assert run.code == 2
    assert len(run.stderr.strip().splitlines()) == 1
    assert run.stderr.startswith(f"replay: {tmp_path / 'R.json'}: {message}")
    assert not run.out.exists()


# Warnings ---------------------------------------------------------------------------------------------


def test_most_lines_quarantined_is_a_loud_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The registry names another instance: every line is quarantined (no company)."""
    events = session(instance(7), "a1", at(8, 0), at(8, 30))
    run = replay(tmp_path, capsys, {"companies": [usage_company()]}, events, at(9, 10))
    assert run.code == 0
    warning = next(line for line in run.stderr.splitlines() if "WARNING" in line)
    assert warning.startswith(
        f"replay: WARNING: most agent-event lines were quarantined: {len(events)} of {len(events)}"
    )
    assert (
        'class="warning" role="alert"' in run.page and "most agent-event lines were quarantined" in run.page
    )
    assert run.summary["warnings"] == [warning.removeprefix("replay: WARNING: ")]


def test_until_before_the_last_event_is_a_loud_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = [
        *session(instance(), "a1", at(8, 0), at(8, 30)),
        *session(instance(), "a1", at(10, 0), at(10, 20)),
    ]
    run = replay(tmp_path, capsys, {"companies": [usage_company()]}, events, at(9, 10))
    assert run.code == 0
    later = len(session(instance(), "a1", at(10, 0), at(10, 20)))
    assert (
        f"replay: WARNING: --until 2026-11-02T09:10:00.000Z is before the last event (2026-11-02T10:20:00.000Z): "
        f"{later} item(s) dated after it are not billed; --until 2026-11-02T11:10:00.000Z meters the last "
        "event's hour"
    ) in run.stderr.splitlines()
    assert "is before the last event" in run.page


def test_a_subscription_ending_before_it_starts_is_a_loud_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    company = usage_company()
    company["subscriptions"][0]["ended"] = "2026-11-02T07:00:00Z"  # started 08:00
    run = replay(tmp_path, capsys, {"companies": [company]}, [], at(9, 10))
    assert run.code == 0
    expected = (
        f"R.json companies.0.subscriptions.0 (acme, {LICENSE.format('acme1')}) ends at 2026-11-02T07:00:00+00:00 "
        "before it starts at 2026-11-02T08:00:00+00:00: it is never active and bills nothing"
    )
    assert f"replay: WARNING: {expected}" in run.stderr.splitlines()
    assert run.summary["warnings"] == [expected]
    assert "ends at 2026-11-02T07:00:00+00:00 before it starts" in run.page


# Late minutes ------------------------------------------------------------------------------------------


def test_late_minutes_are_charted_as_late_in_the_hour_that_bills_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """10 minutes of hour 8 arrive at 10:30: billed in hour 10's record, drawn hatched there as late."""
    late = [envelope(event, arrived=at(10, 30)) for event in session(instance(), "a1", at(8, 0), at(8, 10))]
    run = replay(tmp_path, capsys, {"companies": [usage_company()]}, late, at(11, 10))
    assert run.code == 0, run.stderr
    hourly = run.summary["companies"]["acme"]["hourly"]
    assert hourly["2026-11-02T08:00:00.000Z"] == {
        "billable_ms": 600_000,
        "minutes_accepted": 0,
        "overage_agents_accepted": 0,
    }
    assert hourly["2026-11-02T10:00:00.000Z"]["minutes_accepted"] == 10
    svg = (run.out / "report.svg").read_text()
    assert 'id="company-0-late"' in svg
    assert "late: happened in an earlier hour, billed in hour H" in svg
