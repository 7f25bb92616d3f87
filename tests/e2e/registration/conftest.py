"""`connect-metering serve` in-process on a free port, shared by the tests of a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connect_metering.local.serve import LocalServer


@pytest.fixture(scope="module")
def served() -> Iterator[LocalServer]:
    with LocalServer(port=0) as server:
        server.start()
        yield server
