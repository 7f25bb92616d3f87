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
import copy
import functools
import json
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast
from unittest import mock

import moto.core.models
from botocore.awsrequest import AWSPreparedRequest
from botocore.useragent import UserAgentString
from moto.core.common_types import TYPE_RESPONSE
from moto.core.model import OperationModel
from moto.core.parse import PROTOCOL_PARSERS
from moto.core.responses import ActionResult
from moto.core.utils import get_service_model, utcnow
from moto.dynamodb.comparisons import ConditionExpressionParser
from moto.dynamodb.parsing import validators
from moto.dynamodb.parsing.ast_nodes import (  # type: ignore[attr-defined]
    DepthFirstTraverser,
    Expression,
    Node,
    UpdateExpressionFunction,
)
from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]
from moto.dynamodb.responses import DynamoHandler, DynamoResult
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
def cached_expression_parsing() -> Iterator[None]:
    """moto tokenizes and parses the same few expression strings on every request, an UpdateExpression
    twice per UpdateItem. Both steps depend on the expression's text alone (names and values are
    substituted later, on a copy), so each text is parsed once: an UpdateExpression's syntax tree, which
    moto's validator deep-copies before resolving names and values into it, and a condition's tokens,
    from which moto builds each request's own tree. Invalid expressions are not remembered: they raise,
    as before, every time."""
    original_make = vars(UpdateExpressionParser)["make"]
    original_lex = ConditionExpressionParser._lex_condition_expression

    @functools.lru_cache(maxsize=_EXPRESSIONS_REMEMBERED)
    def update_tree(expression: str) -> Any:
        return original_make.__func__(UpdateExpressionParser, expression)

    @functools.lru_cache(maxsize=_EXPRESSIONS_REMEMBERED)
    def condition_tokens(expression: str) -> tuple[Any, ...]:
        return tuple(original_lex(ConditionExpressionParser(expression, None, None)))

    def lex(parser: ConditionExpressionParser) -> deque[Any]:
        # A fresh deque: moto's parsing consumes it. The tokens are immutable named tuples.
        return deque(condition_tokens(parser.condition_expression))

    with (
        mock.patch.object(UpdateExpressionParser, "make", staticmethod(update_tree)),
        mock.patch.object(ConditionExpressionParser, "_lex_condition_expression", lex),
    ):
        yield


# Distinct expression texts kept; the product writes a few dozen.
_EXPRESSIONS_REMEMBERED = 1024


@contextmanager
def remembered_node_kinds() -> Iterator[None]:
    """moto's syntax-tree walkers (ten per UpdateExpression) ask, at every node, which node classes they
    process, and each time rebuild the answer from a dict of bound methods; the classes are fixed by the
    walker's class, so each class answers from the first time it was asked."""
    original = DepthFirstTraverser.nodes_to_be_processed
    kinds: dict[type, tuple[type, ...]] = {}

    def nodes_to_be_processed(walker: DepthFirstTraverser) -> tuple[type, ...]:
        found = kinds.get(type(walker))
        if found is None:
            found = kinds[type(walker)] = tuple(original(walker))
        return found

    with mock.patch.object(DepthFirstTraverser, "nodes_to_be_processed", nodes_to_be_processed):
        yield


@contextmanager
def lean_update_validation() -> Iterator[None]:
    """moto validates every UpdateExpression by running ten walkers over a deep copy of its syntax tree.
    Two of their costs depend on nothing the request brings: each walker rebuilds its node-kind-to-method
    map (a dict of bound methods) for every node it processes, here built once per walker; and the copy
    goes through ``copy.deepcopy``'s generic protocol for every node, here a structural copy of the same
    nodes (each node's attributes copied, children and parent links pointing into the copy, anything
    that is not a node, list or immutable value handed to ``copy.deepcopy`` with the same memo)."""

    def process(walker: DepthFirstTraverser, node: Any) -> Any:
        kinds = walker.__dict__.get("_embedded_processing_map")
        if kinds is None:
            kinds = walker.__dict__["_embedded_processing_map"] = walker._processing_map()
        for kind, processor in kinds.items():
            if issubclass(type(node), kind):  # isinstance, for the nodes' plain classes
                return processor(node)
        return None

    with (
        mock.patch.multiple(DepthFirstTraverser, process=process, traverse_node_recursively=_traverse),
        mock.patch.object(Node, "find_clauses", _find_clauses),
        mock.patch.object(validators, "deepcopy", copy_tree),
    ):
        yield


