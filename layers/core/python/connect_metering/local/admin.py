"""`connect-metering admin ...`: a company's environments, its licence information and the seat check,
through the admin API (SigV4-signed, as its IAM authorizer requires).

    connect-metering admin [--endpoint URL] [--region R] [--profile P] environments list ALIAS
    connect-metering admin ... environments add ALIAS NAME INSTANCE_ARN
    connect-metering admin ... environments remove ALIAS NAME
    connect-metering admin ... license ALIAS
    connect-metering admin ... seat-check INSTANCE_ARN AGENT_ARN

``--endpoint`` is the stack output ``AdminApiUrl`` (or ``$CONNECT_METERING_ADMIN_URL``); against
``connect-metering serve`` it is ``http://127.0.0.1:PORT/admin``. The answer is printed as JSON.
Exit codes: 0 done, 1 refused by a rule (4xx, the reason on stderr), 2 bad input, 3 unreachable or 5xx.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ProfileNotFound

ENDPOINT_VARIABLE = "CONNECT_METERING_ADMIN_URL"
EXIT_REFUSED = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3
TIMEOUT_SECONDS = 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", default=os.environ.get(ENDPOINT_VARIABLE), help="the admin API URL")
    parser.add_argument("--region", default="us-east-1", help="region of the admin API (SigV4)")
    parser.add_argument("--profile", default=None, help="AWS profile whose credentials sign the requests")
    commands = parser.add_subparsers(dest="admin_command", required=True)
    environments = commands.add_parser("environments", help="list, add or remove a company's environments")
    actions = environments.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the company's environments")
    listing.add_argument("alias")
    adding = actions.add_parser("add", help="add an Amazon Connect instance as an environment")
    adding.add_argument("alias")
    adding.add_argument("name")
    adding.add_argument("instance_arn")
    removing = actions.add_parser("remove", help="remove an environment (its account stays the company's)")
    removing.add_argument("alias")
    removing.add_argument("name")
    licence = commands.add_parser("license", help="licence information of a company")
    licence.add_argument("alias")
    seat = commands.add_parser("seat-check", help="may this agent log in now?")
    seat.add_argument("instance_arn")
    seat.add_argument("agent_arn")


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: dict[str, Any] | None = None


def call_for(arguments: argparse.Namespace) -> Call:
    if arguments.admin_command == "license":
        return Call("GET", f"/companies/{quote(arguments.alias, safe='')}/license")
    if arguments.admin_command == "seat-check":
        return Call(
            "POST", "/seat-check", {"instance_arn": arguments.instance_arn, "agent_arn": arguments.agent_arn}
        )
    base = f"/companies/{quote(arguments.alias, safe='')}/environments"
    if arguments.action == "list":
        return Call("GET", base)
    if arguments.action == "add":
        return Call("POST", base, {"name": arguments.name, "instance_arn": arguments.instance_arn})
    return Call("DELETE", f"{base}/{quote(arguments.name, safe='')}")


def send(endpoint: str, call: Call, *, region: str, profile: str | None) -> tuple[int, str]:
    """The signed request -> (status, body). Unsigned only when no credentials exist (local serve)."""
    url = endpoint.rstrip("/") + call.path
    data = json.dumps(call.body).encode() if call.body is not None else None
    request = AWSRequest(method=call.method, url=url, data=data, headers={"Content-Type": "application/json"})
    credentials = (
        boto3.Session(profile_name=profile).get_credentials()
        if profile
        else boto3.Session().get_credentials()
    )
    if credentials is not None:
        SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region).add_auth(request)
    prepared = request.prepare()
    outgoing = urllib.request.Request(  # noqa: S310 (the scheme is checked by the caller)
        prepared.url, data=data, headers=dict(prepared.headers.items()), method=call.method
    )
    try:
        with urllib.request.urlopen(outgoing, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()


def run(arguments: argparse.Namespace) -> int:
    endpoint = arguments.endpoint
    if not endpoint:
        print(
            f"admin: pass --endpoint (the AdminApiUrl stack output, or http://127.0.0.1:PORT/admin of "
            f"`connect-metering serve`) or set {ENDPOINT_VARIABLE}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    if urlsplit(endpoint).scheme not in ("https", "http"):
        print(f"admin: {endpoint!r} is not an http(s) URL", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        status, body = send(endpoint, call_for(arguments), region=arguments.region, profile=arguments.profile)
    except ProfileNotFound:
        print(f"admin: argument --profile: no AWS profile named {arguments.profile!r}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (urllib.error.URLError, OSError) as error:
        print(f"admin: {endpoint} is unreachable: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if status == 204:
        print(json.dumps({"status": "removed"}))
        return 0
    try:
        document: Any = json.loads(body) if body else {}
    except json.JSONDecodeError:
        document = {"message": body[:500]}
    if 200 <= status < 300:
        print(json.dumps(document, indent=2, sort_keys=True))
        return 0
    message = document.get("message", body) if isinstance(document, dict) else body
    print(f"admin: refused ({status}): {message}", file=sys.stderr)
    return EXIT_REFUSED if status < 500 else EXIT_UNREACHABLE
