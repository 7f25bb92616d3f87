"""`connect-metering simulate`: a small run end to end (generator, replay on the real handlers, ground truth,
report), the ground-truth rules on their own, the report's escaping, and bad input."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from connect_metering.domain.instants import MS_PER_HOUR, MS_PER_MINUTE, parse_iso_ms
from connect_metering.local import report, simulate
from connect_metering.local.cli import main
from tests.conftest import environment_restored

SIZE = ["--companies", "4", "--agents", "3", "--hours", "3", "--seed", "5"]
H0 = parse_iso_ms("2026-11-02T06:00:00Z")


@dataclass
class Run:
    code: int
    out: Path
    stdout: str


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    out = tmp_path_factory.mktemp("simulate") / "out"
    stdout = io.StringIO()
    with environment_restored(), contextlib.redirect_stdout(stdout):
        code = main(["simulate", *SIZE, "--out", str(out)])
    yield Run(code, out, stdout.getvalue())


# End to end ---------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_small_simulation_matches_the_ground_truth(small_run: Run) -> None:
    assert small_run.code == 0, small_run.stdout
    assert "Billing matches the ground truth" in small_run.stdout
    for alias in ("acme", "globex", "initech", "umbrella"):
        row = next(line for line in small_run.stdout.splitlines() if line.startswith(alias))
        assert row.rstrip().endswith("yes"), row
    assert f"Report: {small_run.out / 'report.html'}" in small_run.stdout
    truth = json.loads((small_run.out / "truth.json").read_text())
    assert truth["matches"] is True
    assert truth["expected"]["quarantined_unattributed"] == 7


@pytest.mark.e2e
def test_the_run_covers_the_scenarios(small_run: Run) -> None:
    registry = json.loads((small_run.out / "R.json").read_text())
    companies = {company["alias"]: company for company in registry["companies"]}
    assert len(companies["acme"]["subscriptions"]) == 2  # the second started later
    accounts = {env["instance_arn"].split(":")[4] for env in companies["acme"]["environments"]}
    regions = {env["instance_arn"].split(":")[3] for env in companies["acme"]["environments"]}
    assert len(accounts) == 2 and len(regions) == 3
    contract = companies["globex"]["subscriptions"][0]
    assert contract["pricing"] == "contract" and contract["entitlements"]["licensed_agents"] < 3
    assert companies["initech"]["subscriptions"][0]["ended"] is not None
    assert "customer_identifier" in companies["umbrella"]["subscriptions"][0]
    records = [json.loads(line) for line in (small_run.out / "records.jsonl").read_text().splitlines()]
    assert any(r["usage_record"]["Dimension"] == "overage_agents" for r in records)
    assert any(
        r["usage_record"]["Quantity"] > 0 and r["usage_record"]["Dimension"] == "overage_agents"
        for r in records
    )
    summary = json.loads((small_run.out / "summary.json").read_text())
    assert summary["companies"]["acme"]["quarantined"] == {"account_mismatch": 3}
    assert sum(company["duplicates"] for company in summary["companies"].values()) > 0
    lines = (small_run.out / "E.jsonl").read_text().splitlines()
    assert any(not line.startswith("{") for line in lines)  # malformed lines are delivered too


@pytest.mark.e2e
def test_report_files(small_run: Run) -> None:
    png = (small_run.out / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    page = (small_run.out / "report.html").read_text()
    assert page.startswith("<!doctype html>")
    assert "data:image/png;base64," in page  # self-contained
    assert "<caption>Per company</caption>" in page
    for alias in ("acme", "globex", "initech", "umbrella"):
        assert f"<td>{alias}</td>" in page
    assert "Contract overage per hour" in page
    assert "product&#x27;s count" in page  # echoed text is escaped


@pytest.mark.e2e
def test_the_checker_reports_a_billing_difference(small_run: Run) -> None:
    """Not vacuous: one accepted minute more in one record is a mismatch, named with how much."""
    scenario = simulate.generate(4, 3, 3, 5)
    records = [json.loads(line) for line in (small_run.out / "records.jsonl").read_text().splitlines()]
    summary = json.loads((small_run.out / "summary.json").read_text())
    assert simulate.check(scenario, records, summary).matches
    tampered = copy.deepcopy(records)
    record = next(
        r
        for r in tampered
        if r["usage_record"]["Dimension"] == "agent_minutes" and r["usage_record"]["Quantity"] > 0
    )
    record["usage_record"]["Quantity"] += 1
    record["usage_record"]["UsageAllocations"][0]["AllocatedUsageQuantity"] += 1
    outcome = simulate.check(scenario, tampered, summary)
    assert not outcome.matches
    problems = [problem for company in outcome.companies for problem in company.problems]
    assert any("off by +1" in problem for problem in problems), problems


@pytest.mark.e2e
def test_progress_on_a_terminal_only(tmp_path: Path) -> None:
    stream = io.StringIO()
    progress = report.Progress(stream, interval_s=0)
    progress.phase("replaying", 200)
    progress.update(100)
    progress.done()
    assert "replaying" in stream.getvalue() and "50%" in stream.getvalue() and "200/200" in stream.getvalue()
    silent = report.Progress(None)
    silent.phase("replaying", 10)
    silent.update(5)
    silent.done()
    assert not silent.enabled


# Generator and ground truth -------------------------------------------------------------------------


@pytest.mark.unit
def test_generation_is_deterministic_by_seed() -> None:
    first, second = simulate.generate(3, 2, 2, 11), simulate.generate(3, 2, 2, 11)
    assert [line.body for line in first.lines] == [line.body for line in second.lines]
    assert first.registry() == second.registry()
    assert first.sessions == second.sessions
    other = simulate.generate(3, 2, 2, 12)
    assert [line.body for line in other.lines] != [line.body for line in first.lines]


@pytest.mark.unit
def test_sessions_are_unambiguous() -> None:
    """Heartbeats are at most 120 s apart inside a session (well under the 360 s silence timeout) and one
    agent's sessions are far apart: each generated segment is exactly one session."""
    scenario = simulate.generate(4, 3, 6, 3)
    by_agent: dict[str, list[simulate.Session]] = {}
    for session in scenario.sessions:
        by_agent.setdefault(session.agent_arn, []).append(session)
    for sessions in by_agent.values():
        sessions.sort(key=lambda s: s.start_ms)
        for before, after in itertools.pairwise(sessions):
            assert after.start_ms - before.end_ms > simulate.SEGMENT_GAP_MS
    events: dict[str, list[int]] = {}
    for line in scenario.lines:
        try:
            document = json.loads(line.body)
        except ValueError:
            continue  # a malformed line
        detail = document.get("detail") if isinstance(document, dict) else None
        if isinstance(detail, dict) and detail.get("EventType") in ("LOGIN", "STATE_CHANGE", "HEART_BEAT"):
            try:
                stamp = parse_iso_ms(str(detail["EventTimestamp"]))
            except ValueError:
                continue  # a malformed line
            events.setdefault(str(detail.get("AgentARN")), []).append(stamp)
    for session in scenario.sessions:
        inside = sorted(
            {ts for ts in events.get(session.agent_arn, []) if session.start_ms <= ts <= session.end_ms}
        )
        gaps = [b - a for a, b in itertools.pairwise(inside)]
        assert max(gaps, default=0) <= 120_000


