"""Bad input to `connect-metering`: one line on stderr naming the file, line, field or argument, exit 2,
never a traceback; nothing is created or half-written (README.md, sections Replay, serve, admin, Cost)."""

from __future__ import annotations

import html
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from connect_metering.local import cli
from connect_metering.local.serve import LocalServer
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("restored_environment")]


RECORDINGS = REPO_ROOT / "tests" / "fixtures" / "aws" / "recordings"
INSTANCE = "arn:aws:connect:us-west-2:012345678901:instance/aaaaaaaa-bbbb-cccc-dddd-111111111111"
LICENCE = "arn:aws:license-manager::123456789012:license:l-0123456789abcdef0"
UNTIL = "2019-08-13T12:00:00Z"


def registry(**subscription: Any) -> dict[str, Any]:
    fields = {
        "customer_aws_account_id": "012345678901",
        "license_arn": LICENCE,
        "pricing": "usage",
        "started": "2019-08-13T00:00:00Z",
        **subscription,
    }
    return {
        "companies": [
            {
                "alias": "acme",
                "subscriptions": [{name: value for name, value in fields.items() if value is not None}],
                "environments": [{"name": "west", "instance_arn": INSTANCE}],
            }
        ]
    }


def one_line(error: str) -> str:
    assert "Traceback" not in error
    lines = error.strip().splitlines()
    assert len(lines) == 1, error
    return lines[0]


def replay_argv(tmp_path: Path, document: dict[str, Any], *extra: str) -> list[str]:
    path = tmp_path / "R.json"
    path.write_text(json.dumps(document))
    return [
        "replay",
        "--registry",
        str(path),
        "--events",
        str(RECORDINGS / "agent-events.jsonl"),
        "--until",
        UNTIL,
        "--out",
        str(tmp_path / "out"),
        *extra,
    ]


@pytest.mark.parametrize(
    ("subscription", "named"),
    [
        ({"license_arn": "arn:aws:license-manager::123456789012:licence-l-1"}, "license_arn"),
        ({"customer_aws_account_id": "12345"}, "customer_aws_account_id"),
        ({"customer_aws_account_id": None, "license_arn": None}, "customer_identifier"),
    ],
    ids=["malformed-licence-arn", "malformed-account-id", "no-identity"],
)
def test_a_malformed_registry_subscription_is_refused_before_the_output_exists(
    subscription: dict[str, Any], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(replay_argv(tmp_path, registry(**subscription))) == 2
    line = one_line(capsys.readouterr().err)
    assert f"{tmp_path / 'R.json'}: companies.0.subscriptions.0.{named}" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("faults", "named"),
    [
        ({"outages": [{"start": UNTIL, "end": UNTIL, "error": "GremlinException"}]}, "outages.0.error"),
        ({"gremlins": 1}, "gremlins"),
    ],
    ids=["unknown-outage-error", "unknown-fault"],
)
def test_an_unknown_fault_name_is_refused(
    faults: dict[str, Any], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "F.json"
    path.write_text(json.dumps(faults))
    assert cli.main(replay_argv(tmp_path, registry(), "--faults", str(path))) == 2
    assert f"{path}: {named}:" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_a_missing_events_file_is_refused_before_the_output_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = replay_argv(tmp_path, registry())
    argv[argv.index("--events") + 1] = str(tmp_path / "absent.jsonl")
    assert cli.main(argv) == 2
    assert f"{tmp_path / 'absent.jsonl'}: no such events file" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_an_output_that_cannot_be_written_leaves_the_previous_outputs_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "records.jsonl").write_text("previous run\n")
    (out / "report.html").write_text("previous report")
    (out / "summary.json").mkdir()  # in the way of the new summary
    assert cli.main(replay_argv(tmp_path, registry())) == 2
    assert f"{out / 'summary.json'}: cannot write the output: it is a folder" in one_line(
        capsys.readouterr().err
    )
    assert (out / "records.jsonl").read_text() == "previous run\n"  # no new records beside the old report
    assert (out / "report.html").exists()
    assert [path.name for path in out.iterdir() if path.name.endswith(".tmp")] == []


def test_a_new_set_of_outputs_replaces_the_previous_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("previous report")
    (out / "truth.json").write_text("a simulation's ground truth")
    assert cli.main(replay_argv(tmp_path, registry())) == 0
    # replay writes its own report now: the previous one is replaced, and what it does not write is removed
    assert (out / "report.html").read_text() != "previous report"
    assert "<td>acme</td>" in (out / "report.html").read_text()
    assert not (out / "truth.json").exists()
    assert json.loads((out / "summary.json").read_text())["companies"]["acme"]["minutes_accepted"] == 30


def serve(*arguments: str) -> subprocess.CompletedProcess[str]:
    """`serve` in its own process: were it to start, the timeout ends the test instead of hanging it."""
    return subprocess.run(  # noqa: S603 (this interpreter, fixed arguments)
        [sys.executable, "-m", "connect_metering.local.cli", "serve", *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_serve_refuses_a_port_out_of_range(port: str) -> None:
    result = serve("--port", port)
    assert result.returncode == 2
    assert f"argument --port: {port} is not a port" in one_line(result.stderr)


def test_serve_refuses_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve("--port", str(port))
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in one_line(result.stderr)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("colour=blue", "unknown parameter 'colour'"),
        ("pricing=gold", "pricing='gold'"),
        ("token=stolen", "token='stolen'"),
        ("account=12345", "account='12345'"),
        ("pricing=usage&pricing=contract", "'pricing' is given 2 times"),
    ],
)
def test_the_marketplace_stand_in_refuses_unknown_parameters(query: str, named: str) -> None:
    with LocalServer(port=0) as server:
        response = server.handle("GET", f"/dev/marketplace?{query}", {}, b"")
        assert server._buyers == 0  # nobody subscribed
    assert response.status == 400
    assert named in html.unescape(response.body.decode())


def test_admin_refuses_an_unknown_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    config.write_text("[profile known]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    argv = ["admin", "--endpoint", "http://127.0.0.1:9/admin", "--profile", "nobody", "license", "acme"]
    assert cli.main(argv) == 2
    assert "argument --profile: no AWS profile named 'nobody'" in one_line(capsys.readouterr().err)


def test_cost_refuses_a_bench_file_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    absent = tmp_path / "bench.json"
    assert cli.main(["cost", "--agents", "100", "--bench", str(absent)]) == 2
    captured = capsys.readouterr()
    assert f"argument --bench: {absent}: no such bench figures file" in one_line(captured.err)
    assert captured.out == ""  # nothing measured, nothing printed
