"""xCommand dispatch for putxml `<Command>` documents: a registry keyed by command path,
parameter validation against each command's value space, and the reply shapes
(`<XResult status="OK|Error|ParameterError">`, `<Result status="Error">` for an unknown
command, `<ActionError>` when the document holds no action).

New commands are added with `registry.register(...)`; see `cert_commands.py`. A handler may
be a coroutine function (`enrollment_commands.py`: SCEP talks to a real server); documents
holding one run with `execute`, which the web server uses; the WebSocket API validates JSON
arguments with `CommandSpec.make_args` and runs one command with `run_command`."""

from __future__ import annotations

import inspect
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from certfleet.fleet.xapi.releases import CommandSpec as ReleaseCommand
from certfleet.fleet.xapi.releases import ParamSpec

from .errors import DeviceError
from .xml_wire import NO_ACTION, action_error

if TYPE_CHECKING:
    from .device import SimDevice
    from .firmware import Firmware


class CommandFailed(DeviceError):
    """The command ran and failed: `status="Error"` with this Reason."""


class ParameterError(Exception):
    """Missing or invalid parameter: `status="ParameterError"` with this Reason."""


@dataclass(frozen=True)
class Param:
    """One command parameter. `literals` makes it a Literal; `max_items` > 1 an array."""

    name: str
    required: bool = False
    default: str | None = None
    literals: tuple[str, ...] | None = None
    max_len: int = 255
    max_items: int = 1
    release: ParamSpec | None = None  # the device release's value space, when narrowed

    def check(self, value: str) -> str:
        """The canonical value (Literals match case-insensitively: tolerant choice)."""
        if self.release is not None and self.release.kind != "Literal":
            if self.release.canonical(value) is None:
                # never the value itself: a password or challenge may be too long, too
                raise ParameterError(f"Parameter {self.name}: a value of length {len(value)} "
                                     f"is not {self.release.describe()}")
            return value
        if self.literals is not None:
            found = next((v for v in self.literals if v.lower() == value.strip().lower()), None)
            if found is None:
                allowed = ", ".join(self.literals)
                raise ParameterError(f"Parameter {self.name}: {value!r} is not one of {allowed}")
            return found
        if len(value) > self.max_len:
            raise ParameterError(
                f"Parameter {self.name}: length {len(value)} exceeds the maximum {self.max_len}"
            )
        return value


@dataclass
class Args:
    values: dict[str, str | list[str]]
    body: str | None = None

    def get(self, name: str) -> str:
        value = self.values.get(name, "")
        return value if isinstance(value, str) else (value[0] if value else "")

    def get_list(self, name: str) -> list[str]:
        value = self.values.get(name, [])
        return [value] if isinstance(value, str) else value


@dataclass
class CommandContext:
    """What a handler may touch. `boot_action` asks the server to reboot ("Restart") or
    power off ("Shutdown") the device once the reply has been sent. `via` names the API
    (for the device's request log)."""

    device: SimDevice
    boot_action: str | None = None
    via: str = "putxml"


HandlerResult = Iterable[ET.Element] | None
Handler = Callable[[CommandContext, Args], HandlerResult | Awaitable[HandlerResult]]


