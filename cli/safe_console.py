"""cli.safe_console — the rich consoles all output for people goes through (imported by
:mod:`cli.render` when something is drawn, not at start-up)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, TextIO

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment
from rich.text import Text

from .safe_text import scrub, visible


class SafeConsole(Console):
    """A Console that shows every string as it is: never markup or emoji codes (styles are
    given as Text styles only), secrets masked, control characters as visible escapes — in
    what is rendered from strings, and once more in every segment written, whatever built it.
    """

    def render_str(self, text: str, **kwargs: Any) -> Text:
        kwargs["markup"] = kwargs["emoji"] = False
        return super().render_str(visible(scrub(text), newlines=True), **kwargs)

    def render(self, renderable: RenderableType,
               options: ConsoleOptions | None = None) -> Iterator[Segment]:
        for segment in super().render(renderable, options):
            if segment.control is None and not segment.text.isprintable():
                segment = Segment(visible(segment.text, newlines=True), segment.style)
            yield segment


def console(file: TextIO, soft_wrap: bool) -> Console:
    # Made per call so that test runners which swap sys.stdout see the output. Off a
    # terminal (CI logs, pipes) lines are not wrapped at 80 columns. Strings are never read
    # as rich markup or emoji codes: most of what is shown comes from devices, inventories
    # and files (a subject "[/]" would crash a table, "[link=...]" rewrite it); styles are
    # given as Text styles only.
    options: dict[str, Any] = {"highlight": False, "markup": False, "emoji": False}
    made = SafeConsole(file=file, soft_wrap=soft_wrap, **options)
    if not made.is_terminal and "COLUMNS" not in os.environ:
        made = SafeConsole(file=file, soft_wrap=soft_wrap, width=160, **options)
    return made
