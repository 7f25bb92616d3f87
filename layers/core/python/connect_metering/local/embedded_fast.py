"""DynamoDB requests of the embedded runtime answered by moto's own DynamoDB handler, without the HTTP
emulation around it.

botocore still does everything it does for AWS (parameter validation, serialization into the JSON
request, the ``before-call`` hooks that count requests, parsing the JSON response, raising ClientError);
moto's ``DynamoHandler`` still parses the request body, applies the operation to its backend (conditions,
transactions, validation errors) and answers it. What is skipped is what moto does to pretend to be an
HTTP server between the two: building a werkzeug request (WSGI environ, form parsing, URL
normalisation) for every call, matching the URL against every service's patterns, and serializing the
result by walking the output shape member by member. For the item operations the result is written
with ``json.dumps`` (binary attributes base64-encoded, as DynamoDB's JSON protocol writes them); any
other result, and every error, goes through moto's own serializer.
"""

from __future__ import annotations

import base64
import functools
import json
import string
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast
from unittest import mock

import moto.core.models
import moto.core.responses
from botocore.awsrequest import AWSPreparedRequest
from botocore.useragent import UserAgentString
from moto.core.common_types import TYPE_RESPONSE
from moto.core.model import OperationModel
from moto.core.parse import PROTOCOL_PARSERS
from moto.core.responses import ActionResult
from moto.core.utils import get_service_model, utcnow
from moto.dynamodb.responses import DynamoHandler, DynamoResult
from moto.moto_api._internal import mock_random
from requests.structures import CaseInsensitiveDict
from werkzeug.exceptions import HTTPException
from werkzeug.http import http_date

# The operations the product (and the local tools) make per item; table management keeps moto's path.
DIRECT_OPERATIONS = frozenset(
    {
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "Query",
        "Scan",
        "BatchGetItem",
        "BatchWriteItem",
        "TransactGetItems",
        "TransactWriteItems",
    }
)
_JSON_CONTENT_TYPE = "application/x-amz-json-1.0"
_DYNAMODB_URL = "https://dynamodb."
_ONE_REQUEST_AT_A_TIME = threading.Lock()


@contextmanager
def direct_dynamodb() -> Iterator[None]:
    """moto's stubber (the ``before-send`` handler every mocked client has) answers the item operations
    of DynamoDB with moto's ``DynamoHandler`` directly, and every other request as before. The stubber
    itself is wrapped, not joined by another handler: botocore calls every ``before-send`` handler, so a
    second one would have moto apply each operation twice."""
    stubber = moto.core.models.botocore_stubber
    original = stubber.process_request

    def process_request(request: AWSPreparedRequest) -> TYPE_RESPONSE | None:
        direct = answer(request)
        return direct if direct is not None else original(request)

    with mock.patch.object(stubber, "process_request", process_request):
        yield


def answer(request: AWSPreparedRequest) -> TYPE_RESPONSE | None:
    """moto's answer (status, headers, body) to a DynamoDB item operation; None for any other request."""
    if not request.url.startswith(_DYNAMODB_URL):
        return None
    headers = CaseInsensitiveDict(
        {
            name: value.decode("utf-8") if isinstance(value, bytes) else value
            for name, value in request.headers.items()
        }
    )
    operation = str(headers.get("X-Amz-Target") or "").rsplit(".", 1)[-1]
    if operation not in DIRECT_OPERATIONS:
        return None
    handler = _DirectDynamoHandler(operation, request, headers)
    try:
        # DynamoDB applies each request atomically (a conditional write sees no other write half-done);
        # moto's backend does not, so concurrent callers (threads of one test) take turns.
        with _ONE_REQUEST_AT_A_TIME:
            status, response_headers, body = handler.call_action()
    except HTTPException as error:  # as moto's stubber: an error raised outside the action
        return cast(TYPE_RESPONSE, (error.code, error.get_headers(), error.get_body()))
    return status, response_headers, body


