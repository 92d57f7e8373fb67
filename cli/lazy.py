"""Commands whose module is imported only when the command runs (or its help is shown).

Every role runs the same `carehub` script, but a server installs `carehub[server]` only:
no numpy, no paho. A command that lives with its heavy code (benches, evaluations) is
named here as ``"module:function"`` and loaded on demand, so `carehub server` never
imports a bench.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperGroup


def lazy_group(commands: dict[str, str]) -> type[TyperGroup]:
    """A Typer group class that adds `commands` (name → ``"module:function"``), each
    turned into a command the first time it is asked for."""

    class LazyGroup(TyperGroup):
        def list_commands(self, ctx: Any) -> list[str]:
            return [*super().list_commands(ctx), *(n for n in commands if n not in self.commands)]

        def get_command(self, ctx: Any, cmd_name: str) -> Any:
            if cmd_name not in self.commands and cmd_name in commands:
                self.commands[cmd_name] = _load(cmd_name, commands[cmd_name])
            return super().get_command(ctx, cmd_name)

    return LazyGroup


def _load(name: str, target: str) -> Any:
    """The command (Typer's bundled click type) of `module:function`."""
    module, _, function = target.partition(":")
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    single.command(name)(getattr(importlib.import_module(module), function))
    return typer.main.get_command(single)