def sub(key: str, started: int, ended: int | None = None, licensed: int | None = None) -> simulate.SubPlan:
    return simulate.SubPlan("acme", key, "usage", started, ended, licensed, {})


def session(start_min: int, end_min: int, agent: str = "a1", env: str = "prod") -> simulate.Session:
    return simulate.Session("acme", env, agent, H0 + start_min * MS_PER_MINUTE, H0 + end_min * MS_PER_MINUTE)


@pytest.mark.unit
def test_usage_follows_the_oldest_active_subscription() -> None:
    older, newer = sub("l-b", H0), sub("l-a", H0 + 60 * MS_PER_MINUTE)
    totals = simulate.attribute([session(30, 150)], [older, newer])
    assert totals == {("l-b", "prod"): 120 * MS_PER_MINUTE}


@pytest.mark.unit
def test_after_the_oldest_ends_usage_moves_to_the_next_and_ties_take_the_smaller_identity() -> None:
    first = sub("l-z", H0, ended=H0 + 60 * MS_PER_MINUTE)
    tie_b, tie_a = sub("l-b", H0 + 30 * MS_PER_MINUTE), sub("l-a", H0 + 30 * MS_PER_MINUTE)
    totals = simulate.attribute([session(0, 90)], [first, tie_b, tie_a])
    assert totals == {("l-z", "prod"): 60 * MS_PER_MINUTE, ("l-a", "prod"): 30 * MS_PER_MINUTE}


