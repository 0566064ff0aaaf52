"""fleet.inventory.yaml_nodes — reading an inventory's YAML as nodes that know their line.

The file is composed (never constructed) so that every problem names its line; nesting is
bounded (:data:`_MAX_DEPTH`), ``<<`` merge keys are applied by hand, and every mapping entry and
list item an alias expands to is charged to a budget proportional to the file's size, so that a
"merge bomb" fails at once instead of exhausting memory. :class:`_YamlReader` collects problems
rather than stopping at the first.
"""

from __future__ import annotations

from typing import Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import InventoryError

try:
    from yaml import CSafeLoader as _YamlLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _YamlLoader  # type: ignore[assignment]

_T_STR: Final = "tag:yaml.org,2002:str"
_T_INT: Final = "tag:yaml.org,2002:int"
_T_FLOAT: Final = "tag:yaml.org,2002:float"
_T_NULL: Final = "tag:yaml.org,2002:null"
_T_BOOL: Final = "tag:yaml.org,2002:bool"
_T_MERGE: Final = "tag:yaml.org,2002:merge"
_T_MAP: Final = "tag:yaml.org,2002:map"
_T_SEQ: Final = "tag:yaml.org,2002:seq"
#: scalar tags whose text is taken as written (so ``C: NO`` stays "NO", ``username: 1234`` "1234")
_TEXT_TAGS: Final = frozenset(
    {
        _T_STR,
        _T_INT,
        _T_BOOL,
        "tag:yaml.org,2002:float",
        "tag:yaml.org,2002:timestamp",
    }
)
#: deeper than this is not an inventory (and libyaml's composer recurses on the C stack)
_MAX_DEPTH: Final = 32
#: ``<<`` merge keys: how many mappings one merge may reach through merges of merges; and how
#: many mapping entries and list items the whole file may expand to, counting every use of an
#: alias (a base plus one per byte of text: without aliases a file is smaller than that; every
#: ordinary use of an alias costs bytes, a "merge bomb" of ``<<: [*a, *a, ...]`` or a long
#: list used by every device does not)
_MAX_MERGE_DEPTH: Final = 32
_BUDGET_BASE: Final = 100_000


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _T_NULL:
        return "nothing"
    if node.tag in (_T_INT, _T_FLOAT):
        return "a number"
    if node.tag == _T_BOOL:
        return "true/false"
    return "text"


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _T_NULL


#: a mapping's entries by key: (key node, value node)
_Entries = dict[str, tuple[Node, Node]]


