"""fleet.xapi.releases — what each RoomOS release (and product) has: commands with their
parameters and value spaces, configurations and statuses.

Data, not wire format: the model is read from ``releases.json`` (packaged next to this module),
which ``scripts/gen_release_model.py`` generates from Cisco's published per-release xAPI schemas.
Only the nodes certfleet and roomsim use are in it. Paths use the schema's spelling
(``"Network[1] IEEE8021X Mode"``, ``"Network[n] Wifi Status"``); lookups are case-insensitive
and also take ``"Network 1 IEEE8021X Mode"``, ``"Network/1/IEEE8021X/Mode"`` or a sequence
such as ``("Network", 1, "IEEE8021X", "Mode")``, with or without a leading ``Status`` /
``Configuration`` / ``Command`` (for the matching lookup).

Products are Cisco's internal codes (``"barents"``, ``"havella"``...): the schema says which
products have a node. ``product_code`` maps what a device reports to a code. A lookup with
``product=None`` (unknown product) finds a node any product has; when the schema gives the node
different value spaces on different products, the answer is what *every* such product accepts
(the parameters all variants have, the values all allow), so a client that does not know the
product sends nothing some product would refuse.
"""

from __future__ import annotations

import bisect
import functools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = [
    "SUPPORTED",
    "CommandSpec",
    "NodeSpec",
    "ParamSpec",
    "ReleaseModel",
    "Version",
    "model_for",
    "product_code",
    "product_names",
]

PathLike = str | Sequence[str | int]

# --------------------------------------------------------------------------- versions

_VERSION = re.compile(r"\s*(?:RoomOS\s*|ce|CE|TC|tc)?\s*(\d+(?:\.\d+)*)")
_MAX_PARTS = 4  # RoomOS numbers a release with at most four parts; a fifth is a build id


@dataclass(frozen=True, order=True)
class Version:
    """A RoomOS release number: ``(11, 24, 1, 5)``; compares numerically."""

    parts: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> Version | None:
        """``ce11.24.1.5.1234abcd``, ``RoomOS 11.24.1.5 1234abcd``, ``11.24.1``,
        ``ce9.15.17.4 ...``, ``26.4.1.3`` → the version; None when there is no number first."""
        match = _VERSION.match(text or "")
        if match is None:
            return None
        numbers = match[1].split(".")
        if len(numbers) > 1 and text[match.end():match.end() + 1].isalnum():
            numbers.pop()  # "ce11.24.1.5.1234abcd": the build id began with digits
        parts: list[int] = []
        for part in numbers:
            if len(parts) == _MAX_PARTS or len(part) > 5:
                break  # a build id that is all digits
            parts.append(int(part))
        return cls(tuple(parts)) if parts else None

    def __str__(self) -> str:
        return ".".join(str(p) for p in self.parts)


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class ParamSpec:
    """A command parameter or a configuration/status value space."""

    name: str
    required: bool
    kind: str  # "Literal" | "String" | "Integer"
    values: tuple[str, ...] | None  # Literal
    min_length: int | None
    max_length: int | None  # String
    minimum: int | None
    maximum: int | None  # Integer
    step: int | None = None  # Integer
    multiple: int = 1  # > 1: an array parameter taking up to this many values
    default: str | None = None

    def canonical(self, value: str) -> str | None:
        """The value as the schema spells it, or None when it is outside the value space.
        Literals match ignoring case (what devices do on the terminal; a client should
        still send the schema's spelling)."""
        if self.kind == "Literal":
            wanted = value.strip().lower()
            return next((v for v in self.values or () if v.lower() == wanted), None)
        if self.kind == "Integer":
            text = value.strip()
            if not re.fullmatch(r"-?\d+", text):
                return None
            number = int(text)
            if self.minimum is not None and number < self.minimum:
                return None
            if self.maximum is not None and number > self.maximum:
                return None
            if self.step and self.step > 1 and (number - (self.minimum or 0)) % self.step:
                return None
            return str(number)
        if self.min_length is not None and len(value) < self.min_length:
            return None
        if self.max_length is not None and len(value) > self.max_length:
            return None
        return value

    def accepts(self, value: str) -> bool:
        return self.canonical(value) is not None

    def describe(self) -> str:
        """The value space in words, for error messages: ``one of Auto, Later``."""
        if self.kind == "Literal":
            return "one of " + ", ".join(self.values or ())
        if self.kind == "Integer":
            return f"an integer from {self.minimum} to {self.maximum}"
        low, high = self.min_length or 0, self.max_length
        return f"a string of {low} to {high} characters" if high is not None else "a string"