@pytest.mark.unit
def test_time_without_an_active_subscription_is_unbilled() -> None:
    late = sub("l-a", H0 + 45 * MS_PER_MINUTE, ended=H0 + 75 * MS_PER_MINUTE)
    totals = simulate.attribute([session(0, 120)], [late])
    assert totals == {(None, "prod"): 90 * MS_PER_MINUTE, ("l-a", "prod"): 30 * MS_PER_MINUTE}


@pytest.mark.unit
def test_contract_overage_counts_agents_with_time_in_the_hour() -> None:
    contract = simulate.SubPlan("acme", "l-c", "contract", H0, None, 1, {})
    sessions = [session(0, 60, "a1"), session(30, 61, "a2"), session(60, 90, "a3")]
    # hour 0: a1 and a2 (a session ending exactly at H+1h has no time in H+1h); hour 1: a2 (1 min) and a3
    overage = simulate.contract_overage(sessions, [contract], [H0, H0 + MS_PER_HOUR])
    assert overage == {H0: (2, 1, 1), H0 + MS_PER_HOUR: (2, 1, 1)}


@pytest.mark.unit
def test_metered_hours_of_active_and_ended_subscriptions() -> None:
    running = sub("l-a", H0 + 30 * MS_PER_MINUTE)
    # hour H is metered at H + 1 h + 600 s: by 09:10 hours 06, 07 and 08
    assert simulate.metered_hours(running, H0 + 3 * MS_PER_HOUR + 10 * MS_PER_MINUTE) == [
        H0,
        H0 + MS_PER_HOUR,
        H0 + 2 * MS_PER_HOUR,
    ]
    ended = sub("l-a", H0, ended=H0 + 2 * MS_PER_HOUR)  # last active instant 07:59:59.999
    assert simulate.metered_hours(ended, H0 + 9 * MS_PER_HOUR) == [H0, H0 + MS_PER_HOUR]


# Report escaping ------------------------------------------------------------------------------------


@pytest.mark.unit
def test_every_echoed_value_is_escaped() -> None:
    hostile = '<script>alert("x")</script>'
    page = report.render_html(
        title=hostile,
        verdict=hostile,
        matches=False,
        parameters=[(hostile, hostile)],
        png=b"\x89PNG",
        png_name='a"b.png',
        tables=[report.html_table([hostile], [[hostile]], caption=hostile)],
        problems=[hostile],
        files=[hostile],
    )
    assert "<script>" not in page
    assert page.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") >= 8
    assert 'href="a&quot;b.png"' in page


