"""The `connect-metering` command line: the local runtime's entry point (never shipped to Lambda)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_BAD_INPUT = 2


def _offline_aws_environment() -> None:
    """The local runtime talks only to embedded AWS: fake credentials, a fixed region."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "ConnectMetering",
        # Handlers run in-process here: their EMF metrics would only clutter the terminal.
        "POWERTOOLS_METRICS_DISABLED": "true",
    }.items():
        os.environ.setdefault(name, value)
    os.environ.pop("AWS_PROFILE", None)


def _writable_dir(value: str) -> Path:
    path = Path(value)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot write to {value}: {error.strerror}") from None
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="connect-metering", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the product's end-to-end path on embedded AWS")
    demo.add_argument("--out", type=_writable_dir, default=Path("out/demo"), help="output folder")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    _offline_aws_environment()
    if arguments.command == "demo":
        from connect_metering.local.demo import run_demo

        run_demo(arguments.out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
