"""fleet.xapi._xml — the putxml/getxml document format, client side.

Building: documents are made with ElementTree, never by string concatenation, so a device name
or certificate field can never change the structure of what is sent (ElementTree escapes text).
Parsing: one pass of expat over the reply builds its data and refuses what defusedxml refuses (a
DTD, entity declarations, external references) and what exceeds :data:`MAX_ELEMENTS` /
:data:`MAX_DEPTH`; a reply holding any of the error forms RoomOS uses (reference:
roomos-local-xapi.md §2.5) goes to the tree reader (:mod:`fleet.xapi._xml_tree`), which says
which it is:

* an ``ActionError`` with ``Reason``, as the root or anywhere below it (§7);
* an element with ``status="Error"`` (``Reason`` / ``XPath`` children) or
  ``status="ParameterError"``;
* a leaf with ``error="True"`` (illegal configuration value);
* a ``Configuration`` reply without ``<Success/>``.

What a device answers for a command it does not have (ActionError "No action detected in
document", ``Unknown command``) is :class:`~fleet.errors.NotSupportedError`; a getxml of a path
it does not have is a root ``<EmptyResult .../>``, read as absent (§7).
"""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any
from xml.parsers import expat

from ..errors import BadReplyError, ParameterError
from .transport import ParamValue

__all__ = [
    "MAX_DEPTH",
    "MAX_ELEMENTS",
    "PARSE_OFF_LOOP_BYTES",
    "build_command",
    "build_configuration",
    "getxml_location",
    "parse_command_reply",
    "parse_configuration_reply",
    "parse_get_reply",
]

PathPart = str | int


def _safe_tag(name: str) -> str:
    # xAPI path parts and parameter names are fixed identifiers chosen by certfleet, not user
    # data; refuse anything that would not be a plain XML name rather than trust it.
    if not name or not (name[0].isalpha() or name[0] == "_") or not all(
        c.isalnum() or c in "_-." for c in name
    ):
        raise ParameterError(f"not a valid xAPI name: {name!r}", reason="invalid name")
    return name


def build_command(
    path: Sequence[str], params: Mapping[str, ParamValue] | None = None, body: str | None = None
) -> bytes:
    """``<Command><A><B command="True"><Param>v</Param>...<body>...</body></B></A></Command>``.

    Array parameters repeat the element with ``item="n"``; the multiline payload goes in the
    lowercase ``<body>`` element (RoomOS is case-sensitive there). A command without
    parameters is the same document on every device: built once (see _SHARED_BODY_MAX).
    """
    if not params and (body is None or (len(body) <= _SHARED_BODY_MAX
                                         and "PRIVATE KEY" not in body)):
        return _shared_command(tuple(path), body)
    return _build_command(path, params, body)


#: a parameterless document (CA Show, CA Add of the run's CA...) is the same on every device:
#: built once. Never one holding a private key (kept no longer than its call), nor a large one.
_SHARED_BODY_MAX = 64 * 1024


@functools.lru_cache(maxsize=256)
def _shared_command(path: tuple[str, ...], body: str | None) -> bytes:
    return _build_command(path, None, body)


def _build_command(
    path: Sequence[str], params: Mapping[str, ParamValue] | None, body: str | None
) -> bytes:
    if not path:
        raise ParameterError("empty xAPI command path", reason="empty path")
    root = ET.Element("Command")
    node = root
    for part in path:
        node = ET.SubElement(node, _safe_tag(part))
    node.set("command", "True")
    for name, value in (params or {}).items():
        if isinstance(value, (str, int)):
            ET.SubElement(node, _safe_tag(name)).text = str(value)
        else:
            for index, item in enumerate(value, start=1):
                child = ET.SubElement(node, _safe_tag(name), item=str(index))
                child.text = item
    if body is not None:
        ET.SubElement(node, "body").text = body
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document


def build_configuration(path: Sequence[PathPart], value: str) -> bytes:
    """``<Configuration><Network item="1"><IEEE8021X><Mode>On</Mode>...`` for one leaf.

    An integer in the path is the index of the element before it (``("Network", 1, "Mode")``).
    """
    root = ET.Element("Configuration")
    node = root
    for part in path:
        if isinstance(part, int):
            node.set("item", str(part))
        else:
            node = ET.SubElement(node, _safe_tag(part))
    if node is root:
        raise ParameterError("empty configuration path", reason="empty path")
    node.text = value
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document


