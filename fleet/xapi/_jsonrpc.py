"""fleet.xapi._jsonrpc — JSON-RPC 2.0 as RoomOS speaks it over its WebSocket (reference
roomos-local-xapi.md §3): the error codes and what they mean in certfleet's error tree, one
connection's calls waiting for their replies (:class:`Link`: each reply handed to the call
with its id), and replies normalised to the shapes every transport gives."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

import aiohttp

from ..errors import (
    AuthError,
    BadReplyError,
    CommandError,
    DeviceError,
    NotSupportedError,
    ParameterError,
)
from .transport import (
    normalise_json,
)

__all__ = [
    "MISSING",
    "NOT_READY",
    "ConnectionLost",
    "Decoded",
    "JsonRpcCommandError",
    "JsonRpcNotSupportedError",
    "Link",
    "RpcError",
    "command_result",
    "decode",
    "rpc_error",
]

# JSON-RPC error codes RoomOS uses (pyxows EXCEPTION_TYPES, reference §3.3)
_COMMAND_ERROR: Final = 1
_PARSE_ERROR: Final = -32700
_INVALID_REQUEST: Final = -32600
_METHOD_NOT_FOUND: Final = -32601
_INVALID_PARAMS: Final = -32602
_INTERNAL_ERROR: Final = -32603
_PERMISSION_DENIED: Final = -31999
_SUBSCRIPTIONS_EXCEEDED: Final = -31998
_NOT_READY: Final = -31997
_CODE_NAMES: Final = {
    _PARSE_ERROR: "parse error",
    _INVALID_REQUEST: "invalid request",
    _INTERNAL_ERROR: "internal error",
    _SUBSCRIPTIONS_EXCEEDED: "subscription count exceeded",
    _NOT_READY: "system not ready",
}


NOT_READY: Final = _NOT_READY


class JsonRpcCommandError(CommandError):
    """The device refused a call with a JSON-RPC error: its ``code`` and ``data`` as sent."""

    def __init__(
        self,
        message: str,
        *,
        code: int,
        data: Any = None,
        xpath: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message, xpath=xpath, reason=reason)
        self.code = code
        self.data = data


class JsonRpcNotSupportedError(JsonRpcCommandError, NotSupportedError):
    """JSON-RPC -32601: the device has no such command (method not found)."""


#: what a read of a node the device does not have gives (``get`` returns None for it)
MISSING: Final = object()


class RpcError(Exception):
    """An ``error`` member in a reply; mapped onto fleet.errors by the call that got it."""

    def __init__(self, code: int, message: str, data: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class ConnectionLost(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


Decoded = tuple[Any, str | None]


def decode(text: str) -> Decoded:
    """(the JSON of a message, None) or (None, what is wrong with it)."""
    try:
        return json.loads(text), None
    except RecursionError:
        return None, f"a reply nested deeper than JSON can be read ({len(text)} characters)"
    except ValueError:
        return None, f"a reply that is not JSON: {text[:60]!r}"


class Link:
    """One open WebSocket and the calls waiting for their reply on it."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse[bool]) -> None:
        self.ws = ws
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.lost: str | None = None  # why the connection is unusable, once it is
        self.reader: asyncio.Task[None] | None = None
        self.send_lock = asyncio.Lock()

    def fail_pending(self, error: Exception) -> None:
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    def dispatch(self, text: str, decoded: Decoded | None = None) -> None:
        reply, problem = decoded or decode(text)
        if problem is not None:
            self.garbage(problem)
            return
        if not isinstance(reply, dict):
            self.garbage(f"a reply that is not a JSON-RPC object: {text[:60]!r}")
            return
        raw_id = reply.get("id")
        if raw_id is None:
            if "method" in reply and "error" not in reply:
                return  # a notification (xFeedback/Event): nobody here subscribes
            error = reply.get("error")
            if isinstance(error, dict):
                self.garbage(f"error {error.get('code')!r} ({error.get('message')!r}) "
                                    "for no request id")
            else:
                self.garbage(f"a reply without an id: {text[:60]!r}")
            return
        request_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else (
            int(raw_id) if isinstance(raw_id, str) and raw_id.isdigit() else None)
        future = self.pending.pop(request_id, None) if request_id is not None else None
        if future is None or future.done():
            return  # the reply to a call that already timed out
        if "error" in reply:
            error = reply["error"]
            code = error.get("code") if isinstance(error, dict) else None
            if not isinstance(code, int) or isinstance(code, bool):
                future.set_exception(BadReplyError(f"malformed JSON-RPC error: {text[:80]!r}"))
                return
            assert isinstance(error, dict)
            future.set_exception(RpcError(code, str(error.get("message") or ""),
                                           error.get("data")))
        elif "result" in reply:
            future.set_result(reply["result"])
        else:
            future.set_exception(BadReplyError("a JSON-RPC reply with neither result nor error"))

    def garbage(self, what: str) -> None:
        # A reply that cannot be matched to its call: every call waiting on this connection
        # may have been the one it answered, so each of them fails rather than waiting.
        self.fail_pending(BadReplyError(f"the device sent {what}"))