def _traverse(walker: DepthFirstTraverser, node: Any, child_id: int = -1) -> Any:
    """moto's ``traverse_node_recursively`` step for step (children first, each after the walker's
    ``pre_processing_of_child`` hook, then the node itself if the walker processes its kind), without
    its calls that do nothing (the default hook, a recursion into a child that is not a node, which
    moto's returns untouched) and with each class test answered once per class: moto's node classes
    are abstract-base-class instances, whose ``isinstance`` goes through ``__instancecheck__`` at
    every node."""
    if not _is_node(type(node)):
        return node
    parent_node = node.parent
    children = node.children
    if children is not None:
        hook = _child_hook(walker.__class__)
        for position, child in enumerate(children):
            if hook is not None:
                hook(walker, node, position)
            if _is_node(type(child)):
                _traverse(walker, child, position)
    if _processes(walker, type(node)):
        node = walker.process(node)
        node.parent = parent_node
        if parent_node:
            parent_node.children[child_id] = node
    return node


_NODE_CLASSES: dict[type, bool] = {}
_PROCESSED_CLASSES: dict[tuple[type, type], bool] = {}


def _is_node(kind: type) -> bool:
    found = _NODE_CLASSES.get(kind)
    if found is None:
        found = _NODE_CLASSES[kind] = issubclass(kind, Node)
    return found


def _processes(walker: DepthFirstTraverser, kind: type) -> bool:
    """Whether the walker processes nodes of this class (its kinds are fixed by its class)."""
    key = (type(walker), kind)
    found = _PROCESSED_CLASSES.get(key)
    if found is None:
        found = _PROCESSED_CLASSES[key] = issubclass(kind, walker.nodes_to_be_processed())
    return found


def _find_clauses(node: Node, clause_types: Any) -> list[Any]:
    """moto's ``Node.find_clauses``: the children of exactly these classes, looking into expressions
    and functions, with each class's test answered once."""
    clauses: list[Any] = []
    for child in node.children or []:
        kind: Any = type(child)
        if kind in clause_types:
            clauses.append(child)
        elif _descends(kind):
            clauses.extend(child.find_clauses(clause_types))
    return clauses


@functools.cache
def _descends(kind: Any) -> bool:
    return issubclass(kind, (Expression, UpdateExpressionFunction))


@functools.cache
def _child_hook(kind: Any) -> Any:
    """The walker class's own ``pre_processing_of_child``; None when it keeps moto's, which does nothing."""
    hook = kind.pre_processing_of_child
    return None if hook is DepthFirstTraverser.pre_processing_of_child else hook


# The types copy.deepcopy returns as they are (its atomic types, looked up by exact type as it does).
_IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes})


def copy_tree(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """``copy.deepcopy`` of an expression's syntax tree, node by node: the same objects ``deepcopy``
    builds for moto's nodes (a new instance of the class, its attributes copied deeply, shared and
    cyclic references kept shared), without the generic reduce protocol."""
    memo = {} if memo is None else memo
    return _copied(value, memo)


def _copied(value: Any, memo: dict[int, Any]) -> Any:
    kind: Any = type(value)
    if kind in _IMMUTABLE:
        return value
    found = memo.get(id(value))
    if found is not None:
        return found
    if kind is list:
        copied_list: list[Any] = []
        memo[id(value)] = copied_list
        copied_list.extend(_copied(inner, memo) for inner in value)
        _keep_alive(value, memo)
        return copied_list
    if _plain_node_class(kind):
        node = kind.__new__(kind)
        memo[id(value)] = node
        node.__dict__.update({name: _copied(inner, memo) for name, inner in value.__dict__.items()})
        _keep_alive(value, memo)
        return node
    return copy.deepcopy(value, memo)


@functools.cache
def _plain_node_class(kind: Any) -> bool:
    """A syntax-tree node class that ``copy.deepcopy`` copies by the default protocol: a new instance
    whose ``__dict__`` is a deep copy of the original's (no copy or pickling hooks of its own)."""
    return (
        issubclass(kind, Node)
        and not hasattr(kind, "__deepcopy__")
        and not hasattr(kind, "__setstate__")
        and kind.__reduce_ex__ is object.__reduce_ex__
        and kind.__reduce__ is object.__reduce__
        and kind.__getstate__ is object.__getstate__
        and "__slots__" not in {name for klass in kind.__mro__ for name in vars(klass)}
    )


def _keep_alive(value: Any, memo: dict[Any, Any]) -> None:
    """As ``copy.deepcopy`` does: the originals stay alive while the memo does, so no id is reused."""
    memo.setdefault(id(memo), []).append(value)


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