def getxml_location(path: Sequence[PathPart]) -> str:
    """``("Status", "Network", 1, "IEEE8021X")`` → ``/Status/Network/IEEE8021X``.

    How getxml addresses one item of a list is not confirmed (reference §6), so indexes are left
    out of the location and the item is picked from the reply by its ``item`` attribute.
    """
    return "/" + "/".join(str(p) for p in path if not isinstance(p, int))


# ---------------------------------------------------------------------------- parsing


#: the most elements a reply may hold: a device's whole certificate store is a few thousand
MAX_ELEMENTS = 100_000
#: the deepest nesting a reply may have: RoomOS documents are about ten levels deep
MAX_DEPTH = 64
#: replies larger than this are parsed in a worker thread, not on the event loop
PARSE_OFF_LOOP_BYTES = 256 * 1024


class _TooBig(Exception):
    pass


class _Hostile(Exception):
    """A DTD, an entity declaration or an external reference: refused where expat meets it,
    before anything is declared or expanded. The name is defusedxml's for the same refusal."""


class _NotPlain(Exception):
    """Not a plain success (an error form, say): the reply goes to the tree reader."""


def _refuse_dtd(*_: object) -> None:
    raise _Hostile("DTDForbidden")


def _refuse_entity(*_: object) -> None:
    raise _Hostile("EntitiesForbidden")


def _refuse_external(*_: object) -> int:
    raise _Hostile("ExternalReferenceForbidden")


#: the plain xAPI names a getxml path is walked by here (anything else: the tree reader)
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")

#: (tag, item index or None) per level below the root
_Steps = tuple[tuple[str, str | None], ...]


class _Reply:
    """What one pass over a reply found: the root's tag and data, the first child's data and
    ``status``, and the data at ``steps`` (a getxml path below the root) when it is there."""

    __slots__ = ("first", "first_status", "found", "root", "root_tag", "target")

    def __init__(self) -> None:
        self.root_tag = ""
        self.root: Any = ""
        self.first: Any = None
        self.first_status: str | None = None
        self.found = False
        self.target: Any = None


def _read(content: bytes, where: str, steps: _Steps = ()) -> _Reply:
    """One pass of expat over ``content``: builds the data :func:`_xml_tree.to_data` would
    (leaves ``str`` stripped; repeated or ``item``-numbered children ``list``), refuses what
    defusedxml refuses and what exceeds :data:`MAX_ELEMENTS` / :data:`MAX_DEPTH`, and raises
    :class:`_NotPlain` at the first error form (``ActionError``, ``status="Error"`` or
    ``"ParameterError"``, ``error="True"``), which the tree reader then reports."""
    if not content.strip():
        raise BadReplyError(f"empty reply to {where}")
    reply = _Reply()
    # frames of the open elements: (tag, numbered, children's data, chain). A tag whose data
    # is a list is "listed" (element data is never a list otherwise): later ones append.
    stack: list[tuple[str, bool, dict[str, Any], bool]] = []
    push, pop = stack.append, stack.pop
    # the text since the last tag: a leaf's whole text when its end tag comes (expat calls
    # texts.append itself, no Python frame per piece of text)
    texts: list[str] = []
    clear = texts.clear
    count = 0
    want = len(steps)
    level = 0  # how many steps the open chain of matching elements has matched
    matching = True  # False once the matched chain ended: the first match at a level wins
    limit_depth, limit_count = MAX_DEPTH, MAX_ELEMENTS

    def start(tag: str, attrs: dict[str, str]) -> None:
        nonlocal count, level
        count += 1
        depth = len(stack)
        if depth >= limit_depth:
            raise _TooBig(f"elements nested more than {limit_depth} deep")
        if count > limit_count:
            raise _TooBig(f"more than {limit_count:,} elements")
        if "}" in tag:  # a namespaced name, spelled as ElementTree does
            tag = "{" + tag
        numbered = False
        if attrs:
            status = attrs.get("status")
            if status == "Error" or status == "ParameterError":
                raise _NotPlain
            error = attrs.get("error")
            if error is not None and error.lower() == "true":
                raise _NotPlain
            numbered = "item" in attrs
            if depth == 1 and not stack[0][2]:  # the root's first child
                reply.first_status = status
        if tag == "ActionError":
            raise _NotPlain
        chain = False
        if matching and depth == level + 1 and level < want:
            name, index = steps[level]
            if tag == name and (index is None or attrs.get("item", "1") == index):
                level += 1
                chain = True
        push((tag, numbered, {}, chain))
        clear()

    def end(_: str) -> None:
        nonlocal matching
        tag, numbered, data, chain = pop()
        value: Any = data if data else "".join(texts).strip()
        clear()
        if chain and matching:  # the deepest element matched so far: the walk ends here
            matching = False
            if level == want:
                reply.found = True
                reply.target = value
        if not stack:
            reply.root_tag = tag
            reply.root = value
            return
        siblings = stack[-1][2]
        if not siblings and len(stack) == 1:  # the root's first child: a command's result
            reply.first = value
        known = siblings.get(tag)
        if known is None:
            siblings[tag] = [value] if numbered else value
        elif type(known) is list:
            known.append(value)
        else:
            siblings[tag] = [known, value]

    parser = expat.ParserCreate(None, "}")  # namespaces as ElementTree's parser reads them
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_entity
    parser.UnparsedEntityDeclHandler = _refuse_entity
    parser.ExternalEntityRefHandler = _refuse_external
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = texts.append
    try:
        parser.Parse(content, False)
        parser.Parse(b"", True)
    except _TooBig as exc:
        raise too_big(where, exc) from None
    except _Hostile as exc:
        raise hostile(where, str(exc)) from None
    except expat.ExpatError as exc:
        raise not_xml(where, exc, content) from None
    return reply