@dataclass(frozen=True)
class CommandSpec:
    path: str
    params: Mapping[str, ParamSpec]
    multiline: bool
    products: frozenset[str]


@dataclass(frozen=True)
class NodeSpec:
    """A configuration or a status."""

    path: str
    value: ParamSpec | None
    products: frozenset[str]


# --------------------------------------------------------------------------- paths

_INDEXED = re.compile(r"^([A-Za-z0-9_-]+)\[([^\]]*)\]$")
_TOPS = {"command": "commands", "configuration": "configurations", "status": "statuses"}

Token = tuple[str, str | None]  # (name, index: "1", "n" or None)


def _tokens(path: PathLike) -> list[Token]:
    raw: list[str] = (re.split(r"[\s/.]+", path.strip(" /")) if isinstance(path, str)
                      else [str(p) for p in path])
    tokens: list[Token] = []
    for part in raw:
        if not part:
            continue
        indexed = _INDEXED.match(part)
        if indexed:
            tokens.append((indexed[1], indexed[2] or "n"))
        elif part.isdigit() and tokens and tokens[-1][1] is None:
            tokens[-1] = (tokens[-1][0], part)
        else:
            tokens.append((part, None))
    return tokens


def _key(tokens: Sequence[Token]) -> tuple[str, ...]:
    return tuple(name.lower() for name, _ in tokens)


def _index_fits(schema: str | None, asked: str | None) -> bool:
    # Network[1]: index 1 only (or none given); Network[n]: any index
    return asked is None or asked == "n" or schema in ("n", asked)


# --------------------------------------------------------------------------- the model


def _param(data: Mapping[str, Any]) -> ParamSpec:
    values = data.get("values")
    return ParamSpec(
        name=str(data.get("name", "")),
        required=bool(data.get("required", False)),
        kind=str(data["kind"]),
        values=tuple(values) if values is not None else None,
        min_length=data.get("min_length"),
        max_length=data.get("max_length"),
        minimum=data.get("minimum"),
        maximum=data.get("maximum"),
        step=data.get("step"),
        multiple=int(data.get("multiple") or 1),
        default=data.get("default"),
    )


def _intersect(specs: Sequence[ParamSpec]) -> ParamSpec:
    """What every variant accepts."""
    first = specs[0]
    if any(s.kind != first.kind for s in specs):
        return first
    values = first.values
    if values is not None:
        values = tuple(v for v in values if all(v in (s.values or ()) for s in specs))

    def tightest(items: list[int | None], pick: Any) -> int | None:
        known = [i for i in items if i is not None]
        return pick(known) if known else None

    return ParamSpec(
        name=first.name,
        required=any(s.required for s in specs),
        kind=first.kind,
        values=values,
        min_length=tightest([s.min_length for s in specs], max),
        max_length=tightest([s.max_length for s in specs], min),
        minimum=tightest([s.minimum for s in specs], max),
        maximum=tightest([s.maximum for s in specs], min),
        step=tightest([s.step for s in specs], max),
        multiple=min(s.multiple for s in specs),
        default=first.default if all(s.default == first.default for s in specs) else None,
    )


@dataclass(frozen=True)
class _Variant:
    products: frozenset[str]
    data: Mapping[str, Any]


