"""How big a YAML document really is once its aliases are followed, before anything copies it.

YAML aliases let a few lines stand for a huge tree: ten anchors of ten aliases each are ten
billion values ("billion laughs"), and an alias inside the node it names is an endless loop. The
settings loader copies and validates the whole tree, so such a file would hang `wirewatch check`
and the live reload, or end in a RecursionError traceback (both found by
tests/test_fuzz_config.py). ruamel has no limit of its own, so the size is computed here without
expanding anything: one walk over the distinct nodes, each node's expanded size remembered.
"""

from __future__ import annotations

from collections.abc import Iterator

from ruamel.yaml.comments import CommentedMap, CommentedSeq

__all__ = ["MAX_EXPANSION", "MAX_FLOW_DEPTH", "expansion_problem", "flow_depth_problem"]

MAX_FLOW_DEPTH = 100
"""Nesting of [ ] and { } collections: ruamel's scanner takes time quadratic in it (1,600 levels
took 11 s before its parser ran out of stack), and no configuration needs more than a few."""

MAX_EXPANSION = 10
"""How many times its written size a document may grow by aliases (beyond a floor of
`_FLOOR` values): ordinary use of anchors (one shared chat list) stays far below."""
_FLOOR = 100_000


def flow_depth_problem(text: str) -> tuple[int, int, str] | None:
    """(line, column, message) of the first bracket nested deeper than MAX_FLOW_DEPTH, or None.

    A rough scan, on purpose: it skips quoted strings and comments and counts brackets
    everywhere else, which is exact for flow collections and can only over-count inside a block
    scalar full of unclosed brackets, more than any real configuration holds."""
    depth = 0
    quote = ""
    line, column = 1, 0
    previous = "\n"
    index = 0
    while index < len(text):
        char = text[index]
        column += 1
        if char == "\n":
            line, column = line + 1, 0
        if quote:
            if char == "\\" and quote == '"':
                index += 1
                column += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#" and previous in " \t\n":
            end = text.find("\n", index)
            index = len(text) if end < 0 else end
            previous = "#"
            continue
        elif char in "[{":
            depth += 1
            if depth > MAX_FLOW_DEPTH:
                return line, column, f"collections nested more than {MAX_FLOW_DEPTH} deep"
        elif char in "]}":
            depth = max(0, depth - 1)
        previous = char
        index += 1
    return None


def _children(node: object) -> Iterator[object]:
    if isinstance(node, CommentedMap):
        yield from node.values()
    elif isinstance(node, CommentedSeq):
        yield from node


def expansion_problem(root: CommentedMap) -> tuple[str, str] | None:
    """(top-level key, message) for the first section that aliases blow up or loop; None when
    the document is of reasonable size."""
    sizes: dict[int, int] = {}
    distinct = 0
    for key, value in root.items():
        try:
            size, new = _expanded_size(value, sizes)
        except _Loop:
            return str(key), "a YAML alias refers to a node that contains it (an endless loop)"
        distinct += new
        if size > max(_FLOOR, MAX_EXPANSION * max(distinct, 1)):
            return str(key), (
                f"YAML aliases expand this to {size} values, from {distinct} written: refused "
                f"(more than {MAX_EXPANSION} times)"
            )
    return None


class _Loop(Exception):
    pass


def _expanded_size(node: object, sizes: dict[int, int]) -> tuple[int, int]:
    """(values the node stands for, distinct containers newly walked), iteratively: a deeply
    nested document must not exhaust the stack here either."""
    if not isinstance(node, CommentedMap | CommentedSeq):
        return 1, 0
    walked = 0
    in_progress: set[int] = set()
    stack: list[tuple[object, bool]] = [(node, False)]
    while stack:
        current, children_done = stack.pop()
        identity = id(current)
        if children_done:
            sizes[identity] = 1 + sum(
                sizes[id(child)] if isinstance(child, CommentedMap | CommentedSeq) else 1
                for child in _children(current)
            )
            in_progress.discard(identity)
            continue
        if identity in sizes:
            continue
        if identity in in_progress:
            raise _Loop
        in_progress.add(identity)
        walked += 1
        stack.append((current, True))
        for child in _children(current):
            if isinstance(child, CommentedMap | CommentedSeq) and id(child) not in sizes:
                if id(child) in in_progress:
                    raise _Loop
                stack.append((child, False))
    return sizes[id(node)], walked
