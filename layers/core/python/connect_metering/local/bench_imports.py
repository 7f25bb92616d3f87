"""Import time of a handler against the libraries it loads, each measured in a fresh interpreter: the
ratio is the cost of the project's own code at a cold start, whatever the machine's speed."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from typing import Any

from connect_metering.local.lambdas import REPO_ROOT

_IMPORT_PROBE = """
import sys, time, json
before = set(sys.modules)
start = time.perf_counter()
import {module}
elapsed = time.perf_counter() - start
own = ("connect_metering", "functions")
loaded = [name for name in sys.modules if name not in before and not name.startswith(own)]
print(json.dumps({{"seconds": elapsed, "libraries": loaded}}))
"""

_LIBRARY_PROBE = """
import sys, time, json, importlib
names = json.loads(sys.argv[1])
start = time.perf_counter()
for name in names:
    try:
        importlib.import_module(name)
    except Exception:
        pass
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def _probe(code: str, *arguments: str) -> dict[str, Any]:
    environment = {
        "POWERTOOLS_TRACE_DISABLED": "1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    completed = subprocess.run(  # noqa: S603 - our own interpreter and probe code
        [sys.executable, "-c", code, *arguments],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        env={**environment, "PATH": "/usr/bin:/bin"},
    )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def import_time_ratio(module: str, rounds: int) -> float:
    """Median import time of ``module`` over the median import time of the very libraries its import
    loads (alternating, ``rounds`` times each)."""
    module_times: list[float] = []
    library_times: list[float] = []
    for _ in range(rounds):
        measured = _probe(_IMPORT_PROBE.format(module=module))
        module_times.append(measured["seconds"])
        library_times.append(_probe(_LIBRARY_PROBE, json.dumps(measured["libraries"]))["seconds"])
    return statistics.median(module_times) / statistics.median(library_times)
