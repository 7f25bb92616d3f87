"""The browser walk's usage page on real numbers: `serve --registry --events` preloads a replay (the real
ingest, dispatch and meter handlers), and its administrator signs in and sees the billed minutes.

Its own module: one `serve` (one embedded AWS) at a time, and the walk's server lives for its module.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page

from connect_metering.local.serve import LocalServer
from connect_metering.local.serve_console import Preload
from tests.e2e.console.test_console_browser import first_sign_in, shot, tab
from tests.e2e.console.test_serve_console import NEW_PASSWORD, write_replay
from tests.e2e.registration.test_browser import chromium, goto, text

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.xdist_group("browser"),
    pytest.mark.filterwarnings("ignore:No application metrics"),
]
__all__ = ["chromium", "tab"]  # fixtures shared with the other browser tests


def test_the_usage_of_a_preloaded_replay(
    chromium: Browser, tab: Page, tmp_path_factory: pytest.TempPathFactory
) -> None:
    registry, events = write_replay(tmp_path_factory.mktemp("browser-replay"))
    with LocalServer(port=0, preload=Preload.read(registry, events)) as server:
        server.start()
        first_sign_in(tab, server.url, "replayco", "admin@replayco.example", NEW_PASSWORD)
        assert goto(tab, f"{server.url}/console/usage") == 200
        assert tab.locator("svg[role=img]").count() >= 1
        totals = [int(n) for n in re.findall(r"(\d+) agent-minutes", text(tab, "main"))]
        assert sum(totals) > 0
        assert "replay-prod" in text(tab, "main")
        shot(tab, "10-usage-replayed")
