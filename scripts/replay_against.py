"""The handlers engine's speed against an older commit (issue 12: at least 2x the starting point), on the
bench's own replay stream, by the whole `replay` command as a user runs it.

    git worktree add --detach /tmp/replay-base efe497a     # the issue's starting point
    .venv/bin/python scripts/replay_against.py /tmp/replay-base --lines 5000 --runs 3

Writes the bench's stream (``local/bench_replay.write_stream``: 200 agents in 10 companies, shifts of
status changes and heartbeats), then runs ``python -m connect_metering.local.cli replay`` on it with
this checkout's code and with the other checkout's code (``PYTHONPATH`` pointing at it, this virtual
environment's libraries), interleaved, ``--runs`` times each. Prints each run's CPU seconds (user +
system of the child, from ``os.wait4``), the medians, lines per CPU second and their ratio, and fails
if the two sides' ``records.jsonl`` differ: a faster replay that bills differently is no result.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from connect_metering.domain.instants import iso_ms
from connect_metering.local.bench_replay import write_stream

HERE = Path(__file__).resolve().parent.parent


def _cpu_seconds(command: list[str], environment: dict[str, str], cwd: Path) -> float:
    with tempfile.TemporaryFile() as errors:
        child = subprocess.Popen(command, env=environment, cwd=cwd, stdout=subprocess.DEVNULL, stderr=errors)  # noqa: S603 - this interpreter on a checkout's own code
        _, status, usage = os.wait4(child.pid, 0)  # the child's own CPU time, as it exits
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            errors.seek(0)
            raise SystemExit(
                f"replay_against: {' '.join(command)} failed:\n{errors.read().decode(errors='replace')[-2000:]}"
            )
    return usage.ru_utime + usage.ru_stime


def _replay(checkout: Path, stream: Path, until: str, out: Path) -> float:
    environment = dict(os.environ, AWS_ACCOUNT_ID_ENDPOINT_MODE="disabled")
    environment["PYTHONPATH"] = f"{checkout / 'layers/core/python'}{os.pathsep}{checkout}"
    command = [
        sys.executable,
        "-m",
        "connect_metering.local.cli",
        "replay",
        "--registry",
        str(stream / "R.json"),
        "--events",
        str(stream / "E.jsonl"),
        "--until",
        until,
        "--out",
        str(out),
    ]
    # Run from the checkout: ``-m`` puts the working folder first on the path, so its ``functions``
    # (the Lambda handlers) are the ones imported.
    return _cpu_seconds(command, environment, checkout)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("base", type=Path, help="a checkout of the older commit (a git worktree)")
    parser.add_argument("--lines", type=int, default=5_000, help="lines of the bench stream (default 5,000)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each side, interleaved (default 3)")
    arguments = parser.parse_args()
    base = arguments.base.resolve()
    if not (base / "layers/core/python/connect_metering").is_dir():
        print(f"replay_against: {base}: not a checkout of this project", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="replay-against-") as work:
        folder = Path(work)
        until = iso_ms(write_stream(folder / "stream", arguments.lines))
        times: dict[str, list[float]] = {"base": [], "this": []}
        for run in range(arguments.runs):
            for side, checkout in (("base", base), ("this", HERE)):
                seconds = _replay(checkout, folder / "stream", until, folder / f"{side}-{run}")
                times[side].append(seconds)
                print(f"run {run + 1} {side}: {seconds:.2f} CPU s", flush=True)
        if not filecmp.cmp(folder / "base-0/records.jsonl", folder / "this-0/records.jsonl", shallow=False):
            print("replay_against: the two sides' records.jsonl differ", file=sys.stderr)
            return 1
        medians = {side: statistics.median(values) for side, values in times.items()}
        for side, median in medians.items():
            print(f"{side}: median {median:.2f} CPU s, {arguments.lines / median:,.0f} lines per CPU s")
        print(
            f"this / base: {medians['base'] / medians['this']:.2f}x lines per CPU s; records.jsonl identical"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
