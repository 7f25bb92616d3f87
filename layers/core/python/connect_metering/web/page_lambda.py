"""What the two Lambdas that serve browser pages (registration, console) share: a resolver that never logs
what people type, the form-body gate before the resolver parses a form, responses carrying a page's
security headers, and the entry point's logging, metrics and tracing. Each handler keeps its routes, its
pages, its cookies and its error pages.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import ResponseBuilder
from aws_lambda_powertools.shared.cookies import Cookie
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.typing import LambdaContext

from connect_metering.observability import logger, metrics, tracer
from connect_metering.web.forms import FormTooLarge, MalformedForm, as_form, check_event_form_body

# The resolver's debug logging prints a route's arguments ("Calling API Route Handler: {'token': ...}"),
# passwords and registration tokens among them, as botocore's prints request bodies: all held at
# WARNING, whatever POWERTOOLS_DEBUG or LOG_LEVEL say.
QUIET_LOGGERS = ("botocore", "boto3", "urllib3", "aws_lambda_powertools.event_handler")

LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]
PageFactory = Callable[[], Response[str]]


def page_resolver() -> APIGatewayHttpResolver:
    """The HTTP API resolver of a page Lambda, its ``Form`` parameters validated."""
    # Page views and reads publish no metric; that is expected, not worth a warning per request.
    warnings.filterwarnings("ignore", "No application metrics to publish")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # debug=False: the resolver's debug mode prints whole events, and forms carry tokens and passwords.
    return APIGatewayHttpResolver(debug=False, enable_validation=True)


def html(
    status: int, body: str, headers: Mapping[str, str], cookies: list[Cookie] | None = None
) -> Response[str]:
    return Response(status_code=status, body=body, headers=dict(headers), cookies=cookies)


def see_other(
    location: str, headers: Mapping[str, str], cookies: list[Cookie] | None = None
) -> Response[str]:
    return Response(status_code=303, body="", headers={**headers, "Location": location}, cookies=cookies)


def form_refusal(
    request: APIGatewayProxyEventV2, *, too_large: PageFactory, malformed: PageFactory
) -> Response[str] | None:
    """The page refusing a form body over the limits (``check_form_body``), before the resolver parses it."""
    try:
        check_event_form_body(request.body, request.is_base64_encoded)
    except FormTooLarge:
        return too_large()
    except MalformedForm:
        return malformed()
    return None


def resolve_page_event(
    app: APIGatewayHttpResolver,
    event: dict[str, Any],
    context: LambdaContext,
    *,
    reads_form: Callable[[APIGatewayProxyEventV2], bool],
    too_large: PageFactory,
    malformed: PageFactory,
) -> dict[str, Any]:
    """Resolves a request; one that ``reads_form`` has its body checked first (refused with the handler's
    page) and read as a url-encoded form whatever its content-type said (``as_form``). A HEAD is answered
    as its GET without the body (RFC 9110 section 9.3.2: link checkers and uptime monitors use it)."""
    http = event.get("requestContext", {}).get("http", {})
    if http.get("method") == "HEAD":
        as_get = {**event, "requestContext": {**event["requestContext"], "http": {**http, "method": "GET"}}}
        return {
            **resolve_page_event(
                app, as_get, context, reads_form=reads_form, too_large=too_large, malformed=malformed
            ),
            "body": "",
        }
    request = APIGatewayProxyEventV2(event)
    if not reads_form(request):
        return app.resolve(event, context)
    refused = form_refusal(request, too_large=too_large, malformed=malformed)
    if refused is not None:
        return ResponseBuilder[APIGatewayProxyEventV2](refused).build(request)
    return app.resolve(as_form(event), context)


def observed(handler: LambdaHandler) -> LambdaHandler:
    """The entry point logged (context, never the event), its metrics flushed and traced (not its
    response: a page)."""
    traced = tracer.capture_lambda_handler(handler, capture_response=False)
    counted = metrics.log_metrics(traced)
    entry: LambdaHandler = logger.inject_lambda_context(counted, log_event=False, clear_state=True)
    return entry
