"""What the issue 12 target (``replay --engine core`` at 50,000 lines per CPU second, 20 µs a line all in,
from 10,000 lines up) leaves for the product, on this interpreter and machine.

It measures, on the benchmark's own stream (``bench_replay.write_stream``), in child processes as the
benchmark does:

- the core engine's fixed cost: a replay of 10 lines (engine, botocore clients the simulator answers,
  registry, the first hours metered), which a 10,000-line run pays once;
- a floor per line that no replay of this stream can go under in CPython: read the file in 1 MiB
  chunks, split the lines, decode each with orjson, take the fields BILLING.md section 2 reads
  (envelope account, source, detail-type, time; InstanceARN, AgentARN, AWSAccountId, EventId,
  EventType, EventTimestamp, the agent status and contacts) and the two timestamps, and append the
  event to its agent-hour. Nothing is checked, deduplicated, bounded, batched, tallied or metered;
- the core engine's own cost per line at the same size.

It is an argument, not a product figure: ``connect-metering bench`` measures the product.

    .venv/bin/python scripts/replay_floor.py [--lines 100000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET_US_PER_LINE = 1e6 / 50_000

_FLOOR = r"""
import sys, time
from datetime import datetime
from pathlib import Path
import orjson

path = Path(sys.argv[1])
parse = datetime.fromisoformat
started = time.process_time()
hours = {}
lines = 0
with path.open("rb") as handle:
    pending = b""
    while chunk := handle.read(1 << 20):
        block = pending + chunk
        end = block.rfind(b"\n")
        pending = block[end + 1 :]
        for line in block[:end].split(b"\n"):
            lines += 1
            envelope = orjson.loads(line)
            event = envelope["detail"]
            snapshot = event["CurrentAgentSnapshot"]
            status = snapshot["AgentStatus"]["Name"] if snapshot else None
            contacts = len(snapshot["Contacts"]) if snapshot else 0
            sender = (envelope["account"], envelope["source"], envelope["detail-type"])
            agent = (event["InstanceARN"], event["AgentARN"], event["AWSAccountId"])
            arrival = parse(envelope["time"]).timestamp()
            moment = parse(event["EventTimestamp"]).timestamp()
            point = (event["EventId"], moment, arrival, event["EventType"], status, contacts, sender)
            key = (agent, int(moment) // 3600)
            hour = hours.get(key)
            if hour is None:
                hours[key] = [point]
            else:
                hour.append(point)
cpu = time.process_time() - started
print(cpu / lines * 1e6)
"""


def _child(code: str, *arguments: str) -> str:
    done = subprocess.run(  # noqa: S603 - this very interpreter on this repository's code
        [sys.executable, "-c", code, *arguments], capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def _replay_cpu(folder: Path, until_ms: int) -> float:
    code = (
        "import json, sys; from pathlib import Path; "
        "from connect_metering.local.bench_replay import measure_in_process; "
        "print(json.dumps(measure_in_process(Path(sys.argv[1]), int(sys.argv[2]), 'core')))"
    )
    return float(json.loads(_child(code, str(folder), str(until_ms)))["cpu_seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=100_000)
    lines = parser.parse_args().lines
    from connect_metering.local.bench_replay import write_stream

    with tempfile.TemporaryDirectory() as work:
        small, large = Path(work, "small"), Path(work, "large")
        fixed = _replay_cpu(small, write_stream(small, 10))
        until = write_stream(large, lines)
        floor = float(_child(_FLOOR, str(large / "E.jsonl")))
        engine = _replay_cpu(large, until) / lines * 1e6
    budget = TARGET_US_PER_LINE
    print(f"target: {budget:.1f} µs a line, all in")
    print(f"core engine's fixed cost (a 10-line replay): {fixed:.3f} CPU s")
    print(f"  = {fixed / 10_000 * 1e6:.1f} µs a line of a 10,000-line replay")
    print(f"floor (read, decode, take the fields, append; nothing checked or metered): {floor:.1f} µs a line")
    print(f"  leaves {budget - floor:.1f} µs a line for every rule, the batching, the tally and the metering")
    print(f"core engine at {lines:,} lines: {engine:.1f} µs a line ({1e6 / engine:,.0f} lines per CPU s)")


if __name__ == "__main__":
    main()
