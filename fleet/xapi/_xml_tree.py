"""fleet.xapi._xml_tree — the reference reader of putxml/getxml replies: defusedxml builds an
ElementTree, then :func:`to_data` and :func:`raise_for_errors` walk it.

:mod:`fleet.xapi._xml` reads every reply in one pass over expat and comes here only for a reply
that is not a plain success (an error form, a wrong root, a missing result): this reader then
raises exactly what it always raised. It is also what the one-pass reader is tested against
(tests/unit/test_xml_reader.py). defusedxml is imported here only, so a run whose replies are
all successes never loads it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from ..errors import BadReplyError, CommandError, NotSupportedError, ParameterError
from ._xml import MAX_DEPTH, MAX_ELEMENTS, hostile, not_xml, too_big

__all__ = [
    "parse_command_reply",
    "parse_configuration_reply",
    "parse_get_reply",
    "raise_for_errors",
    "refusal",
    "to_data",
]

PathPart = str | int


class _TooBig(Exception):
    pass


class _BoundedBuilder(ET.TreeBuilder):
    """A tree builder that stops the parse at :data:`MAX_ELEMENTS` elements or
    :data:`MAX_DEPTH` levels (a reply of millions of tiny elements costs a gigabyte of
    memory; a deep one, a RecursionError in whatever walks it)."""

    def __init__(self) -> None:
        super().__init__()
        self._elements = 0
        self._depth = 0

    def start(self, tag: Any, attrs: Any) -> ET.Element:
        self._elements += 1
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _TooBig(f"elements nested more than {MAX_DEPTH} deep")
        if self._elements > MAX_ELEMENTS:
            raise _TooBig(f"more than {MAX_ELEMENTS:,} elements")
        return super().start(tag, attrs)

    def end(self, tag: Any) -> ET.Element:
        self._depth -= 1
        return super().end(tag)


def _parse(content: bytes, where: str) -> ET.Element:
    if not content.strip():
        raise BadReplyError(f"empty reply to {where}")
    try:
        parser = SafeET.DefusedXMLParser(target=_BoundedBuilder(), forbid_dtd=True)
        parser.feed(content)
        root: ET.Element = parser.close()
    except _TooBig as exc:
        raise too_big(where, exc) from None
    except DefusedXmlException as exc:
        raise hostile(where, type(exc).__name__) from exc
    except ET.ParseError as exc:
        raise not_xml(where, exc, content) from exc
    return root


def to_data(element: ET.Element) -> Any:
    """Element → str (leaf) or dict; repeated / ``item``-numbered children become lists."""
    children = list(element)
    if not children:
        return (element.text or "").strip()
    data: dict[str, Any] = {}
    listed: set[str] = set()
    for child in children:
        value = to_data(child)
        tag = child.tag
        if "item" in child.attrib or tag in listed:
            if tag in data and tag not in listed:
                data[tag] = [data[tag]]
            data.setdefault(tag, [])
            data[tag].append(value)
            listed.add(tag)
        elif tag in data:
            data[tag] = [data[tag], value]
            listed.add(tag)
        else:
            data[tag] = value
    return data


def _text(element: ET.Element | None) -> str | None:
    if element is None:
        return None
    return "".join(element.itertext()).strip() or None


#: the reasons a device gives for a command it does not have (reference §2.5, §7)
_ABSENT_REASONS = frozenset({"no action detected in document", "unknown command"})


def refusal(reason: str) -> type[CommandError]:
    return NotSupportedError if reason.lower() in _ABSENT_REASONS else CommandError


def raise_for_errors(root: ET.Element, where: str) -> None:
    action = root if root.tag == "ActionError" else root.find(".//ActionError")
    if action is not None:  # anywhere: a root one and one nested in <Command> both occur
        reason = _text(action.find("Reason")) or "ActionError without a reason"
        raise refusal(reason)(f"device refused the document: {reason}", xpath=where,
                               reason=reason)
    for element in root.iter():
        status = element.get("status")
        if status == "Error":
            reason = _text(element.find("Reason")) or _text(element.find("Error")) or "error"
            xp = _text(element.find("XPath"))
            raise refusal(reason)(reason, xpath=xp or where, reason=reason)
        if status == "ParameterError":
            reason = _text(element.find("Reason")) or "invalid or missing parameter"
            raise ParameterError(f"parameter error: {reason}", xpath=where, reason=reason)
        if element.get("error", "").lower() == "true":
            reason = _text(element) or "illegal value"
            raise ParameterError(f"{element.tag}: {reason}", xpath=where, reason=reason)


def parse_command_reply(content: bytes, path: Sequence[str]) -> dict[str, Any]:
    """Check a putxml command reply and return the data of its ``...Result`` element."""
    where = "/".join(path)
    root = _parse(content, where)
    raise_for_errors(root, where)
    if root.tag != "Command":
        raise BadReplyError(f"reply to {where} has root <{root.tag}>, expected <Command>")
    results = list(root)
    if not results:
        raise BadReplyError(f"reply to {where} holds no result element")
    result = results[0]
    if result.get("status", "OK") != "OK":
        raise CommandError(f"status {result.get('status')!r}", xpath=where)
    data = to_data(result)
    return data if isinstance(data, dict) else {}


def parse_get_reply(content: bytes, path: Sequence[PathPart]) -> Any:
    """The subtree at ``path`` of a getxml reply; ``None`` when the device has no such node."""
    where = "/".join(str(p) for p in path)
    root = _parse(content, where)
    raise_for_errors(root, where)
    if root.tag == "EmptyResult":  # the device has no such node (ce11.20.1.7 lab capture)
        return None
    top = str(path[0]) if path else root.tag
    if root.tag != top:
        raise BadReplyError(f"reply to getxml {where} has root <{root.tag}>, expected <{top}>")
    node: ET.Element | None = root
    rest = list(path[1:])
    while rest and node is not None:
        part = rest.pop(0)
        if rest and isinstance(rest[0], int):
            index = str(rest.pop(0))
            node = next(
                (c for c in node.findall(str(part)) if c.get("item", "1") == index), None
            )
        else:
            node = node.find(str(part))
    if node is None:
        return None
    return to_data(node)


def parse_configuration_reply(content: bytes, path: Sequence[PathPart]) -> None:
    where = "/".join(str(p) for p in path)
    root = _parse(content, where)
    raise_for_errors(root, where)
    if root.find("Success") is None:
        raise BadReplyError(f"configuration reply for {where} has no <Success/>")
