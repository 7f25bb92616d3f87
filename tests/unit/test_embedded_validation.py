"""The planned copy of an UpdateExpression's syntax tree (local/embedded_validation.py) is the copy
``copy.deepcopy`` makes: the same classes, attributes in the same order, equal values, links into the
copy and nothing shared with the tree; a tree a plan cannot copy faithfully is deep-copied as before."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from moto.dynamodb.parsing import validators
from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

from connect_metering.local.embedded_validation import _CopyPlan, planned_tree_copies
from tests.syntax_trees import assert_links_point_into, tree_shape

pytestmark = pytest.mark.unit

EXPRESSIONS = (
    "ADD ev :events SET expires_at = :expires",
    "ADD ev :events SET expires_at = :expires, late_shard = :shard, late_at = :late_at",
    "ADD events :events SET environment = :environment",
    "SET #a = if_not_exists(#a, :z) + :one, b = list_append(b, :l) REMOVE c[1], d.e DELETE s :s",
    "SET m.#in.z = :v, m.#in.x[2] = :w - :one",
)


def objects(node: Any) -> list[Any]:
    """Every node and list of a tree, found from the root down."""
    found: list[Any] = []
    pending = [node]
    while pending:
        current = pending.pop()
        if isinstance(current, list):
            found.append(current)
            pending.extend(current)
        elif hasattr(current, "__dict__"):
            found.append(current)
            pending.extend(inner for name, inner in vars(current).items() if name != "parent")
    return found


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_a_planned_copy_is_a_deep_copy(expression: str) -> None:
    tree = UpdateExpressionParser.make(expression)
    plan = _CopyPlan.of(tree)
    assert plan is not None
    first, second = plan.copy(), plan.copy()
    assert tree_shape(first) == tree_shape(copy.deepcopy(tree)) == tree_shape(tree)
    originals = {id(thing) for thing in objects(tree)}
    assert not any(id(thing) in originals for thing in objects(first))  # nothing shared with the tree
    assert not {id(thing) for thing in objects(first)} & {id(thing) for thing in objects(second)}
    assert_links_point_into(first)


def test_the_validator_copies_by_plan_and_trees_without_one_as_before() -> None:
    tree = UpdateExpressionParser.make(EXPRESSIONS[0])
    odd = UpdateExpressionParser.make(EXPRESSIONS[2])
    odd.children[0].note = {"not": "a node"}  # a dict: no plan, deep-copied
    shared = UpdateExpressionParser.make(EXPRESSIONS[2])
    shared.children[1].children = shared.children[0].children  # one list met twice: no plan
    assert _CopyPlan.of(odd) is None
    assert _CopyPlan.of(shared) is None
    with planned_tree_copies():
        deepcopy_of = vars(validators)["deepcopy"]  # what moto's validator calls
        for _ in range(2):
            assert tree_shape(deepcopy_of(tree)) == tree_shape(copy.deepcopy(tree))
            odd_copy = deepcopy_of(odd)
            assert odd_copy.children[0].note == {"not": "a node"}
            assert odd_copy.children[0].note is not odd.children[0].note
            shared_copy = deepcopy_of(shared)
            assert shared_copy.children[1].children is shared_copy.children[0].children
    assert vars(validators)["deepcopy"] is copy.deepcopy  # restored
