"""The `connect-metering` command line: the local runtime's entry point (never shipped to Lambda)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

EXIT_BAD_INPUT = 2


def _offline_aws_environment() -> None:
    """The local runtime talks only to embedded AWS: fake credentials, a fixed region."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "POWERTOOLS_TRACE_DISABLED": "1",
        # The handlers run in-process: their logs would drown the command's own output.
        "POWERTOOLS_LOG_LEVEL": "ERROR",
        "POWERTOOLS_METRICS_NAMESPACE": "ConnectMetering",
        # Handlers run in-process here: their EMF metrics would only clutter the terminal.
        "POWERTOOLS_METRICS_DISABLED": "true",
    }.items():
        os.environ.setdefault(name, value)
    os.environ.pop("AWS_PROFILE", None)


def writable_dir(value: str) -> Path:
    path = Path(value)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot write to {value}: {error.strerror}") from None
    return path


# Each command lives in its own module with `add_arguments(parser)` and `run(arguments) -> int`, so
# commands are imported only when used (the CLI starts fast) and can be developed apart.
COMMANDS = {
    "bench": ("connect_metering.local.bench", "measure every performance figure (table + JSON)"),
    "serve": ("connect_metering.local.serve", "run the registration and admin endpoints on 127.0.0.1"),
    "admin": ("connect_metering.local.admin", "environments and licence information of a company"),
    "replay": ("connect_metering.local.replay", "replay agent events through the real handlers"),
    "simulate": ("connect_metering.local.simulate", "generate traffic with its ground truth and replay it"),
    "cost": ("connect_metering.local.cost", "the AWS cost of running the metering for a load"),
}


def _command_module(name: str) -> ModuleType | None:
    module_name, _ = COMMANDS[name]
    if importlib.util.find_spec(module_name) is None:
        return None
    return importlib.import_module(module_name)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="connect-metering", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        if importlib.util.find_spec(module_name) is None:
            continue  # not built yet: not offered
        sub = commands.add_parser(name, help=help_text)
        if name == command:
            module = _command_module(name)
            if module is not None:
                module.add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((word for word in argv if word in COMMANDS), None)
    arguments = build_parser(command).parse_args(argv)
    _offline_aws_environment()
    module = _command_module(arguments.command)
    assert module is not None
    result: int = module.run(arguments)
    return result


if __name__ == "__main__":
    sys.exit(main())
