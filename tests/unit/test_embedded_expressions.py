"""A condition parsed from its remembered shape (local/embedded_expressions.py) is the condition moto
parses itself: the same operators, deciding items the same way, the same names and values recorded, and
the same errors, whether the request is the first of its text or a later one."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from moto.dynamodb.comparisons import ConditionExpressionParser
from moto.dynamodb.models.dynamo_type import DynamoType, Item

from connect_metering.local.embedded_expressions import remembered_condition_shapes

pytestmark = pytest.mark.unit

NAMES = {"#s": "status", "#m": "map"}
VALUES: dict[str, Any] = {
    ":most": {"N": "2"},
    ":p": {"S": "pre"},
    ":a": {"S": "a"},
    ":b": {"S": "b"},
    ":n": {"N": "5"},
    ":t": {"S": "SS"},
}
CONDITIONS = (
    "attribute_not_exists(ev) OR size(ev) <= :most",
    "attribute_exists(pk) AND #s = :a",
    "NOT (#s IN (:a, :b)) AND begins_with(sk, :p)",
    "#m.slots[0] BETWEEN :most AND :n OR contains(ev, :a)",
    "(size(ev) > :most AND attribute_type(ev, :t)) OR #s <> :b",
    "#s = :a AND #s = :a",
)


def shape(value: Any) -> Any:
    """Operators as comparable data: class and attributes, all the way down."""
    if isinstance(value, list | tuple):
        return [shape(inner) for inner in value]
    if isinstance(value, dict):
        return {name: shape(inner) for name, inner in value.items()}
    if hasattr(value, "__dict__"):
        return (type(value).__name__, shape(vars(value)))
    return value


def parsed(expression: str, names: Any, values: Any) -> tuple[Any, ...]:
    """What moto's parse gives: the operators (or the error), and what it recorded on the parser."""
    parser = ConditionExpressionParser(expression, names, values)
    try:
        operators: Any = shape(parser.parse())
    except Exception as error:
        operators = (type(error).__name__, str(error))
    return operators, list(parser.expr_attr_names_found), list(parser.expr_attr_values_found)


def decisions(expression: str, values: dict[str, Any]) -> list[Any]:
    """How the condition decides a missing item and two stored ones (moto's error, where it raises one)."""
    items = [
        None,
        Item(DynamoType({"S": "h"}), None, {"pk": {"S": "h"}, "sk": {"S": "prefix"}, "status": {"S": "a"}}),
        Item(
            DynamoType({"S": "h"}),
            None,
            {
                "pk": {"S": "h"},
                "sk": {"S": "x"},
                "ev": {"SS": ["a", "b", "c"]},
                "status": {"S": "c"},
                "map": {"M": {"slots": {"L": [{"N": "3"}]}}},
            },
        ),
    ]
    operators = ConditionExpressionParser(expression, NAMES, values).parse()
    found: list[Any] = []
    for item in items:
        try:
            found.append(bool(operators.expr(item)))
        except Exception as error:
            found.append(type(error).__name__)
    return found


def test_remembered_shapes_give_moto_s_own_operators_and_decisions() -> None:
    other_values = {**VALUES, ":most": {"N": "3"}, ":a": {"S": "c"}, ":n": {"N": "1"}}
    plain = [parsed(text, NAMES, values) for values in (VALUES, other_values) for text in CONDITIONS]
    plain_decisions = [decisions(text, values) for values in (VALUES, other_values) for text in CONDITIONS]
    with remembered_condition_shapes():
        first = [parsed(text, NAMES, values) for values in (VALUES, other_values) for text in CONDITIONS]
        passes = ConditionExpressionParser._parse_paths
        with mock.patch.object(
            ConditionExpressionParser, "_parse_paths", autospec=True, side_effect=passes
        ) as spy:
            later = [parsed(text, NAMES, values) for values in (VALUES, other_values) for text in CONDITIONS]
        assert spy.call_count == 0  # later requests are built from the remembered shapes
        assert first == plain
        assert later == plain
        assert [decisions(text, values) for values in (VALUES, other_values) for text in CONDITIONS] == (
            plain_decisions
        )
    assert plain_decisions[0] != plain_decisions[len(CONDITIONS)]  # the values do decide


@pytest.mark.parametrize(
    ("expression", "names", "values"),
    [
        ("attribute_not_exists(ev) OR size(ev) <= :most", NAMES, {}),  # a value missing
        ("attribute_not_exists(ev) OR size(ev) <= :most", NAMES, None),  # no values at all
        ("#s = :a AND #s = :zz", NAMES, VALUES),  # the second of two values missing
        ("#nope = :a", NAMES, VALUES),  # a name missing
        ("#s = :a", None, VALUES),  # no names at all
        ("size = :a", NAMES, VALUES),  # a reserved word
        ("#s = = :a", NAMES, VALUES),  # bad syntax
        ("((#s = :a))", NAMES, VALUES),  # redundant parentheses
    ],
)
def test_errors_are_moto_s_on_every_request(expression: str, names: Any, values: Any) -> None:
    plain = parsed(expression, names, values)
    assert isinstance(plain[0], tuple)  # moto rejects it
    with remembered_condition_shapes():
        # a good request of the same text and names first, so that its shape is remembered
        parsed(expression, names, VALUES)
        assert parsed(expression, names, values) == plain
        assert parsed(expression, names, values) == plain


def test_the_same_text_with_other_names_is_its_own_condition() -> None:
    item = Item(DynamoType({"S": "h"}), None, {"pk": {"S": "h"}, "a": {"S": "x"}, "b": {"S": "y"}})
    with remembered_condition_shapes():
        for name, expected in (("a", True), ("b", False), ("a", True)):
            parser = ConditionExpressionParser("#n = :v", {"#n": name}, {":v": {"S": "x"}})
            assert parser.parse().expr(item) is expected
