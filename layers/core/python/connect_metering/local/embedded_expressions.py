"""moto's parsing of DynamoDB expressions, done once per expression for the embedded runtime: the
product sends the same few expression texts on every request, and moto parses each of them (an
UpdateExpression twice per UpdateItem, a condition twice) before it looks at the request's values.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

from moto.dynamodb.comparisons import ConditionExpressionParser, Func, Op
from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]
from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords

# Distinct expression texts kept; the product writes a few dozen.
_EXPRESSIONS_REMEMBERED = 1024


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


@contextmanager
def remembered_condition_shapes() -> Iterator[None]:
    """moto turns a condition (ConditionExpression, FilterExpression) into a tree of named tuples in
    eight passes over its tokens, then into the operators that decide it. Only the last step reads the
    request's values: the passes read the text, the attribute names (looked up, checked against the
    reserved words) and the values' placeholders, whose values they only carry along. So the tree is
    built once per text and names (``_ConditionShape``) with each placeholder's value left open, and
    each request fills in its own values, looked up in the order moto's passes look them up (a missing
    one raises the same error), and has moto build its operators from that tree. A text that fails to
    parse is never remembered: moto parses it, and fails, every time."""
    original_parse = ConditionExpressionParser.parse
    shapes: dict[tuple[str, Any], _ConditionShape] = {}

    def parse(parser: ConditionExpressionParser) -> Op | Func:
        expression = parser.condition_expression
        if not expression:
            return original_parse(parser)
        key = (expression, _frozen_names(parser.expression_attribute_names))
        shape = shapes.get(key)
        if shape is not None:
            return shape.operators(parser)
        operators = original_parse(parser)  # raises as moto does; a success is remembered
        if len(shapes) >= _EXPRESSIONS_REMEMBERED:
            shapes.clear()
        shapes[key] = _ConditionShape.of(expression, parser.expression_attribute_names, original_parse)
        return operators

    with mock.patch.object(ConditionExpressionParser, "parse", parse):
        yield


def _frozen_names(names: dict[str, str] | None) -> tuple[tuple[str, str], ...] | None:
    return None if names is None else tuple(sorted(names.items()))


@dataclass(frozen=True)
class _ConditionShape:
    """moto's tree of one condition for one set of attribute names, before its operators are built: the
    value placeholders' nodes hold a ``_Slot`` instead of a value. ``lookups``: the placeholders in the
    order moto's passes look their values up; ``names_found`` and ``values_found``: what moto's parse
    records on the parser (the request handler checks them against the request's names and values)."""

    tree: Any
    lookups: tuple[str, ...]
    names_found: tuple[str, ...]
    values_found: tuple[str, ...]
    holders: frozenset[int]  # the ids of the tree's nodes that hold a slot, themselves or below

    @classmethod
    def of(cls, expression: str, names: dict[str, str] | None, original_parse: Any) -> _ConditionShape:
        """moto's own passes over the text, run with values that record their lookups."""
        values = _Slots()
        probe = ConditionExpressionParser(expression, names, values)
        trees: list[Any] = []

        def keep_tree(node: Any) -> None:  # moto's last step, replaced on this probe only
            trees.append(node)

        probe._make_op_condition = keep_tree  # type: ignore[assignment,method-assign]
        original_parse(probe)
        holders: set[int] = set()
        _find_holders(trees[0], holders)
        return cls(
            tree=trees[0],
            lookups=tuple(values.lookups),
            names_found=tuple(probe.expr_attr_names_found),
            values_found=tuple(probe.expr_attr_values_found),
            holders=frozenset(holders),
        )

    def operators(self, parser: ConditionExpressionParser) -> Op | Func:
        """What moto's ``parse`` returns for this parser: its values looked up as moto looks them up (a
        missing one raises moto's error), the parser's found lists extended, moto's operators built."""
        values = {name: parser._lookup_expression_attribute_value(name) for name in self.lookups}
        parser.expr_attr_names_found.extend(self.names_found)
        parser.expr_attr_values_found.extend(self.values_found)
        return parser._make_op_condition(_filled(self.tree, values, self.holders))


class _Slot:
    """Where a placeholder's value goes in a remembered tree."""

    def __init__(self, name: str) -> None:
        self.name = name


class _Slots(dict[str, Any]):
    """Expression attribute values that answer every lookup with a ``_Slot`` and record the lookups."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups: list[str] = []

    def __missing__(self, name: str) -> _Slot:
        self.lookups.append(name)
        return _Slot(name)


def _find_holders(node: Any, holders: set[int]) -> bool:
    """Whether the node holds a slot, itself or below; the ids of those that do added to ``holders``."""
    below = [_find_holders(child, holders) for child in node.children]
    if isinstance(node.value, _Slot) or any(below):
        holders.add(id(node))
        return True
    return False


def _filled(node: Any, values: dict[str, Any], holders: frozenset[int]) -> Any:
    """The tree with each slot replaced by the request's value: new tuples on the way to a slot, the
    rest shared (moto's nodes are tuples that nothing changes; the tree is built into operators and
    let go)."""
    if id(node) not in holders:
        return node
    if isinstance(node.value, _Slot):
        return node._replace(value=values[node.value.name])
    return node._replace(children=[_filled(child, values, holders) for child in node.children])


@contextmanager
def indexed_reserved_words() -> Iterator[None]:
    """moto checks each attribute name of an expression against DynamoDB's 573 reserved words with
    ``in`` on a list, a scan of the list per name. The same list, in the same order, answers ``in``
    for a string from a set of its words (the same answer: a string is in the list exactly when it
    equals one of its words); anything else is compared as a list compares."""
    words = _ReservedWords(ReservedKeywords.get_reserved_keywords())
    with mock.patch.object(ReservedKeywords, "KEYWORDS", words):
        yield


class _ReservedWords(list[str]):
    def __init__(self, words: list[str]) -> None:
        super().__init__(words)
        self._indexed = frozenset(words)

    def __contains__(self, value: object) -> bool:
        if type(value) is str:
            return value in self._indexed
        return super().__contains__(value)