@pytest.mark.unit
def test_a_hostile_company_name_and_values_are_escaped_in_report_html(tmp_path: Path) -> None:
    """Through write_report and the templates into the file: a company, environment, problem or summary
    value carrying markup is shown as text, never run."""
    hostile = '<script>alert("x")</script>'
    scenario = simulate.generate(1, 2, 2, 1)
    scenario.plans = [dataclasses.replace(scenario.plans[0], alias=hostile, role=hostile)]
    hour = scenario.window_start_ms
    outcome = simulate.Outcome(
        companies=[
            simulate.CompanyResult(
                alias=hostile,
                role=hostile,
                environments=1,
                billable_ms=MS_PER_HOUR,
                unbilled_ms=0,
                billed=59,
                expected=60,
                unit="minutes",
                records_by_status={hostile: 1},
                quarantined=0,
                duplicates=0,
                events_accepted=1,
                problems=[hostile],
            )
        ],
        environments=[
            simulate.EnvironmentResult(
                company=hostile,
                name=hostile,
                region=hostile,
                account=hostile,
                truth_ms=MS_PER_HOUR,
                unbilled_ms=0,
                product_ms=None,
                minutes_accepted=59,
                minutes_expected=60,
            )
        ],
        unattributed_expected=0,
        unattributed_observed=0,
        global_problems=[hostile],
        hourly_truth={(hostile, hostile, hour): MS_PER_HOUR},
        hourly_billed={(hostile, hostile, hour): 59},
        contract_hours=[(hostile, hour, 2, 1, 1, None)],
    )
    summary = {
        "companies": {hostile: {"late": hostile, "quarantined": {hostile: 1}}},
        "quarantined_unattributed": {hostile: 2},
        "records_sent": hostile,
        "marketplace_calls": hostile,
    }
    timings = {"replay_s": 1.0, "events_per_s": 2.0}
    paths = report.write_report(tmp_path, scenario, outcome, summary, timings, lambda _: None)
    page = paths["html"].read_text(encoding="utf-8")
    assert paths["html"] == tmp_path / "report.html"
    assert "<script>" not in page
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
    # the company (per company, per environment, events, contract hours), its role, environment name,
    # region, account, record status, quarantine reasons, the problems (global and the company's own)
    # and the summary's counts
    assert page.count(escaped) >= 14
    assert f"<td>{escaped}</td>" in page
    assert f"<li>{escaped}: {escaped}</li>" in page  # a company's problem, prefixed with its name


# Bad input ------------------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--companies", "0"], "--companies"),
        (["--companies", "201"], "--companies"),
        (["--companies", "-3"], "--companies"),
        (["--companies", "many"], "--companies"),
        (["--agents", "1"], "--agents"),
        (["--agents", "2001"], "--agents"),
        (["--hours", "745"], "--hours"),  # past a month (31 days)
        (["--hours", "1.5"], "--hours"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_bad_sizes_exit_2_naming_the_argument(
    argv: list[str],
    named: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    restored_environment: None,
) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", *argv, "--out", str(out)])
    assert exit_info.value.code == 2
    assert f"argument {named}" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.e2e
def test_a_size_that_would_take_hours_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restored_environment: None
) -> None:
    out = tmp_path / "out"
    code = main(["simulate", "--companies", "200", "--agents", "2000", "--hours", "72", "--out", str(out)])
    assert code == 2
    error = capsys.readouterr().err
    assert "--companies 200 x --agents 2000 x --hours 72" in error and "limit" in error
    assert not out.exists()
    # the estimate grows with the size and the defaults are well inside the limit
    _, default_seconds = simulate.estimate(
        *(simulate.DEFAULTS[name] for name in ("companies", "agents", "hours"))
    )
    assert default_seconds < 60
    assert simulate.estimate(40, 50, 10)[1] > simulate.MAX_ESTIMATED_SECONDS


@pytest.mark.e2e
def test_an_unwritable_output_folder_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restored_environment: None
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code = main(["simulate", *SIZE, "--out", str(blocker / "out")])
    assert code == 2
    error = capsys.readouterr().err
    assert "argument --out" in error and str(blocker / "out") in error
