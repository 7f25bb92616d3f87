"""`connect-metering serve` over real HTTP on 127.0.0.1, and `connect-metering admin` against it."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

import pytest

from connect_metering.local import cli
from connect_metering.local.serve import LocalServer
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:No application metrics")]

INSTANCE = "arn:aws:connect:eu-central-1:333344445555:instance/aaaaaaaa-bbbb-cccc-dddd-000000000009"


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_: Any, **__: Any) -> None:
        return None


class Client:
    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), NoRedirects()
        )

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        data = urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read().decode()


def hidden(body: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', body)
    assert found, body[:400]
    return found.group(1)


def admin(served: LocalServer, capsys: pytest.CaptureFixture[str], *words: str) -> tuple[int, Any, str]:
    """Run the admin command; its JSON answer (the server's own log lines share stdout here)."""
    code = cli.main(["admin", "--endpoint", f"{served.url}/admin", *words])
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    if "{" in lines:  # indented JSON: from the last line that opens an object
        start = len(lines) - 1 - lines[::-1].index("{")
        return code, json.loads("\n".join(lines[start:])), captured.err
    answers = [line for line in lines if line.startswith('{"status"')]
    return code, json.loads(answers[-1]) if answers else None, captured.err


def test_serve_runs_the_flow_over_http_and_admin_manages_the_company(
    served: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    client = Client(served.url)
    status, _, index = client.request("GET", "/")
    assert status == 200 and "/dev/marketplace" in index
    status, headers, page = client.request("GET", "/dev/marketplace?pricing=contract")
    assert status == 200 and "Content-Security-Policy" in headers
    status, headers, _ = client.request(
        "POST", "/register", {"x-amzn-marketplace-token": hidden(page, "x-amzn-marketplace-token")}
    )
    assert status == 303
    status, _, form = client.request("GET", headers["Location"])
    assert status == 200
    fields = {
        "registration": hidden(form, "registration"),
        "csrf_token": hidden(form, "csrf_token"),
        "company_alias": "servedco",
        "company_name": "Served Co",
        "contact_email": "ops@served.example",
        "instance_arn": "",
    }
    assert client.request("POST", "/signup", fields)[0] == 303
    assert ">servedco<" in client.request("GET", headers["Location"])[2]

    code, added, _ = admin(served, capsys, "environments", "add", "servedco", "frankfurt", INSTANCE)
    assert code == 0 and added["environment"]["region"] == "eu-central-1"
    code, listed, _ = admin(served, capsys, "environments", "list", "servedco")
    assert code == 0 and [e["instance_arn"] for e in listed["environments"]] == [INSTANCE]
    code, licence, _ = admin(served, capsys, "license", "servedco")
    assert code == 0
    assert (licence["status"], licence["licensed_agents"], licence["active_agents"], licence["pricing"]) == (
        "active",
        10,
        0,
        "contract",
    )
    assert licence["renews_or_expires"] and licence["customer_aws_account_id"] and licence["license_arn"]
    code, decision, _ = admin(served, capsys, "seat-check", INSTANCE, f"{INSTANCE}/agent/a1")
    assert code == 0 and (decision["allowed"], decision["reason"]) == (True, "within_licence")
    code, _, error = admin(
        served, capsys, "environments", "add", "servedco", "bad", "arn:aws:connect:nowhere"
    )
    assert code == 1 and "refused (422)" in error
    code, _, error = admin(served, capsys, "license", "nobody")
    assert code == 1 and "refused (404)" in error
    code, removed, _ = admin(served, capsys, "environments", "remove", "servedco", "frankfurt")
    assert (code, removed) == (0, {"status": "removed"})


def test_admin_needs_a_reachable_endpoint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONNECT_METERING_ADMIN_URL", raising=False)
    assert cli.main(["admin", "license", "acme"]) == 2
    assert "--endpoint" in capsys.readouterr().err
    assert cli.main(["admin", "--endpoint", "ftp://example.com", "license", "acme"]) == 2
    assert cli.main(["admin", "--endpoint", "http://127.0.0.1:9/admin", "license", "acme"]) == 3
    assert "unreachable" in capsys.readouterr().err


def test_the_serve_command_listens_on_localhost_and_never_logs_the_token() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "connect_metering.local.cli", "serve", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/dev/marketplace", first)
        assert found, first
        client = Client(f"http://127.0.0.1:{found.group(1)}")
        status, _, page = client.request("GET", "/dev/marketplace")
        assert status == 200
        token = hidden(page, "x-amzn-marketplace-token")
        status, headers, _ = client.request("POST", "/register", {"x-amzn-marketplace-token": token})
        assert status == 303
        assert client.request("GET", headers["Location"])[0] == 200
        assert client.request("POST", "/register", {"x-amzn-marketplace-token": token})[0] == 409
        time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGINT)  # the process this test started
        output, errors = process.communicate(timeout=20)
    assert process.returncode == 0
    everything = first + output + errors
    assert "POST /register" in everything  # the request log is there ...
    assert token not in everything  # ... and the token is not
    assert headers["Location"].split("=", 1)[1] not in everything  # nor the registration id


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a test worker, nohup or a supervisor may leave it


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_on_ctrl_c_or_sigterm_even_when_started_with_interrupts_ignored(stop: int) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "connect_metering.local.cli", "serve", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=_ignore_interrupts,
    )
    try:
        assert process.stdout is not None
        assert "/dev/marketplace" in process.stdout.readline()
        assert "Ctrl-C stops" in process.stdout.readline()
    finally:
        process.send_signal(stop)  # the process this test started
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "stopped" in output
