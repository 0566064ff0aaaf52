"""XML on the wire: parsing request documents safely (defusedxml), building and
serialising replies (xml.etree only), and the tree helpers getxml needs."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import defusedxml
import defusedxml.ElementTree as SafeET

XML_CONTENT_TYPE = "text/xml; charset=UTF-8"
NO_ACTION = "No action detected in document"

_SEGMENT = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[(\d+)\])?$")


class WireError(Exception):
    """A request document that cannot be used; the message is the ActionError Reason."""


class XmlSyntaxError(WireError):
    """A body that is not well-formed XML: RoomOS answers HTTP 400, text/plain,
    "XML syntax error: " and the parser's message."""


def parse_document(body: bytes) -> ET.Element:
    """Parse a putxml body. DTDs, entities and external references are refused."""
    if not body.strip():
        raise XmlSyntaxError("no element found: line 1, column 0")
    try:
        root: ET.Element = SafeET.fromstring(body, forbid_dtd=True)
    except defusedxml.DTDForbidden as exc:
        raise WireError("Document type declarations are not allowed") from exc
    except defusedxml.EntitiesForbidden as exc:
        raise WireError("Entity declarations are not allowed") from exc
    except defusedxml.ExternalReferenceForbidden as exc:
        raise WireError("External references are not allowed") from exc
    except ET.ParseError as exc:
        raise XmlSyntaxError(str(exc)) from exc
    return root


def serialize(root: ET.Element) -> bytes:
    """`<?xml version="1.0"?>` then the indented document, as RoomOS formats replies
    (empty elements as `<X/>`; " />" cannot occur elsewhere since ">" is escaped).

    The text is what `ET.indent(root, space="  ")` then `ET.tostring(root)` give, written
    by one walk that leaves `root` as it is (xml.etree's generic writer, namespaces and
    all, was a twentieth of the simulator's CPU per request); a tree that walk does not
    cover (a namespaced or non-string name, a comment) goes through xml.etree itself."""
    try:
        parts: list[str] = []
        _write_indented(root, 0, parts)
        if root.tail:
            parts.append(_escape_cdata(root.tail))
        text = "".join(parts)
    except _Unusual:
        ET.indent(root, space="  ")
        text = ET.tostring(root, encoding="unicode")
    text = text.replace(" />", "/>")
    return f'<?xml version="1.0"?>\n{text}\n'.encode()


class _Unusual(Exception):
    """A tree `_write_indented` leaves to xml.etree."""


# xml.etree's own escaping, so that both writers give the same characters
_escape_cdata: Callable[[str], str] = ET._escape_cdata  # type: ignore[attr-defined]
_escape_attrib: Callable[[str], str] = ET._escape_attrib  # type: ignore[attr-defined]
_INDENTS = ["\n" + "  " * level for level in range(64)]


def _plain(name: object) -> bool:
    return type(name) is str and not name.startswith("{")


def _write_indented(element: ET.Element, level: int, out: list[str]) -> None:
    """`element` at depth `level` as ET.indent + ET.tostring write it, but its tail."""
    tag = element.tag
    if not _plain(tag) or level + 1 >= len(_INDENTS):
        raise _Unusual
    out.append("<" + tag)
    for key, value in element.attrib.items():
        if not _plain(key) or type(value) is not str:
            raise _Unusual
        out.append(f' {key}="{_escape_attrib(value)}"')
    text = element.text
    if text is not None and type(text) is not str:
        raise _Unusual
    if len(element):
        inner = _INDENTS[level + 1]
        out.append(">" + _escape_cdata(text if text and text.strip() else inner))
        last = len(element) - 1
        for index, child in enumerate(element):
            _write_indented(child, level + 1, out)
            tail = child.tail
            if tail is not None and type(tail) is not str:
                raise _Unusual
            if not tail or not tail.strip():
                tail = _INDENTS[level] if index == last else inner
            out.append(_escape_cdata(tail))
        out.append(f"</{tag}>")
    elif text:
        out.append(f">{_escape_cdata(text)}</{tag}>")
    else:
        out.append(" />")


def action_error(reason: str) -> ET.Element:
    root = ET.Element("ActionError")
    ET.SubElement(root, "Reason").text = reason
    return root


def leaf(parent: ET.Element, tag: str, text: str, **attrib: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrib)
    element.text = text
    return element


# --------------------------------------------------------------------------- trees


@dataclass(frozen=True)
class Segment:
    """One step of an xAPI path: a node name and, for list nodes, an item index."""

    name: str
    item: int | None = None

    @classmethod
    def parse(cls, text: str) -> Segment:
        match = _SEGMENT.match(text)
        if match is None:
            raise ValueError(f"bad path segment {text!r}")
        return cls(match.group(1), int(match.group(2)) if match.group(2) else None)

    def __str__(self) -> str:
        return self.name if self.item is None else f"{self.name}[{self.item}]"


def parse_path(text: str) -> list[Segment] | None:
    """`/Status/Network/1/IEEE8021X` or `Configuration/Network[1]/IEEE8021X` → segments.

    A purely numeric segment is the item index of the segment before it. None when the
    path is not well formed."""
    segments: list[Segment] = []
    for part in (p for p in text.strip().split("/") if p):
        if part.isdigit() and segments and segments[-1].item is None:
            segments[-1] = Segment(segments[-1].name, int(part))
            continue
        try:
            segments.append(Segment.parse(part))
        except ValueError:
            return None
    return segments


def ensure_path(
    root: ET.Element, segments: Iterable[Segment], max_occurrence: str | None = "n"
) -> ET.Element:
    """Find or create the element at `segments` below `root`; list nodes get an item
    attribute (and maxOccurrence unless it is None)."""
    node = root
    for segment in segments:
        found = None
        for child in node:
            if child.tag == segment.name and child.get("item") == (
                None if segment.item is None else str(segment.item)
            ):
                found = child
                break
        if found is None:
            attrib = {}
            if segment.item is not None:
                attrib["item"] = str(segment.item)
                if max_occurrence is not None:
                    attrib["maxOccurrence"] = max_occurrence
            found = ET.SubElement(node, segment.name, attrib)
        node = found
    return node


def sort_tree(element: ET.Element) -> ET.Element:
    """Children in the order RoomOS prints them: by name (ASCII), then item number."""
    children = sorted(element, key=lambda c: (c.tag, int(c.get("item", "0"))))
    for child in children:
        element.remove(child)
        sort_tree(child)
    element.extend(children)
    return element


def select(root: ET.Element, segments: list[Segment]) -> ET.Element:
    """A copy of `root` trimmed to `segments` (case-insensitive names); empty when no match."""
    out = ET.Element(root.tag, root.attrib)
    for child in _select_children(root, segments):
        out.append(child)
    return out


def _select_children(node: ET.Element, segments: list[Segment]) -> list[ET.Element]:
    if not segments:
        return [_copy(child) for child in node]
    head, rest = segments[0], segments[1:]
    kept: list[ET.Element] = []
    for child in node:
        if child.tag.lower() != head.name.lower():
            continue
        if head.item is not None and child.get("item") != str(head.item):
            continue
        if not rest:
            kept.append(_copy(child))
            continue
        below = _select_children(child, rest)
        if below:
            trimmed = ET.Element(child.tag, child.attrib)
            trimmed.extend(below)
            kept.append(trimmed)
    return kept


def _copy(element: ET.Element) -> ET.Element:
    clone = ET.Element(element.tag, element.attrib)
    clone.text = element.text
    clone.extend(_copy(child) for child in element)
    return clone
