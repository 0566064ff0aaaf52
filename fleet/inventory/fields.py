"""fleet.inventory.fields — one setting at a time: each key an inventory level may set, read
from its YAML node, checked, and stored in a :class:`~fleet.inventory.layers._Layer` (or
reported, with the layer marking the setting invalid so that later checks do not pile on)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode

from ..errors import InputError, SecretError
from ..secrets import SecretRef, parse_secret_ref
from .checks import _did_you_mean, _host_problem, _key_hint, _timezone_problem
from .layers import _CertLayer, _Layer
from .model import MAX_API_RATE_PER_MINUTE, TRANSPORTS, Verify, parse_verify
from .template import (
    _SAN_KINDS,
    KEY_TYPES,
    SUBJECT_KEYS,
    _san_problem,
    _subject_problem,
)
from .yaml_nodes import (
    _T_FLOAT,
    _T_INT,
    _T_NULL,
    _TEXT_TAGS,
    _Entries,
    _kind,
    _line,
    _YamlReader,
)

_COMMON_KEYS: Final = (
    "transport",
    "username",
    "password",
    "token",
    "verify",
    "certificate",
    "tags",
    "timezone",
    "port",
    "api_url",
    "api_verify",
    "api_rate_per_minute",
)
_DEVICE_ONLY_KEYS: Final = ("host", "device_id", "groups")
_DEVICE_KEYS: Final = _COMMON_KEYS + _DEVICE_ONLY_KEYS
_CERT_KEYS: Final = ("key", "subject", "san_dns", "san_ip", "san_email", "san_uri")
_TAG_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+-]*")


class _Fields(_YamlReader):
    """The readers of every setting (``_handlers``, by key)."""

    def __init__(self, path: Path, display: str) -> None:
        super().__init__(display)
        self.path = path
        self.base_dir = path.absolute().parent
        self.groups: dict[str, _Layer] = {}
        self._verify_cache: dict[str, Verify | str] = {}
        self._secret_cache: dict[str, SecretRef | str] = {}
        self._ints = SafeConstructor()
        self._unknown_reported: set[int] = set()  # id() of key nodes reported unknown
        self._handlers: dict[str, Callable[[_Layer, Node, str], None]] = {
            "transport": self._set_transport,
            "username": self._set_username,
            "password": self._set_secret,
            "token": self._set_secret,
            "verify": self._set_verify,
            "certificate": self._set_certificate,
            "tags": self._set_tags,
            "timezone": self._set_timezone,
            "port": self._set_port,
            "host": self._set_host,
            "device_id": self._set_device_id,
            "groups": self._set_groups,
            "api_url": self._set_api_url,
            "api_verify": self._set_api_verify,
            "api_rate_per_minute": self._set_api_rate,
        }


    def _unknown_key(
        self,
        knode: Node,
        kpath: str,
        key: str,
        allowed: Sequence[str],
        entries: _Entries,
        layer: _Layer | None,
        where: str,
    ) -> str | None:
        """Report an unknown key; returns the key it probably meant, if any."""
        if key in _DEVICE_ONLY_KEYS and allowed is _COMMON_KEYS:
            self.problem(
                _line(knode), kpath, f"{key!r} can only be set on a device, not in {where}"
            )
            return None
        hint, suggestion = _key_hint(key, tuple(allowed))
        if id(knode) not in self._unknown_reported:  # an alias repeats the same key node
            self._unknown_reported.add(id(knode))
            if hint:
                message = f"unknown key {key!r}{hint}"
            else:
                message = f"unknown key {key!r}; allowed in {where}: {', '.join(allowed)}"
            self.problem(_line(knode), kpath, message)
        if suggestion is None or suggestion in entries:
            return None
        if layer is not None:
            layer.invalid.add(suggestion)
        return suggestion

    # -- values
    def _set_transport(self, layer: _Layer, node: Node, path: str) -> None:
        value = self._text(node, path)
        if value is not None and value not in TRANSPORTS:
            self.problem(
                _line(node),
                path,
                f"unknown transport {value!r}{_did_you_mean(value, TRANSPORTS)}; "
                "use local, cloud or websocket",
            )
            value = None
        if value is None:
            layer.invalid.add("transport")
        layer.transport = value

    def _set_username(self, layer: _Layer, node: Node, path: str) -> None:
        value = self._nonempty(node, path)
        if value is None:
            layer.invalid.add("username")
        layer.username = value

    def _set_secret(self, layer: _Layer, node: Node, path: str) -> None:
        name = path.rpartition(".")[2]
        ref: SecretRef | None = None
        if isinstance(node, ScalarNode) and node.tag in _TEXT_TAGS:
            text = str(node.value)
            cached = self._secret_cache.get(text)
            if cached is None:
                try:
                    cached = self._secret_ref(text)
                except SecretError as exc:
                    cached = exc.message
                self._secret_cache[text] = cached
            if isinstance(cached, str):
                self.problem(_line(node), path, cached)
            else:
                ref = cached
        elif isinstance(node, ScalarNode) and node.tag == _T_NULL:
            self.problem(_line(node), path, "has no value")
        else:
            self.problem(
                _line(node),
                path,
                f"must be a secret reference (env:VAR, keyring:SERVICE/USER or file:PATH), "
                f"not {_kind(node)}",
            )
        if ref is None:
            layer.invalid.add(name)
        if name == "password":
            layer.password = ref
        else:
            layer.token = ref

    def _secret_ref(self, text: str) -> SecretRef:
        ref = parse_secret_ref(text)
        if ref.scheme == "file" and not os.path.isabs(os.path.expanduser(ref.target)):
            ref = SecretRef("file", os.path.normpath(self.base_dir / ref.target))
        return ref

    def _set_verify(self, layer: _Layer, node: Node, path: str) -> None:
        value = self._text(node, path)
        verify: Verify | None = None
        if value is not None:
            cached = self._verify_cache.get(value)
            if cached is None:
                try:
                    cached = parse_verify(value, base_dir=self.base_dir)
                except InputError as exc:
                    cached = exc.message
                self._verify_cache[value] = cached
            if isinstance(cached, str):
                self.problem(_line(node), path, cached)
            else:
                verify = cached
        if verify is None:
            layer.invalid.add("verify")
        layer.verify = verify

    def _set_api_url(self, layer: _Layer, node: Node, path: str) -> None:
        value = self._nonempty(node, path)
        if value is not None and not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", value):
            self.problem(_line(node), path,
                         f"api_url {value!r} must be an http(s) URL such as https://webexapis.com")
            value = None
        if value is None:
            layer.invalid.add("api_url")
        layer.api_url = value.rstrip("/") if value else None

    def _set_api_verify(self, layer: _Layer, node: Node, path: str) -> None:
        # the same forms as verify:, for the cloud API's TLS
        saved = layer.verify, set(layer.invalid)
        self._set_verify(layer, node, path)
        api_verify, layer.verify = layer.verify, saved[0]
        if "verify" in layer.invalid and "verify" not in saved[1]:
            layer.invalid.discard("verify")
            layer.invalid.add("api_verify")
        layer.api_verify = api_verify

    def _set_api_rate(self, layer: _Layer, node: Node, path: str) -> None:
        rate: float | None = None
        if isinstance(node, ScalarNode) and node.tag in (_T_INT, _T_FLOAT):
            try:
                rate = float(node.value.replace("_", ""))
            except ValueError:
                rate = None
        if rate is None or not (0 < rate <= MAX_API_RATE_PER_MINUTE) or rate != rate:
            given = node.value if isinstance(node, ScalarNode) and node.value else _kind(node)
            self.problem(_line(node), path,
                         f"api_rate_per_minute must be a number of requests a minute above 0 "
                         f"and at most {MAX_API_RATE_PER_MINUTE}, not {given}")
            rate = None
        if rate is None:
            layer.invalid.add("api_rate_per_minute")
        layer.api_rate_per_minute = rate

    def _set_tags(self, layer: _Layer, node: Node, path: str) -> None:
        items = self._text_list(node, path)
        if items is None:
            return
        tags: dict[str, None] = {}
        for index, (tag, item) in enumerate(items):
            if not _TAG_RE.fullmatch(tag):
                self.problem(
                    _line(item),
                    f"{path}[{index}]",
                    f"tag {tag!r} must start with a letter or digit "
                    "and contain no spaces or commas",
                )
            tags[tag] = None
        layer.tags = tuple(tags)

    def _set_groups(self, layer: _Layer, node: Node, path: str) -> None:
        items = self._text_list(node, path)
        if items is None:
            return
        groups: list[str] = []
        for index, (group, item) in enumerate(items):
            ipath = f"{path}[{index}]"
            if group not in self.groups:
                known = ", ".join(self.groups) or "(none defined)"
                self.problem(
                    _line(item),
                    ipath,
                    f"unknown group {group!r}{_did_you_mean(group, self.groups)}; groups: {known}",
                )
            elif group in groups:
                self.problem(_line(item), ipath, f"group {group!r} is listed twice")
            else:
                groups.append(group)
        layer.groups = tuple(groups)

    def _set_timezone(self, layer: _Layer, node: Node, path: str) -> None:
        value = self._nonempty(node, path)
        if value is not None:
            problem = _timezone_problem(value)
            if problem:
                self.problem(_line(node), path, problem)
                value = None
        if value is None:
            layer.invalid.add("timezone")
        layer.timezone = value

    def _set_port(self, layer: _Layer, node: Node, path: str) -> None:
        port: int | None = None
        if isinstance(node, ScalarNode) and node.tag == _T_INT:
            try:
                port = self._ints.construct_yaml_int(node)
            except (ValueError, yaml.YAMLError):
                port = None
            if port is not None and not 1 <= port <= 65535:
                self.problem(_line(node), path, f"port {port} is out of range 1..65535")
                port = None
        else:
            self.problem(
                _line(node), path, f"port must be a whole number from 1 to 65535, not {_kind(node)}"
            )
        if port is None:
            layer.invalid.add("port")
        layer.port = port

    def _set_host(self, layer: _Layer, node: Node, path: str) -> None:
        value = self._nonempty(node, path)
        if value is not None:
            problem = _host_problem(value)
            if problem:
                self.problem(_line(node), path, problem)
                value = None
        if value is None:
            layer.invalid.add("host")
        layer.host = value

    def _set_device_id(self, layer: _Layer, node: Node, path: str) -> None:
        value = self._nonempty(node, path)
        if value is not None and any(c.isspace() for c in value):
            self.problem(_line(node), path, "device_id must not contain spaces")
            value = None
        if value is None:
            layer.invalid.add("device_id")
        layer.device_id = value

    def _set_certificate(self, layer: _Layer, node: Node, path: str) -> None:
        if not isinstance(node, MappingNode):
            self.problem(
                _line(node),
                path,
                f"must be a mapping (key:, subject:, san_dns:, ...), not {_kind(node)}",
            )
            return
        cert = _CertLayer()
        entries = self._mapping(node, path)
        for key, (knode, vnode) in entries.items():
            kpath = f"{path}.{key}"
            if key == "key":
                value = self._text(vnode, kpath)
                if value is not None and value not in KEY_TYPES:
                    self.problem(
                        _line(vnode),
                        kpath,
                        f"unknown key type {value!r}{_did_you_mean(value, KEY_TYPES)}; "
                        f"use one of: {', '.join(KEY_TYPES)}",
                    )
                elif value is not None:
                    cert.key = value
            elif key == "subject":
                self._subject(vnode, kpath, cert)
            elif key in _SAN_KINDS:
                items = self._text_list(vnode, kpath)
                if items is None:
                    continue
                for index, (value, item) in enumerate(items):
                    problem = _san_problem(key, value)
                    if problem:
                        self.problem(_line(item), f"{kpath}[{index}]", problem)
                setattr(cert, key, tuple(value for value, _item in items))
            else:
                self._unknown_key(knode, kpath, key, _CERT_KEYS, entries, None, "certificate")
        layer.certificate = cert

    def _subject(self, node: Node, path: str, cert: _CertLayer) -> None:
        if not isinstance(node, MappingNode):
            self.problem(
                _line(node),
                path,
                f"must be a mapping such as {{O: Example, C: NO}}, not {_kind(node)}",
            )
            return
        entries = self._mapping(node, path)
        for rdn, (knode, vnode) in entries.items():
            rpath = f"{path}.{rdn}"
            if rdn not in SUBJECT_KEYS:
                self._unknown_key(knode, rpath, rdn, SUBJECT_KEYS, entries, None, "subject")
                continue
            value = self._nonempty(vnode, rpath)
            if value is None:
                continue
            problem = _subject_problem(rdn, value)
            if problem:
                self.problem(_line(vnode), rpath, problem)
                continue
            cert.subject[rdn] = value.upper() if rdn == "C" and "{" not in value else value