@dataclass(frozen=True)
class _Node:
    path: str  # schema spelling
    tokens: tuple[Token, ...]
    variants: tuple[_Variant, ...]


@dataclass
class ReleaseModel:
    """One release's surface (see the module docstring)."""

    release: str
    products: frozenset[str]  # every product the release's schema knows
    source: str = ""
    _tables: dict[str, dict[tuple[str, ...], list[_Node]]] = field(
        default_factory=dict, repr=False, compare=False)
    #: the release's entries as releases.json has them, and the product sets they refer to:
    #: a table is indexed when it is first looked up, so loading the model costs a start-up
    #: little and a run indexes only the releases its devices run (issue 18)
    _raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _sets: Sequence[frozenset[str]] = field(default=(), repr=False, compare=False)
    #: answers already given: the tables never change, and a fleet run asks every device's
    #: release the same few questions (each command is checked before it is sent). Keyed by
    #: the path's words as _tokens reads them, so equal keys are equal questions.
    _answers: dict[tuple[str, PathLike, str | None], Any] = field(
        default_factory=dict, repr=False, compare=False)

    @property
    def version(self) -> Version:
        version = Version.parse(self.release)
        assert version is not None
        return version

    # -- lookups ----------------------------------------------------------------------

    def command(self, path: PathLike, product: str | None = None) -> CommandSpec | None:
        key = ("commands", path if isinstance(path, str) else tuple(map(str, path)), product)
        try:
            known: CommandSpec | None = self._answers[key]
            return known
        except KeyError:
            spec = self._answers[key] = self._command(path, product)
            return spec

    def _command(self, path: PathLike, product: str | None) -> CommandSpec | None:
        found = self._find("commands", path, product)
        if found is None:
            return None
        node, variants = found
        if len(variants) == 1:
            params = {p.name: p for p in (_param(d) for d in variants[0].data["params"])}
        else:
            per_variant = [{d["name"]: _param(d) for d in v.data["params"]} for v in variants]
            names = [n for n in per_variant[0] if all(n in pv for pv in per_variant)]
            params = {n: _intersect([pv[n] for pv in per_variant]) for n in names}
        return CommandSpec(
            path=node.path,
            params=MappingProxyType(params),
            multiline=all(bool(v.data.get("multiline")) for v in variants),
            products=frozenset().union(*(v.products for v in variants)),
        )

    def configuration(self, path: PathLike, product: str | None = None) -> NodeSpec | None:
        return self._node("configurations", path, product)

    def status(self, path: PathLike, product: str | None = None) -> NodeSpec | None:
        return self._node("statuses", path, product)

    def has_subtree(self, kind: str, path: PathLike, product: str | None = None) -> bool:
        """Whether any ``kind`` ("Status", "Configuration") leaf at or under ``path`` exists,
        e.g. ``has_subtree("Status", "Network 1 Wifi", "vecchio")`` is False."""
        table = self._table(_TOPS[kind.lower()])
        tokens = _strip_top(_tokens(path), kind)
        wanted = _key(tokens)
        for key, nodes in table.items():
            if key[:len(wanted)] != wanted:
                continue
            for node in nodes:
                if all(_index_fits(s[1], a[1]) for s, a in zip(node.tokens, tokens, strict=False)) \
                        and self._variants(node, product):
                    return True
        return False

    def paths(self, kind: str, product: str | None = None) -> Iterator[str]:
        """Every modelled ``kind`` ("Command", "Configuration", "Status") path the product has."""
        for nodes in self._table(_TOPS[kind.lower()]).values():
            for node in nodes:
                if self._variants(node, product):
                    yield node.path

    # -- internals --------------------------------------------------------------------

    def _table(self, name: str) -> dict[tuple[str, ...], list[_Node]]:
        table = self._tables.get(name)
        if table is None:  # first look-up (two threads may both build it: the same table)
            table = {}
            for path, entries in self._raw[name].items():
                tokens = tuple(_tokens(path))
                variants = tuple(_Variant(self._sets[e["products"]], e) for e in entries)
                table.setdefault(_key(tokens), []).append(_Node(path, tokens, variants))
            self._tables[name] = table
        return table

    def _node(self, table: str, path: PathLike, product: str | None) -> NodeSpec | None:
        key = (table, path if isinstance(path, str) else tuple(map(str, path)), product)
        try:
            known: NodeSpec | None = self._answers[key]
            return known
        except KeyError:
            spec = self._answers[key] = self._node_spec(table, path, product)
            return spec

    def _node_spec(self, table: str, path: PathLike, product: str | None) -> NodeSpec | None:
        found = self._find(table, path, product)
        if found is None:
            return None
        node, variants = found
        values = [_param(v.data["value"]) for v in variants if v.data.get("value")]
        value = None
        if values:
            value = values[0] if len(values) == 1 else _intersect(values)
        return NodeSpec(node.path, value, frozenset().union(*(v.products for v in variants)))

    def _variants(self, node: _Node, product: str | None) -> list[_Variant]:
        if product is None or product not in self.products:
            return list(node.variants)
        return [v for v in node.variants if product in v.products]

    def _find(self, table: str, path: PathLike, product: str | None
              ) -> tuple[_Node, list[_Variant]] | None:
        kind = next(k for k, t in _TOPS.items() if t == table)
        tokens = _strip_top(_tokens(path), kind)
        for node in self._table(table).get(_key(tokens), ()):
            if all(_index_fits(s[1], a[1]) for s, a in zip(node.tokens, tokens, strict=True)):
                variants = self._variants(node, product)
                if variants:
                    return node, variants
        return None


