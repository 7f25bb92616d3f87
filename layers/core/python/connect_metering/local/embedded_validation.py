"""moto's validation of an UpdateExpression, made cheaper for the embedded runtime without changing what
it decides: moto deep-copies the expression's syntax tree and runs ten walkers over the copy (checks that
raise, resolvers that substitute values and item attributes), and these patches change how the copy is
made, how the walkers step through it, and which checks are run again on inputs they already passed.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from moto.dynamodb.parsing import validators
from moto.dynamodb.parsing.ast_nodes import (  # type: ignore[attr-defined]
    DepthFirstTraverser,
    Expression,
    Node,
    UpdateExpressionFunction,
)
from moto.dynamodb.parsing.validators import (
    ActionCountValidator,
    OverlappingPathsValidator,
    UpdateHashRangeKeyValidator,
    Validator,
)


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
    kind: Any = type(walker)
    return _walk(walker, node, child_id, _processed_classes(kind), _child_hook(kind))


def _walk(
    walker: DepthFirstTraverser, node: Any, child_id: int, processed: dict[type, bool], hook: Any
) -> Any:
    """One node of ``_traverse``, with what depends on the walker's class alone looked up once per walk:
    ``processed`` (whether it processes each node class) and its child hook."""
    parent_node = node.parent
    children = node.children
    if children is not None:
        for position, child in enumerate(children):
            if hook is not None:
                hook(walker, node, position)
            is_node = _NODE_CLASSES.get(type(child))
            if is_node is None:
                is_node = _is_node(type(child))
            if is_node:
                _walk(walker, child, position, processed, hook)
    node_kind = type(node)
    processes = processed.get(node_kind)
    if processes is None:
        processes = processed[node_kind] = issubclass(node_kind, walker.nodes_to_be_processed())
    if processes:
        node = walker.process(node)
        node.parent = parent_node
        if parent_node:
            parent_node.children[child_id] = node
    return node


_NODE_CLASSES: dict[type, bool] = {}


def _is_node(kind: type) -> bool:
    found = _NODE_CLASSES.get(kind)
    if found is None:
        found = _NODE_CLASSES[kind] = issubclass(kind, Node)
    return found


@functools.cache
def _processed_classes(walker_class: type) -> dict[type, bool]:
    """Whether walkers of this class process each node class, filled in as classes are met (a walker's
    kinds are fixed by its class)."""
    return {}


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
def planned_tree_copies() -> Iterator[None]:
    """moto's validator deep-copies the UpdateExpression's syntax tree on every request, and the tree is
    the one object moto's remembered parse returns for the text. Its shape is read once (``_CopyPlan``:
    each node's class, its attributes in order, which of them point to which node) and each copy is
    built from that: new instances of the same classes holding the same values, lists and links as
    ``copy.deepcopy`` would give them. A tree holding anything else than moto's plain node classes,
    lists of its own and atomic values has no plan and is copied as before."""
    original = vars(validators)["deepcopy"]
    plans: dict[int, tuple[Any, _CopyPlan | None]] = {}  # the tree is kept, so its id is not reused

    def deepcopy(value: Any, memo: Any = None) -> Any:
        if memo is not None:
            return original(value, memo)
        known = plans.get(id(value))
        if known is None or known[0] is not value:
            if len(plans) >= _CHECKS_REMEMBERED:
                plans.clear()
            known = plans[id(value)] = (value, _CopyPlan.of(value))
        plan = known[1]
        return original(value) if plan is None else plan.copy()

    with mock.patch.object(validators, "deepcopy", deepcopy):
        yield


class _CopyPlan:
    """How to build a deep copy of one syntax tree: the nodes in the order met from the root, and for
    each its attributes in their order (``values``: those copied as they are, with a placeholder where
    a link goes), its links to nodes (``links``: attribute, node number) and its lists (``lists``:
    attribute, and per item a node number or -1 and the value)."""

    def __init__(self, nodes: list[Any]) -> None:
        numbers = {id(node): number for number, node in enumerate(nodes)}
        self.classes: tuple[Any, ...] = tuple(type(node) for node in nodes)
        self.values: list[dict[str, Any]] = []
        self.links: list[tuple[tuple[str, int], ...]] = []
        self.lists: list[tuple[tuple[str, tuple[tuple[int, Any], ...]], ...]] = []
        for node in nodes:
            attributes = node.__dict__
            self.values.append({name: _leaf(value) for name, value in attributes.items()})
            self.links.append(
                tuple(
                    (name, numbers[id(value)]) for name, value in attributes.items() if _is_node(type(value))
                )
            )
            self.lists.append(
                tuple(
                    (name, tuple(_item(inner, numbers) for inner in value))
                    for name, value in attributes.items()
                    if type(value) is list
                )
            )

    @classmethod
    def of(cls, root: Any) -> _CopyPlan | None:
        nodes = _plain_nodes(root)
        return None if nodes is None else cls(nodes)

    def copy(self) -> Any:
        nodes = [kind.__new__(kind) for kind in self.classes]
        for node, values, links, lists in zip(nodes, self.values, self.links, self.lists, strict=True):
            attributes = node.__dict__
            attributes.update(values)
            for name, number in links:
                attributes[name] = nodes[number]
            for name, items in lists:
                attributes[name] = [value if number < 0 else nodes[number] for number, value in items]
        return nodes[0]


def _leaf(value: Any) -> Any:
    return value if type(value) in _IMMUTABLE else None


def _item(value: Any, numbers: dict[int, int]) -> tuple[int, Any]:
    return (-1, value) if type(value) in _IMMUTABLE else (numbers[id(value)], None)


def _plain_nodes(root: Any) -> list[Any] | None:
    """Every node reachable from the root (itself first), or None when the tree holds anything a plan
    does not copy as ``copy.deepcopy`` would: a class with copy hooks of its own, a list met twice (the
    copy would share it), a list of lists, or any other object."""
    nodes: list[Any] = []
    met: set[int] = set()
    pending = [root]
    while pending:
        node = pending.pop(0)
        if id(node) in met:
            continue
        kind: Any = type(node)
        if not _plain_node_class(kind):
            return None
        met.add(id(node))
        nodes.append(node)
        for value in node.__dict__.values():
            inner = _linked(value, met)
            if inner is None:
                return None
            pending.extend(inner)
    return nodes


def _linked(value: Any, met: set[int]) -> list[Any] | None:
    """The nodes one attribute links to, or None when the plan cannot copy it (see ``_plain_nodes``)."""
    kind: Any = type(value)
    if kind in _IMMUTABLE:
        return []
    if kind is not list:
        return [value] if _plain_node_class(kind) else None
    if id(value) in met:
        return None
    met.add(id(value))
    kinds: list[Any] = [type(inner) for inner in value]
    if all(inner in _IMMUTABLE or _plain_node_class(inner) for inner in kinds):
        return [inner for inner in value if type(inner) not in _IMMUTABLE]
    return None


@contextmanager
def remembered_text_checks() -> Iterator[None]:
    """Three of moto's ten UpdateExpression walkers are checks that read nothing but the expression's
    syntax tree, the request's attribute names and the table's key attributes, and change nothing
    (each returns the node it was given, so the walk leaves the tree as it was): the count of clauses
    (``ActionCountValidator``), overlapping paths (``OverlappingPathsValidator``), and paths that name
    a key attribute (``UpdateHashRangeKeyValidator``). Once such a check has passed on a tree (the one
    object moto's remembered parse returns for a text) with the same inputs, it would pass again, so
    it is not run again; one that raised is never remembered and raises again next time. The other
    walkers, which read the values and the item, all run, in moto's order."""
    original_init = Validator.__init__
    passed: dict[tuple[Any, ...], Any] = {}  # what the check read -> the tree, kept alive with its id

    def init(validator: Validator, expression: Node, *args: Any, **kwargs: Any) -> None:
        original_init(validator, expression, *args, **kwargs)
        validator.__dict__["_embedded_tree"] = expression

    def validate(validator: Validator) -> Any:
        tree = validator.__dict__.get("_embedded_tree")
        node = validator.node_to_validate
        for walker in validator.processors:
            inputs = _text_check_inputs(walker)
            if inputs is None or tree is None:
                node = walker.traverse(node)
                continue
            key = (id(tree), *inputs)
            if key not in passed:
                node = walker.traverse(node)
                if len(passed) >= _CHECKS_REMEMBERED:
                    passed.clear()
                passed[key] = tree
        return node

    with mock.patch.multiple(Validator, __init__=init, validate=validate):
        yield


# Checks remembered as passed (a few per expression text the product writes).
_CHECKS_REMEMBERED = 4096


def _text_check_inputs(walker: DepthFirstTraverser) -> tuple[Any, ...] | None:
    """All that one of moto's text-only checks reads besides the tree, or None for any other walker."""
    kind = type(walker)
    if kind is ActionCountValidator:
        return (kind,)
    if kind is OverlappingPathsValidator:
        return (kind, _frozen(walker.expression_attribute_names))
    if kind is UpdateHashRangeKeyValidator:
        return (kind, tuple(walker.table_key_attributes), _frozen(walker.expression_attribute_names))
    return None


def _frozen(names: dict[str, str] | None) -> tuple[tuple[str, str], ...] | None:
    return None if names is None else tuple(sorted(names.items()))
