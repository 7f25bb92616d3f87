"""`bench`'s replay section: the sizes it measures, the stream it writes (arrival order, every line an
event of the registry's instances), a replay of it measured with the core engine, and a bad size refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connect_metering.domain.instants import parse_iso_ms
from connect_metering.local import bench_replay
from connect_metering.local.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("restored_environment")]


def test_the_sizes_go_by_tens_up_to_the_largest_asked() -> None:
    assert bench_replay.replay_sizes(1_000_000) == [10_000, 100_000, 1_000_000]
    assert bench_replay.replay_sizes(10_000_000) == [10_000, 100_000, 1_000_000, 10_000_000]
    assert bench_replay.replay_sizes(250_000) == [10_000, 100_000, 250_000]


def test_the_stream_is_in_arrival_order_and_replays_with_the_core_engine(tmp_path: Path) -> None:
    until_ms = bench_replay.write_stream(tmp_path, 600)
    lines = (tmp_path / "E.jsonl").read_text().splitlines()
    assert len(lines) == 600
    arrivals = [parse_iso_ms(json.loads(line)["time"]) for line in lines]
    assert arrivals == sorted(arrivals) and until_ms > arrivals[-1]
    instances = {
        env["instance_arn"]
        for company in bench_replay.registry()["companies"]
        for env in company["environments"]
    }
    assert {json.loads(line)["detail"]["InstanceARN"] for line in lines} <= instances
    measured = bench_replay.measure_in_process(tmp_path, until_ms, "core")
    assert measured["cpu_seconds"] > 0 and measured["peak_rss_mb"] > 0
    summary = json.loads((tmp_path / "core" / "summary.json").read_text())
    assert sum(company["events_accepted"] for company in summary["companies"].values()) == 600


def test_a_replay_size_out_of_bounds_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--replay-only", "--replay-lines", "5", "--out", str(tmp_path / "b.json")])
    assert code == 2
    assert "--replay-lines" in capsys.readouterr().err
