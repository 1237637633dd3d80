"""Every `rapport` command names a function that its module has: the commands' modules are
imported only when one runs (services/cli/main.py), so a misspelt name would otherwise show only
when that command is run."""

from __future__ import annotations

import argparse
import importlib

from services.cli.main import build_parser


def test_every_command_names_a_function_its_module_has() -> None:
    parser = build_parser()
    commands = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    ).choices
    assert {"worker", "up", "down", "demo", "bench"} <= set(commands)
    for command, sub in commands.items():
        module, function = sub.get_default("func").__name__.split(".")
        found = getattr(importlib.import_module(f"services.cli.{module}"), function, None)
        assert callable(found), f"rapport {command}: services.cli.{module} has no {function}"
