"""`bench` runs the metering section beside the others in a second process (``--jobs 2``, the default) so
the 10,000-subscription run takes the longer of the two, not their sum; the figures are those one process
after the other gives (counts, and each process's own CPU time), in the table's order: metering, then
replay."""

from __future__ import annotations

from pathlib import Path

import pytest

from connect_metering.local.bench_run import BenchPlan, run_bench
from tests.conftest import environment_restored

pytestmark = pytest.mark.integration


def test_two_jobs_give_the_metering_figures_one_job_gives_and_the_replay_after_them(tmp_path: Path) -> None:
    beside = BenchPlan(subscriptions=6, replay_lines=10_000, replay_work=tmp_path, jobs=2, engine=False)
    alone = BenchPlan(subscriptions=6, replay_lines=0, replay_work=tmp_path, jobs=1, engine=False)
    with environment_restored():
        figures, document = run_bench(beside)
        serial_figures, serial_document = run_bench(alone)
    names = [figure.name for figure in figures]
    metering = [figure for figure in figures if figure.name.startswith("metering")]
    assert figures[: len(metering)] == metering == serial_figures
    assert all(name.startswith("replay --engine") for name in names[len(metering) :])
    assert names[-1].startswith("replay --engine handlers")
    assert document["metering"] == serial_document["metering"]
    assert document["metering"]["records"] == 6
    assert [entry["lines"] for entry in document["replay"]["core"]] == [10_000]
    assert [entry["name"] for entry in document["figures"]] == names