@dataclass(frozen=True)
class CommandSpec:
    path: tuple[str, ...]
    handler: Handler
    params: tuple[Param, ...] = ()
    multiline: bool = False

    @property
    def result_tag(self) -> str:
        return "".join(self.path[-2:]) + "Result"

    def narrowed(self, release: ReleaseCommand) -> CommandSpec:
        """This command as a release has it: the release's parameters and value spaces
        (roomsim's defaults kept for the parameters the release has)."""
        ours = {p.name: p for p in self.params}
        params = []
        for name, spec in release.params.items():
            mine = ours.get(name)
            params.append(Param(
                name,
                required=spec.required,
                default=mine.default if mine is not None else None,
                literals=spec.values if spec.kind == "Literal" else None,
                max_len=spec.max_length if spec.max_length is not None else 1 << 20,
                max_items=spec.multiple,
                release=spec,
            ))
        return CommandSpec(self.path, self.handler, tuple(params), release.multiline)

    def parse_args(self, element: ET.Element) -> Args:
        """The Args of a putxml command element: one child per value, `item="n"` ordering
        repeated (array) values, `<body>` the multiline body."""
        raw: dict[str, list[tuple[int, str]]] = {}
        body: str | None = None
        for position, child in enumerate(element):
            if len(child):
                raise ParameterError(f"Parameter {child.tag} must not contain elements")
            text = child.text or ""
            if child.tag == "body" and self.multiline:
                if body is not None:
                    raise ParameterError("More than one body given")
                body = text
                continue
            order = _item_number(child.get("item"), position)
            raw.setdefault(child.tag, []).append((order, text))
        given = {name: [text for _, text in sorted(values)] for name, values in raw.items()}
        return self.make_args(given, body)

    def make_args(self, given: Mapping[str, Sequence[str]], body: str | None = None) -> Args:
        """Validate the values given per parameter name (in order) against the value
        spaces: unknown, missing, repeated and illegal values raise ParameterError."""
        by_name = {p.name: p for p in self.params}
        unknown = next((name for name in given if name not in by_name), None)
        if unknown is not None:
            raise ParameterError(f"Unknown parameter: {unknown}")
        if body is not None and not self.multiline:
            raise ParameterError("Unknown parameter: body")
        values: dict[str, str | list[str]] = {}
        for param in self.params:
            texts = list(given.get(param.name, ()))
            if not texts:
                if param.required:
                    raise ParameterError(f"Missing required parameter: {param.name}")
                if param.default is not None:
                    values[param.name] = param.default
                continue
            if param.max_items == 1:
                if len(texts) > 1:
                    raise ParameterError(f"Parameter {param.name} given more than once")
                values[param.name] = param.check(texts[0])
            else:
                if len(texts) > param.max_items:
                    raise ParameterError(
                        f"Parameter {param.name} accepts at most {param.max_items} values"
                    )
                values[param.name] = [param.check(v) for v in texts]
        return Args(values, body)


def _item_number(item: str | None, position: int) -> int:
    if item is not None and item.strip().isdigit():
        return int(item)
    return 10_000 + position


@dataclass
class CommandRegistry:
    commands: dict[tuple[str, ...], CommandSpec] = field(default_factory=dict)
    _narrowed: dict[tuple[tuple[str, ...], Firmware], CommandSpec | None] = field(
        default_factory=dict, repr=False)

    def for_device(self, path: tuple[str, ...], device: SimDevice) -> CommandSpec | None:
        """The command as `device` has it (its release and product), None when it lacks it
        (or roomsim does not implement it)."""
        spec = self.commands.get(path)
        if spec is None:
            return None
        key = (path, device.firmware)
        if key not in self._narrowed:
            release = device.model.command(" ".join(path), device.product_code)
            self._narrowed[key] = None if release is None else spec.narrowed(release)
        return self._narrowed[key]

    def register(
        self, path: str, *params: Param, multiline: bool = False
    ) -> Callable[[Handler], Handler]:
        """Decorator: `@registry.register("Security/Certificates/CA/Delete", Param(...))`."""
        key = tuple(path.strip("/").split("/"))

        def decorate(handler: Handler) -> Handler:
            if key in self.commands:
                raise ValueError(f"command {path} registered twice")
            self.commands[key] = CommandSpec(key, handler, tuple(params), multiline)
            return handler

        return decorate

    def get(self, path: tuple[str, ...]) -> CommandSpec | None:
        return self.commands.get(path)


def default_registry() -> CommandRegistry:
    """A registry with every command roomsim implements."""
    from . import cert_commands, enrollment_commands, network_commands, system_commands

    registry = CommandRegistry()
    cert_commands.register(registry)
    enrollment_commands.register(registry)
    network_commands.register(registry)
    system_commands.register(registry)
    return registry


# --------------------------------------------------------------------------- documents


@dataclass(frozen=True)
class _Found:
    path: tuple[str, ...]
    element: ET.Element
    spec: CommandSpec | None  # None: not a known command
    marked: bool  # carried command="True"


def _find_commands(
    registry: CommandRegistry, root: ET.Element, device: SimDevice | None = None
) -> list[_Found]:
    """The command elements of a document: where a command roomsim knows, an element
    marked command="True", or a leaf is. With `device`, a command its release or product
    lacks is found with spec None (the device does not have it)."""
    found: list[_Found] = []

    def visit(element: ET.Element, path: tuple[str, ...]) -> None:
        spec = registry.get(path)
        marked = element.get("command", "").strip().lower() == "true"
        if spec is not None or marked or len(element) == 0:
            if spec is not None and device is not None:
                spec = registry.for_device(path, device)
            found.append(_Found(path, element, spec, marked))
            return
        for child in element:
            visit(child, (*path, child.tag))

    for child in root:
        visit(child, (child.tag,))
    return found


