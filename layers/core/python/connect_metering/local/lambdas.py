"""Loads the real Lambda handlers (``functions/<name>/handler.py``) for the local runtime, so replay,
the demo and the benchmarks drive exactly the code that is deployed."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import connect_metering

REPO_ROOT = Path(connect_metering.__file__).resolve().parents[4]


def handler_module(name: str) -> ModuleType:
    if not (REPO_ROOT / "functions" / name / "handler.py").is_file():
        raise FileNotFoundError(f"no Lambda handler functions/{name}/handler.py under {REPO_ROOT}")
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    return importlib.import_module(f"functions.{name}.handler")
