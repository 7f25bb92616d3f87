"""The repository stands alone and its billing rules document stays true: every test it cites exists,
and nothing refers to material outside the repository."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.unit

CITATION = re.compile(r"`(tests/[\w/.]+\.py)(?:::(\w+))?`")


def test_every_test_cited_by_the_billing_rules_exists() -> None:
    text = (REPO_ROOT / "docs" / "billing.md").read_text()
    citations = CITATION.findall(text)
    assert len(citations) > 40
    missing = []
    for path, name in citations:
        source = REPO_ROOT / path
        if not source.is_file() or (name and re.search(rf"^def {name}\(", source.read_text(), re.M) is None):
            missing.append(f"{path}::{name}" if name else path)
    assert missing == []


SOURCE_SUFFIXES = {".py", ".md", ".toml", ".json", ".yaml", ".yml", ".txt", ".html", ".cfg", ""}
GENERATED = {".git", ".venv", "node_modules", "cdk.out", "build", "out", "test-artifacts", "__pycache__"}


def _sources() -> list[Path]:
    """The repository's own files: generated and installed folders pruned."""
    found: list[Path] = []
    for folder, subfolders, files in os.walk(REPO_ROOT):
        subfolders[:] = [
            name
            for name in subfolders
            if name not in GENERATED
            and not name.startswith(".venv")
            and not name.endswith(".egg-info")
            and not name.endswith("_cache")
        ]
        found += [Path(folder) / name for name in files if Path(name).suffix in SOURCE_SUFFIXES]
    return found


def test_nothing_in_the_repository_refers_to_files_beside_it() -> None:
    outside = re.compile(r"\.\./shared\b")
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for path in _sources()
        if path.name != "test_docs.py" and outside.search(path.read_text(errors="replace"))
    ]
    assert offenders == []