def log_commands(context: CommandContext, found: Sequence[_Found]) -> None:
    """Record every command element of a document, with its parameters as sent."""
    for item in found:
        params: dict[str, list[str]] = {}
        body = False
        for child in item.element:
            if child.tag == "body":
                body = True
            else:
                params.setdefault(child.tag, []).append(child.text or "")
        context.device.requests.command(context.via, item.path, params, body)


def _plan(
    registry: CommandRegistry, root: ET.Element, context: CommandContext | None = None
) -> list[_Found] | None:
    """The commands of a document; None when it holds none the device has (a device
    answers that with the root ActionError "No action detected in document")."""
    device = context.device if context is not None else None
    found = _find_commands(registry, root, device)
    if context is not None and device is not None:
        log_commands(context, found)
    if not found or all(f.spec is None for f in found):
        return None
    return found


def _unknown(item: _Found) -> ET.Element:
    result = ET.Element("Result", status="Error")
    ET.SubElement(result, "Reason").text = "Unknown command"
    ET.SubElement(result, "XPath").text = "/" + "/".join(item.path)
    return result


def run_commands(
    registry: CommandRegistry, context: CommandContext, root: ET.Element
) -> ET.Element:
    """Execute a `<Command>` document whose handlers are all synchronous; returns the
    reply root (`execute` also runs coroutine handlers).

    A document with no command the device has (unknown paths, marked command="True" or
    not, or commands its release or product lacks) answers the root ActionError "No
    action detected in document", as a device does for `<Command><NonExistent><Fake>
    <Path/>...`; an unknown path next to real commands answers `Unknown command`."""
    found = _plan(registry, root, context)
    if found is None:
        return action_error(NO_ACTION)
    reply = ET.Element("Command")
    for item in found:
        if item.spec is None:
            reply.append(_unknown(item))
            continue
        result, pending = _start(item.spec, context, item.element)
        if pending is not None:
            if inspect.iscoroutine(pending):
                pending.close()
            raise TypeError(f"{'/'.join(item.path)} has a coroutine handler: use execute()")
        reply.append(result)
    return reply


async def execute(
    registry: CommandRegistry, context: CommandContext, root: ET.Element
) -> ET.Element:
    """`run_commands` for any handler: the commands of one document run in order, each
    coroutine handler awaited before the next command starts."""
    found = _plan(registry, root, context)
    if found is None:
        return action_error(NO_ACTION)
    reply = ET.Element("Command")
    for item in found:
        if item.spec is None:
            reply.append(_unknown(item))
            continue
        result, pending = _start(item.spec, context, item.element)
        if pending is not None:
            try:
                children = await pending
            except (ParameterError, DeviceError) as exc:
                _failed(result, exc)
            else:
                _succeeded(result, children)
        reply.append(result)
    return reply


async def run_command(spec: CommandSpec, context: CommandContext, args: Args) -> ET.Element:
    """Run one command whose arguments are already validated (the WebSocket API builds
    them from JSON); the result element carries `status` as in a putxml reply."""
    result, pending = _call(spec, context, args)
    if pending is not None:
        try:
            children = await pending
        except (ParameterError, DeviceError) as exc:
            _failed(result, exc)
        else:
            _succeeded(result, children)
    return result


def _start(
    spec: CommandSpec, context: CommandContext, element: ET.Element
) -> tuple[ET.Element, Awaitable[HandlerResult] | None]:
    """Validate and call the handler. A synchronous handler's result element is complete;
    for a coroutine handler the awaitable is returned and the caller completes it."""
    try:
        args = spec.parse_args(element)
    except ParameterError as exc:
        result = ET.Element(spec.result_tag)
        _failed(result, exc)
        return result, None
    return _call(spec, context, args)


def _call(
    spec: CommandSpec, context: CommandContext, args: Args
) -> tuple[ET.Element, Awaitable[HandlerResult] | None]:
    result = ET.Element(spec.result_tag)
    try:
        outcome = spec.handler(context, args)
    except (ParameterError, DeviceError) as exc:
        _failed(result, exc)
        return result, None
    if inspect.isawaitable(outcome):
        return result, outcome
    _succeeded(result, outcome)
    return result, None


def _failed(result: ET.Element, exc: ParameterError | DeviceError) -> None:
    result.set("status", "ParameterError" if isinstance(exc, ParameterError) else "Error")
    ET.SubElement(result, "Reason").text = str(exc)


def _succeeded(result: ET.Element, children: HandlerResult) -> None:
    result.set("status", "OK")
    result.extend(children or ())
