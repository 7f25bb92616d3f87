"""`connect-metering serve [--port P] [--registry R.json [--events E.jsonl]]`: the registration, console and
admin endpoints on 127.0.0.1, offline.

The real Lambda handlers (``functions/register``, ``functions/admin``, ``functions/lifecycle``) run behind a
small HTTP adapter that turns each request into the HTTP API (payload v2) event API Gateway would send,
on embedded AWS (moto) with the Marketplace simulator answering ResolveCustomer and GetEntitlements.

    GET  /dev/marketplace   a stand-in for AWS Marketplace: subscribes a new simulated buyer (or
                            ``?account=`` an existing one), announces it to the lifecycle handler as
                            License Updated (so the activation arrives before sign-up, as it often
                            does), and shows the form that POSTs a fresh token to /register.
                            ``?token=expired`` / ``?token=invalid`` post a bad token instead;
                            ``?pricing=contract`` buys a contract (10 licensed agents).
    POST /register, GET|POST /signup     the registration Lambda
    /console/...            the console Lambda, on moto's Cognito user pool
    GET  /dev/mailbox       every email the product would send (console invitations and their
                            temporary passwords; deployed, Cognito mails them)
    /admin/...              the admin Lambda (IAM authentication is API Gateway's; not emulated here)

``--registry`` (and ``--events``) preload a replay (``local.serve_console``) so the console's usage page
shows real billed minutes; each registry company gets an administrator ``admin@<alias>.example``.

Handlers run one at a time (moto is not built for concurrent transactions); the virtual clock follows
the wall clock. Local runtime only: never shipped in a Lambda asset.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import signal
import sys
import threading
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import boto3

from connect_metering.domain.instants import iso
from connect_metering.local.console_offline import Mailbox, create_console_pool
from connect_metering.local.embedded import EmbeddedAws
from connect_metering.local.lambdas import handler_module
from connect_metering.local.replay import BadInput
from connect_metering.local.serve_console import Preload, mailbox_page, preload_administrators, replay_into
from connect_metering.local.traffic import sqs_batch
from connect_metering.settings import load_settings
from connect_metering.web.pages import escape, layout, link_list, security_headers

PRODUCT_CODE = "connectmeter0demo1"
SELLER_ACCOUNT = "123456789012"
LOCAL_BUS_ARN = f"arn:aws:events:us-east-1:{SELLER_ACCOUNT}:event-bus/connect-metering-agent-events"
LICENSED_AGENTS = 10
ADMIN_PREFIX = "/admin"
CONSOLE_PREFIX = "/console"
MAX_BODY_BYTES = 1024 * 1024
ACCOUNT_ID = re.compile(r"[0-9]{12}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--product-code", default=PRODUCT_CODE, help="the simulated Marketplace product")
    parser.add_argument(
        "--registry",
        type=Path,
        default=None,
        help="preload a replay: companies, subscriptions (replay's R.json)",
    )
    parser.add_argument("--events", type=Path, default=None, help="the preloaded replay's events (E.jsonl)")


EXIT_BAD_INPUT = 2
HIGHEST_PORT = 65535
# What /dev/marketplace understands; anything else is refused with a message, never ignored.
MARKETPLACE_PARAMETERS = {
    "token": ("valid", "expired", "invalid"),
    "pricing": ("usage", "contract"),
    "account": ("<12 digits>",),
}


def run(arguments: argparse.Namespace) -> int:
    if not 0 <= arguments.port <= HIGHEST_PORT:
        print(
            f"serve: argument --port: {arguments.port} is not a port (0 to {HIGHEST_PORT})", file=sys.stderr
        )
        return EXIT_BAD_INPUT
    preload = _preload(arguments)
    if isinstance(preload, str):
        print(preload, file=sys.stderr)
        return EXIT_BAD_INPUT
    server = LocalServer(port=arguments.port, product_code=arguments.product_code, preload=preload)
    try:
        server.__enter__()
    except OSError as error:
        print(
            f"serve: argument --port: cannot listen on 127.0.0.1:{arguments.port}: {error.strerror}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    try:
        # Before the banner: whoever reads "Ctrl-C stops" may signal at once (a supervisor, a test).
        _stop_on_interrupt_or_terminate()
        print(
            f"connect-metering serve: {server.url}/dev/marketplace  (console: {server.url}{CONSOLE_PREFIX}/, "
            f"mail: {server.url}/dev/mailbox, admin API: {server.url}{ADMIN_PREFIX})"
        )
        print("embedded AWS (moto) and the Marketplace simulator; Ctrl-C stops", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.__exit__(None, None, None)
    return 0


def _preload(arguments: argparse.Namespace) -> Preload | str | None:
    """The replay to preload, None without ``--registry``, or the message refusing the arguments."""
    if arguments.registry is None:
        return "serve: argument --events needs --registry" if arguments.events is not None else None
    try:
        return Preload.read(arguments.registry, arguments.events)
    except (BadInput, ValueError) as error:
        return f"serve: {error}"


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def _stop_on_interrupt_or_terminate() -> None:
    """Ctrl-C and SIGTERM stop the server. Python leaves SIGINT ignored when the parent ignored it (a
    test runner's worker, nohup, a supervisor), and then Ctrl-C would never reach ``serve``: install the
    default handler explicitly, and treat SIGTERM the same way."""

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupted)


def marketplace_refusal(query: dict[str, list[str]]) -> str | None:
    """Why /dev/marketplace refuses these parameters (None: it accepts them)."""
    for name, values in query.items():
        accepted = MARKETPLACE_PARAMETERS.get(name)
        if accepted is None:
            return f"unknown parameter {name!r}: /dev/marketplace takes {', '.join(MARKETPLACE_PARAMETERS)}"
        if len(values) > 1:
            return f"parameter {name!r} is given {len(values)} times"
        value = values[0]
        valid = ACCOUNT_ID.fullmatch(value) is not None if name == "account" else value in accepted
        if not valid:
            return f"parameter {name}={value!r}: expected {' or '.join(accepted)}"
    return None


@dataclass(frozen=True)
class LocalContext:
    """What Powertools reads from a Lambda context."""

    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:{SELLER_ACCOUNT}:function:{self.function_name}"


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def http_api_event(
    *, method: str, path: str, query: str, headers: dict[str, str], body: bytes, source_ip: str
) -> dict[str, Any]:
    """The HTTP API payload v2 event API Gateway would send for this request."""
    lowered = {name.lower(): value for name, value in headers.items()}
    cookie_header = lowered.pop("cookie", "")
    lowered["x-forwarded-proto"] = "http"
    lowered.setdefault("x-forwarded-for", source_ip)
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": lowered,
        "requestContext": {
            "accountId": SELLER_ACCOUNT,
            "apiId": "local",
            "domainName": lowered.get("host", "127.0.0.1"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": f"{method} {path}",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": bool(body),
    }
    if cookie_header:
        event["cookies"] = [part.strip() for part in cookie_header.split(";") if part.strip()]
    if query:
        event["queryStringParameters"] = {
            name: ",".join(values) for name, values in parse_qs(query, keep_blank_values=True).items()
        }
    if body:
        event["body"] = base64.b64encode(body).decode()
    return event


def _for_plain_http(cookie: str) -> str:
    """The handler always marks its cookie Secure (deployed, CloudFront serves HTTPS only). This server
    speaks plain HTTP on loopback, where clients such as curl and urllib never send a Secure cookie back,
    so it drops the attribute here, in the local stand-in for the edge, and nowhere else."""
    return "; ".join(part for part in cookie.split("; ") if part.lower() != "secure")


def response_from(result: dict[str, Any]) -> HttpResponse:
    """An HTTP API v2 Lambda result -> status, headers (cookies as Set-Cookie) and body bytes."""
    headers = [(name, str(value)) for name, value in (result.get("headers") or {}).items()]
    headers += [("Set-Cookie", _for_plain_http(cookie)) for cookie in result.get("cookies") or []]
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    return HttpResponse(int(result.get("statusCode", 200)), headers, raw)


class LocalServer:
    """Embedded AWS + the handlers + an HTTP server on 127.0.0.1; a context manager (tests use it too)."""

    def __init__(
        self, *, port: int = 0, product_code: str = PRODUCT_CODE, preload: Preload | None = None
    ) -> None:
        self._port = port
        self._preload = preload
        self._product_code = preload.registry.product_code if preload else product_code
        self.mailbox = Mailbox()
        self._lock = threading.Lock()
        self._buyers = 0
        self._saved_environ: dict[str, str] = {}
        self._thread: threading.Thread | None = None
        self.aws = (
            preload.embedded_aws()
            if preload
            else EmbeddedAws(product_code=product_code, start=datetime.now(UTC))
        )

    # Lifecycle -----------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        # Listening first: a port in use or refused fails here, before anything else is set up.
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self._port), self._request_handler())
        self.httpd.daemon_threads = True
        self._saved_environ = dict(os.environ)
        for name, value in {
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "1",
            "POWERTOOLS_METRICS_DISABLED": "true",
        }.items():
            os.environ.setdefault(name, value)
        self.aws.__enter__()
        # The handlers build their own Marketplace clients: those must reach the simulator too.
        self.aws.marketplace.attach_session(boto3._get_default_session().events)
        os.environ["AGENT_EVENTS_BUS_ARN"] = LOCAL_BUS_ARN
        self.register = handler_module("register")
        self.admin = handler_module("admin")
        self.lifecycle = handler_module("lifecycle")
        self._console_on_embedded_aws()
        self._reset_caches()
        if self._preload is not None:
            replay_into(self.aws, self._preload)
            invitations = self.register.administrator_invitations()
            for alias, email in preload_administrators(self._preload):
                invitations.invite(alias, email)
        return self

    def _console_on_embedded_aws(self) -> None:
        """moto's Cognito user pool and the session key; invitations to the mailbox; the console's clock
        the virtual one (a preloaded replay may end after the wall clock)."""
        pool = create_console_pool(boto3.client("cognito-idp"), boto3.client("secretsmanager"))
        os.environ.update(pool.environment())
        self.console = handler_module("console")
        # The handlers' module-level hooks (ModuleType has no declared attributes for mypy).
        setattr(self.console, "mailer", self.mailbox)  # noqa: B010
        setattr(self.register, "mailer", self.mailbox)  # noqa: B010
        setattr(self.console, "now", self.aws.clock.now)  # noqa: B010

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
        self._reset_caches()
        setattr(self.console, "mailer", None)  # noqa: B010
        setattr(self.register, "mailer", None)  # noqa: B010
        setattr(self.console, "now", _wall_clock)  # noqa: B010
        self.aws.__exit__(kind, error, trace)
        os.environ.clear()
        os.environ.update(self._saved_environ)
        load_settings.cache_clear()

    def _reset_caches(self) -> None:
        load_settings.cache_clear()
        self.register.registration_service.cache_clear()
        self.admin.licence_service.cache_clear()
        self.admin.audit_log.cache_clear()
        self.lifecycle.lifecycle_service.cache_clear()
        self.console.console_service.cache_clear()
        self.console.audit_log.cache_clear()
        self.register.administrator_invitations.cache_clear()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> None:
        """Serve from a background thread (tests)."""
        self._thread = threading.Thread(target=self.serve_forever, name="connect-metering-serve", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self.httpd.server_close()

    # Requests ------------------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str = "127.0.0.1"
    ) -> HttpResponse:
        parts = urlsplit(target)
        path = parts.path or "/"
        if method == "HEAD" and path in ("/", "/dev/marketplace", "/dev/mailbox"):
            # The local pages answer HEAD as the Lambdas do (``page_lambda.resolve_page_event``).
            return replace(self.handle("GET", target, headers, body, source_ip), body=b"")
        with self._lock:
            self.aws.clock.advance_to(datetime.now(UTC))
            if path == "/" and method == "GET":
                return self._page(200, "connect-metering (local)", self._index())
            if path == "/dev/marketplace" and method == "GET":
                return self._marketplace(parse_qs(parts.query))
            if path == "/dev/mailbox" and method == "GET":
                return self._page(200, "Mailbox (local)", mailbox_page(self.mailbox))
            module, function_name = self.register, "register"
            if path == ADMIN_PREFIX or path.startswith(f"{ADMIN_PREFIX}/"):
                module, function_name, path = self.admin, "admin", path[len(ADMIN_PREFIX) :] or "/"
            elif path == CONSOLE_PREFIX or path.startswith(f"{CONSOLE_PREFIX}/"):
                module, function_name = self.console, "console"
            event = http_api_event(
                method=method, path=path, query=parts.query, headers=headers, body=body, source_ip=source_ip
            )
            context = LocalContext(
                function_name=f"connect-metering-{function_name}", aws_request_id=str(uuid.uuid4())
            )
            return response_from(module.lambda_handler(event, context))

    def _page(self, status: int, title: str, body: str) -> HttpResponse:
        headers = list(security_headers().items())
        return HttpResponse(status, headers, layout(title, body).encode())

    def _index(self) -> str:
        return "<h1>connect-metering, local</h1>" + link_list(
            [
                ("/dev/marketplace", "Subscribe a new buyer (pay-as-you-go) and register"),
                ("/dev/marketplace?pricing=contract", "Subscribe a new buyer (contract) and register"),
                ("/dev/marketplace?token=expired", "Register with an expired token"),
                ("/dev/marketplace?token=invalid", "Register with an invalid token"),
                ("/dev/mailbox", "Mailbox: console invitations"),
                ("/console/", "Console sign-in"),
            ]
        )

    # The stand-in for AWS Marketplace -------------------------------------------------------------

    def new_buyer(self, *, contract: bool = False, account: str | None = None) -> tuple[str, str]:
        """Subscribe a buyer in the simulator (and announce it to the lifecycle handler); returns
        (account id, licence ARN)."""
        self._buyers += 1
        account = account or f"2{secrets.randbelow(10**11):011d}"
        license_arn = f"arn:aws:license-manager::{SELLER_ACCOUNT}:license:l-{secrets.token_hex(16)}"
        now = self.aws.clock.now()
        self.aws.marketplace.add_subscription(
            customer_aws_account_id=account, license_arn=license_arn, started=now
        )
        if contract:
            self.aws.marketplace.set_entitlement(
                license_arn=license_arn,
                customer_aws_account_id=account,
                dimension="licensed_agents",
                value=LICENSED_AGENTS,
                expiration=now + timedelta(days=365),
            )
        self.deliver_marketplace_event("License Updated - Manufacturer", license_arn, account, now)
        return account, license_arn

    def deliver_marketplace_event(
        self, detail_type: str, license_arn: str, account: str, at: datetime
    ) -> None:
        envelope = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": "aws.agreement-marketplace",
            "account": SELLER_ACCOUNT,
            "time": iso(at),
            "region": "us-east-1",
            "resources": [],
            "detail": {
                "product": {"code": self._product_code},
                "license": {"arn": license_arn},
                "acceptor": {"accountId": account},
            },
        }
        response, _ = self.lifecycle.handle_batch(sqs_batch([json.dumps(envelope)]))
        if response.get("batchItemFailures"):
            raise RuntimeError(f"the lifecycle handler failed {detail_type}")

    def _marketplace(self, query: dict[str, list[str]]) -> HttpResponse:
        refusal = marketplace_refusal(query)
        if refusal is not None:
            return self._page(
                400, "AWS Marketplace (simulated)", f"<h1>Bad request</h1><p>{escape(refusal)}</p>"
            )
        kind = query.get("token", ["valid"])[0]
        contract = query.get("pricing", ["usage"])[0] == "contract"
        account = query.get("account", [None])[0]
        if kind == "invalid":
            token, note = f"not-a-marketplace-token-{secrets.token_hex(8)}", "an invalid token"
        else:
            account, license_arn = self.new_buyer(contract=contract, account=account)
            if kind == "expired":
                token = self.aws.marketplace.expired_token(
                    customer_aws_account_id=account, license_arn=license_arn
                )
                note = f"an expired token of buyer {account}"
            else:
                token = self.aws.marketplace.issue_token(
                    customer_aws_account_id=account, license_arn=license_arn
                )
                plan = "a contract" if contract else "pay-as-you-go"
                note = f"buyer {account} subscribed ({plan})"
        body = (
            "<h1>AWS Marketplace (simulated)</h1>"
            f"<p>Simulated: {escape(note)}. AWS Marketplace would now send you to the seller's "
            "registration page with a registration token.</p>"
            '<form method="post" action="/register">'
            f'<input type="hidden" name="x-amzn-marketplace-token" value="{escape(token)}">'
            '<button type="submit" id="setup">Set up your account</button></form>'
        )
        return self._page(200, "AWS Marketplace (simulated)", body)

    def _request_handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self.send_error(413)
                    return
                body = self.rfile.read(length) if length else b""
                headers = {name: value for name, value in self.headers.items()}
                try:
                    response = server.handle(self.command, self.path, headers, body, self.client_address[0])
                except Exception as error:  # a local server: say what broke, keep serving
                    print(f"serve: {self.command} {urlsplit(self.path).path}: {error!r}", file=sys.stderr)
                    self.send_error(500)
                    return
                self.send_response(response.status)
                for name, value in response.headers:
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)

            do_GET = do_POST = do_DELETE = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:
                # The path only: query strings carry registration ids.
                print(
                    f"{self.command} {urlsplit(self.path).path} -> {args[1] if len(args) > 1 else ''}",
                    file=sys.stderr,
                )

        return Handler
