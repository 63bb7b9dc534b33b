"""JSON Patch (RFC 6902) applied to a resource's JSON: add, remove, replace, move, copy,
test. Small enough to keep here rather than add a dependency."""

from __future__ import annotations

import copy
from typing import Any

from flask_babel import gettext as _

from his.fhirapi.wire import is_number


class PatchError(ValueError):
    def __init__(self, message: str, *, index: int, failed_test: bool = False):
        super().__init__(message)
        self.index = index
        self.failed_test = failed_test


def _tokens(pointer: Any, index: int) -> list[str]:
    if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
        raise PatchError(
            _("Operation %(n)s: the path must be a JSON Pointer such as /name/0.") % {"n": index},
            index=index,
        )
    if pointer == "":
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(container: list, part: str, index: int, *, adding: bool) -> int:
    if adding and part == "-":
        return len(container)
    if not is_number(part) or (len(part) > 1 and part.startswith("0")):
        raise PatchError(
            _("Operation %(n)s: %(part)s is not an array index.") % {"n": index, "part": part},
            index=index,
        )
    position = int(part)
    if position > len(container) or (not adding and position == len(container)):
        raise PatchError(
            _("Operation %(n)s: index %(part)s is out of range.") % {"n": index, "part": part},
            index=index,
        )
    return position


def _parent(doc: Any, tokens: list[str], index: int) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, index, adding=False)]
        else:
            raise PatchError(
                _("Operation %(n)s: the path does not exist.") % {"n": index}, index=index
            )
    return node


def _get(doc: Any, tokens: list[str], index: int) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens, index)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, index, adding=False)]
    raise PatchError(_("Operation %(n)s: the path does not exist.") % {"n": index}, index=index)


def _remove(doc: Any, tokens: list[str], index: int) -> Any:
    if not tokens:
        raise PatchError(
            _("Operation %(n)s: cannot remove the whole resource.") % {"n": index}, index=index
        )
    parent = _parent(doc, tokens, index)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, index, adding=False))
    raise PatchError(_("Operation %(n)s: the path does not exist.") % {"n": index}, index=index)


def _add(doc: Any, tokens: list[str], value: Any, index: int, *, replace: bool = False) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens, index)
    last = tokens[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise PatchError(
                _("Operation %(n)s: the path does not exist.") % {"n": index}, index=index
            )
        parent[last] = value
    elif isinstance(parent, list):
        position = _index(parent, last, index, adding=not replace)
        if replace:
            parent[position] = value
        else:
            parent.insert(position, value)
    else:
        raise PatchError(_("Operation %(n)s: the path does not exist.") % {"n": index}, index=index)
    return doc


def apply_patch(document: Any, operations: Any) -> Any:
    """The patched copy of ``document``; PatchError (naming the operation) otherwise."""
    if not isinstance(operations, list):
        raise PatchError(_("A JSON Patch is an array of operations."), index=0)
    doc = copy.deepcopy(document)
    for n, op in enumerate(operations):
        if not isinstance(op, dict) or "op" not in op:
            raise PatchError(_("Operation %(n)s has no op.") % {"n": n}, index=n)
        kind = op["op"]
        path = _tokens(op.get("path"), n)
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(_("Operation %(n)s needs a value.") % {"n": n}, index=n)
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]), n)
        elif kind == "remove":
            _remove(doc, path, n)
        elif kind == "replace":
            doc = _add(doc, path, copy.deepcopy(op["value"]), n, replace=True)
        elif kind in ("move", "copy"):
            source = _tokens(op.get("from"), n)
            if kind == "move" and path[: len(source)] == source and path != source:
                raise PatchError(
                    _("Operation %(n)s: cannot move a value into itself.") % {"n": n}, index=n
                )
            value = (
                _remove(doc, source, n) if kind == "move" else copy.deepcopy(_get(doc, source, n))
            )
            doc = _add(doc, path, value, n)
        elif kind == "test":
            if _get(doc, path, n) != op["value"]:
                raise PatchError(
                    _("Operation %(n)s: the test failed.") % {"n": n}, index=n, failed_test=True
                )
        else:
            raise PatchError(
                _("Operation %(n)s: unknown op %(op)s.") % {"n": n, "op": kind}, index=n
            )
    return doc
