"""The ``oneshot`` console script: housekeeping commands around the pytest plugin.

Each command group lives next to the code it drives and contributes an
``add_commands(subparsers)`` function; this module only lists them. The tracing proxy's groups
(``proxy``, ``traces``) come from the ``pytest_oneshot.commands`` entry point, like a plugin's.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from pytest_oneshot.errors import OneshotError
from pytest_oneshot.registry import Registry

AddCommands = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def command_groups() -> Registry[AddCommands]:
    """Group name -> the ``add_commands(subparsers)`` that adds it; imported only when used."""
    registry: Registry[AddCommands] = Registry("command", "pytest_oneshot.commands")
    registry.register("docker", "pytest_oneshot.sandbox.dockerd:add_commands")
    registry.register("regrade", "pytest_oneshot.regrade:add_commands")
    registry.register("hf", "pytest_oneshot.hf.cli:add_commands")
    registry.register("overrides", "pytest_oneshot.overrides:add_commands")
    registry.register("runner", "pytest_oneshot.runner.cli:add_commands")
    registry.register("rebench", "pytest_oneshot.rebench:add_commands")
    registry.register("check", "pytest_oneshot.validate:add_commands")
    registry.register("harbor", "pytest_oneshot.harbor:add_commands")
    registry.load_entry_points()
    return registry


def build_parser(groups: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oneshot", description="pytest-oneshot: agent evaluation tasks as tests")
    subparsers = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    registry = command_groups()
    for add_commands in dict.fromkeys(registry.get(name) for name in groups or registry.names()):
        add_commands(subparsers)  # one function may add several groups
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    wanted = [argv[0]] if argv and argv[0] in command_groups().names() else None
    args = build_parser(wanted).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except OneshotError as exc:
        print(f"oneshot: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