def _strip_top(tokens: list[Token], kind: str) -> list[Token]:
    if tokens and tokens[0][0].lower().removeprefix("x") == kind.lower():
        return tokens[1:]
    return tokens


# --------------------------------------------------------------------------- loading


@functools.cache
def _load() -> dict[str, ReleaseModel]:
    beside = Path(__file__).with_name("releases.json")  # installed or a source tree
    if beside.is_file():
        text = beside.read_text(encoding="utf-8")
    else:  # a zipped package: importlib.resources (imported only here) reads it
        from importlib import resources

        text = resources.files("certfleet.fleet.xapi").joinpath("releases.json").read_text(
            encoding="utf-8")
    data = json.loads(text)
    sets = [frozenset(s) for s in data["product_sets"]]
    return {
        release: ReleaseModel(release, sets[body["products"]], body.get("source", ""),
                              _raw={table: body[table] for table in _TOPS.values()}, _sets=sets)
        for release, body in data["releases"].items()
    }


@functools.cache
def _ordered() -> tuple[tuple[Version, ReleaseModel], ...]:
    pairs = [(Version.parse(r), m) for r, m in _load().items()]
    return tuple(sorted(((v, m) for v, m in pairs if v is not None), key=lambda p: p[0]))


SUPPORTED: tuple[str, ...] = tuple(m.release for _, m in _ordered())


def model_for(version: Version | str) -> ReleaseModel:
    """The newest modelled release at or below ``version`` (a device on 11.25.x gets
    11.24.4.1's model, one on 26.7 gets 26.4.1's); older than all of them: the oldest."""
    parsed = version if isinstance(version, Version) else Version.parse(version)
    if parsed is None:
        raise ValueError(f"not a RoomOS version: {version!r}")
    return _floor(parsed)


@functools.lru_cache(maxsize=256)
def _floor(version: Version) -> ReleaseModel:
    ordered = _ordered()
    position = bisect.bisect_right([v for v, _ in ordered], version)
    return ordered[max(position - 1, 0)][1]


# --------------------------------------------------------------------------- products

