"""`xCommand SystemUnit …`."""

from __future__ import annotations

from .commands import Args, CommandContext, CommandRegistry, Param


def register(registry: CommandRegistry) -> None:
    @registry.register(
        "SystemUnit/Boot",
        Param("Action", default="Restart", literals=("Restart", "Shutdown")),
        Param("Force", default="True", literals=("False", "True")),
    )
    def boot(ctx: CommandContext, args: Args) -> None:
        # A simulated device is always idle, so Force False reboots too.
        ctx.boot_action = args.get("Action")
