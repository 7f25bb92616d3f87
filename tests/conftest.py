"""Test-wide settings: fake AWS credentials so nothing can reach a real account, and the fixture paths."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        # boto3 1.44 with moto 5.2: account-id based endpoints break DynamoDB Streams under moto.
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "ConnectMetering",
        "POWERTOOLS_SERVICE_NAME": "connect-metering-tests",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES = REPO_ROOT / "tests" / "fixtures" / "samples"


@contextlib.contextmanager
def environment_restored() -> Iterator[None]:
    """The local runtime sets the handlers' environment in-process (embedded AWS, replay, the CLI): code
    run inside this leaves ``os.environ`` as it found it, so no test sees another's variables."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def restored_environment() -> Iterator[None]:
    with environment_restored():
        yield