class _DirectDynamoHandler(DynamoHandler):
    """moto's DynamoDB handler set up from botocore's prepared request: what ``setup_class`` derives from
    a werkzeug request (region, account, parameters), read from the request botocore built."""

    def __init__(
        self, operation: str, request: AWSPreparedRequest, headers: CaseInsensitiveDict[str]
    ) -> None:
        super().__init__()
        self._operation = operation
        self.headers = headers
        self.querystring: dict[str, Any] = {}
        self.uri_match = {}
        self.uri = request.url
        self.method = request.method
        # moto reads the request's headers only (a User-Agent region) when the URL names none: ours will do.
        self.region = self.get_region_from_url(self, request.url)
        self.current_account = self.get_current_account()
        self.response_headers = {"server": "amazon.com", "date": http_date(utcnow())}
        body = request.body
        text = body.decode("utf-8") if isinstance(body, bytes) else str(body or "")
        self.params = _plain_json_parameters(text)
        if self.params is not None:
            return
        parser = PROTOCOL_PARSERS["json"](_operation_model(operation), map_type=self.PROTOCOL_PARSER_MAP_TYPE)
        # moto's JSON parser reads the body alone; the other fields are there for its signature.
        self.params = parser.parse(
            cast(
                Any,
                {
                    "method": request.method,
                    "headers": headers,
                    "body": text,
                    "values": {},
                    "url_path": "/",
                    "url_params": {},
                },
            )
        )

    def _get_action(self) -> str:
        return self._operation

    def serialized(self, action_result: ActionResult) -> Any:
        """The item operations' results as JSON; errors and anything else through moto's serializer."""
        result = action_result.result
        if type(action_result) in (ActionResult, DynamoResult) and isinstance(result, dict):
            try:
                body = json.dumps(result, default=_wire_value)
            except TypeError:
                pass
            else:
                return 200, {"Content-Type": _JSON_CONTENT_TYPE, **self.response_headers}, body
        return super().serialized(action_result)


def _plain_json_parameters(text: str) -> dict[str, Any] | None:
    """The request's parameters as moto's JSON parser reads them, when that is ``json.loads``: botocore
    wrote the body from validated parameters, so it holds only members of the input shape, no nulls, and
    numbers already as numbers; what the parser would still convert are blobs (base64 text to bytes), so
    a body that may hold a binary attribute (``"B"``, ``"BS"``) is left to moto's parser (None)."""
    if '"B' in text:  # "B" and "BS", and any name starting with B: the parser decides
        return None
    parameters = json.loads(text) if text else {}
    return parameters if isinstance(parameters, dict) else None


@functools.cache
def _operation_model(operation: str) -> OperationModel:
    return cast(OperationModel, get_service_model("dynamodb").operation_model(operation))


def _wire_value(value: Any) -> str:
    """Binary attribute values as DynamoDB's JSON protocol writes blobs; anything else is not ours."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is left to moto's serializer")


@contextmanager
def constant_user_agent() -> Iterator[None]:
    """botocore rebuilds each request's User-Agent header twice, character by character; nothing behind
    the embedded runtime reads it (moto takes the region from the endpoint's host name), so each
    client's first header is reused for its later requests."""
    original = UserAgentString.to_string
    built: dict[int, tuple[Any, str]] = {}  # the config kept with its header: its id is never reused

    def to_string(agent: UserAgentString) -> str:
        config = getattr(agent, "_client_config", None)
        found = built.get(id(config))
        if found is None:
            found = built[id(config)] = (config, original(agent))
        return found[1]

    with mock.patch.object(UserAgentString, "to_string", to_string):
        yield


@contextmanager
def cheaper_request_ids() -> Iterator[None]:
    """moto gives every answer a request id of 52 letters and digits, drawn one ``random.choice`` at a
    time from its own random source (``mock_random``, which a test may seed). Here the same source
    draws the 52 at once (``choices``): an id of the same form, still reproducible from a seed (not
    the same ids moto would draw from that seed), at a fraction of the cost. Nothing reads it but the
    answer's ResponseMetadata."""

    def request_id(headers: dict[str, Any] | None = None) -> str:
        drawn = "".join(mock_random.choices(_REQUEST_ID_CHARACTERS, k=52))
        if headers is not None and isinstance(headers, dict):
            headers.update({"x-amzn-requestid": drawn})
        return drawn

    with mock.patch.object(moto.core.responses, "gen_amzn_requestid_long", request_id):
        yield


_REQUEST_ID_CHARACTERS = string.ascii_letters + string.digits
