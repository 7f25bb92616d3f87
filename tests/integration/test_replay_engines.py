"""`replay --engine core` gives what `replay --engine handlers` gives (issue 12 section 1): the same
records.jsonl (identity, dimension, Timestamp, quantity, allocations, status, send time, in send order) and
the same summary.json, on `simulate`'s scenarios, with Marketplace faults (outages, unprocessed records,
revoked licences, worker crashes), over more days than the core engine keeps uncompressed, and through
the command line. The replay tests built on tests/replay_harness.py and test_replay_recordings.py compare
both engines on every one of their inputs too."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from connect_metering.local import simulate
from connect_metering.local.cli import main
from connect_metering.local.replay import Replay, load_faults, load_registry, read_events
from connect_metering.local.scenario import WINDOW_START, Scenario, generate
from tests.conftest import environment_restored
from tests.replay_harness import ENGINES, same_outcome

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("restored_environment")]


def write_scenario(folder: Path, scenario: Scenario, faults: dict[str, Any] | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "R.json").write_text(json.dumps(scenario.registry()))
    (folder / "E.jsonl").write_text("".join(line.body + "\n" for line in scenario.lines))
    if faults is not None:
        (folder / "F.json").write_text(json.dumps(faults))


def replay_both(folder: Path, until_ms: int) -> dict[str, dict[str, Any]]:
    faults = folder / "F.json"
    summaries = {}
    for engine in ENGINES:
        with environment_restored(), contextlib.redirect_stdout(io.StringIO()):
            summaries[engine] = Replay(
                load_registry(folder / "R.json"),
                load_faults(faults if faults.is_file() else None),
                folder / engine,
                engine,
            ).run(read_events(folder / "E.jsonl"), until_ms)
    same_outcome(folder / "handlers", folder / "core", (summaries["handlers"], summaries["core"]))
    return summaries


@pytest.mark.parametrize(("companies", "agents", "hours", "seed"), [(6, 2, 8, 3), (7, 2, 14, 11)])
def test_both_engines_bill_a_simulated_scenario_alike(
    tmp_path: Path, companies: int, agents: int, hours: int, seed: int
) -> None:
    scenario = generate(companies, agents, hours, seed)
    write_scenario(tmp_path, scenario)
    summary = replay_both(tmp_path, scenario.until_ms)["core"]
    assert summary["records_sent"] > 0
    assert summary["quarantined_unattributed"]  # and so did the forged and malformed lines


def test_both_engines_bill_alike_under_marketplace_faults(tmp_path: Path) -> None:
    scenario = generate(6, 2, 8, 5)
    start = WINDOW_START
    faults = {
        "seed": 9,
        "unprocessed_rate": 0.3,
        "crash_rate": 0.25,
        "outages": [
            {
                "start": (start + simulate_hours(3)).isoformat(),
                "end": (start + simulate_hours(5)).isoformat(),
                "error": "InternalServiceErrorException",
            }
        ],
        "revoked": [{"license_arn": first_licence(scenario), "at": (start + simulate_hours(4)).isoformat()}],
    }
    write_scenario(tmp_path, scenario, faults)
    summaries = replay_both(tmp_path, scenario.until_ms)
    statuses = {
        json.loads(line)["status"] for line in (tmp_path / "core" / "records.jsonl").read_text().splitlines()
    }
    assert "Success" in statuses and len(statuses) > 1  # the faults changed some outcomes
    assert summaries["core"]["marketplace_calls"] == summaries["handlers"]["marketplace_calls"]


def test_both_engines_bill_alike_past_the_days_the_core_engine_compresses(tmp_path: Path) -> None:
    """Eleven days: the core engine compresses the days older than max_event_age (7 days) plus two, and
    the summary reads them back."""
    scenario = generate(1, 2, 264, 4)
    write_scenario(tmp_path, scenario)
    summary = replay_both(tmp_path, scenario.until_ms)["core"]
    assert summary["companies"]
    assert sum(company["minutes_accepted"] for company in summary["companies"].values()) > 0


def test_replay_engine_core_on_the_command_line(tmp_path: Path) -> None:
    scenario = generate(3, 2, 4, 2)
    write_scenario(tmp_path, scenario)
    outs = {}
    for engine in ENGINES:
        outs[engine] = tmp_path / f"cli-{engine}"
        argv = ["replay", "--registry", str(tmp_path / "R.json"), "--events", str(tmp_path / "E.jsonl")]
        argv += ["--until", scenario_until(scenario), "--out", str(outs[engine]), "--engine", engine]
        with environment_restored(), contextlib.redirect_stdout(io.StringIO()):
            assert main(argv) == 0
    summaries = {engine: json.loads((out / "summary.json").read_text()) for engine, out in outs.items()}
    same_outcome(outs["handlers"], outs["core"], (summaries["handlers"], summaries["core"]))


def test_an_unknown_engine_is_refused_by_the_command_line(tmp_path: Path) -> None:
    argv = ["replay", "--registry", "R.json", "--events", "E.jsonl", "--until", "2026-01-01T00:00:00Z"]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as exit_code:
        main([*argv, "--out", str(tmp_path / "o"), "--engine", "moto"])
    assert exit_code.value.code == 2 and "--engine" in stderr.getvalue()
    assert not (tmp_path / "o").exists()


def test_simulate_with_the_core_engine_matches_the_ground_truth(tmp_path: Path) -> None:
    stdout = io.StringIO()
    argv = ["simulate", "--companies", "4", "--agents", "3", "--hours", "3", "--seed", "5"]
    with environment_restored(), contextlib.redirect_stdout(stdout):
        code = main([*argv, "--engine", "core", "--out", str(tmp_path / "out")])
    assert code == simulate.EXIT_MATCH, stdout.getvalue()
    assert (tmp_path / "out" / "records.jsonl").is_file()


def test_simulate_sizes_reach_a_month_of_200_agents_with_the_core_engine() -> None:
    month = simulate.LIMITS["hours"][1]
    assert month >= 31 * 24
    lines, seconds = simulate.estimate(10, 20, month, engine="core")
    assert lines > 1_000_000 and seconds <= simulate.MAX_ESTIMATED_SECONDS
    _, handlers_seconds = simulate.estimate(10, 20, month, engine="handlers")
    assert handlers_seconds > simulate.MAX_ESTIMATED_SECONDS  # refused: the handlers take hours


def simulate_hours(hours: int) -> Any:
    from datetime import timedelta

    return timedelta(hours=hours)


def first_licence(scenario: Scenario) -> str:
    for company in scenario.registry()["companies"]:
        for sub in company["subscriptions"]:
            if sub.get("license_arn"):
                return str(sub["license_arn"])
    raise AssertionError("the scenario has no licence subscription")


def scenario_until(scenario: Scenario) -> str:
    from connect_metering.domain.instants import iso_ms

    return iso_ms(scenario.until_ms)
