"""Command groups that load when they are used: `fmops eval run` imports the eval commands, not all twenty.

Importing every command module costs seconds and a hundred-odd MB before a command starts (each pulls
in its services: pyarrow, numpy, the web stack...). The root group knows each command by a `Lazy`
entry instead: where it lives ("module:attribute") and the one-line help `fmops --help` lists, so
the listing itself imports nothing. tests/cli/test_lazy_cli.py checks each entry's help
against its command's, so the two cannot drift apart.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import typer
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:  # the click that Typer bundles (it exports no name for these types)
    from typer._click import Command, Context


class Lazy(NamedTuple):
    target: str  # "module:attribute", as in an entry point: a `typer.Typer` (a group) or a function
    help: str  # the first paragraph of the command's help, as `fmops --help` lists it


def import_command(name: str, entry: Lazy) -> Command:
    """The click command an entry names: its module is imported now."""
    module, _, attribute = entry.target.partition(":")
    target = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):
        group = typer.main.get_group(target)  # a group even when it holds one command, as add_typer does
        group.name = name
        return group
    single = typer.Typer()
    single.command(name)(target)
    return typer.main.get_command(single)


class LazyCommands(MutableMapping[str, "Command"]):
    """A group's commands by name: entries load on first lookup; names, order and `in` load nothing."""

    def __init__(self, loaded: Mapping[str, Command], lazy: Mapping[str, Lazy]) -> None:
        self._loaded = dict(loaded)
        self._lazy = dict(lazy)
        self._order = [*lazy, *(n for n in loaded if n not in lazy)]

    def __getitem__(self, name: str) -> Command:
        return self.load(name)

    def load(self, name: str) -> Command:
        if name not in self._loaded:
            self._loaded[name] = import_command(name, self._lazy[name])  # KeyError for an unknown name
        return self._loaded[name]

    def __setitem__(self, name: str, command: Command) -> None:
        if name not in self._order:
            self._order.append(name)
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self._order:
            raise KeyError(name)
        self._order.remove(name)
        self._loaded.pop(name, None)
        self._lazy.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._order

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)

    def listed(self, name: str) -> Command | None:
        """The command if loaded, else a stand-in that carries only its name and help (for listings)."""
        if name in self._loaded:
            return self._loaded[name]
        entry = self._lazy.get(name)
        return None if entry is None else TyperCommand(name=name, help=entry.help)


class LazyGroup(TyperGroup):
    """A Typer group whose `lazy` commands load when invoked; give it as `typer.Typer(cls=...)`."""

    lazy: ClassVar[Mapping[str, Lazy]] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._commands = LazyCommands(self.commands, self.lazy)
        self.commands = self._commands

    def list_commands(self, ctx: Context) -> list[str]:
        return list(self._commands)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        # Help and listings ask for every command: they get stand-ins, not imports.
        return self._commands.listed(cmd_name)

    def resolve_command(self, ctx: Context, args: list[str]) -> tuple[str | None, Command | None, list[str]]:
        if args and args[0] in self._commands:
            self._commands.load(args[0])  # the command about to run, so get_command returns it
        if not gc.isenabled():  # see fmops.cli: start-up ran without collections
            gc.freeze()
            gc.enable()
        return super().resolve_command(ctx, args)
