"""`serve` with the console: the mailbox, and `--registry/--events` preloading a replay whose billed
minutes the usage page shows (through `LocalServer.handle`, as the HTTP server calls it)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest

from connect_metering.domain.instants import iso
from connect_metering.local.serve import LocalServer, run
from connect_metering.local.serve_console import Preload
from connect_metering.local.traffic import billing_agent_event

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:No application metrics")]

INSTANCE = "arn:aws:connect:us-east-1:333344445555:instance/cccccccc-0000-0000-0000-000000000001"
NEW_PASSWORD = "Replay-Passw0rd!"


def write_replay(folder: Path, *, agents: int = 3, minutes: int = 90) -> tuple[Path, Path]:
    """A registry of one pay-as-you-go company and its agents' shift some hours ago, as replay reads them."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
    registry = {
        "companies": [
            {
                "alias": "replayco",
                "name": "Replay Co",
                "subscriptions": [
                    {
                        "customer_aws_account_id": "333344445555",
                        "license_arn": "arn:aws:license-manager::123456789012:license:l-0123456789abcdef0123456789abcdef",
                        "pricing": "usage",
                        "started": iso(start - timedelta(days=1)),
                        "ended": None,
                    }
                ],
                "environments": [{"name": "replay-prod", "instance_arn": INSTANCE}],
            }
        ]
    }
    lines = []
    for agent in range(agents):
        login = start + timedelta(minutes=5)
        kinds = [("LOGIN", login)] + [
            ("HEART_BEAT", login + timedelta(minutes=m)) for m in range(2, minutes, 2)
        ]
        kinds.append(("LOGOUT", login + timedelta(minutes=minutes)))
        for number, (kind, at) in enumerate(kinds):
            status = "Offline" if kind == "LOGOUT" else "Available"
            lines.append(
                billing_agent_event(
                    instance_arn=INSTANCE,
                    agent_id=f"agent-{agent}",
                    event_id=f"e-{agent}-{number}",
                    event_type=kind,
                    at=at,
                    status=status,
                )
            )
    lines.sort(key=lambda line: str(line["EventTimestamp"]))
    registry_path, events_path = folder / "registry.json", folder / "events.jsonl"
    registry_path.write_text(json.dumps(registry))
    events_path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return registry_path, events_path


class Client:
    """A cookie-keeping client of `LocalServer.handle`."""

    def __init__(self, server: LocalServer) -> None:
        self.server = server
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, target: str, form: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = urlencode(form).encode() if form is not None else b""
        response = self.server.handle(method, target, headers, body)
        for name, value in response.headers:
            if name == "Set-Cookie":
                key, _, rest = value.partition("=")
                self.cookies[key] = rest.split(";", 1)[0]
        return response.status, dict(response.headers), response.body.decode()

    def sign_in(self, alias: str, email: str, password: str, new_password: str = "") -> int:
        _, _, page = self.request("GET", "/console/")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token
        form = {"company_alias": alias, "email": email, "password": password, "csrf_token": token.group(1)}
        if new_password:
            form["new_password"] = new_password
        status, _, _ = self.request("POST", "/console/", form)
        return status


@pytest.fixture(scope="module")
def preloaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    registry, events = write_replay(tmp_path_factory.mktemp("replay"))
    with LocalServer(port=0, preload=Preload.read(registry, events)) as server:
        yield server


def test_a_preloaded_replay_shows_its_billed_minutes_on_the_usage_page(preloaded: LocalServer) -> None:
    email = "admin@replayco.example"
    status, _, mailbox = Client(preloaded).request("GET", "/dev/mailbox")
    assert status == 200
    assert email in mailbox
    temporary = preloaded.mailbox.temporary_password(email)
    client = Client(preloaded)
    assert client.sign_in("replayco", email, temporary, NEW_PASSWORD) == 303
    status, _, usage = client.request("GET", "/console/usage")
    assert status == 200
    totals = [int(n) for n in re.findall(r"<li>(\d+) agent-minutes</li>", usage)]
    # Three agents, 90 minutes each: what the meter billed (BILLING.md decides the exact minutes).
    assert sum(totals) >= 3 * 85, usage
    assert "replay-prod" in usage
    status, headers, csv_text = client.request("GET", "/console/usage.csv")
    assert status == 200
    assert headers["Content-Type"].startswith("text/csv")
    assert ",replay-prod,agent_minutes," in csv_text


def test_serve_refuses_events_without_a_registry(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import argparse

    from connect_metering.local.serve import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["--events", str(tmp_path / "e.jsonl")])) == 2
    assert "--events needs --registry" in capsys.readouterr().err
    assert run(parser.parse_args(["--registry", str(tmp_path / "missing.json")])) == 2