# What devices report in xStatus SystemUnit ProductPlatform / ProductId (ProductId is
# "Cisco <name>", older firmware "Cisco Webex <name>") → the schema's internal product code.
# Confirmed by the schema: Codec Pro → barents and Codec Plus → svea (the Platform values
# CODECPRO/CODECPLUS of "SystemUnit ProductPlatform Set" exist only on those codes), the
# Room 55 Dual / Room 70 platforms of the same command (svea_55d, svea_70s/d, barents_70s/d),
# Codec EQ → millennium (ROOMKITEQ, only on millennium), Room Navigator → vecchio (only
# vecchio has "SystemUnit TouchPanel Location", described as the Room Navigator's), and
# Room Kit Mini → havella (the SMTP Security variant whose description singles out the Room Kit
# Mini lists only havella). NOT confirmed by the schema (Cisco's code names as commonly
# known; check against a device before relying on them): every other row.
_PRODUCT_TABLE: tuple[tuple[str, str], ...] = (
    ("Codec Pro", "barents"),
    ("Room 70 Single G2", "barents_70s"),
    ("Room 70 Dual G2", "barents_70d"),
    ("Codec Plus", "svea"),
    ("Room 55 Dual", "svea_55d"),
    ("Room 70 Single", "svea_70s"),
    ("Room 70 Dual", "svea_70d"),
    ("Codec EQ", "millennium"),
    ("Room Kit EQ", "millennium"),
    ("Room Navigator", "vecchio"),
    ("Room Kit Mini", "havella"),
    # not confirmed by the schema:
    ("Room Kit Pro", "barents"),
    ("Room 70 Panorama", "barents_70i"),
    ("Room Panorama", "barents_82i"),
    ("Room Kit Plus", "svea"),
    ("Room Kit", "hopen"),
    ("Room 55", "spitsbergen"),
    ("Webex Board 55", "darling_10_55"),
    ("Webex Board 70", "darling_10_70"),
    ("Board 55S", "darling_15_55"),
    ("Board 70S", "darling_15_70"),
    ("Board 85S", "darling_15_85"),
    ("Room Bar", "davinci"),
    ("Room Bar Pro", "brooklyn"),
    ("Board Pro", "helix_55"),
    ("Board Pro 55", "helix_55"),
    ("Board Pro 75", "helix_75"),
    ("Board Pro 55 G2", "felix_55"),
    ("Board Pro 75 G2", "felix_75"),
    ("Desk Pro", "polaris"),
    ("Desk", "bandai"),
    ("Desk Mini", "octavio"),
)


def _loose(text: str) -> str:
    lowered = re.sub(r"[^a-z0-9]", "", (text or "").lower())
    for prefix in ("cisco", "webex"):
        lowered = lowered.removeprefix(prefix)
    return lowered


_BY_NAME = {_loose(name): code for name, code in _PRODUCT_TABLE}
# "Webex Board 55" keeps its "webex" (it is part of the name, not a brand prefix)
_BY_NAME.update({re.sub(r"[^a-z0-9]", "", n.lower()): c for n, c in _PRODUCT_TABLE
                 if n.startswith("Webex ")})


@functools.lru_cache(maxsize=256)  # a fleet reports a handful of products, device after device
def product_code(product_id: str, platform: str | None = None) -> str | None:
    """The internal product code for what a device reports (``ProductPlatform`` is tried
    first, then ``ProductId``), e.g. ``"Cisco Room Kit Mini"`` → ``"havella"``; None when
    unknown — then every lookup answers for any product."""
    for text in (platform, product_id):
        if not text:
            continue
        exact = re.sub(r"[^a-z0-9]", "", text.lower()).removeprefix("cisco")
        code = _BY_NAME.get(exact) or _BY_NAME.get(_loose(text))
        if code is not None:
            return code
    return None


def product_names(code: str) -> tuple[str, ...]:
    """The product names (as devices report them) that map to ``code``."""
    return tuple(name for name, c in _PRODUCT_TABLE if c == code)
