"""The one-pass reply reader (fleet.xapi._xml) says exactly what the tree reader
(fleet.xapi._xml_tree: defusedxml, to_data, the error walk) says, for every reply: the same data,
or the same exception with the same message, reason and xpath. Documents are generated with
every shape that matters (repeated and item-numbered elements, error forms at any depth,
namespaces, comments, CDATA, entities, whitespace) and also cut or spliced at random."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from certfleet.fleet.errors import BadReplyError, CommandError, NotSupportedError
from certfleet.fleet.xapi import _xml, _xml_tree

CA_SHOW = ("Security", "Certificates", "CA", "Show")

Reader = Callable[[bytes, Any], Any]


def outcome(read: Reader, content: bytes, path: Sequence[Any]) -> Any:
    try:
        return ("data", read(content, path))
    except Exception as exc:  # compared whole: type, message and the error's fields
        return ("error", type(exc).__name__, str(exc), getattr(exc, "reason", None),
                getattr(exc, "xpath", None))


def same(content: bytes, path: Sequence[Any], kind: str) -> None:
    fast = getattr(_xml, f"parse_{kind}_reply")
    tree = getattr(_xml_tree, f"parse_{kind}_reply")
    assert outcome(fast, content, path) == outcome(tree, content, path)


# ------------------------------------------------------------------- generated documents

NAMES = ["Details", "Fingerprint", "Status", "Network", "Reason", "XPath", "Error", "Success",
         "Result", "A", "B", "ns:A"]
TEXTS = st.sampled_from(["", "  ", "ab", " x y ", "&lt;&amp;&gt;", "<![CDATA[<raw>]]>",
                         "a<!-- note -->b", "a<?pi data?>b", "\n  Illegal value\n", "&#233;",
                         "No action detected in document", "Unknown command", "True"])
PLAIN_ATTRS = [' item="1"', ' item="2"', ' item=""', ' status="OK"', ' status="Warning"',
               ' error="False"', ' maxOccurrence="n"', ' xmlns="urn:x"', ' xmlns:ns="urn:y"',
               ' ns:item="3"']
ERROR_ATTRS = [' status="Error"', ' status="ParameterError"', ' error="True"', ' error="true"']


@st.composite
def elements(draw: st.DrawFn, plain: bool, names: list[str], depth: int = 0) -> str:
    tag = draw(st.sampled_from(names if plain else [*names, "ActionError"]))
    attrs = "".join(draw(st.lists(st.sampled_from(
        PLAIN_ATTRS if plain else PLAIN_ATTRS + ERROR_ATTRS), max_size=3, unique=True)))
    if depth > 3 or draw(st.integers(0, 2)) == 0:
        text = draw(TEXTS)
        return f"<{tag}{attrs}/>" if not text and draw(st.booleans()) else \
            f"<{tag}{attrs}>{text}</{tag}>"
    children = draw(st.lists(elements(plain, names, depth + 1), min_size=plain,
                                  max_size=4))
    gap = draw(st.sampled_from(["", "\n  ", "<!-- c -->", " tail "]))
    return f"<{tag}{attrs}>{gap}{gap.join(children)}{gap}</{tag}>"


@st.composite
def documents(draw: st.DrawFn, root: str | None = None, names: list[str] = NAMES) -> bytes:
    """Any reply, or (one time in two) a plain one: the wanted root, no error form, not cut."""
    plain = draw(st.booleans())
    if root is None or not plain:
        root = draw(st.sampled_from(["Command", "Status", "Configuration", "EmptyResult",
                                     "ActionError", "html"]))
    children = draw(st.lists(elements(plain, names, 1), min_size=plain, max_size=4))
    head = draw(st.sampled_from(['<?xml version="1.0"?>\n', "", "  ", "<!-- first -->"]))
    declare = ' xmlns:ns="urn:y"' if plain else ""  # else an unbound prefix (a parse error)
    data = f'{head}<{root}{declare}>{"".join(children)}</{root}>\n'.encode()
    cut = None if plain else draw(st.one_of(st.none(), st.integers(0, len(data))))
    if cut is not None:  # a reply cut short, or with bytes spliced in
        data = data[:cut] + draw(st.sampled_from([b"", b"<", b"&bogus;", b"\xff", b"</x>"]))
    return data


PATH_NAMES = ["Network", "Status", "A", "B", "Details", "ns:A"]
PATHS = st.sampled_from([
    ("Status",), ("Status", "Network"), ("Status", "Network", 1), ("Status", "Network", 2),
    ("Status", "Network", 2, "Status"), ("Status", "A", "B"), ("Status", "Details", 1, "A"),
    ("Configuration", "Network", 1, "A"), ("Command",), ("EmptyResult",), (), ("Status", 1),
    ("Status", "A.B"), ("Status", "*"), ("Status", "{urn:x}A"), ("Status", "A", 2, "B"),
    ("Status", "Network", 1, "Network", 2), ("Status", "Details", "Status", "A"),
])


@settings(max_examples=250, deadline=None)
@given(documents("Command"))
@example(b"<Command><R status='OK'><Details item='1'><Fingerprint>ab</Fingerprint></Details>"
         b"</R><R/></Command>")
@example(b"<Command>text only</Command>")
@example(b"<Command><R status=''/></Command>")
def test_command_replies_read_the_same(content: bytes) -> None:
    same(content, CA_SHOW, "command")


@settings(max_examples=250, deadline=None)
@given(st.data(), PATHS)
@example(b'<Status><Network item="2"><Status>b</Status></Network>'
         b'<Network><Status>a</Status></Network></Status>', ("Status", "Network", 1, "Status"))
@example(b'<Status><Network item=""><Status>b</Status></Network></Status>',
         ("Status", "Network", 1))
@example(b"<Status><A><C/></A><A><B>x</B></A></Status>", ("Status", "A", "B"))
def test_get_replies_read_the_same(data: Any, path: tuple[Any, ...]) -> None:
    root = path[0] if path and isinstance(path[0], str) else None
    content = data if isinstance(data, bytes) else data.draw(documents(root, PATH_NAMES))
    same(content, path, "get")


NARROW = st.recursive(
    st.builds(lambda tag, item, text: f"<{tag}{item}>{text}</{tag}>",
              st.sampled_from(["Network", "Status"]), st.sampled_from(["", ' item="1"',
                                                                        ' item="2"']),
              st.sampled_from(["", "x", " y "])),
    lambda inner: st.builds(lambda tag, item, children: f"<{tag}{item}>{''.join(children)}</{tag}>",
                            st.sampled_from(["Network", "Status"]),
                            st.sampled_from(["", ' item="1"', ' item="2"']),
                            st.lists(inner, min_size=1, max_size=4)),
    max_leaves=12,
)
NARROW_PATHS = st.lists(st.one_of(st.sampled_from(["Network", "Status"]), st.integers(1, 2)),
                        max_size=5).map(lambda rest: ("Status", *rest))


@settings(max_examples=300, deadline=None)
@given(st.lists(NARROW, max_size=4), NARROW_PATHS)
def test_get_replies_walk_items_the_same(children: list[str], path: tuple[Any, ...]) -> None:
    # two names, two item numbers: most walks find something, many only on a later sibling
    same(f"<Status>{''.join(children)}</Status>".encode(), path, "get")


@settings(max_examples=150, deadline=None)
@given(documents("Configuration"))
@example(b"<Configuration><Success/></Configuration>")
@example(b"<Other><Success>yes</Success></Other>")
def test_configuration_replies_read_the_same(content: bytes) -> None:
    same(content, ("Network", 1, "IEEE8021X", "Mode"), "configuration")


# ------------------------------------------------------------------- fixed hostile forms

HOSTILE = [
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><Command>&b;'
    b"</Command>",
    b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><Command>&e;</Command>',
    b'<!DOCTYPE x SYSTEM "http://127.0.0.1:9/x.dtd"><Command/>',
    b'<!DOCTYPE x [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><Command/>',
    b'<!DOCTYPE x [<!ENTITY u SYSTEM "x" NDATA n>]><Command/>',
    b"<Command>&undefined;</Command>",
    b"<Command><a>" * 40 + b"x" + b"</a>" * 40 + b"</Command>",
    b"<Command>" + b"<a>" * 70 + b"</a>" * 70 + b"</Command>",
]


@pytest.mark.parametrize("content", HOSTILE)
def test_hostile_and_bounded_forms_read_the_same(content: bytes) -> None:
    same(content, CA_SHOW, "command")
    same(content.replace(b"Command", b"Status"), ("Status", "a"), "get")


def test_a_dtd_is_refused_by_the_one_pass_reader_itself() -> None:
    with pytest.raises(BadReplyError, match=r"hostile XML reply to Security.*\(DTDForbidden\)"):
        _xml._read(HOSTILE[0], "Security/Certificates/CA/Show")


def test_limits_are_enforced_by_the_one_pass_reader_itself(monkeypatch: Any) -> None:
    monkeypatch.setattr(_xml, "MAX_ELEMENTS", 10)
    with pytest.raises(BadReplyError, match="more than 10 elements"):
        _xml._read(b"<Command>" + b"<a/>" * 10 + b"</Command>", "x")
    _xml._read(b"<Command>" + b"<a/>" * 9 + b"</Command>", "x")
    monkeypatch.setattr(_xml, "MAX_DEPTH", 3)
    with pytest.raises(BadReplyError, match="nested more than 3 deep"):
        _xml._read(b"<a><b><c><d/></c></b></a>", "x")


def test_error_forms_reach_the_tree_reader_with_their_words() -> None:
    reply = (b'<Command><R status="OK"><Details item="1"><Fingerprint>ab</Fingerprint>'
             b'</Details></R><X><ActionError><Reason>No action detected in document</Reason>'
             b"</ActionError></X></Command>")
    with pytest.raises(NotSupportedError) as info:
        _xml.parse_command_reply(reply, CA_SHOW)
    assert info.value.reason == "No action detected in document"
    with pytest.raises(CommandError, match="status 'Warning'"):
        _xml.parse_command_reply(b'<Command><R status="Warning"/></Command>', CA_SHOW)


def test_success_replies_do_not_load_the_tree_reader() -> None:
    # the one pass is the whole job for a plain success: defusedxml is not even imported
    code = (
        "import sys\n"
        "from certfleet.fleet.xapi import _xml\n"
        "_xml.parse_command_reply(b'<Command><R status=\"OK\"><D item=\"1\">x</D></R></Command>',"
        " ('A',))\n"
        "_xml.parse_get_reply(b'<Status><SystemUnit><P>x</P></SystemUnit></Status>',"
        " ('Status', 'SystemUnit'))\n"
        "_xml.parse_configuration_reply(b'<Configuration><Success/></Configuration>', ('A',))\n"
        "print(sorted(m for m in sys.modules if 'defusedxml' in m or m.endswith('_xml_tree')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_a_request_document_without_parameters_is_built_once_and_stays_correct() -> None:
    first = _xml.build_command(list(CA_SHOW))
    assert first is _xml.build_command(CA_SHOW)
    assert first == _xml._build_command(CA_SHOW, None, None)
    assert _xml.build_command(CA_SHOW, {}) == first
    with pytest.raises(Exception, match="not a valid xAPI name"):
        _xml.build_command(("A", "B><C"))
    # the run's CA, the same for every device: built once, escaped as ever
    pem = "-----BEGIN CERTIFICATE-----\nMIIB</body>&\n-----END CERTIFICATE-----\n"
    add = ("Security", "Certificates", "CA", "Add")
    assert _xml.build_command(add, None, pem) is _xml.build_command(add, None, pem)
    assert _xml.build_command(add, None, pem) == _xml._build_command(add, None, pem)
    assert b"MIIB&lt;/body&gt;&amp;" in _xml.build_command(add, None, pem)


def test_a_document_holding_a_private_key_is_never_kept() -> None:
    bundle = ("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
              "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n")
    add = ("Security", "Certificates", "Services", "Add")
    before = _xml._shared_command.cache_info().currsize
    assert _xml.build_command(add, None, bundle) == _xml._build_command(add, None, bundle)
    assert _xml.build_command(add, None, bundle) is not _xml.build_command(add, None, bundle)
    assert _xml._shared_command.cache_info().currsize == before
