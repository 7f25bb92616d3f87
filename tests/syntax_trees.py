"""moto's expression syntax trees as plain data, to compare a copy of a tree with ``copy.deepcopy``'s."""

from __future__ import annotations

from typing import Any


def tree_shape(node: Any) -> Any:
    """A tree as data: classes, attribute names in order, values; a parent link by its class (a link
    back up would recurse forever, and which object it names is checked apart)."""
    if isinstance(node, list):
        return [tree_shape(inner) for inner in node]
    if hasattr(node, "__dict__"):
        return (
            type(node).__name__,
            [
                (name, type(inner).__name__ if name == "parent" else tree_shape(inner))
                for name, inner in vars(node).items()
            ],
        )
    return node


def assert_links_point_into(tree: Any) -> None:
    """Every child's parent link names its parent in ``tree`` itself (a copy links into the copy)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in getattr(node, "children", None) or []:
            if hasattr(child, "children"):
                assert child.parent is node
                stack.append(child)