class _YamlReader:
    """Problems, budget and the node readers of one pass over one file."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.problems: list[InventoryError] = []
        self._budget = _BUDGET_BASE
        self._merge_line = 0  # the line of the outermost << being expanded

    # -- reporting

    def problem(self, line: int | None, key: str | None, message: str) -> None:
        self.problems.append(InventoryError(message, file=self.display, line=line, key=key))

    def fail(self, message: str, line: int | None = None) -> InventoryError:
        return InventoryError(message, file=self.display, line=line)


    def _raise(self) -> None:
        seen: set[tuple[int, str, str]] = set()
        unique: list[InventoryError] = []
        for item in self.problems:
            marker = (item.line or 0, item.key or "", item.reason)
            if marker not in seen:
                seen.add(marker)
                unique.append(item)
        unique.sort(key=lambda p: p.line or 0)
        if len(unique) == 1:
            raise unique[0]
        raise InventoryError(
            f"{len(unique)} problems; the first: {unique[0]}", file=self.display, problems=unique
        )

    def _compose(self, text: str) -> Node | None:
        try:
            self._check_depth(text)
            node: Node | None = yaml.compose(text, Loader=_YamlLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            if "nesting depth" in (exc.problem or ""):
                # libyaml's own limit (PyYAML >= 6.0.4) can fire before certfleet's own check
                raise self.fail(f"nested more than {_MAX_DEPTH} levels deep", line) from None
            detail = exc.problem or exc.context or "invalid YAML"
            if exc.context and exc.problem:
                detail = f"{exc.problem} ({exc.context})"
            raise self.fail(f"YAML syntax error: {detail}", line) from None
        except yaml.reader.ReaderError as exc:
            line = text[: exc.position].count("\n") + 1
            char = exc.character
            code = ord(char) if isinstance(char, str) and len(char) == 1 else char
            shown = f"U+{code:04X}" if isinstance(code, int) else repr(code)
            raise self.fail(f"YAML error: {exc.reason} ({shown})", line) from None
        except yaml.YAMLError as exc:
            raise self.fail(f"YAML error: {exc}") from None
        return node

    def _check_depth(self, text: str) -> None:
        depth = 0
        for event in yaml.parse(text, Loader=_YamlLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > _MAX_DEPTH:
                    line = int(event.start_mark.line) + 1 if event.start_mark else None
                    raise self.fail(f"nested more than {_MAX_DEPTH} levels deep", line)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1

    def _mapping(
        self, node: MappingNode, path: str, seen: tuple[int, ...] = ()
    ) -> _Entries:
        """The entries of a mapping: duplicate keys reported, ``<<`` merge keys applied.

        ``seen`` is the chain of mappings this one is being merged into; its length bounds the
        depth of merges of merges, and every entry a merge reaches is charged to the file's
        budget, so that nested ``<<: [*a, *a, ...]`` fails at once instead of growing ninefold
        per level.
        """
        entries: _Entries = {}
        merged: _Entries = {}
        if node.tag != _T_MAP:
            self.problem(_line(node), path or None, f"unsupported YAML tag {node.tag!r}")
        if seen:
            self._charge(node, self._merge_line, "this << merge expands")
        else:
            self._charge(node, _line(node), "this mapping, used as an *alias so often, expands")
        for knode, vnode in node.value:
            if knode.tag == _T_MERGE:
                if len(seen) >= _MAX_MERGE_DEPTH:
                    raise self.fail(
                        f"<< merges a mapping that merges another, more than "
                        f"{_MAX_MERGE_DEPTH} levels deep",
                        _line(knode),
                    )
                if not seen:
                    self._merge_line = _line(knode)
                self._merge_key(vnode, path, merged, (*seen, id(node)))
                continue
            kpath = path or "(top level)"
            if not isinstance(knode, ScalarNode) or _is_null(knode):
                self.problem(_line(knode), kpath, f"a key must be plain text, not {_kind(knode)}")
                continue
            key = str(knode.value)
            if key in entries:
                self.problem(
                    _line(knode),
                    f"{path}.{key}" if path else key,
                    f"duplicate key {key!r} (first on line {_line(entries[key][0])})",
                )
                continue
            entries[key] = (knode, vnode)
        for key, entry in merged.items():
            entries.setdefault(key, entry)
        return entries

    def _charge(self, node: MappingNode | SequenceNode, line: int, what: str) -> None:
        """Count ``node``'s entries against the file's budget (see ``_BUDGET_BASE``)."""
        self._budget -= len(node.value)
        if self._budget < 0:
            raise self.fail(
                f"{what} to too many entries for the size of the file (YAML aliases used "
                "many times over: write the settings out, or share them through defaults: "
                "and groups:)",
                line,
            )

    def _merge_key(self, vnode: Node, path: str, into: _Entries, seen: tuple[int, ...]) -> None:
        sources = vnode.value if isinstance(vnode, SequenceNode) else [vnode]
        for source in sources:
            if not isinstance(source, MappingNode):
                self.problem(
                    _line(source), path or None, "<< must merge a mapping (or a list of them)"
                )
                continue
            if id(source) in seen:
                continue
            for key, entry in self._mapping(source, path, seen).items():
                into.setdefault(key, entry)


    # -- values

    def _text(self, node: Node, path: str) -> str | None:
        """The text of a scalar as written, or None (reported) for anything else."""
        if isinstance(node, ScalarNode):
            if node.tag in _TEXT_TAGS:
                return str(node.value)
            if node.tag == _T_NULL:
                self.problem(_line(node), path, "has no value")
            else:
                self.problem(_line(node), path, f"unsupported YAML tag {node.tag!r}")
            return None
        self.problem(_line(node), path, f"must be text, not {_kind(node)}")
        return None

    def _nonempty(self, node: Node, path: str) -> str | None:
        value = self._text(node, path)
        if value is not None and not value.strip():
            self.problem(_line(node), path, "is empty")
            return None
        return value

    def _text_list(self, node: Node, path: str) -> list[tuple[str, Node]] | None:
        if not isinstance(node, SequenceNode):
            hint = ""
            if isinstance(node, ScalarNode) and node.tag in _TEXT_TAGS:
                hint = f" (for a single item write [{node.value}])"
            self.problem(_line(node), path, f"must be a list, not {_kind(node)}{hint}")
            return None
        if node.tag != _T_SEQ:
            self.problem(_line(node), path, f"unsupported YAML tag {node.tag!r}")
            return None
        self._charge(node, _line(node), "this list, used as an *alias so often, expands")
        out: list[tuple[str, Node]] = []
        ok = True
        for index, item in enumerate(node.value):
            value = self._nonempty(item, f"{path}[{index}]")
            if value is None:
                ok = False
            else:
                out.append((value, item))
        return out if ok else None