# what both readers (this one and fleet.xapi._xml_tree) say of a reply they refuse

def too_big(where: str, why: Exception) -> BadReplyError:
    return BadReplyError(f"refused the reply to {where}: {why}")


def hostile(where: str, what: str) -> BadReplyError:
    return BadReplyError(f"refused a hostile XML reply to {where} ({what}); nothing was expanded")


def not_xml(where: str, why: Exception, content: bytes) -> BadReplyError:
    snippet = content[:60].decode("utf-8", "replace")
    return BadReplyError(f"reply to {where} is not XML ({why}): {snippet!r}")


def _tree() -> Any:
    from . import _xml_tree

    return _xml_tree


def parse_command_reply(content: bytes, path: Sequence[str]) -> dict[str, Any]:
    """Check a putxml command reply and return the data of its ``...Result`` element."""
    where = "/".join(path)
    try:
        reply = _read(content, where)
    except _NotPlain:
        reply = None
    if (reply is None or reply.root_tag != "Command" or reply.first is None
            or reply.first_status not in (None, "OK")):
        result: dict[str, Any] = _tree().parse_command_reply(content, path)
        return result
    first = reply.first
    return first if isinstance(first, dict) else {}


def _steps(path: Sequence[PathPart]) -> _Steps | None:
    """``("Status", "Network", 2, "IEEE8021X")`` → ``(("Network", "2"), ("IEEE8021X", None))``;
    None for a path the one-pass reader does not walk (not plain names)."""
    steps: list[tuple[str, str | None]] = []
    rest = list(path[1:])
    while rest:
        part = rest.pop(0)
        if not isinstance(part, str) or not _PLAIN_NAME.fullmatch(part):
            return None
        index = str(rest.pop(0)) if rest and isinstance(rest[0], int) else None
        steps.append((part, index))
    return tuple(steps)


def parse_get_reply(content: bytes, path: Sequence[PathPart]) -> Any:
    """The subtree at ``path`` of a getxml reply; ``None`` when the device has no such node."""
    where = "/".join(str(p) for p in path)
    steps = _steps(path)
    top = path[0] if path else None
    if steps is None or not (top is None or isinstance(top, str)):
        return _tree().parse_get_reply(content, path)
    try:
        reply = _read(content, where, steps)
    except _NotPlain:
        return _tree().parse_get_reply(content, path)
    if reply.root_tag == "EmptyResult":  # the device has no such node (ce11.20.1.7 lab capture)
        return None
    if top is not None and reply.root_tag != top:
        return _tree().parse_get_reply(content, path)
    if not steps:
        return reply.root
    return reply.target if reply.found else None


def parse_configuration_reply(content: bytes, path: Sequence[PathPart]) -> None:
    where = "/".join(str(p) for p in path)
    try:
        reply = _read(content, where)
    except _NotPlain:
        reply = None
    if reply is None or not (isinstance(reply.root, dict) and "Success" in reply.root):
        _tree().parse_configuration_reply(content, path)