# ------------------------------------------------------------------------ normalising


def command_result(result: Any, where: str) -> dict[str, Any]:
    if result is None or result is True:
        return {}
    if not isinstance(result, dict):
        raise BadReplyError(f"result of {where} is not an object: {json.dumps(result)[:60]}")
    if isinstance(result.get("Details"), dict):
        result = {**result, "Details": [result["Details"]]}  # one item is still a list
    data: dict[str, Any] = normalise_json(result)
    # A result may carry the XML result element's status as a field (jsxapi's rpc.ts)
    status = data.pop("status", "OK")
    if status == "Error":
        reason = leaf(data.get("Reason")) or leaf(data.get("Error")) or "error"
        raise CommandError(reason, xpath=leaf(data.get("XPath")) or where, reason=reason)
    if status == "ParameterError":
        reason = leaf(data.get("Reason")) or "invalid or missing parameter"
        raise ParameterError(f"parameter error: {reason}", xpath=where, reason=reason)
    if status != "OK":
        raise BadReplyError(f"result of {where} has status {status!r}")
    return data


def leaf(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("Value")
    return value if isinstance(value, str) and value else None


def describe_data(data: Any) -> str:
    if data is None:
        return ""
    try:
        text = json.dumps(data, ensure_ascii=False, sort_keys=True, default=str)
    except (RecursionError, ValueError, TypeError):
        return " (data too deeply nested to show)"
    return f" ({text[:200]})"


def rpc_error(err: RpcError, where: str, method: str, *, command: bool, username: str | None
              ) -> DeviceError:
    """What a JSON-RPC error a device answered means, in certfleet's error tree."""
    message = err.message or _CODE_NAMES.get(err.code, "no message")
    if err.code == _COMMAND_ERROR:
        return JsonRpcCommandError(message + describe_data(err.data), code=err.code,
                                   data=err.data, xpath=where, reason=message)
    if err.code == _INVALID_PARAMS:
        return ParameterError(f"parameter error: {message}{describe_data(err.data)}",
                              xpath=where, reason=message)
    if err.code == _METHOD_NOT_FOUND:
        if command:
            return JsonRpcNotSupportedError(
                f"Unknown command ({message or 'method not found'})", code=err.code,
                data=err.data, xpath=where, reason="Unknown command")
        return JsonRpcCommandError(f"method {method} not found: {message}", code=err.code,
                                   data=err.data, xpath=where, reason=message)
    if err.code == _PERMISSION_DENIED:
        return AuthError(f"permission denied: user {username!r} lacks the role "
                         f"for {where} ({message})")
    if err.code in (_PARSE_ERROR, _INVALID_REQUEST):
        return BadReplyError(f"the device could not read the request to {where}: "
                             f"JSON-RPC error {err.code} ({message})")
    return JsonRpcCommandError(
        f"JSON-RPC error {err.code} ({_CODE_NAMES.get(err.code, 'unknown code')}): "
        f"{message}{describe_data(err.data)}",
        code=err.code, data=err.data, xpath=where, reason=message,
    )

